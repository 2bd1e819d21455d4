import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { errors, inspectList, MorayError, toWireError } from '../../src/errors/catalog';
import { renderErrorDocs } from '../../tools/gen-error-docs';
import { ROOT } from '../helpers/harness';

test('wire shape: name, message, context, info', () => {
    const e = errors.etagConflict('foo', 'k1', 'null', 'D0E7F4DF');
    assert.deepEqual(e.toWire(), {
        name: 'EtagConflictError',
        message: 'foo::k1 was expected to have etag "null", but was "D0E7F4DF"',
        context: { bucket: 'foo', key: 'k1', expected: 'null', actual: 'D0E7F4DF' },
        info: {},
    });
    assert.deepEqual(errors.overloaded().toWire().context,
        { name: 'OverloadedError', message: 'maximum moray queue length reached' });
    assert.equal(errors.fastUnsupportedMethod('bogus', 1).message, 'unsupported RPC method: "bogus"');
});

test('NotIndexedError lists print like util.inspect', () => {
    assert.equal(inspectList([]), '[]');
    assert.equal(inspectList(['other']), "[ 'other' ]");
    assert.equal(errors.notIndexedFields('foo', '(other=zz)', [], ['other']).message,
        "foo does not have indexes that support (other=zz). Reindexing fields: []. " +
        "Unindexed fields: [ 'other' ]");
});

test('a bug becomes InternalError on the wire', () => {
    assert.equal(toWireError(new TypeError('x is undefined')).name, 'InternalError');
    assert.ok(errors.raw('boom') instanceof MorayError);
    assert.equal(errors.raw('boom').name, 'error');
});

test('docs/errors.md is generated from the catalog and up to date', () => {
    const committed = fs.readFileSync(path.join(ROOT, 'docs', 'errors.md'), 'utf8');
    assert.equal(committed, renderErrorDocs());
});

/* The development crash switch (--abort-on-error / MORAY_ABORT_ON_ERROR). */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
    abortOnError, abortOnErrorEnabled, abortOnErrorFromEnv, configureAbortOnError,
} from '../../src/probes/abort-on-error';

class Aborted extends Error {}
const abort = (): never => {
    throw new Aborted('abort');
};

test('off by default and when unset', () => {
    configureAbortOnError(undefined);
    assert.equal(abortOnErrorEnabled(), false);
    abortOnError('handler-error', 'anything');
    assert.equal(abortOnErrorFromEnv({}), undefined);
    assert.equal(abortOnErrorFromEnv({ MORAY_ABORT_ON_ERROR: '0' }), undefined);
    assert.equal(abortOnErrorFromEnv({ MORAY_ABORT_ON_ERROR: 'Bucket' }), 'Bucket');
});

test('any error, or only errors containing the text', (t) => {
    t.after(() => configureAbortOnError(undefined));
    const stderr = process.stderr.write;
    t.after(() => {
        process.stderr.write = stderr;
    });
    process.stderr.write = () => true;

    configureAbortOnError(true, abort);
    assert.throws(() => abortOnError('query-error', 'error: x'), Aborted);
    configureAbortOnError('1', abort);
    assert.throws(() => abortOnError('handler-error', 'y'), Aborted);
    configureAbortOnError('ObjectNotFound', abort);
    abortOnError('handler-error', 'BucketNotFoundError: b');
    assert.throws(() => abortOnError('handler-error', 'ObjectNotFoundError: k'), Aborted);
    assert.throws(() => abortOnError('query-error', 'x ObjectNotFound y'), Aborted);
});

test('the default action really aborts the process (SIGABRT)', () => {
    /* ulimit -c 0: no core file left behind by this test */
    const r = spawnSync('/bin/sh', ['-c', 'ulimit -c 0; exec "$0" "$@"',
        process.execPath, '--import', 'tsx', '-e', `
        const m = require(${JSON.stringify(require.resolve('../../src/probes/abort-on-error'))});
        m.configureAbortOnError('Boom');
        m.abortOnError('handler-error', 'nothing');
        process.stdout.write('survived ');
        m.abortOnError('handler-error', 'BoomError: x');
        process.stdout.write('not reached');
    `], { encoding: 'utf8', cwd: __dirname, env: { ...process.env, NODE_OPTIONS: '' } });
    assert.equal(r.signal, 'SIGABRT');
    assert.equal(r.stdout, 'survived ');
    assert.match(r.stderr, /--abort-on-error: handler-error: BoomError: x: aborting/);
});

/*
 * Bucket config validation (moray-api §5.1): each of the 10 checks with
 * its exact error, the precedence between them, and normalisation.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { MorayError } from '../../src/errors/catalog';
import {
    type BucketConfig, INDEX_TYPES, RESERVED_BUCKET_NAMES, indexNameProblem, isValidBucketName,
    validateBucketConfig, validateBucketConfigAsync,
} from '../../src/schema/bucket-config';

/* Both variants must fail the same way. */
async function fails(name: string, config: object, errName: string, message: string,
    syncToo = true): Promise<void> {
    const verify = (err: unknown) => {
        assert.ok(err instanceof MorayError, String(err));
        assert.equal(err.name, errName);
        assert.equal(err.message, message);
        return true;
    };
    await assert.rejects(validateBucketConfigAsync(name, config), verify, JSON.stringify(config));
    if (syncToo) {
        assert.throws(() => validateBucketConfig(name, config), verify, JSON.stringify(config));
    }
}

/* Both variants must accept and normalise identically. */
async function valid(name: string, config: object): Promise<BucketConfig> {
    const a = await validateBucketConfigAsync(name, config);
    assert.deepStrictEqual(validateBucketConfig(name, config), a);
    return a;
}

const TYPE_ENUM = 'should be equal to one of the allowed values ("string", "[string]", ' +
    '"number", "[number]", "numrange", "boolean", "[boolean]", "date", "[date]", ' +
    '"daterange", "ip", "[ip]", "mac", "[mac]", "subnet", "[subnet]", "uuid")';

const CFG = 'InvalidBucketConfigError';
const NOTFN = 'NotFunctionError';
const BADNAME = 'InvalidBucketNameError';

test('check 1: shape, with ajv-style details', async () => {
    await fails('b', { index: { a: { type: 'bogus' } } }, CFG, `bucket.index['a'].type ${TYPE_ENUM}`);
    await fails('b', { index: { a: { type: 'string', foo: 1 } } }, CFG,
        "bucket.index['a'] should NOT have additional properties");
    await fails('b', { index: { a: { unique: true } } }, CFG,
        "bucket.index['a'] should have required property 'type'");
    await fails('b', { options: { version: -1 } }, CFG, 'bucket.options.version should be >= 0');
    await fails('b', { options: { version: 1.5 } }, CFG, 'bucket.options.version should be integer');
    await fails('b', { options: { version: '2' } }, CFG, 'bucket.options.version should be integer');
    await fails('b', { options: { guaranteeOrder: 'yes' } }, CFG,
        'bucket.options.guaranteeOrder should be boolean');
    await fails('b', { options: { syncUpdates: 1 } }, CFG, 'bucket.options.syncUpdates should be boolean');
    await fails('b', { options: [] }, CFG, 'bucket.options should be object');
    await fails('b', { index: [] }, CFG, 'bucket.index should be object');
    await fails('b', { index: null }, CFG, 'bucket.index should be object');
    await fails('b', { index: { a: 'string' } }, CFG, "bucket.index['a'] should be object");
    await fails('b', { index: { a: { type: 'string', unique: 'no' } } }, CFG,
        "bucket.index['a'].unique should be boolean");
    await fails('b', { pre: {} }, CFG, 'bucket.pre should be array');
    await fails('b', { post: 'function () {}' }, CFG, 'bucket.post should be array');
    // ordering inside check 1: required, then additional, then the type enum
    await fails('b', { index: { a: { foo: 1 } } }, CFG,
        "bucket.index['a'] should have required property 'type'");
    await fails('b', { index: { a: { type: 'x', foo: 1 } } }, CFG,
        "bucket.index['a'] should NOT have additional properties");
    // first bad entry in key order; index before options
    await fails('b', { index: { a: { type: 'string' }, z: { type: 'no' } }, options: { version: -1 } },
        CFG, `bucket.index['z'].type ${TYPE_ENUM}`);
    // check 1 precedes every later check
    await fails('moray', { index: { _id: { type: 'x' } }, pre: ['(('], options: { trackModification: 1 } },
        CFG, `bucket.index['_id'].type ${TYPE_ENUM}`);
});

test('check 2: trackModification (any value), before triggers and names', async () => {
    for (const v of [true, false, null, 0, 'x']) {
        await fails('b', { options: { trackModification: v } }, CFG,
            '"trackModification" is no longer supported');
    }
    await fails('search', { pre: ['(('], options: { trackModification: false } }, CFG,
        '"trackModification" is no longer supported');
});

test('check 3: triggers must compile and evaluate; before bucket name checks', async () => {
    const msg = 'trigger not function must be [Function]';
    await fails('b', { pre: ['function ('] }, NOTFN, msg);
    await fails('b', { post: ['}{'] }, NOTFN, msg);
    await fails('b', { post: ['undefinedVariable'] }, NOTFN, msg);      // ReferenceError
    await fails('b', { pre: ['(function () { throw new Error("x"); })()'] }, NOTFN, msg);
    await fails('b', { pre: [{}] }, NOTFN, msg);                          // "fn = [object Object]"
    await fails('b', { pre: ['(function () { while (true) {} })()'] }, NOTFN, msg);  // timeout
    await fails('b', { pre: ['(Promise.resolve().then(function l() { while (true) {} }), ' +
        'function () {})'] }, NOTFN, msg);                          // microtask timeout
    await fails('1bad', { pre: ['function ('] }, NOTFN, msg);
    await fails('moray', { post: ['function ('] }, NOTFN, msg);
    // the main context is untouched
    await fails('b', { pre: ['globalThis.leaked = 1, process.exit(3)'] }, NOTFN, msg);
    assert.equal((globalThis as Record<string, unknown>)['leaked'], undefined);
});

test('check 4: bucket name syntax', async () => {
    for (const name of ['1abc', '_abc', 'a-b', 'a b', 'é', 'a'.repeat(64), 'a.b']) {
        await fails(name, {}, BADNAME, `${name} is not a valid bucket name`);
    }
    for (const name of ['a', 'A', 'a_1', 'a'.repeat(63), 'Moray', 'SEARCH']) {
        await valid(name, {});
    }
});

test('check 5: reserved bucket names (case-sensitive)', async () => {
    assert.deepEqual([...RESERVED_BUCKET_NAMES], ['buckets_config', 'moray', 'search']);
    for (const name of RESERVED_BUCKET_NAMES) {
        await fails(name, {}, BADNAME, `${name} is not a valid bucket name`);
        // name checks precede the function checks
        await fails(name, { pre: ['5'], post: ['6'] }, BADNAME, `${name} is not a valid bucket name`);
    }
    assert.equal(isValidBucketName('moray'), false);
    assert.equal(isValidBucketName('Moray'), true);
    assert.equal(isValidBucketName('1x'), false);
    assert.equal(isValidBucketName('x1'), true);
});

test('checks 6 and 7: post before pre, each must be a function', async () => {
    await fails('b', { pre: ['5'], post: ['"str"'] }, NOTFN, 'post must be [Function]');
    await fails('b', { pre: ['5'], post: ['function (req, cb) { cb(); }'] }, NOTFN, 'pre must be [Function]');
    await fails('b', { pre: [null] }, NOTFN, 'pre must be [Function]');
    await fails('b', { post: [5] }, NOTFN, 'post must be [Function]');
    await fails('b', { pre: ['function () {}', '({})'] }, NOTFN, 'pre must be [Function]');
    // function checks come before index-name checks
    await fails('b', { index: { _id: { type: 'string' } }, pre: ['1'] }, NOTFN, 'pre must be [Function]');
});

test('check 8: index name syntax', async () => {
    for (const n of ['1a', 'a_', '_a_b', '__a', 'a-b', '_', 'é', 'a b', '__proto__']) {
        await fails('b', { index: { [n]: { type: 'string' } } }, CFG, `invalid index name "${n}"`);
        assert.equal(indexNameProblem(n), `invalid index name "${n}"`);
    }
    for (const n of ['a', 'A', 'ab', 'a_b', 'a__b1', '_a1', '_A', 'x9']) {
        assert.equal(indexNameProblem(n), null, n);
    }
});

test('check 9: reserved index names (case-insensitive)', async () => {
    for (const n of ['_etag', '_id', '_idx', '_key', '_atime', '_ctime', '_mtime', '_rver',
        '_value', '_vnode', '_ID', '_Etag']) {
        await fails('b', { index: { [n]: { type: 'string' } } }, CFG,
            `index name "${n}" is reserved for use by Moray`);
    }
    // _txn_snap fails the syntax check first (underscore after a leading underscore)
    await fails('b', { index: { _txn_snap: { type: 'number' } } }, CFG, 'invalid index name "_txn_snap"');
});

test('check 10: "moray" prefix (case-insensitive, after leading underscores)', async () => {
    for (const n of ['moray', 'morayx', 'Moray_a', '_moray', 'MORAY1']) {
        await fails('b', { index: { [n]: { type: 'string' } } }, CFG,
            `index names cannot start with "moray": "${n}"`);
    }
    assert.equal(indexNameProblem('amoray'), null);
    assert.equal(indexNameProblem('mora'), null);
});

test('checks 8-10 run per index name in key order', async () => {
    await fails('b', { index: { moray1: { type: 'string' }, '1bad': { type: 'string' } } }, CFG,
        'index names cannot start with "moray": "moray1"');
    await fails('b', { index: { ok: { type: 'string' }, _id: { type: 'string' }, 'bad_': { type: 'string' } } },
        CFG, 'index name "_id" is reserved for use by Moray');
});

test('normalised output', async () => {
    const out = await valid('foo', {
        index: { email: { type: 'string', unique: true }, n: { type: 'number' } },
        pre: ['function pre(req, cb) { cb(); }'],
        post: ['  (function post(req, cb) { cb(); })  ', 'function (req, cb) {\n  cb();\n}'],
        options: { guaranteeOrder: true, custom: { x: 1 } },
        extra: 'ignored',
    });
    assert.deepEqual(out, {
        index: { email: { type: 'string', unique: true }, n: { type: 'number' } },
        pre: ['function pre(req, cb) { cb(); }'],
        post: ['function post(req, cb) { cb(); }', 'function (req, cb) {\n  cb();\n}'],
        options: { guaranteeOrder: true, custom: { x: 1 }, version: 0 },
    });
    assert.equal(JSON.stringify(out.options), '{"guaranteeOrder":true,"custom":{"x":1},"version":0}');
    assert.deepEqual(Object.keys(out), ['index', 'pre', 'post', 'options']);

    assert.deepEqual(await valid('b', {}),
        { index: {}, pre: [], post: [], options: { version: 0 } });
    const versioned = await valid('b', { options: { version: 3, a: 1 } });
    assert.equal(JSON.stringify(versioned.options), '{"version":3,"a":1}');
    assert.equal((await valid('b', { options: { version: 0 } })).options.version, 0);
    for (const t of INDEX_TYPES) {
        assert.deepEqual((await valid('b', { index: { f: { type: t } } })).index,
            { f: { type: t } });
    }
    // the input is not mutated
    const input = { options: { a: 1 } };
    await valid('b', input);
    assert.deepEqual(input, { options: { a: 1 } });
});

test('untrusted sources cannot reach the host realm, nor hang or abort it', async () => {
    // an active async hook used to turn a microtask timeout into a process abort
    const { createHook } = await import('node:async_hooks');
    const hook = createHook({ init() {} }).enable();
    try {
        const msg = 'trigger not function must be [Function]';
        await fails('b', { pre: ['this.constructor.constructor("return process")().exit(7)'] },
            NOTFN, msg);
        await fails('b', { pre: ['(async () => { await null; for (;;) {} })(), function () {}'] },
            NOTFN, msg);
        // heap exhaustion kills the worker; the sync variant would wait out its
        // whole deadline (the same no-reply path as the timeouts above), so async only
        await fails('b', { post: ['(function () { const a = []; for (;;) a.push(new Array(1e6).fill(1)); })()'] },
            NOTFN, msg, false);
        await fails('b', { post: ['require("fs")'] }, NOTFN, msg);
        const out = await valid('b', {
            post: ['typeof require === "undefined" && typeof process === "undefined" ? function ok() {} : 1'],
        });
        assert.deepEqual(out.post, ['function ok() {}']);
    } finally {
        hook.disable();
    }
});

test('arrow functions and async functions count as functions', async () => {
    const out = await valid('b', { pre: ['(req, cb) => cb()'], post: ['async function f() {}'] });
    assert.deepEqual(out.pre, ['(req, cb) => cb()']);
    assert.deepEqual(out.post, ['async function f() {}']);
});

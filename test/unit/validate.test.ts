/*
 * InvocationError messages (moray-api §2, §3, §7.12): every phrase of the
 * §2 table, the count message of every RPC, and batch request checks.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { MorayError } from '../../src/errors/catalog';
import {
    ARG_KINDS, RPC_ARGS, RPC_METHODS, check, errorsText, invocationProblem,
    validateArgs,
} from '../../src/rpc/validate';

const UUID = 'd8e9a4b2-3c4d-4e5f-8a9b-0c1d2e3f4a5b';

function expectInvocation(method: string, args: unknown[], message: string): void {
    assert.throws(() => validateArgs(method, args), (err: unknown) => {
        assert.ok(err instanceof MorayError);
        assert.equal(err.name, 'InvocationError');
        assert.equal(err.message, message);
        return true;
    });
}

function findOpts(options: unknown): string | null {
    return invocationProblem('findObjects', ['b', '(a=1)', options]);
}

const FIND_PREFIX = 'findObjects expects "options" (args[2]) to be a valid options object: ';

test('argument table matches moray-api §1.1', () => {
    const shape = Object.fromEntries(RPC_METHODS.map((m) =>
        [m, RPC_ARGS[m].map((s) => `${s.name}:${s.kind}`).join(',')]));
    assert.deepEqual(shape, {
        createBucket: 'bucket:string,config:object,options:options',
        getBucket: 'options:options,bucket:string',
        listBuckets: 'options:options',
        updateBucket: 'name:string,config:object,options:options',
        delBucket: 'bucket:string,options:options',
        putObject: 'bucket:string,key:string,value:object,options:options',
        getObject: 'bucket:string,key:string,options:options',
        delObject: 'bucket:string,key:string,options:options',
        findObjects: 'bucket:string,filter:string,options:options',
        updateObjects: 'bucket:string,fields:object,filter:string,options:options',
        deleteMany: 'bucket:string,filter:string,options:options',
        batch: 'requests:requests,options:options',
        reindexObjects: 'bucket:string,count:integer,options:options',
        getTokens: 'options:options',
        sql: 'statement:string,values:array,options:options',
        ping: 'options:options',
        version: 'options:options',
        listen: 'channel:string,options:options',
        unlisten: 'id:string,options:options',
    });
    assert.deepEqual(Object.fromEntries(Object.entries(ARG_KINDS)
        .map(([k, v]) => [k, v.description])), {
        string: 'a nonempty string',
        integer: 'a nonnegative integer',
        object: 'an object',
        array: 'an array',
        requests: 'an array of valid request objects',
        options: 'a valid options object',
    });
});

test('count message for every RPC (too few and too many)', () => {
    const counts: Record<string, number> = {
        createBucket: 3, getBucket: 2, listBuckets: 1, updateBucket: 3,
        delBucket: 2, putObject: 4, getObject: 3, delObject: 3,
        findObjects: 3, updateObjects: 4, deleteMany: 3, batch: 2,
        reindexObjects: 3, getTokens: 1, sql: 3, ping: 1, version: 1,
        listen: 2, unlisten: 2,
    };
    assert.deepEqual(Object.keys(counts).sort(), [...RPC_METHODS].sort());
    for (const [m, n] of Object.entries(counts)) {
        const msg = `${m} expects ${n} argument${n === 1 ? '' : 's'}`;
        expectInvocation(m, [], msg);
        expectInvocation(m, new Array(n + 1).fill({}), msg);
    }
    expectInvocation('ping', [], 'ping expects 1 argument');
    expectInvocation('putObject', ['b', 'k', {}], 'putObject expects 4 arguments');
});

test('valid calls pass for every RPC', () => {
    const good: Record<string, unknown[]> = {
        createBucket: ['b', { index: {} }, {}],
        getBucket: [{ req_id: UUID }, 'b'],
        listBuckets: [{}],
        updateBucket: ['b', {}, { no_reindex: true }],
        delBucket: ['b', { bucket: 'b' }],
        putObject: ['b', 'k', { a: 1 }, {
            req_id: UUID, etag: null, headers: {}, no_count: false,
            sql_only: false, noCache: true, _value: '{"a":1}',
        }],
        getObject: ['b', 'k', {
            noCache: true, requireIndexes: false, requireOnlineReindexing: true,
            internalOpts: { sendHandledOptions: true },
        }],
        delObject: ['b', 'k', { etag: 'ABCDEF01', _etag: 5 }],
        findObjects: ['b', '(a=1)', {
            limit: 5, offset: '10', sort: [{ attribute: 'a', order: 'desc' }],
            noLimit: false, timeout: 0,
        }],
        updateObjects: ['b', { a: 1 }, '(a=1)', { limit: '0' }],
        deleteMany: ['b', '(a=1)', { sort: { attribute: 'a', order: 'ASC' } }],
        batch: [[{ bucket: 'b', key: 'k', value: {} }], {}],
        reindexObjects: ['b', 0, {}],
        getTokens: [{ req_id: UUID.toUpperCase() }],
        sql: ['select 1', [], { readOnlyOverride: true, timeout: 100 }],
        ping: [{ deep: false, req_id: UUID }],
        version: [{}],
        listen: ['chan', { req_id: UUID }],
        unlisten: [UUID, {}],
    };
    for (const [m, args] of Object.entries(good)) {
        assert.equal(invocationProblem(m, args), null, m);
        validateArgs(m, args);
    }
});

test('unknown method is a programmer error, not an InvocationError', () => {
    assert.throws(() => validateArgs('nosuch', []), (err: unknown) =>
        err instanceof Error && !(err instanceof MorayError));
});

test('argument kinds: wrong JSON type, empty string, negative, non-integer', () => {
    expectInvocation('putObject', [5, 'k', {}, {}],
        'putObject expects "bucket" (args[0]) to be a nonempty string: bucket should be string');
    expectInvocation('putObject', ['b', '', {}, {}],
        'putObject expects "key" (args[1]) to be a nonempty string: key should NOT be shorter than 1 characters');
    expectInvocation('putObject', ['b', 'k', [], {}],
        'putObject expects "value" (args[2]) to be an object: value should be object');
    expectInvocation('putObject', ['b', 'k', null, {}],
        'putObject expects "value" (args[2]) to be an object: value should be object');
    expectInvocation('putObject', ['b', 'k', { hasOwnProperty: 1 }, {}],
        'putObject expects "value" (args[2]) to be an object: value.hasOwnProperty should NOT be valid');
    expectInvocation('putObject', ['b', 'k', {}, 'x'],
        'putObject expects "options" (args[3]) to be a valid options object: options should be object');
    expectInvocation('reindexObjects', ['b', -1, {}],
        'reindexObjects expects "count" (args[1]) to be a nonnegative integer: count should be >= 0');
    expectInvocation('reindexObjects', ['b', 1.5, {}],
        'reindexObjects expects "count" (args[1]) to be a nonnegative integer: count should be integer');
    expectInvocation('reindexObjects', ['b', '5', {}],
        'reindexObjects expects "count" (args[1]) to be a nonnegative integer: count should be integer');
    expectInvocation('sql', ['select 1', {}, {}],
        'sql expects "values" (args[1]) to be an array: values should be array');
    expectInvocation('createBucket', ['b', 'cfg', {}],
        'createBucket expects "config" (args[1]) to be an object: config should be object');
    expectInvocation('updateBucket', ['', {}, {}],
        'updateBucket expects "name" (args[0]) to be a nonempty string: name should NOT be shorter than 1 characters');
    expectInvocation('updateObjects', ['b', 'x', '(a=1)', {}],
        'updateObjects expects "fields" (args[1]) to be an object: fields should be object');
    expectInvocation('findObjects', ['b', 7, {}],
        'findObjects expects "filter" (args[1]) to be a nonempty string: filter should be string');
    expectInvocation('listen', [null, {}],
        'listen expects "channel" (args[0]) to be a nonempty string: channel should be string');
    expectInvocation('unlisten', ['', {}],
        'unlisten expects "id" (args[0]) to be a nonempty string: id should NOT be shorter than 1 characters');
    expectInvocation('getBucket', ['b', {}],
        'getBucket expects "options" (args[0]) to be a valid options object: options should be object');
    expectInvocation('getBucket', [{}, 3],
        'getBucket expects "bucket" (args[1]) to be a nonempty string: bucket should be string');
    expectInvocation('batch', [{}, {}],
        'batch expects "requests" (args[0]) to be an array of valid request objects: requests should be array');
});

test('first failing argument wins (left to right)', () => {
    expectInvocation('putObject', ['', '', null, 1],
        'putObject expects "bucket" (args[0]) to be a nonempty string: bucket should NOT be shorter than 1 characters');
    expectInvocation('putObject', ['b', 1, null, 1],
        'putObject expects "key" (args[1]) to be a nonempty string: key should be string');
});

test('options: every detail phrase of the §2 table', () => {
    const cases: Array<[unknown, string]> = [
        [{ deep: 'yes' }, 'options.deep should be boolean'],
        [{ etag: 5 }, 'options.etag should be null,string'],
        [{ limit: true }, 'options.limit should be integer,string'],
        [{ limit: 1.5 }, 'options.limit should be integer,string'],
        [{ offset: null }, 'options.offset should be integer,string'],
        [{ timeout: -1 }, 'options.timeout should be >= 0'],
        [{ timeout: 2.5 }, 'options.timeout should be integer'],
        [{ timeout: '100' }, 'options.timeout should be integer'],
        [{ limit: -1 }, 'options.limit should be >= 0'],
        [{ limit: '12a' }, 'options.limit should match pattern "^[0-9]+$"'],
        [{ offset: '-1' }, 'options.offset should match pattern "^[0-9]+$"'],
        [{ req_id: 'not-a-uuid' }, 'options.req_id should match format "uuid"'],
        [{ req_id: 5 }, 'options.req_id should be string'],
        [{ req_id: 'urn:uuid:' + UUID },
            'options.req_id should NOT be longer than 36 characters'],
        [{ req_id: UUID + 'x' },
            'options.req_id should NOT be longer than 36 characters'],
        [{ req_id: 'urn:uuid:1234' }, 'options.req_id should match format "uuid"'],
        [{ sort: { attribute: 'a', order: 'up' } },
            'options.sort.order should be equal to one of the allowed values ("ASC", "DESC")'],
        [{ sort: [{ attribute: 'a' }, { order: 'x' }] },
            'options.sort[1].order should be equal to one of the allowed values ("ASC", "DESC")'],
        [{ sort: { attribute: 5 } }, 'options.sort.attribute should be string'],
        [{ sort: ['a'] }, 'options.sort[0] should be object'],
        [{ sort: 'a' },
            'options.sort should be array, options.sort should be object, ' +
            'options.sort should match some schema in anyOf'],
        [{ sort: null },
            'options.sort should be array, options.sort should be object, ' +
            'options.sort should match some schema in anyOf'],
        [{ noCache: 1 }, 'options.noCache should be boolean'],
        [{ noBucketCache: 'true' }, 'options.noBucketCache should be boolean'],
        [{ headers: [] }, 'options.headers should be object'],
        [{ requireOnlineReindexing: null },
            'options.requireOnlineReindexing should be boolean'],
        [{ requireIndexes: 0 }, 'options.requireIndexes should be boolean'],
        [{ noLimit: 'no' }, 'options.noLimit should be boolean'],
        [{ no_count: 1 }, 'options.no_count should be boolean'],
        [{ sql_only: 1 }, 'options.sql_only should be boolean'],
        [{ no_reindex: 1 }, 'options.no_reindex should be boolean'],
        [{ internalOpts: true }, 'options.internalOpts should be object'],
        [{ internalOpts: { sendHandledOptions: 'y' } },
            'options.internalOpts.sendHandledOptions should be boolean'],
    ];
    for (const [opts, detail] of cases) {
        assert.equal(findOpts(opts), FIND_PREFIX + detail, JSON.stringify(opts));
    }
});

test('options: spec full example', () => {
    expectInvocation('findObjects', ['b', '(a=1)', { sort: { attribute: 'a', order: 'sideways' } }],
        'findObjects expects "options" (args[2]) to be a valid options object: ' +
        'options.sort.order should be equal to one of the allowed values ("ASC", "DESC")');
});

test('options: accepted forms', () => {
    const ok: unknown[] = [
        {},
        { req_id: UUID.toUpperCase() },
        { etag: null }, { etag: '' }, { etag: 'u1234567' },
        { limit: 0 }, { limit: '0' }, { limit: 10000 }, { offset: '007' },
        { sort: [] }, { sort: {} }, { sort: { order: 'asc' } },
        { sort: [{ attribute: 'a', order: 'DESC' }, { attribute: 'b', order: 'desc' }] },
        { timeout: 0 }, { timeout: 1e6 },
        { _etag: 5, _value: {}, readOnlyOverride: 'x', bucket: 7, whatever: [1] },
        { headers: { a: 1 } },
        { internalOpts: {} },
        { hasOwnProperty: 1 },   // options are not "an object" arg: allowed
    ];
    for (const o of ok) {
        assert.equal(findOpts(o), null, JSON.stringify(o));
    }
});

test('options: first error in schema property order wins', () => {
    assert.equal(findOpts({ deep: 1, req_id: 'x', timeout: -1 }),
        FIND_PREFIX + 'options.req_id should match format "uuid"');
    assert.equal(findOpts({ deep: 1, limit: 'x' }),
        FIND_PREFIX + 'options.limit should match pattern "^[0-9]+$"');
});

test('options are checked for every RPC, including getBucket (args[0])', () => {
    for (const m of RPC_METHODS) {
        const specs = RPC_ARGS[m];
        const idx = specs.findIndex((s) => s.kind === 'options');
        const args: unknown[] = specs.map((s) => ({
            string: 'x', integer: 1, object: {}, array: [],
            requests: [], options: {},
        })[s.kind]);
        assert.equal(invocationProblem(m, args), null, m);
        args[idx] = { timeout: -5 };
        assert.equal(invocationProblem(m, args),
            `${m} expects "options" (args[${idx}]) to be a valid options object: ` +
            'options.timeout should be >= 0');
    }
});

const BATCH_PREFIX =
    'batch expects "requests" (args[0]) to be an array of valid request objects: ';

function batchProblem(requests: unknown): string | null {
    return invocationProblem('batch', [requests, {}]);
}

test('batch: schema violations', () => {
    const cases: Array<[unknown, string]> = [
        [[{ key: 'k', value: {} }], "requests[0] should have required property 'bucket'"],
        [[{ bucket: 'b', key: 'k', value: {} }, { bucket: 'b', operation: 'nope', key: 'k' }],
            'requests[1].operation should be equal to one of the allowed values ' +
            '("put", "delete", "update", "deleteMany")'],
        [[{ bucket: 'b', operation: 'PUT', key: 'k', value: {} }],
            'requests[0].operation should be equal to one of the allowed values ' +
            '("put", "delete", "update", "deleteMany")'],
        [['x'], 'requests[0] should be object'],
        [[null], 'requests[0] should be object'],
        [[[]], 'requests[0] should be object'],
        [[{ bucket: 5 }], 'requests[0].bucket should be string'],
        [[{ bucket: '' }], 'requests[0].bucket should NOT be shorter than 1 characters'],
        [[{ bucket: 'b', key: 3, value: {} }], 'requests[0].key should be string'],
        [[{ bucket: 'b', key: 'k', value: 'v' }], 'requests[0].value should be object'],
        [[{ bucket: 'b', key: 'k', value: { hasOwnProperty: 0 } }],
            'requests[0].value.hasOwnProperty should NOT be valid'],
        [[{ bucket: 'b', operation: 'update', fields: [], filter: '(a=1)' }],
            'requests[0].fields should be object'],
        [[{ bucket: 'b', operation: 'deleteMany', filter: 1 }],
            'requests[0].filter should be string'],
        [[{ bucket: 'b', key: 'k', value: {}, options: [] }],
            'requests[0].options should be object'],
        [[{ bucket: 'b', key: 'k', value: {}, options: { etag: 1 } }],
            'requests[0].options.etag should be null,string'],
        [[{ bucket: 'b', key: 'k', value: {}, options: { req_id: 'x' } }],
            'requests[0].options.req_id should match format "uuid"'],
        [[{ bucket: 'b', key: 'k', value: {},
            options: { sort: { order: 'x' } } }],
        'requests[0].options.sort.order should be equal to one of the allowed values ("ASC", "DESC")'],
        [[{ bucket: 'b', key: 'k', value: {}, options: { sort: 1 } }],
            'requests[0].options.sort should be array, requests[0].options.sort should be object, ' +
            'requests[0].options.sort should match some schema in anyOf'],
    ];
    for (const [reqs, detail] of cases) {
        assert.equal(batchProblem(reqs), BATCH_PREFIX + detail, JSON.stringify(reqs));
    }
});

test('batch: members required by the operation (our improvement, §7.12)', () => {
    const cases: Array<[unknown, string]> = [
        [[{ bucket: 'b' }], "requests[0] should have required property 'key'"],
        [[{ bucket: 'b', key: 'k' }], "requests[0] should have required property 'value'"],
        [[{ bucket: 'b', operation: 'put', value: {} }],
            "requests[0] should have required property 'key'"],
        [[{ bucket: 'b', operation: 'delete' }],
            "requests[0] should have required property 'key'"],
        [[{ bucket: 'b', operation: 'update', filter: '(a=1)' }],
            "requests[0] should have required property 'fields'"],
        [[{ bucket: 'b', operation: 'update', fields: { a: 1 } }],
            "requests[0] should have required property 'filter'"],
        [[{ bucket: 'b', operation: 'deleteMany' }],
            "requests[0] should have required property 'filter'"],
        [[{ bucket: 'b', operation: 'delete', key: 'k' }, { bucket: 'b', operation: 'deleteMany' }],
            "requests[1] should have required property 'filter'"],
    ];
    for (const [reqs, detail] of cases) {
        assert.equal(batchProblem(reqs), BATCH_PREFIX + detail, JSON.stringify(reqs));
    }
});

test('batch: valid requests, extra members and per-op options', () => {
    assert.equal(batchProblem([]), null);
    assert.equal(batchProblem([
        { bucket: 'b', key: 'k', value: { a: 1 }, options: { etag: null, headers: { x: 1 } } },
        { bucket: 'b', operation: 'put', key: 'k2', value: {}, filter: 'ignored' },
        { bucket: 'b', operation: 'delete', key: 'k', options: { etag: 'ABCDEF01' } },
        { bucket: 'b', operation: 'update', fields: { a: 2 }, filter: '(a=1)',
            options: { limit: '5', sort: { attribute: 'a' } } },
        { bucket: 'b', operation: 'deleteMany', filter: '(a=1)', options: { noLimit: true } },
        { bucket: 'b', key: 'k', value: {}, unknownMember: 1 },
    ]), null);
    // the batch-level options are validated too
    assert.equal(invocationProblem('batch', [[], { limit: 'x' }]),
        'batch expects "options" (args[1]) to be a valid options object: ' +
        'options.limit should match pattern "^[0-9]+$"');
    // requests are checked before options
    assert.equal(invocationProblem('batch', [[{}], { limit: 'x' }]),
        BATCH_PREFIX + "requests[0] should have required property 'bucket'");
});

test('interpreter: ajv path and length conventions', () => {
    // string lengths are code points
    assert.equal(check({ type: 'string', minLength: 1 }, '😀'), null);
    assert.deepEqual(check({ type: 'string', maxLength: 2 }, '😀😀'), null);
    assert.deepEqual(check({ type: 'string', maxLength: 1 }, '😀😀'),
        [{ dataPath: '', message: 'should NOT be longer than 1 characters' }]);
    // non-identifier schema property names use bracket notation
    const errs = check({ type: 'object', properties: { 'a-b': { type: 'string' } } }, { 'a-b': 1 });
    assert.ok(errs);
    assert.equal(errorsText(errs, 'x'), "x['a-b'] should be string");
    // additionalProperties keys use bracket notation
    const e2 = check({ type: 'object', additionalProperties: { type: 'object' } }, { a: 1 });
    assert.ok(e2);
    assert.equal(errorsText(e2, 'm'), "m['a'] should be object");
    // integer semantics
    assert.equal(check({ type: 'integer' }, 1e21), null);
    assert.ok(check({ type: 'integer' }, NaN));
});

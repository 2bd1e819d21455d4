/*
 * batch, updateObjects and deleteMany through the real npm moray client
 * against a real PostgreSQL (moray-api.md §7.10–§7.12, storage.md §6.5–§6.7).
 */

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import {
    call, errName, rawRpc, morayClient, startServer, stopOwnCluster, testDatabase,
    type MorayClient, type ServerProcess, type TestDatabase,
} from '../helpers/harness';


let db: TestDatabase;
let srv: ServerProcess;
let client: MorayClient;

const B = 'rpcb';
const CFG = { index: { email: { type: 'string', unique: true }, n: { type: 'number' },
    b: { type: 'boolean' }, tags: { type: '[string]' } } };

before(async () => {
    db = await testDatabase('rpcbatch');
    srv = await startServer({ db });
    client = await morayClient(srv.port);
    await call(client, 'createBucket', B, CFG, {});
});

after(async () => {
    client?.close();
    await srv?.stop();
    await db?.drop();
    await stopOwnCluster();
});

async function get(bucket: string, key: string): Promise<any | null> {
    try {
        return await call(client, 'getObject', bucket, key, {});
    } catch (err) {
        if (errName(err) === 'ObjectNotFoundError') {
            return null;
        }
        throw err;
    }
}

async function reset(bucket = B): Promise<void> {
    await call(client, 'deleteMany', bucket, '(n>=0)', { noLimit: true });
    await call(client, 'deleteMany', bucket, '(!(n>=0))', { noLimit: true }).catch(() => undefined);
}

test('batch: put/update/delete/deleteMany in one transaction, reference key order', async () => {
    await reset();
    await call(client, 'putObject', B, 'k3', { n: 3 }, {});
    await call(client, 'putObject', B, 'k1', { n: 1 }, {});
    const r = await call(client, 'batch', [
        { bucket: B, key: 'b1', value: { n: 5, email: 'b1@x' } },
        { bucket: B, operation: 'update', fields: { n: 2 }, filter: '(n=1)' },
        { bucket: B, operation: 'delete', key: 'k3' },
        { bucket: B, operation: 'deleteMany', filter: '(n=999)' },
    ], {});
    assert.equal(r.etags.length, 4);
    assert.deepEqual(Object.keys(r.etags[0]), ['bucket', 'etag', 'key']);
    assert.deepEqual(Object.keys(r.etags[1]), ['bucket', 'count', 'etag', 'filter']);
    assert.deepEqual(Object.keys(r.etags[2]), ['bucket', 'key']);
    assert.deepEqual(Object.keys(r.etags[3]), ['bucket', 'count', 'filter']);
    assert.equal(r.etags[0].bucket, B);
    assert.equal(r.etags[0].key, 'b1');
    assert.match(r.etags[0].etag, /^[0-9A-F]{8}$/);
    assert.equal(r.etags[1].count, 1);
    assert.match(r.etags[1].etag, /^u[0-9a-f]{7}$/);
    assert.equal(r.etags[1].filter, '(n=1)');
    assert.deepEqual(r.etags[2], { bucket: B, key: 'k3' });
    assert.deepEqual(r.etags[3], { bucket: B, count: 0, filter: '(n=999)' });
    assert.equal((await get(B, 'b1'))._etag, r.etags[0].etag);
    assert.equal((await get(B, 'k1')).value.n, 2);
    assert.equal(await get(B, 'k3'), null);
});

test('batch: empty requests → {etags: []}', async () => {
    assert.deepEqual(await call(client, 'batch', [], {}), { etags: [] });
});

test('batch: one failing op rolls back all', async () => {
    await reset();
    await call(client, 'putObject', B, 'keep', { n: 10 }, {});
    for (const bad of [
        { bucket: 'nosuchbucket', key: 'x', value: {} },
        { bucket: B, operation: 'delete', key: 'absent' },
        { bucket: B, operation: 'update', fields: { nope: 1 }, filter: '(n=10)' },
        { bucket: B, key: 'e', value: {}, options: { etag: 'WRONG' } },
    ]) {
        await assert.rejects(call(client, 'batch', [
            { bucket: B, key: 'new1', value: { n: 1 } },
            { bucket: B, operation: 'update', fields: { n: 11 }, filter: '(n=10)' },
            bad,
        ], {}));
        assert.equal(await get(B, 'new1'), null, JSON.stringify(bad));
        assert.equal((await get(B, 'keep')).value.n, 10);
    }
    // a unique violation mid-batch also rolls back
    await call(client, 'putObject', B, 'u1', { email: 'dup@x' }, {});
    const e = await call(client, 'batch', [
        { bucket: B, key: 'new2', value: { n: 1 } },
        { bucket: B, key: 'u2', value: { email: 'dup@x' } },
    ], {}).catch((x) => x);
    assert.equal(errName(e), 'UniqueAttributeError');
    assert.equal(await get(B, 'new2'), null);
});

test('batch: missing fields for the operation → InvocationError', async () => {
    for (const op of [
        { bucket: B },
        { bucket: B, key: 'x' },
        { bucket: B, operation: 'delete' },
        { bucket: B, operation: 'update', filter: '(n=1)' },
        { bucket: B, operation: 'update', fields: { n: 1 } },
        { bucket: B, operation: 'deleteMany' },
    ]) {
        const { err } = await rawRpc(srv.port, 'batch', [[op], {}]);
        assert.equal(errName(err), 'InvocationError', JSON.stringify(op) + ' ' + String(err));
    }
});

test('batch: batch-level etag overrides per-op etag for put; delete uses its own', async () => {
    await reset();
    const e1 = (await call(client, 'putObject', B, 'a', { n: 1 }, {})).etag;
    const e2 = (await call(client, 'putObject', B, 'd', { n: 2 }, {})).etag;
    // per-op etag right but batch-level wrong → conflict
    const err = await call(client, 'batch', [
        { bucket: B, key: 'a', value: { n: 5 }, options: { etag: e1 } },
    ], { etag: 'BADBAD00' }).catch((x) => x);
    assert.equal(errName(err), 'EtagConflictError');
    assert.equal(err.context.bucket, B);
    assert.equal(err.context.key, 'a');
    assert.equal(err.context.expected, 'BADBAD00');
    assert.equal(err.context.actual, e1);
    // per-op etag wrong but batch-level right → ok
    await call(client, 'batch', [
        { bucket: B, key: 'a', value: { n: 6 }, options: { etag: 'WRONGETG' } },
    ], { etag: e1 });
    assert.equal((await get(B, 'a')).value.n, 6);
    // delete: batch-level etag (wrong) ignored, own etag used
    await call(client, 'batch', [
        { bucket: B, operation: 'delete', key: 'd', options: { etag: e2 } },
    ], { etag: 'NOTTHIS0' });
    assert.equal(await get(B, 'd'), null);
    await call(client, 'putObject', B, 'd', { n: 2 }, {});
    const err2 = await call(client, 'batch', [
        { bucket: B, operation: 'delete', key: 'd', options: { etag: 'WRONG' } },
    ], {}).catch((x) => x);
    assert.equal(errName(err2), 'EtagConflictError');
});

test('batch: atomic under 20 concurrent writers moving a counter', async () => {
    await call(client, 'putObject', B, 'c1', { n: 100 }, {});
    await call(client, 'putObject', B, 'c2', { n: 0 }, {});
    let ok = 0;
    const worker = async () => {
        for (let attempt = 0; attempt < 50; attempt++) {
            const a = await get(B, 'c1');
            const b = await get(B, 'c2');
            try {
                await call(client, 'batch', [
                    { bucket: B, key: 'c1', value: { n: a.value.n - 1 }, options: { etag: a._etag } },
                    { bucket: B, key: 'c2', value: { n: b.value.n + 1 }, options: { etag: b._etag } },
                ], {});
                ok++;
                return;
            } catch (err) {
                if (errName(err) !== 'EtagConflictError') {
                    throw err;
                }
            }
        }
    };
    await Promise.all(Array.from({ length: 20 }, worker));
    const a = (await get(B, 'c1')).value.n;
    const b = (await get(B, 'c2')).value.n;
    assert.equal(a + b, 100);
    assert.equal(b, ok);
    assert.ok(ok > 0);
});

test('updateObjects: errors', async () => {
    await reset();
    await call(client, 'putObject', B, 'x', { n: 1, email: 'e@x' }, {});
    let e = await call(client, 'updateObjects', B, {}, '(n=1)', {}).catch((x) => x);
    assert.equal(errName(e), 'FieldUpdateError');
    assert.equal(e.message, '{} is not a valid update definition');
    e = await call(client, 'updateObjects', B, { n: 2 }, '(unindexed=1)', {}).catch((x) => x);
    assert.equal(errName(e), 'NotIndexedError');
    assert.match(e.message, /^rpcb does not have indexes that support \(unindexed=1\)/);
    e = await call(client, 'updateObjects', B, { n: 2, zz: 1 }, '(n=1)', {}).catch((x) => x);
    assert.equal(errName(e), 'NotIndexedError');
    assert.equal(e.message, 'rpcb does not have indexes that support {"n":2,"zz":1}');
    e = await call(client, 'updateObjects', B, { n: null }, '(n=1)', {}).catch((x) => x);
    assert.equal(errName(e), 'NotNullableError');
    assert.equal(e.message, 'index "n" (of type "number") cannot store null values');
    e = await call(client, 'updateObjects', B, { b: 'notabool' }, '(n=1)', {}).catch((x) => x);
    assert.equal(errName(e), 'InvalidIndexTypeError');
    assert.equal(e.message, 'index(b) is of type boolean');
    e = await call(client, 'updateObjects', 'nosuch', { n: 1 }, '(n=1)', {}).catch((x) => x);
    assert.equal(errName(e), 'BucketNotFoundError');
    assert.equal(e.message, 'nosuch does not exist');
    e = await call(client, 'updateObjects', B, { n: 1 }, '(n=1', {}).catch((x) => x);
    assert.equal(errName(e), 'InvalidQueryError');
    e = await call(client, 'deleteMany', B, '(unindexed=1)', {}).catch((x) => x);
    assert.equal(errName(e), 'NotIndexedError');
    e = await call(client, 'deleteMany', 'nosuch', '(n=1)', {}).catch((x) => x);
    assert.equal(errName(e), 'BucketNotFoundError');
    assert.equal((await get(B, 'x')).value.n, 1);
});

test('updateObjects: u-etag, overlay visible via getObject, _value unchanged in SQL', async () => {
    await reset();
    await call(client, 'putObject', B, 'o1', { n: 1, email: 'o1@x', other: 'z' }, {});
    const r = await call(client, 'updateObjects', B, { n: 42 }, '(email=o1@x)', {});
    assert.deepEqual(Object.keys(r), ['count', 'etag']);
    assert.equal(r.count, 1);
    assert.match(r.etag, /^u[0-9a-f]{7}$/);
    const o = await get(B, 'o1');
    assert.equal(o.value.n, 42);
    assert.equal(o.value.other, 'z');
    assert.equal(o._etag, r.etag);
    const row = (await db.query(`SELECT _value, n, _etag FROM ${B} WHERE _key = 'o1'`)).rows[0];
    assert.equal(JSON.parse(row._value).n, 1);
    assert.equal(Number(row.n), 42);
    assert.equal(row._etag, r.etag);
    // etag returned even when nothing matched
    const z = await call(client, 'updateObjects', B, { n: 1 }, '(n=12345)', {});
    assert.equal(z.count, 0);
    assert.match(z.etag, /^u[0-9a-f]{7}$/);
});

test('updateObjects/deleteMany: loose substring trap (email=*foo)', async () => {
    await reset();
    await call(client, 'putObject', B, 'xfoo', { email: 'xfoo', n: 1 }, {});
    await call(client, 'putObject', B, 'xfooy', { email: 'xfooy', n: 1 }, {});
    await call(client, 'putObject', B, 'bar', { email: 'bar', n: 1 }, {});
    const r = await call(client, 'updateObjects', B, { n: 999 }, '(email=*foo)', {});
    assert.equal(r.count, 2);
    assert.equal((await get(B, 'xfooy')).value.n, 999);
    assert.equal((await get(B, 'bar')).value.n, 1);
    const d = await call(client, 'deleteMany', B, '(email=*foo)', {});
    assert.equal(d.count, 2);
    assert.equal(await get(B, 'xfoo'), null);
    assert.notEqual(await get(B, 'bar'), null);
});

test('updateObjects/deleteMany: 1000-row default limit, limit and noLimit', async () => {
    await reset();
    await db.query(`INSERT INTO ${B} (_key, _value, _etag, _mtime, n) ` +
        `SELECT 'r' || g, '{"n":7}', 'E', 0, 7 FROM generate_series(1, 1205) g`);
    let r = await call(client, 'updateObjects', B, { n: 8 }, '(n=7)', {});
    assert.equal(r.count, 1000);
    r = await call(client, 'updateObjects', B, { n: 8 }, '(n=7)', { limit: 5 });
    assert.equal(r.count, 5);
    r = await call(client, 'updateObjects', B, { n: 9 }, '(n>=7)', { noLimit: true });
    assert.equal(r.count, 1205);
    let d = await call(client, 'deleteMany', B, '(n=9)', { limit: 10 });
    assert.deepEqual(d, { count: 10 });
    d = await call(client, 'deleteMany', B, '(n=9)', {});
    assert.deepEqual(d, { count: 1000 });
    d = await call(client, 'deleteMany', B, '(n=9)', { noLimit: true });
    assert.deepEqual(d, { count: 195 });
});

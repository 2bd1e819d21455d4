/*
 * reindexObjects and the reindexing lifecycle through the real npm moray
 * client and a real PostgreSQL (moray-api.md §7.13, storage.md §6.8, §12).
 */

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import {
    call, collect, errName, rawRpc, morayClient, startServer, stopOwnCluster, testDatabase,
    type MorayClient, type ServerProcess, type TestDatabase,
} from '../helpers/harness';


let db: TestDatabase;
let srv: ServerProcess;
let client: MorayClient;

before(async () => {
    db = await testDatabase('rpcreindex');
    /*
     * Work around the stale-prepared-plan bug (see the first test): add
     * buckets_config.reindex_active with a throwaway server, then use a
     * fresh one whose connections never saw the old layout.
     */
    const warm = await startServer({ db });
    const wc = await morayClient(warm.port);
    await call(wc, 'createBucket', 'warmup', { index: {} }, {});
    await call(wc, 'updateBucket', 'warmup', { index: {}, options: { version: 1 } }, {});
    wc.close();
    await warm.stop();
    srv = await startServer({ db });
    client = await morayClient(srv.port);
});

/*
 * On a fresh database buckets_config has no reindex_active column until the
 * first updateBucket adds it.  A bucket load prepared (with `c.*`) on a
 * pooled connection before that must keep working afterwards.
 */
test('first-ever updateBucket does not break bucket loads prepared before it', async () => {
    const B = 'ri0';
    const db0 = await testDatabase('rpcreindex0');
    const srv0 = await startServer({ db: db0 });
    const client = await morayClient(srv0.port);
    after(async () => {
        client.close();
        await srv0.stop();
        await db0.drop();
    });
    await call(client, 'createBucket', B, { index: { n: { type: 'number' } } }, {});
    // touch every pooled connection (maxConnections 4) with a bucket load
    await Promise.all(Array.from({ length: 8 }, (_, i) =>
        call(client, 'putObject', B, `w${i}`, { n: i }, {})));
    await call(client, 'updateBucket', B, { index: { n: { type: 'number' }, m: { type: 'number' } },
        options: { version: 1 } }, {});
    const errs: string[] = [];
    await Promise.all(Array.from({ length: 8 }, async (_, i) => {
        try {
            await call(client, 'getObject', B, `w${i}`, {});
        } catch (err) {
            errs.push(String(err));
        }
    }));
    assert.deepEqual(errs, []);
});

after(async () => {
    client?.close();
    await srv?.stop();
    await db?.drop();
    await stopOwnCluster();
});

test('reindexObjects: lifecycle, {processed, remaining} sequence, reindex_active cleared', async () => {
    const B = 'ri1';
    await call(client, 'putBucket', B, { index: { n: { type: 'number' } }, options: { version: 1 } }, {});
    for (let i = 0; i < 2; i++) {
        await call(client, 'putObject', B, `k${i}`, { n: i, color: i === 0 ? 'red' : 'blue' }, {});
    }
    // no reindexing needed yet
    assert.deepEqual(await call(client, 'reindexObjects', B, 10, {}), { processed: 0 });
    await call(client, 'putBucket', B, { index: { n: { type: 'number' }, color: { type: 'string' } },
        options: { version: 2 } }, {});
    const bk = await call(client, 'getBucket', B, {});
    assert.deepEqual(bk.reindex_active, { 2: ['color'] });
    // old rows: column empty, _rver behind
    let rows = (await db.query(`SELECT _key, color, _rver FROM ${B} ORDER BY _key`)).rows;
    assert.deepEqual(rows.map((r) => [r.color, r._rver]), [[null, null], [null, null]]);
    // requireIndexes rejects the reindexing field
    let e = await collect(client, 'findObjects', B, '(color=red)', { requireIndexes: true }).catch((x) => x);
    assert.equal(errName(e), 'NotIndexedError');
    assert.equal(e.message, "ri1 does not have indexes that support (color=red). " +
        "Reindexing fields: [ 'color' ]. Unindexed fields: []");
    e = await call(client, 'updateObjects', B, { n: 5 }, '(color=red)', {}).catch((x) => x);
    assert.equal(errName(e), 'NotIndexedError');
    assert.match(e.message, /Reindexing fields: \[ 'color' \]/);
    e = await call(client, 'updateObjects', B, { color: 'x' }, '(n=0)', {}).catch((x) => x);
    assert.equal(errName(e), 'NotIndexedError');
    assert.match(e.message, /^ri1 does not have indexes that support \{"color":"x"\}/);
    e = await call(client, 'deleteMany', B, '(color=red)', {}).catch((x) => x);
    assert.equal(errName(e), 'NotIndexedError');
    // count 0 → InvalidArgumentError
    e = (await rawRpc(srv.port, 'reindexObjects', [B, 0, {}])).err;
    assert.equal(errName(e), 'InvalidArgumentError');
    assert.equal(e.message, 'count 0 < 1');
    e = await call(client, 'reindexObjects', 'nosuch', 1, {}).catch((x) => x);
    assert.equal(errName(e), 'BucketNotFoundError');
    const etagsBefore = (await db.query(`SELECT _key, _etag, _mtime FROM ${B} ORDER BY _key`)).rows;
    const seq = [];
    for (let i = 0; i < 5; i++) {
        const r = await call(client, 'reindexObjects', B, 1, {});
        seq.push(r);
        if (r.processed === 0) {
            break;
        }
    }
    assert.deepEqual(seq, [{ processed: 1, remaining: 1 }, { processed: 1, remaining: 0 },
        { processed: 0, remaining: 0 }]);
    assert.deepEqual((await call(client, 'getBucket', B, {})).reindex_active, {});
    rows = (await db.query(`SELECT _key, color, _rver, _etag, _mtime FROM ${B} ORDER BY _key`)).rows;
    assert.deepEqual(rows.map((r) => [r.color, r._rver]), [['red', 2], ['blue', 2]]);
    assert.deepEqual(rows.map((r) => [r._key, r._etag, r._mtime]),
        etagsBefore.map((r) => [r._key, r._etag, r._mtime]));
    // now usable
    const found = await collect(client, 'findObjects', B, '(color=red)', { requireIndexes: true });
    assert.deepEqual(found.map((o) => o.key), ['k0']);
    const u = await call(client, 'updateObjects', B, { n: 7 }, '(color=blue)', {});
    assert.equal(u.count, 1);
    // no_count omits remaining
    assert.deepEqual(await call(client, 'reindexObjects', B, 5, { no_count: true }), { processed: 0 });
});

test('reindexObjects: updateObjects values survive the rewrite', async () => {
    const B = 'ri2';
    await call(client, 'putBucket', B, { index: { n: { type: 'number' } }, options: { version: 1 } }, {});
    await call(client, 'putObject', B, 'a', { n: 1, color: 'c' }, {});
    await call(client, 'updateObjects', B, { n: 50 }, '(n=1)', {});
    await call(client, 'updateBucket', B, { index: { n: { type: 'number' }, color: { type: 'string' } },
        options: { version: 2 } }, {});
    let r;
    do {
        r = await call(client, 'reindexObjects', B, 10, {});
    } while (r.processed > 0);
    const row = (await db.query(`SELECT _value, n, color FROM ${B}`)).rows[0];
    assert.equal(JSON.parse(row._value).n, 50);
    assert.equal(Number(row.n), 50);
    assert.equal(row.color, 'c');
});

test('reindexObjects while writes continue: every row indexed, none lost', async () => {
    const B = 'ri3';
    await call(client, 'putBucket', B, { index: { n: { type: 'number' } }, options: { version: 1 } }, {});
    await db.query(`INSERT INTO ${B} (_key, _value, _etag, _mtime, n) ` +
        `SELECT 'old' || g, '{"n":' || g || ',"tag":"t' || g || '"}', 'E', 0, g ` +
        'FROM generate_series(1, 600) g');
    await call(client, 'updateBucket', B, { index: { n: { type: 'number' }, tag: { type: 'string' } },
        options: { version: 2 } }, {});
    let writing = true;
    let written = 0;
    const writer = (async () => {
        let i = 0;
        while (writing) {
            // overwrite old keys and add new ones
            const key = i % 2 === 0 ? `old${(i % 600) + 1}` : `new${i}`;
            const n = i % 2 === 0 ? (i % 600) + 1 : 10000 + i;
            await call(client, 'putObject', B, key, { n, tag: `t${n}` }, {});
            i++;
            written++;
        }
    })();
    const reindexer = (async () => {
        let r;
        let calls = 0;
        do {
            r = await call(client, 'reindexObjects', B, 50, {});
            calls++;
        } while (r.processed > 0);
        return calls;
    })();
    const calls = await reindexer;
    writing = false;
    await writer;
    assert.ok(calls > 2);
    assert.ok(written > 0);
    const rows = (await db.query(`SELECT _key, _value, tag, _rver FROM ${B}`)).rows;
    const news = rows.filter((r) => r._key.startsWith('new')).length;
    assert.equal(rows.length, 600 + news);
    for (const r of rows) {
        assert.equal(r._rver, 2, r._key);
        assert.equal(r.tag, JSON.parse(r._value).tag, r._key);
    }
    assert.deepEqual((await call(client, 'getBucket', B, {})).reindex_active, {});
});

/*
 * Shared WRITE connections (pool.claimShared(reqId, 'write'),
 * pipelineWriteDepth) against a real PostgreSQL, and putObject's
 * one-statement path through the real npm moray client.
 *
 *   claimShared(…, 'write') ──► no claim queued?
 *        │ yes: least-loaded SHARED(write) conn with users < depth,
 *        │      but an IDLE conn first while the best one is in use
 *        │      (one statement per backend while there is room);
 *        │      at most maxConnections - 1 SHARED: one never shares
 *        ▼ no room / claims queued
 *     FIFO queue with claim() waiters ──► freed place on a write conn: head
 *        write waiters take it; head exclusive: the conn drains ─► IDLE ─►
 *        that claimer (BUSY)
 *
 * What is checked, with no mock anywhere:
 *  - placement: spread, then pipeline up to the depth, the never-shared
 *    connection, the cap fallback (exclusive handle), a queued write taking
 *    a released place; everything IDLE with pipeline mode off afterwards;
 *  - FIFO: a queued exclusive claim is not overtaken by later writes; the
 *    write connection drains (waiting for pg's in-flight statement) and goes
 *    to it; an IDLE connection dispatched to a write waiter takes the next
 *    write waiters up to the depth;
 *  - reads and writes never share one connection; pipelineWriteDepth 0;
 *  - statements on one write connection run on one backend, each its own
 *    implicit transaction (a unique violation fails only its statement);
 *  - the server: concurrent putObject on shared write connections (distinct
 *    keys and one hot key), conditional puts (etag null / wrong / right),
 *    kang's shareKind while puts are held by a table lock, and trigger /
 *    guaranteeOrder buckets on the exclusive (transaction) path;
 *  - a put that finds, on its shared connection, that its bucket now has a
 *    trigger starts over in a transaction without destroying that
 *    connection;
 *  - a put that times out waiting on a row lock on a shared write
 *    connection: QueryTimeoutError, nothing written, the puts pipelined
 *    behind it commit after it (head-of-line), the connection is replaced.
 */

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ConnState, PgPool, type PoolConn } from '../../src/pg/pool';
import type { PgHandle } from '../../src/pg/handle';
import {
    call, morayClient, standaloneConfig, startServer, stopOwnCluster, testDatabase,
    type MorayClient, type ServerProcess, type TestDatabase,
} from '../helpers/harness';
import { freePort, httpGet, kangSnapshot } from '../helpers/net';
import { bounded, sleep, withTestPool, type PoolTunables } from '../helpers/pool';

type Obj = Record<string, any>;

let db: TestDatabase;

before(async () => {
    db = await testDatabase('pgpipew');
    await db.query('CREATE TABLE pw_items (k text PRIMARY KEY, n int NOT NULL)');
});

after(async () => {
    await db?.drop();
    await stopOwnCluster();
});

/* ---- helpers ---- */

const withPool = (t: PoolTunables, fn: (pool: PgPool) => Promise<void>) => withTestPool(db, t, fn);

/* Still pending after `ms`? (a race against a short timer) */
async function isPending(p: Promise<unknown>, ms = 40): Promise<boolean> {
    const timer = Symbol('timer');
    const r = await Promise.race([p.then(() => 'settled', () => 'settled'), sleep(ms).then(() => timer)]);
    return r === timer;
}

const pipelineOn = (c: PoolConn) => (c.client as unknown as { pipeline: boolean }).pipeline;
const pidOf = (c: PoolConn) => (c.client as unknown as { processID: number }).processID;
const write = (pool: PgPool, id: string) => pool.claimShared(id, 'write');

/* Record the order in which claims resolve. */
function tracked(p: Promise<PgHandle>, name: string, order: string[]): Promise<PgHandle> {
    return p.then((h) => {
        order.push(name);
        return h;
    });
}

function assertAllIdle(pool: PgPool): void {
    for (const c of pool.connections()) {
        assert.equal(c.state, ConnState.IDLE, `connection ${c.id}`);
        assert.equal(c.users, 0);
        assert.equal(c.shareKind, null);
        assert.equal(pipelineOn(c), false, `connection ${c.id}: pipeline mode off`);
    }
    const st = pool.stats();
    assert.deepEqual({ shared: st.shared, sharedWrite: st.sharedWrite, sharedUsers: st.sharedUsers,
        waiters: st.waiters, idle: st.idle }, { shared: 0, sharedWrite: 0, sharedUsers: 0, waiters: 0,
        idle: st.total });
    assert.equal(pool.counters.destroyed, 0);
}

/* ---- the pool ---- */

describe('shared write connections (pool)', () => {
    test('placement: spread, pipeline up to the depth, one connection never shares, a queued write takes a freed place',
        async () => {
            await withPool({ maxConnections: 4, pipelineWriteDepth: 2 }, async (pool) => {
                /* writes 1-3: one per backend */
                const hs: PgHandle[] = [];
                for (let i = 1; i <= 3; i++) {
                    hs.push(await write(pool, `w${i}`));
                }
                const conns = hs.map((h) => h.conn);
                assert.equal(new Set(conns).size, 3, 'three different connections');
                for (const h of hs) {
                    assert.equal(h.shared, true);
                    assert.equal(h.conn.state, ConnState.SHARED);
                    assert.equal(h.conn.shareKind, 'write');
                    assert.equal(h.conn.users, 1);
                    assert.equal(pipelineOn(h.conn), true);
                }
                const spare = pool.connections().filter((c) => c.state === ConnState.IDLE);
                assert.equal(spare.length, 1, 'the 4th connection stays IDLE');
                const fourth = spare[0]!;
                assert.ok(!conns.includes(fourth));
                assert.deepEqual(pool.stats(), { total: 4, idle: 1, pending: 0, waiters: 0, failed: false,
                    shared: 3, sharedWrite: 3, sharedUsers: 3 });

                /* writes 4-6: pipelined onto the write connections, never above the depth */
                for (let i = 4; i <= 6; i++) {
                    const h = await write(pool, `w${i}`);
                    assert.equal(h.shared, true);
                    assert.ok(conns.includes(h.conn), 'joins a write connection');
                    assert.equal(h.conn.users, 2);
                    hs.push(h);
                }
                assert.deepEqual(conns.map((c) => c.users), [2, 2, 2]);
                assert.equal(fourth.state, ConnState.IDLE, 'the 4th connection never shares');
                assert.equal(pool.stats().sharedUsers, 6);

                /* cap reached, all places taken, an IDLE connection: the write gets it exclusively */
                const ex = await write(pool, 'w-cap');
                assert.equal(ex.shared, false);
                assert.equal(ex.conn, fourth);
                assert.equal(fourth.state, ConnState.BUSY);
                assert.deepEqual((await ex.query('SELECT $1::int AS n', [1])).rows, [{ n: 1 }]);
                ex.release();
                assert.equal(fourth.state, ConnState.IDLE);

                /* ...and it serves an ordinary claim */
                const x = await pool.claim('x');
                assert.equal(x.conn, fourth);
                assert.equal(x.shared, false);
                assert.equal(fourth.state, ConnState.BUSY);
                assert.equal(fourth.claimedBy, 'x');

                /* every statement runs on its own connection's backend */
                const pids = await Promise.all(hs.map(async (h) =>
                    (await h.query('SELECT pg_backend_pid() AS pid', [])).rows[0]!['pid']));
                hs.forEach((h, i) => assert.equal(pids[i], pidOf(h.conn)));
                assert.equal(new Set(pids).size, 3);

                /* a 7th write queues... */
                const p7 = write(pool, 'w7');
                assert.equal(await isPending(p7), true, 'the 7th write waits');
                assert.equal(pool.stats().waiters, 1);
                /* ...and takes the place released on conns[1] */
                const freed = hs[1]!;
                freed.release();
                assert.equal(pool.stats().waiters, 0);
                const h7 = await bounded(p7, 1000, '7th write');
                assert.equal(h7.shared, true);
                assert.equal(h7.conn, conns[1]);
                assert.equal(conns[1]!.users, 2);
                assert.equal(conns[1]!.state, ConnState.SHARED);
                assert.deepEqual((await h7.query('SELECT $1::text AS s', ['seven'])).rows, [{ s: 'seven' }]);

                /* release everything */
                [...hs.filter((h) => h !== freed), h7, x].forEach((h) => h.release());
                assertAllIdle(pool);
                assert.equal(pool.counters.sharedClaims, 7);
            });
        });

    test('FIFO: a queued exclusive claim is not overtaken by later writes; the drained write connection goes to it',
        async () => {
            await withPool({ maxConnections: 4, pipelineWriteDepth: 2 }, async (pool) => {
                const hs: PgHandle[] = [];
                for (let i = 0; i < 6; i++) {
                    hs.push(await write(pool, `w${i}`));
                }
                const x4 = await pool.claim('x4');
                const byConn = new Map<PoolConn, PgHandle[]>();
                hs.forEach((h) => byConn.set(h.conn, [...(byConn.get(h.conn) ?? []), h]));
                assert.equal(byConn.size, 3);
                const [a, b] = [...byConn.keys()] as [PoolConn, PoolConn];
                const onA = byConn.get(a)!;
                const onB = byConn.get(b)!;
                assert.equal(onA.length, 2);

                const order: string[] = [];
                const px = tracked(pool.claim('X'), 'X', order);
                const pw1 = tracked(write(pool, 'W1'), 'W1', order);
                const pw2 = tracked(write(pool, 'W2'), 'W2', order);
                const pw3 = tracked(write(pool, 'W3'), 'W3', order);
                assert.equal(pool.stats().waiters, 4);

                /* a freed place on A is not refilled: the exclusive claim is at the head */
                onA[0]!.release();
                assert.equal(await isPending(pw1), true, 'W1 does not jump the queue');
                assert.equal(await isPending(px), true);
                assert.equal(a.users, 1);
                assert.equal(a.state, ConnState.SHARED);
                assert.equal(pool.stats().waiters, 4);

                /* the last user leaves while its statement is still in flight: A drains first */
                const t0 = Date.now();
                const q = onA[1]!.query('SELECT pg_sleep(0.2) AS s, $1::int AS n', [5])
                    .then((r: { rows: Obj[] }) => {
                        order.push('q');
                        return r;
                    });
                onA[1]!.release();
                assert.equal(a.users, 0);
                assert.equal(a.state, ConnState.SHARED, 'waits for pg to answer the statement in flight');
                assert.equal(await isPending(px, 60), true);
                const hx = await bounded(px, 2000, 'exclusive claim');
                assert.ok(Date.now() - t0 >= 190, `X served after ${Date.now() - t0} ms`);
                assert.equal((await q).rows[0]!['n'], 5);
                assert.deepEqual(order, ['q', 'X']);
                assert.equal(hx.conn, a);
                assert.equal(hx.shared, false);
                assert.equal(a.state, ConnState.BUSY);
                assert.equal(a.shareKind, null);
                assert.equal(pipelineOn(a), false);
                assert.equal(await isPending(pw1), true, 'W1 still waits');
                /* a transaction works on the connection that was shared */
                await hx.begin();
                await hx.query('INSERT INTO pw_items (k, n) VALUES ($1, $2)', ['fifo-x', 1]);
                await hx.commit();

                /* now W1 is at the head: a place freed on B goes to it */
                onB[0]!.release();
                const h1 = await bounded(pw1, 1000, 'W1');
                assert.equal(h1.shared, true);
                assert.equal(h1.conn, b);
                assert.equal(b.users, 2);
                assert.deepEqual(order, ['q', 'X', 'W1']);

                /* X released: A, IDLE, is dispatched to W2, turns SHARED(write) and takes W3 too */
                hx.release();
                const [h2, h3] = await bounded(Promise.all([pw2, pw3]), 1000, 'W2, W3');
                assert.deepEqual(order, ['q', 'X', 'W1', 'W2', 'W3']);
                for (const h of [h2, h3]) {
                    assert.equal(h.shared, true);
                    assert.equal(h.conn, a);
                }
                assert.equal(a.state, ConnState.SHARED);
                assert.equal(a.shareKind, 'write');
                assert.equal(a.users, 2);
                assert.equal(pipelineOn(a), true);
                assert.equal(pool.stats().sharedWrite, 3);

                /* the shared cap is reached: an IDLE connection dispatched to a write is exclusive */
                const pw4 = write(pool, 'W4');
                assert.equal(await isPending(pw4), true);
                x4.release();
                const h4 = await bounded(pw4, 1000, 'W4');
                assert.equal(h4.shared, false);
                assert.equal(h4.conn, x4.conn);
                assert.equal(h4.conn.state, ConnState.BUSY);

                const rs = await Promise.all([h1, h2, h3, h4].map((h, i) =>
                    h.query('INSERT INTO pw_items (k, n) VALUES ($1, $2) RETURNING pg_backend_pid() AS pid',
                        [`fifo-w${i + 1}`, i + 1])));
                assert.equal(rs[1]!.rows[0]!['pid'], rs[2]!.rows[0]!['pid'], 'W2 and W3 share a backend');
                /* (release() is idempotent: the handles released above are no-ops) */
                [...hs, h1, h2, h3, h4].forEach((h) => h.release());
                assertAllIdle(pool);
                const rows = (await db.query("SELECT k FROM pw_items WHERE k LIKE 'fifo-%' ORDER BY k")).rows;
                assert.deepEqual(rows.map((r) => r.k), ['fifo-w1', 'fifo-w2', 'fifo-w3', 'fifo-w4', 'fifo-x']);
                await db.query("DELETE FROM pw_items WHERE k LIKE 'fifo-%'");
            });
        });

    test('a write arriving while a claim is queued queues behind it, then takes the free write place', async () => {
        await withPool({ maxConnections: 2, pipelineWriteDepth: 4 }, async (pool) => {
            const w0 = await write(pool, 'w0');
            const x = await pool.claim('x');
            assert.equal(w0.conn.users, 1);
            const order: string[] = [];
            const py = tracked(pool.claim('Y'), 'Y', order);
            /* room on w0's connection, but Y waits: no jumping the queue */
            const pw = tracked(write(pool, 'W'), 'W', order);
            assert.equal(await isPending(pw), true);
            assert.equal(w0.conn.users, 1);
            assert.equal(pool.stats().waiters, 2);
            x.release();
            const hy = await bounded(py, 1000, 'Y');
            assert.equal(hy.conn, x.conn);
            /* Y served, W is at the head: it takes the free place at once */
            const hw = await bounded(pw, 1000, 'W');
            assert.deepEqual(order, ['Y', 'W']);
            assert.equal(hw.shared, true);
            assert.equal(hw.conn, w0.conn);
            assert.equal(w0.conn.users, 2);
            w0.release();
            hw.release();
            hy.release();
            assertAllIdle(pool);
        });
    });

    test('reads and writes never share a connection', async () => {
        await withPool({ maxConnections: 3, pipelineConnections: 1, pipelineWriteDepth: 4 }, async (pool) => {
            const r1 = await pool.claimShared('r1');
            const w1 = await write(pool, 'w1');
            const r2 = await pool.claimShared('r2');
            const w2 = await write(pool, 'w2');
            assert.ok([r1, w1, r2, w2].every((h) => h.shared));
            assert.notEqual(r1.conn, w1.conn);
            assert.equal(r2.conn, r1.conn);
            assert.equal(w2.conn, w1.conn);
            assert.equal(r1.conn.shareKind, 'read');
            assert.equal(w1.conn.shareKind, 'write');
            assert.deepEqual([r1.conn.users, w1.conn.users], [2, 2]);
            assert.deepEqual({ shared: pool.stats().shared, sharedWrite: pool.stats().sharedWrite }, { shared: 2, sharedWrite: 1 });
            const [rr, wr] = await Promise.all([
                r1.query('SELECT pg_backend_pid() AS pid', []),
                w1.query('INSERT INTO pw_items (k, n) VALUES ($1, $2) RETURNING pg_backend_pid() AS pid', ['mix-w', 1]),
            ]);
            assert.equal(rr.rows[0]!['pid'], pidOf(r1.conn));
            assert.equal(wr.rows[0]!['pid'], pidOf(w1.conn));
            [r1, r2, w1, w2].forEach((h) => h.release());
            assertAllIdle(pool);
            await db.query("DELETE FROM pw_items WHERE k = 'mix-w'");
        });
        /* writes hold the shared cap: a read takes a connection of its own, not a write place */
        await withPool({ maxConnections: 3, pipelineConnections: 2, pipelineWriteDepth: 4 }, async (pool) => {
            const w1 = await write(pool, 'w1');
            const w2 = await write(pool, 'w2');
            assert.notEqual(w1.conn, w2.conn);
            const r = await pool.claimShared('r');
            assert.equal(r.shared, false);
            assert.ok(r.conn !== w1.conn && r.conn !== w2.conn);
            assert.equal(r.conn.state, ConnState.BUSY);
            assert.deepEqual([w1.conn.users, w2.conn.users], [1, 1]);
            /* and a write, with the read connection busy, joins a write connection */
            const w3 = await write(pool, 'w3');
            assert.equal(w3.shared, true);
            assert.equal(w3.conn.shareKind, 'write');
            [w1, w2, w3, r].forEach((h) => h.release());
            assertAllIdle(pool);
        });
    });

    test('pipelineWriteDepth 0 (and a one-connection pool): a write claim is an exclusive claim', async () => {
        await withPool({ maxConnections: 3, pipelineWriteDepth: 0 }, async (pool) => {
            const a = await write(pool, 'a');
            const b = await write(pool, 'b');
            for (const h of [a, b]) {
                assert.equal(h.shared, false);
                assert.equal(h.conn.state, ConnState.BUSY);
                assert.equal(h.conn.shareKind, null);
            }
            assert.notEqual(a.conn, b.conn);
            assert.equal(pool.stats().shared, 0);
            /* read sharing is unaffected */
            const r = await pool.claimShared('r');
            assert.equal(r.shared, true);
            assert.equal(r.conn.shareKind, 'read');
            await a.begin();
            await a.commit();
            [a, b, r].forEach((h) => h.release());
            assert.equal(pool.counters.sharedClaims, 1);
            assertAllIdle(pool);
        });
        await withPool({ maxConnections: 1, pipelineWriteDepth: 4 }, async (pool) => {
            const a = await write(pool, 'a');
            assert.equal(a.shared, false);
            assert.equal(a.conn.state, ConnState.BUSY);
            a.release();
            assert.equal(pool.counters.sharedClaims, 0);
        });
    });

    test('pipelined writes on one backend are independent: a unique violation fails only its statement', async () => {
        await db.query("INSERT INTO pw_items (k, n) VALUES ('dup', 0)");
        await withPool({ maxConnections: 2, pipelineWriteDepth: 4 }, async (pool) => {
            const hs: PgHandle[] = [];
            for (let i = 0; i < 4; i++) {
                hs.push(await write(pool, `w${i}`));
            }
            const conn = hs[0]!.conn;
            assert.ok(hs.every((h) => h.shared && h.conn === conn), 'all four on one connection');
            assert.equal(conn.users, 4);
            const ins = 'INSERT INTO pw_items (k, n) VALUES ($1, $2) RETURNING pg_backend_pid() AS pid';
            const keys = ['ind-1', 'dup', 'ind-3', 'ind-4'];
            const ps = hs.map((h, i) => h.query(ins, [keys[i], i + 1]));
            /* all four on the wire before the first answer */
            const cl = conn.client as unknown as { _activeQuery: unknown; _sentQueryQueue: unknown[] };
            assert.ok(cl._activeQuery !== null);
            assert.equal(cl._sentQueryQueue.length, 3);
            const settled = await Promise.allSettled(ps);
            assert.deepEqual(settled.map((s) => s.status), ['fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
            const err = (settled[1] as PromiseRejectedResult).reason as Obj;
            assert.equal(err.name, 'UniqueAttributeError');
            assert.equal(err.message, '"k" is a unique attribute; value "dup" already exists');
            const pids = settled.filter((s) => s.status === 'fulfilled')
                .map((s) => (s as PromiseFulfilledResult<{ rows: Obj[] }>).value.rows[0]!['pid']);
            assert.deepEqual(pids, [pidOf(conn), pidOf(conn), pidOf(conn)], 'one backend');
            assert.ok(hs.every((h) => !h.broken));
            assert.equal(conn.state, ConnState.SHARED);
            /* the failed handle goes on on the same pipeline */
            const again = await hs[1]!.query(ins, ['ind-2', 2]);
            assert.equal(again.rows[0]!['pid'], pidOf(conn));
            hs.forEach((h) => h.release());
            assertAllIdle(pool);
        });
        const rows = (await db.query("SELECT k, n FROM pw_items WHERE k LIKE 'ind-%' OR k = 'dup' ORDER BY k")).rows;
        assert.deepEqual(rows, [{ k: 'dup', n: 0 }, { k: 'ind-1', n: 1 }, { k: 'ind-2', n: 2 },
            { k: 'ind-3', n: 3 }, { k: 'ind-4', n: 4 }]);
        await db.query("DELETE FROM pw_items WHERE k LIKE 'ind-%' OR k = 'dup'");
    });
});

/* ---- through the server and the npm moray client ---- */

describe('server: putObject on shared write connections (maxConnections 4, pipelineWriteDepth 2)', () => {
    let srv: ServerProcess;
    let c: MorayClient;
    const B = 'pw_bucket';
    const HOT = 'hot';

    const kang = () => kangSnapshot(srv.monitorPort);
    const sharedClaims = async () => (await kang())['counters']['pool'].sharedClaims as number;
    const put = (b: string, k: string, v: unknown, o: Obj = {}) => call<Obj>(c, 'putObject', b, k, v, o);
    const get = (b: string, k: string) => call<Obj>(c, 'getObject', b, k, {});

    async function assertNoShared(): Promise<void> {
        const s = await kang();
        const pool = s['pg_pool']['pool'];
        assert.deepEqual({ shared: pool.shared, sharedWrite: pool.sharedWrite, sharedUsers: pool.sharedUsers,
            waiters: pool.waiters }, { shared: 0, sharedWrite: 0, sharedUsers: 0, waiters: 0 });
        for (const p of Object.values(s['pg_connection'] as Obj)) {
            assert.equal(p.state, 'IDLE', JSON.stringify(p));
            assert.equal(p.shareKind, null);
            assert.equal(p.sharedUsers, 0);
        }
        assert.equal(s['counters']['pool'].destroyed, 0);
    }

    before(async () => {
        const base = standaloneConfig(db, { monitorPort: await freePort() });
        srv = await startServer({ config: { ...base,
            standalone: { url: db.url, pg: { maxConnections: 4, pipelineWriteDepth: 2 } } },
        /* debug: the pool's 'destroying connection' records explain a destroyed connection */
        env: { LOG_LEVEL: 'debug' } });
        c = await morayClient(srv.port);
        await call(c, 'createBucket', B, { index: { n: { type: 'number' }, s: { type: 'string' } } }, {});
        /* warms the bucket cache; the hot key exists, so concurrent puts of it all update */
        await put(B, HOT, { n: -1, s: 'first' });
    });

    after(async () => {
        c?.close();
        await srv?.stop();
    });

    test('120 concurrent puts (100 keys + 20 of one key) all succeed with the right values', async () => {
        const before0 = await sharedClaims();
        const claims0 = (await kang())['counters']['pool'].claims as number;
        const distinct = Array.from({ length: 100 }, (_, i) => put(B, `k${i}`, { n: i, s: `v${i}` }));
        const same = Array.from({ length: 20 }, (_, i) => put(B, HOT, { n: 1000 + i, s: `hot${i}` }));
        const [rd, rs] = await Promise.all([Promise.all(distinct), Promise.all(same)]);
        for (const r of [...rd, ...rs]) {
            assert.equal(typeof r['etag'], 'string');
            assert.match(r['etag'], /^[0-9A-F]{8}$/);
        }
        /*
         * Most puts take a shared place; the others get the 4th connection
         * exclusively (shared cap reached) when it is free (~100 of 120 here).
         */
        const after0 = (await kang())['counters']['pool'];
        assert.equal(after0.claims - claims0, 120, 'one claim per put');
        assert.ok(after0.sharedClaims - before0 >= 60, `shared places: ${after0.sharedClaims - before0}`);
        const gets = await Promise.all(Array.from({ length: 100 }, (_, i) => get(B, `k${i}`)));
        gets.forEach((g, i) => {
            assert.deepEqual(g['value'], { n: i, s: `v${i}` });
            assert.equal(g['_etag'], rd[i]!['etag']);
        });
        const hot = await get(B, HOT);
        const i = (hot['value'].n as number) - 1000;
        assert.ok(i >= 0 && i < 20, JSON.stringify(hot['value']));
        assert.deepEqual(hot['value'], { n: 1000 + i, s: `hot${i}` });
        assert.equal(hot['_etag'], rs[i]!['etag'], 'the stored etag is the one returned for that value');
        /* one row for the hot key; indexes written */
        const rows = (await db.query(`SELECT count(*)::int AS c, max(n)::int AS n FROM ${B} WHERE _key = $1`, [HOT])).rows;
        assert.deepEqual(rows, [{ c: 1, n: 1000 + i }]);
        const idx = (await db.query(`SELECT count(*)::int AS c FROM ${B} WHERE s LIKE 'v%' AND n >= 0 AND n < 100`)).rows;
        assert.deepEqual(idx, [{ c: 100 }]);
        await assertNoShared();
    });

    test('conditional puts on the shared path: etag null / wrong → EtagConflictError, right → ok', async () => {
        const { etag } = await put(B, 'cond', { n: 1, s: 'c1' });
        const e1 = await put(B, 'cond', { n: 2, s: 'c2' }, { etag: null }).then(() => null, (e: Obj) => e);
        assert.ok(e1 !== null, 'etag null on an existing key must fail');
        assert.equal(e1.name, 'EtagConflictError');
        assert.equal(e1.context.expected, 'null');
        assert.equal(e1.context.actual, etag);
        const e2 = await put(B, 'cond', { n: 3, s: 'c3' }, { etag: 'BOGUS123' }).then(() => null, (e: Obj) => e);
        assert.ok(e2 !== null, 'a wrong etag must fail');
        assert.equal(e2.name, 'EtagConflictError');
        assert.equal(e2.context.expected, 'BOGUS123');
        assert.equal(e2.context.actual, etag);
        assert.deepEqual((await get(B, 'cond'))['value'], { n: 1, s: 'c1' }, 'failed puts changed nothing');
        const ok = await put(B, 'cond', { n: 4, s: 'c4' }, { etag });
        assert.notEqual(ok['etag'], etag);
        const g = await get(B, 'cond');
        assert.deepEqual(g['value'], { n: 4, s: 'c4' });
        assert.equal(g['_etag'], ok['etag']);
        /* etag null on a new key creates it */
        await put(B, 'cond-new', { n: 5, s: 'c5' }, { etag: null });
        assert.deepEqual((await get(B, 'cond-new'))['value'], { n: 5, s: 'c5' });
        await assertNoShared();
    });

    test('kang shows SHARED write connections while puts are in flight', async () => {
        /* hold the puts inside PostgreSQL with a table lock so that the snapshot sees them */
        const locker = await db.client();
        let inflight: Promise<Obj[]> | null = null;
        try {
            await locker.query('BEGIN');
            await locker.query(`LOCK TABLE ${B} IN ACCESS EXCLUSIVE MODE`);
            inflight = Promise.all(Array.from({ length: 60 }, (_, i) => put(B, `f${i}`, { n: i, s: `f${i}` })));
            let s: Obj = {};
            const deadline = Date.now() + 5000;
            while (Date.now() < deadline) {
                s = await kang();
                if (s['pg_pool']['pool'].waiters === 53) {
                    break;
                }
                await sleep(20);
            }
            const metrics = await httpGet(srv.monitorPort, '/metrics');
            await locker.query('COMMIT');
            const pool = s['pg_pool']['pool'];
            const conns = Object.values(s['pg_connection'] as Obj);
            const detail = JSON.stringify({ pool, conns });
            const writes = conns.filter((p) => p.shareKind === 'write');
            assert.ok(writes.length >= 1, detail);
            /* 3 write connections with 2 places each, the 4th exclusive for the 7th put, 53 waiting */
            assert.equal(writes.length, 3, detail);
            assert.ok(writes.every((p) => p.state === 'SHARED' && p.sharedUsers === 2), detail);
            assert.deepEqual(conns.map((p) => p.state).sort(), ['BUSY', 'SHARED', 'SHARED', 'SHARED'], detail);
            assert.deepEqual({ shared: pool.shared, sharedWrite: pool.sharedWrite, sharedUsers: pool.sharedUsers,
                waiters: pool.waiters }, { shared: 3, sharedWrite: 3, sharedUsers: 6, waiters: 53 }, detail);
            /* the same in the Prometheus metrics */
            const sample = (re: RegExp) => Number(re.exec(metrics)?.[1]);
            assert.equal(sample(/^moray_postgres_connections_shared\{kind="write"[^}]*\} (\d+)$/m), 3, metrics);
            assert.equal(sample(/^moray_postgres_connections_shared\{kind="read"[^}]*\} (\d+)$/m), 0);
            assert.equal(sample(/^moray_postgres_shared_statements\{[^}]*\} (\d+)$/m), 6);
            assert.equal(sample(/^request_queue_depth\{[^}]*\} (\d+)$/m), 53);
        } finally {
            await locker.end();
        }
        const res = await bounded(inflight!, 10000, 'puts after the lock');
        assert.ok(res.every((r) => typeof r['etag'] === 'string'));
        const gets = await Promise.all(Array.from({ length: 60 }, (_, i) => get(B, `f${i}`)));
        gets.forEach((g, i) => {
            assert.deepEqual(g['value'], { n: i, s: `f${i}` });
            assert.equal(g['_etag'], res[i]!['etag']);
        });
        await assertNoShared();
    });

    test('trigger and guaranteeOrder buckets take the exclusive (transaction) path and stay right', async () => {
        await call(c, 'createBucket', 'pw_trig', { index: { n: { type: 'number' } }, pre: [
            'function stamp(req, cb) { req.value.pre = "seen-" + req.key; cb(); }',
        ] }, {});
        await call(c, 'createBucket', 'pw_ord', { index: { n: { type: 'number' } },
            options: { guaranteeOrder: true } }, {});
        /* warm both buckets into the cache */
        await put('pw_trig', 'warm', { n: -1 });
        await put('pw_ord', 'warm', { n: -1 });
        const serial0 = Number((await db.query('SELECT id FROM pw_ord_locking_serial')).rows[0].id);
        const before0 = await sharedClaims();
        const [rt, ro] = await Promise.all([
            Promise.all(Array.from({ length: 30 }, (_, i) => put('pw_trig', `t${i}`, { n: i }))),
            Promise.all(Array.from({ length: 30 }, (_, i) => put('pw_ord', `o${i}`, { n: i }))),
        ]);
        assert.equal((await sharedClaims()) - before0, 0, 'no shared place for trigger/guaranteeOrder puts');
        const gt = await Promise.all(Array.from({ length: 30 }, (_, i) => get('pw_trig', `t${i}`)));
        gt.forEach((g, i) => {
            assert.deepEqual(g['value'], { n: i, pre: `seen-t${i}` });
            assert.equal(g['_etag'], rt[i]!['etag']);
        });
        const go = await Promise.all(Array.from({ length: 30 }, (_, i) => get('pw_ord', `o${i}`)));
        go.forEach((g, i) => {
            assert.deepEqual(g['value'], { n: i });
            assert.equal(g['_etag'], ro[i]!['etag']);
        });
        const snaps = go.map((g) => g['_txn_snap'] as number).sort((x, y) => x - y);
        assert.deepEqual(snaps, Array.from({ length: 30 }, (_, i) => serial0 + 1 + i), 'distinct, gap-free _txn_snap');
        await assertNoShared();
    });

    /*
     * A put claims a shared write place because its cached bucket has no
     * trigger; while it waits in the queue an updateBucket adds a pre
     * trigger and evicts the cache; the put, served on a shared connection,
     * reloads the bucket, finds the trigger and starts over on a connection
     * of its own.  The shared connection must survive (an exception out of
     * withConnection would have marked it broken: a marker value does not).
     */
    test('a put that must start over in a transaction does not destroy its shared connection', async () => {
        await call(c, 'createBucket', 'pw_nt', { index: { n: { type: 'number' } } }, {});
        await call(c, 'createBucket', 'pw_other', { index: { n: { type: 'number' } } }, {});
        /* a first updateBucket adds buckets_config.reindex_active, so later ones only lock their row */
        await call(c, 'updateBucket', 'pw_other', { index: { n: { type: 'number' } } }, {});
        await Promise.all(Array.from({ length: 5 }, (_, i) => put('pw_nt', `n${i}`, { n: i })));
        const destroyed0 = (await kang())['counters']['pool'].destroyed as number;
        const lockA = await db.client();
        const lockA2 = await db.client();
        const lockB = await db.client();
        const waitFor = async (what: string, cond: (pool: Obj) => boolean) => {
            const deadline = Date.now() + 5000;
            for (;;) {
                const pool = (await kang())['pg_pool']['pool'];
                if (cond(pool)) {
                    return;
                }
                if (Date.now() > deadline) {
                    throw new Error(`timed out waiting for ${what}: ${JSON.stringify(pool)}`);
                }
                await sleep(20);
            }
        };
        let puts: Promise<Obj[]> | null = null;
        let upd: Promise<unknown> | null = null;
        let upd2: Promise<unknown> | null = null;
        try {
            for (const [l, name] of [[lockA, 'pw_nt'], [lockA2, 'pw_other']] as const) {
                await l.query('BEGIN');
                await l.query('SELECT name FROM buckets_config WHERE name = $1 FOR UPDATE', [name]);
            }
            await lockB.query('BEGIN');
            await lockB.query("SELECT _key FROM pw_nt WHERE _key IN ('n0', 'n1', 'n2', 'n3') FOR UPDATE");
            /* two updates hold two connections (blocked on their config rows) */
            upd = call(c, 'updateBucket', 'pw_nt', { index: { n: { type: 'number' } },
                pre: ['function stamp(req, cb) { req.value.pre = true; cb(); }'] }, {});
            upd2 = call(c, 'updateBucket', 'pw_other', { index: { n: { type: 'number' } } }, {});
            await waitFor('two updates holding connections', (p) => p.idle === 2);
            const claims0 = await sharedClaims();
            /* four puts fill both write connections (blocked on their rows) */
            puts = Promise.all(Array.from({ length: 4 }, (_, i) => put('pw_nt', `n${i}`, { n: 10 + i })));
            await waitFor('four shared writes', (p) => p.sharedUsers === 4 && p.sharedWrite === 2);
            /* the victim queues for a shared write place */
            const victim = put('pw_nt', 'n4', { n: 14 });
            await waitFor('the victim queued', (p) => p.waiters === 1);
            /* the pw_nt update commits; its connection goes to the victim, SHARED(write) */
            await lockA.query('COMMIT');
            await bounded(upd, 5000, 'updateBucket');
            const r = await bounded(victim, 5000, 'victim put');
            assert.equal(typeof r['etag'], 'string');
            /* the victim did take a shared place (then started over on a connection of its own) */
            assert.equal((await sharedClaims()) - claims0, 5);
            assert.deepEqual((await get('pw_nt', 'n4'))['value'], { n: 14, pre: true }, 'the retry ran the trigger');
            const destroyed = (await kang())['counters']['pool'].destroyed as number;
            const why = srv.records().filter((rec) => rec['msg'] === 'pg: destroying connection');
            assert.equal(destroyed - destroyed0, 0,
                `no connection destroyed by the NeedsTransaction retry: ${JSON.stringify(why)}`);
        } finally {
            await lockA.end();
            await lockA2.end();
            await lockB.end();
            await Promise.allSettled([puts, upd, upd2]);
        }
    });
});

describe('server: a put that times out on a shared write connection (maxConnections 2, pipelineWriteDepth 4)', () => {
    let srv: ServerProcess;
    let c: MorayClient;
    const B = 'pw_timeout';

    const kang = () => kangSnapshot(srv.monitorPort);
    const put = (k: string, v: unknown, o: Obj = {}) => call<Obj>(c, 'putObject', B, k, v, o);

    before(async () => {
        const base = standaloneConfig(db, { monitorPort: await freePort() });
        srv = await startServer({ config: { ...base,
            standalone: { url: db.url, pg: { maxConnections: 2, pipelineWriteDepth: 4 } } } });
        c = await morayClient(srv.port);
        await call(c, 'createBucket', B, { index: { n: { type: 'number' } } }, {});
        await put('locked', { n: 0 });
    });

    after(async () => {
        c?.close();
        await srv?.stop();
    });

    test('QueryTimeoutError for the blocked put; the puts pipelined behind it commit; the connection is replaced',
        async () => {
            const locker = await db.client();
            try {
                await locker.query('BEGIN');
                await locker.query(`SELECT _key FROM ${B} WHERE _key = 'locked' FOR UPDATE`);
                const t0 = Date.now();
                /* one write connection (one of two never shares): the free puts queue behind the blocked one */
                const blocked = put('locked', { n: 1 }, { timeout: 300 }).then(() => null, (e: Obj) => e);
                const free = [put('free1', { n: 2 }), put('free2', { n: 3 })];
                /* wait until all three are on the one write connection */
                let writes: Obj[] = [];
                const until3 = Date.now() + 3000;
                do {
                    const s = await kang();
                    writes = Object.values(s['pg_connection'] as Obj).filter((p) => p.shareKind === 'write');
                } while ((writes.length !== 1 || writes[0]!.sharedUsers !== 3) && Date.now() < until3 &&
                    await sleep(10).then(() => true));
                assert.equal(writes.length, 1, JSON.stringify(writes));
                assert.equal(writes[0]!.sharedUsers, 3, JSON.stringify(writes));
                const err = await bounded(blocked, 5000, 'blocked put');
                assert.ok(err !== null, 'the blocked put must fail');
                assert.equal(err.name, 'QueryTimeoutError');
                const r = await bounded(Promise.all(free), 5000, 'puts behind the blocked one');
                assert.ok(r.every((x) => typeof x['etag'] === 'string'));
                assert.ok(Date.now() - t0 >= 290, 'they waited for the blocked statement (head-of-line)');
            } finally {
                await locker.query('ROLLBACK').catch(() => undefined);
                await locker.end();
            }
            const rows = (await db.query(`SELECT _key, _value FROM ${B} ORDER BY _key`)).rows;
            assert.deepEqual(rows.map((x) => [x._key, JSON.parse(x._value)]),
                [['free1', { n: 2 }], ['free2', { n: 3 }], ['locked', { n: 0 }]], 'the timed-out put changed nothing');
            /* the timed-out statement's connection was closed once its users left, and replaced */
            const deadline = Date.now() + 5000;
            let s = await kang();
            while ((s['pg_pool']['pool'].total !== 2 || s['pg_pool']['pool'].idle !== 2) && Date.now() < deadline) {
                await sleep(20);
                s = await kang();
            }
            assert.equal(s['counters']['pool'].destroyed, 1);
            assert.deepEqual({ total: s['pg_pool']['pool'].total, idle: s['pg_pool']['pool'].idle }, { total: 2, idle: 2 });
            await put('locked', { n: 4 });
            assert.deepEqual((await call<Obj>(c, 'getObject', B, 'locked', {}))['value'], { n: 4 });
        });
});

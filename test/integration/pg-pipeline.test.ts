/*
 * Shared (pipelined) PostgreSQL connections and the lean query path,
 * against a real PostgreSQL (src/pg/pool.ts claimShared/releaseShared,
 * src/pg/handle.ts, src/pg/lean-query.ts).
 *
 *   test ──► PgPool (StaticTopology → the runner's cluster, morayTypes)
 *              │ claimShared ×N
 *              ▼
 *           one SHARED connection, pg pipeline mode:
 *              Bind/Execute/Sync  Bind/Execute/Sync  Bind/Execute/Sync ──► one backend
 *              ◄── answers in order, each statement its own implicit transaction
 *
 * What is checked, with no mock anywhere:
 *  - placement: N claims share one connection (state SHARED, users,
 *    stats().shared/sharedUsers); release returns it IDLE with pipeline
 *    mode off, and it then serves transactions and portals; the depth cap
 *    and the maxConnections - 1 cap fall back to exclusive claims;
 *  - pipelining: statements are all on the wire before the first answer,
 *    run one after the other on one backend (pg_backend_pid);
 *  - failures: an error fails only its statement (reference error
 *    mapping); a timeout cancels the backend only when its statement is the
 *    running one; a terminated backend fails every statement in flight and
 *    the pool replaces the connection;
 *  - LeanQuery: NoData statements (UPDATE) twice, SELECT rows parsed with
 *    morayTypes identical on the described and the cached-shape runs, a
 *    bind failure confined to its query;
 *  - the server: 200 concurrent getObject through the npm moray client with
 *    pg.pipelineConnections 2, and the kang snapshot of shared connections.
 */

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ConnState, PgPool, type PoolConn } from '../../src/pg/pool';
import type { PgHandle } from '../../src/pg/handle';
import {
    call, innermostError, morayClient, standaloneConfig, startServer, stopOwnCluster, testDatabase,
    type MorayClient, type ServerProcess, type TestDatabase,
} from '../helpers/harness';
import { freePort, kangSnapshot } from '../helpers/net';
import { bounded, sleep, until, withTestPool, type PoolTunables } from '../helpers/pool';

type Obj = Record<string, any>;

let db: TestDatabase;

before(async () => {
    db = await testDatabase('pgpipe');
    await db.query('CREATE TABLE pp_items (k text PRIMARY KEY, n int NOT NULL)');
    await db.query("INSERT INTO pp_items SELECT 'row' || g, g FROM generate_series(1, 5) g");
});

after(async () => {
    await db?.drop();
    await stopOwnCluster();
});

/* ---- helpers ---- */

const withPool = (t: PoolTunables, fn: (pool: PgPool) => Promise<void>) => withTestPool(db, t, fn);

/* The error a promise rejects with (fails the test if it resolves). */
async function failure(p: Promise<unknown>): Promise<any> {
    try {
        await p;
    } catch (e) {
        return e;
    }
    assert.fail('expected a failure, but the statement succeeded');
}

interface ClientInternals {
    pipeline: boolean;
    processID: number;
    _sentQueryQueue: unknown[];
    _activeQuery: unknown;
}

function internals(c: PoolConn): ClientInternals {
    return c.client as unknown as ClientInternals;
}

function claimN(pool: PgPool, n: number, prefix = 'r'): Promise<PgHandle[]> {
    return Promise.all(Array.from({ length: n }, (_, i) => pool.claimShared(`${prefix}-${i}`)));
}

/* Claim exclusively until the connection `id` is ours; release the others. */
async function claimConn(pool: PgPool, id: number, max: number): Promise<PgHandle> {
    const held: PgHandle[] = [];
    try {
        for (let i = 0; i < max; i++) {
            const h = await pool.claim(`find-${id}-${i}`);
            if (h.id === id) {
                return h;
            }
            held.push(h);
        }
    } finally {
        held.forEach((h) => h.release());
    }
    throw new Error(`connection ${id} was not handed out`);
}

/* ---- placement on shared connections ---- */

describe('claimShared placement', () => {
    test('N concurrent shared claims land on one connection; released, it serves transactions and portals', async () => {
        await withPool({ maxConnections: 3, pipelineConnections: 1, pipelineDepth: 32 }, async (pool) => {
            const hs = await claimN(pool, 6);
            const conn = hs[0]!.conn;
            assert.ok(hs.every((h) => h.shared && h.conn === conn), 'all on one connection');
            assert.equal(conn.state, ConnState.SHARED);
            assert.equal(conn.users, 6);
            assert.equal(internals(conn).pipeline, true);
            const st = pool.stats();
            assert.equal(st.shared, 1);
            assert.equal(st.sharedUsers, 6);
            assert.equal(st.idle, 2);
            assert.equal(pool.counters.sharedClaims, 6);

            const res = await Promise.all(hs.map((h, i) =>
                h.query('SELECT $1::int AS n, $2::text AS s, pg_backend_pid() AS pid', [i, `v${i}`])));
            res.forEach((r, i) => {
                assert.equal(r.rowCount, 1);
                assert.deepEqual({ n: r.rows[0]!['n'], s: r.rows[0]!['s'] }, { n: i, s: `v${i}` });
                assert.equal(r.rows[0]!['pid'], internals(conn).processID);
            });
            /* a table read by key, as getObject does */
            const byKey = await Promise.all(hs.map((h, i) =>
                h.query('SELECT k, n FROM pp_items WHERE k = $1', [`row${i}`])));
            byKey.forEach((r, i) => assert.deepEqual(r.rows, i === 0 ? [] : [{ k: `row${i}`, n: i }]));

            for (const [i, h] of hs.entries()) {
                h.release();
                assert.equal(conn.users, 5 - i);
                assert.equal(conn.state, i < 5 ? ConnState.SHARED : ConnState.IDLE);
            }
            assert.equal(internals(conn).pipeline, false);
            assert.deepEqual({ ...pool.stats(), total: 3, idle: 3, shared: 0, sharedUsers: 0 }, pool.stats());
            assert.equal(pool.counters.destroyed, 0);

            /* the same connection, now exclusive: a transaction */
            const x = await claimConn(pool, conn.id, 3);
            try {
                assert.equal(x.shared, false);
                assert.equal(conn.state, ConnState.BUSY);
                await x.begin();
                await x.query('INSERT INTO pp_items (k, n) VALUES ($1, $2)', ['txn1', 100]);
                const inside = await x.query('SELECT n FROM pp_items WHERE k = $1', ['txn1']);
                assert.deepEqual(inside.rows, [{ n: 100 }]);
                await x.commit();
                assert.equal(x.inTransaction, false);
                /* and a portal read in batches of 2 (not allowed in pipeline mode) */
                const seen: unknown[] = [];
                const r = await x.query('SELECT g FROM generate_series(1, $1::int) g', [5],
                    { onRow: (row) => void seen.push(row['g']), batch: 2 });
                assert.deepEqual(seen, [1, 2, 3, 4, 5]);
                assert.deepEqual(r.rows, [], 'rows went to onRow');
                assert.equal(r.rowCount, 5, 'every batch counts, not only the last');
            } finally {
                x.release();
            }
            assert.equal(conn.state, ConnState.IDLE);
            assert.deepEqual((await db.query("SELECT n FROM pp_items WHERE k = 'txn1'")).rows, [{ n: 100 }]);
            await db.query("DELETE FROM pp_items WHERE k = 'txn1'");

            /* shared again after the exclusive use */
            const again = await pool.claimShared('again');
            try {
                assert.equal(again.shared, true);
                assert.deepEqual((await again.query('SELECT $1::int AS n', [9])).rows, [{ n: 9 }]);
            } finally {
                again.release();
            }
            assert.equal(pool.counters.destroyed, 0);
        });
    });

    test('a shared handle refuses streaming and BEGIN', async () => {
        await withPool({ maxConnections: 2, pipelineConnections: 1 }, async (pool) => {
            const h = await pool.claimShared('s');
            try {
                assert.equal(h.shared, true);
                await assert.rejects(h.query('SELECT $1::int AS n', [1], { onRow: () => undefined }),
                    /streaming query on a shared connection/);
                await assert.rejects(h.begin(), /BEGIN on a shared connection/);
                assert.deepEqual((await h.query('SELECT $1::int AS n', [1])).rows, [{ n: 1 }]);
            } finally {
                h.release();
            }
        });
    });

    test('pipelineDepth: a claim beyond the depth gets a connection of its own', async () => {
        await withPool({ maxConnections: 3, pipelineConnections: 1, pipelineDepth: 2 }, async (pool) => {
            const [a, b] = await claimN(pool, 2);
            assert.ok(a!.shared && b!.shared && a!.conn === b!.conn);
            assert.equal(a!.conn.users, 2);
            const c = await pool.claimShared('third');
            assert.equal(c.shared, false);
            assert.notEqual(c.id, a!.id);
            assert.equal(c.conn.state, ConnState.BUSY);
            assert.deepEqual(pool.stats().sharedUsers, 2);
            const rs = await Promise.all([a!, b!, c].map((h, i) => h.query('SELECT $1::int AS n', [i])));
            assert.deepEqual(rs.map((r) => r.rows[0]!['n']), [0, 1, 2]);
            /* a place freed on the shared connection is taken again */
            a!.release();
            const d = await pool.claimShared('fourth');
            assert.equal(d.shared, true);
            assert.equal(d.conn, b!.conn);
            [b!, c, d].forEach((h) => h.release());
            assert.ok(pool.connections().every((k) => k.state === ConnState.IDLE));
            assert.equal(pool.counters.sharedClaims, 3);
        });
    });

    test('pipelineConnections 2 spreads claims over two backends', async () => {
        await withPool({ maxConnections: 3, pipelineConnections: 2, pipelineDepth: 32 }, async (pool) => {
            const hs = await claimN(pool, 6);
            const conns = new Set(hs.map((h) => h.conn));
            assert.equal(conns.size, 2);
            assert.deepEqual([...conns].map((c) => c.users), [3, 3]);
            assert.equal(pool.stats().shared, 2);
            assert.equal(pool.stats().idle, 1);
            const pids = await Promise.all(hs.map(async (h) =>
                (await h.query('SELECT pg_backend_pid() AS pid', [])).rows[0]!['pid']));
            assert.equal(new Set(pids).size, 2);
            hs.forEach((h) => h.release());
            assert.equal(pool.stats().idle, 3);
        });
    });

    test('pipelineConnections is capped at maxConnections - 1: with one connection, claimShared is claim', async () => {
        await withPool({ maxConnections: 1, pipelineConnections: 2 }, async (pool) => {
            const a = await pool.claimShared('a');
            assert.equal(a.shared, false);
            assert.equal(a.conn.state, ConnState.BUSY);
            let got: PgHandle | null = null;
            const pb = pool.claimShared('b').then((h) => {
                got = h;
                return h;
            });
            await sleep(50);
            assert.equal(got, null, 'the second claim waits for the only connection');
            assert.equal(pool.stats().waiters, 1);
            assert.deepEqual((await a.query('SELECT $1::int AS n', [1])).rows, [{ n: 1 }]);
            a.release();
            const b = await pb;
            assert.equal(b.shared, false);
            assert.equal(b.id, a.id);
            await b.begin();
            await b.commit();
            b.release();
            assert.equal(pool.counters.sharedClaims, 0);
        });
    });
});

/* ---- pipelining ---- */

test('statements are pipelined: written at once, run one after the other on one backend', async () => {
    await withPool({ maxConnections: 2, pipelineConnections: 1 }, async (pool) => {
        const hs = await claimN(pool, 3);
        const conn = hs[0]!.conn;
        const sql = 'SELECT pg_sleep(0.2) AS s, $1::int AS n, pg_backend_pid() AS pid';
        /* warm the statement so that the timing is the execution only */
        await hs[0]!.query(sql, [-1]);
        const t0 = Date.now();
        const ps = hs.map((h, i) => h.query(sql, [i]));
        /* every statement is on the wire before any answer: one running, two sent behind it */
        assert.ok(internals(conn)._activeQuery !== null);
        assert.equal(internals(conn)._sentQueryQueue.length, 2);
        assert.equal(conn.corked, true, 'this turn\'s writes are corked');
        await new Promise((r) => setImmediate(r));
        assert.equal(conn.corked, false);
        const done: number[] = [];
        const rs = await Promise.all(ps.map((p) => p.then((r) => {
            done.push(Date.now() - t0);
            return r;
        })));
        const total = Date.now() - t0;
        assert.deepEqual(rs.map((r) => r.rows[0]!['n']), [0, 1, 2]);
        assert.equal(new Set(rs.map((r) => r.rows[0]!['pid'])).size, 1, 'one backend');
        assert.equal(rs[0]!.rows[0]!['pid'], internals(conn).processID);
        /* sequential on one backend: ~0.2, ~0.4, ~0.6 s */
        assert.ok(total >= 580 && total < 1500, `total ${total} ms`);
        assert.ok(done[0]! >= 190 && done[0]! < 600, `first answer after ${done[0]} ms`);
        hs.forEach((h) => h.release());
        assert.equal(conn.state, ConnState.IDLE);
    });
});

/* ---- failures ---- */

describe('failures on a shared connection', () => {
    test('an error fails only its own statement; the connection stays in use', async () => {
        await withPool({ maxConnections: 2, pipelineConnections: 1 }, async (pool) => {
            const hs = await claimN(pool, 5);
            const conn = hs[0]!.conn;
            const div = 'SELECT 100 / $1::int AS q';
            const ins = 'INSERT INTO pp_items (k, n) VALUES ($1, $2)';
            const settled = await Promise.allSettled([
                hs[0]!.query(div, [4]),
                hs[1]!.query(div, [0]),
                hs[2]!.query(ins, ['row1', 1]),
                hs[3]!.query(div, [5]),
                hs[4]!.query(ins, ['pipe-new', 7]),
            ]);
            const ok = (i: number) => {
                const s = settled[i]!;
                assert.equal(s.status, 'fulfilled', `statement ${i}: ${String((s as PromiseRejectedResult).reason)}`);
                return (s as PromiseFulfilledResult<{ rows: Obj[]; rowCount: number }>).value;
            };
            const bad = (i: number) => {
                const s = settled[i]!;
                assert.equal(s.status, 'rejected', `statement ${i} should fail`);
                return (s as PromiseRejectedResult).reason as Obj;
            };
            assert.deepEqual(ok(0).rows, [{ q: 25 }]);
            assert.deepEqual(ok(3).rows, [{ q: 20 }]);
            assert.equal(ok(4).rowCount, 1);
            const dz = bad(1);
            assert.equal(dz.name, 'error');
            assert.equal(dz.message, 'division by zero');
            assert.equal(dz.info?.sqlState, '22012');
            const uq = bad(2);
            assert.equal(uq.name, 'UniqueAttributeError');
            assert.equal(uq.message, '"k" is a unique attribute; value "row1" already exists');
            /* nobody is marked broken: the connection keeps its users and stays SHARED */
            assert.ok(hs.every((h) => !h.broken));
            assert.equal(conn.broken, false);
            assert.equal(conn.state, ConnState.SHARED);
            /* the same statements again on the same pipeline */
            const again = await Promise.all([hs[1]!.query(div, [10]), hs[2]!.query('SELECT n FROM pp_items WHERE k = $1',
                ['pipe-new'])]);
            assert.deepEqual(again.map((r) => r.rows), [[{ q: 10 }], [{ n: 7 }]]);
            hs.forEach((h) => h.release());
            assert.equal(conn.state, ConnState.IDLE);
            assert.equal(pool.counters.destroyed, 0);
            const next = await pool.claimShared('next');
            assert.equal(next.conn, conn);
            assert.deepEqual((await next.query(div, [50])).rows, [{ q: 2 }]);
            next.release();
            await db.query("DELETE FROM pp_items WHERE k = 'pipe-new'");
        });
    });

    test('timeout of the running statement: QueryTimeoutError, backend cancelled, connection closed after its last user', async () => {
        await withPool({ maxConnections: 3, pipelineConnections: 1 }, async (pool) => {
            const [slow, behind] = await claimN(pool, 2);
            const conn = slow!.conn;
            slow!.setTimeout(200);
            const t0 = Date.now();
            const ps = slow!.query('SELECT pg_sleep(5), $1::int AS n', [1]);
            const pb = behind!.query('SELECT $1::int AS n', [2]);
            const err = await failure(ps);
            assert.equal(err.name, 'QueryTimeoutError');
            assert.match(err.message, /^query timeout: SELECT pg_sleep\(5\)/);
            assert.ok(Date.now() - t0 < 1000);
            assert.equal(slow!.broken, true);
            /* released at once, as withConnection does */
            slow!.release();
            assert.equal(conn.broken, true);
            assert.equal(conn.state, ConnState.SHARED, 'still used by the statement behind');
            /* no new statement joins a connection that will close */
            const extra = await pool.claimShared('extra');
            assert.notEqual(extra.conn, conn);
            extra.release();
            /* the statement behind it runs as soon as PostgreSQL cancels the sleep */
            const rb = await bounded(pb, 3000, 'the statement behind the cancelled one');
            assert.deepEqual(rb.rows, [{ n: 2 }]);
            assert.ok(Date.now() - t0 < 2500, `cancelled in ${Date.now() - t0} ms`);
            assert.equal(conn.state, ConnState.SHARED);
            behind!.release();
            assert.equal(conn.state, ConnState.CLOSED);
            assert.equal(pool.counters.destroyed, 1);
            assert.ok(!pool.connections().includes(conn));
            /* the pool refills and sharing goes on */
            await until(() => pool.stats().idle === 3, 'refill');
            const h = await pool.claimShared('after');
            assert.deepEqual((await h.query('SELECT $1::int AS n', [3])).rows, [{ n: 3 }]);
            h.release();
        });
    });

    test('timeout of a statement queued behind a slow one: QueryTimeoutError, no cancel', async () => {
        await withPool({ maxConnections: 2, pipelineConnections: 1 }, async (pool) => {
            const [slow, queued] = await claimN(pool, 2);
            const conn = slow!.conn;
            queued!.setTimeout(150);
            const t0 = Date.now();
            const ps = slow!.query('SELECT pg_sleep(0.5) AS s, $1::int AS n', [1]);
            const err = await failure(queued!.query('SELECT $1::int AS n', [2]));
            assert.equal(err.name, 'QueryTimeoutError');
            const waited = Date.now() - t0;
            assert.ok(waited >= 140 && waited < 480, `timed out after ${waited} ms`);
            assert.equal(queued!.broken, false, 'nothing of its own to cancel');
            assert.equal(conn.broken, false);
            const rs = await ps;
            assert.deepEqual(rs.rows[0]!['n'], 1, 'the slow statement was not cancelled');
            assert.ok(Date.now() - t0 >= 480);
            /* let the late answer of the timed-out statement arrive, then release */
            await until(() => internals(conn)._activeQuery === null &&
                internals(conn)._sentQueryQueue.length === 0, 'pipeline drained');
            queued!.release();
            slow!.release();
            assert.equal(conn.state, ConnState.IDLE);
            assert.equal(pool.counters.destroyed, 0);
            const h = await pool.claimShared('after');
            assert.equal(h.conn, conn);
            assert.deepEqual((await h.query('SELECT $1::int AS n', [3])).rows, [{ n: 3 }]);
            h.release();
        });
    });

    test('a statement that timed out in the queue does not hand its late answer to the next user', async () => {
        await withPool({ maxConnections: 3, pipelineConnections: 1 }, async (pool) => {
            const [slow, q1, q2] = await claimN(pool, 3);
            const conn = slow!.conn;
            q1!.setTimeout(100);
            q2!.setTimeout(100);
            const ps = slow!.query('SELECT pg_sleep(0.4) AS s, $1::int AS n', [1]);
            const e1 = failure(q1!.query('SELECT pg_sleep(0.2) AS s, $1::int AS n', [2]));
            const e2 = failure(q2!.query('SELECT pg_sleep(0.2) AS s, $1::int AS n', [3]));
            assert.equal((await e1).name, 'QueryTimeoutError');
            assert.equal((await e2).name, 'QueryTimeoutError');
            q1!.release();
            q2!.release();
            assert.equal((await ps).rows[0]!['n'], 1);
            slow!.release();
            /* every connection, exclusively, answers its own statement */
            const held: PgHandle[] = [];
            try {
                for (let i = 0; i < 3; i++) {
                    const h = await bounded(pool.claim(`x${i}`), 3000, 'claim');
                    held.push(h);
                    const r = await bounded(h.query('SELECT $1::int AS mine', [40 + i]), 3000,
                        `exclusive query on connection ${h.id}${h.conn === conn ? ' (was shared)' : ''}`);
                    assert.deepEqual(r.rows, [{ mine: 40 + i }], `connection ${h.id}` +
                        (h.conn === conn ? ' (was shared)' : ''));
                    const r2 = await bounded(h.query('SELECT $1::text AS again', ['x']), 3000, 'second query');
                    assert.deepEqual(r2.rows, [{ again: 'x' }]);
                }
            } finally {
                held.forEach((h) => h.release());
            }
        });
    });

    test('terminated backend: every statement in flight fails, the connection is replaced', async () => {
        await withPool({ maxConnections: 3, pipelineConnections: 1 }, async (pool) => {
            const hs = await claimN(pool, 4);
            const conn = hs[0]!.conn;
            const pid = (await hs[0]!.query('SELECT pg_backend_pid() AS pid', [])).rows[0]!['pid'] as number;
            const ps = [
                hs[0]!.query('SELECT pg_sleep(5), $1::int AS n', [0]),
                ...hs.slice(1).map((h, i) => h.query('SELECT $1::int AS n', [i + 1])),
            ];
            const outcome = Promise.allSettled(ps);
            await sleep(100);
            await db.query('SELECT pg_terminate_backend($1)', [pid]);
            const t0 = Date.now();
            const settled = await bounded(outcome, 4000, 'statements on a terminated backend');
            assert.ok(Date.now() - t0 < 2000);
            assert.ok(settled.every((s) => s.status === 'rejected'), JSON.stringify(settled));
            const reasons = settled.map((s) => (s as PromiseRejectedResult).reason as Obj);
            assert.equal(reasons[0]!.name, 'error');
            assert.equal(reasons[0]!.message, 'terminating connection due to administrator command');
            for (const r of reasons.slice(1)) {
                assert.equal(r.name, 'error');
                assert.match(r.message, /Connection terminated unexpectedly|terminating connection/);
            }
            assert.ok(hs.every((h) => h.broken), 'every handle knows the connection is gone');
            /* new shared claims avoid it while its users are still attached */
            const during = await pool.claimShared('during');
            assert.notEqual(during.conn, conn);
            during.release();
            hs.forEach((h) => h.release());
            assert.equal(conn.state, ConnState.CLOSED);
            assert.ok(!pool.connections().includes(conn));
            assert.ok(pool.counters.destroyed >= 1);
            await until(() => pool.stats().idle === 3, 'refill');
            const fresh = await claimN(pool, 2, 'fresh');
            assert.ok(fresh.every((h) => h.shared));
            const rows = await Promise.all(fresh.map((h) => h.query('SELECT pg_backend_pid() AS pid', [])));
            assert.ok(rows.every((r) => r.rows[0]!['pid'] !== pid));
            fresh.forEach((h) => h.release());
        });
    });
});

/* ---- LeanQuery ---- */

describe('LeanQuery', () => {
    test('a statement with no result columns (NoData) reports rowCount on the first and the cached run', async () => {
        await withPool({ maxConnections: 2, pipelineConnections: 1 }, async (pool) => {
            const h = await pool.claimShared('u');
            try {
                const upd = 'UPDATE pp_items SET n = n + $1 WHERE k LIKE $2';
                const r1 = await h.query(upd, [0, 'row%']);
                assert.deepEqual(r1, { rows: [], rowCount: 5 });
                const r2 = await h.query(upd, [0, 'row_']);
                assert.deepEqual(r2, { rows: [], rowCount: 5 });
                const r3 = await h.query(upd, [0, 'nothing%']);
                assert.deepEqual(r3, { rows: [], rowCount: 0 });
                /* the same, pipelined: three runs in one turn */
                const rs = await Promise.all([h.query(upd, [0, 'row1']), h.query(upd, [0, 'row%']),
                    h.query(upd, [0, 'x'])]);
                assert.deepEqual(rs.map((r) => r.rowCount), [1, 5, 0]);
                /* an INSERT, first and cached run */
                const ins = 'INSERT INTO pp_items (k, n) VALUES ($1, $2)';
                assert.deepEqual(await h.query(ins, ['nd1', 1]), { rows: [], rowCount: 1 });
                assert.deepEqual(await h.query(ins, ['nd2', 2]), { rows: [], rowCount: 1 });
                const del = 'DELETE FROM pp_items WHERE k LIKE $1';
                assert.deepEqual(await h.query(del, ['nd%']), { rows: [], rowCount: 2 });
                assert.deepEqual(await h.query(del, ['nd%']), { rows: [], rowCount: 0 });
            } finally {
                h.release();
            }
        });
    });

    test('a SELECT returns identical morayTypes rows on the described and the cached-shape run', async () => {
        await withPool({ maxConnections: 2, pipelineConnections: 1 }, async (pool) => {
            const sql = 'SELECT $1::numeric AS num, $2::int8 AS big, $3::jsonb AS j, $4::timestamptz AS ts, ' +
                'NULL::text AS nul, $5::text AS s, $6::int4[] AS arr, $7::bool AS b';
            const vals = (s: string) => ['12.50', '9007199254740993', JSON.stringify({ a: [1, { b: null }], s }),
                '2020-01-02T03:04:05.678Z', s, [1, null, 3], true];
            const want = (s: string) => ({
                num: 12.5, big: '9007199254740993', j: { a: [1, { b: null }], s },
                ts: new Date('2020-01-02T03:04:05.678Z'), nul: null, s, arr: [1, null, 3], b: true,
            });
            const [h1, h2] = await claimN(pool, 2);
            try {
                /* two first uses in one pipeline (both describe), then the cached shape */
                const [a, b] = await Promise.all([h1!.query(sql, vals('a')), h2!.query(sql, vals('b'))]);
                const c = await h1!.query(sql, vals('a'));
                const [d, e] = await Promise.all([h1!.query(sql, vals('d')), h2!.query(sql, vals('b'))]);
                assert.deepEqual(a.rows, [want('a')]);
                assert.deepEqual(b.rows, [want('b')]);
                assert.deepEqual(c.rows, a.rows);
                assert.deepEqual(d.rows, [want('d')]);
                assert.deepEqual(e.rows, b.rows);
                assert.ok(c.rows[0]!['ts'] instanceof Date);
                assert.equal(c.rowCount, 1);
                /* no rows on the first run, rows on the next; several rows */
                const byPrefix = 'SELECT k, n FROM pp_items WHERE k LIKE $1 ORDER BY k';
                assert.deepEqual(await h1!.query(byPrefix, ['none%']), { rows: [], rowCount: 0 });
                const many = await h1!.query(byPrefix, ['row%']);
                assert.equal(many.rowCount, 5);
                assert.deepEqual(many.rows.map((r) => r['k']), ['row1', 'row2', 'row3', 'row4', 'row5']);
                assert.ok(many.rows.every((r) => typeof r['n'] === 'number'));
            } finally {
                h1!.release();
                h2!.release();
            }
            /* the same text on an exclusive connection, through the same path */
            const x = await pool.claim('x');
            try {
                assert.deepEqual((await x.query(sql, vals('x'))).rows, [want('x')]);
                assert.deepEqual((await x.query(sql, vals('x'))).rows, [want('x')]);
            } finally {
                x.release();
            }
        });
    });

    test('a bind failure rejects only its query; the connection serves its other users', async () => {
        await withPool({ maxConnections: 2, pipelineConnections: 1 }, async (pool) => {
            const [h1, h2, h3] = await claimN(pool, 3);
            const conn = h1!.conn;
            const throwing = { toPostgres() {
                throw new Error('boom');
            } };
            const cyclic: Obj = {};
            cyclic['toPostgres'] = () => cyclic;
            const sql = 'SELECT $1::text AS v';
            const settled = await Promise.allSettled([
                h1!.query(sql, [throwing]),
                h2!.query('SELECT $1::int AS n', [5]),
                h3!.query('SELECT $1::text AS w', [cyclic]),
                h2!.query('SELECT $1::int AS n', [6]),
            ]);
            assert.equal(settled[0]!.status, 'rejected');
            assert.equal(((settled[0] as PromiseRejectedResult).reason as Obj).message, 'boom');
            assert.equal(settled[2]!.status, 'rejected');
            assert.match(((settled[2] as PromiseRejectedResult).reason as Obj).message, /circular reference/);
            assert.deepEqual(settled.filter((s) => s.status === 'fulfilled')
                .map((s) => (s as PromiseFulfilledResult<{ rows: Obj[] }>).value.rows), [[{ n: 5 }], [{ n: 6 }]]);
            assert.equal(conn.state, ConnState.SHARED);
            /*
             * A failure without a SQLSTATE counts as a connection error
             * (handle.ts failed()): the handles that saw it are broken, the
             * others are not, and every one keeps using the connection.
             */
            assert.deepEqual([h1!, h2!, h3!].map((h) => h.broken), [true, false, true]);
            const more = await Promise.all([h1!.query('SELECT $1::int AS n', [7]),
                h2!.query('SELECT $1::text AS other', ['ok']), h3!.query('SELECT $1::int AS n', [8])]);
            assert.deepEqual(more.map((r) => r.rows), [[{ n: 7 }], [{ other: 'ok' }], [{ n: 8 }]]);
            h1!.release();
            assert.equal(conn.state, ConnState.SHARED);
            h2!.release();
            h3!.release();
            /* ...and it is closed after its last user rather than reused */
            assert.equal(conn.state, ConnState.CLOSED);
            assert.equal(pool.counters.destroyed, 1);
            await until(() => pool.stats().idle === 2, 'refill');
            const next = await pool.claimShared('next');
            assert.deepEqual((await next.query(sql, ['fine'])).rows, [{ v: 'fine' }]);
            next.release();
        });
    });

    test('after a bind failure the same prepared statement still works on that connection', async () => {
        await withPool({ maxConnections: 2, pipelineConnections: 1 }, async (pool) => {
            const bad = { toPostgres() {
                throw new Error('boom');
            } };
            const [h, other] = await claimN(pool, 2);
            try {
                /* parsed before the failure; then another request on the pipeline runs it */
                const sql = 'SELECT $1::text AS v /* parsed first */';
                assert.deepEqual((await h!.query(sql, ['a'])).rows, [{ v: 'a' }]);
                await assert.rejects(h!.query(sql, [bad]), /boom/);
                assert.deepEqual((await other!.query(sql, ['b'])).rows, [{ v: 'b' }]);
                /* the failure on the first use; the next use is pipelined right behind it */
                const sql2 = 'SELECT $1::text AS v /* failed first */';
                const [e, r] = await Promise.allSettled([h!.query(sql2, [bad]), other!.query(sql2, ['c'])]);
                assert.equal(e.status, 'rejected');
                assert.deepEqual(r.status === 'fulfilled' ? r.value.rows : String(r.reason), [{ v: 'c' }]);
                assert.deepEqual((await other!.query(sql2, ['d'])).rows, [{ v: 'd' }]);
            } finally {
                h!.release();
                other!.release();
            }
        });
    });
});

/* ---- through the server and the npm moray client ---- */

function kang(srv: ServerProcess): Promise<Obj> {
    return kangSnapshot(srv.monitorPort);
}

describe('server: getObject on shared connections (pipelineConnections 2)', () => {
    let srv: ServerProcess;
    let c: MorayClient;
    const BUCKET = 'pp_bucket';
    const N = 40;

    before(async () => {
        const base = standaloneConfig(db, { monitorPort: await freePort() });
        srv = await startServer({ config: { ...base,
            standalone: { url: db.url, pg: { maxConnections: 4, pipelineConnections: 2, pipelineDepth: 32 } } } });
        c = await morayClient(srv.port);
        await call(c, 'createBucket', BUCKET, { index: { n: { type: 'number' } } }, {});
        await Promise.all(Array.from({ length: N }, (_, i) =>
            call(c, 'putObject', BUCKET, `k${i}`, { n: i, s: `value ${i}` }, {})));
    });

    after(async () => {
        c?.close();
        await srv?.stop();
    });

    function checkGet(i: number, r: PromiseSettledResult<Obj>): void {
        const key = i % 2 === 0 ? `k${(i / 2) % N}` : `missing-${i}`;
        if (i % 2 === 0) {
            assert.equal(r.status, 'fulfilled', `${key}: ${String((r as PromiseRejectedResult).reason)}`);
            const o = (r as PromiseFulfilledResult<Obj>).value;
            assert.equal(o['bucket'], BUCKET);
            assert.equal(o['key'], key);
            assert.deepEqual(o['value'], { n: (i / 2) % N, s: `value ${(i / 2) % N}` });
            assert.equal(typeof o['_etag'], 'string');
        } else {
            assert.equal(r.status, 'rejected', `${key} should not exist`);
            const e = innermostError((r as PromiseRejectedResult).reason) as Obj;
            assert.equal(e.name, 'ObjectNotFoundError');
            assert.equal(e.message, `${BUCKET}::${key} does not exist`);
        }
    }

    const getAll = (n: number) => Promise.allSettled(Array.from({ length: n }, (_, i) =>
        call<Obj>(c, 'getObject', BUCKET, i % 2 === 0 ? `k${(i / 2) % N}` : `missing-${i}`, {})));

    test('200 concurrent getObject calls return the right records and errors', async () => {
        const before0 = (await kang(srv))['counters']['pool'].sharedClaims as number;
        const res = await getAll(200);
        res.forEach((r, i) => checkGet(i, r));
        const s = await kang(srv);
        const shared = (s['counters']['pool'].sharedClaims as number) - before0;
        assert.ok(shared > 0, 'getObject used shared connections');
        assert.equal(s['counters']['pool'].destroyed, 0);
        const conns = Object.values(s['pg_connection'] as Obj);
        assert.equal(conns.length, 4);
        for (const p of conns) {
            assert.equal(p.state, 'IDLE');
            assert.equal(p.sharedUsers, 0);
        }
        const pool = s['pg_pool']['pool'];
        assert.deepEqual({ shared: pool.shared, sharedUsers: pool.sharedUsers, idle: pool.idle },
            { shared: 0, sharedUsers: 0, idle: 4 });
    });

    test('kang shows SHARED connections and their users while reads are in flight', async () => {
        /* hold the reads inside PostgreSQL with a table lock so that the snapshot sees them */
        const locker = await db.client();
        try {
            await locker.query('BEGIN');
            await locker.query(`LOCK TABLE ${BUCKET} IN ACCESS EXCLUSIVE MODE`);
            const inflight = getAll(40);
            let s: Obj = {};
            const deadline = Date.now() + 5000;
            while (Date.now() < deadline) {
                s = await kang(srv);
                if (s['pg_pool']['pool'].sharedUsers === 40) {
                    break;
                }
                await sleep(20);
            }
            await locker.query('COMMIT');
            const pool = s['pg_pool']['pool'];
            assert.equal(pool.sharedUsers, 40, JSON.stringify(s['pg_connection']));
            assert.equal(pool.shared, 2);
            const conns = Object.values(s['pg_connection'] as Obj);
            assert.deepEqual(conns.map((p) => p.state).sort(), ['IDLE', 'IDLE', 'SHARED', 'SHARED']);
            for (const p of conns) {
                assert.equal(typeof p.sharedUsers, 'number');
                assert.equal(p.sharedUsers, p.state === 'SHARED' ? 20 : 0);
                assert.equal(p.claimedBy, null);
            }
            const res = await bounded(inflight, 5000, 'reads after the lock');
            res.forEach((r, i) => checkGet(i, r));
        } finally {
            await locker.end();
        }
        const after0 = await kang(srv);
        assert.ok(Object.values(after0['pg_connection'] as Obj).every((p) => p.state === 'IDLE'));
    });
});

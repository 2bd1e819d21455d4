/*
 * The server survives PostgreSQL faults without being restarted
 * (observability.md §4.2, §4.3; manatee.md §6): real PostgreSQL 15
 * (helpers/tmp-pg, controlled with pg_ctl), the real server process in
 * standalone mode and the npm moray client.
 *
 *   phase                                   what a client must see
 *   ─────────────────────────────────────   ────────────────────────────────────
 *   server up, PostgreSQL not running       shallow ping ok; deep ping
 *                                           `Error: connect ECONNREFUSED`; after
 *                                           10 failed connects the pool is FAILED
 *                                           and deep pings fail at once
 *   PostgreSQL started                      deep ping ok within the retry delay
 *                                           (<= 2.5 s), no server restart
 *   pg_ctl stop -m fast, 6 s, start         errors only from the reference set
 *   under load                              (connect ECONNREFUSED, raw `error`
 *                                           57P01 / terminated connection,
 *                                           NoDatabasePeersError), no call past
 *                                           10 s, then normal service
 *   pg_terminate_backend(every pool conn)   idle: replaced, next requests ok;
 *                                           busy: that RPC gets the raw 57P01
 *                                           error, later requests ok
 *   same, with a claim waiting (pool        the waiter gets a fresh connection,
 *   in process, and maxConnections 1)       never the terminated one
 *   maxConnections 1, maxQueueLength 1,     NoDatabasePeersError + OverloadedError
 *   slow concurrent requests                context; shallow ping unaffected
 *
 * A database prepared by pg-setup is assumed (buckets_config exists), as in
 * production.  Runs in ~35 s: the FAILED state needs 10 rounds of back-off
 * (~16 s), and the restart keeps PostgreSQL down 6 s.
 *
 * Measured and printed: time to the FAILED state, recovery after start,
 * the restart gap (stop → first success), error names seen.
 */

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import * as pg from 'pg';
import { call, collect, morayClient, startServer, type MorayClient, type ServerProcess } from '../helpers/harness';
import { startTmpPg, type TmpPg } from '../helpers/tmp-pg';
import { CREATE_BUCKETS_CONFIG } from '../../src/schema/bootstrap';
import { PgPool } from '../../src/pg/pool';
import { StaticTopology } from '../../src/pg/topology';

const PG_BIN = process.env['PG_BIN'] ?? '/usr/lib/postgresql/15/bin';
const skip = fs.existsSync(path.join(PG_BIN, 'pg_ctl')) ? false :
    `PostgreSQL 15 binaries not found in ${PG_BIN} (apt-get install postgresql-15)`;
if (skip !== false) {
    console.log(`# skipping db-faults: ${skip}`);
}

const DB = 'moray_faults';
const BUCKET = 'faults';
const CALL_DEADLINE_MS = 10000;
/* longer than a queued claim may wait (5 s), so the gap shows errors, not only waits */
const DOWN_MS = 6000;
const ALLOWED_ERRORS = new Set(['Error', 'NoDatabasePeersError', 'error']);

const execFileP = promisify(execFile);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/* pg_ctl on the tmp-pg cluster (as user postgres when root), same options tmp-pg used. */
async function pgCtl(tp: TmpPg, action: 'start' | 'stop'): Promise<void> {
    const data = path.join(tp.dir, 'data');
    const args = action === 'start'
        ? ['-D', data, '-l', path.join(tp.dir, 'pg.log'), '-w', '-t', '30', '-o',
            `-k ${tp.dir} -p ${tp.port} -c listen_addresses=127.0.0.1 -c fsync=off -c timezone=UTC`, 'start']
        : ['-D', data, '-m', 'fast', '-w', 'stop'];
    const bin = path.join(PG_BIN, 'pg_ctl');
    const [cmd, argv] = process.getuid?.() === 0 ? ['runuser', ['-u', 'postgres', '--', bin, ...args]] : [bin, args];
    await execFileP(cmd, argv);
}

async function admin(tp: TmpPg, sql: string, params: unknown[] = [], database = 'postgres'): Promise<pg.QueryResult> {
    const c = new pg.Client({ host: '127.0.0.1', port: tp.port, user: 'postgres', database });
    await c.connect();
    try {
        return await c.query(sql, params);
    } finally {
        await c.end();
    }
}

/* pids of the server's pooled connections */
async function poolPids(tp: TmpPg): Promise<number[]> {
    const r = await admin(tp, "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = 'moray' " +
        'ORDER BY pid', [DB]);
    return r.rows.map((x) => x.pid as number);
}

type Outcome = { ok: true; ms: number; end: number } |
    { ok: false; ms: number; end: number; hung: boolean; name?: string; message?: string; context?: unknown };

async function attempt(p: Promise<unknown>, ms = CALL_DEADLINE_MS): Promise<Outcome> {
    const t0 = Date.now();
    let timer: NodeJS.Timeout | undefined;
    const hang = new Promise<'hang'>((r) => { timer = setTimeout(() => r('hang'), ms); });
    try {
        const r = await Promise.race([p.then(() => 'done' as const), hang]);
        if (r === 'hang') {
            return { ok: false, ms: Date.now() - t0, end: Date.now(), hung: true };
        }
        return { ok: true, ms: Date.now() - t0, end: Date.now() };
    } catch (err) {
        const e = err as Error & { context?: unknown };
        return { ok: false, ms: Date.now() - t0, end: Date.now(), hung: false, name: e.name, message: e.message,
            context: e.context };
    } finally {
        clearTimeout(timer);
    }
}

function serverConfig(tp: TmpPg, pgTunables: Record<string, unknown>): Record<string, unknown> {
    return {
        server_uuid: 'test-server', datacenter: 'test-dc',
        port: 0, monitorPort: 0, bindip: '127.0.0.1',
        standalone: { url: `postgres://postgres@127.0.0.1:${tp.port}/${DB}`, pg: pgTunables },
    };
}

describe('database faults (standalone server)', { skip }, () => {
    let tp: TmpPg;
    let srv: ServerProcess;
    let c: MorayClient;

    before(async () => {
        tp = await startTmpPg();
        await admin(tp, `CREATE DATABASE ${DB} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'`);
        /* a database prepared by pg-setup, as in production */
        await admin(tp, CREATE_BUCKETS_CONFIG, [], DB);
        /* the server starts while nothing listens on the port */
        await pgCtl(tp, 'stop');
        srv = await startServer({ config: serverConfig(tp, { maxConnections: 4 }) });
        c = await morayClient(srv.port);
    });

    after(async () => {
        c?.close();
        await srv?.stop();
        await tp?.stop();
    });

    test('PostgreSQL absent at start-up: deep ping ECONNREFUSED, pool FAILED, then recovers on its own', async (t) => {
        const t0 = Date.now();
        await call(c, 'ping', {});
        const first = await attempt(call(c, 'ping', { deep: true, timeout: 20000 }));
        assert.equal(first.ok, false);
        assert.ok(!first.ok && !first.hung);
        assert.equal(!first.ok && first.name, 'Error');
        assert.equal(!first.ok && first.message, 'connect ECONNREFUSED');

        /* after 10 failed attempts (~19 s of back-off) the pool fails claims at once */
        let failedAfter = -1;
        while (Date.now() - t0 < 40000) {
            const o = await attempt(call(c, 'ping', { deep: true, timeout: 20000 }));
            assert.ok(!o.ok && !o.hung && o.name === 'Error' && o.message === 'connect ECONNREFUSED',
                JSON.stringify(o));
            if (o.ms < 200) {
                failedAfter = Date.now() - t0;
                break;
            }
        }
        assert.ok(failedAfter > 0, 'pool reached the failed state');
        const fast = await attempt(call(c, 'ping', { deep: true, timeout: 20000 }));
        assert.ok(!fast.ok && fast.ms < 200 && fast.message === 'connect ECONNREFUSED', JSON.stringify(fast));
        await call(c, 'ping', {});

        await pgCtl(tp, 'start');
        const startedAt = Date.now();
        let recoveredMs = -1;
        while (Date.now() - startedAt < 15000) {
            const o = await attempt(call(c, 'ping', { deep: true, timeout: 20000 }));
            if (o.ok) {
                recoveredMs = Date.now() - startedAt;
                break;
            }
            assert.ok(!o.hung && o.name === 'Error' && o.message === 'connect ECONNREFUSED', JSON.stringify(o));
            await sleep(50);
        }
        t.diagnostic(`first deep ping failed in ${first.ms} ms; pool FAILED (immediate ECONNREFUSED, ` +
            `${fast.ms} ms) ${failedAfter} ms after the first ping; recovered ${recoveredMs} ms after PostgreSQL started`);
        assert.ok(recoveredMs >= 0 && recoveredMs < 5000, `recovered within 5 s (${recoveredMs} ms)`);
        await call(c, 'createBucket', BUCKET, { index: { n: { type: 'number' } } }, {});
        await call(c, 'putObject', BUCKET, 'k0', { n: 0 }, {});
        /* the pool filled up to maxConnections */
        await waitFor('4 pooled connections', async () => (await poolPids(tp)).length === 4);
    });

    test('PostgreSQL stopped and started under load: reference errors, no hang, recovers', async (t) => {
        const outcomes: Outcome[] = [];
        const acked = new Map<string, number>();
        let stop = false;
        const loops: Promise<void>[] = [];
        for (let w = 0; w < 3; w++) {
            loops.push((async () => {
                for (let i = 0; !stop; i++) {
                    const key = `restart-${w}-${i}`;
                    const o = await attempt(w === 2 ? call(c, 'ping', { deep: true, timeout: 20000 }) :
                        call(c, 'putObject', BUCKET, key, { n: i }, {}));
                    outcomes.push(o);
                    if (o.ok && w !== 2) {
                        acked.set(key, i);
                    }
                    await sleep(o.ok ? 5 : 50);
                }
            })());
        }
        await sleep(500);
        const stopAt = Date.now();
        await pgCtl(tp, 'stop');
        await sleep(DOWN_MS);
        await pgCtl(tp, 'start');
        const startAt = Date.now();
        await waitFor('requests succeed again', () => outcomes.some((o) => o.ok && o.end > startAt), 15000);
        await sleep(500);
        stop = true;
        await Promise.all(loops);

        const firstOk = Math.min(...outcomes.filter((o) => o.ok && o.end > startAt).map((o) => o.end));
        const failed = outcomes.filter((o): o is Extract<Outcome, { ok: false }> => !o.ok);
        const seen = new Map<string, number>();
        for (const o of failed) {
            const k = `${o.name}: ${o.message}`;
            seen.set(k, (seen.get(k) ?? 0) + 1);
        }
        t.diagnostic(`calls ${outcomes.length}, failed ${failed.length}; PostgreSQL down ${startAt - stopAt} ms; ` +
            `gap (stop -> first success) ${firstOk - stopAt} ms; start -> first success ${firstOk - startAt} ms; ` +
            `slowest call ${Math.max(...outcomes.map((o) => o.ms))} ms`);
        for (const [k, n] of seen) {
            t.diagnostic(`  error seen ${n}x: ${k}`);
        }
        assert.deepEqual(failed.filter((o) => o.hung), [], 'no call hangs');
        for (const o of failed) {
            assert.ok(o.name !== undefined && ALLOWED_ERRORS.has(o.name), `unexpected ${o.name}: ${o.message}`);
        }
        assert.ok(failed.some((o) => o.name === 'Error' && o.message === 'connect ECONNREFUSED'),
            'requests during the gap fail with connect ECONNREFUSED');
        assert.ok(firstOk - startAt < 5000, 'recovered within 5 s of the start');
        /* fresh requests all succeed, acknowledged writes are there */
        for (let i = 0; i < 10; i++) {
            await call(c, 'ping', { deep: true, timeout: 20000 });
        }
        for (const [k, n] of acked) {
            assert.equal((await call(c, 'getObject', BUCKET, k, {})).value.n, n);
        }
    });

    test('pg_terminate_backend of every idle pool connection: replaced, next requests succeed', async (t) => {
        await waitFor('4 pooled connections', async () => (await poolPids(tp)).length === 4);
        const old = await poolPids(tp);
        const r = await admin(tp, 'SELECT count(*)::int AS n FROM pg_stat_activity, ' +
            'LATERAL pg_terminate_backend(pid) AS killed WHERE pid = ANY($1) AND killed', [old]);
        assert.equal(r.rows[0].n, old.length);
        await waitFor('terminated backends gone', async () =>
            (await poolPids(tp)).every((p) => !old.includes(p)), 5000);
        for (let i = 0; i < 20; i++) {
            await call(c, 'putObject', BUCKET, `after-terminate-${i}`, { n: i }, {});
            assert.equal((await call(c, 'getObject', BUCKET, `after-terminate-${i}`, {})).value.n, i);
        }
        const replaced = await waitFor('pool back to 4 fresh connections', async () => {
            const now = await poolPids(tp);
            return now.length === 4 && now.every((p) => !old.includes(p));
        }, 5000);
        t.diagnostic(`old pids ${old.join(',')} -> new ${(await poolPids(tp)).join(',')} (+${replaced} ms)`);
        assert.equal(srv.proc.exitCode, null, 'the server is still running');
    });

    test('pg_terminate_backend of a busy connection: that RPC gets 57P01, later ones succeed', async () => {
        const sleeping = attempt(collect(c, 'sql', 'SELECT pg_sleep(5) AS slept', [], {}));
        let pid = 0;
        await waitFor('the sleep is running', async () => {
            const r = await admin(tp, "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND state = 'active' " +
                "AND query LIKE '%pg_sleep(5)%' AND pid <> pg_backend_pid()", [DB]);
            pid = r.rows[0]?.pid ?? 0;
            return pid !== 0;
        }, 5000);
        await admin(tp, 'SELECT pg_terminate_backend($1)', [pid]);
        const o = await sleeping;
        assert.ok(!o.ok && !o.hung, JSON.stringify(o));
        assert.equal(!o.ok && o.name, 'error');
        assert.equal(!o.ok && o.message, 'terminating connection due to administrator command');
        assert.ok(o.ms < 4000);
        for (let i = 0; i < 10; i++) {
            await call(c, 'ping', { deep: true, timeout: 20000 });
            await call(c, 'putObject', BUCKET, `after-busy-terminate-${i}`, { n: i }, {});
        }
        assert.equal(srv.proc.exitCode, null);
    });

    test('pool (in process): a connection whose backend was terminated is not handed to the next claim', async () => {
        /*
         * The RPC layer releases a connection as healthy after a PostgreSQL
         * error (a MorayError): PostgreSQL's FATAL 57P01 arrives before the
         * socket closes, so a waiting claim would get a dead connection.
         */
        const quiet = { info() {}, warn() {}, error() {}, debug() {}, trace() {}, child() { return quiet; } };
        const topology = new StaticTopology(`postgres://postgres@127.0.0.1:${tp.port}/${DB}`);
        const pool = new PgPool({
            topology, database: DB, user: 'postgres', log: quiet,
            tunables: { maxConnections: 1, connectTimeout: 1000, checkInterval: 60000, maxQueueLength: 10,
                targetClaimDelay: 500 },
        });
        topology.start();
        pool.start();
        try {
            for (let round = 0; round < 3; round++) {
                const h = await pool.claim(`sleeper-${round}`);
                const pid = (await h.query('SELECT pg_backend_pid() AS pid')).rows[0]!.pid as number;
                const sleeping = h.query('SELECT pg_sleep(5)').then(() => null, (e: Error) => e);
                const next = pool.claim(`next-${round}`);
                await sleep(50);
                await admin(tp, 'SELECT pg_terminate_backend($1)', [pid]);
                const err = await sleeping;
                assert.equal(err?.name, 'error');
                assert.equal(err?.message, 'terminating connection due to administrator command');
                h.release();
                const h2 = await next;
                try {
                    assert.notEqual(h2.id, h.id, 'a fresh connection');
                    assert.equal((await h2.query('SELECT 1 AS one')).rows[0]!.one, 1);
                } finally {
                    h2.release();
                }
            }
        } finally {
            await pool.close();
            await topology.stop();
        }
    });

    describe('maxConnections 1, maxQueueLength 1', () => {
        let small: ServerProcess;
        let sc: MorayClient;
        before(async () => {
            small = await startServer({ config: serverConfig(tp, { maxConnections: 1, maxQueueLength: 1 }) });
            sc = await morayClient(small.port);
        });
        after(async () => {
            sc?.close();
            await small?.stop();
        });

        test('overload -> NoDatabasePeersError (OverloadedError context), at once', async (t) => {
            await call(sc, 'ping', { deep: true, timeout: 20000 });
            const results = await Promise.all([0, 1, 2, 3].map(() =>
                attempt(collect(sc, 'sql', 'SELECT pg_sleep(1) AS slept', [], {}))));
            await call(sc, 'ping', {});
            const ok = results.filter((o) => o.ok);
            const failed = results.filter((o): o is Extract<Outcome, { ok: false }> => !o.ok);
            t.diagnostic(`4 concurrent slow requests: ${ok.length} ok (${ok.map((o) => o.ms).join(', ')} ms), ` +
                `${failed.length} rejected in ${failed.map((o) => o.ms).join(', ')} ms`);
            assert.equal(ok.length, 2, 'one running + one queued');
            assert.equal(failed.length, 2);
            for (const o of failed) {
                assert.equal(o.hung, false);
                assert.equal(o.name, 'NoDatabasePeersError');
                assert.equal(o.message, 'unable to acquire backend connection due to service being overloaded');
                assert.deepEqual(o.context, { name: 'OverloadedError', message: 'maximum moray queue length reached' });
                assert.ok(o.ms < 500, 'rejected at once, not after waiting');
            }
            await call(sc, 'ping', { deep: true, timeout: 20000 });
        });

        test('a queued request never inherits a terminated connection', async () => {
            for (let round = 0; round < 3; round++) {
                const sleeping = attempt(collect(sc, 'sql', 'SELECT pg_sleep(5) AS slept', [], {}));
                let pid = 0;
                await waitFor('the sleep is running', async () => {
                    const r = await admin(tp, "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND " +
                        "state = 'active' AND query LIKE '%pg_sleep(5)%' AND pid <> pg_backend_pid()", [DB]);
                    pid = r.rows[0]?.pid ?? 0;
                    return pid !== 0;
                }, 5000);
                /* this one waits in the queue for the only connection */
                const queued = attempt(call(sc, 'ping', { deep: true, timeout: 20000 }));
                await sleep(100);
                await admin(tp, 'SELECT pg_terminate_backend($1)', [pid]);
                const o = await sleeping;
                assert.ok(!o.ok && o.name === 'error' &&
                    o.message === 'terminating connection due to administrator command', JSON.stringify(o));
                const q = await queued;
                assert.ok(q.ok, `queued request got: ${JSON.stringify(q)}`);
            }
        });
    });
});

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 10000): Promise<number> {
    const t0 = Date.now();
    while (!(await cond())) {
        if (Date.now() - t0 > timeoutMs) {
            throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
        }
        await sleep(20);
    }
    return Date.now() - t0;
}

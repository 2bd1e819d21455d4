/*
 * The server follows the Manatee primary through ZooKeeper (manatee.md §4,
 * §6) and survives the primary dying: real ZooKeeper (Debian package), real
 * PostgreSQL 15 primary + synchronous standby (helpers/pg-replica), the real
 * server process (manatee mode) and the npm moray client.
 *
 *   ZooKeeper ──P/state──► moray-server (ManateeFollower ─► PgPool) ◄── moray client
 *                              │ role moray, db moray
 *                              ▼
 *          peer0 (primary) ══sync repl══► peer1 (standby → promoted)
 *
 * One scenario, in phases, on one server:
 *   1. state gen 1 names peer0; bucket + N acknowledged puts;
 *  1b. live switch to peer1 while it is still a standby (gen 2), and back
 *      (gen 3): an RPC busy on peer0 completes, then every pool connection
 *      to peer0 is closed; peer1 answers reads and refuses writes with the
 *      raw 25006 error (as a new Manatee primary does before its sync has
 *      caught up);
 *   2. malformed P/state: ignored (logged), writes keep going to peer0;
 *   3. ZooKeeper SIGKILLed for a while, then restarted: every request in
 *      between succeeds (last known primary), the follower reconnects (and
 *      re-reads the still-malformed state without losing the primary);
 *   4. failover under load: 4 writer loops keep putting; peer0 dies
 *      (immediate stop), 20 s later (Manatee's detection delay) peer1 is
 *      promoted and state gen 4 names peer1 (after the malformed state and
 *      the ZooKeeper restart: the follower must still follow).  Every
 *      call completes within CALL_DEADLINE_MS (no hang); the errors seen in
 *      the window are the reference ones; every acknowledged put (before
 *      and during the switch) is readable afterwards;
 *   5. Manatee's read-only window on the new primary: writes fail with the
 *      raw PostgreSQL 25006 error, reads succeed, writes resume after.
 *
 * Measured and printed (t.diagnostic): state write → first acknowledged
 * put on peer1 ("follow"), peer0 death → first acknowledged put ("gap"),
 * peer0 death → pool FAILED, ZooKeeper restart → follower reconnected,
 * error names seen.  Runs in ~35 s, 20 of them the detection delay.
 */

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { call, collect, morayClient, startServer, type MorayClient, type ServerProcess } from '../helpers/harness';
import { ManateeStateWriter, clusterState, peer, type Peer } from '../helpers/manatee-state';
import { pgReplicaSkip, startPgReplicaPair, type PgReplicaPair } from '../helpers/pg-replica';
import { startZooKeeper, zookeeperSkip, type ZooKeeperServer } from '../helpers/zookeeper';

const skip = zookeeperSkip() || pgReplicaSkip();
if (skip !== false) {
    console.log(`# skipping manatee-failover: ${skip}`);
}

const SHARD = '/manatee/1.moray.failover.test';
const BUCKET = 'failover_test';
const N_INITIAL = 50;
const WRITERS = 4;
const CALL_DEADLINE_MS = 10000;
/*
 * Between the primary's death and the new state, Manatee waits for the
 * dead sitter's ZooKeeper session to expire: 20 s is Triton's
 * sessionTimeout.  That is longer than a queued claim may wait (CoDel:
 * 5 s, 1.5 s with a standing queue) and longer than the pool's 10 rounds of
 * connection back-off (~16 s), so the window shows `connect ECONNREFUSED`
 * after waiting, then at once (pool FAILED), and the new state must bring
 * the pool out of FAILED.
 */
const DETECTION_DELAY_MS = 20000;
/* what the reference lets a client see while the primary changes (manatee.md §6) */
const ALLOWED_ERRORS = new Set(['Error', 'NoDatabasePeersError', 'error']);

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Outcome {
    key: string;
    value: number;
    start: number;
    end: number;
    ok: boolean;
    hung: boolean;
    errName?: string;
    errMsg?: string;
}

/* Resolve with the call's outcome; a call not settled within ms counts as hung. */
async function bounded<T>(p: Promise<T>, ms = CALL_DEADLINE_MS):
Promise<{ ok: true; v: T } | { ok: false; hung: boolean; err?: Error }> {
    let timer: NodeJS.Timeout | undefined;
    const hang = new Promise<'hang'>((r) => { timer = setTimeout(() => r('hang'), ms); });
    try {
        const r = await Promise.race([p.then((v) => ({ v })), hang]);
        if (r === 'hang') {
            return { ok: false, hung: true };
        }
        return { ok: true, v: r.v };
    } catch (err) {
        return { ok: false, hung: false, err: err as Error };
    } finally {
        clearTimeout(timer);
    }
}

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 15000): Promise<number> {
    const t0 = Date.now();
    while (!(await cond())) {
        if (Date.now() - t0 > timeoutMs) {
            throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
        }
        await sleep(20);
    }
    return Date.now() - t0;
}

function portOpen(port: number): Promise<boolean> {
    return new Promise((resolve) => {
        const s = net.connect({ host: '127.0.0.1', port });
        s.once('connect', () => { s.destroy(); resolve(true); });
        s.once('error', () => resolve(false));
    });
}

describe('manatee failover through the real server', { skip }, () => {
    let zk: ZooKeeperServer;
    let pair: PgReplicaPair;
    let writer: ManateeStateWriter;
    let srv: ServerProcess;
    let c: MorayClient;
    let peer0: Peer;
    let peer1: Peer;
    /* every acknowledged put: key -> value */
    const acked = new Map<string, number>();

    const logMsgs = (re: RegExp): Record<string, unknown>[] =>
        srv.records().filter((r) => typeof r.msg === 'string' && re.test(r.msg));

    const put = (key: string, value: number): Promise<unknown> =>
        call(c, 'putObject', BUCKET, key, { n: value, who: key }, {});

    before(async () => {
        const t0 = Date.now();
        [zk, pair] = await Promise.all([startZooKeeper(), startPgReplicaPair({ synchronous: true })]);
        peer0 = peer('127.0.0.1', pair.peers[0].port, 'peer0');
        peer1 = peer('127.0.0.1', pair.peers[1].port, 'peer1');
        writer = await ManateeStateWriter.open(zk.connStr, SHARD);
        await writer.putState(clusterState(1, peer0, peer1));
        srv = await startServer({
            config: {
                server_uuid: 'test-server', datacenter: 'test-dc',
                port: 0, monitorPort: 0, bindip: '127.0.0.1',
                bunyan: { level: 'info' },
                manatee: {
                    manatee: {
                        path: SHARD,
                        zk: { connStr: zk.connStr, opts: { sessionTimeout: 20000, spinDelay: 1000, retries: 2 } },
                    },
                    pg: { user: 'moray', maxConnections: 4 },
                },
            },
            env: { MORAY_DB_NAME: 'moray' },
        });
        c = await morayClient(srv.port);
        console.log(`# zookeeper + pg pair + server up in ${Date.now() - t0} ms`);
    });

    after(async () => {
        c?.close();
        await srv?.stop();
        await writer?.close().catch(() => undefined);
        await zk?.stop();
        await pair?.stop();
    });

    test('phase 1: the primary named in P/state serves; acknowledged puts', async () => {
        await waitFor('server follows peer0', () =>
            logMsgs(/^Manatee primary has changed$/).length >= 1);
        const first = logMsgs(/^Manatee primary has changed$/)[0] as { newPrimary: { port: number } };
        assert.equal(first.newPrimary.port, pair.peers[0].port);
        await call(c, 'ping', { deep: true, timeout: 20000 });
        await call(c, 'createBucket', BUCKET, { index: { n: { type: 'number' } } }, {});
        for (let i = 0; i < N_INITIAL; i++) {
            await put(`init-${i}`, i);
            acked.set(`init-${i}`, i);
        }
        /* written through role moray on peer0, and already on the sync */
        const r = await pair.query(pair.peers[1], `SELECT count(*)::int AS n FROM ${BUCKET}`, [], 'moray');
        assert.equal(r.rows[0].n, N_INITIAL);
    });

    test('phase 1b: switch to a live standby and back: old connections retired, busy ones after their RPC', async (t) => {
        const [p0, p1] = pair.peers;
        const morayConns = async (p: typeof p0): Promise<number> => (await pair.query(p,
            "SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = 'moray' AND application_name = 'moray'"))
            .rows[0].n as number;
        assert.ok(await morayConns(p0) > 0);
        assert.equal(await morayConns(p1), 0);
        /* an RPC busy on peer0 while the primary changes */
        const sleeping = collect(c, 'sql', 'SELECT pg_sleep(1.5) AS slept', [], {});
        await waitFor('the sleep runs on peer0', async () => (await pair.query(p0,
            "SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = 'moray' AND query LIKE '%pg_sleep(1.5)%' " +
            "AND state = 'active'")).rows[0].n === 1, 5000);
        const stateAt = Date.now();
        await writer.putState(clusterState(2, peer1, peer0));
        /* peer1 is still a standby: reads are served from it, writes get its 25006 */
        let roErr: Error | undefined;
        await waitFor('writes reach peer1 (read-only)', async () => {
            try {
                await put('standby-probe', 1);
                return false;
            } catch (err) {
                roErr = err as Error;
                return true;
            }
        }, 5000);
        const servedMs = Date.now() - stateAt;
        assert.equal(roErr?.name, 'error');
        assert.match(roErr?.message ?? '', /in a read-only transaction$/);
        assert.equal((await call(c, 'getObject', BUCKET, 'init-3', {})).value.n, 3);
        /* the busy connection finished its RPC normally, then went away */
        const rows = await sleeping;
        assert.equal(rows.length, 1);
        const goneMs = await waitFor('no pool connection left on peer0', async () => await morayConns(p0) === 0, 5000);
        assert.ok(await morayConns(p1) > 0);
        t.diagnostic(`live switch: state write -> first RPC answered by peer1 ${servedMs} ms; ` +
            `sleeping RPC released -> peer0 connections closed ${goneMs} ms`);

        await writer.putState(clusterState(3, peer0, peer1));
        await waitFor('writes accepted on peer0 again', async () => {
            try {
                await put('back-probe', 1);
                return true;
            } catch {
                return false;
            }
        }, 5000);
        await waitFor('no pool connection left on peer1', async () => await morayConns(p1) === 0, 5000);
        assert.equal(logMsgs(/^Manatee primary has changed$/).length, 3);
    });

    test('phase 2: a malformed P/state is ignored; the last primary keeps serving', async () => {
        const before = logMsgs(/malformed/).length;
        await writer.putRawState('{"generation": 2, "primary": {"pgUrl": ');
        await waitFor('malformed state logged', () => logMsgs(/malformed/).length > before, 5000);
        for (let i = 0; i < 10; i++) {
            await put(`malformed-${i}`, i);
            acked.set(`malformed-${i}`, i);
        }
        await call(c, 'ping', { deep: true, timeout: 20000 });
        assert.equal(logMsgs(/^Manatee primary has changed$/).length, 3, 'no primary change');
    });

    test('phase 3: ZooKeeper down then restarted: served throughout', async (t) => {
        const connectedBefore = logMsgs(/^zk: connected$/).length;
        await zk.kill();
        const down = Date.now();
        let n = 0;
        /* keep serving while ZooKeeper is gone (last known primary) */
        while (Date.now() - down < 3000) {
            const key = `zkdown-${n}`;
            const r = await bounded(put(key, n));
            assert.ok(r.ok, `put during ZooKeeper outage failed: ${r.ok ? '' : String(r.err ?? 'hung')}`);
            acked.set(key, n);
            n++;
            await sleep(50);
        }
        const restartAt = Date.now();
        const restarting = zk.restart();
        /* and while it restarts */
        let m = 0;
        let restarted = false;
        void restarting.then(() => { restarted = true; });
        while (!restarted) {
            const key = `zkrestart-${m}`;
            const r = await bounded(put(key, m));
            assert.ok(r.ok, `put during ZooKeeper restart failed: ${r.ok ? '' : String(r.err ?? 'hung')}`);
            acked.set(key, m);
            m++;
            await sleep(50);
        }
        await restarting;
        const reconnect = await waitFor('follower reconnected to ZooKeeper',
            () => logMsgs(/^zk: connected$/).length > connectedBefore, 30000);
        t.diagnostic(`ZooKeeper down ${restartAt - down} ms (${n} puts ok), restart took ` +
            `${Date.now() - restartAt - reconnect} ms (${m} puts ok), follower reconnected ` +
            `${reconnect} ms after ZooKeeper answered`);
        assert.equal(logMsgs(/^Manatee primary has changed$/).length, 3, 'still on peer0');
        await call(c, 'ping', { deep: true, timeout: 20000 });
    });

    test('phase 4: failover under load: no hang, reference errors, no acknowledged write lost', async (t) => {
        const outcomes: Outcome[] = [];
        let stop = false;
        const loops: Promise<void>[] = [];
        for (let w = 0; w < WRITERS; w++) {
            loops.push((async () => {
                for (let i = 0; !stop; i++) {
                    const key = `load-${w}-${i}`;
                    const start = Date.now();
                    const r = await bounded(put(key, i));
                    const o: Outcome = { key, value: i, start, end: Date.now(), ok: r.ok, hung: false };
                    if (!r.ok) {
                        o.hung = r.hung;
                        o.errName = r.err?.name;
                        o.errMsg = r.err?.message;
                    }
                    outcomes.push(o);
                    if (!r.ok) {
                        await sleep(20);
                    }
                }
            })());
        }
        await sleep(1000);
        const okBefore = outcomes.filter((o) => o.ok).length;
        assert.ok(okBefore > 0, 'writers make progress before the failover');

        /* peer0 dies; Manatee promotes the sync and publishes generation 2 */
        const killAt = Date.now();
        await pair.stopPeer(pair.peers[0], 'immediate');
        await sleep(DETECTION_DELAY_MS);
        await pair.promote();
        const promotedAt = Date.now();
        const lsn = (await pair.query(pair.peers[1], 'SELECT pg_current_wal_lsn()::text AS l')).rows[0].l as string;
        const stateAt = Date.now();
        await writer.putState(clusterState(4, peer1, null, [], [peer0], lsn));

        await waitFor('a put acknowledged after the state change',
            () => outcomes.some((o) => o.ok && o.start >= stateAt), 20000);
        await sleep(1500);
        stop = true;
        await Promise.all(loops);

        const firstOk = Math.min(...outcomes.filter((o) => o.ok && o.end >= stateAt).map((o) => o.end));
        const changeLog = logMsgs(/^Manatee primary has changed$/);
        assert.equal(changeLog.length, 4);
        const change = changeLog[3] as { time: string; newPrimary: { port: number }; oldPrimary: { port: number } };
        assert.equal(change.newPrimary.port, pair.peers[1].port);
        assert.equal(change.oldPrimary.port, pair.peers[0].port);
        const followerMs = Date.parse(change.time) - stateAt;

        const hung = outcomes.filter((o) => o.hung);
        const failed = outcomes.filter((o) => !o.ok && !o.hung);
        const byError = new Map<string, number>();
        for (const o of failed) {
            const k = `${o.errName}: ${o.errMsg}`;
            byError.set(k, (byError.get(k) ?? 0) + 1);
        }
        const slowest = Math.max(...outcomes.map((o) => o.end - o.start));
        t.diagnostic(`puts: ${outcomes.length} (${outcomes.filter((o) => o.ok).length} ok, ` +
            `${failed.length} errors, ${hung.length} hung); slowest call ${slowest} ms`);
        t.diagnostic(`peer0 killed -> peer1 promoted: ${promotedAt - killAt} ms ` +
            `(${DETECTION_DELAY_MS} ms of it simulated detection delay)`);
        t.diagnostic(`state write -> follower logged the change: ${followerMs} ms`);
        t.diagnostic(`state write -> first acknowledged put on peer1: ${firstOk - stateAt} ms`);
        t.diagnostic(`peer0 death -> first acknowledged put on peer1 (write gap): ${firstOk - killAt} ms`);
        for (const [k, n] of byError) {
            t.diagnostic(`  error seen ${n}x: ${k}`);
        }

        assert.deepEqual(hung, [], 'no call may hang past its deadline');
        for (const o of failed) {
            assert.ok(o.errName !== undefined && ALLOWED_ERRORS.has(o.errName),
                `unexpected error ${o.errName}: ${o.errMsg}`);
        }
        /*
         * Quiet machine: 21-114 ms.  In the full suite on two busy cores the
         * follower has been seen to take ~10 s here (tracked in the issue);
         * the bound guards against a follower that does not follow at all.
         */
        assert.ok(firstOk - stateAt < 15000, `new primary served within 15 s (${firstOk - stateAt} ms)`);
        const refused = failed.filter((o) => o.errName === 'Error' && o.errMsg === 'connect ECONNREFUSED');
        assert.ok(refused.some((o) => o.end - o.start >= 1000), 'claims waited, then connect ECONNREFUSED');
        const immediate = refused.filter((o) => o.end - o.start < 200);
        assert.ok(immediate.length > 0, 'the pool reached FAILED: immediate connect ECONNREFUSED');
        const failedAt = Math.min(...immediate.map((o) => o.start));
        t.diagnostic(`pool FAILED (immediate ECONNREFUSED) ${failedAt - killAt} ms after peer0 died; ` +
            `${immediate.length} immediate refusals`);
        /* the writers are back to normal: the last put of each loop succeeded */
        for (let w = 0; w < WRITERS; w++) {
            const mine = outcomes.filter((o) => o.key.startsWith(`load-${w}-`));
            assert.ok(mine[mine.length - 1]?.ok, `writer ${w} recovered`);
        }

        for (const o of outcomes) {
            if (o.ok) {
                acked.set(o.key, o.value);
            }
        }
        /* every acknowledged write, before and during the switch, is on the new primary */
        const keys = [...acked.keys()];
        const missing: string[] = [];
        for (let i = 0; i < keys.length; i += 16) {
            await Promise.all(keys.slice(i, i + 16).map(async (k) => {
                try {
                    const obj = await call(c, 'getObject', BUCKET, k, {});
                    assert.equal(obj.value.n, acked.get(k));
                } catch (err) {
                    missing.push(`${k}: ${(err as Error).name} ${(err as Error).message}`);
                }
            }));
        }
        t.diagnostic(`acknowledged writes checked on peer1: ${keys.length}`);
        assert.deepEqual(missing, []);
        assert.equal(await portOpen(pair.peers[0].port), false, 'peer0 is really gone');
    });

    test('phase 5: read-only window on the new primary: 25006 passed through, reads work', async () => {
        const p1 = pair.peers[1];
        await pair.query(p1, 'ALTER SYSTEM SET default_transaction_read_only = on');
        await pair.query(p1, 'SELECT pg_reload_conf()');
        let lastErr: Error | undefined;
        await waitFor('writes refused (read-only)', async () => {
            try {
                await put('ro-probe', 1);
                return false;
            } catch (err) {
                lastErr = err as Error;
                return true;
            }
        }, 5000);
        assert.equal(lastErr?.name, 'error');
        assert.match(lastErr?.message ?? '', /^cannot execute \S+( \S+)* in a read-only transaction$/);
        const obj = await call(c, 'getObject', BUCKET, 'init-7', {});
        assert.equal(obj.value.n, 7);
        await call(c, 'ping', { deep: true, timeout: 20000 });

        await pair.query(p1, 'ALTER SYSTEM RESET default_transaction_read_only');
        await pair.query(p1, 'SELECT pg_reload_conf()');
        await waitFor('writes accepted again', async () => {
            try {
                await put('rw-probe', 2);
                return true;
            } catch {
                return false;
            }
        }, 5000);
        assert.equal((await call(c, 'getObject', BUCKET, 'rw-probe', {})).value.n, 2);
    });
});

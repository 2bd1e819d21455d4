/*
 * ManateeFollower against a real ZooKeeper (Debian's zookeeper package),
 * with the shard written the way Manatee writes it (helpers/manatee-state).
 *
 * One ZooKeeper serves the whole file; every test uses its own shard path.
 * The two destructive tests (kill/restart, SIGSTOP) run last.
 *
 * Bounds asserted (sessionTimeout 3000 ms in these tests):
 *  - failover: event within 1000 ms of the state write (measured, printed);
 *  - watchdog: trip within sessionTimeout/3 + 2/3 sessionTimeout + 1000 ms
 *    of the SIGSTOP (measured, printed).
 */

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
    ManateeFollower,
    MalformedStateError,
    backendFromPgUrl,
    electionOrder,
    parseClusterState,
    parseElectionNode,
} from '../../src/pg/manatee';
import { type Backend, type TopologyLogger, StaticTopology, parseStandaloneUrl } from '../../src/pg/topology';
import { installBackend, noopBackend } from '../../src/probes';
import { type ZooKeeperServer, freePort, startZooKeeper, zookeeperSkip } from '../helpers/zookeeper';
import { ManateeStateWriter, clusterState, peer } from '../helpers/manatee-state';

/* eslint-disable-next-line @typescript-eslint/no-require-imports */
const bunyan = require('bunyan');

const SESSION_TIMEOUT = 3000;
const FAILOVER_BOUND_MS = 1000;
/* worst case: the hang starts just after a probe was answered (next probe
 * sessionTimeout/3 later, its deadline 2/3 after that); +1 s for timer
 * jitter on a loaded 2-core machine */
const WATCHDOG_BOUND_MS = SESSION_TIMEOUT / 3 + SESSION_TIMEOUT * 2 / 3 + 1000;

const P0 = peer('127.0.0.1', 25432, 'peer0');
const P1 = peer('127.0.0.1', 25433, 'peer1');
const P2 = peer('127.0.0.1', 25434, 'peer2');
const key = (p: { pgUrl: string }): string => {
    const u = new URL(p.pgUrl);
    return `${u.hostname}:${u.port}`;
};

interface LogRecord { level: number; msg: string; [k: string]: unknown }

function makeLog(): { log: TopologyLogger; records: LogRecord[] } {
    const records: LogRecord[] = [];
    const log = bunyan.createLogger({
        name: 'moray-test',
        level: process.env.LOG_LEVEL ?? 'debug',
        streams: [{
            type: 'raw',
            level: 'trace',
            stream: { write: (r: LogRecord) => { records.push(r); } },
        }],
    });
    return { log, records };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function waitFor(what: string, cond: () => boolean, timeoutMs = 10000): Promise<number> {
    const t0 = Date.now();
    while (!cond()) {
        if (Date.now() - t0 > timeoutMs) {
            throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
        }
        await sleep(10);
    }
    return Date.now() - t0;
}

interface PrimaryEvent { backend: Backend | null; previous: Backend | null; at: number }

/* Records every 'primary' event of a follower. */
class Recorder {
    readonly events: PrimaryEvent[] = [];
    constructor(f: ManateeFollower) {
        f.on('primary', (backend: Backend | null, previous: Backend | null) => {
            this.events.push({ backend, previous, at: Date.now() });
        });
    }
    async next(count: number, timeoutMs = 10000): Promise<PrimaryEvent> {
        await waitFor(`primary event #${count}`, () => this.events.length >= count, timeoutMs);
        return this.events[count - 1] as PrimaryEvent;
    }
}

let shardSeq = 0;
function shardPath(): string {
    return `/manatee/${++shardSeq}.moray.test`;
}

function percentile(sorted: number[], p: number): number {
    return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] as number;
}

describe('topology parsing (no ZooKeeper needed)', () => {
    test('pgUrl: host and port only; IP literals only', () => {
        assert.deepEqual(backendFromPgUrl('tcp://postgres@10.0.0.2:5432/postgres'),
            { key: '10.0.0.2:5432', host: '10.0.0.2', port: 5432 });
        assert.deepEqual(backendFromPgUrl('tcp://postgres@[fd00::7]:6543/postgres'),
            { key: '[fd00::7]:6543', host: 'fd00::7', port: 6543 });
        assert.equal(backendFromPgUrl('tcp://10.0.0.2/postgres').port, 5432);
        for (const bad of ['tcp://postgres@db.example.com:5432/postgres', 'postgres://u@10.0.0.2:5432/db',
            'tcp://10.0.0.2:0/x', 'not a url']) {
            assert.throws(() => backendFromPgUrl(bad), MalformedStateError, bad);
        }
    });

    test('cluster state: only primary.pgUrl is required', () => {
        const st = clusterState(7, P1, null);
        assert.deepEqual(parseClusterState(Buffer.from(JSON.stringify(st))),
            { generation: 7, primary: { key: '127.0.0.1:25433', host: '127.0.0.1', port: 25433 } });
        assert.equal(parseClusterState(JSON.stringify({ primary: { pgUrl: P0.pgUrl } })).generation, null);
        for (const bad of [null, '', '{', '"x"', 'null', '[]', '{}', '{"primary":null}', '{"primary":{"pgUrl":5}}']) {
            assert.throws(() => parseClusterState(bad), MalformedStateError, String(bad));
        }
    });

    test('election nodes: lowest sequence first, legacy and IPv6 names, junk skipped', () => {
        assert.deepEqual(parseElectionNode('10.77.77.8:5432:12345-0000000057'),
            { name: '10.77.77.8:5432:12345-0000000057', seq: 57,
                backend: { key: '10.77.77.8:5432', host: '10.77.77.8', port: 5432 } });
        assert.equal(parseElectionNode('10.77.77.9-0000000003')?.backend.key, '10.77.77.9:5432');
        assert.equal(parseElectionNode('fd00::1:5433:12345-0000000001')?.backend.key, '[fd00::1]:5433');
        for (const bad of ['junk', 'host.example:5432:1-0000000001', '10.0.0.1:5432:1-x', '-0000000001']) {
            assert.equal(parseElectionNode(bad), null, bad);
        }
        const order = electionOrder(['10.0.0.3:5432:1-0000000012', 'junk', '10.0.0.1:5432:1-0000000010',
            '10.0.0.2:5432:1-0000000011']);
        assert.deepEqual(order.map((e) => e.backend.host), ['10.0.0.1', '10.0.0.2', '10.0.0.3']);
    });

    test('standalone URL forms and StaticTopology', async () => {
        assert.deepEqual(parseStandaloneUrl('tcp://moray@10.99.99.16:5432/moray'),
            { key: '10.99.99.16:5432', host: '10.99.99.16', port: 5432 });
        assert.deepEqual(parseStandaloneUrl('postgres://moray@db.local/moray'),
            { key: 'db.local:5432', host: 'db.local', port: 5432 });
        assert.equal(parseStandaloneUrl('postgres://moray@%2Ftmp%2Fpg:5433/moray').host, '/tmp/pg');
        assert.equal(parseStandaloneUrl('postgres:///moray?host=/var/run/postgresql&port=6000').key,
            '/var/run/postgresql:6000');
        assert.equal(parseStandaloneUrl('/tmp/sock').host, '/tmp/sock');
        assert.throws(() => parseStandaloneUrl('nonsense'));
        assert.throws(() => parseStandaloneUrl('postgres://u@h:99999/x'));

        const st = new StaticTopology('postgres://moray@127.0.0.1:5999/moray');
        assert.equal(st.current()?.key, '127.0.0.1:5999');
        const seen: [Backend | null, Backend | null][] = [];
        st.on('primary', (b: Backend | null, prev: Backend | null) => seen.push([b, prev]));
        st.start();
        st.start();
        assert.equal(seen.length, 0);          /* announced asynchronously */
        await new Promise((r) => setImmediate(r));
        assert.deepEqual(seen, [[st.current(), null]]);
        assert.equal(st.snapshot().counters.changes, 1);
        await st.stop();
        assert.equal(st.snapshot().state, 'stopped');
    });
});

const skip = zookeeperSkip();
if (skip !== false) {
    console.log(`# skipping manatee-follower tests: ${skip}`);
}

describe('ManateeFollower (real ZooKeeper)', { skip }, () => {
    let zk: ZooKeeperServer;
    const followers: ManateeFollower[] = [];
    const writers: ManateeStateWriter[] = [];

    const follower = (p: string, log: TopologyLogger): ManateeFollower => {
        const f = new ManateeFollower(
            { path: p, zk: { connStr: zk.connStr, opts: { sessionTimeout: SESSION_TIMEOUT, spinDelay: 100, retries: 1 } } },
            { log, retryDelay: 500, backoffMin: 100, backoffMax: 1000 });
        followers.push(f);
        return f;
    };
    const writer = async (p: string): Promise<ManateeStateWriter> => {
        const w = await ManateeStateWriter.open(zk.connStr, p);
        writers.push(w);
        return w;
    };

    before(async () => {
        zk = await startZooKeeper();
    });

    after(async () => {
        await Promise.all(followers.map((f) => f.stop()));
        await Promise.all(writers.map((w) => w.close().catch(() => undefined)));
        await zk?.stop();
    });

    test('finds the initial primary, ignores rewrites naming the same primary', async () => {
        const p = shardPath();
        const w = await writer(p);
        await w.putState(clusterState(1, P0, P1, [P2]));
        const { log, records } = makeLog();
        const f = follower(p, log);
        const rec = new Recorder(f);
        assert.equal(f.current(), null);
        f.start();
        const ev = await rec.next(1);
        assert.deepEqual(ev.backend, { key: key(P0), host: '127.0.0.1', port: 25432 });
        assert.equal(ev.previous, null);
        assert.deepEqual(f.current(), ev.backend);
        const snap = f.snapshot();
        assert.equal(snap.kind, 'manatee');
        assert.equal(snap.state, 'connected');
        assert.equal(snap.zkState, 'SYNC_CONNECTED');
        assert.match(snap.sessionId ?? '', /^[0-9a-f]{16}$/);
        assert.equal(snap.source, 'state');
        assert.equal(snap.generation, 1);
        assert.equal(snap.counters.changes, 1);
        assert.ok(snap.lastChange !== null);
        const changed = records.filter((r) => r.msg === 'Manatee primary has changed');
        assert.equal(changed.length, 1);
        assert.deepEqual(changed[0]?.newPrimary, { name: 'primary', address: '127.0.0.1', port: 25432, key: key(P0) });
        assert.equal(changed[0]?.component, 'ManateePrimaryResolver');

        /* async list and generation change, same primary: no event */
        await w.putState(clusterState(1, P0, P1, []));
        await w.putState(clusterState(2, P0, P2, [P1]));
        await waitFor('generation 2 read', () => f.snapshot().generation === 2);
        await sleep(200);
        assert.equal(rec.events.length, 1);
        assert.equal(f.snapshot().counters.changes, 1);
    });

    test('brand-new shard: no primary until the state appears', async () => {
        const p = shardPath();
        const { log } = makeLog();
        const f = follower(p, log);
        const rec = new Recorder(f);
        f.start();
        await waitFor('connected', () => f.snapshot().state === 'connected');
        await sleep(200);
        assert.equal(rec.events.length, 0);
        assert.equal(f.current(), null);
        const w = await writer(p);
        await w.putState(clusterState(1, P1, P2));
        const ev = await rec.next(1);
        assert.equal(ev.backend?.key, key(P1));
    });

    test('failover: new primary announced promptly (latency measured)', async (t) => {
        const p = shardPath();
        const w = await writer(p);
        await w.putState(clusterState(1, P0, P1, [P2]));
        const { log } = makeLog();
        const f = follower(p, log);
        const rec = new Recorder(f);
        const fired: unknown[][] = [];
        installBackend({
            name: 'capture',
            create: (def) => ({
                enabled: () => def.name === 'topology-change',
                fire: (args) => { fired.push(args); },
            }),
        });
        t.after(() => installBackend(noopBackend));
        f.start();
        await rec.next(1);
        assert.deepEqual(fired, [['', key(P0)]]);
        const latencies: number[] = [];
        const peers = [P1, P2, P0];
        for (let i = 0; i < 30; i++) {
            const primary = peers[i % 3] as typeof P0;
            const sync = peers[(i + 1) % 3] as typeof P0;
            const t0 = Date.now();
            await w.putState(clusterState(i + 2, primary, sync, [], []));
            const ev = await rec.next(i + 2, FAILOVER_BOUND_MS * 5);
            latencies.push(ev.at - t0);
            assert.equal(ev.backend?.key, key(primary));
            assert.equal(ev.previous?.key, key(peers[(i + 2) % 3] as typeof P0));
        }
        const sorted = [...latencies].sort((a, b) => a - b);
        const msg = `failover detection (state write -> 'primary' event), n=${sorted.length}: ` +
            `min ${sorted[0]} ms, median ${percentile(sorted, 0.5)} ms, p95 ${percentile(sorted, 0.95)} ms, ` +
            `max ${sorted[sorted.length - 1]} ms`;
        t.diagnostic(msg);
        assert.ok((sorted[sorted.length - 1] as number) < FAILOVER_BOUND_MS, msg);
        assert.equal(f.snapshot().counters.changes, 31);
        assert.equal(fired.length, 31);
        assert.deepEqual(fired[1], [key(P0), key(P1)]);
        assert.deepEqual(fired[2], [key(P1), key(P2)]);
        assert.equal(f.snapshot().generation, 31);
    });

    test('malformed state: logged and counted, primary kept, later valid state followed', async () => {
        const p = shardPath();
        const w = await writer(p);
        await w.putState(clusterState(1, P0, P1));
        const { log, records } = makeLog();
        const f = follower(p, log);
        const rec = new Recorder(f);
        f.start();
        await rec.next(1);

        const bad = [
            '{"generation": 2, "primary": ',                                   /* truncated JSON */
            '',                                                                  /* empty node */
            '[1,2]',                                                             /* not an object */
            '{"generation": 2}',                                                 /* no primary */
            JSON.stringify({ ...clusterState(2, P1, P2), primary: { id: 'x' } }), /* no pgUrl */
            JSON.stringify({ ...clusterState(2, { ...P1, pgUrl: 'tcp://postgres@db.example.com:5432/postgres' }, P2) }),
            JSON.stringify({ ...clusterState(2, { ...P1, pgUrl: 'http://postgres@127.0.0.1:5432/postgres' }, P2) }),
            JSON.stringify({ ...clusterState(2, { ...P1, pgUrl: 'tcp://postgres@127.0.0.1:99999/postgres' }, P2) }),
        ];
        for (let i = 0; i < bad.length; i++) {
            await w.putRawState(bad[i] as string);
            await waitFor(`malformed #${i + 1} counted`, () => f.snapshot().counters.malformedStates === i + 1);
            assert.equal(f.current()?.key, key(P0));
        }
        assert.equal(rec.events.length, 1);
        const warns = records.filter((r) => r.level === 40 && /malformed/.test(r.msg));
        assert.equal(warns.length, bad.length);
        assert.equal((warns[0]?.err as { name?: string } | undefined)?.name, 'MalformedStateError');
        assert.equal(f.snapshot().state, 'connected');

        /* the reference stops here; we must pick up the next valid state */
        await w.putState(clusterState(3, P1, P2));
        const ev = await rec.next(2);
        assert.equal(ev.backend?.key, key(P1));
        assert.equal(ev.previous?.key, key(P0));
        assert.equal(f.snapshot().generation, 3);
        assert.equal(f.snapshot().counters.clientsCreated, 1);
    });

    test('state absent: primary from P/election (lowest sequence), back to P/state when it appears', async () => {
        const p = shardPath();
        const w = await writer(p);
        const { log } = makeLog();
        /* election order: P2 first, then junk, then P1 */
        const n2 = await w.joinElection(P2);
        await w.createElectionNode('not-an-election-node');
        const n1 = await w.joinElection(P1);
        const f = follower(p, log);
        const rec = new Recorder(f);
        f.start();
        let ev = await rec.next(1);
        assert.equal(ev.backend?.key, key(P2));
        assert.equal(f.snapshot().source, 'election');
        assert.equal(f.snapshot().generation, null);

        /* the primary's sitter dies: next in line */
        await w.leaveElection(n2);
        ev = await rec.next(2);
        assert.equal(ev.backend?.key, key(P1));

        /* a Manatee 2 state appears: it wins */
        await w.putState(clusterState(5, P0, P1));
        ev = await rec.next(3);
        assert.equal(ev.backend?.key, key(P0));
        assert.equal(f.snapshot().source, 'state');
        assert.equal(f.snapshot().generation, 5);

        /* election changes no longer matter */
        await w.joinElection(P2);
        await sleep(200);
        assert.equal(rec.events.length, 3);

        /* state deleted: back to the election (P1 is the lowest left) */
        await w.deleteState();
        ev = await rec.next(4);
        assert.equal(ev.backend?.key, key(P1));
        assert.equal(f.snapshot().source, 'election');
        await w.leaveElection(n1);
        ev = await rec.next(5);
        assert.equal(ev.backend?.key, key(P2));
    });

    test('stop() releases everything: a process running only a follower exits by itself', async (t) => {
        const p = shardPath();
        const w = await writer(p);
        await w.putState(clusterState(1, P0, P1));
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moray-follower-exit-'));
        const script = path.join(dir, 'run.js');
        const modPath = path.resolve(__dirname, '../../src/pg/manatee');
        fs.writeFileSync(script, `
const { ManateeFollower } = require(${JSON.stringify(modPath)});
const noop = () => undefined;
const log = { info: noop, warn: noop, error: noop, debug: noop, child() { return log; } };
const [connStr, shard, mode] = process.argv.slice(2);
const f = new ManateeFollower({ path: shard, zk: { connStr, opts: { sessionTimeout: 3000, spinDelay: 100 } } },
    { log, backoffMin: 50 });
f.start();
const done = () => f.stop().then(() => { process.stdout.write('stopped ' + Date.now() + '\\n'); });
if (mode === 'connected') {
    f.on('primary', (b) => { process.stdout.write('primary ' + b.key + '\\n'); done(); });
} else {
    setTimeout(done, 1500);   /* never connects: stop while the library retries */
}
`);
        const tsArgs = __filename.endsWith('.ts') ? ['--import', 'tsx'] : [];
        const run = (connStr: string, mode: string): Promise<{ out: string; lingerMs: number; code: number | null }> =>
            new Promise((resolve, reject) => {
                const child = spawn(process.execPath, [...tsArgs, script, connStr, p, mode],
                    { stdio: ['ignore', 'pipe', 'inherit'] });
                let out = '';
                child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
                const kill = setTimeout(() => {
                    child.kill('SIGKILL');
                    reject(new Error(`follower process did not exit: ${out}`));
                }, 15000);
                child.on('exit', (code) => {
                    clearTimeout(kill);
                    const m = /stopped (\d+)/.exec(out);
                    resolve({ out, code, lingerMs: m ? Date.now() - Number(m[1]) : -1 });
                });
            });
        try {
            const a = await run(zk.connStr, 'connected');
            assert.equal(a.code, 0, a.out);
            assert.match(a.out, new RegExp(`primary ${key(P0)}`));
            assert.ok(a.lingerMs >= 0 && a.lingerMs < 1000, `exited ${a.lingerMs} ms after stop(): ${a.out}`);
            t.diagnostic(`process exited ${a.lingerMs} ms after stop() resolved (connected follower)`);
            /* a port nothing listens on: stop() during the library's reconnect loop */
            const b = await run(`127.0.0.1:${await freePort()}`, 'never');
            assert.equal(b.code, 0, b.out);
            assert.ok(b.lingerMs >= 0 && b.lingerMs < 1000, `exited ${b.lingerMs} ms after stop(): ${b.out}`);
            t.diagnostic(`process exited ${b.lingerMs} ms after stop() resolved (never connected)`);
        } finally {
            fs.rmSync(dir, { recursive: true, force: true });
        }
    });

    test('ZooKeeper killed and restarted: last primary kept, reconnects, sees later changes', async (t) => {
        const p = shardPath();
        let w = await writer(p);
        await w.putState(clusterState(1, P0, P1));
        const { log } = makeLog();
        const f = follower(p, log);
        const rec = new Recorder(f);
        f.start();
        await rec.next(1);
        await w.close();

        await zk.kill();
        await waitFor('follower notices the outage', () => f.snapshot().state !== 'connected', 5000);
        await sleep(SESSION_TIMEOUT + 500);       /* longer than a session: the client is replaced */
        assert.equal(f.current()?.key, key(P0));
        assert.equal(rec.events.length, 0 + 1);

        const reconnectsBefore = f.snapshot().counters.reconnects;
        const t0 = Date.now();
        await zk.restart();
        await waitFor('reconnected', () => f.snapshot().state === 'connected' &&
            f.snapshot().counters.reconnects > reconnectsBefore, 15000);
        const reconnectMs = Date.now() - t0;
        t.diagnostic(`reconnected ${reconnectMs} ms after ZooKeeper restart began ` +
            `(connect timeouts during the outage: ${f.snapshot().counters.connectTimeouts})`);
        assert.equal(rec.events.length, 1);

        w = await writer(p);
        await w.putState(clusterState(2, P1, P2));
        const ev = await rec.next(2);
        assert.equal(ev.backend?.key, key(P1));
        assert.equal(ev.previous?.key, key(P0));
    });

    test('ZooKeeper hung (SIGSTOP): watchdog trips in bound, follower recovers after SIGCONT', async (t) => {
        const p = shardPath();
        let w = await writer(p);
        await w.putState(clusterState(1, P0, P1));
        const { log, records } = makeLog();
        const f = follower(p, log);
        const rec = new Recorder(f);
        f.start();
        await rec.next(1);
        await waitFor('first watchdog probe', () => f.snapshot().zkLatencyMs !== null, 5000);
        /* a second follower, stopped while the server hangs */
        const g = follower(p, makeLog().log);
        g.start();
        await waitFor('second follower', () => g.current() !== null);

        zk.pause();
        let tripMs: number;
        try {
            tripMs = await waitFor('watchdog trip', () => f.snapshot().counters.watchdogTrips >= 1, WATCHDOG_BOUND_MS + 3000);
            const s0 = Date.now();
            await g.stop();
            const stopMs = Date.now() - s0;
            t.diagnostic(`stop() with a hung server took ${stopMs} ms`);
            assert.ok(stopMs < 1500, `stop() took ${stopMs} ms`);
            assert.equal(f.current()?.key, key(P0));
            assert.equal(f.snapshot().zkState === 'SYNC_CONNECTED' && f.snapshot().state === 'connected', false);
            await sleep(SESSION_TIMEOUT + 500);   /* still hung: replaced again, primary kept */
            assert.equal(f.current()?.key, key(P0));
        } finally {
            zk.resume();
        }
        const msg = `watchdog tripped ${tripMs} ms after SIGSTOP (bound ${WATCHDOG_BOUND_MS} ms, ` +
            `sessionTimeout ${SESSION_TIMEOUT} ms)`;
        t.diagnostic(msg);
        assert.ok(tripMs <= WATCHDOG_BOUND_MS, msg);
        assert.ok(records.some((r) => r.level === 40 && /watchdog/.test(r.msg)));

        const recoverMs = await waitFor('reconnected after SIGCONT', () => f.snapshot().state === 'connected', 10000);
        t.diagnostic(`connected again ${recoverMs} ms after SIGCONT`);
        assert.equal(rec.events.length, 1);
        /* the writer's session may have expired while the server was stopped */
        await w.close();
        w = await writer(p);
        await w.putState(clusterState(2, P2, P0));
        const ev = await rec.next(2);
        assert.equal(ev.backend?.key, key(P2));
    });
});

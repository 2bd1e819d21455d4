/*
 * USDT probes of a REAL server, end to end on Linux.
 *
 *   moray client ──Fast──► server (MORAY_PROBES=usdt) ──fires──► SDT notes
 *   (npm `moray`)          pid P                                    │
 *                                                    bpftrace -p P ◄┘
 *                                                    "P <nsecs> prov:name|a0|a1|..."
 *
 * 1. One bpftrace program attached with -p to the server prints every moray
 *    and fastserver probe (usdt:*:<provider>:<probe>, i.e. whatever file the
 *    server has mapped) with all its arguments, one line per firing, stamped
 *    with nsecs (bpftrace prints per-CPU buffers out of order; we sort).
 *    Each string argument has its own printf so that BPFTRACE_STRLEN can be
 *    200 within the 512-byte BPF stack.  Every RPC is then driven through
 *    the npm moray client with a req_id we chose, and the probes of
 *    observability.md §10 are checked per RPC: request-start/done and
 *    fastserver rpc-start/done for every method, the reference per-RPC
 *    probes with their arguments, pipeline step names (§10.2), query-*,
 *    pool-checkout, listen-*, conn-create/destroy.
 *
 *    Probes that carry no req_id (findobjects-record, reindexobjects-record,
 *    fastserver rpc-*) are tied to a request by msgid inside the request's
 *    window: from its request-start to the next tracked request-start (the
 *    RPCs are driven one at a time).
 *
 * 2. Every bpftrace twin in dtrace/linux runs through tools/bt against the
 *    live server while a load loop drives get/put/find/del (and a missing
 *    get, a failing sql) traffic; each must print what its comment says.
 *
 * Needs Linux, root and bpftrace; skips, saying why, otherwise.  Builds
 * native/usdt if it is missing.  USDT_TRACE_OUT=<file> keeps the raw probe
 * trace of part 1 for debugging.
 */

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PROBE_TABLE, type ProbeDef } from '../../src/probes/table';
import { sdtName } from '../../tools/gen-usdt';
import {
    ROOT, call, collect, morayClient, usdtServerFile, type MorayClient,
} from '../helpers/harness';

const fx = usdtServerFile('usdt-server integration', 'usdtsrv');
const skipReason = fx.skipReason;

const STRLEN = 200;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
/* what bpftrace's str() shows of a string: STRLEN - 1 bytes */
const cut = (s: string): string => s.slice(0, STRLEN - 1);

/* ---- running bpftrace / tools/bt in their own process group ---- */

interface Traced {
    out(): string;
    err(): string;
    /* SIGINT the group and wait for the process to exit */
    stop(): Promise<void>;
}

function spawnTracer(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Traced {
    const child = spawn(cmd, args, { cwd: ROOT, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
        stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
    });
    const closed = new Promise<void>((r) => child.on('close', () => r()));
    return {
        out: () => stdout,
        err: () => stderr,
        async stop() {
            try {
                process.kill(-child.pid!, 'SIGINT');
            } catch {
                /* already gone */
            }
            const hard = setTimeout(() => {
                try {
                    process.kill(-child.pid!, 'SIGKILL');
                } catch {
                    /* gone */
                }
            }, 15000);
            await closed;
            clearTimeout(hard);
        },
    };
}

/* stderr lines that are errors, less bpftrace's harmless noise here (as tools/bt drops it) */
function realErrors(stderr: string): string[] {
    return stderr.split('\n').filter((l) => /ERROR|error:/i.test(l) &&
        !/RLIMIT_MEMLOCK|uprobe_events|failed to detach probe/.test(l));
}

async function waitUntil(pred: () => boolean, ms: number, what: string): Promise<void> {
    const end = Date.now() + ms;
    while (!pred()) {
        if (Date.now() > end) {
            throw new Error(`timed out waiting for ${what}`);
        }
        await sleep(50);
    }
}

/* ---- the all-probes program and its parsed output ---- */

function allProbesProgram(): string {
    return PROBE_TABLE.map((def) => {
        /* log records are big and many: the level is enough here */
        const args = def.name === 'log' ? def.args.slice(0, 1) : def.args;
        const parts = args.map(([, ty], i) => (ty === 'int' ?
            `printf("|%lld", (int64)arg${i}); ` : `printf("|%s", str(arg${i})); `)).join('');
        return `usdt:*:${def.provider}:${sdtName(def.name)} ` +
            `{ printf("P %lld ${def.provider}:${def.name}", nsecs); ${parts}printf("\\n"); }`;
    }).join('\n');
}

interface Ev { t: bigint; name: string; args: string[] }

function parseEvents(out: string): Ev[] {
    const evs: Ev[] = [];
    for (const line of out.split('\n')) {
        const m = /^P (\d+) (\S+?)(\|.*)?$/.exec(line);
        if (m !== null) {
            evs.push({ t: BigInt(m[1]!), name: m[2]!, args: m[3] === undefined ? [] : m[3].slice(1).split('|') });
        }
    }
    return evs.sort((a, b) => (a.t < b.t ? -1 : a.t > b.t ? 1 : 0));
}

const DEF = new Map<string, ProbeDef>(PROBE_TABLE.map((d) => [`${d.provider}:${d.name}`, d]));

function argIndex(name: string, arg: string): number {
    const def = DEF.get(name.includes(':') ? name : `moray:${name}`);
    assert.ok(def, `no probe ${name}`);
    return def.args.findIndex(([n]) => n === arg);
}

/* ---- shared state of the file ---- */

const B = 'usdt_srv_b';
const LB = 'loadb';

/* the server's pid, for tracers (only inside tests that did not skip) */
const pid = (): number => fx.srv.proc.pid!;

test('server runs the usdt backend with the addon mapped', { skip: skipReason }, () => {
    const rec = fx.srv.records().find((r) => r['probeBackend'] !== undefined);
    assert.equal(rec?.['probeBackend'], 'usdt', JSON.stringify(rec));
    assert.match(fs.readFileSync(`/proc/${pid()}/maps`, 'utf8'), /moray_usdt\.node$/m);
});

interface Tracked { rpc: string; method: string; reqId: string }

test('one bpftrace -p sees every RPC fire its probes with the right arguments',
    { skip: skipReason, timeout: 60000 }, async (t) => {
        const tracer = spawnTracer('bpftrace', ['-p', String(pid()), '-e', allProbesProgram()],
            { ...process.env, BPFTRACE_STRLEN: String(STRLEN) });
        t.after(() => tracer.stop());
        await waitUntil(() => /Attaching \d+ probes/.test(tracer.out()) || realErrors(tracer.err()).length > 0,
            30000, 'bpftrace to attach');
        assert.deepEqual(realErrors(tracer.err()), [], tracer.err());

        /*
         * "Attaching" precedes the uprobes and semaphores being in place:
         * ping on a throwaway connection until a probe shows, then open the
         * connection under test (so its conn-create is seen).
         */
        const warmClient = await morayClient(fx.srv.port);
        const warm = randomUUID();
        for (let i = 0; i < 150 && !tracer.out().includes(warm); i++) {
            await call(warmClient, 'ping', { req_id: warm });
            await sleep(100);
        }
        warmClient.close();
        assert.ok(tracer.out().includes(warm), `no probe seen:\n${tracer.err()}`);
        const client = await morayClient(fx.srv.port);
        let closed = false;
        t.after(() => {
            if (!closed) {
                client.close();
            }
        });

        const tracked: Tracked[] = [];
        const rid = (rpc: string, method = rpc): { req_id: string } => {
            const reqId = randomUUID();
            tracked.push({ rpc, method, reqId });
            return { req_id: reqId };
        };

        const cfg1 = { index: { n: { type: 'number' }, name: { type: 'string' } }, options: { version: 1 } };
        const cfg2 = { index: { ...cfg1.index, color: { type: 'string' } }, options: { version: 2 } };
        await call(client, 'createBucket', B, cfg1, rid('createBucket'));
        await call(client, 'getBucket', B, rid('getBucket'));
        await call(client, 'listBuckets', rid('listBuckets'));
        const values: Record<string, Record<string, unknown>> = {};
        for (let i = 1; i <= 4; i++) {
            values[`k${i}`] = { n: i, name: `k${i}`, color: `c${i}` };
            await call(client, 'putObject', B, `k${i}`, values[`k${i}`],
                i === 1 ? rid('putObject') : {});
        }
        const got = await call(client, 'getObject', B, 'k1', rid('getObject'));
        const found = await collect(client, 'findObjects', B, '(n>=1)', { ...rid('findObjects'),
            sort: { attribute: 'n', order: 'ASC' } });
        assert.equal(found.length, 4);
        await call(client, 'updateBucket', B, cfg2, rid('updateBucket'));
        const reindexed = await call(client, 'reindexObjects', B, 100, rid('reindexObjects'));
        assert.equal(reindexed.processed, 4);
        await call(client, 'updateObjects', B, { n: 10 }, '(name=k2)', rid('updateObjects'));
        await call(client, 'deleteMany', B, '(name=k3)', rid('deleteMany'));
        const batchOps = [
            { bucket: B, key: 'k5', value: { n: 5, name: 'k5' } },
            { bucket: B, operation: 'update', fields: { n: 20 }, filter: '(name=k4)' },
            { bucket: B, operation: 'delete', key: 'k1' },
            { bucket: B, operation: 'deleteMany', filter: '(name=k6)' },
        ] as const;
        await call(client, 'batch', batchOps, rid('batch'));
        await call(client, 'delObject', B, 'k2', rid('delObject'));
        const rows = await collect(client, 'sql', 'SELECT 1 AS one', [], rid('sql'));
        assert.deepEqual(rows, [{ one: 1 }]);
        await call(client, 'ping', { ...rid('ping'), deep: true });
        await call(client, 'versionInternal', rid('version', 'version'));
        await call(client, 'getTokens', rid('getTokens')).catch(() => undefined);
        /* listen / notify / unlisten */
        const listenOpts = rid('listen');
        const l = client.listen('usdtchan', listenOpts) as MorayClient & { unlisten(cb: () => void): void };
        const notes: { payload: string }[] = [];
        l.on('data', (d: { payload: string }) => notes.push(d));
        l.on('error', () => undefined);
        await waitUntil(() => tracer.out().includes(`moray:listen-start|${listenOpts.req_id}`), 10000,
            'listen-start');
        await sleep(100);
        await call(client, 'notify', 'usdtchan', 'hello-usdt', rid('notify', 'sql'));
        await waitUntil(() => notes.length > 0, 5000, 'notification');
        await new Promise<void>((r) => l.unlisten(() => r()));
        /* error case */
        const missing = rid('getObject-missing', 'getObject');
        await assert.rejects(call(client, 'getObject', B, 'nosuchkey', missing), { name: 'ObjectNotFoundError' });
        await call(client, 'delBucket', B, rid('delBucket'));
        client.close();
        closed = true;
        await sleep(1500);
        await tracer.stop();

        assert.doesNotMatch(tracer.out(), /Lost \d+ events/, 'bpftrace lost events');
        if (process.env['USDT_TRACE_OUT'] !== undefined) {
            fs.writeFileSync(process.env['USDT_TRACE_OUT'], tracer.out());
        }
        const evs = parseEvents(tracer.out());
        const named = (name: string): Ev[] => evs.filter((e) => e.name === (name.includes(':') ? name : `moray:${name}`));
        const byReq = (name: string, reqId: string): Ev[] => {
            const i = argIndex(name, 'req_id');
            return named(name).filter((e) => e.args[i] === reqId);
        };

        /* request-start/done of every tracked RPC, and its window */
        interface Win { tr: Tracked; msgid: string; conn: string; t0: bigint; t1: bigint }
        const wins = new Map<string, Win>();
        for (const tr of tracked) {
            /* (unlisten reuses its listen's req_id: match the method too) */
            const rs = byReq('request-start', tr.reqId).filter((e) => e.args[2] === tr.method);
            assert.equal(rs.length, 1, `${tr.rpc}: one request-start (${rs.length})`);
            assert.equal(rs[0]!.args[2], tr.method, `${tr.rpc}: request-start method`);
            assert.match(rs[0]!.args[1]!, /^\d+$/);
            const rd = byReq('request-done', tr.reqId).filter((e) => e.args[2] === tr.method);
            assert.equal(rd.length, 1, `${tr.rpc}: one request-done`);
            assert.deepEqual(rd[0]!.args.slice(0, 3), rs[0]!.args.slice(0, 3), `${tr.rpc}: request-done conn/msgid/method`);
            const wantErr = tr.rpc === 'getObject-missing' ? 'ObjectNotFoundError' :
                tr.rpc === 'getTokens' ? rd[0]!.args[4] : '';
            assert.equal(rd[0]!.args[4], wantErr, `${tr.rpc}: request-done error`);
            assert.match(rd[0]!.args[5]!, /^\d+$/, 'latency_us');
            wins.set(tr.rpc, { tr, msgid: rs[0]!.args[1]!, conn: rs[0]!.args[0]!, t0: rs[0]!.t, t1: 0n });
        }
        const ordered = [...wins.values()].sort((a, b) => (a.t0 < b.t0 ? -1 : 1));
        ordered.forEach((w, i) => {
            w.t1 = ordered[i + 1]?.t0 ?? (1n << 62n);
        });
        const W = (rpc: string): Win => wins.get(rpc)!;
        const inWin = (name: string, rpc: string): Ev[] => {
            const w = W(rpc);
            return named(name).filter((e) => e.t >= w.t0 && e.t < w.t1 && e.args[0] === w.msgid);
        };
        const req = (rpc: string): string => W(rpc).tr.reqId;
        const msg = (rpc: string): string => W(rpc).msgid;

        await t.test('fastserver: conn-create, rpc-start/done per request, conn-destroy', () => {
            const creates = named('fastserver:conn-create');
            assert.ok(creates.length >= 1, 'conn-create fired');
            assert.ok(creates.every((e) => /^127\.0\.0\.1:\d+$/.test(e.args[2]!)),
                JSON.stringify(creates.map((e) => e.args)));
            for (const w of wins.values()) {
                const rs = named('fastserver:rpc-start').filter((e) => e.t <= w.t1 && e.args[2] === w.msgid &&
                    e.args[3] === w.tr.method && e.t >= w.t0 - 5_000_000_000n);
                assert.ok(rs.length >= 1, `${w.tr.rpc}: fastserver rpc-start msgid ${w.msgid}`);
                const last = rs[rs.length - 1]!;
                assert.equal(last.args[1], w.conn, `${w.tr.rpc}: rpc-start conn_id = request-start conn_id`);
                assert.ok(named('fastserver:rpc-done').some((e) => e.t > last.t && e.args[1] === last.args[1] &&
                    e.args[2] === w.msgid), `${w.tr.rpc}: fastserver rpc-done`);
            }
            const conn = W('putObject').conn;
            assert.ok(creates.some((e) => e.args[1] === conn), 'conn-create for the client connection');
            assert.ok(named('fastserver:conn-destroy').some((e) => e.args[1] === conn),
                'conn-destroy after client.close()');
        });

        await t.test('bucket RPCs', () => {
            for (const rpc of ['createBucket', 'getBucket', 'updateBucket', 'delBucket']) {
                const p = rpc.toLowerCase();
                for (const ph of ['start', 'done']) {
                    const e = byReq(`${p}-${ph}`, req(rpc));
                    assert.equal(e.length, 1, `${p}-${ph}`);
                    assert.deepEqual(e[0]!.args, [msg(rpc), req(rpc), B], `${p}-${ph} args`);
                }
            }
            for (const ph of ['start', 'done']) {
                const e = byReq(`listbuckets-${ph}`, req('listBuckets'));
                assert.equal(e.length, 1, `listbuckets-${ph}`);
                assert.deepEqual(e[0]!.args, [msg('listBuckets'), req('listBuckets')]);
            }
        });

        await t.test('putObject / getObject / delObject', () => {
            let e = byReq('putobject-start', req('putObject'));
            assert.deepEqual(e.map((x) => x.args), [[msg('putObject'), req('putObject'), B, 'k1',
                cut(JSON.stringify(values['k1']))]]);
            e = byReq('putobject-done', req('putObject'));
            assert.deepEqual(e.map((x) => x.args), [[msg('putObject'), req('putObject')]]);
            e = byReq('getobject-start', req('getObject'));
            assert.deepEqual(e.map((x) => x.args), [[msg('getObject'), req('getObject'), B, 'k1']]);
            e = byReq('getobject-done', req('getObject'));
            assert.equal(e.length, 1, 'getobject-done');
            const v = e[0]!.args[2]!;
            assert.ok(v.startsWith('{'), v);
            for (const frag of [`"key":"k1"`, `"bucket":"${B}"`, `"_etag":"${got._etag}"`]) {
                assert.ok(v.includes(frag) || v.length >= STRLEN - 1, `getobject-done value has ${frag}: ${v}`);
            }
            if (v.length < STRLEN - 1) {
                const parsed = JSON.parse(v) as Record<string, unknown>;
                assert.deepEqual(parsed['value'], values['k1']);
                assert.equal(parsed['_id'], got._id);
            }
            e = byReq('delobject-start', req('delObject'));
            assert.deepEqual(e.map((x) => x.args), [[msg('delObject'), req('delObject'), B, 'k2']]);
            e = byReq('delobject-done', req('delObject'));
            assert.deepEqual(e.map((x) => x.args), [[msg('delObject'), req('delObject')]]);
        });

        await t.test('findObjects: start, one record per row sent, done with the count', () => {
            const e = byReq('findobjects-start', req('findObjects'));
            assert.deepEqual(e.map((x) => x.args), [[msg('findObjects'), req('findObjects'), B, '(n>=1)']]);
            const recs = inWin('findobjects-record', 'findObjects');
            assert.deepEqual(recs.map((r) => r.args), found.map((r: any) =>
                [msg('findObjects'), r.key, String(r._id), r._etag, cut(JSON.stringify(r.value))]));
            assert.deepEqual(inWin('findobjects-done', 'findObjects').map((x) => x.args),
                [[msg('findObjects'), '4']]);
        });

        await t.test('updateObjects / deleteMany fire start AND done', () => {
            assert.deepEqual(byReq('update-start', req('updateObjects')).map((x) => x.args),
                [[msg('updateObjects'), req('updateObjects'), B, '{"n":10}', '(name=k2)']]);
            assert.deepEqual(byReq('update-done', req('updateObjects')).map((x) => x.args),
                [[msg('updateObjects'), req('updateObjects')]]);
            assert.deepEqual(byReq('delmany-start', req('deleteMany')).map((x) => x.args),
                [[msg('deleteMany'), req('deleteMany'), B, '(name=k3)']]);
            assert.deepEqual(byReq('delmany-done', req('deleteMany')).map((x) => x.args),
                [[msg('deleteMany'), req('deleteMany')]]);
        });

        await t.test('batch: start, op-start/op-done per op with op names, done', () => {
            const m = msg('batch');
            const r = req('batch');
            assert.deepEqual(byReq('batch-start', r).map((x) => x.args), [[m, r]]);
            assert.deepEqual(byReq('batch-op-start', r).map((x) => x.args), [
                [m, r, B, 'put', 'k5'],
                [m, r, B, 'update', '(name=k4)'],
                [m, r, B, 'delete', 'k1'],
                [m, r, B, 'deleteMany', '(name=k6)'],
            ]);
            assert.equal(byReq('batch-op-done', r).length, 4, 'batch-op-done per op');
            assert.deepEqual(byReq('batch-done', r).map((x) => x.args), [[m, r]]);
        });

        await t.test('reindexObjects after a versioned updateBucket', () => {
            const m = msg('reindexObjects');
            const r = req('reindexObjects');
            assert.deepEqual(byReq('reindexobjects-start', r).map((x) => x.args), [[m, r, B, '100']]);
            const recs = inWin('reindexobjects-record', 'reindexObjects');
            assert.deepEqual(recs.map((x) => x.args).sort(), ['k1', 'k2', 'k3', 'k4'].map((k) => [m, B, k]));
            assert.deepEqual(byReq('reindexobjects-done', r).map((x) => x.args), [[m, r]]);
        });

        await t.test('ping deep, version, getTokens, sql: request probes; ping-start/done deep=1', () => {
            const m = msg('ping');
            const r = req('ping');
            assert.deepEqual(byReq('ping-start', r).map((x) => x.args), [[m, r, '1']]);
            assert.deepEqual(byReq('ping-done', r).map((x) => x.args), [[m, r, '1']]);
            /* no per-RPC or step probes for version / getTokens */
            for (const rpc of ['version', 'getTokens']) {
                assert.deepEqual(byReq('handler-start', req(rpc)), [], `${rpc}: no steps`);
            }
        });

        await t.test('sql and query-* probes', () => {
            const r = req('sql');
            /* the sql RPC runs in a transaction (§10.2: getPGHandleAndTransaction, execSql) */
            assert.deepEqual(byReq('query-start', r).map((x) => x.args[1]),
                ['BEGIN TRANSACTION ISOLATION LEVEL READ COMMITTED', 'SELECT 1 AS one', 'COMMIT']);
            assert.deepEqual(byReq('query-row', r).map((x) => x.args), [[r, 'SELECT 1 AS one', '{"one":1}']]);
            const done = byReq('query-done', r).filter((x) => x.args[1] === 'SELECT 1 AS one');
            assert.equal(done.length, 1, 'query-done');
            assert.equal(done[0]!.args[1], 'SELECT 1 AS one');
            assert.match(done[0]!.args[2]!, /"rowCount":1/);
            /* the notify goes through sql too */
            assert.ok(byReq('query-start', req('notify')).some((x) => /pg_notify/i.test(x.args[1]!)),
                'notify query-start');
        });

        await t.test('listen-start / listen-notification', () => {
            const r = req('listen');
            assert.deepEqual(byReq('listen-start', r).map((x) => x.args), [[r, 'usdtchan']]);
            assert.deepEqual(byReq('listen-notification', r).map((x) => x.args), [[r, 'usdtchan', 'hello-usdt']]);
            assert.ok(named('request-start').some((e) => e.args[2] === 'unlisten'), 'request-start unlisten');
            assert.ok(named('request-done').some((e) => e.args[2] === 'unlisten'), 'request-done unlisten');
        });

        await t.test('error case: handler-error, query probes, getobject-done undefined', () => {
            const r = req('getObject-missing');
            const m = msg('getObject-missing');
            const he = byReq('handler-error', r);
            assert.equal(he.length, 1, 'handler-error');
            assert.deepEqual(he[0]!.args.slice(0, 4), [m, r, 'getObject', 'loadObject']);
            assert.match(he[0]!.args[4]!, /ObjectNotFoundError/);
            assert.deepEqual(byReq('getobject-done', r).map((x) => x.args), [[m, r, 'undefined']]);
            const qs = byReq('query-start', r);
            assert.ok(qs.some((q) => /FROM usdt_srv_b WHERE _key = \$1/.test(q.args[1]!)),
                JSON.stringify(qs.map((q) => q.args)));
            const qd = byReq('query-done', r);
            assert.ok(qd.some((q) => /"rowCount":0/.test(q.args[2]!)), JSON.stringify(qd.map((q) => q.args)));
        });

        await t.test('pool-checkout fires with sane statistics', () => {
            const w = W('putObject');
            const pc = named('pool-checkout').filter((e) => e.t >= w.t0 && e.t < w.t1);
            assert.ok(pc.length >= 1, 'pool-checkout during putObject');
            for (const e of pc) {
                const [total, idle, pending, waiters] = e.args.map(Number) as [number, number, number, number];
                assert.ok(total >= 1 && total <= 4 && idle >= 0 && idle <= total && pending >= 0 && waiters >= 0,
                    JSON.stringify(e.args));
            }
        });

        await t.test('handler-start/done step names of §10.2', () => {
            const STEPS: Record<string, string[]> = {
                createBucket: ['getPGHandleAndTransaction', 'validateBucket', 'insertConfig', 'createSequence',
                    'createLockingSerial', 'createTable', 'createIndexes'],
                getBucket: ['getPGHandle', 'loadBucket'],
                listBuckets: ['getPGHandle', 'loadBuckets'],
                updateBucket: ['getPGHandleAndTransaction', 'validateBucket', 'loadBucket', 'ensureReindexProperty',
                    'calculateDiff', 'ensureRowVer', 'updateConfig', 'dropColumns', 'addColumns', 'createIndexes',
                    'createUniqueIndexes', 'shootdownBucket'],
                delBucket: ['getPGHandleAndTransaction', 'validate', 'checkExists', 'deleteConfig', 'dropTable',
                    'dropSequence', 'dropLockingSerial', 'shootdownBucket'],
                putObject: ['getPGHandleAndTransaction', 'loadBucket', 'selectForUpdate', 'verifyBucket',
                    'runPreChain', 'checkEtag', 'indexObject', 'getNextId', 'insert', 'update', 'updateSerial',
                    'runPostChain'],
                getObject: ['checkCache', 'dbConnect', 'loadBucket', 'sendHandledOptions', 'loadObject'],
                delObject: ['getPGHandleAndTransaction', 'loadBucket', 'drop', 'runPostChain'],
                findObjects: ['parseFilter', 'getPGHandle', 'beginRepeatableRead', 'loadBucket',
                    'checkRequiredIndexes', 'sendHandledOptions', 'decorateFilter', 'buildWhereClause', 'getCount',
                    'getRecords', 'sendSQL'],
                updateObjects: ['getPGHandleAndTransaction', 'parseFilter', 'loadBucket', 'checkOnlyUsableIndexes',
                    'decorateFilter', 'buildWhereClause', 'updateRows'],
                deleteMany: ['getPGHandleAndTransaction', 'parseFilter', 'loadBucket', 'checkOnlyUsableIndexes',
                    'decorateFilter', 'buildWhereClause', 'drop'],
                batch: ['getPGHandleAndTransaction', 'processRequests'],
                reindexObjects: ['getPGHandleAndTransaction', 'loadBucket', 'requiresReindex', 'processRows',
                    'recordStatus', 'countRemaining'],
                sql: ['getPGHandleAndTransaction', 'execSql'],
            };
            const bad: string[] = [];
            for (const [rpc, steps] of Object.entries(STEPS)) {
                const r = req(rpc);
                const m = msg(rpc);
                for (const ph of ['handler-start', 'handler-done']) {
                    const evs2 = byReq(ph, r);
                    for (const e of evs2) {
                        assert.deepEqual([e.args[0], e.args[1]], [m, rpc], `${rpc} ${ph} msgid/route`);
                    }
                    const names = evs2.map((e) => e.args[2]);
                    if (JSON.stringify(names) !== JSON.stringify(steps)) {
                        bad.push(`${rpc} ${ph}: got ${JSON.stringify(names)} want ${JSON.stringify(steps)}`);
                    }
                }
            }
            assert.deepEqual(bad, []);
        });
    });

/* ---- part 2: the bpftrace twins against the live server under load ---- */

const STREAMING = new Set(['moraystat', 'moray-queries', 'findslow']);
const TS = String.raw`\d{4} \w{3} [ \d]\d \d\d:\d\d:\d\d\s+\d+ [0-9a-f-]{36}`;
const TWINS: Record<string, [string[], RegExp[]]> = {
    'moraystat': [[], [/^PID\s+CONN\s+QLEN\s+OPS\s+GETS\s+FIND\s+PUTS\s+UPDS\s+DELS\s+BTCH\s+RIDX$/m,
        /^[1-9]\d*\s+\d+\s+\d+\s+[1-9]\d*\s+[1-9]\d*\s+[1-9]\d*\s+[1-9]\d*\s+\d+\s+[1-9]\d*\s+\d+\s+\d+$/m]],
    'moray-queries': [[], [new RegExp(`^${TS} start SELECT .* FROM ${LB} WHERE _key = \\$1`, 'm'),
        new RegExp(`^${TS} done \\d+us$`, 'm'),
        new RegExp(`^${TS} error \\d+us .*usdt_no_such_function`, 'm')]],
    'findslow': [['0'], [/^MS\s+BUCKET\s+RECORDS\s+FILTER$/m,
        new RegExp(`^\\d+\\s+${LB}\\s+1\\s+\\(name=key\\d\\)$`, 'm')]],
    'get_latency': [[], [new RegExp(`^@lat\\[${LB}, key\\d\\]:`, 'm'), /^\[\d+(\]|, \d+\))\s+\d+ \|@+/m]],
    'put_latency': [[], [new RegExp(`^@lat\\[${LB}, key\\d\\]:`, 'm'), /^\[\d+(\]|, \d+\))\s+\d+ \|@+/m]],
    'del_latency': [[], [new RegExp(`^@lat\\[${LB}, key\\d\\]:`, 'm'), /^\[\d+(\]|, \d+\))\s+\d+ \|@+/m]],
    'find_latency': [[], [new RegExp(`^@lat\\[${LB}, \\(name=key\\d\\), 1\\]:`, 'm')]],
    'rpc-latency': [['bucket'], [new RegExp(`^@lat\\[getObject, ${LB}\\]:`, 'm'),
        new RegExp(`^@lat\\[findObjects, ${LB}\\]:`, 'm'), new RegExp(`^@lat\\[putObject, ${LB}\\]:`, 'm'),
        /^@lat\[sql, \]:/m, /^@errs\[getObject, ObjectNotFoundError\]: \d+$/m]],
};

async function runTwin(t: TestContext, name: string): Promise<void> {
    const [args, expect] = TWINS[name]!;
    const streaming = STREAMING.has(name);
    const tr = spawnTracer(path.join(ROOT, 'tools/bt'), [name, String(pid()), ...args]);
    t.after(() => tr.stop());
    const attached = (): boolean => /Attaching \d+ probes/.test(tr.out()) || realErrors(tr.err()).length > 0;
    await waitUntil(attached, 30000, `${name} to attach`);
    if (streaming) {
        await waitUntil(() => expect.every((re) => re.test(tr.out())), 10000, `${name} output`)
            .catch(() => undefined);
    } else {
        /* "Attaching" precedes the uprobes being in place: give them time */
        await sleep(5000);
    }
    await tr.stop();
    assert.deepEqual(realErrors(tr.err()), [], tr.err());
    for (const re of expect) {
        assert.match(tr.out(), re, `${name} output:\n${tr.out().slice(0, 3000)}`);
    }
}

test('bpftrace twins print their output against the live server under load',
    { skip: skipReason, timeout: 60000 }, async (t) => {
        const client = await morayClient(fx.srv.port);
        t.after(() => client.close());
        await call(client, 'createBucket', LB, { index: { name: { type: 'string' } } }, {});
        let stop = false;
        const loop = (async () => {
            /* bounded: stops when the twins are done or after 45 s */
            const end = Date.now() + 45000;
            for (let i = 0; !stop && Date.now() < end; i++) {
                const key = `key${i % 5}`;
                await call(client, 'putObject', LB, key, { name: key, i }, {});
                await call(client, 'getObject', LB, key, {});
                await collect(client, 'findObjects', LB, `(name=${key})`, {});
                await call(client, 'delObject', LB, key, {});
                await call(client, 'getObject', LB, key, {}).catch(() => undefined);
                if (i % 5 === 0) {
                    await collect(client, 'sql', 'SELECT usdt_no_such_function()', [], {})
                        .catch(() => undefined);
                }
                await sleep(10);
            }
        })();
        try {
            const scripts = fs.readdirSync(path.join(ROOT, 'dtrace/linux'))
                .filter((f) => f.endsWith('.bt')).map((f) => f.slice(0, -3)).sort();
            assert.deepEqual(scripts, Object.keys(TWINS).sort());
            /* four bpftrace at a time: compiling is what costs on 2 cores */
            for (let i = 0; i < scripts.length; i += 4) {
                await Promise.all(scripts.slice(i, i + 4).map((name) => t.test(name, (t2) => runTwin(t2, name))));
            }
        } finally {
            stop = true;
            await loop;
        }
    });

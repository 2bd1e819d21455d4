/*
 * probe-demo: a process that fires Moray's probes without a server, so that
 * D scripts, their bpftrace twins and the backends can be tried against a
 * PID on any machine.
 *
 *   node --import tsx tools/probe-demo.ts [--mode table|rpc] [--seconds N]
 *                                          [--interval MS] [--backend auto|usdt|dtrace|noop]
 *                                          [--report]
 *
 *   table  every probe in PROBE_TABLE, every tick, with the fixed arguments
 *          of demoArgs() (the integration test checks bpftrace sees them)
 *   rpc    request-shaped sequences: request-start, <rpc>-start,
 *          pool-checkout, query-start/-done, handler-*, <rpc>-done,
 *          request-done, with a few ms of simulated latency, some finds
 *          slow, some handler/query errors
 *
 * Prints "ready <pid> <backend> <probes>" on stdout once the backend is
 * installed, then runs for --seconds (default 30) and exits.  Probes fire
 * only while a tracer is attached (the facade checks the semaphore first);
 * --report prints "fired <n>" every 500 ms, the number of times argument
 * closures ran, which shows that.
 */

import { allProbes, probe, installBackend, noopBackend } from '../src/probes/index';
import { PROBE_TABLE, type ProbeDef } from '../src/probes/table';
import { selectBackend } from '../src/probes/select';

/* Deterministic arguments for probe number `index` of the table. */
export function demoArgs(def: ProbeDef, index: number): (number | string | object)[] {
    return def.args.map(([name, type], i) => {
        switch (type) {
        case 'int': return 1000 * (index + 1) + i;
        case 'char *': return `${def.name}.${name}`;
        case 'json': return { probe: def.name, arg: name };
        }
    });
}

interface Opts { mode: string; seconds: number; interval: number; backend: string; report: boolean }

function parse(argv: string[]): Opts {
    const o: Opts = { mode: 'table', seconds: 30, interval: 20, backend: 'auto', report: false };
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i];
        const v = argv[i + 1];
        if (a === '--mode' && v !== undefined) { o.mode = v; i++; }
        else if (a === '--seconds' && v !== undefined) { o.seconds = Number(v); i++; }
        else if (a === '--interval' && v !== undefined) { o.interval = Number(v); i++; }
        else if (a === '--backend' && v !== undefined) { o.backend = v; i++; }
        else if (a === '--report') { o.report = true; }
        else { throw new Error(`unknown argument ${a}`); }
    }
    return o;
}

function fireTable(): void {
    PROBE_TABLE.forEach((def, index) => {
        probe(def.provider, def.name).fire(() => demoArgs(def, index));
    });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const RPCS = [
    { method: 'getObject', start: 'getobject-start', done: 'getobject-done' },
    { method: 'putObject', start: 'putobject-start', done: 'putobject-done' },
    { method: 'delObject', start: 'delobject-start', done: 'delobject-done' },
    { method: 'findObjects', start: 'findobjects-start', done: 'findobjects-done' },
] as const;

let msgid = 0;

async function oneRequest(seq: number): Promise<void> {
    const rpc = RPCS[seq % RPCS.length]!;
    const id = ++msgid;
    const reqId = `00000000-0000-4000-8000-${String(seq).padStart(12, '0')}`;
    const bucket = `bucket${seq % 3}`;
    const key = `key${seq % 5}`;
    const filter = `(name=key${seq % 5})`;
    const t0 = process.hrtime.bigint();
    probe('fastserver', 'rpc-start').fire(() => [0, 1, id, rpc.method]);
    probe('moray', 'request-start').fire(() => [1, id, rpc.method, reqId]);
    switch (rpc.start) {
    case 'putobject-start':
        probe('moray', rpc.start).fire(() => [id, reqId, bucket, key, '{"v":1}']);
        break;
    case 'findobjects-start':
        probe('moray', rpc.start).fire(() => [id, reqId, bucket, filter]);
        break;
    default:
        probe('moray', rpc.start).fire(() => [id, reqId, bucket, key]);
    }
    probe('moray', 'pool-checkout').fire(() => [4, 1 + (seq % 3), 0, seq % 2]);
    probe('moray', 'handler-start').fire(() => [id, rpc.method, 'loadBucket', reqId]);
    const sql = `SELECT * FROM ${bucket} WHERE _key = $1`;
    probe('moray', 'query-start').fire(() => [reqId, sql]);
    /* finds are slower, every 7th request much slower */
    await sleep(1 + (rpc.method === 'findObjects' ? 5 : 0) + (seq % 7 === 0 ? 20 : 0));
    const failed = seq % 11 === 0;
    if (failed) {
        probe('moray', 'query-error').fire(() => [reqId, sql, 'error: canceling statement due to statement timeout']);
        probe('moray', 'handler-error').fire(() => [id, reqId, rpc.method, 'loadBucket',
            'ObjectNotFoundError: demo error']);
    } else {
        probe('moray', 'query-done').fire(() => [reqId, sql, { rowCount: 1 }]);
    }
    probe('moray', 'handler-done').fire(() => [id, rpc.method, 'loadBucket', reqId]);
    switch (rpc.done) {
    case 'findobjects-done':
        probe('moray', rpc.done).fire(() => [id, seq % 4]);
        break;
    case 'getobject-done':
        probe('moray', rpc.done).fire(() => [id, reqId, '{"v":1}']);
        break;
    default:
        probe('moray', rpc.done).fire(() => [id, reqId]);
    }
    const us = Number((process.hrtime.bigint() - t0) / 1000n);
    probe('moray', 'request-done').fire(() => [1, id, rpc.method, reqId,
        failed ? 'ObjectNotFoundError' : '', us]);
    probe('fastserver', 'rpc-done').fire(() => [0, 1, id]);
}

async function main(): Promise<void> {
    const o = parse(process.argv.slice(2));
    let name: string;
    if (o.backend === 'noop') {
        installBackend(noopBackend);
        name = 'noop';
    } else {
        name = selectBackend(undefined, o.backend === 'auto' ? {} :
            { env: { ...process.env, MORAY_PROBES: o.backend } });
    }
    process.stdout.write(`ready ${process.pid} ${name} ${allProbes().length}\n`);
    const end = Date.now() + o.seconds * 1000;
    if (o.report) {
        const report = (): void => {
            const n = allProbes().reduce((sum, h) => sum + h.fired, 0);
            process.stdout.write(`fired ${n}\n`);
        };
        setInterval(report, 500).unref();
    }
    let seq = 0;
    while (Date.now() < end) {
        if (o.mode === 'rpc') {
            await Promise.all([oneRequest(seq++), oneRequest(seq++)]);
        } else {
            fireTable();
        }
        await sleep(o.interval);
    }
}

if (require.main === module) {
    main().catch((err: unknown) => {
        process.stderr.write(`probe-demo: ${(err as Error).stack}\n`);
        process.exit(1);
    });
}

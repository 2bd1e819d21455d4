/*
 * The checks that take minutes and are opt-in (never part of --quick):
 *
 *   --idle-connections N   open N Fast connections that send nothing:
 *                          server RSS before / with / after them, server
 *                          CPU at rest, getObject latency while they are open
 *   --rows N               scaling: a 10k-row bucket and an N-row bucket in
 *                          the same database; getObject and findObjects at
 *                          1 and 16 in flight on both, through the server
 *                          and through the pg driver alone (same SQL), so
 *                          that PostgreSQL's own growth (deeper indexes, a
 *                          table larger than shared_buffers) is told apart
 *                          from the server's; load time and sizes
 *   --stream-rows N        one findObjects matching N rows (noLimit), with
 *                          and without the count(1) OVER () column; server
 *                          RSS sampled every 100 ms, time to first record
 *
 * Each prints its own section and returns its figures for the JSON report.
 * The main bucket and server are reused; extra buckets are created with
 * the createBucket RPC and loaded in SQL like the main one (dataset.ts).
 */

import * as net from 'node:net';
import type * as pg from 'pg';
import { performance } from 'node:perf_hooks';
import { runClosedLoop } from './closed-loop';
import type { BenchCluster } from './cluster';
import { createBucket, loadRows, MAIN_BUCKET } from './dataset';
import { type FastClient, requestOptions } from './fast-client';
import type { BenchOptions } from './options';
import { CpuMeter, processCpuMicros, rssBytes } from './proc-stats';
import { table } from './report';
import type { ServerProcess } from './server-process';
import { WORKLOADS, type WorkloadContext } from './workloads';

export interface ExtraArgs {
    o: BenchOptions;
    cluster: BenchCluster;
    server: ServerProcess;
    client: FastClient;
    /* the driver baseline's pool (null with --no-driver) */
    pool: pg.Pool | null;
    workDir: string;
    say: (m: string) => void;
    progress: (m: string) => void;
}

export interface IdleResult {
    requested: number;
    opened: number;
    failed: number;
    firstError: string | null;
    openSeconds: number;
    rssBeforeMiB: number;
    rssWithMiB: number;
    rssAfterCloseMiB: number;
    bytesPerConnection: number;
    restSeconds: number;
    /* server CPU at rest with the connections open, % of one core */
    restCpuPercent: number;
    getP50WithIdleMs: number;
    getP99WithIdleMs: number;
}

export interface ScalingSide {
    rows: number;
    loadSeconds: number;
    tableMiB: number;
    cells: { workload: string; concurrency: number; opsPerSec: number; p50: number; p99: number;
        errors: number; driverOpsPerSec: number | null; driverP50: number | null }[];
}

export interface StreamRun {
    variant: string;
    rows: number;
    seconds: number;
    rowsPerSec: number;
    firstRecordMs: number;
    rssBeforeMiB: number;
    rssPeakMiB: number;
    rssAfterMiB: number;
    serverCpuMicrosPerRow: number;
    error: string | null;
}

export interface ExtraResults {
    idle: IdleResult | null;
    scaling: { small: ScalingSide; large: ScalingSide } | null;
    stream: { rows: number; loadSeconds: number; runs: StreamRun[] } | null;
}

const MiB = 2 ** 20;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/* ---- idle connections ---- */

async function openIdle(port: number, n: number): Promise<{ sockets: net.Socket[]; failed: number;
    firstError: string | null }> {
    const sockets: net.Socket[] = [];
    let failed = 0;
    let firstError: string | null = null;
    const BATCH = 250;
    for (let i = 0; i < n; i += BATCH) {
        const k = Math.min(BATCH, n - i);
        await Promise.all(Array.from({ length: k }, () => new Promise<void>((resolve) => {
            const s = net.connect({ host: '127.0.0.1', port });
            s.once('connect', () => {
                sockets.push(s);
                resolve();
            });
            s.on('error', (err) => {
                if (!sockets.includes(s)) {
                    failed++;
                    firstError ??= err.message;
                    resolve();
                }
            });
        })));
    }
    return { sockets, failed, firstError };
}

async function idleCheck(a: ExtraArgs): Promise<IdleResult> {
    const n = a.o.idleConnections;
    const pid = a.server.pid;
    a.progress(`idle connections: opening ${n}`);
    await sleep(1000);
    const rssBefore = rssBytes(pid);
    const t0 = performance.now();
    const { sockets, failed, firstError } = await openIdle(a.server.port, n);
    const openSeconds = (performance.now() - t0) / 1000;
    await sleep(2000);
    const rssWith = rssBytes(pid);
    const restSeconds = a.o.quick ? 3 : 10;
    const cpu0 = processCpuMicros(pid);
    await sleep(restSeconds * 1000);
    const restCpu = processCpuMicros(pid) - cpu0;
    const client = a.client;
    const probe = await runClosedLoop((slot, done) => {
        client.call('getObject', [MAIN_BUCKET, String(1 + Math.floor(Math.random() * a.o.objects)),
            requestOptions({ noCache: true })], (err) => done(err), slot);
    }, { concurrency: 1, warmupMs: 500, durationMs: 2000 });
    for (const s of sockets) {
        s.destroy();
    }
    await sleep(3000);
    const rssAfter = rssBytes(pid);
    const r: IdleResult = {
        requested: n, opened: sockets.length, failed, firstError, openSeconds,
        rssBeforeMiB: rssBefore / MiB, rssWithMiB: rssWith / MiB, rssAfterCloseMiB: rssAfter / MiB,
        bytesPerConnection: sockets.length > 0 ? (rssWith - rssBefore) / sockets.length : 0,
        restSeconds, restCpuPercent: (restCpu / (restSeconds * 1e6)) * 100,
        getP50WithIdleMs: probe.latency.p50, getP99WithIdleMs: probe.latency.p99,
    };
    a.say(`\n== ${n} idle connections ==\n`);
    a.say(`opened ${r.opened} (${r.failed} failed${r.firstError ? `: ${r.firstError}` : ''}) in ` +
        `${r.openSeconds.toFixed(1)} s; server RSS ${r.rssBeforeMiB.toFixed(0)} MiB → ` +
        `${r.rssWithMiB.toFixed(0)} MiB with them (${(r.bytesPerConnection / 1024).toFixed(1)} KiB each) → ` +
        `${r.rssAfterCloseMiB.toFixed(0)} MiB after closing; server CPU at rest ` +
        `${r.restCpuPercent.toFixed(2)} % of a core over ${restSeconds} s; getObject with them open: ` +
        `p50 ${r.getP50WithIdleMs.toFixed(2)} ms, p99 ${r.getP99WithIdleMs.toFixed(2)} ms`);
    return r;
}

/* ---- scaling ---- */

async function scalingSide(a: ExtraArgs, bucket: string, rows: number): Promise<ScalingSide> {
    const sql = await createBucket(a.client, bucket);
    a.progress(`scaling: loading ${rows} rows into "${bucket}"`);
    const loadSeconds = await loadRows(a.cluster, sql, rows, (n, secs) => {
        if (n % 1000000 === 0 || n === rows) {
            a.progress(`  ${n} rows, ${secs.toFixed(0)} s`);
        }
    });
    const size = await a.cluster.query(`SELECT pg_total_relation_size('${sql.table}') AS b`);
    const ctx: WorkloadContext = { sql, rows };
    const cells: ScalingSide['cells'] = [];
    for (const w of ['getObject', 'findObjects'] as const) {
        for (const c of [1, 16]) {
            const loop = { concurrency: c, warmupMs: a.o.warmup * 1000, durationMs: a.o.duration * 1000 };
            const r = await runClosedLoop(WORKLOADS[w].server(a.client, ctx), loop);
            const d = a.pool === null ? null : await runClosedLoop(WORKLOADS[w].driver(a.pool, ctx), loop);
            cells.push({ workload: w, concurrency: c, opsPerSec: r.opsPerSec, p50: r.latency.p50,
                p99: r.latency.p99, errors: r.errors, driverOpsPerSec: d?.opsPerSec ?? null,
                driverP50: d?.latency.p50 ?? null });
        }
    }
    return { rows, loadSeconds, tableMiB: Number((size.rows[0] as { b: string }).b) / MiB, cells };
}

async function scalingCheck(a: ExtraArgs): Promise<{ small: ScalingSide; large: ScalingSide }> {
    const small = await scalingSide(a, 'bench_rows_small', 10000);
    const large = await scalingSide(a, 'bench_rows_large', a.o.rows);
    a.say(`\n== scaling: 10,000 vs ${a.o.rows.toLocaleString('en-US')} rows (server, ` +
        `${a.o.duration} s per cell) ==\n`);
    a.say(`load: ${small.loadSeconds.toFixed(1)} s for 10k rows (${small.tableMiB.toFixed(0)} MiB with ` +
        `indexes); ${large.loadSeconds.toFixed(1)} s for ${a.o.rows} rows (${large.tableMiB.toFixed(0)} MiB, ` +
        `${Math.round(a.o.rows / large.loadSeconds)} rows/s incl. VACUUM ANALYZE + CHECKPOINT)\n`);
    const ratio = (big: number | null, small: number | null) =>
        (big === null || small === null || small === 0 ? '-' : (big / small).toFixed(2));
    a.say(table(['workload', 'c', 'ops/s 10k', 'p50 10k', 'p99 10k', `ops/s ${a.o.rows}`,
        `p50 ${a.o.rows}`, `p99 ${a.o.rows}`, 'p50 ratio', 'driver p50 10k', `driver p50 ${a.o.rows}`,
        'driver p50 ratio'],
    small.cells.map((s, i) => {
        const l = large.cells[i]!;
        return [s.workload, String(s.concurrency), Math.round(s.opsPerSec).toString(), s.p50.toFixed(2),
            s.p99.toFixed(2), Math.round(l.opsPerSec).toString(), l.p50.toFixed(2), l.p99.toFixed(2),
            ratio(l.p50, s.p50), s.driverP50?.toFixed(2) ?? '-', l.driverP50?.toFixed(2) ?? '-',
            ratio(l.driverP50, s.driverP50)];
    }), 2));
    return { small, large };
}

/* ---- streaming ---- */

function streamOnce(a: ExtraArgs, bucket: string, variant: string,
    options: Record<string, unknown>): Promise<StreamRun> {
    const pid = a.server.pid;
    return new Promise((resolve) => {
        const rssBefore = rssBytes(pid);
        let peak = rssBefore;
        const sampler = setInterval(() => {
            peak = Math.max(peak, rssBytes(pid));
        }, 100);
        const meter = new CpuMeter(pid, a.cluster.postmasterPid);
        meter.start();
        const t0 = performance.now();
        let first = 0;
        let rows = 0;
        a.client.call('findObjects', [bucket, '(n>=1)', requestOptions(options)], (err) => {
            const seconds = (performance.now() - t0) / 1000;
            clearInterval(sampler);
            const cpu = meter.stop();
            peak = Math.max(peak, rssBytes(pid));
            setTimeout(() => resolve({
                variant, rows, seconds, rowsPerSec: rows / seconds, firstRecordMs: first,
                rssBeforeMiB: rssBefore / MiB, rssPeakMiB: peak / MiB, rssAfterMiB: rssBytes(pid) / MiB,
                serverCpuMicrosPerRow: rows > 0 ? cpu.server / rows : 0,
                error: err === null ? null : err.message,
            }), 1000);
        }, 0, () => {
            if (rows++ === 0) {
                first = performance.now() - t0;
            }
        });
    });
}

async function streamCheck(a: ExtraArgs): Promise<{ rows: number; loadSeconds: number; runs: StreamRun[] }> {
    const rows = a.o.streamRows;
    const sql = await createBucket(a.client, 'bench_stream');
    a.progress(`streaming: loading ${rows} rows`);
    const loadSeconds = await loadRows(a.cluster, sql, rows);
    const runs: StreamRun[] = [];
    runs.push(await streamOnce(a, 'bench_stream', 'default (count(1) OVER ())', { noLimit: true }));
    runs.push(await streamOnce(a, 'bench_stream', 'no_count', { noLimit: true, no_count: true }));
    a.say(`\n== findObjects streaming ${rows.toLocaleString('en-US')} rows (loaded in ` +
        `${loadSeconds.toFixed(1)} s) ==\n`);
    a.say(table(['variant', 'rows', 's', 'rows/s', 'first record ms', 'RSS before MiB', 'RSS peak MiB',
        'RSS after MiB', 'server µs/row', 'error'],
    runs.map((r) => [r.variant, String(r.rows), r.seconds.toFixed(1), Math.round(r.rowsPerSec).toString(),
        r.firstRecordMs.toFixed(0), r.rssBeforeMiB.toFixed(0), r.rssPeakMiB.toFixed(0),
        r.rssAfterMiB.toFixed(0), r.serverCpuMicrosPerRow.toFixed(1), r.error ?? '']), 1));
    return { rows, loadSeconds, runs };
}

export async function runExtraChecks(a: ExtraArgs): Promise<ExtraResults> {
    return {
        idle: a.o.idleConnections > 0 ? await idleCheck(a) : null,
        scaling: a.o.rows > 0 ? await scalingCheck(a) : null,
        stream: a.o.streamRows > 0 ? await streamCheck(a) : null,
    };
}

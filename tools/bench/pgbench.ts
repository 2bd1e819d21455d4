/*
 * pgbench as the "raw PostgreSQL" column: the same table, the same
 * statements (or the single-statement upsert for puts), prepared, at the
 * same number of clients (= requests in flight).
 *
 *   pgbench -h 127.0.0.1 -p P -U postgres -n -M prepared -c C -j min(2,C)
 *           -T warmup+duration -l --log-prefix=DIR/cell -f s1.sql@w1 ... moray
 *
 *   time ──► | connect | warm-up | tA ........ measured ........ tEnd | exit
 *                                 └ PG CPU sampled (setTimeout)        └ sampled after exit
 *
 * pgbench prints only aggregate figures, so throughput and percentiles
 * come from its per-transaction log (-l): one line per transaction,
 * `client txn latency_us script epoch_s epoch_us`.  Transactions that end
 * in [tA, tEnd] are counted (tEnd = the last transaction's end), the same
 * window the CPU delta covers up to pgbench's exit (which adds only the
 * disconnects).  pgbench's own CPU is not PostgreSQL's and is not counted.
 *
 * A missing binary is not an error: the columns are skipped with the
 * reason printed.
 */

import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { summarize, type LatencySummary } from './latency';
import { clusterCpuMicros } from './proc-stats';
import type { PgbenchScript } from './workloads';

export const PGBENCH_CANDIDATES = ['/usr/lib/postgresql/15/bin/pgbench', '/usr/bin/pgbench'];

export interface PgbenchAvailability {
    path: string | null;
    version: string | null;
    reason: string | null;
}

export function findPgbench(): PgbenchAvailability {
    for (const p of PGBENCH_CANDIDATES) {
        if (fs.existsSync(p)) {
            const r = spawnSync(p, ['--version'], { encoding: 'utf8' });
            if (r.status === 0) {
                return { path: p, version: r.stdout.trim(), reason: null };
            }
        }
    }
    return { path: null, version: null,
        reason: `pgbench not found (${PGBENCH_CANDIDATES.join(', ')}); ` +
            'install it with `apt-get install -y postgresql-15` (Debian package)' };
}

export interface PgbenchRun {
    ops: number;
    opsPerSec: number;
    elapsedMs: number;
    latency: LatencySummary;
    /* PostgreSQL CPU over the measured window, µs */
    pgCpuMicros: number;
    failed: number;
    firstError: string | null;
}

export interface PgbenchArgs {
    bin: string;
    port: number;
    database: string;
    scripts: PgbenchScript[];
    clients: number;
    warmupMs: number;
    durationMs: number;
    dir: string;
    name: string;
    postmasterPid: number;
}

export async function runPgbench(a: PgbenchArgs): Promise<PgbenchRun> {
    const cellDir = path.join(a.dir, a.name);
    fs.rmSync(cellDir, { recursive: true, force: true });
    fs.mkdirSync(cellDir, { recursive: true });
    const args = ['-h', '127.0.0.1', '-p', String(a.port), '-U', 'postgres', '-n', '-M', 'prepared',
        '-c', String(a.clients), '-j', String(Math.min(2, a.clients)),
        '-T', String(Math.max(1, Math.ceil((a.warmupMs + a.durationMs) / 1000))),
        '-l', `--log-prefix=${path.join(cellDir, 'txn')}`];
    a.scripts.forEach((s, i) => {
        const file = path.join(cellDir, `script${i}.sql`);
        fs.writeFileSync(file, s.text);
        args.push('-f', `${file}@${s.weight}`);
    });
    args.push(a.database);

    const proc = spawn(a.bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    proc.stdout.on('data', (d) => { out += d; });
    proc.stderr.on('data', (d) => { out += d; });
    let tA = 0;
    let cpuA = 0;
    const sampler = setTimeout(() => {
        tA = Date.now();
        cpuA = clusterCpuMicros(a.postmasterPid);
    }, a.warmupMs);
    const code = await new Promise<number | null>((r) => proc.once('exit', (c) => r(c)));
    clearTimeout(sampler);
    /* let the postmaster reap pgbench's backends: a zombie's CPU shows nowhere until then */
    await new Promise((r) => setTimeout(r, 300));
    const cpuB = clusterCpuMicros(a.postmasterPid);
    if (tA === 0) {
        throw new Error(`pgbench ended before its warm-up (exit ${code}):\n${out.slice(-2000)}`);
    }

    const lat: number[] = [];
    let tEnd = tA;
    for (const f of fs.readdirSync(cellDir)) {
        if (!f.startsWith('txn')) {
            continue;
        }
        for (const line of fs.readFileSync(path.join(cellDir, f), 'utf8').split('\n')) {
            const parts = line.split(' ');
            if (parts.length < 6) {
                continue;
            }
            const endMs = Number(parts[4]) * 1000 + Number(parts[5]) / 1000;
            if (endMs >= tA) {
                lat.push(Number(parts[2]) / 1000);
                if (endMs > tEnd) {
                    tEnd = endMs;
                }
            }
        }
    }
    const failedMatch = /number of failed transactions: (\d+)/.exec(out);
    const failed = failedMatch ? Number(failedMatch[1]) : 0;
    const errLine = out.split('\n').find((l) => /error|ERROR|FATAL|aborted/.test(l)) ?? null;
    const elapsedMs = tEnd - tA;
    return {
        ops: lat.length,
        opsPerSec: elapsedMs > 0 ? lat.length / (elapsedMs / 1000) : 0,
        elapsedMs,
        latency: summarize(lat),
        pgCpuMicros: cpuB - cpuA,
        failed: code === 0 ? failed : Math.max(failed, 1),
        firstError: code === 0 && failed === 0 ? null : (errLine ?? `pgbench exit ${code}`),
    };
}

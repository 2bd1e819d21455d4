/*
 * Syscall census of the server (--syscalls): how many system calls one RPC
 * costs, counted by `strace -c -f -p <server pid>` over a fixed load.
 *
 *   load (warm) ──► strace attaches ──► load, counting completed ops
 *               ──► SIGINT to strace ──► its summary table ──► calls / op
 *
 * On loopback TCP a write() also runs the receiver's side of the stack and
 * wakes the reader, so on this 2-vCPU VM every write to the client or to
 * PostgreSQL is one of the dearest things a request does; the census shows
 * how many the server issues per RPC (e.g. one per Fast frame, one per
 * statement) and whether they coalesce under concurrency.  strace slows
 * the traced process a lot: only the counts are meaningful, not timings.
 * Without strace the census is skipped with a reason.
 */

import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { runClosedLoop, type IssueFn } from './closed-loop';

export interface SyscallCensus {
    workload: string;
    concurrency: number;
    ops: number;
    /* syscall name → calls per operation, most frequent first */
    perOp: Record<string, number>;
    totalPerOp: number;
}

export function straceAvailable(): string | null {
    const r = spawnSync('strace', ['-V'], { encoding: 'utf8' });
    return r.status === 0 ? null : 'strace not found (apt-get install -y strace)';
}

/* Parse `strace -c` output: "% time seconds usecs/call calls [errors] syscall". */
function parseSummary(text: string): Record<string, number> {
    const out: Record<string, number> = {};
    for (const line of text.split('\n')) {
        const f = line.trim().split(/\s+/);
        if (f.length < 5 || !/^\d/.test(f[0]!) || !/^\d+$/.test(f[3]!)) {
            continue;
        }
        const name = f[f.length - 1]!;
        if (name !== 'total') {
            out[name] = Number(f[3]);
        }
    }
    return out;
}

export async function syscallCensus(pid: number, workload: string, issue: IssueFn,
    concurrency: number, durationMs: number, dir: string): Promise<SyscallCensus> {
    await runClosedLoop(issue, { concurrency, warmupMs: 0, durationMs: 300 });
    const file = path.join(dir, `strace-${workload}-c${concurrency}.txt`);
    const st = spawn('strace', ['-c', '-f', '-p', String(pid), '-o', file],
        { stdio: ['ignore', 'ignore', 'pipe'] });
    let attached = false;
    st.stderr.on('data', (d: Buffer) => {
        if (/attached/.test(d.toString())) {
            attached = true;
        }
    });
    const until = Date.now() + 5000;
    while (!attached && Date.now() < until && st.exitCode === null) {
        await new Promise((r) => setTimeout(r, 20));
    }
    await new Promise((r) => setTimeout(r, 100));
    let ops = 0;
    await runClosedLoop((slot, done) => issue(slot, (err) => {
        ops++;
        done(err);
    }), { concurrency, warmupMs: 0, durationMs });
    st.kill('SIGINT');
    await new Promise((r) => st.once('exit', r));
    const counts = fs.existsSync(file) ? parseSummary(fs.readFileSync(file, 'utf8')) : {};
    const perOp: Record<string, number> = {};
    let total = 0;
    for (const [name, n] of Object.entries(counts).sort((a, b) => b[1] - a[1])) {
        const v = n / Math.max(1, ops);
        total += v;
        if (v >= 0.01) {
            perOp[name] = v;
        }
    }
    return { workload, concurrency, ops, perOp, totalPerOp: total };
}

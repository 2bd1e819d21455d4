/*
 * Probe-layer overhead: the same getObject load against two fresh servers
 * that differ only in their probe backend.
 *
 *   server A: MORAY_PROBES=off   (noop backend: fire() is an empty call)
 *   server B: default            (usdt on Linux when native/usdt is built:
 *                                 fire() reads a semaphore per probe)
 *
 *   round i: A then B, or B then A (ABBA order, so drift on the shared
 *   machine and any order effect hit both alike)
 *   ──► per round: overhead_i = CPU/op(B) ÷ CPU/op(A) − 1
 *   ──► median and range over the rounds (the range shows the noise: a
 *       2 % effect is only visible when the range is narrower than that)
 *
 * Then, when the usdt backend is active and bpftrace can attach (root),
 * one more measurement of server B with dtrace/linux/rpc-latency.bt
 * attached through tools/bt: the cost of a tracer that is actually
 * listening (every request-start/done fires into the kernel).
 *
 * CPU per operation of the server process is the figure: on 2 noisy cores
 * a 2 % throughput difference is far below the run-to-run noise, while
 * CPU/op over the same rounds is steadier.  No tracer is attached, so this
 * is the cost of probes that are compiled in but not enabled, which is the
 * production state.
 */

import { spawn, spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { runClosedLoop, type IssueFn } from './closed-loop';
import { FastClient } from './fast-client';
import { CpuMeter } from './proc-stats';
import { ServerProcess } from './server-process';

export interface ProbeAbSide {
    backend: string;
    ops: number;
    opsPerSec: number;
    serverCpuMicrosPerOp: number;
}

export interface ProbeAbResult {
    concurrency: number;
    rounds: number;
    off: ProbeAbSide;
    on: ProbeAbSide;
    /* median over rounds of CPU/op(on) ÷ CPU/op(off) − 1 */
    cpuOverhead: number;
    /* the per-round values, for the spread */
    roundOverheads: number[];
    /* ops/s(on) ÷ ops/s(off) − 1 */
    throughputChange: number;
    /* server B again with rpc-latency attached (null: not possible here) */
    attached: (ProbeAbSide & { script: string; cpuVsOn: number; throughputVsOn: number }) | null;
    attachedNote: string | null;
    note: string | null;
}

function canAttach(): string | null {
    if (process.platform !== 'linux' || process.getuid?.() !== 0) {
        return 'needs root on Linux';
    }
    if (spawnSync('sh', ['-c', 'command -v bpftrace']).status !== 0) {
        return 'bpftrace is not installed';
    }
    return null;
}

export interface ProbeAbArgs {
    dbUrl: string;
    maxConnections: number;
    connections: number;
    dir: string;
    mainPath?: string;
    postmasterPid: number;
    concurrency: number;
    rounds: number;
    warmupMs: number;
    durationMs: number;
    issueFor: (client: FastClient) => IssueFn;
}

export async function runProbeAb(a: ProbeAbArgs): Promise<ProbeAbResult> {
    const start = (env: NodeJS.ProcessEnv) => ServerProcess.start({ dbUrl: a.dbUrl,
        maxConnections: a.maxConnections, dir: a.dir, env, mainPath: a.mainPath });
    const off = await start({ MORAY_PROBES: 'off' });
    const on = await start({ MORAY_PROBES: '' });
    const sides = [
        { server: off, client: await FastClient.connect('127.0.0.1', off.port, a.connections),
            ops: 0, secs: 0, cpu: 0 },
        { server: on, client: await FastClient.connect('127.0.0.1', on.port, a.connections),
            ops: 0, secs: 0, cpu: 0 },
    ];
    const roundOverheads: number[] = [];
    let attached: ProbeAbResult['attached'] = null;
    let attachedNote: string | null = null;
    try {
        for (let round = 0; round < a.rounds; round++) {
            const perOp = [0, 0];
            const order = round % 2 === 0 ? [0, 1] : [1, 0];
            for (const i of order) {
                const s = sides[i]!;
                const meter = new CpuMeter(s.server.pid, a.postmasterPid);
                let cpu = 0;
                const r = await runClosedLoop(a.issueFor(s.client), {
                    concurrency: a.concurrency, warmupMs: a.warmupMs, durationMs: a.durationMs,
                    onMeasureStart: () => meter.start(),
                    onMeasureEnd: () => { cpu = meter.stop().server; },
                });
                s.ops += r.ops;
                s.secs += r.elapsedMs / 1000;
                s.cpu += cpu;
                perOp[i] = cpu / Math.max(1, r.ops);
            }
            roundOverheads.push(perOp[1]! / perOp[0]! - 1);
        }
        attachedNote = on.probeBackend === 'usdt' ? canAttach() : 'the usdt backend is not active';
        if (attachedNote === null) {
            const s = sides[1]!;
            const script = 'rpc-latency';
            const bt = spawn(path.resolve(__dirname, '..', '..', '..', 'tools', 'bt'),
                [script, String(s.server.pid)], { stdio: ['ignore', 'pipe', 'pipe'] });
            let btOut = '';
            bt.stdout.on('data', (d) => { btOut += d; });
            bt.stderr.on('data', (d) => { btOut += d; });
            const until = Date.now() + 20000;
            while (!/Attaching \d+ probes/.test(btOut) && Date.now() < until && bt.exitCode === null) {
                await new Promise((r) => setTimeout(r, 100));
            }
            await new Promise((r) => setTimeout(r, 1000));
            if (bt.exitCode !== null) {
                attachedNote = `tools/bt ${script} exited: ${btOut.slice(-300)}`;
            } else {
                const meter = new CpuMeter(s.server.pid, a.postmasterPid);
                let cpu = 0;
                const r = await runClosedLoop(a.issueFor(s.client), {
                    concurrency: a.concurrency, warmupMs: a.warmupMs, durationMs: a.durationMs * 2,
                    onMeasureStart: () => meter.start(),
                    onMeasureEnd: () => { cpu = meter.stop().server; },
                });
                const exited = new Promise((res) => bt.once('exit', res));
                bt.kill('SIGINT');
                await Promise.race([exited, new Promise((res) => setTimeout(res, 5000))]);
                const ops = r.ops;
                const opsPerSec = ops / (r.elapsedMs / 1000);
                const cpuPerOp = cpu / Math.max(1, ops);
                const onCpu = s.cpu / Math.max(1, s.ops);
                const onOps = s.ops / s.secs;
                attached = { script, backend: `${on.probeBackend}+${script}`, ops, opsPerSec,
                    serverCpuMicrosPerOp: cpuPerOp, cpuVsOn: cpuPerOp / onCpu - 1,
                    throughputVsOn: opsPerSec / onOps - 1 };
            }
        }
    } finally {
        for (const s of sides) {
            s.client.close();
            await s.server.stop();
        }
    }
    const side = (s: typeof sides[number]): ProbeAbSide => ({
        backend: s.server.probeBackend, ops: s.ops, opsPerSec: s.ops / s.secs,
        serverCpuMicrosPerOp: s.cpu / Math.max(1, s.ops),
    });
    const A = side(sides[0]!);
    const B = side(sides[1]!);
    const sorted = [...roundOverheads].sort((x, y) => x - y);
    const mid = sorted.length / 2;
    const median = sorted.length % 2 === 1 ? sorted[Math.floor(mid)]! :
        (sorted[mid - 1]! + sorted[mid]!) / 2;
    return {
        concurrency: a.concurrency, rounds: a.rounds, off: A, on: B,
        cpuOverhead: median, roundOverheads,
        throughputChange: B.opsPerSec / A.opsPerSec - 1,
        attached, attachedNote,
        note: B.backend === 'usdt' ? null :
            `the default backend is "${B.backend}", not usdt (native/usdt not built?): ` +
            'both sides ran without USDT probes',
    };
}

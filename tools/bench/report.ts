/*
 * Result types and their rendering: plain-text tables for the terminal
 * (also pasted into docs/performance.md) and the JSON document of --json.
 *
 *   CellResult { workload, concurrency, moray, driver?, pgbench? }
 *        │
 *        ├─ cellTable()    one line per system: ops/s, p50/p99/p99.9,
 *        │                 node CPU/op (server process, or the driver's
 *        │                 own process), PostgreSQL CPU/op, errors
 *        ├─ ratioTable()   moray ÷ pgbench, moray ÷ driver, p50 gap
 *        └─ targetLines()  the targets, each PASS/MISS with its figure
 *
 * Every ratio is computed from figures of the same run: absolute numbers
 * on this shared 2-core machine move by ±10-25 % between runs.
 */

import type { LatencySummary } from './latency';
import type { BenchOptions } from './options';
import type { ProbeAbResult } from './probes-ab';
import type { CensusResult } from './statements';
import type { ProfileSummary } from './profile';
import type { SyscallCensus } from './syscalls';

export interface MachineInfo {
    cpus: number;
    cpuModel: string;
    memoryGiB: number;
    kernel: string;
    node: string;
    postgres: Record<string, string>;
    pgbench: string | null;
    loadAverageAtStart: number[];
}

export type SystemName = 'moray' | 'pg-driver' | 'pgbench';

export interface SystemResult {
    system: SystemName;
    ops: number;
    opsPerSec: number;
    elapsedMs: number;
    latency: LatencySummary;
    /* moray: the server process; pg-driver: the benchmark process running the driver */
    nodeCpuMicrosPerOp: number | null;
    /* kernel share of nodeCpuMicrosPerOp (syscalls, loopback TCP) */
    nodeSysShare: number | null;
    pgCpuMicrosPerOp: number | null;
    /* moray only: the load generator's own CPU */
    clientCpuMicrosPerOp: number | null;
    /* moray and pg-driver: the benchmark process's event-loop utilisation (near 1: it limits) */
    loadgenElu?: number | null;
    /* CPU other processes used during the measurement, % of one core (null: not measured) */
    foreignCpuPercent: number | null;
    /*
     * HOT share of the table's updates during this measurement (null: no
     * updates).  A Moray put always changes the indexed _mtime, so it can
     * never be HOT; a baseline whose updates are HOT skips all index work.
     */
    hotShare: number | null;
    /* WAL written per operation (cluster-wide, warm-up included), and full-page images */
    walBytesPerOp: number | null;
    walFpiPerOp: number | null;
    errors: number;
    firstError: string | null;
}

export interface CellResult {
    workload: string;
    concurrency: number;
    moray: SystemResult;
    driver: SystemResult | null;
    pgbench: SystemResult | null;
}

export interface CellRatios {
    vsPgbench: number | null;
    vsDriver: number | null;
    p50GapVsDriverMs: number | null;
    cpuVsDriver: number | null;
}

export function ratiosOf(c: CellResult): CellRatios {
    const div = (a: number, b: number | undefined) => (b === undefined || b === 0 ? null : a / b);
    return {
        vsPgbench: div(c.moray.opsPerSec, c.pgbench?.opsPerSec),
        vsDriver: div(c.moray.opsPerSec, c.driver?.opsPerSec),
        p50GapVsDriverMs: c.driver === null ? null : c.moray.latency.p50 - c.driver.latency.p50,
        cpuVsDriver: c.driver?.nodeCpuMicrosPerOp && c.moray.nodeCpuMicrosPerOp !== null ?
            c.moray.nodeCpuMicrosPerOp / c.driver.nodeCpuMicrosPerOp : null,
    };
}

function fmt(v: number | null | undefined, digits: number): string {
    if (v === null || v === undefined || !Number.isFinite(v)) {
        return '-';
    }
    return v.toFixed(digits);
}

function fmtInt(v: number | null | undefined): string {
    if (v === null || v === undefined || !Number.isFinite(v)) {
        return '-';
    }
    return Math.round(v).toLocaleString('en-US');
}

/*
 * Columns two spaces apart; the first `leftCols` columns (and the last,
 * when `lastLeft`) are left-aligned, the others right-aligned.  `minWidths`
 * lets rows printed one at a time line up with their header.
 */
export function table(header: string[], rows: string[][], leftCols = 1, lastLeft = false,
    minWidths: number[] = []): string {
    const widths = header.map((h, i) => Math.max(h.length, minWidths[i] ?? 0,
        ...rows.map((r) => (r[i] ?? '').length)));
    const left = (i: number) => i < leftCols || (lastLeft && i === header.length - 1);
    const line = (r: string[]) => r.map((c, i) =>
        (left(i) ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd();
    return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

export function cellRows(c: CellResult): string[][] {
    const out: string[][] = [];
    for (const s of [c.moray, c.driver, c.pgbench]) {
        if (s === null) {
            continue;
        }
        out.push([
            c.workload, String(c.concurrency), s.system, fmtInt(s.opsPerSec),
            fmt(s.latency.p50, 2), fmt(s.latency.p99, 2), fmt(s.latency.p999, 2),
            fmt(s.nodeCpuMicrosPerOp, 0),
            s.nodeSysShare === null ? '-' : `${(s.nodeSysShare * 100).toFixed(0)} %`,
            fmt(s.pgCpuMicrosPerOp, 0),
            s.hotShare === null ? '' : `${(s.hotShare * 100).toFixed(0)} %`,
            fmtInt(s.walBytesPerOp), fmt(s.walFpiPerOp, 2),
            s.errors === 0 ? '' : `${s.errors}`,
        ]);
    }
    return out;
}

export const CELL_HEADER = ['workload', 'c', 'system', 'ops/s', 'p50 ms', 'p99 ms', 'p99.9 ms',
    'node µs/op', 'sys', 'pg µs/op', 'HOT', 'WAL B/op', 'FPI/op', 'errors'];

/* widths that fit every realistic figure, for rows printed as cells complete */
export const CELL_WIDTHS = [11, 2, 9, 8, 6, 6, 8, 10, 4, 8, 5, 8, 6, 6];

export function cellTable(cells: CellResult[]): string {
    return table(CELL_HEADER, cells.flatMap(cellRows), 3, false, CELL_WIDTHS);
}

/* The header (two lines) and each row alone, aligned with CELL_WIDTHS. */
export function cellHeaderLines(): string {
    return table(CELL_HEADER, [], 3, false, CELL_WIDTHS);
}

export function cellRowLine(row: string[]): string {
    return table(CELL_HEADER, [row], 3, false, CELL_WIDTHS).split('\n')[2]!;
}

export function ratioTable(cells: CellResult[]): string {
    return table(['workload', 'c', 'moray ops/s', '÷ pgbench', '÷ pg-driver', 'p50 gap vs driver ms',
        'server CPU ÷ driver CPU'],
    cells.map((c) => {
        const r = ratiosOf(c);
        return [c.workload, String(c.concurrency), fmtInt(c.moray.opsPerSec), fmt(r.vsPgbench, 2),
            fmt(r.vsDriver, 2), fmt(r.p50GapVsDriverMs, 3), fmt(r.cpuVsDriver, 2)];
    }), 2);
}

/* One alternating round of a ratio target (main.ts runTargetRounds). */
export interface TargetRound {
    moray: number;
    pgbench: number;
    ratio: number;
}

export interface TargetRounds {
    workload: string;
    concurrency: number;
    durationS: number;
    rounds: TargetRound[];
    median: number;
}

export interface TargetCheck {
    target: string;
    value: string;
    met: boolean | null;
}

function cell(cells: CellResult[], w: string, c: number): CellResult | undefined {
    return cells.find((x) => x.workload === w && x.concurrency === c);
}

/*
 * `probe`: the A/B's CPU overhead; `judge` false when the rounds were too
 * short (--quick) for a 2 % difference to stand out of the noise.
 */
export function targetChecks(cells: CellResult[],
    probe: { overhead: number; judge: boolean; detail: string } | null,
    rounds: TargetRounds[] = []): TargetCheck[] {
    const out: TargetCheck[] = [];
    /* judged on the median of the alternating rounds when there are any, else on the cell */
    const ratioTarget = (w: string, what: string) => {
        const c = cell(cells, w, 64);
        const r = c === undefined ? null : ratiosOf(c).vsPgbench;
        const rr = rounds.find((x) => x.workload === w && x.concurrency === 64);
        const target = `${w} at 64 in flight ≥ 0.6 × pgbench ${what} at 64 clients`;
        if (rr !== undefined) {
            out.push({ target, met: rr.median >= 0.6,
                value: `${rr.median.toFixed(2)} × (median of ${rr.rounds.length} rounds: ` +
                    `${rr.rounds.map((x) => x.ratio.toFixed(2)).join(' ')}; cell ` +
                    `${r === null ? '-' : r.toFixed(2)})` });
            return;
        }
        out.push({ target,
            value: r === null ? 'not measured' : `${r.toFixed(2)} ×`, met: r === null ? null : r >= 0.6 });
    };
    ratioTarget('getObject', 'prepared SELECT');
    ratioTarget('putObject', 'upsert');
    const g1 = cell(cells, 'getObject', 1);
    const gap = g1 === undefined ? null : ratiosOf(g1).p50GapVsDriverMs;
    out.push({ target: 'getObject, 1 in flight: p50 within 0.3 ms of the pg driver alone',
        value: gap === null ? 'not measured' : `+${gap.toFixed(3)} ms`, met: gap === null ? null : gap <= 0.3 });
    const gets = cells.filter((x) => x.workload === 'getObject' && x.moray.nodeCpuMicrosPerOp !== null)
        .sort((a, b) => a.concurrency - b.concurrency);
    const top = gets[gets.length - 1];
    out.push({ target: 'server CPU per getObject ≤ 40 µs (judged at the highest concurrency)',
        value: top === undefined ? 'not measured' :
            gets.map((x) => `${x.moray.nodeCpuMicrosPerOp!.toFixed(0)} µs @${x.concurrency}`).join(', '),
        met: top === undefined ? null : top.moray.nodeCpuMicrosPerOp! <= 40 });
    out.push({ target: 'probe layer overhead (usdt vs noop) within 2 %',
        value: probe === null ? 'not measured' :
            `${(probe.overhead * 100).toFixed(1)} % CPU/op (${probe.detail})`,
        met: probe === null || !probe.judge ? null : probe.overhead <= 0.02 });
    return out;
}

export function targetTable(checks: TargetCheck[]): string {
    return table(['target', 'this run', 'met'], checks.map((t) =>
        [t.target, t.value, t.met === null ? '-' : t.met ? 'yes' : 'NO']), 2);
}

export function censusTable(cs: CensusResult[]): string {
    const rows: string[][] = [];
    for (const c of cs) {
        for (const s of c.server.statements) {
            rows.push([c.workload, s.callsPerOp.toFixed(2), s.meanMicros.toFixed(0),
                `${(s.share * 100).toFixed(0)} %`, s.query.length > 110 ? s.query.slice(0, 107) + '...' : s.query]);
        }
        rows.push([c.workload, c.server.roundTripsPerOp.toFixed(2),
            `Σ ${c.server.pgExecMicrosPerOp.toFixed(0)}/op`, '', '(round trips per RPC, PG exec µs per RPC)']);
    }
    return table(['workload', 'calls/op', 'mean µs', 'PG time', 'statement (normalised by PostgreSQL)'],
        rows, 1, true);
}

export function profileText(title: string, p: ProfileSummary): string {
    const entries = (list: ProfileSummary['topFunctions']) => table(['self', 'µs/op', 'function / module'],
        list.map((e) => [`${(e.share * 100).toFixed(1)} %`, fmt(e.microsPerOp, 2), e.name]), 0, true);
    return `${title}: ${p.busyMs.toFixed(0)} ms busy, ${p.idleMs.toFixed(0)} ms idle` +
        (p.ops === null ? '' : `, ${p.ops} ops, ${((p.busyMs * 1000) / p.ops).toFixed(1)} µs busy/op`) +
        ` (${p.file})\n\nby module:\n${entries(p.topModules.slice(0, 15))}\n\n` +
        `by function:\n${entries(p.topFunctions)}`;
}

export function pct(x: number): string {
    return `${(x * 100).toFixed(1)} %`;
}

export function syscallLines(list: SyscallCensus[]): string {
    return list.map((c) => `  ${c.workload.padEnd(11)} c=${String(c.concurrency).padEnd(3)} ` +
        Object.entries(c.perOp).slice(0, 7).map(([k, v]) => `${k} ${v.toFixed(2)}`).join(', ') +
        ` (total ${c.totalPerOp.toFixed(2)})`).join('\n');
}

export function probeAbLine(p: ProbeAbResult): string {
    return `probe A/B (getObject, ${p.concurrency} in flight, ${p.rounds} rounds each): ` +
        `${p.off.backend} ${p.off.serverCpuMicrosPerOp.toFixed(1)} µs/op ${Math.round(p.off.opsPerSec)} ops/s; ` +
        `${p.on.backend} ${p.on.serverCpuMicrosPerOp.toFixed(1)} µs/op ${Math.round(p.on.opsPerSec)} ops/s; ` +
        `CPU overhead median ${pct(p.cpuOverhead)} (rounds ${pct(Math.min(...p.roundOverheads))} .. ` +
        `${pct(Math.max(...p.roundOverheads))}), throughput ${pct(p.throughputChange)}` +
        (p.note ? ` (${p.note})` : '') +
        (p.attached ? `\nwith ${p.attached.script} attached: ` +
            `${p.attached.serverCpuMicrosPerOp.toFixed(1)} µs/op ${Math.round(p.attached.opsPerSec)} ops/s; ` +
            `CPU ${pct(p.attached.cpuVsOn)} and throughput ${pct(p.attached.throughputVsOn)} vs nothing attached` :
            `\nwith rpc-latency attached: not measured (${p.attachedNote ?? 'unknown'})`);
}

export interface Summary {
    o: BenchOptions;
    machine: MachineInfo;
    serverProbes: string;
    cells: CellResult[];
    rounds?: TargetRounds[];
    census: CensusResult[];
    syscalls: SyscallCensus[];
    probeAb: ProbeAbResult | null;
    targets: TargetCheck[];
}

/* The closing report: machine, cells, ratios, statements, syscalls, probes, targets. */
export function summaryText(r: Summary): string {
    const m = r.machine;
    const pgs = m.postgres;
    const out: string[] = [
        `machine: ${m.cpus} × ${m.cpuModel}, ${m.memoryGiB} GiB, ${m.kernel}, node ${m.node}, ` +
        `PostgreSQL ${pgs['server_version']} (fsync=${pgs['fsync']}, synchronous_commit=` +
        `${pgs['synchronous_commit']}, shared_buffers=${Number(pgs['shared_buffers']) * 8 / 1024} MB), ` +
        `load average at start ${m.loadAverageAtStart.join(' ')}`,
        `server: pg.maxConnections ${r.o.maxConnections}, probes ${r.serverProbes}; load generator: ` +
        `${r.o.connections} Fast connections; driver: pg.Pool(${r.o.maxConnections}); ` +
        `pgbench: ${m.pgbench ?? 'skipped'}\n`,
    ];
    if (r.cells.length > 0) {
        out.push(cellTable(r.cells), '\nratios (same run):\n', ratioTable(r.cells));
    }
    if ((r.rounds ?? []).length > 0) {
        out.push('\nratio targets in alternating rounds (moray ops/s / pgbench ops/s):\n',
            table(['workload', 'c', 'secs', 'rounds', 'median'], r.rounds!.map((x) => [x.workload,
                String(x.concurrency), String(x.durationS), x.rounds.map((y) =>
                    `${fmtInt(y.moray)}/${fmtInt(y.pgbench)} = ${y.ratio.toFixed(2)}`).join(', '),
                x.median.toFixed(2)]), 1, false));
    }
    if (r.census.length > 0) {
        out.push('\nstatements per RPC (server, pg_stat_statements, 16 in flight):\n', censusTable(r.census));
        for (const c of r.census) {
            if (c.onlyServer.length > 0 || c.onlyDriver.length > 0) {
                out.push(`  ! ${c.workload}: driver baseline differs from the server: only server ` +
                    `${JSON.stringify(c.onlyServer)}, only driver ${JSON.stringify(c.onlyDriver)}`);
            } else if (c.driver !== null) {
                out.push(`  ${c.workload}: the pg-driver baseline ran the same statements ` +
                    `(${c.driver.roundTripsPerOp.toFixed(2)} per op)`);
            }
        }
    }
    if (r.syscalls.length > 0) {
        out.push('\nserver syscalls per RPC (strace -c -f; counts only, strace slows the server):\n',
            syscallLines(r.syscalls));
    }
    if (r.probeAb !== null) {
        out.push('', probeAbLine(r.probeAb));
    }
    if (r.cells.length > 0) {
        out.push('\ntargets:\n', targetTable(r.targets));
    }
    return out.join('\n');
}

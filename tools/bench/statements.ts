/*
 * Statement census: which SQL statements each RPC costs, counted by
 * PostgreSQL itself (pg_stat_statements), and a check that the pg-driver
 * baseline runs the very same statements as the server.
 *
 *   track=top ─► for each workload:
 *                  reset ─► server pass (N ops) ─► read pg_stat_statements
 *                  reset ─► driver pass (M ops) ─► read pg_stat_statements
 *                  compare normalised statement texts
 *   track=none
 *
 * Per statement: calls per operation (each call is one client↔PostgreSQL
 * round trip in the extended protocol: Parse/Bind/Execute/Sync or, once
 * prepared, Bind/Execute/Sync), mean execution time inside PostgreSQL, and
 * its share of PostgreSQL execution time for the workload.  The sum of
 * calls/op is the number of round trips an RPC waits for: with 2 cores
 * shared by client, server and PostgreSQL, round trips (context switches
 * and wake-ups) rather than execution time are what a server can save.
 *
 * Operations are counted at completion, including the drain after the
 * window, so that calls/op is exact (every statement executed belongs to a
 * counted operation).
 */

import type { BenchCluster } from './cluster';
import { BENCH_DB } from './cluster';
import { runClosedLoop, type IssueFn } from './closed-loop';

export interface StatementStat {
    query: string;
    callsPerOp: number;
    meanMicros: number;
    /* share of PostgreSQL execution time of this pass */
    share: number;
}

export interface CensusPass {
    ops: number;
    statements: StatementStat[];
    roundTripsPerOp: number;
    pgExecMicrosPerOp: number;
}

export interface CensusResult {
    workload: string;
    server: CensusPass;
    driver: CensusPass | null;
    /* server statements the driver pass did not run (should be empty) */
    onlyServer: string[];
    onlyDriver: string[];
}

const READ_SQL = `SELECT query, calls, total_exec_time FROM pg_stat_statements s
    JOIN pg_database d ON d.oid = s.dbid
    WHERE d.datname = $1 AND query NOT ILIKE '%pg_stat_statements%'
      AND query NOT ILIKE '%pg_reload_conf%'
    ORDER BY total_exec_time DESC`;

async function pass(cluster: BenchCluster, issue: IssueFn, concurrency: number,
    durationMs: number): Promise<CensusPass> {
    await cluster.query('SELECT pg_stat_statements_reset()');
    let completed = 0;
    const counted: IssueFn = (slot, done) => issue(slot, (err) => {
        completed++;
        done(err);
    });
    await runClosedLoop(counted, { concurrency, warmupMs: 0, durationMs });
    const r = await cluster.query(READ_SQL, [BENCH_DB]);
    const rows = r.rows as { query: string; calls: string; total_exec_time: number }[];
    const total = rows.reduce((s, x) => s + x.total_exec_time, 0);
    const statements = rows.map((x) => ({
        query: x.query.replace(/\s+/g, ' ').trim(),
        callsPerOp: Number(x.calls) / Math.max(1, completed),
        meanMicros: (x.total_exec_time * 1000) / Math.max(1, Number(x.calls)),
        share: total > 0 ? x.total_exec_time / total : 0,
    })).filter((s) => s.callsPerOp >= 0.001);
    return {
        ops: completed,
        statements,
        roundTripsPerOp: statements.reduce((s, x) => s + x.callsPerOp, 0),
        pgExecMicrosPerOp: (total * 1000) / Math.max(1, completed),
    };
}

/*
 * Statement identity for the comparison (driver-only statement names do
 * not matter).  Constants are blanked too: pg_stat_statements replaces
 * them with $n only when the statement is parsed while tracking is on,
 * and the server prepared its statements before the census switched it
 * on (`SELECT 1` for the server, `SELECT $8` for the driver).
 */
function key(q: string): string {
    return q.replace(/\s+/g, ' ').trim().replace(/\$\d+|\b\d+\b/g, '?');
}

export async function runCensus(cluster: BenchCluster, workload: string, server: IssueFn,
    driver: IssueFn | null, concurrency: number, durationMs: number): Promise<CensusResult> {
    const s = await pass(cluster, server, concurrency, durationMs);
    const d = driver === null ? null : await pass(cluster, driver, concurrency, durationMs);
    const sk = new Set(s.statements.map((x) => key(x.query)));
    const dk = new Set((d?.statements ?? []).map((x) => key(x.query)));
    return {
        workload, server: s, driver: d,
        onlyServer: d === null ? [] : [...sk].filter((q) => !dk.has(q)),
        onlyDriver: d === null ? [] : [...dk].filter((q) => !sk.has(q)),
    };
}

/*
 * Command-line flags of the benchmark, validated once into a frozen
 * BenchOptions.
 *
 *   argv ──► parseBenchArgs ──► { flags as given } ──► quick defaults
 *        ──► BenchOptions (frozen)        usage errors ──► BenchUsageError
 *
 * `--quick` only changes defaults (shorter cells, fewer extra passes) so
 * that the whole run stays under two minutes on the 2-core machine; any flag
 * given explicitly wins over it.  The extra checks that take minutes
 * (--idle-connections, --rows, --stream-rows) are opt-in and never part of
 * --quick.
 */

export const WORKLOAD_NAMES = ['getObject', 'putObject', 'findObjects', 'mixed', 'batch'] as const;
export type WorkloadName = typeof WORKLOAD_NAMES[number];

export interface BenchOptions {
    readonly quick: boolean;
    /* measured seconds per cell and system */
    readonly duration: number;
    /* unmeasured seconds before each measurement */
    readonly warmup: number;
    readonly workloads: readonly WorkloadName[];
    /* requests in flight, in total */
    readonly concurrency: readonly number[];
    /* rows in the main bucket */
    readonly objects: number;
    /* server pg.maxConnections, and the size of the driver-only pg.Pool */
    readonly maxConnections: number;
    /* Fast connections the load generator spreads its requests over */
    readonly connections: number;
    readonly json: string | null;
    readonly cpuProf: boolean;
    /* pg_stat_statements census of the server's statements per RPC */
    readonly statements: boolean;
    /* strace -c census of the server's syscalls per RPC */
    readonly syscalls: boolean;
    /* A/B of the probe backends (MORAY_PROBES=off vs default) */
    readonly probesAb: boolean;
    /* alternating moray/pgbench rounds for the two ratio targets (0: judge on the cells) */
    readonly targetRounds: number;
    readonly pgbench: boolean;
    readonly driver: boolean;
    /* fsync off etc. (the test harness's settings); default: durable */
    readonly pgFast: boolean;
    readonly idleConnections: number;
    /* scaling check: compare a 10k-row bucket with one of this many rows */
    readonly rows: number;
    /* findObjects streaming check over this many rows */
    readonly streamRows: number;
    /* where profiles, pgbench logs and the cluster live (default: a temp dir) */
    readonly workDir: string | null;
    readonly keep: boolean;
    readonly verbose: boolean;
    /* the server entry point to run (default: this repository's dist/src/main.js) */
    readonly server: string | null;
}

export class BenchUsageError extends Error {
    override readonly name = 'BenchUsageError';
}

export const USAGE = `usage: npm run bench -- [flags]

  --quick                 short cells; whole run under two minutes
  --duration SECS         measured seconds per cell and system (default 5; quick 1)
  --warmup SECS           unmeasured seconds before each measurement (default 1; quick 0.4)
  --workloads a,b         subset of ${WORKLOAD_NAMES.join(',')}
                          (none: only the extra checks below)
  --concurrency 1,16      requests in flight in total (default 1,16,64)
  --objects N             rows in the main bucket (default 100000)
  --max-connections N     server pg.maxConnections = driver pool size (default 16)
  --connections N         Fast connections of the load generator (default 4)
  --json FILE             write every figure as JSON
  --cpu-prof              profile the server on each chosen workload (node --cpu-prof)
  --no-statements         skip the pg_stat_statements census
  --syscalls              strace -c the server: syscalls per RPC (get/put, c=1 and 16)
  --no-probes-ab          skip the probe-backend A/B (MORAY_PROBES=off vs default)
  --target-rounds N       judge the getObject/putObject ratio targets on the median of N
                          alternating moray/pgbench rounds at 64 in flight (default 4; quick 0)
  --no-pgbench            skip the pgbench columns
  --no-driver             skip the pg-driver columns
  --pg-fast               run PostgreSQL with fsync off (default: durable, as in production)
  --idle-connections N    open N idle Fast connections: server RSS and CPU at rest
  --rows N                scaling check: getObject/findObjects at 10k vs N rows
  --stream-rows N         findObjects streaming N rows, with server memory sampling
  --work-dir DIR          keep the cluster, logs and profiles in DIR
  --keep                  do not delete the work directory at the end
  --server PATH           run another build of the server (its dist/src/main.js), e.g. a
                          baseline checkout, to compare two versions on the same machine
  -v, --verbose           progress details

environment:
  MORAY_BENCH_PG          JSON of extra pool tunables for the server under test,
                          e.g. '{"pipelineConnections":4,"pipelineDepth":16}'
`;

function positiveNumber(flag: string, v: string | undefined, integer: boolean): number {
    if (v === undefined) {
        throw new BenchUsageError(`${flag} needs a value`);
    }
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0 || (integer && !Number.isInteger(n))) {
        throw new BenchUsageError(`${flag}: bad value "${v}"`);
    }
    return n;
}

export function parseBenchArgs(argv: readonly string[]): BenchOptions {
    const given: Partial<Record<keyof BenchOptions, unknown>> = {};
    let quick = false;
    for (let i = 0; i < argv.length; i++) {
        const flag = argv[i]!;
        const next = () => argv[++i];
        switch (flag) {
        case '--quick': quick = true; break;
        case '--duration': given.duration = positiveNumber(flag, next(), false); break;
        case '--warmup': given.warmup = positiveNumber(flag, next(), false); break;
        case '--workloads': {
            const list = (next() ?? '').split(',').filter((s) => s.length > 0 && s !== 'none');
            for (const w of list) {
                if (!(WORKLOAD_NAMES as readonly string[]).includes(w)) {
                    throw new BenchUsageError(`--workloads: unknown workload "${w}" ` +
                        `(known: ${WORKLOAD_NAMES.join(', ')})`);
                }
            }
            given.workloads = list;
            break;
        }
        case '--concurrency': {
            const list = (next() ?? '').split(',').filter((s) => s.length > 0)
                .map((s) => positiveNumber(flag, s, true));
            if (list.length === 0 || list.some((c) => c < 1)) {
                throw new BenchUsageError('--concurrency: a comma-separated list of integers >= 1');
            }
            given.concurrency = list;
            break;
        }
        case '--objects': given.objects = positiveNumber(flag, next(), true); break;
        case '--max-connections': given.maxConnections = positiveNumber(flag, next(), true); break;
        case '--connections': given.connections = positiveNumber(flag, next(), true); break;
        case '--json': given.json = next() ?? null; break;
        case '--cpu-prof': given.cpuProf = true; break;
        case '--no-statements': given.statements = false; break;
        case '--syscalls': given.syscalls = true; break;
        case '--no-probes-ab': given.probesAb = false; break;
        case '--target-rounds': given.targetRounds = positiveNumber(flag, next(), true); break;
        case '--no-pgbench': given.pgbench = false; break;
        case '--no-driver': given.driver = false; break;
        case '--pg-fast': given.pgFast = true; break;
        case '--idle-connections': given.idleConnections = positiveNumber(flag, next(), true); break;
        case '--rows': given.rows = positiveNumber(flag, next(), true); break;
        case '--stream-rows': given.streamRows = positiveNumber(flag, next(), true); break;
        case '--work-dir': given.workDir = next() ?? null; break;
        case '--keep': given.keep = true; break;
        case '--server': given.server = next() ?? null; break;
        case '-v': case '--verbose': given.verbose = true; break;
        case '-h': case '--help': throw new BenchUsageError('');
        default: throw new BenchUsageError(`unknown flag "${flag}"`);
        }
    }
    const opts: BenchOptions = {
        quick,
        duration: (given.duration as number | undefined) ?? (quick ? 1 : 5),
        warmup: (given.warmup as number | undefined) ?? (quick ? 0.4 : 1),
        workloads: (given.workloads as WorkloadName[] | undefined) ?? [...WORKLOAD_NAMES],
        concurrency: (given.concurrency as number[] | undefined) ?? [1, 16, 64],
        objects: (given.objects as number | undefined) ?? 100000,
        maxConnections: (given.maxConnections as number | undefined) ?? 16,
        connections: (given.connections as number | undefined) ?? 4,
        json: (given.json as string | null | undefined) ?? null,
        cpuProf: (given.cpuProf as boolean | undefined) ?? false,
        statements: (given.statements as boolean | undefined) ?? true,
        syscalls: (given.syscalls as boolean | undefined) ?? false,
        probesAb: (given.probesAb as boolean | undefined) ?? true,
        targetRounds: (given.targetRounds as number | undefined) ?? (quick ? 0 : 4),
        pgbench: (given.pgbench as boolean | undefined) ?? true,
        driver: (given.driver as boolean | undefined) ?? true,
        pgFast: (given.pgFast as boolean | undefined) ?? false,
        idleConnections: (given.idleConnections as number | undefined) ?? 0,
        rows: (given.rows as number | undefined) ?? 0,
        streamRows: (given.streamRows as number | undefined) ?? 0,
        workDir: (given.workDir as string | null | undefined) ?? null,
        keep: (given.keep as boolean | undefined) ?? false,
        verbose: (given.verbose as boolean | undefined) ?? false,
        server: (given.server as string | null | undefined) ?? null,
    };
    if (opts.duration <= 0) {
        throw new BenchUsageError('--duration must be > 0');
    }
    if (opts.objects < 1000) {
        throw new BenchUsageError('--objects must be at least 1000');
    }
    if (opts.maxConnections < 1 || opts.connections < 1) {
        throw new BenchUsageError('--max-connections and --connections must be >= 1');
    }
    if (opts.rows !== 0 && opts.rows < 10000) {
        throw new BenchUsageError('--rows must be at least 10000 (it is compared with 10k rows)');
    }
    return Object.freeze(opts);
}

/*
 * The benchmark's own PostgreSQL: an ephemeral cluster in a temp directory,
 * run from the embedded binaries through src/pg/local-postgres.ts (the same
 * code the test harness and `npm start` use).
 *
 *   workDir/pg/ ──initdb──► start (port: free, TCP on 127.0.0.1) ──► db `moray`
 *        └─ CREATE EXTENSION pg_stat_statements (for the statement census)
 *
 * Settings differ from the test harness on purpose: fsync and
 * synchronous_commit stay at their defaults (durable commits, as in
 * production and as pgbench is usually quoted) unless --pg-fast.  Every
 * client (server, pg driver, pgbench) connects over TCP to 127.0.0.1 so
 * that all three pay the same transport.
 *
 * pg_stat_statements is preloaded with track=none, which costs one branch
 * per statement; the census switches tracking on only around its own
 * passes (ALTER SYSTEM + pg_reload_conf()).
 */

import * as pg from 'pg';
import { LocalPostgres } from '../../src/pg/local-postgres';

export const BENCH_DB = 'moray';

export interface WriteActivity {
    updates: number;
    hot: number;
    walBytes: number;
    walFpi: number;
}

export class BenchCluster {
    private constructor(readonly pg: LocalPostgres) {}

    static async start(dataDir: string, fast: boolean, log: (m: string) => void): Promise<BenchCluster> {
        const c = new LocalPostgres({
            dataDir, database: BENCH_DB, fast, log,
            settings: {
                max_connections: '300',
                shared_preload_libraries: 'pg_stat_statements',
                'pg_stat_statements.max': '1000',
            },
        });
        await c.start();
        process.once('exit', () => c.killNow());
        const bc = new BenchCluster(c);
        await bc.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
        await bc.setStatementTracking(false);
        return bc;
    }

    get port(): number {
        return this.pg.port;
    }

    get url(): string {
        return this.pg.url;
    }

    /* the postmaster: parent of every backend */
    get postmasterPid(): number {
        const pid = this.pg.pid;
        if (pid === undefined) {
            throw new Error('cluster not running');
        }
        return pid;
    }

    async client(): Promise<pg.Client> {
        const c = new pg.Client({ host: '127.0.0.1', port: this.port, user: 'postgres',
            database: BENCH_DB });
        c.on('error', () => undefined);
        await c.connect();
        return c;
    }

    async query(sql: string, values?: unknown[]): Promise<pg.QueryResult> {
        const c = await this.client();
        try {
            return await c.query(sql, values);
        } finally {
            await c.end();
        }
    }

    /*
     * Switch pg_stat_statements on ('top') or off ('none') for every
     * session.  Not a -c flag: command-line settings would override ALTER
     * SYSTEM.  Backends apply the reload at their next command.
     */
    async setStatementTracking(on: boolean): Promise<void> {
        await this.query(`ALTER SYSTEM SET pg_stat_statements.track = '${on ? 'top' : 'none'}'`);
        await this.query('SELECT pg_reload_conf()');
        await new Promise((r) => setTimeout(r, 200));
    }

    /*
     * Write activity so far: updates of a table and how many were HOT
     * (heap-only: no index entry written), and the cluster's WAL (bytes,
     * full-page images).  Backends report table counts at most once a
     * second while busy, so a delta around a measurement is a sample, good
     * for a share; WAL counters are cluster-wide.
     */
    async writeActivity(table: string): Promise<WriteActivity> {
        const r = await this.query('SELECT t.n_tup_upd, t.n_tup_hot_upd, w.wal_bytes, w.wal_fpi ' +
            'FROM pg_stat_user_tables t, pg_stat_wal w WHERE t.relid = $1::regclass', [table]);
        const row = r.rows[0] as { n_tup_upd: string; n_tup_hot_upd: string; wal_bytes: string;
            wal_fpi: string } | undefined;
        return { updates: Number(row?.n_tup_upd ?? 0), hot: Number(row?.n_tup_hot_upd ?? 0),
            walBytes: Number(row?.wal_bytes ?? 0), walFpi: Number(row?.wal_fpi ?? 0) };
    }

    /*
     * The same starting line for every system: the dead rows of the
     * previous writes vacuumed (no autovacuum debt left to land in someone
     * else's measurement; after a write workload, the first reader would
     * otherwise pay for pruning them) and a checkpoint (each writer pays
     * the full-page images of its first touches after one, mostly in its
     * warm-up; otherwise whoever writes first after a checkpoint pays them
     * all: 0.3 FPI and 3 kB of WAL per put against 0.8 kB).
     */
    async resetTable(table: string): Promise<void> {
        await this.query(`VACUUM ${table}`);
        await this.query('CHECKPOINT');
    }

    /* The settings that matter for reading the results. */
    async settings(): Promise<Record<string, string>> {
        const r = await this.query("SELECT name, setting FROM pg_settings WHERE name IN " +
            "('fsync','synchronous_commit','full_page_writes','shared_buffers','max_connections'," +
            "'server_version','wal_level')");
        const out: Record<string, string> = {};
        for (const row of r.rows as { name: string; setting: string }[]) {
            out[row.name] = row.setting;
        }
        return out;
    }

    async stop(): Promise<void> {
        await this.pg.stop();
    }
}

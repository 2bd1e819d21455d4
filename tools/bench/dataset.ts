/*
 * The data every workload runs against.
 *
 *   createBucket RPC (the server's own DDL: table, sequence, 6 indexes)
 *        index: { name: string, n: number }
 *   findObjects sql_only RPC ──► the server's exact SELECT list, table
 *        identifier and WHERE clause (BucketSql), reused by the pg-driver
 *        and pgbench passes so that all three run the same statements
 *   bulk load in SQL (generate_series, 100k rows per statement)
 *   VACUUM ANALYZE + CHECKPOINT (no checkpoint storm inside a cell)
 *
 * Row i (1 ≤ i ≤ rows):
 *
 *   _key   = String(i)                      pgbench can bind `:k` as text
 *   _value = {"name":"<i % groups>","n":<i>,"owner":"<32 hex>","pad":"x…"}
 *            ~490 bytes of JSON, exactly what JSON.stringify would write
 *   name   = i % groups, groups = rows / 100, so `(name=g)` matches 100
 *            rows whatever the table size (findObjects LIMIT 10 then pays
 *            for a count(1) OVER () of 100 rows, as Moray clients do)
 *   n      = i
 *
 * _etag of loaded rows is md5-derived, not Moray's crc32: nothing reads it
 * back except getObject, which returns it verbatim; rows rewritten by puts
 * get real etags.
 */

import type { FastClient } from './fast-client';
import { requestOptions } from './fast-client';
import type { BenchCluster } from './cluster';

export const MAIN_BUCKET = 'bench';
export const PAD_BYTES = 410;
const PAD = 'x'.repeat(PAD_BYTES);

export const BUCKET_CONFIG = {
    index: { name: { type: 'string' }, n: { type: 'number' } },
};

export function groupsFor(rows: number): number {
    return Math.max(1, Math.floor(rows / 100));
}

/* The value of row i, as a put would send it. */
export function valueFor(i: number, groups: number): Record<string, unknown> {
    return { name: String(i % groups), n: i, owner: i.toString(16).padStart(32, '0'), pad: PAD };
}

/* The same JSON text, built by PostgreSQL from `i` (column expression). */
function valueSql(groups: number): string {
    return `'{"name":"' || (i % ${groups}) || '","n":' || i || ',"owner":"' || ` +
        `lpad(to_hex(i), 32, '0') || '","pad":"' || repeat('x', ${PAD_BYTES}) || '"}'`;
}

/*
 * What the server runs for a bucket, learned from the server itself
 * (findObjects with sql_only).  `where` holds $n placeholders for `args`.
 */
export interface BucketSql {
    bucket: string;
    table: string;
    /* the SELECT list of object reads: _id, _key, ..., index columns */
    columns: string;
    /* index columns in config order (the tail of the SELECT list) */
    indexColumns: string[];
    /* the findObjects WHERE ... LIMIT clause for the benchmark filter */
    findWhere: string;
    findArgs: unknown[];
}

const FIXED_COLUMNS = new Set(['_id', '_key', '_value', '_etag', '_mtime', '_txn_snap', '_idx', '_rver']);

export function findFilter(group: number): string {
    return `(name=${group})`;
}

export async function describeBucket(client: FastClient, bucket: string): Promise<BucketSql> {
    const recs = await client.callAsync('findObjects',
        [bucket, findFilter(0), requestOptions({ limit: 10, sql_only: true })]);
    const rec = recs[0] as { query?: string; args?: unknown[] } | undefined;
    const m = rec?.query === undefined ? null : /^SELECT (.*?) FROM (\S+) (.*)$/s.exec(rec.query);
    if (m === null) {
        throw new Error(`bench: unexpected sql_only answer ${JSON.stringify(recs)}`);
    }
    const columns = m[1]!;
    return {
        bucket,
        table: m[2]!,
        columns,
        indexColumns: columns.split(', ').filter((c) => !FIXED_COLUMNS.has(c)),
        findWhere: m[3]!,
        findArgs: rec!.args ?? [],
    };
}

export async function createBucket(client: FastClient, bucket: string): Promise<BucketSql> {
    await client.callAsync('createBucket', [bucket, BUCKET_CONFIG, requestOptions()]);
    const sql = await describeBucket(client, bucket);
    if (sql.indexColumns.join(',') !== 'name,n') {
        throw new Error(`bench: the server reads columns "${sql.columns}"; expected the index ` +
            'columns name, n last (loadRows and the put statements assume them)');
    }
    return sql;
}

/*
 * Load rows 1..rows in chunks; returns seconds spent (load + vacuum +
 * checkpoint).  `progress` is called after every chunk.
 */
export async function loadRows(cluster: BenchCluster, sql: BucketSql, rows: number,
    progress: (done: number, secs: number) => void = () => undefined): Promise<number> {
    const groups = groupsFor(rows);
    const t0 = Date.now();
    const chunk = 100000;
    const mtime = Date.now();
    const c = await cluster.client();
    try {
        for (let lo = 1; lo <= rows; lo += chunk) {
            const hi = Math.min(rows, lo + chunk - 1);
            await c.query(
                `INSERT INTO ${sql.table} (_key, _value, _etag, _mtime, _vnode, ` +
                `${sql.indexColumns.join(', ')}) ` +
                `SELECT i::text, v, upper(substr(md5(v), 1, 8)), ${mtime}, NULL, ` +
                `(i % ${groups})::text, i ` +
                `FROM (SELECT i, ${valueSql(groups)} AS v FROM generate_series(${lo}, ${hi}) i) s`);
            progress(hi, (Date.now() - t0) / 1000);
        }
        await c.query(`VACUUM ANALYZE ${sql.table}`);
        await c.query('CHECKPOINT');
    } finally {
        await c.end();
    }
    return (Date.now() - t0) / 1000;
}

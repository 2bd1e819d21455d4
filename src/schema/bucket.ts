/*
 * Buckets as the object RPCs see them, and the per-process bucket cache.
 *
 *   buckets_config row ──parse──► Bucket { index, reindexing, options,
 *   + table catalog (columns)        version, triggers, columns, flags }
 *
 * The cache (storage.md §9.1): up to 100 buckets, 300 s, keyed by name;
 * bypassed by `noBucketCache`; evicted locally by updateBucket, delBucket,
 * reindex completion and a put that finds a row indexed at a newer version.
 * Other processes may serve a stale config for up to 300 s (documented
 * reference behaviour).
 *
 * The statement names its columns (reindex_active through to_jsonb, so the
 * result type is the same whether or not that lazily added column exists):
 * a prepared `SELECT c.*` would fail with "cached plan must not change
 * result type" on every pooled connection after the first updateBucket.
 *
 * On a miss one statement reads the config row together with the table's
 * live columns (pg_attribute), which replaces the reference's separate
 * `_idx` probes: the column list tells whether `_rver`, `_vnode` and the
 * extended id `_idx` (with its valid index) exist.
 */

import { errors } from '../errors/catalog';
import type { PgHandle } from '../pg/handle';
import { probe } from '../probes';
import type { BucketSchema, IndexSpec } from './bucket-types';
import { quoteIdent } from '../filter/compile';

const CACHE_HIT = probe('moray', 'bucket-cache-hit');
const CACHE_MISS = probe('moray', 'bucket-cache-miss');

export interface Bucket extends BucketSchema {
    readonly index: Readonly<Record<string, IndexSpec>>;
    readonly pre: readonly string[];
    readonly post: readonly string[];
    readonly options: Readonly<Record<string, unknown>>;
    readonly version: number;
    /* parsed reindex_active, or null when the column is absent/NULL */
    readonly reindexActive: Readonly<Record<string, string[]>> | null;
    readonly mtime: Date;
    /* the table name as an SQL identifier */
    readonly table: string;
    /* index fields in config order with their column identifiers */
    readonly fields: readonly { name: string; column: string; lc: string; spec: IndexSpec }[];
    readonly columns: ReadonlySet<string>;
    readonly hasRver: boolean;
    readonly hasVnode: boolean;
    readonly guaranteeOrder: boolean;
    readonly loadedAt: number;
    /* filled lazily by the trigger runner */
    compiled?: unknown;
}

/* The raw row, as getBucket/listBuckets send it (JSON columns as text). */
export interface BucketRow {
    name: string;
    index: string;
    pre: string;
    post: string;
    options: string | null;
    mtime: Date;
    reindex_active?: string | null;
}

export const LOAD_BUCKET_SQL =
    'SELECT c.name, c.index, c.pre, c.post, c.options, c.mtime, ' +
    "to_jsonb(c) ->> 'reindex_active' AS reindex_active, " +
    'ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute a ' +
    'WHERE a.attrelid = to_regclass($2) AND a.attnum > 0 AND NOT a.attisdropped) ' +
    'AS moray_columns, EXISTS (SELECT 1 FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ic ' +
    'ON ic.oid = i.indexrelid WHERE i.indrelid = to_regclass($2) AND ' +
    "ic.relname = lower($1) || '__idx_idx' AND i.indisvalid) AS moray_idx_valid " +
    'FROM buckets_config c WHERE c.name = $1';

export function parseJsonColumn<T>(text: unknown, fallback: T): T {
    if (typeof text !== 'string' || text.length === 0) {
        return fallback;
    }
    return JSON.parse(text) as T;
}

export function bucketFromRow(row: Record<string, unknown>): Bucket {
    const name = row['name'] as string;
    const index = parseJsonColumn<Record<string, IndexSpec>>(row['index'], {});
    const options = parseJsonColumn<Record<string, unknown>>(row['options'], { version: 0 });
    const ra = parseJsonColumn<Record<string, string[]> | null>(row['reindex_active'], null);
    const reindexing = new Set<string>();
    if (ra !== null) {
        for (const fields of Object.values(ra)) {
            for (const f of fields) {
                reindexing.add(f);
            }
        }
    }
    const columns = new Set<string>((row['moray_columns'] as string[] | undefined) ?? []);
    const fields = Object.entries(index).map(([n, spec]) => ({
        name: n, column: quoteIdent(n), lc: n.toLowerCase(), spec,
    }));
    return {
        name,
        index,
        reindexing,
        hasExtendedId: columns.has('_idx') && row['moray_idx_valid'] === true,
        pre: parseJsonColumn<string[]>(row['pre'], []),
        post: parseJsonColumn<string[]>(row['post'], []),
        options,
        version: Number(options['version'] ?? 0) || 0,
        reindexActive: ra,
        mtime: row['mtime'] as Date,
        table: quoteIdent(name),
        fields,
        columns,
        hasRver: columns.has('_rver'),
        hasVnode: columns.size === 0 || columns.has('_vnode'),
        guaranteeOrder: options['guaranteeOrder'] === true,
        loadedAt: Date.now(),
    };
}

const MAX_ENTRIES = 100;
const MAX_AGE_MS = 300 * 1000;

export class BucketCache {
    private readonly map = new Map<string, Bucket>();
    /* the most recently used name: the last key of `map` */
    private newest: string | null = null;
    hits = 0;
    misses = 0;
    evictions = 0;
    /* entries dropped because the cache was full / because they were too old */
    lruDrops = 0;
    expired = 0;

    get(name: string): Bucket | undefined {
        const b = this.map.get(name);
        if (b === undefined) {
            return undefined;
        }
        if (Date.now() - b.loadedAt > MAX_AGE_MS) {
            this.map.delete(name);
            if (this.newest === name) {
                this.newest = null;
            }
            this.expired++;
            return undefined;
        }
        /* LRU: re-insert to mark as recently used (a hot bucket already is) */
        if (this.newest !== name) {
            this.map.delete(name);
            this.map.set(name, b);
            this.newest = name;
        }
        return b;
    }

    set(b: Bucket): void {
        this.map.delete(b.name);
        this.map.set(b.name, b);
        this.newest = b.name;
        while (this.map.size > MAX_ENTRIES) {
            const oldest = this.map.keys().next().value as string;
            this.map.delete(oldest);
            this.lruDrops++;
        }
    }

    evict(name: string): void {
        if (this.newest === name) {
            this.newest = null;
        }
        if (this.map.delete(name)) {
            this.evictions++;
        }
    }

    entries(): Bucket[] {
        return [...this.map.values()];
    }
}

/*
 * Load a bucket: from the cache unless `fresh`, else from PostgreSQL on the
 * request's connection (inside its transaction, if any).
 */
export async function loadBucket(cache: BucketCache, pg: PgHandle, name: string,
    fresh: boolean): Promise<Bucket> {
    if (!fresh) {
        const hit = cache.get(name);
        if (hit !== undefined) {
            cache.hits++;
            CACHE_HIT.fire(() => [name]);
            return hit;
        }
    }
    cache.misses++;
    CACHE_MISS.fire(() => [name]);
    const r = await pg.query(LOAD_BUCKET_SQL, [name, quoteIdent(name)]);
    const row = r.rows[0];
    if (row === undefined) {
        throw errors.bucketNotFound(name);
    }
    const b = bucketFromRow(row);
    cache.set(b);
    return b;
}

/*
 * Rows ↔ objects (storage.md §5, §8; moray-api.md §6).
 *
 * Read side: a row becomes the record clients see,
 *
 *   { bucket, key, value, _id, _etag, _mtime, _txn_snap[, _count] }
 *
 * where `value` is the stored JSON overlaid with the index columns (so
 * updateObjects' changes and normalised forms show), except fields still
 * being reindexed, scalar-typed fields whose JSON is an array (UFDS), and
 * explicit JSON nulls.
 *
 * Write side: the index column values of a value (convertForWrite) and the
 * column list every statement selects.  Statements name their columns
 * instead of `SELECT *`, so that a column added by another process's
 * updateBucket never invalidates a prepared statement's result type.
 */

import { errors } from '../errors/catalog';
import type { Bucket } from '../schema/bucket';
import { convertForWrite, INDEX_TYPES, type WriteParam } from '../schema/index-types';
import type { Row } from '../pg/handle';
import { quoteIdent } from '../filter/compile';

export interface ObjectRecord {
    bucket: string;
    key: string;
    value: Record<string, unknown>;
    _id: number;
    _etag: string;
    _mtime: number;
    _txn_snap: number | null;
    _count?: number | null;
}

/* The columns to select for object reads, as SQL text (cached per bucket). */
const selectCache = new WeakMap<Bucket, string>();

export function selectColumns(b: Bucket): string {
    let s = selectCache.get(b);
    if (s === undefined) {
        const cols = ['_id', '_key', '_value', '_etag', '_mtime', '_txn_snap'];
        if (b.hasExtendedId) {
            cols.push('_idx');
        }
        if (b.hasRver) {
            cols.push('_rver');
        }
        for (const f of b.fields) {
            if (b.columns.size === 0 || b.columns.has(f.lc)) {
                cols.push(f.column);
            }
        }
        s = cols.join(', ');
        selectCache.set(b, s);
    }
    return s;
}

const getCache = new WeakMap<Bucket, string>();

/*
 * getObject's statement, built once per Bucket: the same string object on
 * every call, so the statement-name lookup hashes it once, not per request.
 */
export function getObjectSql(b: Bucket): string {
    let s = getCache.get(b);
    if (s === undefined) {
        s = `SELECT ${selectColumns(b)} FROM ${b.table} WHERE _key = $1`;
        getCache.set(b, s);
    }
    return s;
}

export function parseId(v: unknown): number {
    if (typeof v === 'number') {
        return v;
    }
    const n = Number(v);
    if (typeof v !== 'string' || !/^[0-9]+$/.test(v) || !Number.isSafeInteger(n)) {
        throw errors.internal(`failed to convert row: _id ${String(v)} is not a safe integer`);
    }
    return n;
}

export function rowId(row: Row): number {
    const id = row['_id'];
    if (id === null || id === undefined) {
        return parseId(row['_idx']);
    }
    return parseId(id);
}

/* The read-back value: stored JSON overlaid with the usable index columns. */
export function overlayValue(b: Bucket, row: Row): Record<string, unknown> {
    let value: Record<string, unknown>;
    try {
        value = JSON.parse(row['_value'] as string) as Record<string, unknown>;
    } catch (err) {
        throw errors.internal(`failed to convert row: ${(err as Error).message}`);
    }
    if (typeof value !== 'object' || value === null) {
        return value;
    }
    for (const f of b.fields) {
        if (b.reindexing.has(f.name)) {
            continue;
        }
        const col = row[f.lc];
        const orig = value[f.name];
        if (col === null || col === undefined) {
            if (orig !== null) {
                delete value[f.name];
            }
        } else if (Array.isArray(orig)) {
            if (INDEX_TYPES[f.spec.type].isArray) {
                value[f.name] = col;
            }
        } else {
            value[f.name] = col;
        }
    }
    return value;
}

export function rowToRecord(b: Bucket, bucketName: string, row: Row): ObjectRecord {
    return {
        bucket: bucketName,
        key: row['_key'] as string,
        value: overlayValue(b, row),
        _id: rowId(row),
        _etag: row['_etag'] as string,
        _mtime: parseInt(row['_mtime'] as string, 10),
        _txn_snap: (row['_txn_snap'] as number | null) ?? null,
    };
}

/* Index column values for a value being written. */
export interface IndexedColumns {
    /* field → bind parameter, only for fields present in the value */
    present: { column: string; param: WriteParam | null }[];
    /* every index field → bind parameter (absent = null), for UPDATEs */
    all: { column: string; param: WriteParam | null }[];
}

export function indexColumns(b: Bucket, value: Record<string, unknown>): IndexedColumns {
    const present: IndexedColumns['present'] = [];
    const all: IndexedColumns['all'] = [];
    for (const f of b.fields) {
        if (b.columns.size > 0 && !b.columns.has(f.lc)) {
            continue;
        }
        const v = Object.prototype.hasOwnProperty.call(value, f.name) ? value[f.name] : undefined;
        const param = convertForWrite(f.name, f.spec.type, v);
        all.push({ column: f.column, param });
        if (v !== undefined) {
            present.push({ column: f.column, param });
        }
    }
    return { present, all };
}

export { quoteIdent };

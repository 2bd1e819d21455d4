/*
 * SQL text for every database object a bucket owns (storage.md §3, §10, §12).
 *
 * For bucket B (PostgreSQL folds it to lower case, as the reference's
 * unquoted identifiers did):
 *
 *   createBucket                          updateBucket
 *   ────────────                          ────────────
 *   CREATE SEQUENCE b_serial              ALTER TABLE b ADD COLUMN _rver INTEGER   (versioned,
 *   [CREATE TABLE b_locking_serial          CREATE  INDEX b__rver_idx ...           not no_reindex)
 *      INSERT ... VALUES (1)]            ALTER TABLE b DROP COLUMN <removed>
 *   CREATE TABLE b (                      ALTER TABLE b ADD COLUMN <added> <PGTYPE>
 *     _id BIGINT DEFAULT nextval(..),     CREATE  INDEX b_<col>_idx ...            (non-unique)
 *     _txn_snap .. _vnode,                CREATE UNIQUE INDEX b_<col>_idx ...      (unique, partial)
 *     <field> <PGTYPE>[ UNIQUE], ...)
 *   CREATE  INDEX b_<col>_idx ON b        delBucket
 *     USING <method> (<col>)              ─────────
 *     WHERE <col> IS NOT NULL             DROP TABLE b
 *     (non-unique fields, then            DROP SEQUENCE IF EXISTS b_serial
 *      _id, _etag, _mtime, _vnode)        DROP TABLE IF EXISTS b_locking_serial
 *
 * Why text builders and not inline strings in the RPCs: these statements
 * are the only place where client-chosen names (bucket and index field
 * names) reach SQL text, because DDL cannot take identifiers as `$n`
 * parameters.  Every such name goes through objectIdent(), which is
 * quoteIdent() (the one quoting function, src/filter/compile.ts) applied
 * to the name PostgreSQL would store: ASCII lower case, cut to 63 bytes.
 * The cut is what PostgreSQL does to a long identifier anyway (with a
 * NOTICE); doing it here means the names we later look up in the catalogs
 * (pg_indexes.indexname for b__rver_idx) are the names that exist.
 *
 * The one identifier that must appear inside a string literal is the
 * sequence in the `_id` default: nextval() takes a regclass given as text,
 * which PostgreSQL parses as an identifier again.  So the quoted identifier
 * is embedded in a literal with single quotes doubled (sqlLiteral()).
 * Field types come only from the INDEX_TYPES table, never from input.
 *
 * Nothing here touches the database; test/integration/buckets.test.ts
 * checks what these statements leave in the catalogs (column types,
 * defaults, index definitions, constraints).
 */

import { quoteIdent } from '../filter/compile';
import { INDEX_TYPES, type IndexType } from './index-types';

/* NAMEDATALEN - 1: PostgreSQL truncates longer identifiers. */
export const PG_MAX_IDENT_BYTES = 63;

/* The internal columns that get a partial BTREE index at creation, in order. */
export const INTERNAL_INDEXED_COLUMNS = ['_id', '_etag', '_mtime', '_vnode'] as const;

export interface FieldDef {
    readonly type: IndexType;
    readonly unique?: boolean;
}

export type IndexMap = Readonly<Record<string, FieldDef>>;

/*
 * The name PostgreSQL stores for `name` written as an unquoted identifier:
 * ASCII letters lower-cased, truncated to 63 bytes (on a UTF-8 character
 * boundary, as PostgreSQL's pg_mbcliplen does).
 */
export function storedName(name: string): string {
    const folded = name.replace(/[A-Z]/g, (c) => c.toLowerCase());
    if (Buffer.byteLength(folded, 'utf8') <= PG_MAX_IDENT_BYTES) {
        return folded;
    }
    let out = '';
    let bytes = 0;
    for (const ch of folded) {
        const n = Buffer.byteLength(ch, 'utf8');
        if (bytes + n > PG_MAX_IDENT_BYTES) {
            break;
        }
        out += ch;
        bytes += n;
    }
    return out;
}

/* A database object name as SQL text: stored form, safely quoted. */
export function objectIdent(name: string): string {
    return quoteIdent(storedName(name));
}

/* A string literal (standard_conforming_strings: only ' needs doubling). */
export function sqlLiteral(text: string): string {
    return "'" + text.replace(/'/g, "''") + "'";
}

/* ---- names (stored form, as the catalogs show them) ---- */

export function tableName(bucket: string): string {
    return storedName(bucket);
}

export function sequenceName(bucket: string): string {
    return storedName(bucket + '_serial');
}

export function lockingSerialName(bucket: string): string {
    return storedName(bucket + '_locking_serial');
}

/* `<bucket>_<column>_idx`; internal columns give a double underscore. */
export function indexName(bucket: string, column: string): string {
    return storedName(bucket + '_' + column + '_idx');
}

export function rverIndexName(bucket: string): string {
    return indexName(bucket, '_rver');
}

/* ---- createBucket ---- */

export function createSequenceSql(bucket: string): string {
    return `CREATE SEQUENCE ${quoteIdent(sequenceName(bucket))}`;
}

/* guaranteeOrder only: the one-row counter table, then its seed row. */
export function createLockingSerialSql(bucket: string): [string, string] {
    const t = quoteIdent(lockingSerialName(bucket));
    return [
        `CREATE TABLE ${t} (id INTEGER PRIMARY KEY)`,
        `INSERT INTO ${t} (id) VALUES (1)`,
    ];
}

function pgType(def: FieldDef): string {
    const info = INDEX_TYPES[def.type];
    if (info === undefined) {
        /* validateBucketConfig admits only the 17 names: a bug if reached */
        throw new Error(`ddl: unknown index type ${JSON.stringify(def.type)}`);
    }
    return info.pgType;
}

function indexMethod(def: FieldDef): string {
    return INDEX_TYPES[def.type].method;
}

/* storage.md §3.1, with one `,\n        <field> <PGTYPE>[ UNIQUE]` per field. */
export function createTableSql(bucket: string, index: IndexMap): string {
    const seq = sqlLiteral(quoteIdent(sequenceName(bucket)));
    let columns = '';
    for (const [field, def] of Object.entries(index)) {
        columns += `,\n        ${objectIdent(field)} ${pgType(def)}` +
            (def.unique === true ? ' UNIQUE' : '');
    }
    return `CREATE TABLE ${objectIdent(bucket)} (
  _id BIGINT DEFAULT nextval(${seq}),
  _txn_snap INTEGER,
  _key TEXT PRIMARY KEY,
  _value TEXT NOT NULL,
  _etag CHAR(8) NOT NULL,
  _mtime BIGINT DEFAULT CAST (EXTRACT (EPOCH FROM NOW()) * 1000 AS BIGINT),
  _vnode BIGINT${columns})`;
}

/*
 * A partial index on one column.  Non-unique keeps the reference's two
 * spaces after CREATE (PostgreSQL normalises the stored definition).
 */
export function createIndexSql(bucket: string, column: string, method: string,
    unique: boolean): string {
    const col = objectIdent(column);
    return `CREATE ${unique ? 'UNIQUE' : ''} INDEX ${quoteIdent(indexName(bucket, column))} ` +
        `ON ${objectIdent(bucket)} USING ${method} (${col}) WHERE ${col} IS NOT NULL`;
}

/*
 * createBucket's indexes: one per non-unique field (its column-level
 * UNIQUE already gives a unique field the implicit `<b>_<col>_key`
 * index), then the internal columns.
 */
export function createBucketIndexesSql(bucket: string, index: IndexMap): string[] {
    const out: string[] = [];
    for (const [field, def] of Object.entries(index)) {
        if (def.unique !== true) {
            out.push(createIndexSql(bucket, field, indexMethod(def), false));
        }
    }
    for (const col of INTERNAL_INDEXED_COLUMNS) {
        out.push(createIndexSql(bucket, col, 'BTREE', false));
    }
    return out;
}

/* ---- updateBucket ---- */

export function addColumnSql(bucket: string, field: string, def: FieldDef): string {
    return `ALTER TABLE ${objectIdent(bucket)} ADD COLUMN ${objectIdent(field)} ${pgType(def)}`;
}

export function dropColumnSql(bucket: string, field: string): string {
    return `ALTER TABLE ${objectIdent(bucket)} DROP COLUMN ${objectIdent(field)}`;
}

/* An added field's index: unique ones as a partial UNIQUE INDEX (not a constraint). */
export function addFieldIndexSql(bucket: string, field: string, def: FieldDef): string {
    return createIndexSql(bucket, field, indexMethod(def), def.unique === true);
}

export function addRverColumnSql(bucket: string): string {
    return `ALTER TABLE ${objectIdent(bucket)} ADD COLUMN _rver INTEGER`;
}

export function createRverIndexSql(bucket: string): string {
    return createIndexSql(bucket, '_rver', 'BTREE', false);
}

/* Lazily added the first time updateBucket runs on a database (storage.md §2). */
export const ADD_REINDEX_ACTIVE_SQL =
    'ALTER TABLE buckets_config ADD COLUMN IF NOT EXISTS reindex_active TEXT';

/* ---- delBucket ---- */

export function dropTableSql(bucket: string): string {
    return `DROP TABLE ${objectIdent(bucket)}`;
}

export function dropSequenceSql(bucket: string): string {
    return `DROP SEQUENCE IF EXISTS ${quoteIdent(sequenceName(bucket))}`;
}

export function dropLockingSerialSql(bucket: string): string {
    return `DROP TABLE IF EXISTS ${quoteIdent(lockingSerialName(bucket))}`;
}

/*
 * The five workloads, each written three times: through the Moray server
 * (Fast RPC), through the `pg` driver alone with the statements the server
 * runs, and as a pgbench script (the prepared-statement ceiling).
 *
 *   workload     Moray RPC                  pg driver (same SQL, named      pgbench -M prepared
 *                                           statements, Pool(maxConns))
 *   -----------  -------------------------  ------------------------------  ----------------------
 *   getObject    getObject(b, k)            SELECT <cols> … WHERE _key=$1   same SELECT
 *   putObject    putObject(b, k, v)         the server's one statement:     INSERT … ON CONFLICT
 *                (existing k: update path)  WITH upd AS (UPDATE … RETURNING (_key) DO UPDATE, _mtime
 *                                           _id) INSERT … WHERE NOT EXISTS  from clock_timestamp()
 *   findObjects  findObjects(b, (name=g),   SELECT <cols>, count(1) OVER    same SELECT
 *                limit 10)                  () … WHERE name=$1 LIMIT 10
 *   mixed        80 % get / 20 % put        same mix                        -f get@8 -f put@2
 *   batch        batch of 10 puts           BEGIN; 10 × (lock, UPDATE);     BEGIN; 10 upserts;
 *                                           COMMIT                          COMMIT
 *
 * The SQL texts come from src/rpc/objects/{get,put,find}-object(s).ts and
 * src/objects/record.ts; the SELECT list, table identifier and WHERE clause
 * are taken from the running server (dataset.ts describeBucket), and the
 * statement census (statements.ts) checks that driver and server issued
 * the same normalised statements.  pgbench's put is PostgreSQL's own
 * single-statement upsert, the ceiling a put could reach: its value and
 * etag are literals of the prepared statement, and its _mtime comes from
 * the clock on every execution, as a put's does, so that its updates
 * write every index like a put's (a constant _mtime made a third of them
 * HOT, heap-only).  (Moray cannot use ON CONFLICT: it draws an _id on
 * every update.)

 * Keys are random over 1..rows.  A batch takes one key from each tenth of
 * the key space, so its keys are ascending and concurrent batches lock rows
 * in the same order (no deadlocks, in all three systems).
 */

import * as pg from 'pg';
import type { IssueFn } from './closed-loop';
import type { FastClient } from './fast-client';
import { requestOptions } from './fast-client';
import { findFilter, groupsFor, valueFor, type BucketSql } from './dataset';
import type { WorkloadName } from './options';
import { etagOf } from '../../src/schema/etag';
import { oneStatementTexts } from '../../src/rpc/objects/put-object';

export interface WorkloadContext {
    sql: BucketSql;
    rows: number;
}

export interface PgbenchScript {
    /* file body */
    text: string;
    /* relative weight (-f file@weight) */
    weight: number;
}

export interface Workload {
    readonly name: WorkloadName;
    readonly summary: string;
    server(client: FastClient, ctx: WorkloadContext): IssueFn;
    driver(pool: pg.Pool, ctx: WorkloadContext): IssueFn;
    pgbench(ctx: WorkloadContext): PgbenchScript[];
}

export const BATCH_SIZE = 10;

function randomKey(rows: number): number {
    return 1 + Math.floor(Math.random() * rows);
}

function batchKeys(rows: number): number[] {
    const span = Math.floor(rows / BATCH_SIZE);
    const keys: number[] = [];
    for (let j = 0; j < BATCH_SIZE; j++) {
        keys.push(j * span + 1 + Math.floor(Math.random() * span));
    }
    return keys;
}

/* ---- the statements, as the server writes them ---- */

export interface Statements {
    get: string;
    /* putObject's one statement (no triggers, no etag option): $1 key, then PUT_COLUMNS */
    upsert: string;
    /* a put inside a transaction (batch): lock, then update */
    lock: string;
    update: string;
    find: string;
}

export function statementsFor(s: BucketSql): Statements {
    const idx = s.indexColumns.map((c, i) => `, ${c} = $${5 + i}`).join('');
    return {
        get: `SELECT ${s.columns} FROM ${s.table} WHERE _key = $1`,
        upsert: oneStatementTexts(s.table, ['_value', '_etag', '_mtime', '_vnode', ...s.indexColumns],
            '_id').upsert,
        lock: `SELECT _etag FROM ${s.table} WHERE _key = $1 FOR UPDATE`,
        update: `UPDATE ${s.table} SET _value = $1, _etag = $2, _mtime = $3, _vnode = $4${idx} ` +
            `WHERE _key = $${5 + s.indexColumns.length}`,
        find: `SELECT ${s.columns}, count(1) OVER () AS _count FROM ${s.table} ${s.findWhere}`,
    };
}

const BEGIN_RC = 'BEGIN TRANSACTION ISOLATION LEVEL READ COMMITTED';

/* ---- Moray server (Fast) ---- */

function serverGet(client: FastClient, ctx: WorkloadContext): IssueFn {
    const bucket = ctx.sql.bucket;
    return (slot, done) => {
        const key = String(randomKey(ctx.rows));
        client.callCount('getObject', [bucket, key, requestOptions({ noCache: true })], (err, _r, n) => {
            done(err ?? (n === 1 ? null : new Error(`getObject: ${n} records`)));
        }, slot);
    };
}

function serverPut(client: FastClient, ctx: WorkloadContext): IssueFn {
    const bucket = ctx.sql.bucket;
    const groups = groupsFor(ctx.rows);
    return (slot, done) => {
        const k = randomKey(ctx.rows);
        client.callCount('putObject', [bucket, String(k), valueFor(k, groups), requestOptions()],
            (err) => done(err), slot);
    };
}

function serverFind(client: FastClient, ctx: WorkloadContext): IssueFn {
    const bucket = ctx.sql.bucket;
    const groups = groupsFor(ctx.rows);
    return (slot, done) => {
        const g = Math.floor(Math.random() * groups);
        client.callCount('findObjects', [bucket, findFilter(g), requestOptions({ limit: 10 })],
            (err, _r, n) => {
                done(err ?? (n === 10 ? null : new Error(`findObjects: ${n} records`)));
            }, slot);
    };
}

function serverBatch(client: FastClient, ctx: WorkloadContext): IssueFn {
    const bucket = ctx.sql.bucket;
    const groups = groupsFor(ctx.rows);
    return (slot, done) => {
        const requests = batchKeys(ctx.rows).map((k) =>
            ({ bucket, operation: 'put', key: String(k), value: valueFor(k, groups) }));
        client.callCount('batch', [requests, requestOptions()], (err) => done(err), slot);
    };
}

/* ---- pg driver alone ---- */

function callback(p: Promise<unknown>, done: (err: Error | null) => void): void {
    p.then(() => done(null), (err: Error) => done(err));
}

async function putRows(c: pg.PoolClient, st: Statements, keys: number[], groups: number): Promise<void> {
    for (const k of keys) {
        const key = String(k);
        const lock = await c.query({ name: 'bench_lock', text: st.lock, values: [key] });
        if (lock.rows.length === 0) {
            throw new Error(`driver put: key ${key} does not exist`);
        }
        const value = valueFor(k, groups);
        const text = JSON.stringify(value);
        await c.query({ name: 'bench_update', text: st.update,
            values: [text, etagOf(text), Date.now(), null, value['name'], value['n'], key] });
    }
}

async function driverTransaction(pool: pg.Pool, st: Statements, keys: number[],
    groups: number): Promise<void> {
    const c = await pool.connect();
    try {
        await c.query(BEGIN_RC);
        await putRows(c, st, keys, groups);
        await c.query('COMMIT');
        c.release();
    } catch (err) {
        c.release(err as Error);
        throw err;
    }
}

function driverGet(pool: pg.Pool, ctx: WorkloadContext): IssueFn {
    const st = statementsFor(ctx.sql);
    return (_slot, done) => {
        const key = String(randomKey(ctx.rows));
        pool.query({ name: 'bench_get', text: st.get, values: [key] }, (err, r) => {
            done(err ?? (r.rows.length === 1 ? null : new Error('driver get: no row')));
        });
    };
}

function driverPut(pool: pg.Pool, ctx: WorkloadContext): IssueFn {
    const st = statementsFor(ctx.sql);
    const groups = groupsFor(ctx.rows);
    return (_slot, done) => {
        const k = randomKey(ctx.rows);
        const value = valueFor(k, groups);
        const text = JSON.stringify(value);
        pool.query({ name: 'bench_upsert', text: st.upsert,
            values: [String(k), text, etagOf(text), Date.now(), null, value['name'], value['n']] },
        (err) => done(err ?? null));
    };
}

function driverFind(pool: pg.Pool, ctx: WorkloadContext): IssueFn {
    const st = statementsFor(ctx.sql);
    const groups = groupsFor(ctx.rows);
    return (_slot, done) => {
        const g = String(Math.floor(Math.random() * groups));
        pool.query({ name: 'bench_find', text: st.find, values: [g] }, (err, r) => {
            done(err ?? (r.rows.length === 10 ? null : new Error(`driver find: ${r.rows.length} rows`)));
        });
    };
}

function driverBatch(pool: pg.Pool, ctx: WorkloadContext): IssueFn {
    const st = statementsFor(ctx.sql);
    const groups = groupsFor(ctx.rows);
    return (_slot, done) => callback(driverTransaction(pool, st, batchKeys(ctx.rows), groups), done);
}

/* 80/20 of two issue functions */
function mix(get: IssueFn, put: IssueFn): IssueFn {
    return (slot, done) => (Math.random() < 0.8 ? get(slot, done) : put(slot, done));
}

/* ---- pgbench ---- */

/*
 * A put's value as a pgbench literal.  pgbench reads `:name` as a variable
 * even inside quotes (and digits count as names), so the JSON is written
 * with a blank after every colon: same length class, still valid JSON.
 */
function pgbenchValue(): string {
    return JSON.stringify(valueFor(1, 1)).replace(/":/g, '": ');
}

const PGBENCH_MTIME = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

function pgbenchUpsert(s: BucketSql, keyVar: string): string {
    const value = pgbenchValue();
    return `INSERT INTO ${s.table} (_key, _value, _etag, _mtime, _vnode, ${s.indexColumns.join(', ')}) ` +
        `VALUES (:${keyVar}, '${value}', '${etagOf(value)}', ${PGBENCH_MTIME}, NULL, :g_${keyVar}, ` +
        `:n_${keyVar}) ON CONFLICT (_key) DO UPDATE SET _value = EXCLUDED._value, ` +
        '_etag = EXCLUDED._etag, _mtime = EXCLUDED._mtime, _vnode = EXCLUDED._vnode, ' +
        s.indexColumns.map((c) => `${c} = EXCLUDED.${c}`).join(', ') + ';\n';
}

function upsertVars(keyVar: string, lo: string, hi: string, groups: number): string {
    return `\\set ${keyVar} random(${lo}, ${hi})\n` +
        `\\set g_${keyVar} :${keyVar} % ${groups}\n` +
        `\\set n_${keyVar} :${keyVar}\n`;
}

function pgbenchGet(ctx: WorkloadContext): PgbenchScript {
    return { weight: 1, text: `\\set k random(1, ${ctx.rows})\n` +
        `${statementsFor(ctx.sql).get.replace('$1', ':k')};\n` };
}

function pgbenchPut(ctx: WorkloadContext): PgbenchScript {
    return { weight: 1,
        text: upsertVars('k', '1', String(ctx.rows), groupsFor(ctx.rows)) + pgbenchUpsert(ctx.sql, 'k') };
}

function pgbenchFind(ctx: WorkloadContext): PgbenchScript {
    if (ctx.sql.findArgs.length !== 1) {
        throw new Error(`bench: expected one find parameter, got ${JSON.stringify(ctx.sql.findArgs)}`);
    }
    return { weight: 1, text: `\\set g random(0, ${groupsFor(ctx.rows) - 1})\n` +
        `${statementsFor(ctx.sql).find.replace('$1', ':g')};\n` };
}

function pgbenchBatch(ctx: WorkloadContext): PgbenchScript {
    const span = Math.floor(ctx.rows / BATCH_SIZE);
    const groups = groupsFor(ctx.rows);
    let text = '';
    for (let j = 0; j < BATCH_SIZE; j++) {
        text += upsertVars(`k${j}`, String(j * span + 1), String((j + 1) * span), groups);
    }
    text += 'BEGIN;\n';
    for (let j = 0; j < BATCH_SIZE; j++) {
        text += pgbenchUpsert(ctx.sql, `k${j}`);
    }
    return { weight: 1, text: text + 'COMMIT;\n' };
}

export const WORKLOADS: Readonly<Record<WorkloadName, Workload>> = {
    getObject: {
        name: 'getObject', summary: 'getObject of a random existing key',
        server: serverGet, driver: driverGet, pgbench: (c) => [pgbenchGet(c)],
    },
    putObject: {
        name: 'putObject', summary: 'putObject of a random existing key (~490-byte value)',
        server: serverPut, driver: driverPut, pgbench: (c) => [pgbenchPut(c)],
    },
    findObjects: {
        name: 'findObjects', summary: 'findObjects (name=g) limit 10; 100 rows match, count(1) OVER ()',
        server: serverFind, driver: driverFind, pgbench: (c) => [pgbenchFind(c)],
    },
    mixed: {
        name: 'mixed', summary: '80 % getObject / 20 % putObject',
        server: (f, c) => mix(serverGet(f, c), serverPut(f, c)),
        driver: (p, c) => mix(driverGet(p, c), driverPut(p, c)),
        pgbench: (c) => [{ ...pgbenchGet(c), weight: 8 }, { ...pgbenchPut(c), weight: 2 }],
    },
    batch: {
        name: 'batch', summary: `batch of ${BATCH_SIZE} puts (one transaction)`,
        server: serverBatch, driver: driverBatch, pgbench: (c) => [pgbenchBatch(c)],
    },
};

/*
 * putObject(bucket, key, value, options) → {etag}   (storage.md §6.1)
 *
 *   BEGIN ─► load bucket ─► SELECT … FOR UPDATE (lock the key) ─► [reload a
 *   stale config] ─► pre triggers ─► etag check ─► index conversion ─►
 *   [guaranteeOrder: lock+bump the serial] ─► INSERT (new _id) | UPDATE
 *   (keep _id) ─► post triggers ─► COMMIT
 *
 * The locked read makes the etag check and the write atomic.  Two puts of
 * the same new key race on the INSERT: the loser gets UniqueAttributeError
 * on `_key`, as with the reference.
 *
 * Errors, in the order they can occur (each rolls the transaction back):
 *   BucketNotFoundError; QueryTimeoutError (options.timeout, any statement);
 *   trigger errors (their own name, see objects/triggers.ts);
 *   EtagConflictError {bucket, key, expected, actual}; InvalidIndexTypeError;
 *   UniqueAttributeError (an index column or `_key`); PostgreSQL's own
 *   errors as `error` (e.g. a non-integer value.vnode, a malformed
 *   [string] literal); InternalError when a new _id exceeds 2^53-1.
 */

import { errors, MorayError } from '../../errors/catalog';
import type { PgHandle } from '../../pg/handle';
import { probe } from '../../probes';
import { loadBucket, type Bucket } from '../../schema/bucket';
import { etagOf } from '../../schema/etag';
import { indexColumns, quoteIdent, rowId } from '../../objects/record';
import { compiledTriggers, runTriggers, triggerPg } from '../../objects/triggers';
import { withConnection, type AppServices, type MorayRequest, type MorayRpc } from '../context';

const PUT_START = probe('moray', 'putobject-start');
const PUT_DONE = probe('moray', 'putobject-done');

export interface PutResult { etag: string; id: number | undefined }

/* The body shared with batch `put`. */
export async function putOne(app: AppServices, req: MorayRequest, pg: PgHandle,
    bucketName: string, key0: string, value0: Record<string, unknown>,
    options: Record<string, unknown>, steps: boolean, loaded?: Bucket): Promise<PutResult> {
    const step = <T>(name: string, fn: () => Promise<T> | T): Promise<T> =>
        steps ? req.step(name, fn) : Promise.resolve().then(fn);
    let key = key0;
    let value = value0;
    const fresh = options['noBucketCache'] === true;
    let b: Bucket = loaded ?? await step('loadBucket', () =>
        loadBucket(app.buckets, pg, bucketName, fresh));
    const lockSql = (bb: Bucket) => `SELECT _etag${bb.hasRver ? ', _rver' : ''} FROM ${bb.table} ` +
        'WHERE _key = $1 FOR UPDATE';
    let prev = (await step('selectForUpdate', () => pg.query(lockSql(b), [key]))).rows[0];
    await step('verifyBucket', async () => {
        const rver = prev?.['_rver'];
        if (typeof rver === 'number' && rver > b.version) {
            app.buckets.evict(bucketName);
            b = await loadBucket(app.buckets, pg, bucketName, true);
        }
    });
    const trig = (b.pre.length > 0 || b.post.length > 0) ?
        compiledTriggers(b, app.config.features) : null;
    await step('runPreChain', async () => {
        if (trig === null || trig.pre.length === 0) {
            return;
        }
        const cookie: Record<string, unknown> = {
            bucket: bucketName, key, value, schema: b.index, update: prev !== undefined,
            headers: {}, log: req.log, pg: triggerPg(pg),
        };
        await runTriggers(trig.pre, cookie, app.config.features.triggerTimeout);
        if (cookie['key'] !== key) {
            key = String(cookie['key']);
            prev = (await pg.query(lockSql(b), [key])).rows[0];
        }
        value = cookie['value'] as Record<string, unknown>;
    });
    await step('checkEtag', () => {
        if (!Object.prototype.hasOwnProperty.call(options, 'etag') || options['etag'] === undefined) {
            return;
        }
        const expected = options['etag'];
        const actual = prev === undefined ? null : (prev['_etag'] as string);
        if (expected === null) {
            if (actual !== null) {
                throw errors.etagConflict(bucketName, key, 'null', actual);
            }
        } else if (actual !== expected) {
            throw errors.etagConflict(bucketName, key, String(expected), actual ?? 'null');
        }
    });
    const text = JSON.stringify(value);
    const etag = etagOf(text);
    const cols = await step('indexObject', () => indexColumns(b, value));
    const mtime = Date.now();
    const vnode = value !== null && typeof value === 'object' && value['vnode'] !== undefined ?
        value['vnode'] : null;
    let txnSnap: number | null = null;
    const serialTable = quoteIdent(`${bucketName}_locking_serial`);
    await step('getNextId', async () => {
        if (!b.guaranteeOrder) {
            return;
        }
        const r = await pg.query(`SELECT id FROM ${serialTable} FOR UPDATE`, []);
        txnSnap = Number(r.rows[0]?.['id'] ?? 0) + 1;
        value['_txn_snap'] = txnSnap;
    });
    const writeRver = b.reindexActive !== null && b.hasRver;
    let id: number | undefined;
    if (prev === undefined) {
        await step('insert', async () => {
            const names = ['_key', '_value', '_etag', '_mtime'];
            const params: unknown[] = [key, text, etag, mtime];
            if (b.hasVnode) {
                names.push('_vnode');
                params.push(vnode);
            }
            if (txnSnap !== null) {
                names.push('_txn_snap');
                params.push(txnSnap);
            }
            if (writeRver) {
                names.push('_rver');
                params.push(b.version);
            }
            for (const c of cols.present) {
                names.push(c.column);
                params.push(c.param);
            }
            const sql = `INSERT INTO ${b.table} (${names.join(', ')}) VALUES (` +
                params.map((_, i) => `$${i + 1}`).join(', ') +
                `) RETURNING _id${b.hasExtendedId ? ', _idx' : ''}`;
            const r = await pg.query(sql, params);
            /* an id past 2^53-1 fails the put (InternalError) instead of going imprecise */
            id = rowId(r.rows[0]!);
            if (value !== null && typeof value === 'object') {
                value['_id'] = id;
            }
        });
        if (steps) {
            req.skipStep('update');
        }
    } else {
        if (steps) {
            req.skipStep('insert');
        }
        await step('update', async () => {
            const sets = ['_value = $1', '_etag = $2', '_mtime = $3'];
            const params: unknown[] = [text, etag, mtime];
            if (b.hasVnode) {
                params.push(vnode);
                sets.push(`_vnode = $${params.length}`);
            }
            if (writeRver) {
                params.push(b.version);
                sets.push(`_rver = $${params.length}`);
            }
            for (const c of cols.all) {
                params.push(c.param);
                sets.push(`${c.column} = $${params.length}`);
            }
            if (txnSnap !== null) {
                params.push(txnSnap);
                sets.push(`_txn_snap = $${params.length}`);
            }
            params.push(key);
            await pg.query(`UPDATE ${b.table} SET ${sets.join(', ')} WHERE _key = $${params.length}`,
                params);
        });
    }
    await step('updateSerial', async () => {
        if (txnSnap !== null) {
            await pg.query(`UPDATE ${serialTable} SET id = $1`, [txnSnap]);
        }
    });
    await step('runPostChain', async () => {
        if (trig === null || trig.post.length === 0) {
            return;
        }
        await runTriggers(trig.post, {
            bucket: bucketName, key, value, id, schema: b.index, update: prev !== undefined,
            headers: (options['headers'] as object | undefined) ?? {}, log: req.log,
            pg: triggerPg(pg),
        }, app.config.features.triggerTimeout);
    });
    return { etag, id };
}

/*
 * The one-statement path.  When nothing can run between the read of the
 * current row and the write (no triggers, no guaranteeOrder serial, no
 * reindexing stamp), the locked read, the etag check and the write fold
 * into ONE autocommit statement, one round trip instead of four
 * (BEGIN, SELECT … FOR UPDATE, INSERT|UPDATE, COMMIT):
 *
 *   etag absent:  WITH upd AS (UPDATE b SET … WHERE _key = $1 RETURNING _id)
 *                 INSERT INTO b (…) SELECT $1, … WHERE NOT EXISTS (SELECT 1 FROM upd)
 *   etag string:  UPDATE b SET … WHERE _key = $1 AND _etag = $e
 *   etag null:    INSERT INTO b (…) VALUES (…)
 *
 * Same outcomes as the transaction: the UPDATE takes the row lock, so
 * concurrent writers of one key serialise; two creators of one new key
 * race on the INSERT and the loser gets UniqueAttributeError on `_key`
 * (or EtagConflictError with etag null); _id is drawn only by an INSERT
 * that happens.  A failed conditional write reads the current etag
 * afterwards for the error's `actual`.
 */
function fastPathEligible(b: Bucket): boolean {
    return b.pre.length === 0 && b.post.length === 0 && !b.guaranteeOrder &&
        b.reindexActive === null;
}

function isKeyViolation(err: unknown): boolean {
    return err instanceof MorayError && err.name === 'UniqueAttributeError' &&
        err.message.startsWith('"_key" ');
}

async function currentEtag(pg: PgHandle, b: Bucket, key: string): Promise<string> {
    const r = await pg.query(`SELECT _etag FROM ${b.table} WHERE _key = $1`, [key]);
    return (r.rows[0]?.['_etag'] as string | undefined) ?? 'null';
}

/*
 * The three statement texts of the one-statement path for a bucket.  They
 * depend only on the bucket's columns, so they are built once per Bucket
 * object (a changed bucket is a new object) instead of on every put:
 * building and hashing ~500 characters of SQL was a visible share of a
 * put.  $1 is the key, names[i] is $i+2, the expected etag comes last.
 */
export interface OneStatementSql {
    upsert: string;
    insert: string;
    update: string;
}

const oneStatementCache = new WeakMap<Bucket, OneStatementSql>();

/*
 * The texts for a table (quoted identifier) and the columns after _key;
 * exported for the benchmark's pg-driver baseline (tools/bench), which
 * must run the very same statements.
 */
export function oneStatementTexts(table: string, names: readonly string[],
    idCols: string): OneStatementSql {
    const sets = names.map((n, i) => `${n} = $${i + 2}`).join(', ');
    const insertCols = ['_key', ...names].join(', ');
    const insertVals = ['_key', ...names].map((_, i) => `$${i + 1}`).join(', ');
    return {
        upsert: `WITH upd AS (UPDATE ${table} SET ${sets} WHERE _key = $1 ` +
            `RETURNING _id) INSERT INTO ${table} (${insertCols}) SELECT ${insertVals} ` +
            `WHERE NOT EXISTS (SELECT 1 FROM upd) RETURNING ${idCols}`,
        insert: `INSERT INTO ${table} (${insertCols}) VALUES (${insertVals}) RETURNING ${idCols}`,
        update: `UPDATE ${table} SET ${sets} WHERE _key = $1 AND _etag = $${names.length + 2}`,
    };
}

function oneStatementSql(b: Bucket, names: readonly string[]): OneStatementSql {
    let t = oneStatementCache.get(b);
    if (t === undefined) {
        t = oneStatementTexts(b.table, names, b.hasExtendedId ? '_id, _idx' : '_id');
        oneStatementCache.set(b, t);
    }
    return t;
}

async function putOneStatement(req: MorayRequest, pg: PgHandle, b: Bucket, bucketName: string,
    key: string, value: Record<string, unknown>, options: Record<string, unknown>): Promise<string> {
    for (const s of ['selectForUpdate', 'verifyBucket', 'runPreChain', 'checkEtag']) {
        req.skipStep(s);
    }
    const text = JSON.stringify(value);
    const etag = etagOf(text);
    const cols = await req.step('indexObject', () => indexColumns(b, value));
    req.skipStep('getNextId');
    const vnode = value !== null && typeof value === 'object' && value['vnode'] !== undefined ?
        value['vnode'] : null;
    const names = ['_value', '_etag', '_mtime'];
    const params: unknown[] = [key, text, etag, Date.now()];
    if (b.hasVnode) {
        names.push('_vnode');
        params.push(vnode);
    }
    for (const c of cols.all) {
        names.push(c.column);
        params.push(c.param);
    }
    const sql = oneStatementSql(b, names);
    const expected = Object.prototype.hasOwnProperty.call(options, 'etag') ?
        options['etag'] : undefined;
    /*
     * A new _id past 2^53-1 cannot reach clients exactly: like the
     * transactional path (which rolls back), undo the insert and fail.
     */
    const checkInserted = async (rows: Record<string, unknown>[]) => {
        const row = rows[0];
        if (row === undefined) {
            return;
        }
        try {
            rowId(row);
        } catch (err) {
            await pg.query(`DELETE FROM ${b.table} WHERE _key = $1 AND _etag = $2`, [key, etag]);
            throw err;
        }
    };
    await req.step('insert', async () => {
        if (expected === undefined) {
            const r = await pg.query(sql.upsert, params);
            await checkInserted(r.rows);
        } else if (expected === null) {
            try {
                const r = await pg.query(sql.insert, params);
                await checkInserted(r.rows);
            } catch (err) {
                if (isKeyViolation(err)) {
                    throw errors.etagConflict(bucketName, key, 'null',
                        await currentEtag(pg, b, key));
                }
                throw err;
            }
        } else {
            params.push(expected);
            const r = await pg.query(sql.update, params);
            if (r.rowCount === 0) {
                throw errors.etagConflict(bucketName, key, String(expected),
                    await currentEtag(pg, b, key));
            }
        }
    });
    req.skipStep('update');
    req.skipStep('updateSerial');
    req.skipStep('runPostChain');
    return etag;
}

/*
 * A one-statement put claims a shared write connection (pool.claimShared):
 * whether it qualifies is known from the cached bucket before the claim.
 * In the rare case that the bucket, loaded on that connection, no longer
 * qualifies (updated or expired in between), the put starts over on a
 * connection of its own.  A marker, not an exception: an exception would
 * mark the shared connection broken.
 */
const NEEDS_TRANSACTION: unique symbol = Symbol('needs a transaction');

function putOnConnection(app: AppServices, req: MorayRequest, bucket: string, key: string,
    value: Record<string, unknown>, shared: boolean): Promise<string | typeof NEEDS_TRANSACTION> {
    return withConnection(app, req, 'getPGHandleAndTransaction', shared ? 'shared-write' : null,
        async (pg) => {
            const b = await req.step('loadBucket', () => loadBucket(app.buckets, pg,
                bucket, req.options['noBucketCache'] === true));
            if (fastPathEligible(b)) {
                return putOneStatement(req, pg, b, bucket, key, value, req.options);
            }
            if (pg.shared) {
                return NEEDS_TRANSACTION;
            }
            await pg.begin('READ COMMITTED');
            try {
                const r = await putOne(app, req, pg, bucket, key, value, req.options, true, b);
                await pg.commit();
                return r.etag;
            } catch (err) {
                await pg.rollback();
                throw err;
            }
        });
}

export const putObject: MorayRpc = {
    name: 'putObject',
    async run(app, req) {
        const [bucket, key, value] = req.args as [string, string, Record<string, unknown>];
        PUT_START.fire(() => [req.msgid, req.reqId, bucket, key, req.options['_value']]);
        try {
            const cached = req.options['noBucketCache'] === true ? undefined :
                app.buckets.get(bucket);
            const shared = cached !== undefined && fastPathEligible(cached);
            let etag = await putOnConnection(app, req, bucket, key, value, shared);
            if (etag === NEEDS_TRANSACTION) {
                etag = await putOnConnection(app, req, bucket, key, value, false);
            }
            req.write({ etag });
        } finally {
            PUT_DONE.fire(() => [req.msgid, req.reqId]);
        }
    },
};

/*
 * updateObjects(bucket, fields, filter, options) → {count, etag}
 * deleteMany(bucket, filter, options)            → {count}
 * (moray-api.md §7.10–§7.11, storage.md §6.5–§6.6)
 *
 * Both act on the rows the INDEX STAGE of the filter selects (no exact
 * post-filter, so substring filters stay as loose as the reference's
 * LIKE patterns), at most `limit` (default 1000) per call, and both demand
 * that every field in the filter be a usable index.  updateObjects writes
 * the index columns and one fresh `u…` etag but never rewrites the stored
 * JSON (reads overlay the columns).  No triggers run.
 *
 *   UPDATE b SET _etag = $e, _mtime = $m, f1 = $1… WHERE _id IN (SELECT _id FROM b <where>)
 *   DELETE FROM b WHERE _id IN (SELECT _id FROM b <where>)
 *
 * (with the extended id, the row set is matched on _id or _idx).
 */

import { errors } from '../../errors/catalog';
import { assertUsableIndexes, compileFilter, decorateFilter, parseFilter, type CompiledWhere } from '../../filter';
import type { PgHandle } from '../../pg/handle';
import { probe } from '../../probes';
import { loadBucket, type Bucket } from '../../schema/bucket';
import { declaredIndex } from '../../schema/bucket-types';
import { updateEtag } from '../../schema/etag';
import { convertForWrite } from '../../schema/index-types';
import { quoteIdent } from '../../objects/record';
import { withConnection, type AppServices, type MorayRequest, type MorayRpc } from '../context';

const UPDATE_START = probe('moray', 'update-start');
const UPDATE_DONE = probe('moray', 'update-done');
const DELMANY_START = probe('moray', 'delmany-start');
const DELMANY_DONE = probe('moray', 'delmany-done');

function rowSet(b: Bucket, where: string): { prefix: string; cond: string } {
    if (b.hasExtendedId) {
        return {
            prefix: `WITH row_set AS (SELECT _id, _idx FROM ${b.table} ${where}) `,
            cond: '_id IN (SELECT _id FROM row_set WHERE _id IS NOT NULL) OR ' +
                '_idx IN (SELECT _idx FROM row_set WHERE _idx IS NOT NULL)',
        };
    }
    return { prefix: '', cond: `_id IN (SELECT _id FROM ${b.table} ${where})` };
}

function compileOpts(o: Record<string, unknown>) {
    return {
        sort: o['sort'] as never, limit: o['limit'] as never,
        offset: o['offset'] as never, noLimit: o['noLimit'] === true,
    };
}

type Step = <T>(name: string, fn: () => Promise<T> | T) => Promise<T>;

function stepper(req: MorayRequest, steps: boolean): Step {
    return (name, fn) => (steps ? req.step(name, fn) : Promise.resolve().then(fn));
}

/*
 * The selection both RPCs share: parse, load the bucket, demand usable
 * indexes for every field, and build the index-stage WHERE clause (with
 * ORDER BY / LIMIT / OFFSET).
 */
async function selectRows(app: AppServices, req: MorayRequest, pg: PgHandle, step: Step,
    bucketName: string, filter: string, options: Record<string, unknown>):
    Promise<{ b: Bucket; where: CompiledWhere }> {
    const ast = await step('parseFilter', () => parseFilter(filter));
    const b = await step('loadBucket', () =>
        loadBucket(app.buckets, pg, bucketName, options['noBucketCache'] === true));
    await step('checkOnlyUsableIndexes', () => {
        try {
            assertUsableIndexes(ast, b, filter);
        } catch (err) {
            req.log.error({ err }, 'filter references unusable indexes');
            throw err;
        }
    });
    await step('decorateFilter', () => decorateFilter(ast, b));
    const where = await step('buildWhereClause', () => compileFilter(ast, b, compileOpts(options)));
    return { b, where };
}

export async function updateMany(app: AppServices, req: MorayRequest, pg: PgHandle,
    bucketName: string, fields: Record<string, unknown>, filter: string,
    options: Record<string, unknown>, steps: boolean): Promise<{ count: number; etag: string }> {
    const step = stepper(req, steps);
    if (Object.keys(fields).length === 0) {
        throw errors.fieldUpdate(fields);
    }
    const { b, where } = await selectRows(app, req, pg, step, bucketName, filter, options);
    const etag = updateEtag();
    const mtime = Date.now();
    const params: unknown[] = [...where.args, etag, mtime];
    const sets = [`_etag = $${params.length - 1}`, `_mtime = $${params.length}`];
    for (const [k, v] of Object.entries(fields)) {
        const spec = declaredIndex(b, k);
        if (spec === undefined) {
            throw errors.notIndexed(bucketName, JSON.stringify(fields));
        }
        if (b.reindexing.has(k)) {
            throw errors.notIndexedFields(bucketName, JSON.stringify(fields), [k], []);
        }
        const p = convertForWrite(k, spec.type, v);
        if (p === null) {
            throw errors.notNullable(k, spec.type);
        }
        params.push(p);
        sets.push(`${quoteIdent(k)} = $${params.length}`);
    }
    const rs = rowSet(b, where.where);
    const r = await step('updateRows', () => pg.query(
        `${rs.prefix}UPDATE ${b.table} SET ${sets.join(', ')} WHERE ${rs.cond}`, params));
    return { count: r.rowCount, etag };
}

export async function deleteMatching(app: AppServices, req: MorayRequest, pg: PgHandle,
    bucketName: string, filter: string, options: Record<string, unknown>,
    steps: boolean): Promise<{ count: number }> {
    const step = stepper(req, steps);
    const { b, where } = await selectRows(app, req, pg, step, bucketName, filter, options);
    const rs = rowSet(b, where.where);
    const r = await step('drop', () =>
        pg.query(`${rs.prefix}DELETE FROM ${b.table} WHERE ${rs.cond}`, where.args));
    return { count: r.rowCount };
}

export const updateObjects: MorayRpc = {
    name: 'updateObjects',
    async run(app, req) {
        const [bucket, fields, filter] = req.args as [string, Record<string, unknown>, string];
        UPDATE_START.fire(() => [req.msgid, req.reqId, bucket, JSON.stringify(fields), filter]);
        try {
            if (Object.keys(fields).length === 0) {
                throw errors.fieldUpdate(fields);
            }
            const r = await withConnection(app, req, 'getPGHandleAndTransaction', 'READ COMMITTED',
                (pg) => updateMany(app, req, pg, bucket, fields, filter, req.options, true));
            req.write({ count: r.count, etag: r.etag });
        } finally {
            UPDATE_DONE.fire(() => [req.msgid, req.reqId]);
        }
    },
};

export const deleteMany: MorayRpc = {
    name: 'deleteMany',
    async run(app, req) {
        const [bucket, filter] = req.args as [string, string];
        DELMANY_START.fire(() => [req.msgid, req.reqId, bucket, filter]);
        try {
            const r = await withConnection(app, req, 'getPGHandleAndTransaction', 'READ COMMITTED',
                (pg) => deleteMatching(app, req, pg, bucket, filter, req.options, true));
            req.write({ count: r.count });
        } finally {
            DELMANY_DONE.fire(() => [req.msgid, req.reqId]);
        }
    },
};

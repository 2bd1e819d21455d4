/*
 * delObject(bucket, key, options) → {}   (storage.md §6.3)
 *
 *   BEGIN ─► load bucket ─► DELETE … RETURNING _id, _etag ─► none: ObjectNotFoundError
 *   ─► expected etag (options.etag || options._etag) truthy and different:
 *      EtagConflictError (rolled back) ─► post triggers ─► COMMIT
 */

import { errors } from '../../errors/catalog';
import type { PgHandle } from '../../pg/handle';
import { probe } from '../../probes';
import { loadBucket } from '../../schema/bucket';
import { rowId } from '../../objects/record';
import { compiledTriggers, runTriggers, triggerPg } from '../../objects/triggers';
import { withConnection, type AppServices, type MorayRequest, type MorayRpc } from '../context';

const DEL_START = probe('moray', 'delobject-start');
const DEL_DONE = probe('moray', 'delobject-done');

/* Shared with batch `delete`; `expected` is the etag to check (falsy = none). */
export async function deleteOne(app: AppServices, req: MorayRequest, pg: PgHandle,
    bucketName: string, key: string, expected: unknown, options: Record<string, unknown>,
    steps: boolean): Promise<void> {
    const step = <T>(name: string, fn: () => Promise<T> | T): Promise<T> =>
        steps ? req.step(name, fn) : Promise.resolve().then(fn);
    const b = await step('loadBucket', () =>
        loadBucket(app.buckets, pg, bucketName, options['noBucketCache'] === true));
    const row = await step('drop', async () => {
        const r = await pg.query(`DELETE FROM ${b.table} WHERE _key = $1 RETURNING _id, _etag` +
            (b.hasExtendedId ? ', _idx' : ''), [key]);
        const found = r.rows[0];
        if (found === undefined) {
            throw errors.objectNotFound(bucketName, key);
        }
        if (expected && found['_etag'] !== expected) {
            throw errors.etagConflict(bucketName, key, String(expected), found['_etag'] as string);
        }
        return found;
    });
    await step('runPostChain', async () => {
        if (b.post.length === 0) {
            return;
        }
        const trig = compiledTriggers(b, app.config.features);
        await runTriggers(trig.post, {
            bucket: bucketName, key, value: undefined, id: rowId(row), schema: b.index,
            update: false, headers: (options['headers'] as object | undefined) ?? {},
            log: req.log, pg: triggerPg(pg),
        }, app.config.features.triggerTimeout);
    });
}

export const delObject: MorayRpc = {
    name: 'delObject',
    async run(app, req) {
        const [bucket, key] = req.args as [string, string];
        DEL_START.fire(() => [req.msgid, req.reqId, bucket, key]);
        try {
            const expected = req.options['etag'] || req.options['_etag'];
            await withConnection(app, req, 'getPGHandleAndTransaction', 'READ COMMITTED',
                (pg) => deleteOne(app, req, pg, bucket, key, expected, req.options, true));
            req.write({});
        } finally {
            DEL_DONE.fire(() => [req.msgid, req.reqId]);
        }
    },
};

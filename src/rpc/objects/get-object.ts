/*
 * getObject(bucket, key, options) → [handled-options record,] object record
 * (storage.md §6.2).  No transaction: one SELECT by primary key on a named
 * prepared statement, on a shared pipelined connection when one has room
 * (pg/pool.ts).  The reference's object cache is not implemented
 * (node-moray always sends noCache: true; moray-api.md §9 allows omitting
 * it), so reads are always fresh; `noCache` is accepted and ignored.
 */

import { errors } from '../../errors/catalog';
import { probe } from '../../probes';
import { loadBucket } from '../../schema/bucket';
import { getObjectSql, rowToRecord } from '../../objects/record';
import { withConnection, type MorayRpc } from '../context';

const GET_START = probe('moray', 'getobject-start');
const GET_DONE = probe('moray', 'getobject-done');

export const GET_HANDLED_OPTIONS = ['noBucketCache', 'noCache', 'req_id',
    'requireOnlineReindexing', 'timeout'];

export const getObject: MorayRpc = {
    name: 'getObject',
    async run(app, req) {
        const [bucket, key] = req.args as [string, string];
        GET_START.fire(() => [req.msgid, req.reqId, bucket, key]);
        let result: unknown;
        try {
            req.skipStep('checkCache');
            result = await withConnection(app, req, 'dbConnect', 'shared', async (pg) => {
                const b = await req.step('loadBucket', () =>
                    loadBucket(app.buckets, pg, bucket, req.options['noBucketCache'] === true));
                const internal = req.options['internalOpts'] as Record<string, unknown> | undefined;
                await req.step('sendHandledOptions', () => {
                    if (internal?.['sendHandledOptions'] === true) {
                        req.write({ _handledOptions: GET_HANDLED_OPTIONS });
                    }
                });
                return req.step('loadObject', async () => {
                    const r = await pg.query(getObjectSql(b), [key]);
                    const row = r.rows[0];
                    if (row === undefined) {
                        throw errors.objectNotFound(bucket, key);
                    }
                    /* no object spread here: ~0.8 µs on Node 20, a property add is ~free */
                    const rec = rowToRecord(b, bucket, row);
                    rec._count = null;
                    req.write(rec);
                    return rec;
                });
            });
        } finally {
            GET_DONE.fire(() => [req.msgid, req.reqId,
                result === undefined ? 'undefined' : JSON.stringify(result)]);
        }
    },
};

/*
 * listBuckets(options): one raw bucket record per buckets_config row, in
 * table order, then END (moray-api §7.3, storage.md §10.3).
 *
 *   getPGHandle ──► loadBuckets: rows streamed from PostgreSQL ──► records
 *   (no BEGIN)                     ▲                                  │
 *                                  └──── paused while the socket ◄────┘
 *                                        is over its high-water mark
 *
 * Records have exactly getBucket's shape (JSON columns as text, see
 * get-bucket.ts).  Zero buckets → END only.  Never uses the bucket cache.
 */

import { probe } from '../../probes';
import { withConnection, type AppServices, type MorayRequest, type MorayRpc } from '../context';
import { BUCKET_ROW_SELECT, bucketRecord } from './get-bucket';

const LISTBUCKETS_START = probe('moray', 'listbuckets-start');
const LISTBUCKETS_DONE = probe('moray', 'listbuckets-done');

export const LIST_BUCKETS_SQL = BUCKET_ROW_SELECT;

export const listBuckets: MorayRpc = {
    name: 'listBuckets',
    async run(app: AppServices, req: MorayRequest): Promise<void> {
        LISTBUCKETS_START.fire(() => [req.msgid, req.reqId]);
        try {
            await withConnection(app, req, 'getPGHandle', null, (pg) =>
                req.step('loadBuckets', () => pg.query(LIST_BUCKETS_SQL, undefined, {
                    prepare: true,
                    onRow: (row) => (req.write(bucketRecord(row)) ? undefined : req.drained()),
                })));
        } finally {
            LISTBUCKETS_DONE.fire(() => [req.msgid, req.reqId]);
        }
    },
};

/*
 * getBucket(options, bucket) — note the reversed argument order
 * (moray-api §7.2, storage.md §10.2).
 *
 *   getPGHandle ──► loadBucket ──► 1 record (the raw row) ──► END
 *   (no BEGIN)      SELECT ... WHERE name = $1
 *                   no row → BucketNotFoundError "<bucket> does not exist"
 *
 * The record is the stored row, not the parsed bucket: node-moray
 * JSON.parse()s `index`, `pre`, `post`, `options` and `reindex_active`
 * itself, so those go out as the JSON *text* they are stored as (an object
 * there crashes the client with an uncaught SyntaxError).  `mtime` is the
 * Date PostgreSQL gave us (ISO text on the wire).  `reindex_active` is
 * always present: the text, or null when the column is NULL or does not
 * exist yet (it is added by the first updateBucket on a database).
 *
 * Why `to_jsonb(c) ->> 'reindex_active'` rather than `SELECT *`: the
 * statement is prepared once per pooled connection, and PostgreSQL refuses
 * to run a prepared `SELECT *` whose result columns changed since it was
 * prepared ("cached plan must not change result type") — which is exactly
 * what updateBucket's lazy `ADD COLUMN reindex_active` does.  The jsonb
 * lookup has the same result type whether or not the column exists.
 *
 * Never served from the bucket cache; no name validation (any unknown or
 * malformed name is simply "not found").
 */

import { errors } from '../../errors/catalog';
import { probe } from '../../probes';
import type { Row } from '../../pg/handle';
import { withConnection, type AppServices, type MorayRequest, type MorayRpc } from '../context';

const GETBUCKET_START = probe('moray', 'getbucket-start');
const GETBUCKET_DONE = probe('moray', 'getbucket-done');

/* The raw-row column list shared with listBuckets. */
export const BUCKET_ROW_SELECT =
    'SELECT name, index, pre, post, options, mtime, ' +
    "to_jsonb(c) ->> 'reindex_active' AS reindex_active FROM buckets_config c";

export const GET_BUCKET_SQL = BUCKET_ROW_SELECT + ' WHERE name = $1';

/* What getBucket/listBuckets send for one buckets_config row (moray-api §5.4). */
export interface BucketRecord {
    name: string;
    index: string;
    pre: string;
    post: string;
    options: string;
    mtime: unknown;
    reindex_active: string | null;
}

export function bucketRecord(row: Row): BucketRecord {
    const options = row['options'];
    return {
        name: row['name'] as string,
        index: row['index'] as string,
        pre: row['pre'] as string,
        post: row['post'] as string,
        /*
         * Moray never writes NULL options; the reference substituted an
         * object there, which the client cannot parse, so send its text.
         */
        options: typeof options === 'string' ? options : '{"version":0}',
        mtime: row['mtime'],
        reindex_active: typeof row['reindex_active'] === 'string'
            ? row['reindex_active'] : null,
    };
}

export const getBucket: MorayRpc = {
    name: 'getBucket',
    optionsIndex: 0,
    async run(app: AppServices, req: MorayRequest): Promise<void> {
        const bucket = req.args[1] as string;
        GETBUCKET_START.fire(() => [req.msgid, req.reqId, bucket]);
        try {
            const record = await withConnection(app, req, 'getPGHandle', null, (pg) =>
                req.step('loadBucket', async () => {
                    const r = await pg.query(GET_BUCKET_SQL, [bucket]);
                    const row = r.rows[0];
                    if (row === undefined) {
                        throw errors.bucketNotFound(bucket);
                    }
                    return bucketRecord(row);
                }));
            req.write(record);
        } finally {
            GETBUCKET_DONE.fire(() => [req.msgid, req.reqId, bucket]);
        }
    },
};

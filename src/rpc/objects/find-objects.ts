/*
 * findObjects(bucket, filter, options) → [handled-options,] records…
 * (storage.md §6.4, moray-api.md §7.9, §10)
 *
 *   parse filter ─► claim ─► load bucket ─► [requireIndexes check] ─►
 *   [handled options] ─► compile (index stage, $n values only) ─►
 *   sql_only? one record with the SQL : ONE statement
 *
 *     SELECT <cols>[, count(1) OVER () AS _count] FROM b WHERE … LIMIT …
 *
 *   ─► rows stream in batches of 500 (a portal) ─► overlay ─► exact
 *      post-filter ─► one DATA frame per record
 *
 * The reference runs a count query and a select inside a REPEATABLE READ
 * transaction (four statements); a single statement sees one snapshot by
 * itself, and the window count is the same number (rows matching the
 * index stage, before LIMIT/OFFSET and the post-filter), so one statement
 * without BEGIN/COMMIT gives the same answer in one round trip.
 *
 * Back-pressure: when the client's socket is full, write() returns false;
 * the row callback then returns a promise and the PostgreSQL socket is
 * paused until the client drains, so memory stays flat however many rows
 * match and however slowly the client reads.
 */

import { compileFilter, assertUsableIndexes, parseFilter, compileMatcher } from '../../filter';
import { probe } from '../../probes';
import { loadBucket } from '../../schema/bucket';
import { rowToRecord, selectColumns } from '../../objects/record';
import { withConnection, type MorayRpc } from '../context';

const FIND_START = probe('moray', 'findobjects-start');
const FIND_RECORD = probe('moray', 'findobjects-record');
const FIND_DONE = probe('moray', 'findobjects-done');

export const FIND_HANDLED_OPTIONS = ['req_id', 'limit', 'offset', 'sort', 'noLimit', 'no_count',
    'sql_only', 'noBucketCache', 'timeout', 'requireOnlineReindexing', 'requireIndexes'];

export const findObjects: MorayRpc = {
    name: 'findObjects',
    async run(app, req) {
        const [bucket, filter] = req.args as [string, string];
        const o = req.options;
        FIND_START.fire(() => [req.msgid, req.reqId, bucket, filter]);
        let sent = 0;
        try {
            const ast = await req.step('parseFilter', () => parseFilter(filter));
            await withConnection(app, req, 'getPGHandle', null, async (pg) => {
                req.skipStep('beginRepeatableRead');
                const b = await req.step('loadBucket', () =>
                    loadBucket(app.buckets, pg, bucket, o['noBucketCache'] === true));
                await req.step('checkRequiredIndexes', () => {
                    if (o['requireIndexes'] === true || o['requireOnlineReindexing'] === true) {
                        try {
                            assertUsableIndexes(ast, b, filter);
                        } catch (err) {
                            req.log.error({ err }, 'filter uses unusable indexes');
                            throw err;
                        }
                    }
                });
                await req.step('sendHandledOptions', () => {
                    const internal = o['internalOpts'] as Record<string, unknown> | undefined;
                    if (internal?.['sendHandledOptions'] === true) {
                        req.write({ _handledOptions: FIND_HANDLED_OPTIONS });
                    }
                });
                const matches = await req.step('decorateFilter', () => compileMatcher(ast, b));
                const where = await req.step('buildWhereClause', () => compileFilter(ast, b, {
                    sort: o['sort'] as never, limit: o['limit'] as never,
                    offset: o['offset'] as never, noLimit: o['noLimit'] === true,
                }));
                const noCount = o['no_count'] === true;
                if (o['sql_only'] === true) {
                    req.skipStep('getCount');
                    req.skipStep('getRecords');
                    await req.step('sendSQL', () => {
                        const rec: Record<string, unknown> = {};
                        if (!noCount) {
                            rec['count'] = `SELECT count(1) over () as _count FROM ${b.table} ${where.where}`;
                        }
                        rec['query'] = `SELECT ${selectColumns(b)} FROM ${b.table} ${where.where}`;
                        rec['args'] = where.args;
                        req.write(rec);
                    });
                    return;
                }
                req.skipStep('getCount');
                const sql = `SELECT ${selectColumns(b)}` +
                    (noCount ? '' : ', count(1) OVER () AS _count') +
                    ` FROM ${b.table} ${where.where}`;
                await req.step('getRecords', () => pg.query(sql, where.args, {
                    prepare: true,
                    batch: 500,
                    onRow: (row) => {
                        const rec = rowToRecord(b, bucket, row);
                        const out: Record<string, unknown> = { ...rec };
                        if (!noCount) {
                            out['_count'] = parseInt(row['_count'] as string, 10);
                        }
                        const probeValue = rec.value !== null && typeof rec.value === 'object' ?
                            { ...rec.value } : rec.value;
                        const cand = probeValue !== null && typeof probeValue === 'object' ?
                            probeValue as Record<string, unknown> : {};
                        cand['_id'] = rec._id;
                        cand['_txn_snap'] = rec._txn_snap;
                        cand['_etag'] = rec._etag;
                        cand['_key'] = rec.key;
                        cand['_mtime'] = rec._mtime;
                        if (!noCount) {
                            cand['_count'] = out['_count'];
                        }
                        if (!matches(cand)) {
                            return undefined;
                        }
                        sent++;
                        FIND_RECORD.fire(() => [req.msgid, rec.key, rec._id, rec._etag,
                            row['_value']]);
                        if (!req.write(out)) {
                            return req.drained();
                        }
                        return undefined;
                    },
                }));
            });
        } finally {
            FIND_DONE.fire(() => [req.msgid, sent]);
        }
    },
};

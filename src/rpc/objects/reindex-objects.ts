/*
 * reindexObjects(bucket, count, options) → {processed[, remaining]}
 * (moray-api.md §7.13, storage.md §6.8, §12)
 *
 *   load bucket (fresh) ─► reindex_active empty? {processed: 0}
 *   ─► SELECT up to `count` rows with _rver missing or older, FOR UPDATE
 *   ─► per row: read-back value (reindexing fields not overlaid), rewrite
 *      _value and every index column, stamp _rver (etag and mtime untouched)
 *   ─► none left: reindex_active = '{}' and evict the cached bucket
 *   ─► unless no_count: remaining = rows still behind
 *
 * Writes go on during reindexing: a put stamps _rver itself, so a row is
 * either rewritten here or already current; FOR UPDATE keeps a concurrent
 * put from interleaving with the rewrite of the same row.
 */

import { errors } from '../../errors/catalog';
import { probe } from '../../probes';
import { loadBucket } from '../../schema/bucket';
import { indexColumns, overlayValue, selectColumns } from '../../objects/record';
import { withConnection, type MorayRpc } from '../context';

const START = probe('moray', 'reindexobjects-start');
const RECORD = probe('moray', 'reindexobjects-record');
const DONE = probe('moray', 'reindexobjects-done');

export const reindexObjects: MorayRpc = {
    name: 'reindexObjects',
    async run(app, req) {
        const [bucket, count] = req.args as [string, number];
        START.fire(() => [req.msgid, req.reqId, bucket, count]);
        try {
            const result = await withConnection(app, req, 'getPGHandleAndTransaction',
                'READ COMMITTED', async (pg) => {
                    const b = await req.step('loadBucket', () =>
                        loadBucket(app.buckets, pg, bucket, true));
                    if (count < 1) {
                        throw errors.invalidArgument(`count ${count} < 1`);
                    }
                    const needed = await req.step('requiresReindex', () =>
                        b.reindexActive !== null && Object.keys(b.reindexActive).length > 0);
                    if (!needed) {
                        return { processed: 0 } as Record<string, number>;
                    }
                    const behind = '_rver IS NULL OR _rver < $1';
                    const processed = await req.step('processRows', async () => {
                        if (!b.hasRver) {
                            return 0;
                        }
                        const r = await pg.query(`SELECT ${selectColumns(b)} FROM ${b.table} ` +
                            `WHERE ${behind} LIMIT $2 FOR UPDATE`, [b.version, count]);
                        for (const row of r.rows) {
                            RECORD.fire(() => [req.msgid, bucket, row['_key']]);
                            const value = overlayValue(b, row);
                            const cols = indexColumns(b, value);
                            const params: unknown[] = [JSON.stringify(value)];
                            const sets = ['_value = $1'];
                            for (const c of cols.all) {
                                params.push(c.param);
                                sets.push(`${c.column} = $${params.length}`);
                            }
                            params.push(b.version);
                            sets.push(`_rver = $${params.length}`);
                            params.push(row['_key']);
                            await pg.query(`UPDATE ${b.table} SET ${sets.join(', ')} ` +
                                `WHERE _key = $${params.length}`, params);
                        }
                        return r.rows.length;
                    });
                    await req.step('recordStatus', async () => {
                        if (processed === 0) {
                            await pg.query("UPDATE buckets_config SET reindex_active = '{}' " +
                                'WHERE name = $1', [bucket]);
                            app.buckets.evict(bucket);
                        }
                    });
                    const out: Record<string, number> = { processed };
                    await req.step('countRemaining', async () => {
                        if (req.options['no_count'] !== true) {
                            if (!b.hasRver) {
                                out['remaining'] = 0;
                                return;
                            }
                            const r = await pg.query(
                                `SELECT count(*) AS _count FROM ${b.table} WHERE ${behind}`,
                                [b.version]);
                            out['remaining'] = parseInt(String(r.rows[0]?.['_count'] ?? 0), 10);
                        }
                    });
                    return out;
                });
            req.write(result);
        } finally {
            DONE.fire(() => [req.msgid, req.reqId]);
        }
    },
};

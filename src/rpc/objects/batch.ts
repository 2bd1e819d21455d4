/*
 * batch(requests, options) → {etags: [...]}   (moray-api.md §7.12, storage.md §6.7)
 *
 * All operations run in order inside ONE READ COMMITTED transaction; the
 * first failure rolls everything back and is the RPC's error.  Each
 * operation is the corresponding single RPC's body (putOne, deleteOne,
 * updateMany, deleteMatching), with these option rules:
 *
 *   effective = { ...op.options, ...batch options }   (batch-level wins)
 *               except `headers`, kept from the operation when it has them
 *   put    etag check uses effective.etag
 *   delete etag check uses the operation's OWN options.etag only
 *
 * Result entries, in the reference's key order:
 *   put {bucket, etag, key} · delete {bucket, key} ·
 *   update {bucket, count, etag, filter} · deleteMany {bucket, count, filter}
 */

import { errors } from '../../errors/catalog';
import { probe } from '../../probes';
import { withConnection, type MorayRpc } from '../context';
import { putOne } from './put-object';
import { deleteOne } from './del-object';
import { deleteMatching, updateMany } from './update-objects';

const BATCH_START = probe('moray', 'batch-start');
const BATCH_DONE = probe('moray', 'batch-done');
const OP_START = probe('moray', 'batch-op-start');
const OP_DONE = probe('moray', 'batch-op-done');

interface BatchOp {
    bucket: string;
    operation?: 'put' | 'delete' | 'update' | 'deleteMany';
    key?: string;
    value?: Record<string, unknown>;
    fields?: Record<string, unknown>;
    filter?: string;
    options?: Record<string, unknown>;
}

export const batch: MorayRpc = {
    name: 'batch',
    async run(app, req) {
        const [requests] = req.args as [BatchOp[]];
        BATCH_START.fire(() => [req.msgid, req.reqId]);
        try {
            const etags = await withConnection(app, req, 'getPGHandleAndTransaction',
                'READ COMMITTED', (pg) => req.step('processRequests', async () => {
                    const out: Record<string, unknown>[] = [];
                    for (const op of requests) {
                        const own = op.options ?? {};
                        const eff: Record<string, unknown> = { ...own, ...req.options };
                        if (own['headers'] !== undefined) {
                            eff['headers'] = own['headers'];
                        }
                        const kind = op.operation ?? 'put';
                        OP_START.fire(() => [req.msgid, req.reqId, op.bucket, kind,
                            kind === 'put' || kind === 'delete' ? op.key : op.filter]);
                        try {
                            switch (kind) {
                            case 'put': {
                                const r = await putOne(app, req, pg, op.bucket, op.key!,
                                    op.value!, eff, false);
                                out.push({ bucket: op.bucket, etag: r.etag, key: op.key });
                                break;
                            }
                            case 'delete':
                                await deleteOne(app, req, pg, op.bucket, op.key!,
                                    own['etag'], eff, false);
                                out.push({ bucket: op.bucket, key: op.key });
                                break;
                            case 'update': {
                                const r = await updateMany(app, req, pg, op.bucket, op.fields!,
                                    op.filter!, eff, false);
                                out.push({ bucket: op.bucket, count: r.count, etag: r.etag,
                                    filter: op.filter });
                                break;
                            }
                            case 'deleteMany': {
                                const r = await deleteMatching(app, req, pg, op.bucket,
                                    op.filter!, eff, false);
                                out.push({ bucket: op.bucket, count: r.count, filter: op.filter });
                                break;
                            }
                            default:
                                throw errors.invocation(`batch: unknown operation ${String(kind)}`);
                            }
                        } finally {
                            OP_DONE.fire(() => [req.msgid, req.reqId]);
                        }
                    }
                    return out;
                }));
            req.write({ etags });
        } finally {
            BATCH_DONE.fire(() => [req.msgid, req.reqId]);
        }
    },
};

/*
 * ping(options): END only.  With options.deep, claim a database connection
 * and run the reference health query first (observability.md §6); its
 * errors (NoDatabasePeersError, `connect ECONNREFUSED`, ...) are the reply.
 */

import { probe } from '../probes';
import type { AppServices, MorayRequest, MorayRpc } from './context';

const PING_START = probe('moray', 'ping-start');
const PING_DONE = probe('moray', 'ping-done');

export const ping: MorayRpc = {
    name: 'ping',
    async run(app: AppServices, req: MorayRequest): Promise<void> {
        const deep = req.options['deep'] === true ? 1 : 0;
        PING_START.fire(() => [req.msgid, req.reqId, deep]);
        if (deep) {
            const pg = await app.pool.claim(req.reqId);
            try {
                await pg.query('SELECT name FROM buckets_config LIMIT 1', undefined,
                    { prepare: true });
            } catch (err) {
                pg.broken = true;
                throw err;
            } finally {
                pg.release();
            }
        }
        PING_DONE.fire(() => [req.msgid, req.reqId, deep]);
    },
};

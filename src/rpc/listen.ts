/*
 * listen(channel, options) / unlisten(id, options)   (moray-api.md §7.18,
 * storage.md §15)
 *
 *   listen:   register under the request's req_id ─► dedicated connection to
 *             the primary (outside the pool) ─► LISTEN "<channel>" ─►
 *             each notification → record {channel, payload}
 *             ends with END on unlisten(req_id) or when the client goes away;
 *             with ERROR when the dedicated connection fails.
 *   unlisten: stop the listener registered under `id` (on any connection
 *             of this process); always END, also for unknown ids.
 *
 * The listener is registered before the connection is set up, so an
 * unlisten that races ahead of LISTEN still ends it (the reference left
 * such a listen open forever).
 */

import type * as pg from 'pg';
import { errors } from '../errors/catalog';
import { probe } from '../probes';
import { metricsOf } from '../observe/metrics';
import type { AppServices, MorayRpc } from './context';

const LISTEN_START = probe('moray', 'listen-start');
const LISTEN_NOTIFICATION = probe('moray', 'listen-notification');
const LISTEN_CONN_ERROR = probe('moray', 'listen-conn-error');

interface Listener {
    stop(): void;
}

function listeners(app: AppServices): Map<string, Listener> {
    let m = app.ext['listeners'] as Map<string, Listener> | undefined;
    if (m === undefined) {
        m = new Map();
        app.ext['listeners'] = m;
    }
    return m;
}

function quoteChannel(ch: string): string {
    return '"' + ch.replace(/"/g, '""') + '"';
}

export const listen: MorayRpc = {
    name: 'listen',
    async run(app, req) {
        const [channel] = req.args as [string];
        const reg = listeners(app);
        const metrics = metricsOf(app);
        let client: pg.Client | null = null;
        let stopped = false;
        let finish: (err?: unknown) => void = () => undefined;
        const done = new Promise<void>((resolve, reject) => {
            finish = (err?: unknown) => (err ? reject(err) : resolve());
        });
        const stop = (err?: unknown) => {
            if (stopped) {
                return;
            }
            stopped = true;
            reg.delete(req.reqId);
            if (client !== null) {
                metrics.listenConnections--;
                client.end().catch(() => undefined);
            }
            finish(err);
        };
        reg.get(req.reqId)?.stop();
        reg.set(req.reqId, { stop: () => stop() });
        req.fast.onClientEnd(() => stop());
        try {
            const c = await app.pool.dedicatedClient();
            if (stopped) {
                await c.end().catch(() => undefined);
                return;
            }
            client = c;
            metrics.listenConnections++;
            const sql = `LISTEN ${quoteChannel(channel)}`;
            c.on('notification', (n: pg.Notification) => {
                if (n.channel !== channel || stopped) {
                    return;
                }
                LISTEN_NOTIFICATION.fire(() => [req.reqId, n.channel, n.payload ?? '']);
                req.write({ channel: n.channel, payload: n.payload ?? '' });
            });
            c.on('error', (err: Error) => {
                LISTEN_CONN_ERROR.fire(() => [req.reqId, sql, String(err)]);
                stop(errors.noBackends());
            });
            c.on('end', () => stop(stopped ? undefined : errors.noBackends()));
            LISTEN_START.fire(() => [req.reqId, channel]);
            await c.query(sql);
        } catch (err) {
            stop(err);
        }
        await done;
    },
};

export const unlisten: MorayRpc = {
    name: 'unlisten',
    async run(app, req) {
        const [id] = req.args as [string];
        listeners(app).get(id)?.stop();
    },
};

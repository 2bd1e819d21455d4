/*
 * The monitoring HTTP server on the -k port (observability.md §7).
 *
 *   GET /kang/snapshot   200 kang snapshot (service, stats, types, objects)
 *   GET /kang/schema     200 kang schema {service, types, schemas}
 *   GET /kang/<other>    404, empty body (as kang's handler)
 *   GET /metrics         200 Prometheus text exposition 0.0.4
 *   GET /ping            200 "ok" (liveness; ?deep=1 also claims a
 *                        PostgreSQL connection and runs SELECT 1: 503 if not)
 *   other paths          404 {"code":"ResourceNotFound",...} (restify's shape)
 *   other methods        405 {"code":"MethodNotAllowed",...}
 *
 * Plain node:http: restify would add ~100 packages and ~25 MB of RSS for
 * four routes (docs/dependencies.md).  Every handler is synchronous except
 * the deep ping; a handler that throws is a bug in a snapshot builder: the
 * scrape gets a 500 and one error record, the server keeps serving RPCs.
 * Bound to the same bindip as the Fast port; 0 as monitorPort disables it.
 *
 * startMonitor() also starts the `moray:log` probe watcher (log-probe.ts)
 * for the server's logger: the monitoring surface and live snooping start
 * together.  installLogProbe() is idempotent, so main.ts may call it as
 * well (and should, for snooping with the monitor disabled).
 */

import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Config } from '../config';
import type { MorayServer } from '../app';
import { kangSchema, kangSnapshot } from './kang';
import { renderMetrics } from './metrics';
import { installLogProbe } from './log-probe';

export interface Monitor {
    port: number;
    close(): Promise<void>;
}

function send(res: http.ServerResponse, code: number, type: string, body: string): void {
    res.writeHead(code, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
    res.end(res.req.method === 'HEAD' ? undefined : body);
}

function sendJson(res: http.ServerResponse, code: number, body: unknown): void {
    send(res, code, 'application/json', JSON.stringify(body));
}

export function monitorHandler(server: MorayServer): http.RequestListener {
    return (req, res) => {
        const url = new URL(req.url ?? '/', 'http://localhost');
        const p = url.pathname;
        if (req.method !== 'GET' && req.method !== 'HEAD') {
            sendJson(res, 405, { code: 'MethodNotAllowed', message: `${req.method} is not allowed` });
            return;
        }
        try {
            if (p === '/kang/snapshot') {
                sendJson(res, 200, kangSnapshot(server));
            } else if (p === '/kang/schema') {
                sendJson(res, 200, kangSchema(server));
            } else if (p.startsWith('/kang/')) {
                res.writeHead(404, { 'content-length': 0 }).end();
            } else if (p === '/metrics') {
                send(res, 200, 'text/plain; version=0.0.4', renderMetrics(server));
            } else if (p === '/ping') {
                ping(server, url.searchParams.has('deep'), res);
            } else {
                sendJson(res, 404, { code: 'ResourceNotFound', message: `${p} does not exist` });
            }
        } catch (err) {
            server.log.error({ err, path: p }, 'monitor: handler failed');
            sendJson(res, 500, { code: 'InternalError', message: (err as Error).message });
        }
    };
}

function ping(server: MorayServer, deep: boolean, res: http.ServerResponse): void {
    if (!deep) {
        send(res, 200, 'text/plain', 'ok\n');
        return;
    }
    server.pool.claim('monitor-ping').then(async (pg) => {
        try {
            await pg.query('SELECT 1', undefined, { prepare: false });
            send(res, 200, 'text/plain', 'ok\n');
        } finally {
            pg.release();
        }
    }).catch((err: Error) => {
        send(res, 503, 'text/plain', `database: ${err.message}\n`);
    });
}

export async function startMonitor(server: MorayServer, cfg: Config): Promise<Monitor> {
    installLogProbe(server.log);
    const http_ = http.createServer(monitorHandler(server));
    http_.keepAliveTimeout = 5000;
    await new Promise<void>((resolve, reject) => {
        http_.once('error', reject);
        http_.listen(cfg.monitorPort, cfg.bindip, () => {
            http_.off('error', reject);
            resolve();
        });
    });
    return {
        port: (http_.address() as AddressInfo).port,
        close: () => new Promise<void>((r) => {
            http_.close(() => r());
            http_.closeAllConnections();
        }),
    };
}

/*
 * The monitoring HTTP server on the -k port (observability.md §7):
 *
 *   GET /kang/snapshot   kang snapshot (service, stats, types, objects)
 *   GET /kang/schema     kang schema
 *   GET /metrics         Prometheus text exposition 0.0.4
 *   GET /ping            200 "ok" (liveness; ?deep=1 also checks PostgreSQL)
 *   anything else        404 (unknown path) / 405 (other methods)
 *
 * Plain node:http: restify would add ~100 packages and ~25 MB of RSS for
 * four routes (docs/dependencies.md).
 */

import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Config } from '../config';
import type { MorayServer } from '../app';
import { kangSchema, kangSnapshot } from './kang';
import { renderMetrics } from './metrics';

export interface Monitor {
    port: number;
    close(): Promise<void>;
}

export async function startMonitor(server: MorayServer, cfg: Config): Promise<Monitor> {
    const http_ = http.createServer((req, res) => {
        const url = new URL(req.url ?? '/', 'http://localhost');
        if (req.method !== 'GET' && req.method !== 'HEAD') {
            res.writeHead(405, { 'content-type': 'application/json' });
            res.end(JSON.stringify({ code: 'MethodNotAllowed', message: `${req.method} is not allowed` }));
            return;
        }
        const json = (body: unknown) => {
            const text = JSON.stringify(body);
            res.writeHead(200, { 'content-type': 'application/json',
                'content-length': Buffer.byteLength(text) });
            res.end(text);
        };
        switch (url.pathname) {
        case '/kang/snapshot':
            json(kangSnapshot(server));
            return;
        case '/kang/schema':
            json(kangSchema(server));
            return;
        case '/metrics': {
            const text = renderMetrics(server);
            res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4',
                'content-length': Buffer.byteLength(text) });
            res.end(text);
            return;
        }
        case '/ping':
            if (url.searchParams.get('deep')) {
                server.pool.claim('monitor-ping').then(async (pg) => {
                    try {
                        await pg.query('SELECT 1', undefined, { prepare: false });
                        res.writeHead(200).end('ok\n');
                    } finally {
                        pg.release();
                    }
                }).catch((err: Error) => {
                    res.writeHead(503).end(`database: ${err.message}\n`);
                });
                return;
            }
            res.writeHead(200).end('ok\n');
            return;
        default:
            res.writeHead(404);
            res.end();
        }
    });
    await new Promise<void>((resolve, reject) => {
        http_.once('error', reject);
        http_.listen(cfg.monitorPort, cfg.bindip, () => resolve());
    });
    return {
        port: (http_.address() as AddressInfo).port,
        close: () => new Promise<void>((r) => {
            http_.close(() => r());
            http_.closeAllConnections();
        }),
    };
}

/*
 * Network helpers for tests: a free port, and a GET on the server's
 * monitoring listener (kang snapshot, metrics).
 */

import * as http from 'node:http';
import * as net from 'node:net';

/*
 * A TCP port on 127.0.0.1 that was free a moment ago (listen on 0, read
 * the port, close).  Another process can take it in between; the tests
 * that use it start their server right away.
 */
export function freePort(): Promise<number> {
    return new Promise((resolve, reject) => {
        const srv = net.createServer();
        srv.unref();
        srv.once('error', reject);
        srv.listen(0, '127.0.0.1', () => {
            const addr = srv.address() as net.AddressInfo;
            srv.close(() => resolve(addr.port));
        });
    });
}

/* The body of GET http://127.0.0.1:port/path; anything but 200 rejects. */
export function httpGet(port: number, p: string): Promise<string> {
    return new Promise((resolve, reject) => {
        const req = http.request({ host: '127.0.0.1', port, path: p, method: 'GET' }, (res) => {
            let body = '';
            res.setEncoding('utf8');
            res.on('data', (d) => { body += d; });
            res.on('end', () => res.statusCode === 200 ? resolve(body) : reject(new Error(`HTTP ${res.statusCode}`)));
        });
        req.on('error', reject);
        req.end();
    });
}

/* The server's kang snapshot (monitoring port). */
export async function kangSnapshot(monitorPort: number): Promise<Record<string, any>> {
    return JSON.parse(await httpGet(monitorPort, '/kang/snapshot')) as Record<string, any>;
}

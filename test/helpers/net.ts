/*
 * A TCP port on 127.0.0.1 that was free a moment ago (listen on 0, read
 * the port, close).  Another process can take it in between; the tests
 * that use it start their server right away.
 */

import * as net from 'node:net';

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

/*
 * Shared plumbing for the object-RPC integration tests
 * (objects.test.ts, objects-*.test.ts): one database + one server + one
 * npm `moray` client per test file, plus small promise wrappers.
 *
 *   objectsFixture(prefix) ── before(): testDatabase ─► startServer ─► morayClient
 *                          └─ after():  close client ─► stop server ─► drop db
 *                                       ─► stop the file's own cluster, if any
 *
 * Errors are checked by `name`, `message` and (for EtagConflictError)
 * `context`, exactly as clients see them: the fixture's client is created
 * with `unwrapErrors: true`, so the server's error object arrives as is.
 *
 * rawRpc() talks to the server through the node-fast client directly, for
 * the few things node-moray never sends (the legacy `_etag` option on
 * delObject, a literal `_value` option, the metadata record itself).
 */

import { after, before } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import * as net from 'node:net';
import {
    call, collect, innermostError, morayClient, startServer, stopOwnCluster, testDatabase,
    type MorayClient, type ServerProcess, type TestDatabase,
} from '../helpers/harness';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const fast = require('fast');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const bunyan = require('bunyan');

export interface ObjectsFixture {
    db: TestDatabase;
    srv: ServerProcess;
    c: MorayClient;
}

/*
 * Register before/after hooks for the calling test file and return a
 * holder whose fields are filled in by before().
 */
export function objectsFixture(prefix: string,
    serverConfig?: (db: TestDatabase) => Record<string, unknown>): ObjectsFixture {
    const fx = {} as ObjectsFixture;
    before(async () => {
        fx.db = await testDatabase(prefix);
        fx.srv = serverConfig === undefined ? await startServer({ db: fx.db })
            : await startServer({ config: serverConfig(fx.db) });
        fx.c = await morayClient(fx.srv.port);
    });
    after(async () => {
        fx.c?.close();
        await fx.srv?.stop();
        await fx.db?.drop();
        /* a no-op under tools/run-tests.js (shared cluster) */
        await stopOwnCluster();
    });
    return fx;
}

export function createBucket(c: MorayClient, name: string, config: Record<string, unknown>,
    options: Record<string, unknown> = {}): Promise<void> {
    return call(c, 'createBucket', name, config, options);
}

export function put(c: MorayClient, bucket: string, key: string, value: unknown,
    options: Record<string, unknown> = {}): Promise<{ etag: string }> {
    return call(c, 'putObject', bucket, key, value, options);
}

export function get(c: MorayClient, bucket: string, key: string,
    options: Record<string, unknown> = {}): Promise<any> {
    return call(c, 'getObject', bucket, key, options);
}

export function del(c: MorayClient, bucket: string, key: string,
    options: Record<string, unknown> = {}): Promise<unknown> {
    return call(c, 'delObject', bucket, key, options);
}

export function find(c: MorayClient, bucket: string, filter: string,
    options: Record<string, unknown> = {}): Promise<any[]> {
    return collect(c, 'findObjects', bucket, filter, options);
}

/* Keys of a find result, in arrival order. */
export async function findKeys(c: MorayClient, bucket: string, filter: string,
    options: Record<string, unknown> = {}): Promise<string[]> {
    return (await find(c, bucket, filter, options)).map((r) => r.key);
}

/* Keys of a find result, sorted (for filters whose order is unspecified). */
export async function findKeySet(c: MorayClient, bucket: string, filter: string,
    options: Record<string, unknown> = {}): Promise<string[]> {
    return (await findKeys(c, bucket, filter, options)).sort();
}

export interface ExpectedError {
    name: string;
    message?: string | RegExp;
    context?: Record<string, unknown>;
}

/* Await `p`, which must fail with exactly this error. */
export async function rejects(p: Promise<unknown>, exp: ExpectedError): Promise<any> {
    let err: any;
    try {
        await p;
    } catch (e) {
        err = e;
    }
    assert.ok(err !== undefined, `expected ${exp.name}, but the call succeeded`);
    assert.equal(err.name, exp.name, `error name (message: ${err.message})`);
    if (typeof exp.message === 'string') {
        assert.equal(err.message, exp.message);
    } else if (exp.message instanceof RegExp) {
        assert.match(err.message, exp.message);
    }
    if (exp.context !== undefined) {
        assert.deepEqual({ ...err.context }, exp.context);
    }
    return err;
}

/* ---- raw Fast RPCs (node-fast client, no node-moray option rewriting) ---- */

export interface RawResult {
    err: { name: string; message: string; context?: unknown } | null;
    data: any[];
}

export interface RawClient {
    rpc(method: string, args: unknown[]): Promise<RawResult>;
    close(): void;
}


export function rawClient(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
        const sock = net.connect(port, '127.0.0.1', () => {
            const client = new fast.FastClient({
                log: bunyan.createLogger({ name: 'raw', level: 'fatal' }),
                nRecentRequests: 10, transport: sock,
            });
            resolve({
                rpc(method, args) {
                    return new Promise((res) => {
                        const r = client.rpc({ rpcmethod: method, rpcargs: args });
                        const data: any[] = [];
                        r.on('data', (d: unknown) => data.push(d));
                        r.on('end', () => res({ err: null, data }));
                        r.on('error', (err: unknown) => res({ err: innermostError(err), data }));
                    });
                },
                close() {
                    client.detach();
                    sock.destroy();
                },
            });
        });
        sock.once('error', reject);
    });
}

/* A UUID for req_id options. */
export function uuid(): string {
    return randomUUID();
}

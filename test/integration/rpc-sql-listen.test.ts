/*
 * sql, ping, version, getTokens, listen/unlisten and notify through the real
 * npm moray client and a real PostgreSQL (moray-api.md §7.14–§7.18,
 * storage.md §6.9, §15).
 */

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { randomUUID } from 'node:crypto';
import {
    call, collect, errName, rawRpc, morayClient, standaloneConfig, startServer, stopOwnCluster, testDatabase,
    type MorayClient, type ServerProcess, type TestDatabase,
} from '../helpers/harness';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const fast = require('fast') as any;
// eslint-disable-next-line @typescript-eslint/no-require-imports
const bunyan = require('bunyan') as typeof import('bunyan');


let db: TestDatabase;
let srv: ServerProcess;
let client: MorayClient;

before(async () => {
    db = await testDatabase('rpcsql');
    srv = await startServer({ db });
    client = await morayClient(srv.port);
});

after(async () => {
    client?.close();
    await srv?.stop();
    await db?.drop();
    await stopOwnCluster();
});

function sqlRows(c: MorayClient, stmt: string, values: unknown[] = [], opts: Record<string, unknown> = {}) {
    return collect(c, 'sql', stmt, values, opts);
}

test('sql: rows streamed, bigint as string, bind values', async () => {
    const rows = await sqlRows(client, 'SELECT g AS n, g::bigint AS big, $1::text AS t ' +
        'FROM generate_series(1, 1200) g', ['hi']);
    assert.equal(rows.length, 1200);
    assert.deepEqual(rows[0], { n: 1, big: '1', t: 'hi' });
    assert.deepEqual(rows[1199], { n: 1200, big: '1200', t: 'hi' });
    assert.deepEqual(await sqlRows(client, 'SELECT 1 AS x WHERE false'), []);
});

test('sql: error names', async () => {
    let e = await sqlRows(client, 'SELEKT 1').catch((x) => x);
    assert.equal(errName(e), 'InternalError');
    assert.equal(e.message, 'Invalid SQL: syntax error at or near "SELEKT"');
    e = await sqlRows(client, 'CREATE TABLE dupcol (a int, a int)').catch((x) => x);
    assert.equal(errName(e), 'InternalError');
    assert.equal(e.message, 'Invalid SQL: column "a" specified more than once');
    e = await sqlRows(client, 'SELECT * FROM nonexist').catch((x) => x);
    assert.equal(errName(e), 'error');
    assert.equal(e.message, 'relation "nonexist" does not exist');
    await sqlRows(client, 'CREATE TABLE IF NOT EXISTS sqlu (email TEXT UNIQUE)');
    await sqlRows(client, "INSERT INTO sqlu VALUES ('a@x')");
    e = await sqlRows(client, "INSERT INTO sqlu VALUES ('a@x')").catch((x) => x);
    assert.equal(errName(e), 'UniqueAttributeError');
    assert.match(e.message, /is a unique attribute; value "a@x" already exists/);
    // transaction: the failed statement left nothing behind, the session is fine
    assert.deepEqual(await sqlRows(client, 'SELECT count(*)::int AS c FROM sqlu'), [{ c: 1 }]);
});

test('sql: QueryTimeoutError with options.timeout', async () => {
    const t0 = Date.now();
    const e = await sqlRows(client, 'SELECT pg_sleep(5)', [], { timeout: 200 }).catch((x) => x);
    assert.equal(errName(e), 'QueryTimeoutError');
    assert.equal(e.message, 'query timeout: SELECT pg_sleep(5)');
    assert.ok(Date.now() - t0 < 4000);
    // connection pool still healthy afterwards
    assert.deepEqual(await sqlRows(client, 'SELECT 1 AS one'), [{ one: 1 }]);
});

test('sql: notify statement returns {pg_notify: ""}', async () => {
    assert.deepEqual(await sqlRows(client, 'select pg_notify($1, $2)', ['nochan', 'x']),
        [{ pg_notify: '' }]);
});

test('sql: features.sql=false disables it except notify', async () => {
    const s2 = await startServer({ config: standaloneConfig(db, { features: { sql: false } }) });
    const c2 = await morayClient(s2.port);
    try {
        const e = await sqlRows(c2, 'SELECT 1').catch((x) => x);
        assert.equal(errName(e), 'Error');
        assert.match(e.message, /disabled/);
        assert.deepEqual(await sqlRows(c2, 'select pg_notify($1, $2)', ['ch', 'p']), [{ pg_notify: '' }]);
        await call(c2, 'notify', 'ch', 'p2', {});
    } finally {
        c2.close();
        await s2.stop();
    }
});

test('ping, ping deep, version, getTokens', async () => {
    assert.equal(await call(client, 'ping', {}), undefined);
    assert.equal(await call(client, 'ping', { deep: true }), undefined);
    assert.equal(await call(client, 'versionInternal', {}), 2);
    let r = await rawRpc(srv.port, 'version', [{}]);
    assert.deepEqual(r, { err: null, data: [{ version: 2 }] });
    r = await rawRpc(srv.port, 'ping', [{ deep: true }]);
    assert.deepEqual(r, { err: null, data: [] });
    const e = await call(client, 'getTokens', {}).catch((x) => x);
    assert.equal(errName(e), 'Error');
    assert.equal(e.message, 'Operation not supported');
});

async function listenConns(): Promise<number> {
    const r = await db.query("SELECT count(*)::int AS c FROM pg_stat_activity " +
        "WHERE application_name = 'moray-listen' AND datname = current_database()");
    return r.rows[0].c;
}

async function waitFor(pred: () => Promise<boolean>, ms = 5000): Promise<void> {
    const end = Date.now() + ms;
    while (!(await pred())) {
        if (Date.now() > end) {
            throw new Error(`timed out waiting (listen conns ${await listenConns()})`);
        }
        await new Promise((r) => setTimeout(r, 50));
    }
}

test('listen/notify: 200 notifications in order, unlisten ends it, connection closed', async () => {
    await new Promise((r) => setTimeout(r, 300));
    const before0 = await listenConns();
    const l = client.listen('Chan-1');
    const got: any[] = [];
    l.on('data', (d: any) => got.push(d));
    const ended = new Promise<void>((resolve, reject) => {
        l.on('end', resolve);
        l.on('error', reject);
    });
    await waitFor(async () => (await listenConns()) === before0 + 1);
    // LISTEN is issued right after connect; give it a moment
    await new Promise((r) => setTimeout(r, 100));
    const sender = await morayClient(srv.port);
    for (let i = 0; i < 200; i++) {
        await call(sender, 'notify', 'Chan-1', `p${i}`, {});
    }
    await call(sender, 'notify', 'chan-1', 'other case', {});
    await waitFor(async () => got.length >= 200);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(got.length, 200);
    assert.deepEqual(got.map((g) => g.payload), Array.from({ length: 200 }, (_, i) => `p${i}`));
    assert.ok(got.every((g) => g.channel === 'Chan-1'));
    await new Promise<void>((resolve, reject) => l.unlisten((err: Error) => err ? reject(err) : resolve()));
    await ended;
    await waitFor(async () => (await listenConns()) === before0);
    sender.close();
});

test('listen: unlisten racing ahead of the LISTEN setup still ends it', async () => {
    await new Promise((r) => setTimeout(r, 300));
    const before0 = await listenConns();
    const l = client.listen('racy');
    const ended = new Promise<void>((resolve, reject) => {
        l.on('end', resolve);
        l.on('error', reject);
        l.resume();
    });
    l.unlisten(() => undefined);
    await ended;
    await waitFor(async () => (await listenConns()) === before0);
});

test('listen: non-uuid req_id → InvocationError', async () => {
    const r = await rawRpc(srv.port, 'listen', ['x', { req_id: 'not-a-uuid' }]);
    assert.equal(errName(r.err), 'InvocationError');
});

test('listen: unlisten of an unknown id answers END', async () => {
    const r = await rawRpc(srv.port, 'unlisten', ['no-such-listener', {}]);
    assert.deepEqual(r, { err: null, data: [] });
});

test('listen: client going away closes the dedicated connection', async () => {
    await new Promise((r) => setTimeout(r, 300));
    const before0 = await listenConns();
    // a raw Fast client whose socket we can destroy (node-moray's close()
    // waits for the outstanding listen before letting go of the socket)
    const sock = await new Promise<net.Socket>((resolve, reject) => {
        const s = net.connect(srv.port, '127.0.0.1', () => resolve(s));
        s.once('error', reject);
    });
    const fc = new fast.FastClient({ log: bunyan.createLogger({ name: 't', level: 'fatal' }),
        nRecentRequests: 10, transport: sock });
    const r = fc.rpc({ rpcmethod: 'listen', rpcargs: ['gone', { req_id: randomUUID() }] });
    r.on('error', () => undefined);
    r.on('data', () => undefined);
    await waitFor(async () => (await listenConns()) === before0 + 1);
    sock.destroy();
    await waitFor(async () => (await listenConns()) === before0);
});

test('listen: unlisten from another connection ends it', async () => {
    const c = await morayClient(srv.port);
    const id = randomUUID();
    const l = client.listen('cross', { req_id: id });
    const got: any[] = [];
    l.on('data', (d: any) => got.push(d));
    const ended = new Promise<void>((resolve) => l.on('end', resolve));
    await waitFor(async () => {
        await call(c, 'notify', 'cross', 'hello', {});
        return got.length > 0;
    });
    const r = await rawRpc(srv.port, 'unlisten', [id, {}]);
    assert.equal(r.err, null);
    await ended;
    assert.deepEqual(got[0], { channel: 'cross', payload: 'hello' });
    c.close();
});

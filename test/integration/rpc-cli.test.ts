/*
 * node-moray CLI tools for the non-CRUD RPCs (moray-api.md §16): sql,
 * morayping, morayversion, gettokens, updatemany, delmany, reindexobjects,
 * moraylisten, moraynotify — exit codes and output formats.
 */

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import {
    ROOT, call, morayClient, runCli, startServer, stopOwnCluster, testDatabase,
    type MorayClient, type ServerProcess, type TestDatabase,
} from '../helpers/harness';

let db: TestDatabase;
let srv: ServerProcess;
let client: MorayClient;
const B = 'clib';

before(async () => {
    db = await testDatabase('rpccli');
    srv = await startServer({ db });
    client = await morayClient(srv.port);
    await call(client, 'createBucket', B, { index: { n: { type: 'number' } } }, {});
});

after(async () => {
    client?.close();
    await srv?.stop();
    await db?.drop();
    await stopOwnCluster();
});

test('sql, morayping, morayversion, gettokens', async () => {
    let r = await runCli('sql', ['SELECT 1::int AS one, 2::bigint AS two'], srv.port);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, JSON.stringify({ one: 1, two: '2' }, null, 2) + '\n');
    r = await runCli('sql', ['SELECT * FROM nonexist'], srv.port);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^sql: .*relation "nonexist" does not exist/m);
    r = await runCli('morayping', [], srv.port);
    assert.deepEqual([r.code, r.stdout], [0, '']);
    r = await runCli('morayping', ['-d'], srv.port);
    assert.deepEqual([r.code, r.stdout], [0, ''], r.stderr);
    r = await runCli('morayversion', [], srv.port);
    assert.deepEqual([r.code, r.stdout], [0, '2\n']);
    r = await runCli('gettokens', [], srv.port);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^gettokens: .*Operation not supported/m);
});

test('updatemany, delmany', async () => {
    for (let i = 0; i < 3; i++) {
        await call(client, 'putObject', B, `k${i}`, { n: 1 }, {});
    }
    let r = await runCli('updatemany', ['-d', '{"n":2}', B, '(n=1)'], srv.port);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^\{ count: 3, etag: 'u[0-9a-f]{7}' \}\n$/);
    r = await runCli('updatemany', ['-d', '{"n":3}', '-l', '1', B, '(n=2)'], srv.port);
    assert.match(r.stdout, /^\{ count: 1, etag: 'u[0-9a-f]{7}' \}\n$/);
    r = await runCli('updatemany', ['-d', '{"zz":3}', B, '(n=2)'], srv.port);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^updatemany: .*does not have indexes that support \{"zz":3\}/m);
    r = await runCli('delmany', ['-l', '1', B, '(n=2)'], srv.port);
    assert.deepEqual([r.code, r.stdout], [0, '1 records deleted\n']);
    r = await runCli('delmany', [B, '(n>=0)'], srv.port);
    assert.deepEqual([r.code, r.stdout], [0, '2 records deleted\n']);
    r = await runCli('delmany', ['nosuch', '(n>=0)'], srv.port);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^delmany: .*nosuch does not exist/m);
});

test('reindexobjects', async () => {
    const R = 'clire';
    await call(client, 'putBucket', R, { index: { n: { type: 'number' } }, options: { version: 1 } }, {});
    let r = await runCli('reindexobjects', [R], srv.port);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, `bucket "${R}": no reindexing required\n`);
    for (let i = 0; i < 3; i++) {
        await call(client, 'putObject', R, `k${i}`, { n: i, m: i }, {});
    }
    await call(client, 'putBucket', R, { index: { n: { type: 'number' }, m: { type: 'number' } },
        options: { version: 2 } }, {});
    r = await runCli('reindexobjects', [R, '2'], srv.port);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, `bucket "${R}": 2 objects processed (continuing)\n` +
        `bucket "${R}": 1 object processed (continuing)\n` +
        `bucket "${R}": all objects processed\n`);
    const rows = (await db.query(`SELECT m, _rver FROM ${R} ORDER BY _key`)).rows;
    assert.deepEqual(rows.map((x) => [Number(x.m), x._rver]), [[0, 2], [1, 2], [2, 2]]);
});

test('moraylisten + moraynotify', async () => {
    const bin = path.join(ROOT, 'node_modules', 'moray', 'bin', 'moraylisten');
    const p = spawn(process.execPath, [bin, '-h', '127.0.0.1', '-p', String(srv.port), 'cli-chan'],
        { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { err += d; });
    const exited = new Promise<number | null>((r) => p.on('exit', (c) => r(c)));
    const deadline = Date.now() + 10000;
    while (!err.includes('Connected')) {
        assert.ok(Date.now() < deadline, 'moraylisten did not connect: ' + err);
        await new Promise((r) => setTimeout(r, 50));
    }
    assert.match(err, /Connected - listening for "cli-chan" notifications/);
    // the LISTEN may still be in flight: send until the first one arrives
    let i = 0;
    while (!out.includes('first')) {
        assert.ok(Date.now() < deadline, 'no notification');
        const r = await runCli('moraynotify', ['cli-chan', 'first'], srv.port);
        assert.deepEqual([r.code, r.stdout], [0, '']);
        if (i++ > 0) {
            await new Promise((res) => setTimeout(res, 100));
        }
    }
    const r = await runCli('moraynotify', ['cli-chan', '{"x":1}'], srv.port);
    assert.equal(r.code, 0);
    while (!out.includes('{"x":1}')) {
        assert.ok(Date.now() < deadline, 'no second notification');
        await new Promise((res) => setTimeout(res, 50));
    }
    assert.equal(out.split('\n').filter((l) => l !== 'first').join('\n'), '{"x":1}\n');
    p.kill('SIGINT');
    const code = await exited;
    assert.equal(code, 0, err);
    const conns = async () => (await db.query("SELECT count(*)::int AS c FROM pg_stat_activity " +
        "WHERE application_name = 'moray-listen' AND datname = current_database()")).rows[0].c;
    const end = Date.now() + 5000;
    while ((await conns()) !== 0) {
        assert.ok(Date.now() < end, 'listen connection left open after SIGINT');
        await new Promise((res) => setTimeout(res, 50));
    }
});

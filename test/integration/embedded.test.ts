/*
 * The zero-setup default: no config file → embedded PostgreSQL in
 * $MORAY_DATA_DIR, Fast on 2020 and monitoring on 3020 (what `npm start`
 * runs), and no orphan postgres after SIGTERM, SIGINT or SIGKILL of the
 * server.
 */

import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { call, morayClient, ROOT, startServer } from '../helpers/harness';

const dirs: string[] = [];
after(() => {
    for (const d of dirs) {
        fs.rmSync(d, { recursive: true, force: true });
    }
});

function dataDir(): string {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), 'moray-embedded-'));
    dirs.push(d);
    return d;
}

function postmasterPid(dir: string): number {
    const text = fs.readFileSync(path.join(dir, 'pgdata', 'postmaster.pid'), 'utf8');
    return Number(text.split('\n')[0]);
}

function alive(pid: number): boolean {
    try {
        process.kill(pid, 0);
        return true;
    } catch {
        return false;
    }
}

async function waitDead(pid: number, ms: number): Promise<boolean> {
    const until = Date.now() + ms;
    while (Date.now() < until) {
        if (!alive(pid)) {
            return true;
        }
        await new Promise((r) => setTimeout(r, 100));
    }
    return !alive(pid);
}

function get(port: number, p: string): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
        http.get({ host: '127.0.0.1', port, path: p }, (res) => {
            let body = '';
            res.on('data', (d) => { body += d; });
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        }).on('error', reject);
    });
}

test('no config: embedded PostgreSQL, ping and version on 2020, monitoring on 3020, SIGTERM leaves no orphan', async () => {
    const dir = dataDir();
    const srv = await startServer({ env: { MORAY_DATA_DIR: dir }, timeoutMs: 60000 });
    assert.equal(srv.port, 2020);
    const c = await morayClient(2020);
    try {
        await call(c, 'ping', {});
        await call(c, 'ping', { deep: true });
        const v = await new Promise<number>((resolve, reject) =>
            c.versionInternal({}, (e: Error | null, ver: number) => (e ? reject(e) : resolve(ver))));
        assert.equal(v, 2);
    } finally {
        c.close();
    }
    const m = await get(3020, '/ping');
    assert.equal(m.status, 200);
    const recs = srv.records();
    assert.ok(recs.some((r) => /created table buckets_config/.test(String(r['msg']))));
    const pid = postmasterPid(dir);
    assert.ok(alive(pid));
    assert.equal(await srv.stop('SIGTERM'), 0);
    assert.ok(await waitDead(pid, 5000), 'postgres stopped with the server');
});

test('`npm start` runs the server in the foreground: SIGTERM or the death of npm stops it and PostgreSQL', async () => {
    /* --ignore-scripts skips prestart (the build npm test already ran) */
    for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
        const dir = dataDir();
        const npm = spawn('npm', ['start', '--ignore-scripts', '--', '-p', '0', '-k', '0'], {
            cwd: ROOT, env: { ...process.env, MORAY_DATA_DIR: dir }, stdio: ['ignore', 'pipe', 'pipe'],
        });
        let out = '';
        npm.stdout.on('data', (d) => { out += d; });
        npm.stderr.on('data', (d) => { out += d; });
        const until = Date.now() + 60000;
        let port = 0;
        while (port === 0 && Date.now() < until) {
            port = Number(/Moray listening on port (\d+)/.exec(out)?.[1] ?? 0);
            await new Promise((r) => setTimeout(r, 100));
        }
        assert.ok(port > 0, `server did not start under npm:\n${out.slice(-2000)}`);
        const c = await morayClient(port);
        await call(c, 'ping', { deep: true });
        c.close();
        const pg = postmasterPid(dir);
        const server = Number(/"pid":(\d+)/.exec(out)?.[1]);
        npm.kill(signal);
        assert.ok(await waitDead(server, 10000), `server stopped after npm got ${signal}`);
        assert.ok(await waitDead(pg, 5000), `postgres stopped after npm got ${signal}`);
    }
});

test('SIGINT stops the embedded PostgreSQL too, and a restart reuses the data', async () => {
    const dir = dataDir();
    let srv = await startServer({ env: { MORAY_DATA_DIR: dir }, args: ['-p', '0', '-k', '0'],
        timeoutMs: 60000 });
    let pid = postmasterPid(dir);
    assert.equal(await srv.stop('SIGINT'), 0);
    assert.ok(await waitDead(pid, 5000));
    srv = await startServer({ env: { MORAY_DATA_DIR: dir }, args: ['-p', '0', '-k', '0'],
        timeoutMs: 60000 });
    assert.ok(!srv.records().some((r) => /created table buckets_config/.test(String(r['msg']))),
        'schema already there on restart');
    pid = postmasterPid(dir);
    assert.equal(await srv.stop('SIGTERM'), 0);
    assert.ok(await waitDead(pid, 5000));
});

test('SIGKILL of the server: the reaper stops PostgreSQL; the next start recovers', async () => {
    const dir = dataDir();
    let srv = await startServer({ env: { MORAY_DATA_DIR: dir }, args: ['-p', '0', '-k', '0'],
        timeoutMs: 60000 });
    const pid = postmasterPid(dir);
    await srv.stop('SIGKILL');
    assert.ok(await waitDead(pid, 8000), 'orphan postgres reaped after the server died');
    srv = await startServer({ env: { MORAY_DATA_DIR: dir }, args: ['-p', '0', '-k', '0'],
        timeoutMs: 60000 });
    const c = await morayClient(srv.port);
    await call(c, 'ping', { deep: true });
    c.close();
    const pid2 = postmasterPid(dir);
    assert.equal(await srv.stop('SIGTERM'), 0);
    assert.ok(await waitDead(pid2, 5000));
});

/*
 * Test harness: a real PostgreSQL, the real server process, the real npm
 * `moray` client and CLI tools.
 *
 *   tools/run-tests.js ── starts ONE ephemeral PostgreSQL cluster for the
 *   whole run (MORAY_TEST_PG_PORT) ──► each test file gets its own database
 *   (testDatabase()) ──► startServer() spawns `moray-server` on free ports
 *   pointed at it ──► morayClient() / runCli() talk to it.
 *
 * Run alone (node --import tsx --test file.ts), a test file starts its own
 * cluster instead.  Everything is torn down in after() hooks; the cluster's
 * own reaper stops PostgreSQL if the test process dies.
 */

import { after, before } from 'node:test';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as pg from 'pg';
import { LocalPostgres } from '../../src/pg/local-postgres';

export const ROOT = (() => {
    let d = __dirname;
    while (!fs.existsSync(path.join(d, 'package.json'))) {
        d = path.dirname(d);
    }
    return d;
})();

const RUNNING_TS = __filename.endsWith('.ts');

let ownCluster: Promise<LocalPostgres> | null = null;

async function clusterPort(): Promise<number> {
    const env = process.env['MORAY_TEST_PG_PORT'];
    if (env) {
        return Number(env);
    }
    if (ownCluster === null) {
        ownCluster = (async () => {
            const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moray-test-pg-'));
            const c = new LocalPostgres({ dataDir: dir, database: 'postgres', fast: true });
            await c.start();
            process.once('exit', () => {
                c.killNow();
            });
            return c;
        })();
    }
    return (await ownCluster).port;
}

export async function stopOwnCluster(): Promise<void> {
    if (ownCluster !== null) {
        const c = await ownCluster;
        ownCluster = null;
        await c.stop();
        fs.rmSync(c.dataDir, { recursive: true, force: true });
    }
}

export interface TestDatabase {
    port: number;
    database: string;
    url: string;
    client(): Promise<pg.Client>;
    query(sql: string, values?: unknown[]): Promise<pg.QueryResult>;
    drop(): Promise<void>;
}

export async function testDatabase(prefix = 'test'): Promise<TestDatabase> {
    const port = await clusterPort();
    const database = `${prefix}_${randomBytes(4).toString('hex')}`;
    const admin = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${database} TEMPLATE template0 ENCODING 'UTF8' ` +
        "LC_COLLATE 'C' LC_CTYPE 'C'");
    await admin.end();
    const url = `postgres://postgres@127.0.0.1:${port}/${database}`;
    const client = async () => {
        const c = new pg.Client({ connectionString: url });
        await c.connect();
        return c;
    };
    return {
        port, database, url, client,
        async query(sql, values) {
            const c = await client();
            try {
                return await c.query(sql, values);
            } finally {
                await c.end();
            }
        },
        async drop() {
            const a = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
            await a.connect();
            await a.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
            await a.end();
        },
    };
}

export interface ServerProcess {
    port: number;
    monitorPort: number;
    proc: ChildProcess;
    /* every line the server wrote (bunyan JSON on stderr) */
    lines: string[];
    records(): Record<string, unknown>[];
    /* SIGTERM (default) and wait for exit; returns the exit code */
    stop(signal?: NodeJS.Signals): Promise<number | null>;
    exited: Promise<number | null>;
}

export interface StartOptions {
    /* config object written to a file and passed with -f; omit for none */
    config?: Record<string, unknown>;
    /* the database to use (standalone url); ignored if config given */
    db?: TestDatabase;
    args?: string[];
    env?: NodeJS.ProcessEnv;
    /* regex that marks readiness (default: the listening record) */
    ready?: RegExp;
    timeoutMs?: number;
}

export function serverCommand(): { cmd: string; args: string[] } {
    if (RUNNING_TS) {
        return { cmd: process.execPath,
            args: ['--import', 'tsx', '--abort-on-uncaught-exception', path.join(ROOT, 'src', 'main.ts')] };
    }
    return { cmd: process.execPath,
        args: ['--abort-on-uncaught-exception', path.join(ROOT, 'dist', 'src', 'main.js')] };
}

export function standaloneConfig(db: TestDatabase, extra: Record<string, unknown> = {}): Record<string, unknown> {
    return {
        server_uuid: 'test-server', datacenter: 'test-dc',
        port: 0, monitorPort: 0, bindip: '127.0.0.1',
        standalone: { url: db.url, pg: { maxConnections: 4 } },
        ...extra,
    };
}

export async function startServer(o: StartOptions): Promise<ServerProcess> {
    let config = o.config;
    if (config === undefined && o.db !== undefined) {
        config = standaloneConfig(o.db);
    }
    const args: string[] = [];
    if (config !== undefined) {
        const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'moray-cfg-')), 'config.json');
        fs.writeFileSync(file, JSON.stringify(config));
        args.push('-f', file);
    }
    args.push(...(o.args ?? []));
    const { cmd, args: pre } = serverCommand();
    const proc = spawn(cmd, [...pre, ...args], {
        cwd: ROOT, env: { ...process.env, ...o.env }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    const lines: string[] = [];
    let buf = '';
    const onData = (d: Buffer) => {
        buf += d.toString();
        let i;
        while ((i = buf.indexOf('\n')) !== -1) {
            lines.push(buf.slice(0, i));
            buf = buf.slice(i + 1);
        }
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', onData);
    const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
    const ready = o.ready ?? /Moray listening on port (\d+)/;
    const deadline = Date.now() + (o.timeoutMs ?? 30000);
    let port = 0;
    let monitorPort = 0;
    for (;;) {
        for (const l of lines) {
            const m = /monitoring server started on port (\d+)/.exec(l);
            if (m) {
                monitorPort = Number(m[1]);
            }
            const r = ready.exec(l);
            if (r) {
                port = Number(r[1] ?? 0);
            }
        }
        if (port !== 0 || (o.ready !== undefined && lines.some((l) => ready.test(l)))) {
            break;
        }
        if (proc.exitCode !== null || proc.signalCode !== null) {
            throw new Error(`server exited (${proc.exitCode ?? proc.signalCode}) before ready:\n` +
                lines.slice(-30).join('\n'));
        }
        if (Date.now() > deadline) {
            proc.kill('SIGKILL');
            throw new Error('server not ready in time:\n' + lines.slice(-30).join('\n'));
        }
        await new Promise((r) => setTimeout(r, 50));
    }
    return {
        port, monitorPort, proc, lines, exited,
        records: () => lines.flatMap((l) => {
            try {
                return [JSON.parse(l) as Record<string, unknown>];
            } catch {
                return [];
            }
        }),
        async stop(signal: NodeJS.Signals = 'SIGTERM') {
            if (proc.exitCode !== null || proc.signalCode !== null) {
                return proc.exitCode;
            }
            proc.kill(signal);
            const t = setTimeout(() => proc.kill('SIGKILL'), 20000);
            const code = await exited;
            clearTimeout(t);
            return code;
        },
    };
}

/* ---- the real npm moray client ---- */

// eslint-disable-next-line @typescript-eslint/no-require-imports
const morayPkg = require('moray') as { createClient(o: Record<string, unknown>): MorayClient };
// eslint-disable-next-line @typescript-eslint/no-require-imports
const bunyan = require('bunyan') as typeof import('bunyan');

export type MorayClient = Record<string, any> & {
    close(): void;
    on(ev: string, cb: (...a: any[]) => void): void;
    once(ev: string, cb: (...a: any[]) => void): void;
};

export function morayClient(port: number, extra: Record<string, unknown> = {}): Promise<MorayClient> {
    const log = bunyan.createLogger({ name: 'moray-test-client', level: 'fatal' });
    const client = morayPkg.createClient({
        host: '127.0.0.1', port, log, failFast: true, unwrapErrors: true, ...extra,
    });
    return new Promise((resolve, reject) => {
        client.once('connect', () => resolve(client));
        client.once('error', (err: Error) => reject(err));
    });
}

/* Promisified client call: call(client, 'getObject', b, k, {}) */
export function call<T = any>(client: MorayClient, method: string, ...args: unknown[]): Promise<T> {
    return new Promise((resolve, reject) => {
        (client[method] as (...a: unknown[]) => void)(...args, (err: Error | null, res: T) => {
            if (err) {
                reject(err);
            } else {
                resolve(res);
            }
        });
    });
}

/* Collect a streaming call (findObjects, sql, listBuckets via event emitter). */
export function collect<T = any>(client: MorayClient, method: string, ...args: unknown[]): Promise<T[]> {
    return new Promise((resolve, reject) => {
        const res = (client[method] as (...a: unknown[]) => any)(...args);
        const out: T[] = [];
        res.on('record', (r: T) => out.push(r));
        res.on('error', reject);
        res.on('end', () => resolve(out));
    });
}

/* ---- the real CLI tools from node_modules/moray/bin ---- */

export interface CliResult { code: number | null; stdout: string; stderr: string }

export function runCli(tool: string, args: string[], port: number, input?: string,
    env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
    const bin = path.join(ROOT, 'node_modules', 'moray', 'bin', tool);
    return new Promise((resolve) => {
        const p = spawn(process.execPath, [bin, '-h', '127.0.0.1', '-p', String(port), ...args],
            { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
        let stdout = '';
        let stderr = '';
        p.stdout.on('data', (d) => { stdout += d; });
        p.stderr.on('data', (d) => { stderr += d; });
        p.on('exit', (code) => resolve({ code, stdout, stderr }));
        p.stdin.end(input ?? '');
    });
}

/*
 * The innermost error of a cause chain: VError's cause() (node-fast and
 * node-moray wrap server errors), jse_cause, or a standard Error cause.
 */
export function innermostError(err: unknown): any {
    let e = err as { cause?: unknown; jse_cause?: unknown } | null;
    for (let depth = 0; depth < 20 && e !== null && typeof e === 'object'; depth++) {
        const c = typeof e.cause === 'function' ? (e.cause as () => unknown).call(e) :
            e.jse_cause ?? (e.cause instanceof Error ? e.cause : undefined);
        if (c === undefined || c === null) {
            break;
        }
        e = c as typeof e;
    }
    return e;
}

export function errName(err: unknown): string {
    return (err as Error)?.name;
}

/* ---- one raw Fast RPC through the real node-fast client ---- */

// eslint-disable-next-line @typescript-eslint/no-require-imports
const fastPkg = require('fast') as any;

/*
 * One RPC through node-fast directly (bypasses node-moray's client-side
 * argument asserts, to send what the npm client refuses to); the error is
 * unwrapped to its innermost cause.
 */
export async function rawRpc(port: number, method: string, args: unknown[]): Promise<{ err: any; data: unknown[] }> {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const net = require('node:net') as typeof import('node:net');
    const sock = await new Promise<import('node:net').Socket>((resolve, reject) => {
        const s = net.connect(port, '127.0.0.1', () => resolve(s));
        s.once('error', reject);
    });
    const fc = new fastPkg.FastClient({ log: bunyan.createLogger({ name: 't', level: 'fatal' }),
        nRecentRequests: 10, transport: sock });
    try {
        return await new Promise((resolve) => {
            const r = fc.rpc({ rpcmethod: method, rpcargs: args });
            const data: unknown[] = [];
            r.on('data', (d: unknown) => data.push(d));
            r.on('end', () => resolve({ err: null, data }));
            r.on('error', (err: any) => resolve({ err: innermostError(err), data }));
        });
    } finally {
        fc.detach();
        sock.destroy();
    }
}

/*
 * Why bpftrace cannot trace here (undefined: it can): Linux, root, and
 * bpftrace installed, plus any `also` tool (e.g. gdb).  Tests that need
 * tracing skip with this reason; tools/run-tests.js fails a skip in CI.
 */
export function tracingUnavailable(also: readonly string[] = []): string | undefined {
    if (process.platform !== 'linux') {
        return `bpftrace tracing is Linux-only here (platform ${process.platform})`;
    }
    if (process.getuid?.() !== 0) {
        return 'bpftrace (and ptrace) need root';
    }
    for (const tool of ['bpftrace', ...also]) {
        const r = spawnSync(tool, ['--version'], { encoding: 'utf8' });
        if (r.error !== undefined || r.status !== 0) {
            return `${tool} is not installed (apt-get install -y ${tool})`;
        }
    }
    return undefined;
}

/* Build native/usdt unless it is built; a failed build fails the caller with its stderr. */
export function ensureUsdtAddon(): void {
    const r = spawnSync(process.execPath, [path.join(ROOT, 'native/usdt/build.js'), '--strict',
        '--if-missing'], { encoding: 'utf8' });
    if (r.status !== 0) {
        throw new Error(`native/usdt build failed:\n${r.stderr}`);
    }
}

/*
 * One server with the usdt probe backend for a whole test file, on its own
 * database: started in before(), stopped (with the database and the
 * runner's cluster) in after().  Without tracing (tracingUnavailable(also))
 * nothing starts; `skipReason` says why, printed once as `# <label>
 * skipped: ...`, for the file's tests to skip on.
 */
export interface UsdtServerFile {
    readonly skipReason: string | undefined;
    /* the running server (only inside tests that did not skip) */
    readonly srv: ServerProcess;
}

export function usdtServerFile(label: string, dbPrefix: string,
    also: readonly string[] = []): UsdtServerFile {
    const skipReason = tracingUnavailable(also);
    if (skipReason !== undefined) {
        process.stdout.write(`# ${label} skipped: ${skipReason}\n`);
    }
    let db: TestDatabase | undefined;
    let srv: ServerProcess | undefined;
    before(async () => {
        if (skipReason !== undefined) {
            return;
        }
        ensureUsdtAddon();
        db = await testDatabase(dbPrefix);
        srv = await startServer({ db, env: { MORAY_PROBES: 'usdt' } });
    });
    after(async () => {
        if (skipReason !== undefined) {
            return;
        }
        await srv?.stop();
        await db?.drop();
        await stopOwnCluster();
    });
    return {
        skipReason,
        get srv(): ServerProcess {
            if (srv === undefined) {
                throw new Error(`${label}: no server (skipped or not started)`);
            }
            return srv;
        },
    };
}

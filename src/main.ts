/*
 * moray-server: the process.
 *
 *   argv ─► flags ─► config (validated, frozen) ─► logger ─► probes backend
 *        ─► database: standalone URL | Manatee (ZooKeeper) | embedded PostgreSQL
 *        ─► MorayServer.start() ─► "Moray listening on port N"
 *
 * SIGTERM / SIGINT: stop accepting, let in-flight RPCs finish (bounded by
 * limits.shutdownTimeout), close the pool, stop the embedded PostgreSQL,
 * exit 0.  A second signal exits at once.
 *
 * Exit codes: 0 clean stop; 1 start-up failure; 2 usage or config error.
 * Run it with --abort-on-uncaught-exception (npm start and the SMF/systemd
 * units do) so that a programmer error leaves a core.
 */

import * as path from 'node:path';
import { ConfigError, databaseMode, loadConfig, parseArgs, UsageError, type Config } from './config';
import { createLogger, configureLogger } from './observe/log';
import { MorayServer, type DatabaseTarget } from './app';
import { LocalPostgres } from './pg/local-postgres';
import { ManateeFollower } from './pg/manatee';
import { probeBackendInfo, selectBackend } from './probes/select';
import { abortOnErrorFromEnv, configureAbortOnError } from './probes/abort-on-error';
import { startMonitor } from './observe/monitor';
import { installLogProbe } from './observe/log-probe';

function dbName(): string {
    return process.env['MORAY_DB_NAME'] || 'moray';
}

export function defaultDataDir(): string {
    return process.env['MORAY_DATA_DIR'] || path.resolve('.moray-data');
}

async function main(): Promise<void> {
    let log = createLogger();
    let cfg: Config;
    let verbose = 0;
    try {
        const flags = parseArgs(process.argv.slice(2));
        verbose = flags.verbose;
        cfg = loadConfig(flags);
    } catch (err) {
        if (err instanceof UsageError || err instanceof ConfigError) {
            log.fatal({ problems: (err as ConfigError).problems }, err.message);
            process.stderr.write(`moray-server: ${err.message}\n` +
                'usage: moray-server [-f CONFIG] [-p PORT] [-k MONITOR_PORT] [-v]...\n');
            process.exit(2);
        }
        throw err;
    }
    log = configureLogger(log, cfg, verbose);
    const probes = selectBackend(log);
    installLogProbe(log);
    const pinfo = probeBackendInfo();
    log.info({ probeBackend: pinfo.probeBackend, probeBackendReason: pinfo.probeBackendReason,
        usdtAddon: pinfo.usdtAddon, probesMissing: pinfo.probesMissing },
    `USDT probes: ${probes} backend`);
    const abortSpec = abortOnErrorFromEnv();
    if (abortSpec !== undefined) {
        configureAbortOnError(abortSpec);
        log.warn({ match: abortSpec }, 'MORAY_ABORT_ON_ERROR set: the process aborts on a ' +
            'matching request failure (development only)');
    }

    const mode = databaseMode(cfg);
    let local: LocalPostgres | null = null;
    let target: DatabaseTarget;
    if (mode === 'standalone') {
        const u = new URL(cfg.standalone!.url);
        target = { url: cfg.standalone!.url, database: decodeURIComponent(u.pathname.slice(1)) ||
            dbName(), user: decodeURIComponent(u.username) || undefined };
    } else if (mode === 'manatee') {
        target = {
            topology: new ManateeFollower(cfg.manatee!.manatee,
                { log: log.child({ component: 'ManateePrimaryResolver' }) }),
            database: dbName(),
            user: cfg.manatee!.pg.user,
        };
    } else {
        const dataDir = cfg.embedded?.dataDir ?? defaultDataDir();
        log.info({ dataDir }, 'no database configured: starting an embedded PostgreSQL');
        local = new LocalPostgres({
            dataDir, port: cfg.embedded?.port, database: dbName(),
            log: (msg) => log.info({ component: 'embedded-postgres' }, msg),
        });
        try {
            await local.start();
        } catch (err) {
            log.fatal({ err }, 'unable to start the embedded PostgreSQL');
            process.exit(1);
        }
        log.info({ port: local.port, pid: local.pid, dataDir },
            'embedded PostgreSQL ready');
        target = { url: local.url, database: dbName(), user: 'postgres' };
    }

    const server = new MorayServer(cfg, log, target);
    let stopping = false;
    const stop = async (sig: string) => {
        if (stopping) {
            log.warn({ signal: sig }, 'second signal: exiting now');
            local?.killNow();
            process.exit(1);
        }
        stopping = true;
        log.info({ signal: sig, inflight: server.fast.inflight() },
            'shutting down: draining in-flight requests');
        try {
            await server.stop();
            await local?.stop();
        } catch (err) {
            log.error({ err }, 'error during shutdown');
        }
        log.info('shutdown complete');
        process.exit(0);
    };
    /*
     * Under `npm start` the server is a foreground process: if npm goes away
     * without forwarding a signal, stop as if it had (and take the embedded
     * PostgreSQL down with us) instead of lingering as an orphan on 2020.
     */
    if (process.env['npm_lifecycle_event'] === 'start') {
        const parent = process.ppid;
        setInterval(() => {
            if (process.ppid !== parent) {
                void stop('parent exited');
            }
        }, 1000).unref();
    }
    process.on('SIGTERM', () => void stop('SIGTERM'));
    process.on('SIGINT', () => void stop('SIGINT'));
    process.on('exit', () => local?.killNow());

    try {
        if (cfg.monitorPort > 0) {
            const mon = await startMonitor(server, cfg);
            server.extraStops.push(() => mon.close());
            log.info({ port: mon.port }, `monitoring server started on port ${mon.port}`);
        }
        await server.start();
    } catch (err) {
        log.fatal({ err }, 'unable to start');
        await local?.stop();
        process.exit(1);
    }
}

void main();

/*
 * A throw-away standalone ZooKeeper for integration tests.
 *
 * Uses the Debian `zookeeper` package (3.8.x, needs a JRE) exactly as
 * toolchain.md describes: the server class is launched directly with java,
 * so every file (config, data, output) lives in one temp directory and
 * nothing touches /var/log/zookeeper or /etc.
 *
 *     startZooKeeper()
 *        │ mkdtemp, free loopback port, zoo.cfg
 *        ▼
 *     java QuorumPeerMain zoo.cfg ──► poll "ruok" until "imok"
 *        │
 *        ├─ pause()   SIGSTOP: the server hangs, TCP connects still succeed
 *        │            (kernel backlog) but nothing is answered
 *        ├─ resume()  SIGCONT
 *        ├─ kill()    SIGKILL, data directory kept
 *        ├─ restart() start again on the same port and data (sessions and
 *        │            znodes survive, as with a real crash)
 *        └─ stop()    SIGCONT + SIGTERM (SIGKILL after 5 s), rm -rf dir
 *
 * tickTime 500 ms lets clients use sessions down to 1 s, which keeps the
 * expiry and watchdog tests short.  A process 'exit' hook SIGKILLs a
 * server the test forgot to stop, so no JVM outlives the test process.
 */

import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { freePort } from './net';
export { freePort };

const ZK_JAR = '/usr/share/java/zookeeper.jar';
const ZK_CONF_DIR = '/etc/zookeeper/conf';
const MAIN_CLASS = 'org.apache.zookeeper.server.quorum.QuorumPeerMain';

export type Availability = { ok: true } | { ok: false; reason: string };

function findJava(): string | null {
    const candidates: string[] = [];
    if (process.env.JAVA_HOME) {
        candidates.push(path.join(process.env.JAVA_HOME, 'bin', 'java'));
    }
    for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
        if (dir !== '') {
            candidates.push(path.join(dir, 'java'));
        }
    }
    candidates.push('/usr/bin/java');
    for (const c of candidates) {
        try {
            fs.accessSync(c, fs.constants.X_OK);
            return c;
        } catch {
            /* next */
        }
    }
    return null;
}

/* Whether a ZooKeeper can be started here; the reason says what is missing. */
export function zookeeperAvailable(): Availability {
    if (!fs.existsSync(ZK_JAR)) {
        return { ok: false, reason: `ZooKeeper not installed (${ZK_JAR} missing; apt-get install zookeeper)` };
    }
    if (findJava() === null) {
        return { ok: false, reason: 'no java executable (JAVA_HOME, PATH, /usr/bin/java)' };
    }
    return { ok: true };
}

/* For node:test's `skip` option: false, or the printed reason. */
export function zookeeperSkip(): string | false {
    const a = zookeeperAvailable();
    return a.ok ? false : a.reason;
}

/* Send a four-letter word; resolves with the reply, or null on any failure. */
export function fourLetterWord(port: number, word: string, timeoutMs = 1000): Promise<string | null> {
    return new Promise((resolve) => {
        let reply = '';
        let done = false;
        const sock = net.connect({ host: '127.0.0.1', port });
        const finish = (v: string | null): void => {
            if (!done) {
                done = true;
                sock.destroy();
                resolve(v);
            }
        };
        sock.setTimeout(timeoutMs, () => finish(null));
        sock.on('connect', () => sock.write(word));
        sock.on('data', (d) => { reply += d.toString('utf8'); });
        sock.on('end', () => finish(reply));
        sock.on('error', () => finish(null));
        sock.on('close', () => finish(reply === '' ? null : reply));
    });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface ZooKeeperOptions {
    /* default 500 ms: sessions from 1 s to 60 s */
    tickTime?: number;
    /* how long to wait for "imok" (default 30 s: the JVM is slow on 2 cores) */
    startTimeoutMs?: number;
}

export interface ZooKeeperServer {
    readonly connStr: string;
    readonly port: number;
    readonly dir: string;
    pid(): number | null;
    /* SIGSTOP: the server hangs without closing connections */
    pause(): void;
    /* SIGCONT */
    resume(): void;
    /* SIGKILL; data kept for restart() */
    kill(): Promise<void>;
    /* start again (after kill) on the same port and data directory */
    restart(): Promise<void>;
    /* stop for good and remove the directory */
    stop(): Promise<void>;
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
    if (exitHookInstalled) {
        return;
    }
    exitHookInstalled = true;
    process.on('exit', () => {
        for (const child of live) {
            try {
                child.kill('SIGCONT');
                child.kill('SIGKILL');
            } catch {
                /* already gone */
            }
        }
    });
}

function waitExit(child: ChildProcess): Promise<void> {
    if (child.exitCode !== null || child.signalCode !== null) {
        return Promise.resolve();
    }
    return new Promise((resolve) => child.once('exit', () => resolve()));
}

export async function startZooKeeper(opts: ZooKeeperOptions = {}): Promise<ZooKeeperServer> {
    const avail = zookeeperAvailable();
    if (!avail.ok) {
        throw new Error(avail.reason);
    }
    const java = findJava() as string;
    const tickTime = opts.tickTime ?? 500;
    const startTimeout = opts.startTimeoutMs ?? 30000;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moray-zk-'));
    const dataDir = path.join(dir, 'data');
    fs.mkdirSync(dataDir);
    const port = await freePort();
    const cfgFile = path.join(dir, 'zoo.cfg');
    fs.writeFileSync(cfgFile, [
        `tickTime=${tickTime}`,
        'initLimit=10',
        'syncLimit=5',
        `dataDir=${dataDir}`,
        `clientPort=${port}`,
        'clientPortAddress=127.0.0.1',
        'admin.enableServer=false',
        '4lw.commands.whitelist=ruok,srvr,stat,mntr,cons',
        `minSessionTimeout=${2 * tickTime}`,
        'maxSessionTimeout=60000',
        '',
    ].join('\n'));
    installExitHook();

    let child: ChildProcess | null = null;

    const launch = async (): Promise<void> => {
        const out = fs.openSync(path.join(dir, 'zk.out'), 'a');
        const c = spawn(java, [
            '-Xmx128m', '-XX:+UseSerialGC', '-XX:TieredStopAtLevel=1',
            '-cp', `${ZK_CONF_DIR}:${ZK_JAR}`,
            MAIN_CLASS, cfgFile,
        ], { stdio: ['ignore', out, out] });
        fs.closeSync(out);
        child = c;
        live.add(c);
        c.once('exit', () => live.delete(c));
        const deadline = Date.now() + startTimeout;
        for (;;) {
            if (c.exitCode !== null || c.signalCode !== null) {
                const log = fs.readFileSync(path.join(dir, 'zk.out'), 'utf8').slice(-2000);
                throw new Error(`ZooKeeper exited during start-up (${c.exitCode ?? c.signalCode}): ${log}`);
            }
            if (await fourLetterWord(port, 'ruok', 500) === 'imok') {
                return;
            }
            if (Date.now() > deadline) {
                c.kill('SIGKILL');
                throw new Error(`ZooKeeper did not answer ruok within ${startTimeout} ms`);
            }
            await sleep(100);
        }
    };

    const signal = (sig: NodeJS.Signals): void => {
        if (child !== null && child.exitCode === null && child.signalCode === null) {
            child.kill(sig);
        }
    };

    await launch();

    return {
        connStr: `127.0.0.1:${port}`,
        port,
        dir,
        pid: () => child?.pid ?? null,
        pause: () => signal('SIGSTOP'),
        resume: () => signal('SIGCONT'),
        async kill(): Promise<void> {
            if (child === null) {
                return;
            }
            const c = child;
            signal('SIGKILL');
            await waitExit(c);
        },
        async restart(): Promise<void> {
            if (child !== null && child.exitCode === null && child.signalCode === null) {
                throw new Error('ZooKeeper is still running: kill() it first');
            }
            await launch();
        },
        async stop(): Promise<void> {
            if (child !== null) {
                const c = child;
                signal('SIGCONT');
                signal('SIGTERM');
                const t = setTimeout(() => signal('SIGKILL'), 5000);
                await waitExit(c);
                clearTimeout(t);
                child = null;
            }
            fs.rmSync(dir, { recursive: true, force: true });
        },
    };
}

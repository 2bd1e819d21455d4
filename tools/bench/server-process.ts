/*
 * The real Moray server as a child process, as in production:
 *
 *   node [--cpu-prof --cpu-prof-dir=DIR] dist/src/main.js -f <config.json>
 *
 *   config: standalone url ──► the benchmark's cluster, pg.maxConnections
 *           port 0 (the server picks one), monitorPort 0 (off), bindip 127.0.0.1
 *
 *   spawn ──► read stderr/stdout lines ──► "Moray listening on port N" = ready
 *         ──► ... measured ...
 *   stop  ──► SIGTERM (graceful: drains, closes the pool, exits 0; this is
 *             also when --cpu-prof writes its profile) ──► SIGKILL after 20 s
 *
 * The compiled server is used (not tsx) so that what we measure is what
 * `npm start` runs.  Output is consumed continuously (an unread pipe would
 * block the server) and only the last lines are kept, for error reports.
 */

import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

export const REPO_ROOT = (() => {
    let d = __dirname;
    while (!fs.existsSync(path.join(d, 'package.json'))) {
        const up = path.dirname(d);
        if (up === d) {
            throw new Error('bench: cannot find the repository root');
        }
        d = up;
    }
    return d;
})();

/*
 * More pool tunables for the server under test, as JSON in
 * MORAY_BENCH_PG (e.g. '{"pipelineConnections":4,"pipelineDepth":16}'),
 * to compare settings without editing the tool.
 */
function extraTunables(): Record<string, unknown> {
    const raw = process.env['MORAY_BENCH_PG'];
    if (raw === undefined || raw === '') {
        return {};
    }
    const v = JSON.parse(raw) as unknown;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) {
        throw new Error('MORAY_BENCH_PG must be a JSON object of pg tunables');
    }
    return v as Record<string, unknown>;
}

export interface ServerOptions {
    dbUrl: string;
    maxConnections: number;
    /* directory for the config file (and profiles) */
    dir: string;
    env?: NodeJS.ProcessEnv;
    /* write a .cpuprofile into this directory at exit */
    cpuProfDir?: string;
    /* wrap in `sh -c 'ulimit -n N; exec ...'` */
    nofile?: number;
    /* server entry point (default: REPO_ROOT/dist/src/main.js) */
    mainPath?: string;
}

export class ServerProcess {
    readonly lines: string[] = [];
    port = 0;
    /* "usdt", "noop", ... as the server logged it */
    probeBackend = 'unknown';
    private readonly exited: Promise<number | null>;

    private constructor(readonly proc: ChildProcess) {
        let buf = '';
        const onData = (d: Buffer) => {
            buf += d.toString();
            let i;
            while ((i = buf.indexOf('\n')) !== -1) {
                this.lines.push(buf.slice(0, i));
                if (this.lines.length > 300) {
                    this.lines.splice(0, 100);
                }
                buf = buf.slice(i + 1);
            }
        };
        proc.stdout!.on('data', onData);
        proc.stderr!.on('data', onData);
        this.exited = new Promise((r) => proc.once('exit', (code) => r(code)));
    }

    get pid(): number {
        return this.proc.pid!;
    }

    static async start(o: ServerOptions): Promise<ServerProcess> {
        const config = {
            server_uuid: 'bench-server', datacenter: 'bench-dc',
            port: 0, monitorPort: 0, bindip: '127.0.0.1',
            standalone: { url: o.dbUrl, pg: { maxConnections: o.maxConnections, ...extraTunables() } },
        };
        fs.mkdirSync(o.dir, { recursive: true });
        const file = path.join(o.dir, `server-${Date.now()}-${Math.random().toString(36).slice(2, 8)}.json`);
        fs.writeFileSync(file, JSON.stringify(config, null, 2));
        const nodeArgs = ['--abort-on-uncaught-exception'];
        if (o.cpuProfDir !== undefined) {
            fs.mkdirSync(o.cpuProfDir, { recursive: true });
            nodeArgs.push('--cpu-prof', `--cpu-prof-dir=${o.cpuProfDir}`);
        }
        const main = path.resolve(o.mainPath ?? path.join(REPO_ROOT, 'dist', 'src', 'main.js'));
        const argv = [process.execPath, ...nodeArgs, main, '-f', file];
        const env = { ...process.env, ...o.env };
        const cwd = path.dirname(path.dirname(path.dirname(main)));
        const proc = o.nofile !== undefined ?
            spawn('/bin/sh', ['-c', `ulimit -n ${o.nofile} && exec "$@"`, 'sh', ...argv],
                { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] }) :
            spawn(argv[0]!, argv.slice(1), { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
        const s = new ServerProcess(proc);
        await s.waitReady(30000);
        return s;
    }

    private async waitReady(timeoutMs: number): Promise<void> {
        const deadline = Date.now() + timeoutMs;
        for (;;) {
            for (const l of this.lines) {
                const m = /Moray listening on port (\d+)/.exec(l);
                if (m) {
                    this.port = Number(m[1]);
                }
                const b = /USDT probes: (\w+) backend/.exec(l);
                if (b) {
                    this.probeBackend = b[1]!;
                }
            }
            if (this.port !== 0) {
                return;
            }
            if (this.proc.exitCode !== null || this.proc.signalCode !== null) {
                throw new Error(`server exited (${this.proc.exitCode ?? this.proc.signalCode}) ` +
                    `before it was ready:\n${this.lines.slice(-20).join('\n')}`);
            }
            if (Date.now() > deadline) {
                this.proc.kill('SIGKILL');
                throw new Error(`server not ready in time:\n${this.lines.slice(-20).join('\n')}`);
            }
            await new Promise((r) => setTimeout(r, 50));
        }
    }

    async stop(): Promise<number | null> {
        if (this.proc.exitCode !== null || this.proc.signalCode !== null) {
            return this.proc.exitCode;
        }
        this.proc.kill('SIGTERM');
        const t = setTimeout(() => this.proc.kill('SIGKILL'), 20000);
        const code = await this.exited;
        clearTimeout(t);
        return code;
    }
}

/*
 * From argv and the environment to one frozen Config.
 *
 *   argv ──getopt(":cvf:p:k:")──► flags ──┐
 *   -f FILE ──JSON.parse──────────────────┼──► merge (flags win) ──► validate ──► Config
 *   (no -f: {} and the embedded database)─┘
 *
 * Unlike the reference, -f is optional: without it (or with a file that
 * names neither `standalone` nor `manatee`) the server runs on an embedded
 * PostgreSQL, which is what `npm start` does.
 */

import * as fs from 'node:fs';
import * as os from 'node:os';
import { ConfigError, validateConfig } from './validate';

export { ConfigError } from './validate';

export interface PgTunables {
    readonly maxConnections: number;
    readonly minSpareConnections?: number;
    readonly connectTimeout: number;
    readonly checkInterval: number;
    readonly maxQueueLength: number;
    readonly targetClaimDelay: number;
    readonly pipelineConnections?: number;
    readonly pipelineDepth?: number;
    readonly pipelineWriteDepth?: number;
    readonly user?: string;
}

export interface ManateeSection {
    readonly manatee: {
        readonly path: string;
        readonly zk: { readonly connStr: string; readonly opts?: Readonly<Record<string, unknown>> };
    };
    readonly pg: PgTunables;
}

export interface Config {
    readonly port: number;
    readonly bindip: string;
    readonly monitorPort: number;
    readonly server_uuid: string;
    readonly datacenter: string;
    readonly service_name?: string;
    readonly bunyan?: {
        readonly level?: string;
        readonly syslog?: { facility: string; type: string; host?: string; port?: number };
    };
    readonly manatee?: ManateeSection;
    readonly standalone?: { readonly url: string; readonly pg: PgTunables };
    readonly embedded?: { readonly dataDir?: string; readonly port: number; readonly pg?: PgTunables };
    readonly limits: {
        readonly maxFrameBytes: number;
        readonly maxRequestsPerConnection: number;
        readonly maxUnsentBytesPerConnection: number;
        readonly shutdownTimeout: number;
    };
    readonly features: {
        readonly sql: boolean;
        readonly triggers: boolean;
        readonly triggerTimeout: number;
        readonly audit: boolean;
    };
    readonly file?: string;
}

export interface Flags {
    file?: string;
    port?: number;
    monitorPort?: number;
    verbose: number;
    coverage: boolean;
}

export class UsageError extends Error {
    override name = 'UsageError';
}

function parsePort(flag: string, text: string): number {
    if (!/^[0-9]+$/.test(text)) {
        throw new UsageError(`Invalid port "${text}" for -${flag}`);
    }
    const n = Number(text);
    /* 0 (any free port, announced in the log) is an extension for tests */
    if (n > 65535) {
        throw new UsageError(`-${flag}: port ${n} out of range (0-65535)`);
    }
    return n;
}

/* POSIX getopt for the reference spec string ":cvf:p:k:". */
export function parseArgs(argv: readonly string[]): Flags {
    const flags: Flags = { verbose: 0, coverage: false };
    let i = 0;
    for (; i < argv.length; i++) {
        const arg = argv[i]!;
        if (arg === '--') {
            i++;
            break;
        }
        if (!arg.startsWith('-') || arg === '-') {
            break;
        }
        for (let j = 1; j < arg.length; j++) {
            const c = arg[j]!;
            if (c === 'v') {
                flags.verbose++;
                continue;
            }
            if (c === 'c') {
                flags.coverage = true;
                continue;
            }
            if (c !== 'f' && c !== 'p' && c !== 'k') {
                throw new UsageError(`Invalid option: -${c}`);
            }
            let value = arg.slice(j + 1);
            if (value === '') {
                i++;
                if (i >= argv.length) {
                    throw new UsageError(`Expected argument for -${c}`);
                }
                value = argv[i]!;
            }
            if (c === 'f') {
                flags.file = value;
            } else if (c === 'p') {
                flags.port = parsePort(c, value);
            } else {
                flags.monitorPort = parsePort(c, value);
            }
            break;
        }
    }
    if (i < argv.length) {
        throw new UsageError('Positional arguments found when none were expected: ' +
            argv.slice(i).join(' '));
    }
    return flags;
}

export function loadConfig(flags: Flags): Config {
    let raw: Record<string, unknown> = {};
    if (flags.file !== undefined) {
        let text: string;
        try {
            text = fs.readFileSync(flags.file, 'utf8');
        } catch (e) {
            throw new ConfigError([`${flags.file}: ${(e as Error).message}`]);
        }
        try {
            raw = JSON.parse(text) as Record<string, unknown>;
        } catch (e) {
            throw new ConfigError([`${flags.file}: invalid JSON: ${(e as Error).message}`]);
        }
    }
    const merged: Record<string, unknown> = { ...raw };
    if (flags.port !== undefined) {
        merged['port'] = flags.port;
    }
    if (flags.monitorPort !== undefined) {
        merged['monitorPort'] = flags.monitorPort;
    }
    const fromFile = flags.file !== undefined;
    if (!fromFile) {
        merged['server_uuid'] ??= os.hostname();
        merged['datacenter'] ??= 'local';
    }
    if (flags.file !== undefined) {
        merged['file'] = flags.file;
    }
    const validated = validateConfig(merged, { fromFile });
    return validated as unknown as Config;
}

/* Which database the process will use. */
export type DatabaseMode = 'standalone' | 'manatee' | 'embedded';

export function databaseMode(cfg: Config): DatabaseMode {
    if (cfg.standalone) {
        return 'standalone';
    }
    if (cfg.manatee) {
        return 'manatee';
    }
    return 'embedded';
}

export function pgTunables(cfg: Config): PgTunables {
    const t = cfg.standalone?.pg ?? cfg.manatee?.pg ?? cfg.embedded?.pg;
    return t ?? {
        maxConnections: 5, connectTimeout: 1000, checkInterval: 60000,
        maxQueueLength: 2000, targetClaimDelay: 500,
    };
}

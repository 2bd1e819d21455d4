/*
 * Where is the PostgreSQL primary?  The contract between the pool and
 * whatever knows the answer.
 *
 *     ┌────────────────────┐  'primary'(backend, previous)  ┌──────────┐
 *     │ TopologySource     │ ─────────────────────────────► │ pg pool  │
 *     │  StaticTopology    │  current()  ◄───────────────── │          │
 *     │  ManateeFollower   │                                └──────────┘
 *     └────────────────────┘  snapshot() ──► kang
 *
 * A source reports one backend at a time (Moray only ever talks to the
 * primary).  It emits 'primary' only when the backend *key* changes, so a
 * listener may treat every event as "drop the old connections, open new
 * ones".  `previous` is what current() returned just before the event.
 *
 * Sources never emit 'error': trouble finding the primary (ZooKeeper down,
 * malformed cluster state) is logged and counted in snapshot(), and the last
 * known primary stays in use (manatee.md §4.1, §6).
 *
 * StaticTopology is the standalone mode (observability.md §3.4): one
 * backend parsed from the configured URL, known from construction, never
 * changing.  start() announces it once (asynchronously) so that listeners
 * can rely on the same "first event has previous = null" shape as with
 * Manatee.
 */

import { EventEmitter } from 'node:events';

export interface Backend {
    /* identity used to compare backends: "host:port" ("[v6]:port") */
    readonly key: string;
    /* IP address, host name, or (standalone only) a unix socket directory */
    readonly host: string;
    readonly port: number;
}

export type PrimaryListener = (backend: Backend | null, previous: Backend | null) => void;

/* The minimal bunyan-like logger the topology code needs. */
export interface TopologyLogger {
    info(fields: object, msg: string): void;
    warn(fields: object, msg: string): void;
    error(fields: object, msg: string): void;
    debug(fields: object, msg: string): void;
    child(fields: Record<string, unknown>): TopologyLogger;
}

export interface TopologyCounters {
    /* primary changes announced */
    changes: number;
    /* cluster states (or election listings) that could not be used */
    malformedStates: number;
    /* ZooKeeper client replaced because a request got no reply in time */
    watchdogTrips: number;
    /* ZooKeeper client replaced because it could not connect in time */
    connectTimeouts: number;
    /* connections (re-)established after the first one */
    reconnects: number;
    /* sessions expired (client replaced) */
    expirations: number;
    /* ZooKeeper clients created */
    clientsCreated: number;
    /* failed reads of the state / election nodes (retried) */
    readErrors: number;
    /* periodic re-reads of the shard (safety net for lost watches) */
    rereads: number;
}

export interface TopologySnapshot {
    readonly kind: 'static' | 'manatee';
    /* follower lifecycle: idle, connecting, connected, backoff, stopped */
    readonly state: string;
    /* ZooKeeper client state name (SYNC_CONNECTED, DISCONNECTED, ...) or null */
    readonly zkState: string | null;
    /* ZooKeeper session id (hex) or null */
    readonly sessionId: string | null;
    readonly path: string | null;
    readonly connStr: string | null;
    /* where the primary came from: "state", "election", "static" or null */
    readonly source: string | null;
    /* `generation` of the last cluster state JSON used, or null */
    readonly generation: number | null;
    readonly primary: Backend | null;
    /* ISO time of the last change, or null */
    readonly lastChange: string | null;
    /* round trip of the last watchdog probe (ms), or null */
    readonly zkLatencyMs: number | null;
    readonly counters: Readonly<TopologyCounters>;
}

export interface TopologySource extends EventEmitter {
    on(event: 'primary', listener: PrimaryListener): this;
    on(event: string | symbol, listener: (...args: any[]) => void): this;
    once(event: 'primary', listener: PrimaryListener): this;
    once(event: string | symbol, listener: (...args: any[]) => void): this;
    off(event: 'primary', listener: PrimaryListener): this;
    off(event: string | symbol, listener: (...args: any[]) => void): this;
    /* the backend in use now, or null while none is known */
    current(): Backend | null;
    start(): void;
    /* releases every socket and timer; no event is emitted afterwards */
    stop(): Promise<void>;
    snapshot(): TopologySnapshot;
}

export function zeroCounters(): TopologyCounters {
    return {
        changes: 0, malformedStates: 0, watchdogTrips: 0, connectTimeouts: 0, reconnects: 0,
        expirations: 0, clientsCreated: 0, readErrors: 0, rereads: 0,
    };
}

export function backendKey(host: string, port: number): string {
    return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

export function makeBackend(host: string, port: number): Backend {
    return Object.freeze({ key: backendKey(host, port), host, port });
}

const DEFAULT_PG_PORT = 5432;

/*
 * Host and port of a standalone PostgreSQL URL.  Accepted forms:
 *   tcp://user@host:port/db, postgres[ql]://user@host:port/db,
 *   postgres://user@%2Fsocket%2Fdir/db, postgres:///db?host=/socket/dir,
 *   /socket/dir.
 * A URL that yields no host is a configuration error (thrown).
 */
export function parseStandaloneUrl(url: string): Backend {
    if (url.startsWith('/')) {
        return makeBackend(url, DEFAULT_PG_PORT);
    }
    let u: URL;
    try {
        u = new URL(url);
    } catch {
        throw new Error(`standalone.url is not a URL: ${JSON.stringify(url)}`);
    }
    let host = decodeURIComponent(u.hostname);
    if (host.startsWith('[') && host.endsWith(']')) {
        host = host.slice(1, -1);
    }
    const qHost = u.searchParams.get('host');
    if (qHost !== null && qHost !== '') {
        host = qHost;
    }
    let port = DEFAULT_PG_PORT;
    const qPort = u.searchParams.get('port');
    const portText = u.port !== '' ? u.port : (qPort ?? '');
    if (portText !== '') {
        port = Number(portText);
        if (!Number.isInteger(port) || port < 1 || port > 65535) {
            throw new Error(`standalone.url has an invalid port: ${JSON.stringify(url)}`);
        }
    }
    if (host === '') {
        throw new Error(`standalone.url names no host: ${JSON.stringify(url)}`);
    }
    return makeBackend(host, port);
}

/* Standalone mode: one backend, known at once, never changing. */
export class StaticTopology extends EventEmitter implements TopologySource {
    private readonly backend: Backend;
    private started = false;
    private stopped = false;
    private readonly counters = zeroCounters();
    private lastChange: string | null = null;

    constructor(readonly url: string) {
        super();
        this.backend = parseStandaloneUrl(url);
    }

    current(): Backend | null {
        return this.backend;
    }

    start(): void {
        if (this.started) {
            return;
        }
        this.started = true;
        process.nextTick(() => {
            if (!this.stopped) {
                this.counters.changes++;
                this.lastChange = new Date().toISOString();
                this.emit('primary', this.backend, null);
            }
        });
    }

    stop(): Promise<void> {
        this.stopped = true;
        return Promise.resolve();
    }

    snapshot(): TopologySnapshot {
        return {
            kind: 'static',
            state: this.stopped ? 'stopped' : this.started ? 'connected' : 'idle',
            zkState: null,
            sessionId: null,
            path: null,
            connStr: null,
            source: 'static',
            generation: null,
            primary: this.backend,
            lastChange: this.lastChange,
            zkLatencyMs: null,
            counters: { ...this.counters },
        };
    }
}

/*
 * ManateeFollower: learn the PostgreSQL primary of a Manatee shard from
 * ZooKeeper and tell the pool when it changes (manatee.md §4).
 *
 * What Manatee writes, for shard path P:
 *
 *     P/state      JSON cluster state; we only use primary.pgUrl
 *                  (tcp://user@ip:port/db: user and db are ignored)
 *     P/election/  one ephemeral sequential child per live peer,
 *                  "<ip>:<pgPort>:<backupPort>-<seq>"; used only when
 *                  P/state does not exist (Manatee 1.x, deleted state):
 *                  the lowest sequence is the primary
 *
 * Follower lifecycle (one transition function, `move`):
 *
 *             start()
 *     IDLE ───────────► CONNECTING ◄────────────────────────┐
 *                        │      ▲                            │ backoff timer:
 *             'connected'│      │'disconnected' (the library │ a NEW client
 *                        ▼      │ retries, same session)     │
 *                      CONNECTED                             │
 *                        │                                   │
 *                        │ 'expired', client error, or       │
 *                        │ watchdog: exists('/') unanswered  │
 *                        │ after 2/3 sessionTimeout          │
 *                        └──────────────────────► BACKOFF ───┘
 *     CONNECTING ──'expired', or not connected ──► BACKOFF
 *                  within sessionTimeout
 *     any ──stop()──► STOPPED   (sockets closed, timers cleared)
 *
 * In every state the last known primary stays in use: a ZooKeeper outage,
 * an expired session or a malformed state never takes the primary away
 * from the pool (manatee.md §6).  Only a *different* primary (by backend
 * key "ip:port") is announced: info log `Manatee primary has changed`,
 * probe moray:topology-change(old key, new key), event 'primary'.
 *
 * Reading the shard (after every 'connected', every watch firing and every
 * failed read, serialised so that replies are applied in order):
 *
 *     exists(P/state, W) ──stat──► getData(P/state) ──► parse ──► primary
 *          │   (arms W before reading: a change after the read fires W,
 *          │    so nothing is missed between firing and re-arming)
 *          └──null (W now waits for creation)──►
 *                getChildren(P/election, W) ──► lowest sequence ──► primary
 *                     └─NO_NODE─► exists(P/election, W)
 *
 * Failure modes and what happens:
 *  - unparseable / incomplete state JSON, a pgUrl that is not
 *    tcp://<IP literal>:<port>: warn log, `malformedStates`++, the primary
 *    is kept and the watch stays armed, so the next valid state is used.
 *    (The reference resolver stops following for good here: fixed.)
 *  - read error: `readErrors`++, retried after `retryDelay` (5 s like the
 *    reference) and on the next 'connected'.
 *  - session expired / client error / authentication failure: the client
 *    is closed and a new one created after an exponential backoff.
 *  - a hung server (SIGSTOP, partition without RST): node-zookeeper-client
 *    stays SYNC_CONNECTED forever and requests never complete
 *    (alexguan/node-zookeeper-client#13).  The watchdog sends exists('/')
 *    every sessionTimeout/3; no reply within 2/3 of sessionTimeout trips it
 *    (`watchdogTrips`++) and the client is replaced.  A client that does not
 *    reach CONNECTED within sessionTimeout (a hung server accepts TCP but
 *    never answers the handshake) is replaced too (`connectTimeouts`++).
 *
 * node-zookeeper-client 1.1.3 cannot be closed cleanly in every state (a
 * close() while disconnected writes to a missing socket; a pending
 * reconnect opens a new socket after close).  closeZkClient() below
 * therefore neutralises the reconnect path of the instance before closing;
 * it relies on ConnectionManager internals of that exact version.
 */

import { EventEmitter } from 'node:events';
import * as net from 'node:net';
import { probe } from '../probes';
import {
    type Backend,
    type TopologyLogger,
    type TopologySnapshot,
    type TopologySource,
    makeBackend,
    zeroCounters,
} from './topology';

const TOPOLOGY_CHANGE = probe('moray', 'topology-change');

/* ---------------------------------------------------------------------- */
/* node-zookeeper-client 1.1.3, typed as far as we use it (no @types).     */

export interface ZkStat {
    readonly version: number;
    readonly numChildren: number;
}

export interface ZkException extends Error {
    readonly code: number;
    getCode(): number;
}

export interface ZkEvent {
    readonly type: number;
    readonly name: string;
    readonly path: string;
}

export type ZkWatcher = (event: ZkEvent) => void;

export interface ZkClient extends EventEmitter {
    connect(): void;
    close(): void;
    getState(): { readonly name: string; readonly code: number };
    getSessionId(): Buffer;
    exists(path: string, watcher: ZkWatcher, cb: (err: ZkException | null, stat: ZkStat | null) => void): void;
    exists(path: string, cb: (err: ZkException | null, stat: ZkStat | null) => void): void;
    getData(path: string, watcher: ZkWatcher,
        cb: (err: ZkException | null, data?: Buffer | null, stat?: ZkStat) => void): void;
    getData(path: string, cb: (err: ZkException | null, data?: Buffer | null, stat?: ZkStat) => void): void;
    getChildren(path: string, watcher: ZkWatcher,
        cb: (err: ZkException | null, children?: string[], stat?: ZkStat) => void): void;
    getChildren(path: string, cb: (err: ZkException | null, children?: string[], stat?: ZkStat) => void): void;
    create(path: string, data: Buffer | undefined, mode: number,
        cb: (err: ZkException | null, path?: string) => void): void;
    setData(path: string, data: Buffer | null, version: number,
        cb: (err: ZkException | null, stat?: ZkStat) => void): void;
    remove(path: string, version: number, cb: (err: ZkException | null) => void): void;
    mkdirp(path: string, cb: (err: ZkException | null, path?: string) => void): void;
}

export interface ZkClientOptions {
    sessionTimeout: number;
    spinDelay: number;
    retries: number;
}

interface ZkModule {
    createClient(connStr: string, opts: ZkClientOptions): ZkClient;
    Exception: Record<string, number>;
    CreateMode: { PERSISTENT: number; PERSISTENT_SEQUENTIAL: number; EPHEMERAL: number; EPHEMERAL_SEQUENTIAL: number };
}

/* eslint-disable-next-line @typescript-eslint/no-require-imports */
const zookeeper = require('node-zookeeper-client') as ZkModule;

export const ZK_NO_NODE = zookeeper.Exception.NO_NODE as number;
export const ZK_NODE_EXISTS = zookeeper.Exception.NODE_EXISTS as number;
export const ZK_SESSION_EXPIRED = zookeeper.Exception.SESSION_EXPIRED as number;
export const ZkCreateMode = zookeeper.CreateMode;

/* Library defaults (index.js CLIENT_DEFAULT_OPTIONS): the reference passes opts through. */
const ZK_DEFAULTS: ZkClientOptions = { sessionTimeout: 30000, spinDelay: 1000, retries: 0 };

export function zkClientOptions(opts: Readonly<Record<string, unknown>> | undefined): ZkClientOptions {
    const out: ZkClientOptions = { ...ZK_DEFAULTS };
    for (const k of ['sessionTimeout', 'spinDelay', 'retries'] as const) {
        const v = opts?.[k];
        if (v === undefined) {
            continue;
        }
        if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) {
            throw new Error(`manatee.manatee.zk.opts.${k} must be a non-negative number`);
        }
        out[k] = v;
    }
    if (out.sessionTimeout <= 0) {
        throw new Error('manatee.manatee.zk.opts.sessionTimeout must be positive');
    }
    return out;
}

export function createZkClient(connStr: string, opts: ZkClientOptions): ZkClient {
    return zookeeper.createClient(connStr, { ...opts });
}

/* ConnectionManager internals of node-zookeeper-client 1.1.3 (lib/ConnectionManager.js). */
interface ZkConnectionManager {
    state: number;
    socket?: net.Socket;
    sessionTimeout: number;
    connect(): void;
    onSocketConnected(): void;
    setState(state: number): void;
}
const CM_CONNECTED = 2;
const CM_CONNECTED_READ_ONLY = 3;
const CM_CLOSING = -1;
const CM_CLOSED = -2;

/*
 * Close a client for good, whatever its state: no reconnect afterwards, no
 * socket left open.  A connected client first gets a CLOSE_SESSION (so the
 * server drops the session at once); its socket is destroyed after graceMs
 * if the server does not close it (hung server).  Resolves once the socket
 * is closed.  Library timers that cannot be reached (a reconnect spin delay
 * of at most spinDelay) end by themselves without opening anything.
 */
export function closeZkClient(client: ZkClient, graceMs = 500): Promise<void> {
    const cm = (client as unknown as { connectionManager?: ZkConnectionManager }).connectionManager;
    client.removeAllListeners();
    client.on('error', () => undefined);
    if (cm === undefined) {
        try {
            client.close();
        } catch {
            /* nothing else to do */
        }
        return Promise.resolve();
    }
    cm.connect = () => undefined;
    cm.onSocketConnected = function (this: ZkConnectionManager): void {
        this.socket?.destroy();
    };
    /* attempt() retries lost requests after min(1000 * 2^n, sessionTimeout) ms */
    cm.sessionTimeout = 0;
    const connected = cm.state === CM_CONNECTED || cm.state === CM_CONNECTED_READ_ONLY;
    const sock = cm.socket;
    if (sock === undefined || sock.destroyed) {
        cm.setState(CM_CLOSED);
        return Promise.resolve();
    }
    return new Promise((resolve) => {
        let hard: NodeJS.Timeout | undefined;
        sock.once('close', () => {
            if (hard !== undefined) {
                clearTimeout(hard);
            }
            resolve();
        });
        if (connected) {
            try {
                client.close();
            } catch {
                /* fall through to destroy */
            }
            hard = setTimeout(() => sock.destroy(), graceMs);
        } else {
            cm.setState(CM_CLOSING);
            sock.destroy();
        }
    });
}

/* ---------------------------------------------------------------------- */
/* Parsing what Manatee writes.                                            */

export class MalformedStateError extends Error {
    override readonly name = 'MalformedStateError';
}

const DEFAULT_PG_PORT = 5432;

function ipLiteral(host: string): string | null {
    const h = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
    return net.isIP(h) === 0 ? null : h;
}

function parsePort(text: string, what: string): number {
    const port = Number(text);
    if (!/^[0-9]+$/.test(text) || port < 1 || port > 65535) {
        throw new MalformedStateError(`${what}: invalid port ${JSON.stringify(text)}`);
    }
    return port;
}

/* tcp://user@ip:port/db → backend (user and db ignored). */
export function backendFromPgUrl(pgUrl: string): Backend {
    let u: URL;
    try {
        u = new URL(pgUrl);
    } catch {
        throw new MalformedStateError(`pgUrl is not a URL: ${JSON.stringify(pgUrl)}`);
    }
    if (u.protocol !== 'tcp:') {
        throw new MalformedStateError(`pgUrl scheme is not tcp: ${JSON.stringify(pgUrl)}`);
    }
    const host = ipLiteral(u.hostname);
    if (host === null) {
        throw new MalformedStateError(`pgUrl host is not an IP address: ${JSON.stringify(pgUrl)}`);
    }
    const port = u.port === '' ? DEFAULT_PG_PORT : parsePort(u.port, 'pgUrl');
    return makeBackend(host, port);
}

export interface ParsedState {
    readonly generation: number | null;
    readonly primary: Backend;
}

/* The cluster state JSON (manatee.md §3): only primary.pgUrl matters. */
export function parseClusterState(data: Buffer | string | null | undefined): ParsedState {
    const text = data === null || data === undefined ? '' :
        typeof data === 'string' ? data : data.toString('utf8');
    if (text === '') {
        throw new MalformedStateError('cluster state is empty');
    }
    let obj: unknown;
    try {
        obj = JSON.parse(text);
    } catch (e) {
        throw new MalformedStateError(`cluster state is not JSON: ${(e as Error).message}`);
    }
    if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) {
        throw new MalformedStateError('cluster state is not a JSON object');
    }
    const st = obj as Record<string, unknown>;
    const primary = st.primary;
    if (typeof primary !== 'object' || primary === null) {
        throw new MalformedStateError('cluster state has no primary');
    }
    const pgUrl = (primary as Record<string, unknown>).pgUrl;
    if (typeof pgUrl !== 'string') {
        throw new MalformedStateError('cluster state primary has no pgUrl');
    }
    const generation = Number.isInteger(st.generation) ? st.generation as number : null;
    return { generation, primary: backendFromPgUrl(pgUrl) };
}

export interface ElectionEntry {
    readonly name: string;
    readonly seq: number;
    readonly backend: Backend;
}

/*
 * One P/election child: "<ip>:<pgPort>:<backupPort>-<seq>" (ip may be IPv6),
 * legacy "<ip>-<seq>" (port 5432).  Null when the name is not of that shape.
 */
export function parseElectionNode(name: string): ElectionEntry | null {
    const dash = name.lastIndexOf('-');
    if (dash <= 0) {
        return null;
    }
    const seqText = name.slice(dash + 1);
    if (!/^[0-9]+$/.test(seqText)) {
        return null;
    }
    const parts = name.slice(0, dash).split(':');
    let ipText: string;
    let portText: string | undefined;
    if (parts.length >= 3) {
        ipText = parts.slice(0, -2).join(':');
        portText = parts[parts.length - 2];
    } else if (parts.length === 2) {
        ipText = parts[0] as string;
        portText = parts[1];
    } else {
        ipText = parts[0] as string;
    }
    const ip = ipLiteral(ipText);
    if (ip === null) {
        return null;
    }
    let port = DEFAULT_PG_PORT;
    if (portText !== undefined) {
        if (!/^[0-9]+$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535) {
            return null;
        }
        port = Number(portText);
    }
    return { name, seq: Number(seqText), backend: makeBackend(ip, port) };
}

/* The election fallback: lowest sequence number first. */
export function electionOrder(children: readonly string[]): ElectionEntry[] {
    const out: ElectionEntry[] = [];
    for (const c of children) {
        const e = parseElectionNode(c);
        if (e !== null) {
            out.push(e);
        }
    }
    return out.sort((a, b) => a.seq - b.seq);
}

/* ---------------------------------------------------------------------- */
/* The follower.                                                           */

/* how often a connected follower re-reads the shard, in case a watch was lost */
export const REREAD_INTERVAL_MS = 2000;

export interface ManateeConfig {
    readonly path: string;
    readonly zk: {
        readonly connStr: string;
        readonly opts?: Readonly<Record<string, unknown>>;
    };
}

export interface ManateeFollowerOptions {
    readonly log: TopologyLogger;
    /* delay before re-reading after a failed read (default 5000 ms, as the reference) */
    readonly retryDelay?: number;
    /* client re-creation backoff: first delay and cap (defaults 1000 / 30000 ms) */
    readonly backoffMin?: number;
    readonly backoffMax?: number;
    /* wait for a graceful CLOSE_SESSION before destroying the socket (default 500 ms) */
    readonly closeGrace?: number;
}

export const FollowerState = {
    IDLE: 'idle',
    CONNECTING: 'connecting',
    CONNECTED: 'connected',
    BACKOFF: 'backoff',
    STOPPED: 'stopped',
} as const;
export type FollowerState = typeof FollowerState[keyof typeof FollowerState];

const TRANSITIONS: Record<FollowerState, readonly FollowerState[]> = {
    idle: ['connecting', 'stopped'],
    connecting: ['connected', 'backoff', 'stopped'],
    connected: ['connecting', 'backoff', 'stopped'],
    backoff: ['connecting', 'stopped'],
    stopped: [],
};

type Source = 'state' | 'election';

/* One ZooKeeper client and the watchers bound to it. */
interface Session {
    readonly id: number;
    readonly client: ZkClient;
    readonly onStateWatch: ZkWatcher;
    readonly onElectionWatch: ZkWatcher;
}

export class ManateeFollower extends EventEmitter implements TopologySource {
    readonly path: string;
    readonly connStr: string;
    readonly zkOpts: ZkClientOptions;

    private readonly log: TopologyLogger;
    private readonly retryDelay: number;
    private readonly backoffMin: number;
    private readonly backoffMax: number;
    private readonly closeGrace: number;
    private readonly statePath: string;
    private readonly electionPath: string;

    private fsm: FollowerState = FollowerState.IDLE;
    private session: Session | null = null;
    private nextSessionId = 1;
    private primary: Backend | null = null;
    private source: Source | null = null;
    private generation: number | null = null;
    private lastChange: string | null = null;
    private readonly counters = zeroCounters();

    /* read serialisation: one read cycle in flight, at most one more queued */
    private reading = false;
    private readAgain = false;

    /* watchdog */
    private watchdogTimer: NodeJS.Timeout | null = null;
    private rereadTimer: NodeJS.Timeout | null = null;
    private probeTimer: NodeJS.Timeout | null = null;
    private probeSeq = 0;
    private lastProbeMs: number | null = null;
    private notConnectedSince = 0;

    private retryTimer: NodeJS.Timeout | null = null;
    private backoffTimer: NodeJS.Timeout | null = null;
    private failures = 0;
    private everConnected = false;
    private readonly closing = new Set<Promise<void>>();

    constructor(config: ManateeConfig, options: ManateeFollowerOptions) {
        super();
        if (typeof config.path !== 'string' || !config.path.startsWith('/') ||
                config.path.length < 2 || config.path.endsWith('/')) {
            throw new Error(`manatee.manatee.path must be an absolute ZooKeeper path: ${String(config.path)}`);
        }
        if (typeof config.zk?.connStr !== 'string' || config.zk.connStr === '') {
            throw new Error('manatee.manatee.zk.connStr must be a non-empty string');
        }
        this.path = config.path;
        this.connStr = config.zk.connStr;
        this.zkOpts = zkClientOptions(config.zk.opts);
        this.statePath = `${this.path}/state`;
        this.electionPath = `${this.path}/election`;
        this.log = options.log.child({ component: 'ManateePrimaryResolver', path: this.path });
        this.retryDelay = options.retryDelay ?? 5000;
        this.backoffMin = options.backoffMin ?? 1000;
        this.backoffMax = options.backoffMax ?? 30000;
        this.closeGrace = options.closeGrace ?? 500;
    }

    current(): Backend | null {
        return this.primary;
    }

    state(): FollowerState {
        return this.fsm;
    }

    start(): void {
        if (this.fsm !== FollowerState.IDLE) {
            return;
        }
        const period = Math.max(1, Math.floor(this.zkOpts.sessionTimeout / 3));
        this.watchdogTimer = setInterval(() => this.watchdogTick(), period);
        /*
         * Safety net for a lost watch: re-read the shard every
         * REREAD_INTERVAL_MS while connected (one exists + getData; an event
         * only if the primary changed).  Seen under load after a ZooKeeper
         * restart: the data watch did not fire for a state written later,
         * and the follower only noticed ~10 s after the change.
         */
        this.rereadTimer = setInterval(() => {
            if (this.fsm === FollowerState.CONNECTED) {
                this.counters.rereads++;
                this.read();
            }
        }, REREAD_INTERVAL_MS);
        this.newSession();
    }

    async stop(): Promise<void> {
        if (this.fsm === FollowerState.STOPPED) {
            await Promise.all([...this.closing]);
            return;
        }
        this.move(FollowerState.STOPPED);
        if (this.rereadTimer !== null) {
            clearInterval(this.rereadTimer);
            this.rereadTimer = null;
        }
        for (const t of [this.watchdogTimer, this.retryTimer, this.backoffTimer]) {
            if (t !== null) {
                clearTimeout(t);
            }
        }
        this.watchdogTimer = this.retryTimer = this.backoffTimer = null;
        this.clearProbe();
        this.dropSession();
        await Promise.all([...this.closing]);
        this.log.info({}, 'manatee follower stopped');
    }

    snapshot(): TopologySnapshot {
        const s = this.session;
        let zkState: string | null = null;
        let sessionId: string | null = null;
        if (s !== null) {
            zkState = s.client.getState().name;
            const id = s.client.getSessionId();
            sessionId = id.every((b) => b === 0) ? null : id.toString('hex');
        }
        return {
            kind: 'manatee',
            state: this.fsm,
            zkState,
            sessionId,
            path: this.path,
            connStr: this.connStr,
            source: this.source,
            generation: this.generation,
            primary: this.primary,
            lastChange: this.lastChange,
            zkLatencyMs: this.lastProbeMs,
            counters: { ...this.counters },
        };
    }

    /* ------------------------------------------------------------------ */

    private move(to: FollowerState): void {
        const from = this.fsm;
        if (from === to) {
            return;
        }
        if (!TRANSITIONS[from].includes(to)) {
            throw new Error(`ManateeFollower: illegal transition ${from} -> ${to}`);
        }
        this.fsm = to;
        this.log.debug({ from, to }, 'manatee follower state');
    }

    private newSession(): void {
        this.move(FollowerState.CONNECTING);
        this.notConnectedSince = Date.now();
        const client = createZkClient(this.connStr, this.zkOpts);
        const id = this.nextSessionId++;
        const current = (): boolean => this.session?.id === id && this.fsm !== FollowerState.STOPPED;
        const session: Session = {
            id,
            client,
            onStateWatch: (ev) => {
                if (current()) {
                    this.log.debug({ event: ev.name }, 'state watch fired');
                    this.read();
                }
            },
            onElectionWatch: (ev) => {
                if (current()) {
                    this.log.debug({ event: ev.name }, 'election watch fired');
                    this.read();
                }
            },
        };
        this.session = session;
        this.counters.clientsCreated++;
        client.on('connected', () => {
            if (current()) {
                this.onConnected(session);
            }
        });
        client.on('disconnected', () => {
            if (current()) {
                this.onDisconnected();
            }
        });
        client.on('expired', () => {
            if (current()) {
                this.counters.expirations++;
                this.replaceSession('zk: session expired, reiniting', {});
            }
        });
        client.on('authenticationFailed', () => {
            if (current()) {
                this.replaceSession('zk: authentication failed', {});
            }
        });
        client.on('error', (err: Error) => {
            if (current()) {
                this.replaceSession('zk: unexpected error', { err });
            }
        });
        this.log.debug({ session: id, connStr: this.connStr }, 'zk: connecting');
        client.connect();
    }

    private onConnected(session: Session): void {
        this.move(FollowerState.CONNECTED);
        if (this.everConnected) {
            this.counters.reconnects++;
        }
        this.everConnected = true;
        this.failures = 0;
        this.clearProbe();
        this.log.info({ sessionId: session.client.getSessionId().toString('hex') }, 'zk: connected');
        this.read();
    }

    private onDisconnected(): void {
        this.move(FollowerState.CONNECTING);
        this.notConnectedSince = Date.now();
        this.clearProbe();
        this.log.warn({}, 'zk: disconnected, reconnecting (keeping the last primary)');
    }

    /* Close the current client and create a new one after a backoff. */
    private replaceSession(msg: string, fields: object): void {
        if (this.fsm === FollowerState.STOPPED || this.fsm === FollowerState.BACKOFF) {
            return;
        }
        this.dropSession();
        this.move(FollowerState.BACKOFF);
        const delay = Math.min(this.backoffMax, this.backoffMin * 2 ** Math.min(this.failures, 20));
        this.failures++;
        this.log.warn({ ...fields, delay, primary: this.primary?.key ?? null }, msg);
        this.backoffTimer = setTimeout(() => {
            this.backoffTimer = null;
            if (this.fsm === FollowerState.BACKOFF) {
                this.newSession();
            }
        }, delay);
    }

    private dropSession(): void {
        const s = this.session;
        this.session = null;
        this.reading = false;
        this.readAgain = false;
        this.clearProbe();
        if (this.retryTimer !== null) {
            clearTimeout(this.retryTimer);
            this.retryTimer = null;
        }
        if (s !== null) {
            const p = closeZkClient(s.client, this.closeGrace).finally(() => this.closing.delete(p));
            this.closing.add(p);
        }
    }

    /* ---- watchdog ---------------------------------------------------- */

    private clearProbe(): void {
        if (this.probeTimer !== null) {
            clearTimeout(this.probeTimer);
            this.probeTimer = null;
        }
        this.probeSeq++;
    }

    private watchdogTick(): void {
        const s = this.session;
        if (s === null) {
            return;
        }
        const st = this.zkOpts.sessionTimeout;
        if (this.fsm === FollowerState.CONNECTING) {
            const waited = Date.now() - this.notConnectedSince;
            if (waited >= st) {
                this.counters.connectTimeouts++;
                this.replaceSession('zk: not connected within sessionTimeout, new client', { waited });
            }
            return;
        }
        if (this.fsm !== FollowerState.CONNECTED || this.probeTimer !== null) {
            return;
        }
        const seq = ++this.probeSeq;
        const sent = Date.now();
        this.probeTimer = setTimeout(() => {
            this.probeTimer = null;
            if (seq === this.probeSeq && this.session === s) {
                this.counters.watchdogTrips++;
                this.replaceSession('zk: watchdog: no reply from ZooKeeper, new client',
                    { waited: Date.now() - sent });
            }
        }, Math.max(1, Math.floor(st * 2 / 3)));
        s.client.exists('/', (err) => {
            if (seq !== this.probeSeq || this.session !== s) {
                return;
            }
            this.lastProbeMs = Date.now() - sent;
            if (this.probeTimer !== null) {
                clearTimeout(this.probeTimer);
                this.probeTimer = null;
            }
            if (err !== null) {
                this.log.debug({ err }, 'zk: watchdog probe failed');
            }
        });
    }

    /* ---- reading the shard ------------------------------------------- */

    private read(): void {
        if (this.reading) {
            this.readAgain = true;
            return;
        }
        const s = this.session;
        if (s === null || this.fsm !== FollowerState.CONNECTED) {
            return;
        }
        this.reading = true;
        this.readAgain = false;
        this.readState(s, () => {
            if (this.session !== s) {
                return;
            }
            this.reading = false;
            if (this.readAgain) {
                this.read();
            }
        });
    }

    private readFailed(s: Session, what: string, err: ZkException): void {
        this.counters.readErrors++;
        if (err.code === ZK_SESSION_EXPIRED) {
            this.counters.expirations++;
            this.replaceSession('zk: session expired, reiniting', { err });
            return;
        }
        this.log.warn({ err, node: what, retryIn: this.retryDelay }, 'zk: read failed, will retry');
        if (this.retryTimer === null && this.session === s) {
            this.retryTimer = setTimeout(() => {
                this.retryTimer = null;
                if (this.session === s) {
                    this.read();
                }
            }, this.retryDelay);
        }
    }

    private readState(s: Session, done: () => void): void {
        s.client.exists(this.statePath, s.onStateWatch, (err, stat) => {
            if (this.session !== s) {
                return;
            }
            if (err !== null) {
                this.readFailed(s, this.statePath, err);
                done();
                return;
            }
            if (stat === null) {
                this.readElection(s, done);
                return;
            }
            s.client.getData(this.statePath, (err2, data) => {
                if (this.session !== s) {
                    return;
                }
                if (err2 !== null) {
                    if (err2.code === ZK_NO_NODE) {
                        /* deleted since exists(): the armed watch fires */
                        done();
                        return;
                    }
                    this.readFailed(s, this.statePath, err2);
                    done();
                    return;
                }
                this.applyState(data);
                done();
            });
        });
    }

    private readElection(s: Session, done: () => void): void {
        s.client.getChildren(this.electionPath, s.onElectionWatch, (err, children) => {
            if (this.session !== s) {
                return;
            }
            if (err !== null && err.code === ZK_NO_NODE) {
                /* brand-new shard: wait for the directory (or for P/state) */
                s.client.exists(this.electionPath, s.onElectionWatch, (err2, stat) => {
                    if (this.session !== s) {
                        return;
                    }
                    if (err2 !== null) {
                        this.readFailed(s, this.electionPath, err2);
                    } else if (stat !== null) {
                        this.readAgain = true;
                    } else {
                        this.log.debug({}, 'no state and no election node yet: no primary');
                    }
                    done();
                });
                return;
            }
            if (err !== null) {
                this.readFailed(s, this.electionPath, err);
                done();
                return;
            }
            this.applyElection(children ?? []);
            done();
        });
    }

    private applyState(data: Buffer | null | undefined): void {
        let parsed: ParsedState;
        try {
            parsed = parseClusterState(data);
        } catch (e) {
            if (!(e instanceof MalformedStateError)) {
                throw e;
            }
            this.counters.malformedStates++;
            const text = data === null || data === undefined ? '' : data.toString('utf8');
            this.log.warn({ err: e, node: this.statePath, data: text.slice(0, 512), primary: this.primary?.key ?? null },
                'manatee cluster state is malformed; keeping the last primary and following');
            return;
        }
        this.generation = parsed.generation;
        this.setPrimary(parsed.primary, 'state');
    }

    private applyElection(children: readonly string[]): void {
        if (children.length === 0) {
            this.log.debug({}, 'no state and no election children yet: no primary');
            return;
        }
        const order = electionOrder(children);
        const first = order[0];
        if (first === undefined) {
            this.counters.malformedStates++;
            this.log.warn({ node: this.electionPath, children: children.slice(0, 16) },
                'no usable election node; keeping the last primary');
            return;
        }
        this.generation = null;
        this.setPrimary(first.backend, 'election');
    }

    private setPrimary(b: Backend, source: Source): void {
        this.source = source;
        const old = this.primary;
        if (old !== null && old.key === b.key) {
            return;
        }
        this.primary = b;
        this.counters.changes++;
        this.lastChange = new Date().toISOString();
        const describe = (x: Backend | null): object | null =>
            x === null ? null : { name: 'primary', address: x.host, port: x.port, key: x.key };
        this.log.info({ oldPrimary: describe(old), newPrimary: describe(b), source, generation: this.generation },
            'Manatee primary has changed');
        TOPOLOGY_CHANGE.fire(() => [old?.key ?? '', b.key]);
        this.emit('primary', b, old);
    }
}

/*
 * The PostgreSQL connection pool.
 *
 * One pool per process, connected to the current primary that a
 * TopologySource reports (standalone: a fixed URL; manatee: ZooKeeper).
 * Every RPC that touches the database claims one connection, runs its
 * statements on it and releases it.
 *
 * Connection states (one transition function, `move`, checks legal moves):
 *
 *      CONNECTING ──ok──► IDLE ◄──release── BUSY
 *          │               │ ▲ ──claim───────►│
 *          │ fail          │ └─ok── CHECKING   │ error / broken / retired
 *          ▼               ▼ idle>checkInterval│
 *        CLOSED ◄──────────┴───────────────────┘
 *          ▲                │ ▲
 *          │   claimShared  ▼ │ last shared user released
 *          └───────────── SHARED  (pipelined: many users, one statement each;
 *                                  kind 'read' or 'write', never both)
 *
 * Shared connections (`pipelineConnections`, default 2, at most
 * maxConnections - 1 so that transactions always have one of their own):
 * a single-statement read (getObject) does not need a connection to
 * itself.  claimShared() attaches it to a SHARED connection with fewer than
 * `pipelineDepth` statements in flight, turning an IDLE one SHARED when
 * that spreads the load; pg's pipeline mode then writes each statement
 * (Bind/Execute/Sync) without waiting for the previous answer, and the
 * writes of one event-loop turn leave in one system call (the socket is
 * corked until setImmediate).  Each statement has its own Sync, so each is
 * its own implicit transaction and an error in one does not touch the
 * others.  A read that finds no room claims a connection of its own like
 * any other request.
 *
 * Writes share differently (claimShared(reqId, 'write'): putObject's one
 * autocommit statement).  A commit waits for its WAL flush, and commits
 * only group across backends, so writes first spread over every idle
 * connection (one statement per backend); when none is idle, a write
 * queues its statement on the least-loaded write connection, up to
 * `pipelineWriteDepth` (default 4) in flight, instead of waiting in the
 * pool's queue: the backend finds the next statement in its socket as it
 * commits, with no round trip in between, and one write(2) and one wake-up
 * carry several statements.  Measured at 64 puts in flight on 16
 * connections: 6.7–8.0k puts/s against 6.0–6.8k with a connection each,
 * and less server and PostgreSQL CPU per put (docs/performance.md).  Reads and writes never
 * share one connection (a read would wait for a commit's flush), and at
 * most maxConnections - 1 connections are shared, so transactions and
 * streaming finds always have one.  Fairness: once any claim waits, new
 * writes queue behind it (FIFO, kind 'write'); a place freed on a write
 * connection goes to the write at the head of the queue, and when the head
 * is a transaction the freed places are not refilled, so that connection
 * drains and goes to it.  A write waiting on a row lock holds up the (at
 * most depth - 1) statements behind it: the price of the pipelining.
 *
 * Pool-level behaviour (observability.md §4):
 *  - claims are FIFO; at most `maxQueueLength` may wait (0 = unlimited);
 *    beyond that a claim fails at once with NoDatabasePeersError (overload);
 *  - a queued claim times out CoDel-style: after 3 x targetClaimDelay when
 *    the queue has not been empty in the last 10 x target (a standing
 *    queue), else after 10 x target.  The error is `connect ECONNREFUSED`
 *    when the database looks down (no idle connection and at most two
 *    established at claim time), else the overload error;
 *  - connection attempts time out after connectTimeout, doubling per
 *    failure up to 10 s, with a delay of 250 ms doubling up to 2.5 s; after
 *    10 consecutive failed rounds (parallel attempts that fail together
 *    count once) the pool is FAILED: every waiting and new claim
 *    fails at once with `connect ECONNREFUSED` until a connection succeeds
 *    or a new primary is published (attempts go on in the background, one
 *    at a time; the first success opens the rest of the spare target);
 *  - a connection that saw an error, timed out, or is released inside a
 *    transaction is destroyed, not reused;
 *  - when the primary changes, idle connections to the old one close at
 *    once, busy ones when released; new ones go to the new primary.
 *
 * Every drop and rejection is counted (stats()) for kang and metrics.
 */

import { EventEmitter } from 'node:events';
import * as pg from 'pg';
import { errors, MorayError } from '../errors/catalog';
import { probe } from '../probes';
import type { PgTunables } from '../config';
import type { Backend, TopologySource } from './topology';
import { PgHandle } from './handle';

const POOL_CHECKOUT = probe('moray', 'pool-checkout');
const POOL_CONNECT = probe('moray', 'pool-connect');
const POOL_CONNECT_ERROR = probe('moray', 'pool-connect-error');
const POOL_QUEUE_WAIT = probe('moray', 'pool-queue-wait');
const POOL_RELEASE = probe('moray', 'pool-release');
const POOL_DESTROY = probe('moray', 'pool-destroy');

export const ConnState = {
    CONNECTING: 'CONNECTING',
    IDLE: 'IDLE',
    BUSY: 'BUSY',
    SHARED: 'SHARED',
    CHECKING: 'CHECKING',
    CLOSED: 'CLOSED',
} as const;
export type ConnState = typeof ConnState[keyof typeof ConnState];

const LEGAL: Record<ConnState, readonly ConnState[]> = {
    CONNECTING: ['IDLE', 'CLOSED'],
    IDLE: ['BUSY', 'SHARED', 'CHECKING', 'CLOSED'],
    BUSY: ['IDLE', 'CLOSED'],
    SHARED: ['IDLE', 'CLOSED'],
    CHECKING: ['IDLE', 'CLOSED'],
    CLOSED: [],
};

export interface Logger {
    info(...a: unknown[]): void;
    warn(...a: unknown[]): void;
    error(...a: unknown[]): void;
    debug(...a: unknown[]): void;
    trace(...a: unknown[]): void;
    child(fields: Record<string, unknown>): Logger;
}

/*
 * 'read': single plain SELECTs (getObject); 'write': single autocommit
 * writes (putObject's one-statement path).  See claimShared().
 */
export type ShareKind = 'read' | 'write';

export class PoolConn {
    state: ConnState = ConnState.CONNECTING;
    since = Date.now();
    lastUsed = Date.now();
    claimedBy: string | null = null;
    currentQuery: string | null = null;
    retired = false;
    broken = false;
    /* the pool's consecutive-failure count when this connection was attempted */
    round = 0;
    /* SHARED: handles attached, whether this turn's writes are corked, and
       whether it waits for pg's 'drain' to go IDLE (pool.unshare) */
    users = 0;
    /* SHARED: which kind of statement may join (reads and writes never mix) */
    shareKind: ShareKind | null = null;
    corked = false;
    awaitingDrain = false;

    constructor(readonly id: number, readonly backend: Backend, readonly client: pg.Client) {}

    move(to: ConnState): void {
        if (!LEGAL[this.state].includes(to)) {
            throw new Error(`pg connection ${this.id}: illegal move ${this.state} -> ${to}`);
        }
        this.state = to;
        this.since = Date.now();
    }
}

interface Waiter {
    reqId: string;
    /* 'write': a single-statement write, served by a shared write slot or a connection */
    kind: 'exclusive' | 'write';
    enqueued: number;
    timer: NodeJS.Timeout;
    idleAtClaim: number;
    establishedAtClaim: number;
    resolve(h: PgHandle): void;
    reject(e: MorayError): void;
}

export interface PoolOptions {
    topology: TopologySource;
    tunables: PgTunables;
    database: string;
    user?: string;
    log: Logger;
    types?: pg.CustomTypesConfig;
}

export interface PoolCounters {
    connectsOk: number;
    connectErrors: number;
    destroyed: number;
    claims: number;
    claimsQueued: number;
    rejectedOverload: number;
    rejectedFailed: number;
    claimTimeouts: number;
    healthChecksFailed: number;
    errorsWhileIdle: number;
    errorsWhileClaimed: number;
    /* claimShared() calls that got a place on a shared connection */
    sharedClaims: number;
    /* connection attempts that timed out / that PostgreSQL closed */
    connectTimeouts: number;
    connectCloses: number;
    /* times the pool entered its FAILED state */
    failedTransitions: number;
}

/*
 * pg's pipeline switch is a plain field read when a query is queued and
 * when the queue is pulsed; it is flipped only while the connection has
 * nothing in flight (IDLE ⇄ SHARED), where both modes agree on the state.
 */
function setPipeline(conn: PoolConn, on: boolean): void {
    (conn.client as unknown as { pipeline: boolean }).pipeline = on;
}

/* what pg's Client still has to answer (pg 8.23 internals) */
interface PgClientQueues {
    _activeQuery: unknown;
    _sentQueryQueue: unknown[];
    _queryQueue: unknown[];
}

function streamOf(conn: PoolConn): { cork(): void; uncork(): void } | null {
    const s = (conn.client as unknown as { connection?: { stream?: { cork?(): void; uncork?(): void } } })
        .connection?.stream;
    return s?.cork && s.uncork ? s as { cork(): void; uncork(): void } : null;
}

const MAX_ATTEMPT_TIMEOUT = 10000;
const FIRST_RETRY_DELAY = 250;
const MAX_RETRY_DELAY = 2500;
const RETRIES_BEFORE_FAILED = 10;

export class PgPool extends EventEmitter {
    private readonly conns = new Set<PoolConn>();
    private readonly waiters: Waiter[] = [];
    private backend: Backend | null = null;
    private nextId = 1;
    private failures = 0;
    private failed = false;
    private retryTimer: NodeJS.Timeout | null = null;
    private checkTimer: NodeJS.Timeout | null = null;
    private lastQueueEmpty = Date.now();
    private closing = false;
    private readonly max: number;
    private readonly minSpare: number;
    private readonly maxShared: number;
    private readonly depth: number;
    private readonly writeDepth: number;
    readonly counters: PoolCounters = {
        connectsOk: 0, connectErrors: 0, destroyed: 0, claims: 0, claimsQueued: 0,
        rejectedOverload: 0, rejectedFailed: 0, claimTimeouts: 0, healthChecksFailed: 0,
        connectTimeouts: 0, connectCloses: 0, failedTransitions: 0,
        errorsWhileIdle: 0, errorsWhileClaimed: 0, sharedClaims: 0,
    };
    private readonly onPrimary = (b: Backend | null) => this.setBackend(b);

    constructor(private readonly opts: PoolOptions) {
        super();
        this.max = Math.max(1, opts.tunables.maxConnections);
        this.minSpare = Math.min(this.max, opts.tunables.minSpareConnections ?? this.max);
        this.maxShared = Math.max(0, Math.min(this.max - 1, opts.tunables.pipelineConnections ?? 2));
        this.depth = Math.max(1, opts.tunables.pipelineDepth ?? 32);
        this.writeDepth = this.max < 2 ? 0 : Math.max(0, opts.tunables.pipelineWriteDepth ?? 4);
    }

    start(): void {
        this.opts.topology.on('primary', this.onPrimary);
        this.setBackend(this.opts.topology.current());
        const every = Math.max(1000, Math.floor(this.opts.tunables.checkInterval / 2));
        if (this.opts.tunables.checkInterval > 0) {
            this.checkTimer = setInterval(() => this.healthCheck(), every);
            this.checkTimer.unref();
        }
    }

    currentBackend(): Backend | null {
        return this.backend;
    }

    stats(): { total: number; idle: number; pending: number; waiters: number; failed: boolean;
        shared: number; sharedWrite: number; sharedUsers: number } {
        let idle = 0;
        let pending = 0;
        let total = 0;
        let shared = 0;
        let sharedUsers = 0;
        let sharedWrite = 0;
        for (const c of this.conns) {
            if (c.state === ConnState.CLOSED) {
                continue;
            }
            total++;
            if (c.state === ConnState.IDLE) {
                idle++;
            } else if (c.state === ConnState.CONNECTING || c.state === ConnState.CHECKING) {
                pending++;
            } else if (c.state === ConnState.SHARED) {
                shared++;
                sharedUsers += c.users;
                if (c.shareKind === 'write') {
                    sharedWrite++;
                }
            }
        }
        return { total, idle, pending, waiters: this.waiters.length, failed: this.failed,
            shared, sharedWrite, sharedUsers };
    }

    connections(): readonly PoolConn[] {
        return [...this.conns];
    }

    private setBackend(b: Backend | null): void {
        const old = this.backend;
        if (old?.key === b?.key) {
            return;
        }
        this.backend = b;
        this.opts.log.info({ oldPrimary: old, newPrimary: b }, 'pool: database backend changed');
        this.failures = 0;
        if (this.failed && b !== null) {
            /* a new primary is a fresh start: queue claims again while we connect */
            this.failed = false;
            this.opts.log.info({ backend: b.key }, 'pool: new backend, leaving the failed state');
        }
        for (const c of this.conns) {
            c.retired = true;
            if (c.state === ConnState.IDLE || c.state === ConnState.CONNECTING) {
                this.destroy(c, 'primary changed');
            }
        }
        if (this.retryTimer) {
            clearTimeout(this.retryTimer);
            this.retryTimer = null;
        }
        if (b === null) {
            /* No primary known: claims wait, and time out as "database down". */
            return;
        }
        this.fill();
    }

    private liveCount(): number {
        let n = 0;
        for (const c of this.conns) {
            if (c.state !== ConnState.CLOSED && !c.retired) {
                n++;
            }
        }
        return n;
    }

    /* Open connections up to the spare target, or up to max while claims wait. */
    private fill(): void {
        if (this.closing || this.backend === null || this.retryTimer !== null) {
            return;
        }
        const live = this.liveCount();
        let idleOrConnecting = 0;
        for (const c of this.conns) {
            if (!c.retired && (c.state === ConnState.IDLE || c.state === ConnState.CONNECTING)) {
                idleOrConnecting++;
            }
        }
        const want = Math.max(this.minSpare - live,
            Math.min(this.waiters.length - idleOrConnecting, this.max - live));
        for (let i = 0; i < want && this.liveCount() < this.max; i++) {
            this.connect(this.backend);
        }
    }

    private attemptTimeout(): number {
        return Math.min(MAX_ATTEMPT_TIMEOUT,
            this.opts.tunables.connectTimeout * 2 ** Math.min(this.failures, 10));
    }

    private connect(backend: Backend): void {
        const client = new pg.Client({
            host: backend.host,
            port: backend.port,
            user: this.opts.user,
            database: this.opts.database,
            keepAlive: true,
            connectionTimeoutMillis: this.attemptTimeout() || undefined,
            types: this.opts.types,
            application_name: 'moray',
        });
        const conn = new PoolConn(this.nextId++, backend, client);
        conn.round = this.failures;
        this.conns.add(conn);
        client.on('error', (err: Error) => this.onClientError(conn, err));
        client.on('notice', () => undefined);
        client.connect().then(() => {
            if (conn.state === ConnState.CLOSED) {
                client.end().catch(() => undefined);
                return;
            }
            this.failures = 0;
            this.counters.connectsOk++;
            if (this.failed) {
                this.failed = false;
                this.opts.log.info({ backend: backend.key }, 'pool: database reachable again');
            }
            POOL_CONNECT.fire(() => [conn.id, backend.key]);
            conn.move(ConnState.IDLE);
            this.dispatch(conn);
            /*
             * After an outage only one probe connection is retried at a
             * time; once it succeeds, open the rest of the spare target
             * now rather than waiting for demand.
             */
            this.fill();
        }, (err: Error) => {
            this.counters.connectErrors++;
            if (err.message === 'timeout expired') {
                this.counters.connectTimeouts++;
            } else if (err.message === 'Connection terminated unexpectedly') {
                this.counters.connectCloses++;
            }
            POOL_CONNECT_ERROR.fire(() => [backend.key, err.message]);
            if (conn.state !== ConnState.CLOSED) {
                conn.move(ConnState.CLOSED);
            }
            this.conns.delete(conn);
            if (conn.retired || this.closing) {
                return;
            }
            /*
             * Attempts made in parallel (the spare target, or several
             * connections dropped at once by a restart) fail together: they
             * count as one retry, so FAILED comes after 10 rounds of
             * back-off (~16 s), whatever maxConnections is.
             */
            if (conn.round === this.failures) {
                this.failures++;
            }
            this.opts.log.warn({ err, backend: backend.key, failures: this.failures },
                'pool: unable to connect to PostgreSQL');
            if (this.failures >= RETRIES_BEFORE_FAILED && !this.failed) {
                this.failed = true;
                this.counters.failedTransitions++;
                this.opts.log.error({ backend: backend.key },
                    'pool: database unreachable, failing claims until it is back');
                this.rejectAll(() => errors.connRefused(), 'rejectedFailed');
            }
            this.scheduleRetry();
        });
    }

    private scheduleRetry(): void {
        if (this.retryTimer !== null || this.closing) {
            return;
        }
        const delay = Math.min(MAX_RETRY_DELAY,
            FIRST_RETRY_DELAY * 2 ** Math.max(0, Math.min(this.failures - 1, 10)));
        this.retryTimer = setTimeout(() => {
            this.retryTimer = null;
            if (this.liveCount() === 0 && this.backend !== null) {
                this.connect(this.backend);
            } else {
                this.fill();
            }
        }, delay);
        this.retryTimer.unref();
    }

    private onClientError(conn: PoolConn, err: Error): void {
        if (conn.state === ConnState.CLOSED) {
            /* pg reports a lost connection twice (FATAL, then the socket end) */
            return;
        }
        if (conn.state === ConnState.SHARED && conn.users === 0) {
            /* only orphaned statements left (see unshare): nobody will release it */
            this.counters.errorsWhileClaimed++;
            this.destroy(conn, 'error: ' + err.message);
            this.fill();
            return;
        }
        if (conn.state === ConnState.BUSY || conn.state === ConnState.SHARED) {
            this.counters.errorsWhileClaimed++;
            conn.broken = true;
            this.opts.log.warn({ err, pgConn: conn.id }, 'pg: client emitted an error while claimed');
            /* the handle sees its query fail; it releases and we destroy then */
            return;
        }
        this.counters.errorsWhileIdle++;
        this.opts.log.warn({ err, pgConn: conn.id }, 'pg: client emitted an error');
        this.destroy(conn, 'error: ' + err.message);
        this.fill();
    }

    destroy(conn: PoolConn, reason: string): void {
        if (conn.state === ConnState.CLOSED) {
            return;
        }
        conn.move(ConnState.CLOSED);
        this.conns.delete(conn);
        this.counters.destroyed++;
        POOL_DESTROY.fire(() => [conn.id, reason]);
        this.opts.log.debug({ pgConn: conn.id, reason }, 'pg: destroying connection');
        conn.client.end().catch(() => undefined);
        /* end() waits for a clean goodbye; make sure the socket goes now */
        const stream = (conn.client as unknown as { connection?: { stream?: { destroy(): void } } })
            .connection?.stream;
        setTimeout(() => stream?.destroy(), 1000).unref();
    }

    /* Hand an idle connection to the first waiter, if any. */
    private dispatch(conn: PoolConn): void {
        if (conn.retired) {
            this.destroy(conn, 'retired');
            this.fill();
            return;
        }
        const w = this.nextWaiter();
        if (w === undefined) {
            return;
        }
        if (w.kind === 'write' && this.sharedCount() < this.max - 1) {
            /* a write waiter opens a shared write connection, which takes the writes behind it */
            this.share(conn, 'write');
            this.serveShared(conn, w);
            this.serveWriteWaiters(conn);
            return;
        }
        w.resolve(this.checkout(conn, w.reqId));
        this.serveQueuedWrites();
    }

    /* Writes now at the head of the queue take free places on any write connection. */
    private serveQueuedWrites(): void {
        if (this.waiters[0]?.kind !== 'write') {
            return;
        }
        for (const c of this.conns) {
            if (c.state === ConnState.SHARED && c.shareKind === 'write' && !c.retired &&
                !c.broken) {
                this.serveWriteWaiters(c);
            }
        }
    }

    /* The first waiter, out of the queue, its timer stopped and its wait reported. */
    private nextWaiter(): Waiter | undefined {
        const w = this.waiters.shift();
        if (this.waiters.length === 0) {
            this.lastQueueEmpty = Date.now();
        }
        if (w !== undefined) {
            clearTimeout(w.timer);
            const waited = Date.now() - w.enqueued;
            POOL_QUEUE_WAIT.fire(() => [this.waiters.length, waited * 1000]);
        }
        return w;
    }

    /* Write waiters at the head of the queue take free places on a shared write connection. */
    private serveWriteWaiters(conn: PoolConn): void {
        while (conn.users < this.writeDepth && this.waiters[0]?.kind === 'write') {
            this.serveShared(conn, this.nextWaiter()!);
        }
    }

    private serveShared(conn: PoolConn, w: Waiter): void {
        this.counters.sharedClaims++;
        conn.users++;
        conn.lastUsed = Date.now();
        w.resolve(new PgHandle(this, conn, w.reqId, true));
    }

    private share(conn: PoolConn, kind: ShareKind): void {
        conn.move(ConnState.SHARED);
        conn.shareKind = kind;
        setPipeline(conn, true);
    }

    private sharedCount(): number {
        let n = 0;
        for (const c of this.conns) {
            if (c.state === ConnState.SHARED) {
                n++;
            }
        }
        return n;
    }

    private checkout(conn: PoolConn, reqId: string): PgHandle {
        conn.move(ConnState.BUSY);
        conn.claimedBy = reqId;
        conn.lastUsed = Date.now();
        return new PgHandle(this, conn, reqId);
    }

    /*
     * Claim a connection for one request.  Rejects with the reference
     * errors: NoDatabasePeersError (overload) or Error "connect ECONNREFUSED".
     */
    claim(reqId: string): Promise<PgHandle> {
        return this.claimAs(reqId, 'exclusive');
    }

    private claimAs(reqId: string, kind: Waiter['kind']): Promise<PgHandle> {
        this.counters.claims++;
        if (this.closing) {
            return Promise.reject(errors.noBackends());
        }
        const maxQ = this.opts.tunables.maxQueueLength;
        if (maxQ > 0 && this.waiters.length >= maxQ) {
            this.counters.rejectedOverload++;
            return Promise.reject(errors.overloaded());
        }
        if (POOL_CHECKOUT.enabled()) {
            const st = this.stats();
            POOL_CHECKOUT.fire(() => [st.total, st.idle, st.pending, st.waiters]);
        }
        if (this.failed) {
            this.counters.rejectedFailed++;
            return Promise.reject(errors.connRefused());
        }
        for (const c of this.conns) {
            if (c.state === ConnState.IDLE && !c.retired) {
                return Promise.resolve(this.checkout(c, reqId));
            }
        }
        this.counters.claimsQueued++;
        const st = this.stats();
        return new Promise<PgHandle>((resolve, reject) => {
            const now = Date.now();
            const target = this.opts.tunables.targetClaimDelay;
            const standing = this.waiters.length > 0 && now - this.lastQueueEmpty > 10 * target;
            const w: Waiter = {
                reqId, kind, enqueued: now, resolve, reject,
                idleAtClaim: st.idle, establishedAtClaim: st.total - st.pending,
                timer: setTimeout(() => {
                    const i = this.waiters.indexOf(w);
                    if (i !== -1) {
                        this.waiters.splice(i, 1);
                    }
                    if (this.waiters.length === 0) {
                        this.lastQueueEmpty = Date.now();
                    }
                    this.counters.claimTimeouts++;
                    const down = this.backend === null ||
                        (w.idleAtClaim === 0 && w.establishedAtClaim <= 2);
                    reject(down ? errors.connRefused() : errors.overloaded());
                }, standing ? 3 * target : 10 * target),
            };
            this.waiters.push(w);
            this.fill();
        });
    }

    /*
     * Claim a place on a shared (pipelined) connection for a request that
     * runs single statements only, outside any transaction; falls back to
     * claim() when no shared connection has room.
     */
    claimShared(reqId: string, kind: ShareKind = 'read'): Promise<PgHandle> {
        const write = kind === 'write';
        const depth = write ? this.writeDepth : this.depth;
        if ((write ? depth === 0 : this.maxShared === 0) || this.closing || this.failed) {
            return this.claim(reqId);
        }
        if (write && this.waiters.length > 0) {
            /* first come, first served: behind the claims already waiting */
            return this.claimAs(reqId, 'write');
        }
        let best: PoolConn | null = null;
        let sameKind = 0;
        let sharedCount = 0;
        for (const c of this.conns) {
            if (c.state !== ConnState.SHARED) {
                continue;
            }
            sharedCount++;
            if (c.shareKind !== kind) {
                continue;
            }
            sameKind++;
            if (!c.retired && !c.broken && c.users < depth &&
                (best === null || c.users < best.users)) {
                best = c;
            }
        }
        /*
         * Spread over another backend while there is an idle connection:
         * reads onto at most pipelineConnections; writes onto any, so that
         * their commits still group, keeping one that never shares.
         */
        const room = sharedCount < this.max - 1 && (write || sameKind < this.maxShared);
        if ((best === null || best.users > 0) && room) {
            for (const c of this.conns) {
                if (c.state === ConnState.IDLE && !c.retired) {
                    this.share(c, kind);
                    best = c;
                    break;
                }
            }
        }
        if (best === null) {
            return write ? this.claimAs(reqId, 'write') : this.claim(reqId);
        }
        this.counters.claims++;
        this.counters.sharedClaims++;
        if (POOL_CHECKOUT.enabled()) {
            const st = this.stats();
            POOL_CHECKOUT.fire(() => [st.total, st.idle, st.pending, st.waiters]);
        }
        best.users++;
        best.lastUsed = Date.now();
        return Promise.resolve(new PgHandle(this, best, reqId, true));
    }

    /*
     * Called before a shared handle writes a statement: cork the socket for
     * the rest of this event-loop turn, so that the statements of every
     * request handled in this turn leave in one write.
     */
    corkShared(conn: PoolConn): void {
        if (conn.corked) {
            return;
        }
        const stream = streamOf(conn);
        if (stream === null) {
            return;
        }
        conn.corked = true;
        stream.cork();
        setImmediate(() => {
            conn.corked = false;
            stream.uncork();
        });
    }

    /* Called by a shared PgHandle's release(). */
    releaseShared(conn: PoolConn, broken: boolean, heldMs: number): void {
        POOL_RELEASE.fire(() => [conn.id, heldMs * 1000]);
        if (conn.state !== ConnState.SHARED) {
            return;
        }
        conn.users--;
        if (broken) {
            /* no new statements behind this one; closed when the last user leaves */
            conn.broken = true;
        }
        if (conn.shareKind === 'write' && !conn.broken && !conn.retired && !this.closing) {
            /* the freed place goes to a waiting write; a waiting transaction gets the connection */
            this.serveWriteWaiters(conn);
        }
        this.unshare(conn);
    }

    /*
     * The last shared user left: back to IDLE, but only once pg has nothing
     * in flight.  A statement whose request timed out while it was queued
     * behind a slow one is still on the wire; in non-pipeline mode pg would
     * hand its late answer to the next request's query.
     */
    private unshare(conn: PoolConn): void {
        if (conn.state !== ConnState.SHARED || conn.users > 0) {
            return;
        }
        if (conn.broken || conn.retired || this.closing) {
            this.destroy(conn, conn.broken ? 'broken' : 'retired');
            this.fill();
            return;
        }
        const c = conn.client as unknown as PgClientQueues;
        if (c._activeQuery || c._sentQueryQueue.length > 0 || c._queryQueue.length > 0) {
            if (!conn.awaitingDrain) {
                conn.awaitingDrain = true;
                conn.client.once('drain', () => {
                    conn.awaitingDrain = false;
                    this.unshare(conn);
                });
            }
            return;
        }
        setPipeline(conn, false);
        conn.shareKind = null;
        conn.move(ConnState.IDLE);
        conn.lastUsed = Date.now();
        this.dispatch(conn);
    }

    /*
     * A dedicated connection outside the pool (LISTEN), to the current
     * primary; the caller owns it.  No primary known → NoDatabasePeersError.
     */
    async dedicatedClient(): Promise<pg.Client> {
        const b = this.backend;
        if (b === null || this.closing) {
            throw errors.noBackends();
        }
        const client = new pg.Client({
            host: b.host, port: b.port, user: this.opts.user, database: this.opts.database,
            keepAlive: true, types: this.opts.types, application_name: 'moray-listen',
            connectionTimeoutMillis: this.attemptTimeout() || undefined,
        });
        client.on('error', () => undefined);
        try {
            await client.connect();
        } catch {
            throw errors.noBackends();
        }
        return client;
    }

    /*
     * Best-effort cancel of the statement running on `conn` (a request
     * timeout): pg_cancel_backend from a short-lived connection, so that
     * PostgreSQL stops the work instead of finishing it for nobody.
     */
    cancelBackend(conn: PoolConn): void {
        const pid = (conn.client as unknown as { processID?: number }).processID;
        const b = conn.backend;
        if (pid === undefined || this.closing) {
            return;
        }
        const c = new pg.Client({ host: b.host, port: b.port, user: this.opts.user,
            database: this.opts.database, application_name: 'moray-cancel',
            connectionTimeoutMillis: this.attemptTimeout() || undefined });
        c.on('error', () => undefined);
        c.connect()
            .then(() => c.query('SELECT pg_cancel_backend($1)', [pid]))
            .catch((err: Error) => this.opts.log.warn({ err, pgConn: conn.id },
                'pg: unable to cancel a timed-out statement'))
            .finally(() => void c.end().catch(() => undefined));
    }

    isClosing(): boolean {
        return this.closing;
    }

    /* Called by PgHandle.release(). */
    release(conn: PoolConn, broken: boolean, heldMs: number): void {
        conn.claimedBy = null;
        conn.currentQuery = null;
        POOL_RELEASE.fire(() => [conn.id, heldMs * 1000]);
        if (conn.state !== ConnState.BUSY) {
            return;
        }
        if (broken || conn.broken || conn.retired || this.closing) {
            this.destroy(conn, broken || conn.broken ? 'broken' : 'retired');
            this.fill();
            return;
        }
        conn.move(ConnState.IDLE);
        conn.lastUsed = Date.now();
        this.dispatch(conn);
    }

    private healthCheck(): void {
        const limit = this.opts.tunables.checkInterval;
        const now = Date.now();
        for (const c of this.conns) {
            if (c.state !== ConnState.IDLE || now - c.lastUsed < limit) {
                continue;
            }
            c.move(ConnState.CHECKING);
            c.client.query('SELECT NOW() AS when').then((r) => {
                if (c.state !== ConnState.CHECKING) {
                    return;
                }
                if (r.rows.length < 1) {
                    throw new Error('health check returned no row');
                }
                c.move(ConnState.IDLE);
                c.lastUsed = Date.now();
                this.dispatch(c);
            }).catch((err: Error) => {
                this.counters.healthChecksFailed++;
                this.opts.log.warn({ err, pgConn: c.id }, 'pg: health check failed');
                this.destroy(c, 'health check failed');
                this.fill();
            });
        }
    }

    private rejectAll(mk: () => MorayError, counter: 'rejectedFailed'): void {
        const ws = this.waiters.splice(0);
        this.lastQueueEmpty = Date.now();
        for (const w of ws) {
            clearTimeout(w.timer);
            this.counters[counter]++;
            w.reject(mk());
        }
    }

    async close(): Promise<void> {
        this.closing = true;
        this.opts.topology.off('primary', this.onPrimary);
        if (this.retryTimer) {
            clearTimeout(this.retryTimer);
        }
        if (this.checkTimer) {
            clearInterval(this.checkTimer);
        }
        const ws = this.waiters.splice(0);
        for (const w of ws) {
            clearTimeout(w.timer);
            w.reject(errors.noBackends());
        }
        const ends: Promise<void>[] = [];
        for (const c of this.conns) {
            if (c.state !== ConnState.CLOSED) {
                c.move(ConnState.CLOSED);
                ends.push(c.client.end().catch(() => undefined));
            }
        }
        this.conns.clear();
        await Promise.race([Promise.all(ends), new Promise((r) => setTimeout(r, 2000).unref())]);
    }
}

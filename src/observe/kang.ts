/*
 * kang snapshots (observability.md §8) of the live server, and the schema
 * that describes them.
 *
 * What the npm `kang` CLI (and tools/kang-inspect) needs from each process:
 *
 *   GET /kang/snapshot ──► {
 *     service: { name, component, ident, version }   origin = name.component.ident
 *     stats:   { <counters>, started, memory }
 *     types:   [ "fastconnection", ... ]
 *     <type>:  { <id>: { ...object... }, ... }        one key per listed type
 *   }
 *
 *   kang -h host:3021,host:3022 ──► fetches every /kang/snapshot, tags each
 *   object with `origin`, and merges objects of the same type and id from
 *   all processes into one list (type → id → [obj, obj, ...]).
 *
 * Every object is a plain JSON object (the CLI writes `obj.origin` and
 * `obj[type] = id` into it: strings and numbers would not survive), and ids
 * are strings.  A string of the form "type:id" links to another object
 * (kang's convention), e.g. fastrequest.conn = "fastconnection:3".
 *
 * Types (the first two are the reference's; the rest are added):
 *
 *   fastconnection   connId        open client connections
 *   fastrequest      connId/msgid  requests in flight
 *   pg_connection    id            PostgreSQL pool connections
 *   pg_pool          "pool"        pool occupancy and current backend
 *   topology         "primary"     where the primary is (static or Manatee)
 *   bucket           bucket name   the bucket cache's entries
 *   counters         component     every drop/reject counter: fast, pool,
 *                                  bucket_cache, topology, log_snoop
 *   probe            provider:name every USDT probe: enabled now, times fired
 *
 * The schema (/kang/schema) is kang's {service, types, schemas} document;
 * each schema is JSON-Schema shaped ({type, description, key, properties})
 * and generated from the same table as the snapshot, so the two cannot
 * drift apart (a test checks that every field in a snapshot is described).
 *
 * Building a snapshot walks live maps; it is synchronous and allocates in
 * proportion to connections + requests + pool size + 100 cache entries.
 * Nothing here is on the request path.
 */

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { MorayServer } from '../app';
import { allProbes, backendName } from '../probes';
import { packageRoot } from '../probes/package-root';
import { logSnoopStats } from './log-probe';

const STARTED = new Date(Date.now() - process.uptime() * 1000).toISOString();

type Obj = Record<string, unknown>;

interface Field {
    readonly type: string;
    readonly description: string;
}

interface KangType {
    readonly name: string;
    readonly description: string;
    /* what the object ids are */
    readonly key: string;
    readonly properties: Readonly<Record<string, Field>>;
    objects(server: MorayServer): Record<string, Obj>;
}

const f = (type: string, description: string): Field => ({ type, description });

/* ---- per-type builders ---- */

const fastconnection: KangType = {
    name: 'fastconnection',
    description: 'an open Fast client connection',
    key: 'connection id (connId in the logs)',
    properties: {
        connid: f('integer', 'connection id'),
        addrinfo: f('object', 'remoteAddress, remotePort, socketType, localAddress, localPort, label'),
        nStarted: f('integer', 'requests started on this connection'),
        nCompleted: f('integer', 'requests completed successfully'),
        nFailed: f('integer', 'requests completed with an error'),
        nIgnoredErrors: f('integer', 'client messages ignored (aborts, bad status)'),
        draining: f('boolean', 'client half-closed; waiting for requests in flight'),
        state: f('string', 'OPEN, DRAINING, DETACHED or CLOSED'),
        readPaused: f('boolean', 'reading stopped by back-pressure'),
        unsentBytes: f('integer', 'bytes queued on the socket, not yet sent'),
        inflight: f('integer', 'requests in flight'),
        errorSocket: f('string|null', 'socket error that ended the connection'),
        errorServer: f('string|null', 'protocol error or shutdown that ended it'),
        timeAccepted: f('string', 'ISO time the connection was accepted'),
        ageMs: f('integer', 'milliseconds since accepted'),
    },
    objects(server) {
        const out: Record<string, Obj> = {};
        for (const c of server.fast.connections.values()) {
            out[String(c.id)] = {
                connid: c.id, addrinfo: c.addrinfo(),
                nStarted: c.nStarted, nCompleted: c.nCompleted, nFailed: c.nFailed,
                nIgnoredErrors: c.nIgnoredErrors,
                draining: c.state === 'DRAINING', state: c.state, readPaused: c.paused,
                unsentBytes: c.unsentBytes(), inflight: c.pending.size,
                errorSocket: c.errorSocket, errorServer: c.errorServer,
                timeAccepted: c.timeAccepted.toISOString(),
                ageMs: Date.now() - c.timeAccepted.getTime(),
            };
        }
        return out;
    },
};

const fastrequest: KangType = {
    name: 'fastrequest',
    description: 'a Fast request in flight',
    key: 'connId/msgid',
    properties: {
        connid: f('string', 'connection id'),
        msgid: f('string', 'Fast message id'),
        conn: f('string', 'link to the fastconnection ("fastconnection:<id>")'),
        rpcmethod: f('string', 'RPC method'),
        rpcargs: f('array', 'arguments as received'),
        req_id: f('string|null', 'request id (from the options, else generated)'),
        state: f('string', 'RUNNING (only requests in flight are listed)'),
        phase: f('string', 'pipeline step the request is in'),
        error: f('null', 'always null for requests in flight'),
        blackholed: f('boolean', 'connection gone; output is discarded'),
        timeStarted: f('string', 'ISO time the request arrived'),
        ageMs: f('integer', 'milliseconds since it arrived'),
    },
    objects(server) {
        const out: Record<string, Obj> = {};
        for (const c of server.fast.connections.values()) {
            for (const r of c.pending.values()) {
                out[`${c.id}/${r.msgid}`] = {
                    connid: String(c.id), msgid: String(r.msgid), conn: `fastconnection:${c.id}`,
                    rpcmethod: r.method, rpcargs: r.args, req_id: r.reqId ?? null,
                    state: 'RUNNING', phase: r.phase, error: null, blackholed: r.detached,
                    timeStarted: r.timeStarted.toISOString(), ageMs: Math.round(r.ageMs()),
                };
            }
        }
        return out;
    },
};

const pgConnection: KangType = {
    name: 'pg_connection',
    description: 'a PostgreSQL connection of the pool',
    key: 'pool connection id (pgConn in the logs)',
    properties: {
        id: f('integer', 'pool connection id'),
        state: f('string', 'CONNECTING, IDLE, BUSY, SHARED, CHECKING or CLOSED'),
        backend: f('string', 'host:port of the PostgreSQL it is connected to'),
        claimedBy: f('string|null', 'req_id of the request holding it (BUSY)'),
        sharedUsers: f('integer', 'requests with a statement in flight on it (SHARED)'),
        shareKind: f('string|null', 'SHARED: "read" (getObject) or "write" (one-statement putObject)'),
        currentQuery: f('string|null', 'statement running now'),
        retired: f('boolean', 'primary changed: closed when released'),
        stateAgeMs: f('integer', 'milliseconds in the current state'),
    },
    objects(server) {
        const out: Record<string, Obj> = {};
        for (const p of server.pool.connections()) {
            out[String(p.id)] = {
                id: p.id, state: p.state, backend: p.backend.key, claimedBy: p.claimedBy,
                sharedUsers: p.users, shareKind: p.shareKind, currentQuery: p.currentQuery,
                retired: p.retired,
                stateAgeMs: Date.now() - p.since,
            };
        }
        return out;
    },
};

const pgPool: KangType = {
    name: 'pg_pool',
    description: 'the PostgreSQL connection pool (one per process)',
    key: '"pool"',
    properties: {
        total: f('integer', 'open connections (postgres_connections_open)'),
        idle: f('integer', 'idle connections (postgres_connections_available)'),
        pending: f('integer', 'connecting or health-checking (postgres_connections_pending)'),
        shared: f('integer', 'connections shared by pipelined reads or writes (SHARED)'),
        sharedWrite: f('integer', 'of which shared by one-statement writes'),
        sharedUsers: f('integer', 'requests with a statement in flight on shared connections'),
        waiters: f('integer', 'claims queued for a connection (request_queue_depth)'),
        failed: f('boolean', 'database unreachable: claims fail at once'),
        backend: f('string|null', 'host:port of the current primary'),
        counters: f('object', 'see counters:pool'),
    },
    objects(server) {
        return { pool: { ...server.pool.stats(),
            backend: server.pool.currentBackend()?.key ?? null, counters: 'counters:pool' } };
    },
};

const topology: KangType = {
    name: 'topology',
    description: 'where the PostgreSQL primary is (standalone URL or Manatee)',
    key: '"primary"',
    properties: {
        kind: f('string', 'static or manatee'),
        state: f('string', 'follower state'),
        zkState: f('string|null', 'ZooKeeper client state'),
        sessionId: f('string|null', 'ZooKeeper session id'),
        path: f('string|null', 'Manatee shard path'),
        connStr: f('string|null', 'ZooKeeper connection string'),
        source: f('string|null', 'where the primary came from: state, election, static'),
        generation: f('integer|null', 'Manatee cluster state generation'),
        primary: f('object|null', '{key, host, port}'),
        lastChange: f('string|null', 'ISO time of the last primary change'),
        zkLatencyMs: f('number|null', 'last watchdog round trip'),
        counters: f('object', 'see counters:topology'),
    },
    objects(server) {
        return { primary: { ...server.topology.snapshot(), counters: 'counters:topology' } };
    },
};

const bucket: KangType = {
    name: 'bucket',
    description: 'a bucket configuration in this process\'s bucket cache',
    key: 'bucket name',
    properties: {
        name: f('string', 'bucket name'),
        version: f('integer', 'options.version of the cached config'),
        loadedAt: f('string', 'ISO time it was read from PostgreSQL'),
        ageMs: f('integer', 'milliseconds since loaded (dropped after 300 s)'),
        mtime: f('string', 'buckets_config.mtime of the cached row'),
        indexes: f('array', 'declared index fields'),
        reindexing: f('array', 'index fields still being reindexed (not usable in filters)'),
        hasExtendedId: f('boolean', 'the table has the _idx column with a valid index'),
        guaranteeOrder: f('boolean', 'options.guaranteeOrder'),
        pre: f('integer', 'number of pre triggers'),
        post: f('integer', 'number of post triggers'),
    },
    objects(server) {
        const out: Record<string, Obj> = {};
        for (const b of server.services.buckets.entries()) {
            out[b.name] = {
                name: b.name, version: b.version,
                loadedAt: new Date(b.loadedAt).toISOString(), ageMs: Date.now() - b.loadedAt,
                mtime: b.mtime instanceof Date ? b.mtime.toISOString() : String(b.mtime),
                indexes: Object.keys(b.index), reindexing: [...b.reindexing].sort(),
                hasExtendedId: b.hasExtendedId, guaranteeOrder: b.guaranteeOrder,
                pre: b.pre.length, post: b.post.length,
            };
        }
        return out;
    },
};

/*
 * counters: every dropped or rejected thing, per component (STYLE habit 11).
 * Fields a component does not have yet (see the hooks in docs/operations.md)
 * are simply absent.
 */
function ownNumbers(o: object): Obj {
    const out: Obj = {};
    for (const [k, v] of Object.entries(o)) {
        if (typeof v === 'number' || (typeof v === 'object' && v !== null)) {
            out[k] = typeof v === 'object' ? { ...v as object } : v;
        }
    }
    return out;
}

const counters: KangType = {
    name: 'counters',
    description: 'the counters of one component (flat: one field per counter); every ' +
        'dropped or rejected thing is counted in one of them',
    key: 'fast, pool, bucket_cache, topology or log_snoop',
    properties: {
        component: f('string', 'the component (same as the id)'),
        '<counter>': f('integer|object', 'one field per counter: count since start ' +
            '(fast.protocolErrors is an object: reason -> count)'),
        drops: f('array', 'which of the fields count dropped or rejected work'),
    },
    objects(server) {
        const cache = server.services.buckets as unknown as Record<string, unknown>;
        const cacheCounters: Obj = {};
        for (const k of ['hits', 'misses', 'evictions', 'lruDrops', 'expired']) {
            if (typeof cache[k] === 'number') {
                cacheCounters[k] = cache[k];
            }
        }
        cacheCounters['size'] = server.services.buckets.entries().length;
        const pool = ownNumbers(server.pool.counters);
        const snoop = logSnoopStats();
        const entry = (component: string, values: Obj, drops: string[]): Obj =>
            ({ component, ...values, drops: drops.filter((k) => k in values) });
        return {
            fast: entry('fast', ownNumbers(server.fast.counters), ['nIgnoredMessagesNoConn',
                'nIgnoredMessagesBadConn', 'nIgnoredMessagesAborts', 'nUnknownMethod',
                'nHandlerBugs', 'socketErrors', 'protocolErrors']),
            pool: entry('pool', pool, ['connectErrors', 'connectTimeouts', 'connectCloses', 'destroyed',
                'rejectedOverload', 'rejectedFailed', 'claimTimeouts', 'healthChecksFailed',
                'errorsWhileIdle', 'errorsWhileClaimed', 'failedTransitions']),
            bucket_cache: entry('bucket_cache', cacheCounters, ['evictions', 'lruDrops', 'expired']),
            topology: entry('topology', ownNumbers(server.topology.snapshot().counters),
                ['malformedStates', 'watchdogTrips', 'connectTimeouts', 'expirations',
                    'readErrors']),
            log_snoop: entry('log_snoop', { records: snoop.records, truncated: snoop.truncated,
                attachments: snoop.attachments }, ['truncated']),
        };
    },
};

const probeType: KangType = {
    name: 'probe',
    description: 'a USDT probe of the probe table',
    key: 'provider:name',
    properties: {
        provider: f('string', 'moray or fastserver'),
        name: f('string', 'probe name (rpc-start is rpc__start in D and bpftrace)'),
        enabled: f('boolean', 'a tracer is attached right now'),
        fired: f('integer', 'times fired while enabled'),
        args: f('array', 'argument names'),
    },
    objects() {
        const out: Record<string, Obj> = {};
        for (const h of allProbes()) {
            out[`${h.def.provider}:${h.def.name}`] = {
                provider: h.def.provider, name: h.def.name, enabled: h.enabled(),
                fired: h.fired, args: h.def.args.map(([n]) => n),
            };
        }
        return out;
    },
};

export const KANG_TYPES: readonly KangType[] = [
    fastconnection, fastrequest, pgConnection, pgPool, topology, bucket, counters, probeType,
];

let version: string | undefined;

function packageVersion(): string {
    if (version === undefined) {
        try {
            const pkg = JSON.parse(fs.readFileSync(path.join(packageRoot(), 'package.json'),
                'utf8')) as { version?: string };
            version = pkg.version ?? '0.0.0';
        } catch {
            version = '0.0.0';
        }
    }
    return version;
}

export function kangService(server: MorayServer): Obj {
    return {
        name: 'moray', component: 'moray-server',
        ident: `${os.hostname()}/${process.pid}`, version: packageVersion(),
        /* added: which process this is, for several per host */
        port: server.fast.address()?.port ?? server.config.port,
        pid: process.pid,
    };
}

export function kangStats(server: MorayServer): Obj {
    const fc = server.fast.counters;
    return {
        /* the reference's (node-fast) fields */
        nConnectionsActive: fc.nConnectionsActive,
        nIgnoredMessagesNoConn: fc.nIgnoredMessagesNoConn,
        nIgnoredMessagesBadConn: fc.nIgnoredMessagesBadConn,
        nIgnoredMessagesAborts: fc.nIgnoredMessagesAborts,
        nConnectionsCreated: fc.nConnectionsCreated,
        nRequestsStarted: fc.nRequestsStarted,
        nRequestsCompleted: fc.nRequestsCompleted,
        nRequestsFailed: fc.nRequestsFailed,
        /* added */
        nUnknownMethod: fc.nUnknownMethod,
        nHandlerBugs: fc.nHandlerBugs,
        nReadPauses: fc.nReadPauses,
        nSocketErrors: fc.socketErrors,
        protocolErrors: { ...fc.protocolErrors },
        inflight: server.fast.inflight(),
        probeBackend: backendName(),
        logSnoop: logSnoopStats(),
        uptimeSeconds: Math.round(process.uptime()),
        started: STARTED,
        memory: process.memoryUsage(),
    };
}

export function kangSnapshot(server: MorayServer): Obj {
    const snap: Obj = {
        service: kangService(server),
        stats: kangStats(server),
        types: KANG_TYPES.map((t) => t.name),
    };
    for (const t of KANG_TYPES) {
        snap[t.name] = t.objects(server);
    }
    return snap;
}

export function kangSchema(server: MorayServer): Obj {
    const schemas: Obj = {};
    for (const t of KANG_TYPES) {
        schemas[t.name] = {
            type: 'object', description: t.description, key: t.key,
            properties: t.properties,
        };
    }
    return { service: kangService(server), types: KANG_TYPES.map((t) => t.name), schemas };
}

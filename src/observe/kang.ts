/*
 * kang snapshots (observability.md §8) of the live server.  The npm `kang`
 * CLI reads /kang/snapshot from one or several processes and merges them;
 * it needs `service`, `stats`, `types` and one object per listed type.
 *
 * Types: fastconnection and fastrequest (the reference's), plus
 * pg_connection, pg_pool, topology and counters.
 */

import * as os from 'node:os';
import type { MorayServer } from '../app';

const STARTED = new Date().toISOString();
const TYPES = ['fastconnection', 'fastrequest', 'pg_connection', 'pg_pool', 'topology'] as const;

export function kangSnapshot(server: MorayServer): Record<string, unknown> {
    const fc = server.fast.counters;
    const conns: Record<string, unknown> = {};
    const reqs: Record<string, unknown> = {};
    for (const c of server.fast.connections.values()) {
        conns[String(c.id)] = {
            connid: c.id, addrinfo: c.addrinfo(),
            nStarted: c.nStarted, nCompleted: c.nCompleted, nFailed: c.nFailed,
            nIgnoredErrors: c.nIgnoredErrors,
            draining: c.state === 'DRAINING', state: c.state, readPaused: c.paused,
            unsentBytes: c.unsentBytes(), inflight: c.pending.size,
            errorSocket: c.errorSocket, errorServer: c.errorServer,
            timeAccepted: c.timeAccepted.toISOString(),
            ageMs: Date.now() - c.timeAccepted.getTime(),
        };
        for (const r of c.pending.values()) {
            reqs[`${c.id}/${r.msgid}`] = {
                connid: String(c.id), msgid: String(r.msgid), rpcmethod: r.method,
                rpcargs: r.args, req_id: r.reqId ?? null, state: 'RUNNING', phase: r.phase,
                error: null, blackholed: r.detached, timeStarted: r.timeStarted.toISOString(),
                ageMs: Math.round(r.ageMs()),
            };
        }
    }
    const pgc: Record<string, unknown> = {};
    for (const p of server.pool.connections()) {
        pgc[String(p.id)] = {
            id: p.id, state: p.state, backend: p.backend.key, claimedBy: p.claimedBy,
            currentQuery: p.currentQuery, retired: p.retired,
            stateAgeMs: Date.now() - p.since,
        };
    }
    return {
        service: { name: 'moray', component: 'moray-server',
            ident: `${os.hostname()}/${process.pid}`, version: '2' },
        stats: {
            nConnectionsActive: fc.nConnectionsActive,
            nConnectionsCreated: fc.nConnectionsCreated,
            nRequestsStarted: fc.nRequestsStarted,
            nRequestsCompleted: fc.nRequestsCompleted,
            nRequestsFailed: fc.nRequestsFailed,
            nIgnoredMessagesNoConn: fc.nIgnoredMessagesNoConn,
            nIgnoredMessagesBadConn: fc.nIgnoredMessagesBadConn,
            nIgnoredMessagesAborts: fc.nIgnoredMessagesAborts,
            nUnknownMethod: fc.nUnknownMethod,
            nHandlerBugs: fc.nHandlerBugs,
            nReadPauses: fc.nReadPauses,
            nSocketErrors: fc.socketErrors,
            protocolErrors: fc.protocolErrors,
            pool: server.pool.counters,
            started: STARTED,
            memory: process.memoryUsage(),
        },
        types: [...TYPES],
        fastconnection: conns,
        fastrequest: reqs,
        pg_connection: pgc,
        pg_pool: { pool: { ...server.pool.stats(), backend: server.pool.currentBackend()?.key ?? null,
            counters: server.pool.counters } },
        topology: { primary: server.topology.snapshot() },
    };
}

export function kangSchema(server: MorayServer): Record<string, unknown> {
    const snap = kangSnapshot(server);
    return { service: snap['service'], types: snap['types'], schemas: {} };
}

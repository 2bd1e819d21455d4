/*
 * The Fast RPC server: accepts connections, dispatches requests to the
 * registered handlers, and keeps the counters kang and metrics show.
 *
 *   net.Server ─accept─► FastConnection ─request─► dispatch(method)
 *                                                    ├─ registered: handler(req) → END / ERROR
 *                                                    └─ unknown:    FastError "unsupported RPC method"
 *
 * Server states: LISTENING ─close()─► DRAINING ─all connections gone─► CLOSED.
 * close() stops accepting, lets requests in flight finish (bounded by the
 * caller's timeout; after it, remaining connections are detached), and
 * resolves when every connection is gone.
 *
 * A handler that throws a non-Moray error is a bug: the client gets
 * InternalError, the error is logged at error level and counted; the
 * process keeps serving.
 */

import * as net from 'node:net';
import { FastConnection, type ConnLogger } from './connection';
import type { FastRequest } from './request';
import { errors, MorayError } from '../errors/catalog';
import { probe } from '../probes';

const CONN_CREATE = probe('fastserver', 'conn-create');
const CONN_DESTROY = probe('fastserver', 'conn-destroy');
const RPC_START = probe('fastserver', 'rpc-start');
const RPC_DONE = probe('fastserver', 'rpc-done');

export type FastHandler = (req: FastRequest, conn: FastConnection) => Promise<void>;

export interface FastLimits {
    readonly maxFrameBytes: number;
    readonly maxRequestsPerConnection: number;
    readonly maxUnsentBytesPerConnection: number;
}

export interface FastCounters {
    nConnectionsCreated: number;
    nConnectionsActive: number;
    nRequestsStarted: number;
    nRequestsCompleted: number;
    nRequestsFailed: number;
    nIgnoredMessagesNoConn: number;
    nIgnoredMessagesBadConn: number;
    nIgnoredMessagesAborts: number;
    nUnknownMethod: number;
    nHandlerBugs: number;
    nReadPauses: number;
    socketErrors: number;
    protocolErrors: Record<string, number>;
}

let serverIds = 0;

export class FastServer {
    readonly id = ++serverIds;
    private readonly handlers = new Map<string, FastHandler>();
    readonly connections = new Map<number, FastConnection>();
    private nextConnId = 1;
    private readonly server: net.Server;
    private closedWaiters: (() => void)[] = [];
    private closing = false;
    /* metrics hook: unknown methods are counted like the reference's */
    onUnknownMethod: ((method: string, seconds: number) => void) | null = null;
    readonly counters: FastCounters = {
        nConnectionsCreated: 0, nConnectionsActive: 0, nRequestsStarted: 0,
        nRequestsCompleted: 0, nRequestsFailed: 0, nIgnoredMessagesNoConn: 0,
        nIgnoredMessagesBadConn: 0, nIgnoredMessagesAborts: 0, nUnknownMethod: 0,
        nHandlerBugs: 0, nReadPauses: 0, socketErrors: 0, protocolErrors: {},
    };

    constructor(readonly limits: FastLimits, private readonly log: ConnLogger) {
        this.server = net.createServer({ allowHalfOpen: true }, (s) => this.accept(s));
    }

    register(method: string, handler: FastHandler): void {
        if (this.handlers.has(method)) {
            throw new Error(`RPC method ${method} registered twice`);
        }
        this.handlers.set(method, handler);
        this.log.info({ rpcmethod: method }, 'registered RPC method');
    }

    methods(): string[] {
        return [...this.handlers.keys()];
    }

    listen(port: number, host: string): Promise<net.AddressInfo> {
        return new Promise((resolve, reject) => {
            const onError = (err: Error) => reject(err);
            this.server.once('error', onError);
            this.server.listen(port, host, () => {
                this.server.off('error', onError);
                resolve(this.server.address() as net.AddressInfo);
            });
        });
    }

    address(): net.AddressInfo | null {
        return this.server.address() as net.AddressInfo | null;
    }

    private accept(socket: net.Socket): void {
        if (this.closing) {
            socket.destroy();
            return;
        }
        const conn = new FastConnection(this.nextConnId++, socket, this, this.log);
        this.connections.set(conn.id, conn);
        this.counters.nConnectionsCreated++;
        this.counters.nConnectionsActive++;
        CONN_CREATE.fire(() => [this.id, conn.id, conn.label]);
        conn.log.debug('connection received');
    }

    removeConnection(conn: FastConnection): void {
        if (!this.connections.delete(conn.id)) {
            return;
        }
        this.counters.nConnectionsActive--;
        CONN_DESTROY.fire(() => [this.id, conn.id]);
        conn.log.debug('removing drained connection');
        if (this.closing && this.connections.size === 0) {
            const ws = this.closedWaiters.splice(0);
            for (const w of ws) {
                w();
            }
        }
    }

    countProtocolError(reason: string): void {
        this.counters.protocolErrors[reason] = (this.counters.protocolErrors[reason] ?? 0) + 1;
    }

    dispatch(conn: FastConnection, req: FastRequest): void {
        const handler = this.handlers.get(req.method);
        if (handler === undefined) {
            this.counters.nUnknownMethod++;
            this.onUnknownMethod?.(req.method, req.ageMs() / 1000);
            conn.finish(req, errors.fastUnsupportedMethod(req.method, req.msgid).toWire());
            return;
        }
        RPC_START.fire(() => [this.id, conn.id, req.msgid, req.method]);
        let p: Promise<void>;
        try {
            p = handler(req, conn);
        } catch (err) {
            p = Promise.reject(err);
        }
        p.then(() => {
            conn.finish(req, null);
            RPC_DONE.fire(() => [this.id, conn.id, req.msgid]);
        }, (err: unknown) => {
            if (!(err instanceof MorayError)) {
                this.counters.nHandlerBugs++;
                conn.log.error({ err, msgid: req.msgid, rpcMethod: req.method },
                    'handler failed with an unexpected error');
            }
            conn.fail(req, err);
            RPC_DONE.fire(() => [this.id, conn.id, req.msgid]);
        }).catch((err: unknown) => {
            /* finish() itself threw: a bug in the Fast layer; keep serving */
            this.counters.nHandlerBugs++;
            this.log.error({ err }, 'fast: failed to complete a request');
        });
    }

    inflight(): number {
        let n = 0;
        for (const c of this.connections.values()) {
            n += c.pending.size;
        }
        return n;
    }

    /*
     * Stop accepting; let in-flight requests finish for up to `timeoutMs`;
     * then detach whatever is left.
     */
    async close(timeoutMs: number): Promise<void> {
        this.closing = true;
        const listening = new Promise<void>((r) => this.server.close(() => r()));
        for (const c of this.connections.values()) {
            c.drainForShutdown();
        }
        if (this.connections.size > 0) {
            let timer: NodeJS.Timeout | undefined;
            await Promise.race([
                new Promise<void>((r) => this.closedWaiters.push(r)),
                new Promise<void>((r) => { timer = setTimeout(r, timeoutMs); }),
            ]);
            clearTimeout(timer);
            for (const c of [...this.connections.values()]) {
                c.detach();
            }
        }
        await listening;
    }
}

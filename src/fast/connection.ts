/*
 * One client connection of the Fast server.
 *
 *   socket ─data─► FastDecoder ─message─► dispatch ─► handler(FastRequest)
 *      ▲                                                   │ write()/end
 *      └──────────────── frames (DATA/END/ERROR) ◄─────────┘
 *
 * Connection states:
 *
 *   OPEN ──client FIN──► DRAINING ──last request done──► CLOSED
 *     │                     │
 *     └──protocol error / socket error / server shutdown (force)──► DETACHED
 *                                              ──last handler returns──► CLOSED
 *
 *  OPEN       reading requests.
 *  DRAINING   the client half-closed: no new requests, pending ones finish
 *             and their responses are sent, then the socket is closed
 *             (fast-protocol.md §1 "Half close").
 *  DETACHED   the byte stream can no longer be trusted, or the peer is gone:
 *             the socket is destroyed, handlers still in flight run to the
 *             end but their output is discarded (§8.1, §9).
 *  CLOSED     nothing left; conn-destroy fired.
 *
 * Back-pressure (orthogonal to the state): reading stops while the number
 * of in-flight requests reaches maxRequests or the socket's unsent bytes
 * pass maxUnsentBytes, and resumes when both are back under their limits
 * (unsent bytes under half).  Streaming handlers see write() return false
 * and wait for drain.  So a client that pipelines without reading its
 * responses holds at most ~maxUnsentBytes + one chunk of server memory.
 *
 * Every malformed input closes this one connection, with one log record and
 * one counter per reason; it never throws out of here.
 */

import type * as net from 'node:net';
import { FP_STATUS_END, FP_STATUS_ERROR } from './constants';
import { FastDecoder } from './decoder';
import { encodeEnd, encodeError } from './encoder';
import { requestMethodName, type FastMessage } from './message';
import { FastProtocolError } from './protocol-error';
import { FastRequest, RequestState, type RequestSink } from './request';
import { errors, toWireError, type WireError } from '../errors/catalog';
import type { FastServer } from './server';

export const ConnState = {
    OPEN: 'OPEN',
    DRAINING: 'DRAINING',
    DETACHED: 'DETACHED',
    CLOSED: 'CLOSED',
} as const;
export type ConnState = typeof ConnState[keyof typeof ConnState];

const LEGAL: Record<ConnState, readonly ConnState[]> = {
    OPEN: ['DRAINING', 'DETACHED', 'CLOSED'],
    DRAINING: ['DETACHED', 'CLOSED'],
    DETACHED: ['CLOSED'],
    CLOSED: [],
};

export interface ConnLogger {
    info(...a: unknown[]): void;
    warn(...a: unknown[]): void;
    error(...a: unknown[]): void;
    debug(...a: unknown[]): void;
    child(fields: Record<string, unknown>): ConnLogger;
}

/* A well-formed frame that breaks the conversation rules (§8.2). */
export class SessionViolation extends Error {
    override readonly name = 'FastProtocolError';
    constructor(readonly reason: 'unexpected_status' | 'duplicate_msgid', message: string) {
        super(message);
    }
}

export class FastConnection implements RequestSink {
    state: ConnState = ConnState.OPEN;
    readonly pending = new Map<number, FastRequest>();
    readonly timeAccepted = new Date();
    readonly label: string;
    nStarted = 0;
    nCompleted = 0;
    nFailed = 0;
    nIgnoredErrors = 0;
    errorSocket: string | null = null;
    errorServer: string | null = null;
    private readPaused = false;
    private drainWaiters: (() => void)[] = [];
    private detachCbs: (() => void)[] = [];
    private endCbs: (() => void)[] | null = [];
    private readonly decoder: FastDecoder;
    readonly log: ConnLogger;

    constructor(
        readonly id: number,
        private readonly socket: net.Socket,
        private readonly server: FastServer,
        log: ConnLogger,
    ) {
        this.label = socket.remoteAddress !== undefined ?
            `${socket.remoteAddress}:${socket.remotePort}` : 'UDS';
        this.log = log.child({ connId: id, client: this.label });
        this.decoder = new FastDecoder({ maxFrameBytes: server.limits.maxFrameBytes });
        socket.setNoDelay(true);
        socket.on('data', (chunk: Buffer) => this.onData(chunk));
        socket.on('end', () => this.onEnd());
        socket.on('error', (err: Error) => this.onSocketError(err));
        socket.on('close', () => this.onClose());
        socket.on('drain', () => this.onDrain());
    }

    get detached(): boolean {
        return this.state === ConnState.DETACHED || this.state === ConnState.CLOSED;
    }

    private move(to: ConnState): void {
        if (!LEGAL[this.state].includes(to)) {
            throw new Error(`fast connection ${this.id}: illegal move ${this.state} -> ${to}`);
        }
        this.state = to;
    }

    addrinfo(): Record<string, unknown> {
        const s = this.socket;
        if (s.remoteAddress === undefined) {
            return { socketType: 'UDS (inferred)', label: 'UDS' };
        }
        return {
            remoteAddress: s.remoteAddress, remotePort: s.remotePort,
            socketType: s.remoteFamily, localAddress: s.localAddress,
            localPort: s.localPort, label: this.label,
        };
    }

    unsentBytes(): number {
        return this.socket.writableLength;
    }

    /* ---- input ---- */

    private onData(chunk: Buffer): void {
        if (this.state !== ConnState.OPEN) {
            this.server.counters.nIgnoredMessagesBadConn++;
            return;
        }
        try {
            this.decoder.write(chunk);
            for (;;) {
                if (this.state !== ConnState.OPEN) {
                    return;
                }
                const msg = this.decoder.read();
                if (msg === undefined) {
                    break;
                }
                this.onMessage(msg);
            }
        } catch (err) {
            this.protocolError(err);
            return;
        }
        this.checkFlow();
    }

    private onMessage(msg: FastMessage): void {
        if (msg.status === FP_STATUS_ERROR) {
            /* old clients' cancellation request: ignored (fast-protocol.md §8.2) */
            this.nIgnoredErrors++;
            this.server.counters.nIgnoredMessagesAborts++;
            return;
        }
        if (msg.status === FP_STATUS_END) {
            throw new SessionViolation('unexpected_status', 'unexpected END event from client');
        }
        if (this.pending.has(msg.msgid)) {
            throw new SessionViolation('duplicate_msgid',
                `duplicate msgid ${msg.msgid} while a request with that id is in flight`);
        }
        const method = requestMethodName(msg);
        const d = msg.data.d;
        const methodLabel = method ?? '';
        const req = new FastRequest(this.id, msg.msgid, msg.version, methodLabel,
            Array.isArray(d) ? d : [], this);
        this.pending.set(msg.msgid, req);
        this.nStarted++;
        this.server.counters.nRequestsStarted++;
        if (method === undefined || !Array.isArray(d)) {
            this.finish(req, errors.fastNotWellFormed(msg.msgid, msg.data).toWire(), true);
            return;
        }
        this.server.dispatch(this, req);
    }

    private onEnd(): void {
        if (this.state !== ConnState.OPEN) {
            return;
        }
        try {
            this.decoder.end();
        } catch (err) {
            this.protocolError(err);
            return;
        }
        this.log.debug('client ended its side; draining');
        this.move(ConnState.DRAINING);
        this.runEndCallbacks();
        this.maybeClose();
    }

    private onSocketError(err: Error): void {
        this.errorSocket = err.message;
        this.server.counters.socketErrors++;
        this.log.warn({ err }, 'socket error');
        this.detach();
    }

    private onClose(): void {
        if (this.state === ConnState.OPEN || this.state === ConnState.DRAINING) {
            this.detach();
        }
    }

    private protocolError(err: unknown): void {
        const reason = err instanceof FastProtocolError || err instanceof SessionViolation ?
            err.reason : 'internal';
        this.errorServer = err instanceof Error ? err.message : String(err);
        this.server.countProtocolError(reason);
        this.log.warn({ err, fastReason: reason }, 'fast protocol error; closing connection');
        this.detach();
    }

    /* Destroy the socket now; requests in flight are blackholed. */
    detach(): void {
        if (this.state === ConnState.DETACHED || this.state === ConnState.CLOSED) {
            return;
        }
        this.move(ConnState.DETACHED);
        this.socket.destroy();
        this.runEndCallbacks();
        const cbs = this.detachCbs.splice(0);
        for (const cb of cbs) {
            try {
                cb();
            } catch (err) {
                this.log.error({ err }, 'onDetach callback threw');
            }
        }
        this.wakeDrainWaiters();
        this.maybeClose();
    }

    private runEndCallbacks(): void {
        const cbs = this.endCbs;
        this.endCbs = null;
        for (const cb of cbs ?? []) {
            try {
                cb();
            } catch (err) {
                this.log.error({ err }, 'onClientEnd callback threw');
            }
        }
    }

    onClientEnd(cb: () => void): void {
        if (this.endCbs === null) {
            cb();
            return;
        }
        this.endCbs.push(cb);
    }

    /* ---- output ---- */

    /*
     * Every frame goes through here.  Frames written during one turn of the
     * event loop (a getObject's DATA and END, a find's records, the answers
     * to a burst of pipelined requests) leave in one writev: the socket is
     * corked on the first write and uncorked by setImmediate, after the
     * current I/O phase.  One syscall per RPC instead of one per frame was
     * the largest single cost in the getObject profile.
     */
    private corked = false;

    private write(frame: Buffer): void {
        if (!this.corked) {
            this.corked = true;
            this.socket.cork();
            setImmediate(this.uncork);
        }
        this.socket.write(frame);
    }

    private readonly uncork = (): void => {
        this.corked = false;
        this.socket.uncork();
    };

    send(frame: Buffer): boolean {
        if (this.detached) {
            return true;
        }
        this.write(frame);
        const full = this.socket.writableLength >= this.server.limits.maxUnsentBytesPerConnection;
        if (full) {
            this.checkFlow();
        }
        return !full;
    }

    waitDrain(): Promise<void> {
        if (this.detached ||
            this.socket.writableLength < this.server.limits.maxUnsentBytesPerConnection) {
            return Promise.resolve();
        }
        return new Promise((resolve) => this.drainWaiters.push(resolve));
    }

    onDetach(cb: () => void): void {
        if (this.detached) {
            cb();
            return;
        }
        this.detachCbs.push(cb);
    }

    private onDrain(): void {
        this.wakeDrainWaiters();
        this.checkFlow();
    }

    private wakeDrainWaiters(): void {
        const ws = this.drainWaiters.splice(0);
        for (const w of ws) {
            w();
        }
    }

    /* Pause or resume reading according to the two limits. */
    private checkFlow(): void {
        if (this.state !== ConnState.OPEN) {
            return;
        }
        const lim = this.server.limits;
        const unsent = this.socket.writableLength;
        if (!this.readPaused) {
            if (this.pending.size >= lim.maxRequestsPerConnection ||
                unsent >= lim.maxUnsentBytesPerConnection) {
                this.readPaused = true;
                this.server.counters.nReadPauses++;
                this.socket.pause();
            }
        } else if (this.pending.size < lim.maxRequestsPerConnection &&
            unsent < lim.maxUnsentBytesPerConnection / 2) {
            this.readPaused = false;
            this.socket.resume();
        }
    }

    get paused(): boolean {
        return this.readPaused;
    }

    /*
     * Complete a request: END on success, ERROR with `err`.  Nothing is
     * sent on a detached connection.
     */
    finish(req: FastRequest, err: WireError | null, count = true): void {
        if (req.state !== RequestState.RUNNING) {
            throw new Error(`request ${req.msgid} finished twice`);
        }
        req.state = err === null ? RequestState.DONE : RequestState.FAILED;
        this.pending.delete(req.msgid);
        if (count) {
            if (err === null) {
                this.nCompleted++;
                this.server.counters.nRequestsCompleted++;
            } else {
                this.nFailed++;
                this.server.counters.nRequestsFailed++;
            }
        }
        if (!this.detached) {
            this.write(err === null ?
                encodeEnd(req.version, req.msgid, req.method) :
                encodeError(req.version, req.msgid, req.method, err));
        }
        this.checkFlow();
        this.maybeClose();
    }

    fail(req: FastRequest, err: unknown): void {
        this.finish(req, toWireError(err));
    }

    private maybeClose(): void {
        if (this.pending.size > 0) {
            return;
        }
        if (this.state === ConnState.DRAINING) {
            this.move(ConnState.CLOSED);
            this.socket.end();
            this.server.removeConnection(this);
        } else if (this.state === ConnState.DETACHED) {
            this.move(ConnState.CLOSED);
            this.server.removeConnection(this);
        }
    }

    /* Server shutdown: stop reading; let pending requests finish. */
    drainForShutdown(): void {
        if (this.state === ConnState.OPEN) {
            this.socket.pause();
            this.move(ConnState.DRAINING);
            this.runEndCallbacks();
            this.maybeClose();
        }
    }
}

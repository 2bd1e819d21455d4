/*
 * A minimal pipelining Fast client for load generation, built on the
 * server's own codec (src/fast/encoder.ts, src/fast/decoder.ts) over raw
 * net sockets.  It exists because the npm `moray` client (cueball, vasync,
 * VError, per-request objects) costs more CPU per request than the server
 * we want to measure; on 2 cores the client must stay cheap.
 *
 *   call(method, args) ──► encodeFrame(v2, DATA, msgid, method, args)
 *        │                      │
 *        │     socket.cork() once per tick, uncork on nextTick: all the
 *        │     frames issued in one tick leave in one write
 *        ▼
 *   pending: msgid ──► { records[], callback }
 *        ▲
 *   socket 'data' ──► FastDecoder.write ──► read() loop
 *        DATA  ──► records.push(d[0..])   (or onRecord(d[i]) when streaming)
 *        END   ──► callback(null, records), delete pending
 *        ERROR ──► callback(Error{name: d.name}), delete pending
 *
 * Many requests are in flight per connection (the server answers each
 * msgid independently); FastClient spreads calls over several connections
 * round-robin.  A socket error or close fails every pending call on that
 * connection.  Protocol errors from the decoder destroy the connection.
 */

import * as net from 'node:net';
import { randomUUID } from 'node:crypto';
import { encodeFrame } from '../../src/fast/encoder';
import { FastDecoder } from '../../src/fast/decoder';
import {
    DEFAULT_MAX_FRAME_BYTES, FP_MSGID_MAX, FP_STATUS_DATA, FP_STATUS_END, FP_VERSION_2,
} from '../../src/fast/constants';

export type ReplyCallback = (err: Error | null, records: unknown[]) => void;

interface Pending {
    records: unknown[];
    onRecord: ((r: unknown) => void) | null;
    cb: ReplyCallback;
}

/* An RPC that failed with a Fast ERROR frame; `name` is the wire name. */
export class RpcError extends Error {
    constructor(readonly wireName: string, message: string) {
        super(`${wireName}: ${message}`);
        this.name = 'RpcError';
    }
}

export class FastConnection {
    private readonly decoder = new FastDecoder({ maxFrameBytes: DEFAULT_MAX_FRAME_BYTES });
    private readonly pending = new Map<number, Pending>();
    private nextMsgid = 1;
    private corked = false;
    private dead: Error | null = null;

    private constructor(readonly socket: net.Socket) {
        socket.setNoDelay(true);
        socket.on('data', (chunk: Buffer) => this.onData(chunk));
        socket.on('error', (err) => this.failAll(err));
        socket.on('close', () => this.failAll(new Error('connection closed')));
    }

    static connect(host: string, port: number): Promise<FastConnection> {
        return new Promise((resolve, reject) => {
            const s = net.connect({ host, port });
            s.once('connect', () => {
                s.removeListener('error', reject);
                resolve(new FastConnection(s));
            });
            s.once('error', reject);
        });
    }

    get inFlight(): number {
        return this.pending.size;
    }

    call(method: string, args: unknown[], cb: ReplyCallback,
        onRecord: ((r: unknown) => void) | null = null): void {
        if (this.dead !== null) {
            const err = this.dead;
            process.nextTick(() => cb(err, []));
            return;
        }
        const msgid = this.nextMsgid;
        this.nextMsgid = msgid >= FP_MSGID_MAX ? 1 : msgid + 1;
        this.pending.set(msgid, { records: [], onRecord, cb });
        if (!this.corked) {
            this.corked = true;
            this.socket.cork();
            process.nextTick(() => {
                this.corked = false;
                this.socket.uncork();
            });
        }
        this.socket.write(encodeFrame(FP_VERSION_2, FP_STATUS_DATA, msgid, method, args));
    }

    close(): void {
        this.socket.destroy();
    }

    private onData(chunk: Buffer): void {
        try {
            this.decoder.write(chunk);
            for (let msg = this.decoder.read(); msg !== undefined; msg = this.decoder.read()) {
                const p = this.pending.get(msg.msgid);
                if (p === undefined) {
                    continue;
                }
                if (msg.status === FP_STATUS_DATA) {
                    for (const r of msg.data.d) {
                        if (p.onRecord !== null) {
                            p.onRecord(r);
                        } else {
                            p.records.push(r);
                        }
                    }
                } else if (msg.status === FP_STATUS_END) {
                    this.pending.delete(msg.msgid);
                    p.cb(null, p.records);
                } else {
                    this.pending.delete(msg.msgid);
                    p.cb(new RpcError(msg.data.d.name, msg.data.d.message), p.records);
                }
            }
        } catch (err) {
            this.failAll(err as Error);
            this.socket.destroy();
        }
    }

    private failAll(err: Error): void {
        this.dead ??= err;
        const all = [...this.pending.values()];
        this.pending.clear();
        for (const p of all) {
            p.cb(err, p.records);
        }
    }
}

/* Several connections to one server; calls go round-robin, or to a pinned connection. */
export class FastClient {
    private rr = 0;

    private constructor(readonly conns: readonly FastConnection[]) {}

    static async connect(host: string, port: number, n: number): Promise<FastClient> {
        const conns: FastConnection[] = [];
        for (let i = 0; i < n; i++) {
            conns.push(await FastConnection.connect(host, port));
        }
        return new FastClient(conns);
    }

    /* Call on connection `slot % n` (so a slot keeps its connection), or round-robin. */
    call(method: string, args: unknown[], cb: ReplyCallback, slot?: number,
        onRecord: ((r: unknown) => void) | null = null): void {
        const i = slot ?? this.rr++;
        this.conns[i % this.conns.length]!.call(method, args, cb, onRecord);
    }

    callAsync(method: string, args: unknown[]): Promise<unknown[]> {
        return new Promise((resolve, reject) => {
            this.call(method, args, (err, records) => (err === null ? resolve(records) : reject(err)));
        });
    }

    close(): void {
        for (const c of this.conns) {
            c.close();
        }
    }
}

/* Options as node-moray sends them: every request carries a req_id. */
export function requestOptions(extra: Record<string, unknown> = {}): Record<string, unknown> {
    return { req_id: randomUUID(), ...extra };
}

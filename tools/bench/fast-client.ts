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
 *   pending: msgid ──► { records[], count, callback }
 *        ▲
 *   socket 'data' ──► frame splitter (15-byte header, datalen) ──►
 *        DATA  ──► count++; records.push(d[0..]) only when the caller wants
 *                  them (callAsync, onRecord): a load generator that
 *                  parsed every answer would spend more CPU than the server
 *        END   ──► callback(null, records, count), delete pending
 *        ERROR ──► callback(Error{name: d.name}), delete pending
 *
 * The splitter checks version, type and length but not the checksum: the
 * server's codec is tested elsewhere (test/unit/fast-codec.test.ts, the
 * node-fast differential tests); here it would only cost client CPU.
 *
 * Many requests are in flight per connection (the server answers each
 * msgid independently); FastClient spreads calls over several connections
 * round-robin.  A socket error or close fails every pending call on that
 * connection.  Protocol errors from the decoder destroy the connection.
 */

import * as net from 'node:net';
import { randomUUID } from 'node:crypto';
import { encodeFrame } from '../../src/fast/encoder';
import {
    DEFAULT_MAX_FRAME_BYTES, FP_HEADER_SZ, FP_MSGID_MAX, FP_OFF_DATALEN, FP_OFF_MSGID,
    FP_OFF_STATUS, FP_OFF_TYPE, FP_OFF_VERSION, FP_STATUS_DATA, FP_STATUS_END, FP_TYPE_JSON,
    FP_VERSION_1, FP_VERSION_2,
} from '../../src/fast/constants';

/* records: the DATA values (only when parsed); count: how many DATA values arrived */
export type ReplyCallback = (err: Error | null, records: unknown[], count: number) => void;

interface Pending {
    records: unknown[];
    count: number;
    parse: boolean;
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
    private rest: Buffer | null = null;
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
        onRecord: ((r: unknown) => void) | null = null, parse = true): void {
        if (this.dead !== null) {
            const err = this.dead;
            process.nextTick(() => cb(err, [], 0));
            return;
        }
        const msgid = this.nextMsgid;
        this.nextMsgid = msgid >= FP_MSGID_MAX ? 1 : msgid + 1;
        this.pending.set(msgid, { records: [], count: 0, parse: parse || onRecord !== null,
            onRecord, cb });
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
        let buf = chunk;
        if (this.rest !== null) {
            buf = Buffer.concat([this.rest, chunk]);
            this.rest = null;
        }
        let off = 0;
        try {
            while (buf.length - off >= FP_HEADER_SZ) {
                const version = buf[off + FP_OFF_VERSION];
                if ((version !== FP_VERSION_1 && version !== FP_VERSION_2) ||
                    buf[off + FP_OFF_TYPE] !== FP_TYPE_JSON) {
                    throw new Error(`fast: bad frame header at byte ${off}`);
                }
                const datalen = buf.readUInt32BE(off + FP_OFF_DATALEN);
                if (datalen > DEFAULT_MAX_FRAME_BYTES) {
                    throw new Error(`fast: frame of ${datalen} bytes`);
                }
                const end = off + FP_HEADER_SZ + datalen;
                if (end > buf.length) {
                    break;
                }
                const status = buf[off + FP_OFF_STATUS];
                const p = this.pending.get(buf.readUInt32BE(off + FP_OFF_MSGID));
                if (p !== undefined) {
                    this.onFrame(p, buf.readUInt32BE(off + FP_OFF_MSGID), status!, buf,
                        off + FP_HEADER_SZ, end);
                }
                off = end;
            }
            if (off < buf.length) {
                this.rest = buf.subarray(off);
            }
        } catch (err) {
            this.failAll(err as Error);
            this.socket.destroy();
        }
    }

    private onFrame(p: Pending, msgid: number, status: number, buf: Buffer,
        start: number, end: number): void {
        if (status === FP_STATUS_DATA) {
            if (!p.parse) {
                p.count++;
                return;
            }
            const d = (JSON.parse(buf.toString('utf8', start, end)) as { d: unknown[] }).d;
            for (const r of d) {
                p.count++;
                if (p.onRecord !== null) {
                    p.onRecord(r);
                } else {
                    p.records.push(r);
                }
            }
        } else if (status === FP_STATUS_END) {
            this.pending.delete(msgid);
            p.cb(null, p.records, p.count);
        } else {
            this.pending.delete(msgid);
            const d = (JSON.parse(buf.toString('utf8', start, end)) as
                { d: { name: string; message: string } }).d;
            p.cb(new RpcError(d.name, d.message), p.records, p.count);
        }
    }

    private failAll(err: Error): void {
        this.dead ??= err;
        const all = [...this.pending.values()];
        this.pending.clear();
        for (const p of all) {
            p.cb(err, p.records, p.count);
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

    /* Like call, but DATA frames are only counted, not parsed (ERROR still is). */
    callCount(method: string, args: unknown[], cb: ReplyCallback, slot?: number): void {
        const i = slot ?? this.rr++;
        this.conns[i % this.conns.length]!.call(method, args, cb, null, false);
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

/*
 * FastDecoder: a streaming Fast frame decoder, independent of any socket.
 *
 * The connection owner feeds it bytes and pulls messages:
 *
 *     socket 'data' ──► write(chunk) ──► [ buffer | cursor ] ──► read() ──► FastMessage
 *                                                                  │ (loop until undefined)
 *     socket 'end'  ──► end()                                      └─ throws FastProtocolError
 *
 * Buffering (pg-protocol's "one growing buffer with a cursor"):
 *
 *     buf:  [ consumed ........ | live bytes (head..tail) | free ....... ]
 *           0                  head                     tail        buf.length
 *
 *   - When nothing is buffered, an incoming chunk is adopted as-is (no
 *     copy).  In the common case (whole frames per chunk) bytes are never
 *     copied: each frame is decoded straight out of the socket's chunk.
 *   - Appending to an adopted chunk, or to an owned buffer without room,
 *     moves the live bytes (always less than one frame) to the front of a
 *     buffer we own: in place if it is big enough, else into a new one that
 *     doubles, but never beyond the size of the frame being assembled (or
 *     what is needed right now).  Each byte is therefore copied O(1) times
 *     amortised, and memory stays below one frame plus one chunk.
 *   - When the live region becomes empty the buffer is dropped, so an idle
 *     connection holds nothing, whatever the size of its last frame.
 *   - The caller must not modify a chunk after write(): it may be retained
 *     until its bytes are consumed.
 *
 * Frame state machine (one frame at a time; the parsed header of a partial
 * frame is kept, never re-parsed):
 *
 *          ≥15 bytes: validate version → type → status → msgid,
 *          then 15 + datalen ≤ maxFrameBytes
 *     NEED_HEADER ─────────────────────────────────────► NEED_PAYLOAD
 *         ▲                                                   │ 15+datalen bytes:
 *         │           message returned by read()              │ CRC (per version),
 *         └───────────────────────────────────────────────────┘ JSON, shape of d
 *
 *     any check fails ──► FAILED (sticky: read()/end() rethrow the same
 *                         error, write() discards, buffer released)
 *     end() ──► ENDED (throws incomplete_message if bytes remain)
 *
 * The size limit is checked the moment the header is complete, so a header
 * announcing 4 GiB is refused after 15 bytes without buffering its payload.
 *
 * Errors: every malformed input is a FastProtocolError (protocol-error.ts);
 * the owner logs it, counts it by `reason` and destroys that connection.
 * Calling write() after end() is a programmer error (plain Error).
 */

import {
    FP_HEADER_SZ, FP_MSGID_MAX, FP_OFF_CRC, FP_OFF_DATALEN, FP_OFF_MSGID,
    FP_OFF_STATUS, FP_OFF_TYPE, FP_OFF_VERSION, FP_STATUS_DATA,
    FP_STATUS_END, FP_STATUS_ERROR, FP_TYPE_JSON, FP_VERSION_1, FP_VERSION_2,
} from './constants';
import type { FastStatus, FastVersion } from './constants';
import { crc16Arc, crc16V1 } from './crc16';
import type { FastMessage } from './message';
import { FastProtocolError, protocolErrors } from './protocol-error';

export interface FastDecoderOptions {
    /* largest frame (header + payload) accepted, in bytes */
    maxFrameBytes: number;
}

const EMPTY = Buffer.alloc(0);

/* smallest buffer we allocate when we have to own one */
const MIN_OWNED_BYTES = 16 * 1024;

export class FastDecoder {
    readonly maxFrameBytes: number;

    private buf: Buffer = EMPTY;
    private owned = false;          /* buf is ours to write into */
    private head = 0;               /* read cursor */
    private tail = 0;               /* write cursor */

    /* header of the frame at `head`, valid when datalen >= 0 */
    private datalen = -1;
    private version: FastVersion = FP_VERSION_2;
    private status: FastStatus = FP_STATUS_DATA;
    private msgid = 0;
    private crc = 0;

    private failure: FastProtocolError | null = null;
    private ended = false;

    private nMessages = 0;
    private nBytes = 0;

    constructor(opts: FastDecoderOptions) {
        if (!Number.isSafeInteger(opts.maxFrameBytes) ||
            opts.maxFrameBytes < FP_HEADER_SZ) {
            throw new RangeError('FastDecoder: maxFrameBytes must be an ' +
                `integer >= ${FP_HEADER_SZ}`);
        }
        this.maxFrameBytes = opts.maxFrameBytes;
    }

    /* bytes received but not yet returned as messages */
    get bufferedBytes(): number {
        return this.tail - this.head;
    }

    /* bytes of memory this decoder holds on to (buffer capacity) */
    get retainedBytes(): number {
        return this.buf.length;
    }

    /* messages returned by read() so far */
    get messagesDecoded(): number {
        return this.nMessages;
    }

    /* bytes of the messages returned by read() so far */
    get bytesDecoded(): number {
        return this.nBytes;
    }

    /* the error that stopped this decoder, if any */
    get error(): FastProtocolError | null {
        return this.failure;
    }

    write(chunk: Buffer): void {
        if (this.ended) {
            throw new Error('FastDecoder: write() after end()');
        }
        const n = chunk.length;
        if (this.failure !== null || n === 0) {
            return;
        }
        if (this.head === this.tail) {
            this.buf = chunk;
            this.owned = false;
            this.head = 0;
            this.tail = n;
            return;
        }
        if (this.owned && this.tail + n <= this.buf.length) {
            chunk.copy(this.buf, this.tail);
            this.tail += n;
            return;
        }
        const live = this.tail - this.head;
        const needed = live + n;
        if (this.owned && needed <= this.buf.length) {
            this.buf.copyWithin(0, this.head, this.tail);
        } else {
            const next = Buffer.allocUnsafe(this.capacityFor(needed));
            this.buf.copy(next, 0, this.head, this.tail);
            this.buf = next;
            this.owned = true;
        }
        chunk.copy(this.buf, live);
        this.head = 0;
        this.tail = needed;
    }

    /*
     * Size of a new owned buffer that must hold `needed` bytes: double the
     * current one, but not beyond the frame being assembled.
     */
    private capacityFor(needed: number): number {
        let cap = Math.max(2 * this.buf.length, MIN_OWNED_BYTES);
        if (this.datalen >= 0) {
            cap = Math.min(cap, FP_HEADER_SZ + this.datalen);
        }
        return Math.max(cap, needed);
    }

    /*
     * The next complete message, or undefined if more bytes are needed.
     * Throws FastProtocolError on malformed input.
     */
    read(): FastMessage | undefined {
        if (this.failure !== null) {
            throw this.failure;
        }
        const avail = this.tail - this.head;
        if (this.datalen < 0) {
            if (avail < FP_HEADER_SZ) {
                return undefined;
            }
            this.parseHeader();
        }
        const size = FP_HEADER_SZ + this.datalen;
        if (avail < size) {
            return undefined;
        }
        const msg = this.decodeFrame(size);
        this.head += size;
        this.datalen = -1;
        if (this.head === this.tail) {
            this.release();
        }
        this.nMessages++;
        this.nBytes += size;
        return msg;
    }

    /*
     * The peer closed its side.  Call after read() returned undefined;
     * throws incomplete_message if a partial frame is buffered.
     */
    end(): void {
        if (this.failure !== null) {
            throw this.failure;
        }
        this.ended = true;
        const left = this.tail - this.head;
        if (left > 0) {
            this.fail(protocolErrors.incompleteMessage(left));
        }
    }

    private parseHeader(): void {
        const buf = this.buf;
        const at = this.head;

        const version = buf[at + FP_OFF_VERSION]!;
        if (version !== FP_VERSION_1 && version !== FP_VERSION_2) {
            this.fail(protocolErrors.unsupportedVersion(version));
        }
        const type = buf[at + FP_OFF_TYPE]!;
        if (type !== FP_TYPE_JSON) {
            this.fail(protocolErrors.unsupportedType(type));
        }
        const status = buf[at + FP_OFF_STATUS]!;
        if (status !== FP_STATUS_DATA && status !== FP_STATUS_END &&
            status !== FP_STATUS_ERROR) {
            this.fail(protocolErrors.unsupportedStatus(status));
        }
        const msgid = buf.readUInt32BE(at + FP_OFF_MSGID);
        if (msgid > FP_MSGID_MAX) {
            this.fail(protocolErrors.invalidMsgid(msgid));
        }
        const datalen = buf.readUInt32BE(at + FP_OFF_DATALEN);
        if (FP_HEADER_SZ + datalen > this.maxFrameBytes) {
            this.fail(protocolErrors.frameTooLarge(datalen,
                this.maxFrameBytes, msgid));
        }
        this.version = version;
        this.status = status;
        this.msgid = msgid;
        this.crc = buf.readUInt32BE(at + FP_OFF_CRC);
        this.datalen = datalen;
    }

    private decodeFrame(size: number): FastMessage {
        const buf = this.buf;
        const from = this.head + FP_HEADER_SZ;
        const to = this.head + size;

        let text: string;
        let crc: number;
        if (this.version === FP_VERSION_1) {
            text = buf.toString('utf8', from, to);
            crc = crc16V1(text);
        } else {
            crc = crc16Arc(buf, from, to);
            text = '';
        }
        if (crc !== this.crc) {
            this.fail(protocolErrors.badCrc(this.crc, crc, this.version));
        }
        if (this.version !== FP_VERSION_1) {
            text = buf.toString('utf8', from, to);
        }

        let data: unknown;
        try {
            data = JSON.parse(text);
        } catch (err) {
            this.fail(protocolErrors.invalidJson(err));
        }
        if (typeof data !== 'object' || data === null) {
            this.fail(protocolErrors.badData());
        }
        const d = (data as { d?: unknown }).d;
        if (this.status === FP_STATUS_ERROR) {
            if (typeof d !== 'object' || d === null ||
                typeof (d as { name?: unknown }).name !== 'string' ||
                typeof (d as { message?: unknown }).message !== 'string') {
                this.fail(protocolErrors.badError());
            }
        } else if (!Array.isArray(d)) {
            this.fail(protocolErrors.badDataD());
        }

        return {
            version: this.version,
            status: this.status,
            msgid: this.msgid,
            data,
            size,
        } as FastMessage;
    }

    private release(): void {
        this.buf = EMPTY;
        this.owned = false;
        this.head = 0;
        this.tail = 0;
    }

    private fail(err: FastProtocolError): never {
        this.failure = err;
        this.datalen = -1;
        this.release();
        throw err;
    }
}

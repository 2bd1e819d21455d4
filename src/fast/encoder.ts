/*
 * Fast frame encoder: (version, status, msgid, method, d) -> one Buffer.
 *
 *     JSON text  '{"m":{"uts":<µs>,"name":<method>},"d":<d>}'
 *                   |  built by concatenation around two JSON.stringify
 *                   |  calls; identical to JSON.stringify of the object
 *                   |  (the reference's key order), without allocating it
 *                   v
 *     Buffer     allocUnsafe(15 + byteLength(text))  -- the only allocation
 *                [hdr 15 B][text written as UTF-8 in place]
 *                   |
 *                   v  crc: v2 = CRC-16/ARC over the written bytes
 *                          v1 = legacy CRC over the *string* (crc16.ts)
 *
 * The version byte of a response must be the version of the request it
 * answers (§4.5): callers pass it through; nothing here guesses.
 *
 * Programmer errors (bad version/status/msgid, a method that is not a
 * string, a `d` that does not serialise, an ERROR body without string
 * name/message) throw TypeError/RangeError synchronously: they are bugs in
 * the caller, not conditions of the peer.  JSON.stringify's own exceptions
 * (BigInt, cycles) propagate for the same reason.  Callers that emit server
 * DATA must not put null values in `d` (§3); that is checked by the RPC
 * layer, since client requests may legally carry null arguments.
 */

import type { WireError } from '../errors/catalog';
import {
    FP_HEADER_SZ, FP_MSGID_MAX, FP_OFF_CRC, FP_OFF_DATA, FP_OFF_DATALEN,
    FP_OFF_MSGID, FP_OFF_STATUS, FP_OFF_TYPE, FP_OFF_VERSION,
    FP_STATUS_DATA, FP_STATUS_END, FP_STATUS_ERROR, FP_TYPE_JSON,
    FP_VERSION_1, FP_VERSION_2,
} from './constants';
import type { FastStatus, FastVersion } from './constants';
import { crc16Arc, crc16V1 } from './crc16';

/* The current wall-clock time in microseconds (the `m.uts` convention). */
export function nowMicros(): number {
    return Date.now() * 1000;
}

export function encodeFrame(version: FastVersion, status: FastStatus,
    msgid: number, method: string, d: unknown, utsMicros?: number): Buffer {
    if (version !== FP_VERSION_1 && version !== FP_VERSION_2) {
        throw new RangeError(`fast encode: bad version ${String(version)}`);
    }
    if (status !== FP_STATUS_DATA && status !== FP_STATUS_END &&
        status !== FP_STATUS_ERROR) {
        throw new RangeError(`fast encode: bad status ${String(status)}`);
    }
    if (!Number.isInteger(msgid) || msgid < 0 || msgid > FP_MSGID_MAX) {
        throw new RangeError(`fast encode: bad msgid ${String(msgid)}`);
    }
    if (typeof method !== 'string') {
        throw new TypeError('fast encode: method must be a string');
    }
    const uts = utsMicros ?? nowMicros();
    if (!Number.isFinite(uts)) {
        throw new RangeError(`fast encode: bad uts ${String(uts)}`);
    }
    const body: string | undefined = JSON.stringify(d);
    if (body === undefined) {
        throw new TypeError('fast encode: d is not JSON-serialisable');
    }

    const text = '{"m":{"uts":' + uts + ',"name":' + JSON.stringify(method) +
        '},"d":' + body + '}';
    const datalen = Buffer.byteLength(text, 'utf8');
    const buf = Buffer.allocUnsafe(FP_HEADER_SZ + datalen);
    buf.write(text, FP_OFF_DATA, 'utf8');
    const crc = version === FP_VERSION_1 ? crc16V1(text) :
        crc16Arc(buf, FP_OFF_DATA, FP_OFF_DATA + datalen);

    buf[FP_OFF_VERSION] = version;
    buf[FP_OFF_TYPE] = FP_TYPE_JSON;
    buf[FP_OFF_STATUS] = status;
    buf.writeUInt32BE(msgid, FP_OFF_MSGID);
    buf.writeUInt32BE(crc, FP_OFF_CRC);
    buf.writeUInt32BE(datalen, FP_OFF_DATALEN);
    return buf;
}

/* DATA: a client request (d = arguments) or server results (d = values). */
export function encodeData(version: FastVersion, msgid: number,
    method: string, values: readonly unknown[], utsMicros?: number): Buffer {
    if (!Array.isArray(values)) {
        throw new TypeError('fast encode: DATA values must be an array');
    }
    return encodeFrame(version, FP_STATUS_DATA, msgid, method, values,
        utsMicros);
}

/* END: successful completion; the reference server always sends []. */
export function encodeEnd(version: FastVersion, msgid: number,
    method: string, values: readonly unknown[] = [], utsMicros?: number):
    Buffer {
    if (!Array.isArray(values)) {
        throw new TypeError('fast encode: END values must be an array');
    }
    return encodeFrame(version, FP_STATUS_END, msgid, method, values,
        utsMicros);
}

/* ERROR: failed completion; `err` is the §7 body (name, message, ...). */
export function encodeError(version: FastVersion, msgid: number,
    method: string, err: WireError, utsMicros?: number): Buffer {
    if (typeof err !== 'object' || err === null ||
        typeof err.name !== 'string' || typeof err.message !== 'string') {
        throw new TypeError(
            'fast encode: ERROR body needs string name and message');
    }
    return encodeFrame(version, FP_STATUS_ERROR, msgid, method, err,
        utsMicros);
}

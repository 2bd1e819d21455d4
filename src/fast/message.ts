/*
 * The decoded form of one Fast frame, as produced by FastDecoder.
 *
 * What the decoder guarantees (fast-protocol.md §3, §8.1) and what it does
 * not:
 *
 *     field          guaranteed by the decoder
 *     -------------  -----------------------------------------------------
 *     version        1 or 2 (the CRC flavour already checked)
 *     status         1 DATA, 2 END, 3 ERROR
 *     msgid          0 .. 2^31-1
 *     data           a non-null JSON object (arrays pass here, as in the
 *                    reference, because DATA/END/ERROR checks on `d` catch
 *                    them)
 *     data.d         DATA/END: an array; ERROR: an object with string
 *                    `name` and `message`
 *     data.m         NOTHING: it may be missing, null, a number...  The
 *                    request layer decides what a well-formed request is
 *                    (§8.2 answers a missing/empty method name with an
 *                    ERROR, not a dropped connection).  Use
 *                    requestMethodName() to read it safely.
 *     size           bytes the frame occupied on the wire (15 + datalen)
 *
 * The status field discriminates the union, so after
 * `if (msg.status === FP_STATUS_ERROR)` TypeScript knows `data.d` is a
 * FastWireErrorBody.
 */

import type { FastVersion } from './constants';

export interface FastMessageBase {
    version: FastVersion;
    msgid: number;
    /* frame bytes on the wire: header + payload */
    size: number;
}

/* The method descriptor as senders write it; never trusted on input. */
export interface FastMethodDescriptor {
    name?: unknown;
    uts?: unknown;
}

export interface FastWireErrorBody {
    name: string;
    message: string;
    [key: string]: unknown;
}

export interface FastDataMessage extends FastMessageBase {
    status: 1;
    data: { m: unknown; d: unknown[] };
}

export interface FastEndMessage extends FastMessageBase {
    status: 2;
    data: { m: unknown; d: unknown[] };
}

export interface FastErrorMessage extends FastMessageBase {
    status: 3;
    data: { m: unknown; d: FastWireErrorBody };
}

export type FastMessage = FastDataMessage | FastEndMessage | FastErrorMessage;

/*
 * The method name of a message if `m` is an object whose `name` is a
 * non-empty string, else undefined (the §8.2 "not well-formed" case).
 */
export function requestMethodName(msg: FastMessage): string | undefined {
    const m = msg.data.m;
    if (typeof m !== 'object' || m === null || Array.isArray(m)) {
        return undefined;
    }
    const name = (m as FastMethodDescriptor).name;
    return typeof name === 'string' && name.length > 0 ? name : undefined;
}

/*
 * FastProtocolError: the one error type of the Fast codec.
 *
 * Every way a peer's byte stream can be malformed maps to one stable
 * `reason` (node-fast's `info.fastReason` codes, plus our own
 * `frame_too_large`) and to the reference's exact message text, so logs and
 * metrics read the same as node-fast's.  These are *operational* errors (bad
 * peer input): the connection owner catches them, logs, counts by reason and
 * destroys that one connection (no response is sent: the stream can no
 * longer be trusted).  Programmer errors in the codec (e.g. encoding an
 * invalid msgid) are thrown as plain TypeError/RangeError instead.
 *
 *     reason               raised when                        info
 *     -------------------  ---------------------------------  -----------------------------
 *     unsupported_version  version byte not 1/2               foundVersion
 *     unsupported_type     type byte not 1                    foundType
 *     unsupported_status   status byte not 1/2/3              foundStatus
 *     invalid_msgid        msgid >= 2^31                      foundMsgid
 *     frame_too_large      15 + datalen > maxFrameBytes       datalen, frameBytes, limit, msgid
 *     bad_crc              CRC mismatch for the frame version crcExpected, crcCalculated, version
 *     invalid_json         payload is not JSON (cause set)    -
 *     bad_data             payload is not an object           -
 *     bad_data_d           DATA/END `d` not an array          -
 *     bad_error            ERROR `d` lacks name/message       -
 *     incomplete_message   stream ended inside a frame        bufferedBytes
 *
 * `info.fastReason` always equals `reason`, as in node-fast.
 */

import { FP_HEADER_SZ } from './constants';

export const FAST_REASONS = [
    'unsupported_version',
    'unsupported_type',
    'unsupported_status',
    'invalid_msgid',
    'frame_too_large',
    'bad_crc',
    'invalid_json',
    'bad_data',
    'bad_data_d',
    'bad_error',
    'incomplete_message',
] as const;

export type FastReason = typeof FAST_REASONS[number];

export class FastProtocolError extends Error {
    override readonly name = 'FastProtocolError';
    readonly reason: FastReason;
    readonly info: Readonly<Record<string, unknown>>;

    constructor(reason: FastReason, message: string,
        info: Record<string, unknown> = {}, cause?: unknown) {
        super(message, cause === undefined ? undefined : { cause });
        this.reason = reason;
        this.info = { fastReason: reason, ...info };
    }
}

/*
 * Constructors, one per reason, holding the reference message texts
 * (fast-protocol.md §8.1).  The format mirrors node-fast's extsprintf
 * calls: version with %d, type and status with 0x%x, msgid and CRCs with %s.
 */
export const protocolErrors = {
    unsupportedVersion(version: number): FastProtocolError {
        return new FastProtocolError('unsupported_version',
            `fast protocol: unsupported version ${version}`,
            { foundVersion: version });
    },

    unsupportedType(type: number): FastProtocolError {
        return new FastProtocolError('unsupported_type',
            `fast protocol: unsupported type 0x${type.toString(16)}`,
            { foundType: type });
    },

    unsupportedStatus(status: number): FastProtocolError {
        return new FastProtocolError('unsupported_status',
            `fast protocol: unsupported status 0x${status.toString(16)}`,
            { foundStatus: status });
    },

    invalidMsgid(msgid: number): FastProtocolError {
        return new FastProtocolError('invalid_msgid',
            `fast protocol: invalid msgid ${msgid}`,
            { foundMsgid: msgid });
    },

    frameTooLarge(datalen: number, limit: number, msgid: number):
        FastProtocolError {
        const frameBytes = FP_HEADER_SZ + datalen;
        return new FastProtocolError('frame_too_large',
            `fast protocol: frame of ${frameBytes} bytes exceeds the ` +
            `limit of ${limit} bytes`,
            { datalen, frameBytes, limit, msgid });
    },

    badCrc(expected: number, calculated: number, version: number):
        FastProtocolError {
        return new FastProtocolError('bad_crc',
            `fast protocol: expected CRC ${expected}, found ${calculated}`,
            { crcExpected: expected, crcCalculated: calculated, version });
    },

    invalidJson(cause: unknown): FastProtocolError {
        return new FastProtocolError('invalid_json',
            'fast protocol: invalid JSON in "data"', {}, cause);
    },

    badData(): FastProtocolError {
        return new FastProtocolError('bad_data',
            'fast protocol: message data must be a non-null object');
    },

    badDataD(): FastProtocolError {
        return new FastProtocolError('bad_data_d',
            'fast protocol: data.d for DATA and END messages must be an array');
    },

    badError(): FastProtocolError {
        return new FastProtocolError('bad_error',
            'fast protocol: data.d for ERROR messages must have name and ' +
            'message');
    },

    incompleteMessage(bufferedBytes: number): FastProtocolError {
        return new FastProtocolError('incomplete_message',
            'fast protocol: incomplete message at end-of-stream',
            { bufferedBytes });
    },
};

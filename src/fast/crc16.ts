/*
 * The two 16-bit checksums of the Fast protocol, selected per frame by the
 * version byte (fast-protocol.md §4):
 *
 *     version 2  CRC-16/ARC    poly 0x8005 reflected (0xA001), init 0,
 *                              over the UTF-8 *bytes* of the payload
 *     version 1  "oldcrc"      CRC-16/XMODEM (poly 0x1021, init 0), fed with
 *                              the low 8 bits of each UTF-16 *code unit* of
 *                              the payload text (a bug in crc@0.3.0 that
 *                              old clients baked into the wire format)
 *
 * Why v1 takes a string: the old CRC is not a function of the wire bytes.
 * "é" (U+00E9, bytes C3 A9) contributes the single byte 0xE9; "Ł" (U+0141)
 * contributes 0x41 like "A"; an astral character contributes the low bytes
 * of its two surrogates.  So the receiver must decode the payload to text
 * first, and the sender must checksum the JSON string, not the buffer.
 *
 * Speed: v2 runs on every frame in both directions (~50k frames/s), so it
 * uses "slicing-by-4": four 256-entry tables let the loop consume four bytes
 * per iteration with independent lookups.  Because the register is only 16
 * bits wide, bytes 2 and 3 of each word never mix with the register and are
 * looked up directly:
 *
 *     x   = crc ^ (b0 | b1 << 8)
 *     crc = T3[x & 0xff] ^ T2[x >>> 8] ^ T1[b2] ^ T0[b3]
 *
 * where Tk[i] is the CRC of byte i followed by k zero bytes.  v1 (legacy
 * clients only) uses the plain one-table loop over charCodeAt().
 */

import type { FastVersion } from './constants';
import { FP_VERSION_1 } from './constants';

function makeArcTables(): Uint16Array[] {
    const t0 = new Uint16Array(256);
    for (let i = 0; i < 256; i++) {
        let c = i;
        for (let k = 0; k < 8; k++) {
            c = (c & 1) !== 0 ? (c >>> 1) ^ 0xA001 : c >>> 1;
        }
        t0[i] = c;
    }
    const tables = [t0];
    for (let k = 1; k < 4; k++) {
        const prev = tables[k - 1]!;
        const t = new Uint16Array(256);
        for (let i = 0; i < 256; i++) {
            const c = prev[i]!;
            t[i] = t0[c & 0xff]! ^ (c >>> 8);
        }
        tables.push(t);
    }
    return tables;
}

function makeXmodemTable(): Uint16Array {
    const t = new Uint16Array(256);
    for (let i = 0; i < 256; i++) {
        let c = i << 8;
        for (let k = 0; k < 8; k++) {
            c = (c & 0x8000) !== 0 ? ((c << 1) ^ 0x1021) & 0xffff
                : (c << 1) & 0xffff;
        }
        t[i] = c;
    }
    return t;
}

const [ARC0, ARC1, ARC2, ARC3] = makeArcTables() as
    [Uint16Array, Uint16Array, Uint16Array, Uint16Array];
const XMODEM = makeXmodemTable();

/*
 * CRC-16/ARC of buf[start, end) (the version-2 checksum).  Result in
 * 0..0xFFFF.
 */
export function crc16Arc(buf: Uint8Array, start = 0, end = buf.length):
    number {
    let crc = 0;
    let i = start;
    const end4 = end - ((end - start) & 3);
    while (i < end4) {
        const x = crc ^ buf[i]! ^ (buf[i + 1]! << 8);
        crc = ARC3[x & 0xff]! ^ ARC2[x >>> 8]! ^ ARC1[buf[i + 2]!]! ^
            ARC0[buf[i + 3]!]!;
        i += 4;
    }
    while (i < end) {
        crc = ARC0[(crc ^ buf[i]!) & 0xff]! ^ (crc >>> 8);
        i++;
    }
    return crc;
}

/*
 * The version-1 checksum of a payload *text* (see above).  Result in
 * 0..0xFFFF.
 */
export function crc16V1(text: string): number {
    let crc = 0;
    const n = text.length;
    for (let i = 0; i < n; i++) {
        crc = XMODEM[((crc >>> 8) ^ text.charCodeAt(i)) & 0xff]! ^
            ((crc << 8) & 0xffff);
    }
    return crc;
}

/*
 * The checksum a frame of the given version carries for this payload.  A
 * convenience for tests and tools: the encoder and decoder call the two
 * functions above directly to avoid converting between text and bytes.
 */
export function crcForVersion(version: FastVersion,
    payload: string | Uint8Array): number {
    if (version === FP_VERSION_1) {
        return crc16V1(typeof payload === 'string' ? payload :
            Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength)
                .toString('utf8'));
    }
    return crc16Arc(typeof payload === 'string' ?
        Buffer.from(payload, 'utf8') : payload);
}

/*
 * Fuzzing the Fast decoder (deterministic: a seeded PRNG; the seed is
 * printed and can be replayed with FUZZ_SEED=<n>).
 *
 *   (a) a stream of random valid frames (both versions, all statuses,
 *       unicode everywhere) cut into random chunks decodes to exactly the
 *       messages that were encoded, whatever the chunking;
 *   (b) random bytes, random header-shaped garbage and random mutations of
 *       valid frames only ever yield valid messages or a FastProtocolError,
 *       never another exception; and for inputs a JavaScript peer could
 *       produce, the outcome (messages, then error reason) matches node-fast
 *       3.1.3's decoder.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
    DEFAULT_MAX_FRAME_BYTES, FP_MSGID_MAX,
} from '../../src/fast/constants';
import type { FastStatus, FastVersion } from '../../src/fast/constants';
import { crc16Arc, crc16V1 } from '../../src/fast/crc16';
import { FastDecoder } from '../../src/fast/decoder';
import { encodeFrame } from '../../src/fast/encoder';
import type { FastMessage } from '../../src/fast/message';
import { FAST_REASONS, FastProtocolError } from '../../src/fast/protocol-error';

const SEED = process.env['FUZZ_SEED'] !== undefined ?
    Number(process.env['FUZZ_SEED']) : 0x5eed2020;

/* ---- PRNG (mulberry32) -------------------------------------------------- */

class Rng {
    private s: number;

    constructor(seed: number) {
        this.s = seed >>> 0;
    }

    /* uniform in [0, 1) */
    next(): number {
        this.s = (this.s + 0x6d2b79f5) >>> 0;
        let t = this.s;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    }

    /* integer in [0, n) */
    int(n: number): number {
        return Math.floor(this.next() * n);
    }

    pick<T>(items: readonly T[]): T {
        return items[this.int(items.length)]!;
    }

    chance(p: number): boolean {
        return this.next() < p;
    }

    bytes(n: number): Buffer {
        const b = Buffer.alloc(n);
        for (let i = 0; i < n; i++) {
            b[i] = this.int(256);
        }
        return b;
    }
}

/* ---- random JSON ---------------------------------------------------------- */

function randomChar(r: Rng): string {
    switch (r.int(8)) {
    case 0: return String.fromCharCode(r.int(0x20));            /* control */
    case 1: return r.pick(['"', '\\', '/', '\u2028', '\u2029']);
    case 2: return String.fromCharCode(0x80 + r.int(0x780));    /* 2 bytes */
    case 3: return String.fromCharCode(0x800 + r.int(0xd000));  /* 3 bytes */
    case 4: return String.fromCodePoint(0x10000 + r.int(0xfffff)); /* astral */
    case 5: return String.fromCharCode(0xd800 + r.int(0x800));  /* lone */
    default: return String.fromCharCode(0x20 + r.int(95));      /* ASCII */
    }
}

function randomString(r: Rng, max = 20): string {
    let s = '';
    const n = r.int(max);
    for (let i = 0; i < n; i++) {
        s += randomChar(r);
    }
    return s;
}

function randomValue(r: Rng, depth = 0): unknown {
    switch (r.int(depth > 2 ? 4 : 6)) {
    case 0: return r.chance(0.5) ? r.int(2 ** 31) : (r.next() - 0.5) * 1e9;
    case 1: return randomString(r);
    case 2: return r.chance(0.5);
    case 3: return null;
    case 4: {
        const a: unknown[] = [];
        for (let n = r.int(4); n > 0; n--) {
            a.push(randomValue(r, depth + 1));
        }
        return a;
    }
    default: {
        const o: Record<string, unknown> = {};
        for (let n = r.int(4); n > 0; n--) {
            o[randomString(r, 6)] = randomValue(r, depth + 1);
        }
        return o;
    }
    }
}

interface Spec {
    version: FastVersion;
    status: FastStatus;
    msgid: number;
    method: string;
    d: unknown;
    uts: number;
}

function randomSpec(r: Rng): Spec {
    const status = r.pick([1, 2, 3] as const);
    let d: unknown;
    if (status === 3) {
        d = { name: randomString(r), message: randomString(r, 60),
            context: randomValue(r, 1), info: {} };
    } else {
        d = [];
        for (let n = r.int(4); n > 0; n--) {
            (d as unknown[]).push(randomValue(r));
        }
    }
    return {
        version: r.pick([1, 2] as const),
        status,
        msgid: r.chance(0.1) ? r.pick([0, FP_MSGID_MAX]) :
            r.int(FP_MSGID_MAX + 1),
        method: randomString(r, 12),
        d,
        uts: r.int(2 ** 52),
    };
}

function encodeSpec(s: Spec): Buffer {
    return encodeFrame(s.version, s.status, s.msgid, s.method, s.d, s.uts);
}

function expectedMessage(s: Spec, size: number): FastMessage {
    return {
        version: s.version, status: s.status, msgid: s.msgid, size,
        data: JSON.parse(JSON.stringify({ m: { uts: s.uts, name: s.method },
            d: s.d })),
    } as FastMessage;
}

/* ---- driving the decoder -------------------------------------------------- */

function randomChunks(r: Rng, buf: Buffer): Buffer[] {
    const style = r.int(4);
    const out: Buffer[] = [];
    let at = 0;
    while (at < buf.length) {
        let n: number;
        switch (style) {
        case 0: n = 1 + r.int(3); break;
        case 1: n = 1 + r.int(64); break;
        case 2: n = 1 + r.int(2000); break;
        default: n = r.chance(0.2) ? 1 : 1 + r.int(buf.length); break;
        }
        out.push(buf.subarray(at, at + n));
        at += n;
    }
    return out;
}

interface Outcome {
    msgs: FastMessage[];
    reason: string | null;
}

/* Decode; only FastProtocolError may escape the decoder. */
function run(chunks: Buffer[], maxFrameBytes: number): Outcome {
    const dec = new FastDecoder({ maxFrameBytes });
    const msgs: FastMessage[] = [];
    try {
        for (const c of chunks) {
            dec.write(c);
            for (let m = dec.read(); m !== undefined; m = dec.read()) {
                checkInvariants(m, maxFrameBytes);
                msgs.push(m);
            }
        }
        dec.end();
    } catch (err) {
        if (!(err instanceof FastProtocolError)) {
            throw err;
        }
        assert.ok(FAST_REASONS.includes(err.reason));
        assert.equal(dec.bufferedBytes, 0);
        return { msgs, reason: err.reason };
    }
    return { msgs, reason: null };
}

function checkInvariants(m: FastMessage, maxFrameBytes: number): void {
    assert.ok(m.version === 1 || m.version === 2);
    assert.ok(Number.isInteger(m.msgid) && m.msgid >= 0 &&
        m.msgid <= FP_MSGID_MAX);
    assert.ok(m.size >= 15 && m.size <= maxFrameBytes);
    assert.ok(typeof m.data === 'object' && m.data !== null);
    if (m.status === 3) {
        assert.equal(typeof m.data.d.name, 'string');
        assert.equal(typeof m.data.d.message, 'string');
    } else {
        assert.ok(m.status === 1 || m.status === 2);
        assert.ok(Array.isArray(m.data.d));
    }
}

/* ---- node-fast reference ---------------------------------------------------- */

interface NodeFastMessage {
    msgid: number;
    status: number;
    version: number;
    data: unknown;
}

// eslint-disable-next-line @typescript-eslint/no-require-imports
const NF = require('fast/lib/fast_protocol') as {
    FastMessageDecoder: new () => import('node:stream').Transform;
};
// eslint-disable-next-line @typescript-eslint/no-require-imports
const VError = require('verror') as {
    info(err: Error): Record<string, unknown>;
};

function reference(bytes: Buffer):
    Promise<{ msgs: NodeFastMessage[]; reason: string | null }> {
    return new Promise((resolve) => {
        const dec = new NF.FastMessageDecoder();
        const msgs: NodeFastMessage[] = [];
        dec.on('data', (m: NodeFastMessage) => msgs.push(m));
        dec.on('error', (err: Error) => resolve({ msgs,
            reason: String(VError.info(err)['fastReason']) }));
        dec.on('end', () => resolve({ msgs, reason: null }));
        dec.end(bytes);
    });
}

/* ---- garbage generators ------------------------------------------------------ */

function rawFrame(version: number, type: number, status: number,
    msgid: number, payload: Buffer, crc?: number, datalen?: number): Buffer {
    const hdr = Buffer.alloc(15);
    hdr[0] = version;
    hdr[1] = type;
    hdr[2] = status;
    hdr.writeUInt32BE(msgid >>> 0, 3);
    hdr.writeUInt32BE((crc ?? (version === 1 ?
        crc16V1(payload.toString('utf8')) : crc16Arc(payload))) >>> 0, 7);
    hdr.writeUInt32BE((datalen ?? payload.length) >>> 0, 11);
    return Buffer.concat([hdr, payload]);
}

const FRAGMENTS = ['{', '}', '[', ']', '"d"', '"m"', ':', ',', 'null',
    '1', '"x"', '{"name":"n","message":"m"}', '{"name":1}', '[]', '{}',
    '"name"', '"message"', 'true', ' ', '\u00e9', '😀'];

/* A payload made of JSON-ish fragments: exercises every shape check. */
function fragmentPayload(r: Rng): string {
    let s = '';
    for (let n = r.int(12); n > 0; n--) {
        s += r.pick(FRAGMENTS);
    }
    return r.chance(0.5) ? s : `{"m":{"name":"x"},"d":${s}}`;
}

/* Byte-level mutations of a buffer. */
function mutate(r: Rng, input: Buffer): Buffer {
    let b = Buffer.from(input);
    for (let n = 1 + r.int(3); n > 0; n--) {
        const at = r.int(b.length + 1);
        switch (r.int(6)) {
        case 0:
            if (at < b.length) {
                b[at] = b[at]! ^ (1 << r.int(8));
            }
            break;
        case 1:
            if (at < b.length) {
                b[at] = r.int(256);
            }
            break;
        case 2:
            b = Buffer.concat([b.subarray(0, at),
                b.subarray(at + 1 + r.int(8))]);
            break;
        case 3:
            b = Buffer.concat([b.subarray(0, at), r.bytes(1 + r.int(8)),
                b.subarray(at)]);
            break;
        case 4:
            b = b.subarray(0, at);
            break;
        default:
            b = Buffer.concat([b, b.subarray(at)]);
            break;
        }
    }
    return b;
}

/* Text-level mutation of a valid payload, with a correct header. */
function mutatePayload(r: Rng, s: Spec): Buffer {
    const text = JSON.stringify({ m: { uts: s.uts, name: s.method }, d: s.d });
    const chars = Array.from(text);
    for (let n = 1 + r.int(3); n > 0; n--) {
        const at = r.int(chars.length + 1);
        switch (r.int(3)) {
        case 0: chars.splice(at, 1 + r.int(4)); break;
        case 1: chars.splice(at, 0, r.pick(FRAGMENTS)); break;
        default: chars.splice(at, 1, randomChar(r)); break;
        }
    }
    return rawFrame(s.version, 1, s.status, s.msgid,
        Buffer.from(chars.join(''), 'utf8'));
}

/* ---- tests ------------------------------------------------------------------ */

test(`random chunking of valid streams (seed ${SEED})`, (t) => {
    t.diagnostic(`FUZZ_SEED=${SEED}`);
    const r = new Rng(SEED);
    const specs: Spec[] = [];
    for (let i = 0; i < 200; i++) {
        specs.push(randomSpec(r));
    }
    const frames = specs.map(encodeSpec);
    const want = specs.map((s, i) => expectedMessage(s, frames[i]!.length));
    const stream = Buffer.concat(frames);
    for (let round = 0; round < 25; round++) {
        const chunks = randomChunks(r, stream);
        const got = run(chunks, DEFAULT_MAX_FRAME_BYTES);
        assert.equal(got.reason, null,
            `seed ${SEED} round ${round}: ${String(got.reason)}`);
        assert.deepEqual(got.msgs, want, `seed ${SEED} round ${round}`);
    }
});

test(`garbage yields only FastProtocolError (seed ${SEED})`, async (t) => {
    t.diagnostic(`FUZZ_SEED=${SEED}`);
    const r = new Rng(SEED ^ 0x9e3779b9);
    const started = Date.now();
    const counts: Record<string, number> = {};
    let compared = 0;
    for (let i = 0; i < 4000; i++) {
        let input: Buffer;
        let jsPeer = false;     /* bytes a JS sender could produce? */
        switch (i % 5) {
        case 0:
            input = r.bytes(r.int(64));
            break;
        case 1:
            input = rawFrame(
                r.chance(0.8) ? r.pick([1, 2]) : r.int(256),
                r.chance(0.8) ? 1 : r.int(256),
                r.chance(0.8) ? r.pick([1, 2, 3]) : r.int(256),
                r.chance(0.8) ? r.int(2 ** 31) : r.int(2 ** 32),
                r.bytes(r.int(40)),
                r.chance(0.5) ? undefined : r.int(2 ** 32),
                r.chance(0.7) ? undefined : r.int(r.chance(0.5) ? 64 : 2 ** 32));
            break;
        case 2:
            input = mutate(r, Buffer.concat([encodeSpec(randomSpec(r)),
                encodeSpec(randomSpec(r))]));
            break;
        case 3:
            input = mutatePayload(r, randomSpec(r));
            jsPeer = true;
            break;
        default:
            input = rawFrame(r.pick([1, 2]), 1, r.pick([1, 2, 3]),
                r.int(100), Buffer.from(fragmentPayload(r), 'utf8'));
            jsPeer = true;
            break;
        }
        const limit = r.pick([64, 4096, DEFAULT_MAX_FRAME_BYTES]);
        let ours: Outcome;
        try {
            ours = run(randomChunks(r, input), limit);
        } catch (err) {
            assert.fail(`seed ${SEED} case ${i} (${input.toString('hex')}): ` +
                `non-protocol error ${String(err)}`);
        }
        /* chunking never changes the outcome */
        assert.deepEqual(run([input], limit), ours,
            `seed ${SEED} case ${i}`);
        const key = ours.reason ?? 'ok';
        counts[key] = (counts[key] ?? 0) + 1;

        if (jsPeer && limit === DEFAULT_MAX_FRAME_BYTES) {
            const ref = await reference(input);
            assert.equal(ours.reason, ref.reason,
                `seed ${SEED} case ${i} (${input.toString('hex')})`);
            assert.deepEqual(ours.msgs.map((m) => ({ status: m.status,
                msgid: m.msgid, data: m.data, version: m.version })),
            ref.msgs.map((m) => ({ ...m })));
            compared++;
        }
    }
    t.diagnostic(`outcomes ${JSON.stringify(counts)}; ${compared} ` +
        `compared with node-fast; ${Date.now() - started} ms`);
    /* the generators reach every check */
    for (const reason of FAST_REASONS) {
        assert.ok((counts[reason] ?? 0) > 0, `never produced ${reason}`);
    }
    assert.ok((counts['ok'] ?? 0) > 0);
});

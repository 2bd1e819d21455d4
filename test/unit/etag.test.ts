/*
 * Etag vectors from moray-api §6.3 and storage §7, plus a cross-check of
 * the slicing-by-4 CRC against a bit-at-a-time reference and zlib.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as zlib from 'node:zlib';

import { crc32OfCodeUnits, etagOf, updateEtag } from '../../src/schema/etag';

const VECTORS: Array<[string, string]> = [
    // moray-api §6.3
    ['{}', 'A3A6BF43'],
    ['{"a":1}', '561BACAF'],
    ['{"name":"é"}', '625061AE'],
    ['{"s":"☃"}', 'D2A2706C'],
    ['{"e":"😀"}', '14AA0924'],
    ['{"email":"mark.cavage@joyent.com","ismanager":false}', 'D6AE42DF'],
    ['{"n":1}', 'D44B3B7E'],
    ['{"loginName":"lisa","uid":"800"}', '406B60FB'],
    ['{"email":"A@x.com","n":5,"b":true,"tags":["a","b"],"other":"zz"}', 'D0E7F4DF'],
    // storage §7
    ['{"email":"mark.cavage@joyent.com"}', '83E09E0F'],
    ['{"numr":"[1,4]","num":5}', '2A7CFC8E'],
    ['{"n":"é"}', '70DED814'],
    ['{"n":"€😀"}', 'AA39CFC0'],
];

test('etagOf matches every spec vector', () => {
    for (const [text, etag] of VECTORS) {
        assert.equal(etagOf(text), etag, text);
    }
});

test('etagOf differs from UTF-8 CRC-32 for non-ASCII (spec counter-examples)', () => {
    const utf8 = (s: string) =>
        zlib.crc32(Buffer.from(s, 'utf8')).toString(16).toUpperCase().padStart(8, '0');
    assert.equal(utf8('{"name":"é"}'), 'D276C622');
    assert.equal(utf8('{"n":"é"}'), 'F9D01209');
    assert.equal(utf8('{"n":"€😀"}'), '71D5325E');
});

function bitwiseCrc(s: string): number {
    let crc = 0xFFFFFFFF;
    for (let i = 0; i < s.length; i++) {
        crc ^= s.charCodeAt(i) & 0xff;
        for (let k = 0; k < 8; k++) {
            crc = (crc & 1) ? (0xEDB88320 ^ (crc >>> 1)) : (crc >>> 1);
        }
    }
    return (crc ^ 0xFFFFFFFF) >>> 0;
}

test('slicing-by-4 equals bitwise CRC and zlib(latin1) for every length 0..70', () => {
    let s = '';
    for (let len = 0; len <= 70; len++) {
        const want = bitwiseCrc(s);
        assert.equal(crc32OfCodeUnits(s), want, `len ${len}`);
        assert.equal(zlib.crc32(Buffer.from(s, 'latin1')), want, `zlib len ${len}`);
        s += String.fromCharCode((len * 7919) % 0x3000);
    }
});

test('random strings: etag equals zlib CRC-32 of latin1 (low byte) encoding', () => {
    for (let n = 0; n < 200; n++) {
        let s = '';
        const len = Math.floor(Math.random() * 300);
        for (let i = 0; i < len; i++) {
            s += String.fromCharCode(Math.floor(Math.random() * 0x10000));
        }
        const want = zlib.crc32(Buffer.from(s, 'latin1')).toString(16)
            .toUpperCase().padStart(8, '0');
        assert.equal(etagOf(s), want);
    }
});

test('etag is zero-padded to 8 upper-case hex digits', () => {
    for (let i = 0; i < 2000; i++) {
        const e = etagOf(String(i));
        assert.match(e, /^[0-9A-F]{8}$/);
    }
});

test('updateEtag is u + 7 lower-case hex characters, fresh each call', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 100; i++) {
        const e = updateEtag();
        assert.match(e, /^u[0-9a-f]{7}$/);
        seen.add(e);
    }
    assert.ok(seen.size > 90);
});

test('etagOf (native CRC-32 over latin1) equals the code-unit CRC for any UTF-16 text', () => {
    const alphabet = ['a', '"', '\\', 'é', 'ÿ', 'Ā', '中', '\u0100', '\uffff', '😀', '\ud800', '\n'];
    let seed = 7;
    const rnd = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
    for (let n = 0; n < 500; n++) {
        let s = '';
        const len = Math.floor(rnd() * 300);
        for (let i = 0; i < len; i++) {
            s += alphabet[Math.floor(rnd() * alphabet.length)];
        }
        const want = crc32OfCodeUnits(s).toString(16).toUpperCase().padStart(8, '0');
        assert.equal(etagOf(s), want, JSON.stringify(s));
    }
});

/*
 * The exact-stage post-filter (moray-api.md §10.4): typed semantics on
 * index fields, then a differential test against moray-filter@1.0.0's own
 * matches() on unindexed fields (where the reference applied it unchanged).
 */

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MorayError } from '../../src/errors/catalog';
import { compileMatcher, parseFilter } from '../../src/filter';
import type { BucketSchema, IndexSpec } from '../../src/schema/bucket-types';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const morayFilter = require('moray-filter') as {
    parse(s: string): { matches(o: object): boolean };
};

function bucket(index: Record<string, IndexSpec>, reindexing: string[] = []): BucketSchema {
    return { name: 'b', index, reindexing: new Set(reindexing), hasExtendedId: false };
}

const B = bucket({
    email: { type: 'string' }, n: { type: 'number' }, nums: { type: '[number]' },
    b: { type: 'boolean' }, bools: { type: '[boolean]' }, tags: { type: '[string]' },
    dt: { type: 'date' }, dts: { type: '[date]' }, dtr: { type: 'daterange' },
    numr: { type: 'numrange' }, ip: { type: 'ip' }, ips: { type: '[ip]' },
    sub: { type: 'subnet' }, subs: { type: '[subnet]' }, mac: { type: 'mac' },
    macs: { type: '[mac]' }, u: { type: 'uuid' }, r: { type: 'number' },
}, ['r']);

function m(filter: string, record: Record<string, unknown>, b: BucketSchema = B): boolean {
    return compileMatcher(parseFilter(filter), b)(record);
}

describe('post-filter: typed values on index fields', () => {
    it('compares numbers strictly for = and with JS coercion for >= <=', () => {
        assert.equal(m('(n=5)', { n: 5 }), true);
        assert.equal(m('(n=5.0)', { n: 5 }), true);
        assert.equal(m('(n=5)', { n: '5' }), false);
        assert.equal(m('(n>=5)', { n: '6' }), true);
        assert.equal(m('(n<=5)', { n: 6 }), false);
        assert.equal(m('(n=abc)', { n: null }), false);
        assert.equal(m('(n=abc)', { n: NaN }), false);
        assert.equal(m('(nums=2)', { nums: [1, 2] }), true);
        assert.equal(m('(nums>=3)', { nums: [1, 2] }), false);
        assert.equal(m('(!(n=5))', {}), true);
        assert.equal(m('(!(n=5))', { n: 4 }), true);
        assert.equal(m('(!(n=5))', { n: 5 }), false);
    });

    it('uses booleans for boolean fields, strings elsewhere', () => {
        assert.equal(m('(b=true)', { b: true }), true);
        assert.equal(m('(b=TRUE)', { b: true }), true);
        assert.equal(m('(b=false)', { b: true }), false);
        assert.equal(m('(bools=false)', { bools: [true, false] }), true);
        assert.equal(m('(b>=false)', { b: true }), true);
        /* unindexed: the filter value stays a string */
        assert.equal(m('(flag=true)', { flag: true }), false);
        assert.equal(m('(flag=true)', { flag: 'true' }), true);
        assert.equal(m('(x=15)', { x: 15 }), false);
        assert.equal(m('(x>=15)', { x: 16 }), true);
        assert.equal(m('(x<=15)', { x: '2' }), false);
    });

    it('types _id, _mtime, _txn_snap as numbers and _key, _etag as strings', () => {
        assert.equal(m('(_id=5)', { _id: 5 }), true);
        assert.equal(m('(_mtime>=100)', { _mtime: 150 }), true);
        assert.equal(m('(_txn_snap=2)', { _txn_snap: 2 }), true);
        assert.equal(m('(_key=5)', { _key: '5' }), true);
        assert.equal(m('(_etag=ABC)', { _etag: 'ABC' }), true);
        assert.equal(m('(_count=3)', { _count: 3 }), false);
    });

    it('uses raw strings for reindexing fields', () => {
        assert.equal(m('(r=5)', { r: 5 }), false);
        assert.equal(m('(r=5)', { r: '5' }), true);
    });

    it('is always true for date, daterange and numrange fields and range operators', () => {
        for (const f of ['(dt=2019-01-01T00:00:00Z)', '(dts>=2019-01-01T00:00:00Z)', '(dt=*)',
            '(dtr:contains:=2019-01-01T00:00:00Z)', '(numr:overlaps:=[1,2])', '(numr=x*)',
            '(dt:caseIgnoreMatch:=2019-01-01T00:00:00Z)', '(n:within:=[1,2])',
            '(nums:within:=[1,2])', '(ip:within:=10.0.0.0/8)', '(sub:contains:=10.0.0.1)']) {
            assert.equal(m(f, {}), true, f);
            assert.equal(m(f, { dt: 'whatever', n: 100 }), true, f);
        }
        /* and therefore (!(leaf)) is never true in this stage, as in the reference */
        assert.equal(m('(!(dt=2019-01-01T00:00:00Z))', { dt: '2020-01-01T00:00:00.000Z' }), false);
    });

    it('compares ip, subnet and mac values as parsed addresses', () => {
        assert.equal(m('(ip=10.0.0.1)', { ip: '10.0.0.1' }), true);
        assert.equal(m('(ip=10.000.0.1)', { ip: '10.0.0.1' }), true);
        assert.equal(m('(ip=10.0.0.1)', { ip: '::ffff:10.0.0.1' }), true);
        assert.equal(m('(ip>=10.0.0.9)', { ip: '10.0.0.10' }), true);
        assert.equal(m('(ip<=10.0.0.9)', { ip: '10.0.0.10' }), false);
        assert.equal(m('(ip=FD00::1)', { ip: 'fd00:0::1' }), true);
        assert.equal(m('(ip=10.0.0.1)', { ip: 'garbage' }), false);
        assert.equal(m('(ip=10.0.0.1)', {}), false);
        assert.equal(m('(ips=10.0.0.2)', { ips: ['10.0.0.1', 'x', '10.0.0.2'] }), true);
        assert.equal(m('(sub=10.1.2.3/8)', { sub: '10.0.0.0/8' }), true);
        assert.equal(m('(sub>=10.0.0.0/8)', { sub: '10.0.0.0/16' }), false);
        assert.equal(m('(sub<=10.0.0.0/8)', { sub: '10.0.0.0/16' }), true);
        assert.equal(m('(subs=10.0.0.0/8)', { subs: ['192.168.0.0/16', '10.0.0.0/8'] }), true);
        assert.equal(m('(mac=90B8D0E6BEE1)', { mac: '90:b8:d0:e6:be:e1' }), true);
        assert.equal(m('(mac>=90:b8:d0:e6:be:e0)', { mac: '90:b8:d0:e6:be:e1' }), true);
        assert.equal(m('(macs=0:1:2:3:4:5)', { macs: ['00:01:02:03:04:05'] }), true);
        assert.equal(m('(mac=*)', { mac: 'x' }), true);
    });

    it('compares uuids as strings', () => {
        const u = '2b2ad5a6-dfd1-11e9-93c7-d7ab3cfab86f';
        assert.equal(m(`(u=${u})`, { u }), true);
        assert.equal(m(`(u>=${u})`, { u: 'zz' }), true);
    });

    it('implements caseIgnoreMatch and caseIgnoreSubstringsMatch', () => {
        assert.equal(m('(email:caseIgnoreMatch:=a@X.COM)', { email: 'A@x.com' }), true);
        assert.equal(m('(email:caseIgnoreMatch:=a@X.COM)', { email: 'b@x.com' }), false);
        assert.equal(m('(tags:caseIgnoreMatch:=C)', { tags: ['a', 'c'] }), true);
        assert.equal(m('(x:caseIgnoreMatch:=5)', { x: 5 }), false);
        assert.equal(m('(n:caseIgnoreMatch:=5)', { n: 5 }), false);
        const sub = '(email:caseIgnoreSubstringsMatch:=*X.COM)';
        assert.equal(m(sub, { email: 'foo@x.com' }), true);
        assert.equal(m(sub, { email: 'FOO@X.COM' }), true);
        assert.equal(m(sub, { email: 'foo@x.com.au' }), false);
        assert.equal(m(sub, { email: 5 }), false);
        assert.equal(m('(email:caseIgnoreSubstringsMatch:=A*B*C)', { email: 'axxbyyc' }), true);
        assert.equal(m('(email:caseIgnoreSubstringsMatch:=A*B*C)', { email: 'xaxxbyyc' }), false);
        /* the lost escape: \2a is a wildcard here */
        assert.equal(m('(email:caseIgnoreSubstringsMatch:=a\\2ab*)', { email: 'aQQb' }), true);
        assert.equal(m('(email:caseIgnoreSubstringsMatch:=a\\2ab)', { email: 'aQQb' }), true);
        assert.equal(m('(email:caseIgnoreSubstringsMatch:=ABC)', { email: 'abc' }), true);
        assert.equal(m('(email:caseIgnoreSubstringsMatch:=ABC)', { email: 'abcd' }), false);
    });

    it('anchors substring regular expressions only on non-empty pieces', () => {
        assert.equal(m('(email=*foo)', { email: 'xfoo' }), true);
        assert.equal(m('(email=*foo)', { email: 'xfooy' }), false);
        assert.equal(m('(email=foo*)', { email: 'foox' }), true);
        assert.equal(m('(email=f.o*)', { email: 'fxox' }), false);
        assert.equal(m('(email=a*b)', { email: 'a\nb' }), false);
        assert.equal(m('(email=**)', { email: '' }), true);
        assert.equal(m('(email=a*)', {}), false);
        assert.equal(m('(x=1*)', { x: 12 }), true);
        assert.equal(m('(tags=c*)', { tags: ['a', 'cc'] }), true);
    });

    it('looks attributes up exactly first, then case-insensitively', () => {
        assert.equal(m('(EMAIL=x)', { email: 'x' }), true);
        assert.equal(m('(Foo=1)', { foo: '2', FOO: '1' }), false);
        assert.equal(m('(Foo=1)', { Foo: '1', foo: '2' }), true);
        assert.equal(m('(constructor=*)', {}), false);
        assert.equal(m('(__proto__=*)', JSON.parse('{"__proto__": 1}') as Record<string, unknown>), true);
    });

    it('throws the compiler\'s errors', () => {
        assert.throws(() => compileMatcher(parseFilter('(b=yes)'), B),
            (e: unknown) => e instanceof MorayError && e.name === 'InvalidQueryError' &&
                e.message === '(b=yes) is an invalid filter');
        assert.throws(() => compileMatcher(parseFilter('(ip>=nope)'), B), { name: 'InvalidQueryError' });
        assert.throws(() => compileMatcher(parseFilter('(n~=1)'), B), { message: 'approx filters not allowed' });
        assert.throws(() => compileMatcher(parseFilter('(n:x:=1)'), B), { message: 'unsupported ext filter' });
        assert.throws(() => compileMatcher(parseFilter('(_idx=1)'), B),
            { message: 'filtering on "_idx" is not allowed' });
    });
});

describe('post-filter: differential against moray-filter matches() on unindexed fields', () => {
    const EMPTY = bucket({});

    function rng(seed: number): () => number {
        let x = seed >>> 0;
        return () => {
            x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
            return x / 0x100000000;
        };
    }

    const ATTRS = ['a', 'b', 'A', 'cc', 'Cc'];
    const VALUES = ['1', '15', '2', 'x', 'X', 'ab', '', 'true', 'null', 'a.b', 'é', '1e1', '-1'];
    const REC_VALUES: unknown[] = [1, 15, 2, '1', '15', '2', 'x', 'X', 'ab', '', true, false, null,
        'null', 'a.b', 'aXb', 'é', 10, -1, 'a\nb', [], ['x', 1], [null], [[1]], { x: 1 }, '15x'];

    function gen(rand: () => number): { filter: string; records: Record<string, unknown>[] } {
        const pick = <T>(a: readonly T[]): T => a[Math.floor(rand() * a.length)]!;
        const esc = (s: string): string => s.replace(/[*()\\]/g, (c) => '\\' + c);
        const leaf = (): string => {
            const a = pick(ATTRS);
            switch (Math.floor(rand() * 6)) {
            case 0: return `(${a}=${esc(pick(VALUES))})`;
            case 1: return `(${a}>=${esc(pick(VALUES))})`;
            case 2: return `(${a}<=${esc(pick(VALUES))})`;
            case 3: return `(${a}=*)`;
            default: {
                const parts = Array.from({ length: 2 + Math.floor(rand() * 2) },
                    () => (rand() < 0.4 ? '' : esc(pick(VALUES))));
                return `(${a}=${parts.join('*')})`;
            }
            }
        };
        const filter = (d: number): string => {
            const r = rand();
            if (d > 2 || r < 0.5) {
                return leaf();
            }
            if (r < 0.85) {
                const n = 1 + Math.floor(rand() * 3);
                return '(' + pick(['&', '|']) + Array.from({ length: n }, () => filter(d + 1)).join('') + ')';
            }
            return '(!' + filter(d + 1) + ')';
        };
        const records = Array.from({ length: 8 }, () => {
            const rec: Record<string, unknown> = {};
            for (const a of ATTRS) {
                if (rand() < 0.5) {
                    rec[a] = pick(REC_VALUES);
                }
            }
            return rec;
        });
        return { filter: filter(0), records };
    }

    for (const seed of [11, 12, 13]) {
        it(`agrees on 3000 random filters x 8 records (seed ${seed})`, (t) => {
            const rand = rng(seed);
            let trues = 0;
            let total = 0;
            for (let i = 0; i < 3000; i++) {
                const { filter, records } = gen(rand);
                const ours = compileMatcher(parseFilter(filter), EMPTY);
                const ref = morayFilter.parse(filter);
                for (const rec of records) {
                    const expected = ref.matches(rec);
                    assert.equal(ours(rec), expected, `${filter} on ${JSON.stringify(rec)}`);
                    total++;
                    if (expected) {
                        trues++;
                    }
                }
            }
            t.diagnostic(`${trues}/${total} matched`);
            assert.ok(trues > total / 10 && trues < total * 0.9);
        });
    }
});

/*
 * The index type table (storage.md §3.2), write conversions (storage.md §5)
 * and the value normalisers.  Expected address texts were produced with the
 * reference libraries (ip6addr@0.2.2, macaddr@0.0.1) on the same inputs.
 */

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MorayError } from '../../src/errors/catalog';
import {
    INDEX_TYPES, INDEX_TYPE_NAMES, type IndexType, convertForWrite, filterParam, isIndexType,
} from '../../src/schema/index-types';
import {
    ValueFormatError, booleanText, canonicalIp, canonicalMac, canonicalSubnet, checkNumrange,
    checkUuid, compareCidr, compareIp, compareMac, isoDate, normaliseDaterange, parseCidr, parseIp,
    parseMac,
} from '../../src/schema/values';

const ERR = 'ERR';

function attempt(f: () => string): string {
    try {
        return f();
    } catch (err) {
        assert.ok(err instanceof ValueFormatError, `unexpected ${String(err)}`);
        return ERR;
    }
}

describe('index type table', () => {
    it('lists the 17 types in the validator order', () => {
        assert.deepEqual([...INDEX_TYPE_NAMES], ['string', '[string]', 'number', '[number]',
            'numrange', 'boolean', '[boolean]', 'date', '[date]', 'daterange', 'ip', '[ip]', 'mac',
            '[mac]', 'subnet', '[subnet]', 'uuid']);
        assert.equal(Object.keys(INDEX_TYPES).length, 17);
        assert.ok(isIndexType('[ip]'));
        assert.ok(!isIndexType('[uuid]'));
        assert.ok(!isIndexType('constructor'));
        assert.ok(!isIndexType('toString'));
    });

    it('matches storage.md §3.2 column by column', () => {
        /* type: [PG type, method, overlaps, contains, within] ; "arg op" */
        const expected: Record<IndexType, [string, string, string, string, string]> = {
            'string': ['TEXT', 'BTREE', '-', '-', '-'],
            '[string]': ['TEXT[]', 'GIN', '-', '-', '-'],
            'number': ['NUMERIC', 'BTREE', '-', '-', 'numrange @>'],
            '[number]': ['NUMERIC[]', 'GIN', '-', '-', 'numrange @>'],
            'numrange': ['NUMRANGE', 'GIST', 'numrange &&', 'number <@', '-'],
            'boolean': ['BOOLEAN', 'BTREE', '-', '-', '-'],
            '[boolean]': ['BOOLEAN[]', 'GIN', '-', '-', '-'],
            'date': ['TIMESTAMPTZ', 'BTREE', '-', '-', 'daterange @>'],
            '[date]': ['TIMESTAMPTZ[]', 'GIN', '-', '-', 'daterange @>'],
            'daterange': ['TSTZRANGE', 'GIST', 'daterange &&', 'date <@', '-'],
            'ip': ['INET', 'BTREE', '-', '-', 'subnet >>'],
            '[ip]': ['INET[]', 'GIN', '-', '-', 'subnet >>'],
            'mac': ['MACADDR', 'BTREE', '-', '-', '-'],
            '[mac]': ['MACADDR[]', 'GIN', '-', '-', '-'],
            'subnet': ['CIDR', 'BTREE', '-', 'ip <<', '-'],
            '[subnet]': ['CIDR[]', 'GIN', '-', 'ip <<', '-'],
            'uuid': ['UUID', 'BTREE', '-', '-', '-'],
        };
        for (const name of INDEX_TYPE_NAMES) {
            const info = INDEX_TYPES[name];
            const op = (r: 'overlaps' | 'contains' | 'within'): string => {
                const o = info.ext[r];
                return o === undefined ? '-' : `${o.arg} ${o.op}`;
            };
            assert.deepEqual([info.pgType, info.method, op('overlaps'), op('contains'),
                op('within')], expected[name], name);
            assert.equal(info.isArray, name.startsWith('['));
            assert.equal(info.arrayCast, info.isArray ? info.pgType : null);
            assert.equal(info.element, name.replace(/[[\]]/g, ''));
            assert.ok(Object.isFrozen(info));
        }
    });

    it('says which post-filter semantics apply', () => {
        const modes = Object.fromEntries(INDEX_TYPE_NAMES.map((n) => [n, INDEX_TYPES[n].postFilter]));
        assert.deepEqual(modes, {
            'string': 'exact', '[string]': 'exact', 'number': 'exact', '[number]': 'exact',
            'numrange': 'always', 'boolean': 'exact', '[boolean]': 'exact', 'date': 'always',
            '[date]': 'always', 'daterange': 'always', 'ip': 'address', '[ip]': 'address',
            'mac': 'address', '[mac]': 'address', 'subnet': 'address', '[subnet]': 'address',
            'uuid': 'exact',
        });
    });
});

describe('ip / subnet / mac normalisation (ip6addr@0.2.2, macaddr@0.0.1)', () => {
    it('canonicalises IP addresses', () => {
        const cases: [unknown, string][] = [
            ['192.168.000.1', '192.168.0.1'], ['FD00:0::1', 'fd00::1'],
            ['::ffff:1.2.3.4', '::ffff:1.2.3.4'], ['::FFFF:192.168.0.1', '::ffff:192.168.0.1'],
            ['1:0:2:3:4:5:6:7', '1::2:3:4:5:6:7'], ['::', '::'], ['::1', '::1'], ['1::', '1::'],
            ['1:0:0:2:0:0:0:3', '1:0:0:2::3'], ['0:0:1:0:0:1:0:0', '::1:0:0:1:0:0'],
            ['2001:DB8:0:0:0:0:0:1', '2001:db8::1'], ['1.2.3. 4', '1.2.3.4'],
            ['+1.2.3.4', '1.2.3.4'], ['-0.0.0.0', '0.0.0.0'], ['1e0.2.3.4', '1.2.3.4'],
            ['::ffff:0:0', '::ffff:0:0'], ['00001::', '1::'],
            ['1.2.3.256', ERR], ['1.2.3', ERR], ['1.2.3.4.5', ERR], ['::1.2.3.4', ERR],
            ['1::2::3', ERR], ['1:2:3:4:5:6:7:8:9', ERR], ['12345::', ERR], ['fe80::1%eth0', ERR],
            ['', ERR], [' ', ERR], ['1.2.3.4/24', ERR], ['0x1.2.3.4', ERR],
            [0, '0.0.0.0'], [3232235521, '192.168.0.1'], [4294967295, '255.255.255.255'],
            [4294967296, ERR], [1.5, ERR], [-1, ERR], [true, ERR], [null, ERR], [['1.2.3.4'], ERR],
        ];
        for (const [input, out] of cases) {
            assert.equal(attempt(() => canonicalIp(input)), out, JSON.stringify(input));
        }
    });

    it('canonicalises subnets (host bits cleared)', () => {
        const cases: [unknown, string][] = [
            ['192.168.4.7/24', '192.168.4.0/24'], ['10.0.0.0/8', '10.0.0.0/8'],
            ['1.2.3.4/32', '1.2.3.4/32'], ['1.2.3.4/0', '0.0.0.0/0'], ['1.2.3.4/33', ERR],
            ['::ffff:1.2.3.4/120', '::ffff:1.2.3.0/120'], ['::ffff:1.2.3.4/24', ERR],
            ['fd00::1/8', 'fd00::/8'], ['FD00:ABCD::1/64', 'fd00:abcd::/64'], ['1.2.3.4', ERR],
            ['1.2.3.4/', ERR], ['1.2.3.4/x', ERR], ['1.2.3.4/4294967320', '1.2.3.0/24'],
            ['::/0', '::/0'], ['::1/128', '::1/128'], ['::1/129', ERR], [' 1.2.3.4/24', ERR],
            [5, ERR],
        ];
        for (const [input, out] of cases) {
            assert.equal(attempt(() => canonicalSubnet(input)), out, JSON.stringify(input));
        }
    });

    it('canonicalises MAC addresses', () => {
        const cases: [unknown, string][] = [
            ['90-B8-D0-E6-BE-E1', '90:b8:d0:e6:be:e1'], ['90:b8:d0:e6:be:e1', '90:b8:d0:e6:be:e1'],
            ['90b8d0e6bee1', '90:b8:d0:e6:be:e1'], ['90B8D0E6BEE1', '90:b8:d0:e6:be:e1'],
            ['0:1:2:3:4:5', '00:01:02:03:04:05'], ['a:b:c:d:e:f', '0a:0b:0c:0d:0e:0f'],
            ['90b8.d0e6.bee1', ERR], ['90:b8:d0:e6:be', ERR], ['90:b8:d0:e6:be:e1:00', ERR],
            ['90:b8-d0:e6:be:e1', ERR], ['90:b8:d0:e6:be:', ERR], ['90:b8:d0:e6:be:e1:', ERR],
            ['90:b8:d0:e6:be:e1f', ERR], ['', ERR], ['90b8d0e6bee', ERR],
            ['g0:b8:d0:e6:be:e1', ERR], ['::::::', ERR],
            [0, '00:00:00:00:00:00'], [159447859953377, '91:04:59:0d:7e:e1'],
            [281474976710655, 'ff:ff:ff:ff:ff:ff'], [281474976710656, ERR], [1.5, ERR], [-1, ERR],
            [false, ERR],
        ];
        for (const [input, out] of cases) {
            assert.equal(attempt(() => canonicalMac(input)), out, JSON.stringify(input));
        }
    });

    it('compares addresses like the reference libraries', () => {
        assert.equal(compareIp(parseIp('1.2.3.4'), parseIp('::ffff:1.2.3.4')), 0);
        assert.equal(compareIp(parseIp('10.0.0.9'), parseIp('10.0.0.10')), -1);
        assert.equal(compareIp(parseIp('::1'), parseIp('1.2.3.4')), -1);
        assert.equal(compareIp(parseIp('fd00::'), parseIp('::')), 1);
        /* same network: the shorter prefix (larger subnet) sorts after */
        assert.ok(compareCidr(parseCidr('10.0.0.0/8'), parseCidr('10.0.0.0/16')) > 0);
        assert.ok(compareCidr(parseCidr('10.0.0.0/16'), parseCidr('10.1.0.0/16')) < 0);
        assert.equal(compareCidr(parseCidr('10.0.0.7/8'), parseCidr('10.0.0.0/8')), 0);
        assert.equal(compareMac(parseMac('00:00:00:00:00:02'), parseMac('000000000001')), 1);
    });
});

describe('dates, ranges, uuid, boolean', () => {
    it('accepts only Z timestamps and normalises them to ISO with milliseconds', () => {
        const cases: [string, string][] = [
            ['2019-07-04T20:30:55Z', '2019-07-04T20:30:55.000Z'],
            ['2019-07-04T20:30:55.1234567Z', '2019-07-04T20:30:55.123Z'],
            ['+002019-07-04T00:00:00Z', '2019-07-04T00:00:00.000Z'],
            ['2019-07-04T24:00:00Z', '2019-07-05T00:00:00.000Z'],
            ['2019-07-04T20:30:55+00:00', ERR], ['2019-07-04', ERR], ['2019-07-04T20:30:55', ERR],
            ['2019-13-04T00:00:00Z', ERR], ['2019-07-04T20:30:55x5Z', ERR],
            ['2019-7-4T1:2:3Z', ERR], ['x2019-07-04T20:30:55Z', ERR],
        ];
        for (const [input, out] of cases) {
            assert.equal(attempt(() => isoDate(input)), out, input);
        }
    });

    it('normalises dateranges and validates numranges', () => {
        assert.equal(normaliseDaterange('[2019-07-04T00:00:00Z,)'), '[2019-07-04T00:00:00.000Z,)');
        assert.equal(normaliseDaterange('(,2019-07-04T00:00:00.5Z]'), '(,2019-07-04T00:00:00.500Z]');
        assert.equal(normaliseDaterange('[,]'), '[,]');
        for (const bad of ['[2019-07-04,)', '2019-07-04T00:00:00Z', '[a,b]', '{,}', '[,']) {
            assert.equal(attempt(() => normaliseDaterange(bad)), ERR, bad);
        }
        for (const ok of ['[1,2]', '(1,2)', '[-1.5,)', '(,]', '[,3.25)']) {
            assert.equal(checkNumrange(ok), ok);
        }
        for (const bad of ['[1,2', '1,2', '[1.,2]', '[+1,2]', '[1e3,2]', '[ 1,2]', '[a,b]']) {
            assert.equal(attempt(() => checkNumrange(bad)), ERR, bad);
        }
    });

    it('accepts lower-case UUIDs only', () => {
        assert.equal(checkUuid('2b2ad5a6-dfd1-11e9-93c7-d7ab3cfab86f'),
            '2b2ad5a6-dfd1-11e9-93c7-d7ab3cfab86f');
        assert.equal(attempt(() => checkUuid('2B2AD5A6-DFD1-11E9-93C7-D7AB3CFAB86F')), ERR);
        assert.equal(attempt(() => checkUuid('2b2ad5a6dfd111e993c7d7ab3cfab86f')), ERR);
    });

    it('takes booleans in any case, as TRUE/FALSE text', () => {
        assert.equal(booleanText(true), 'TRUE');
        assert.equal(booleanText('fAlSe'), 'FALSE');
        assert.equal(attempt(() => booleanText('yes')), ERR);
        assert.equal(attempt(() => booleanText(1)), ERR);
    });
});

describe('convertForWrite (storage.md §5)', () => {
    const ok = (type: IndexType, v: unknown): unknown => convertForWrite('f', type, v);
    const bad = (type: IndexType, v: unknown): void => {
        assert.throws(() => convertForWrite('f', type, v), (err: unknown) =>
            err instanceof MorayError && err.name === 'InvalidIndexTypeError' &&
            err.message === `index(f) is of type ${type}`, `${type} ${JSON.stringify(v)}`);
    };

    it('maps null and undefined to null for every type', () => {
        for (const t of INDEX_TYPE_NAMES) {
            assert.equal(ok(t, null), null);
            assert.equal(ok(t, undefined), null);
        }
    });

    it('converts scalars', () => {
        assert.equal(ok('string', 'x'), 'x');
        assert.equal(ok('string', 5), '5');
        assert.equal(ok('string', ['a', 'b']), 'a,b');
        assert.equal(ok('string', { a: 1 }), '[object Object]');
        assert.equal(ok('number', 5), 5);
        assert.equal(ok('number', '12abc'), 12);
        assert.ok(Number.isNaN(ok('number', 'abc')));
        assert.ok(Number.isNaN(ok('number', true)));
        assert.equal(ok('boolean', true), 'TRUE');
        assert.equal(ok('boolean', 'false'), 'FALSE');
        bad('boolean', 'yes');
        bad('boolean', 0);
        assert.deepEqual(ok('date', '2019-07-04T20:30:55Z'), new Date('2019-07-04T20:30:55.000Z'));
        assert.ok(ok('date', '2019-07-04T20:30:55Z') instanceof Date);
        bad('date', '2019-07-04T20:30:55+01:00');
        bad('date', 1562272255000);
        assert.equal(ok('daterange', '[2019-07-04T00:00:00Z,)'), '[2019-07-04T00:00:00.000Z,)');
        bad('daterange', '[yesterday,)');
        assert.equal(ok('numrange', '[1,5)'), '[1,5)');
        bad('numrange', '[1,5');
        assert.equal(ok('ip', '192.168.000.1'), '192.168.0.1');
        assert.equal(ok('ip', 3232235521), '192.168.0.1');
        bad('ip', '192.168.0.1/24');
        assert.equal(ok('subnet', '192.168.4.7/24'), '192.168.4.0/24');
        bad('subnet', '192.168.4.7');
        assert.equal(ok('mac', '90-B8-D0-E6-BE-E1'), '90:b8:d0:e6:be:e1');
        assert.equal(ok('mac', 159447859953377), '91:04:59:0d:7e:e1');
        bad('mac', '90b8.d0e6.bee1');
        assert.equal(ok('uuid', '2b2ad5a6-dfd1-11e9-93c7-d7ab3cfab86f'),
            '2b2ad5a6-dfd1-11e9-93c7-d7ab3cfab86f');
        bad('uuid', '2B2AD5A6-DFD1-11E9-93C7-D7AB3CFAB86F');
    });

    it('builds PostgreSQL array literals for array types', () => {
        assert.equal(ok('[string]', ['a', 'b c']), '{a, b c}');
        assert.equal(ok('[string]', 'solo'), '{solo}');
        assert.equal(ok('[string]', ['a,b', 'q"x', '{}', 'back\\slash']),
            '{"a\\,b", "q\\"x", "\\{\\}", "back\\\\slash"}');
        assert.equal(ok('[string]', []), '{}');
        assert.equal(ok('[string]', [null, 1]), '{null, 1}');
        assert.equal(ok('[number]', [1, '2.5', 'x']), '{1, 2.5, NaN}');
        assert.equal(ok('[number]', 7), '{7}');
        assert.equal(ok('[boolean]', [true, 'False']), '{TRUE, FALSE}');
        bad('[boolean]', [true, 'nope']);
        assert.equal(ok('[date]', ['2019-07-04T20:30:55Z']), '{2019-07-04T20:30:55.000Z}');
        assert.equal(ok('[ip]', ['::FFFF:1.2.3.4', '10.0.0.01']), '{::ffff:1.2.3.4, 10.0.0.1}');
        assert.equal(ok('[subnet]', '10.1.2.3/8'), '{10.0.0.0/8}');
        assert.equal(ok('[mac]', ['0:1:2:3:4:5']), '{00:01:02:03:04:05}');
        bad('[ip]', ['10.0.0.1', 'nope']);
        bad('[mac]', [null]);
    });
});

describe('filterParam (storage.md §11.3)', () => {
    it('types filter values per column type', () => {
        assert.equal(filterParam('string', 'x'), 'x');
        assert.equal(filterParam('number', '5'), 5);
        assert.ok(Number.isNaN(filterParam('number', 'abc')));
        assert.equal(filterParam('boolean', 'True'), 'TRUE');
        assert.deepEqual(filterParam('date', '2019-01-01T00:00:00Z'), new Date('2019-01-01T00:00:00Z'));
        assert.equal(filterParam('ip', 'FD00:0::1'), 'fd00::1');
        assert.equal(filterParam('subnet', '10.1.2.3/8'), '10.0.0.0/8');
        assert.equal(filterParam('mac', '90B8D0E6BEE1'), '90:b8:d0:e6:be:e1');
        assert.equal(filterParam('numrange', '(1,2)'), '(1,2)');
        assert.equal(filterParam('daterange', '[2019-01-01T00:00:00Z,)'), '[2019-01-01T00:00:00.000Z,)');
        assert.throws(() => filterParam('uuid', 'ABC'), ValueFormatError);
        assert.throws(() => filterParam('boolean', 'yes'), ValueFormatError);
    });
});

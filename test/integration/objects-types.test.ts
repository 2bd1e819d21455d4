/*
 * Every Moray index type end to end (moray-api.md §5.3, §6.4, §10;
 * storage.md §5, §8, §11): the value written, the column PostgreSQL
 * stores, the value read back (overlay), and findObjects filters of every
 * operator on every type, including negation, and/or, missing values,
 * unindexed fields and internal fields, plus the filter errors.
 */

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { call } from '../helpers/harness';
import {
    createBucket, del, find, findKeySet, get, objectsFixture, put, rejects,
} from './objects-shared';

const fx = objectsFixture('objtypes');

const TYPES_INDEX = {
    str: { type: 'string' },
    num: { type: 'number' },
    bool: { type: 'boolean' },
    uid: { type: 'uuid' },
    dt: { type: 'date' },
    mac: { type: 'mac' },
    ip: { type: 'ip' },
    sub: { type: 'subnet' },
    numr: { type: 'numrange' },
    dr: { type: 'daterange' },
    astr: { type: '[string]' },
    anum: { type: '[number]' },
    abool: { type: '[boolean]' },
    adt: { type: '[date]' },
    aip: { type: '[ip]' },
    amac: { type: '[mac]' },
    asub: { type: '[subnet]' },
};

const U = (n: number) => `00000000-0000-0000-0000-${String(n).padStart(12, '0')}`;

const OBJECTS: Record<string, Record<string, unknown>> = {
    o1: {
        str: 'alpha', num: 1, bool: true, uid: U(1), dt: '2019-01-01T00:00:00Z',
        mac: '00:00:00:00:00:01', ip: '10.0.0.1', sub: '10.0.0.0/24', numr: '[1,5]',
        dr: '[2019-01-01T00:00:00Z,2019-02-01T00:00:00Z)', astr: ['a', 'b'], anum: [1, 2],
        abool: [true], adt: ['2019-01-01T00:00:00Z'], aip: ['10.0.0.1', 'fd00::1'],
        amac: ['00:00:00:00:00:01'], asub: ['10.0.0.0/24'], other: 'zz', x: 15,
    },
    o2: {
        str: 'Beta', num: 2, bool: false, uid: U(2), dt: '2019-06-01T12:00:00Z',
        mac: '00:00:00:00:00:02', ip: '10.0.1.5', sub: '10.0.1.0/24', numr: '(5,10]',
        dr: '[2019-06-01T00:00:00Z,)', astr: ['b', 'c'], anum: [3], abool: [false],
        adt: ['2019-06-01T12:00:00Z'], aip: ['10.0.1.5'], amac: ['00:00:00:00:00:02'],
        asub: ['192.168.0.0/16'], other: 'yy', x: '15',
    },
    o3: {
        str: 'gamma', num: 10, bool: true, uid: U(3), dt: '2020-01-01T00:00:00Z',
        mac: 'aa:bb:cc:dd:ee:ff', ip: 'fd00::5', sub: 'fd00::/64', numr: '[20,)',
        dr: '(,2018-01-01T00:00:00Z]', astr: ['c'], anum: [10, 20], abool: [true, false],
        adt: ['2020-01-01T00:00:00Z', '2021-01-01T00:00:00Z'], aip: ['fd00::5'],
        amac: ['aa:bb:cc:dd:ee:ff'], asub: ['fd00::/64'], other: 'zz',
    },
    o4: {
        str: 'alphabet', num: -3.5, bool: false, uid: U(4), dt: '2018-12-31T23:59:59.999Z',
        mac: '00:00:00:00:00:03', ip: '192.168.1.1', sub: '192.168.0.0/16', numr: '[-10,0)',
        dr: '[2017-01-01T00:00:00Z,2017-12-31T00:00:00Z]', astr: ['A'], anum: [-1], abool: [],
        adt: [], aip: [], amac: [], asub: [],
    },
    o5: { str: 'delta' },
    o6: { other: 'zz' },
};

let ready: Promise<Record<string, string>> | null = null;
/* Create the bucket and the six objects once; resolves to key -> etag. */
function setup(): Promise<Record<string, string>> {
    if (ready === null) {
        ready = (async () => {
            await createBucket(fx.c, 'types', { index: TYPES_INDEX });
            const etags: Record<string, string> = {};
            for (const [k, v] of Object.entries(OBJECTS)) {
                etags[k] = (await put(fx.c, 'types', k, v)).etag;
            }
            return etags;
        })();
    }
    return ready;
}

describe('write conversion and read-back overlay (§5.3, §6.4)', () => {
    test('scalar types: normalised column values replace the JSON on read', async () => {
        await createBucket(fx.c, 'conv', { index: TYPES_INDEX });
        const sent = {
            str: 5, num: '5', bool: 'TRUE', uid: U(9), dt: '2019-07-04T20:30:55Z',
            mac: '90-B8-D0-E6-BE-E1', ip: '192.168.000.1', sub: '192.168.4.7/24',
            numr: '[,5)', dr: '[2019-07-04T00:00:00Z,)', keep: 'x',
        };
        await put(fx.c, 'conv', 's1', sent);
        const g = await get(fx.c, 'conv', 's1');
        assert.deepEqual(g.value, {
            str: '5', num: 5, bool: true, uid: U(9), dt: '2019-07-04T20:30:55.000Z',
            mac: '90:b8:d0:e6:be:e1', ip: '192.168.0.1', sub: '192.168.4.0/24',
            numr: '(,5)', dr: '[2019-07-04T00:00:00.000Z,)', keep: 'x',
        });
        /* the etag covers the value as sent, not as read back */
        assert.notEqual(g._etag, undefined);
        const cols = (await fx.db.query('SELECT str, num::text, bool, uid, mac, ip, sub, ' +
            "numr::text FROM conv WHERE _key = 's1'")).rows[0];
        assert.deepEqual(cols, { str: '5', num: '5', bool: true, uid: U(9),
            mac: '90:b8:d0:e6:be:e1', ip: '192.168.0.1', sub: '192.168.4.0/24', numr: '(,5)' });

        const more: [Record<string, unknown>, Record<string, unknown>][] = [
            [{ num: 'abc' }, { num: null }],
            [{ num: '12abc' }, { num: 12 }],
            [{ num: 1.25 }, { num: 1.25 }],
            [{ bool: 'false' }, { bool: false }],
            [{ bool: false }, { bool: false }],
            [{ str: true }, { str: 'true' }],
            [{ str: { o: 1 } }, { str: '[object Object]' }],
            [{ str: ['a', 'b'] }, { str: ['a', 'b'] }],
            [{ dt: '2019-07-04T20:30:55.123456Z' }, { dt: '2019-07-04T20:30:55.123Z' }],
            [{ dt: '+002019-07-04T20:30:55Z' }, { dt: '2019-07-04T20:30:55.000Z' }],
            [{ mac: '90b8d0e6bee1' }, { mac: '90:b8:d0:e6:be:e1' }],
            [{ mac: 159123453165281 }, { mac: '90:b8:d0:e6:be:e1' }],
            [{ mac: '0:1:2:3:4:5' }, { mac: '00:01:02:03:04:05' }],
            [{ ip: 'FD00:0::1' }, { ip: 'fd00::1' }],
            [{ ip: '::ffff:1.2.3.4' }, { ip: '::ffff:1.2.3.4' }],
            [{ ip: 16909060 }, { ip: '1.2.3.4' }],
            [{ sub: 'FD00::1/64' }, { sub: 'fd00::/64' }],
            [{ numr: '(1.5,4]' }, { numr: '(1.5,4]' }],
            [{ numr: '[-2,)' }, { numr: '[-2,)' }],
            [{ dr: '(,2019-01-01T00:00:00Z]' }, { dr: '(,2019-01-01T00:00:00.000Z]' }],
            [{ dr: '[2019-01-01T10:00:00.5Z,2019-01-02T00:00:00Z)' },
                { dr: '[2019-01-01T10:00:00.500Z,2019-01-02T00:00:00.000Z)' }],
            [{ str: null, num: null }, { str: null, num: null }],
            [{}, {}],
        ];
        let i = 0;
        for (const [v, exp] of more) {
            const key = `m${i++}`;
            await put(fx.c, 'conv', key, v);
            assert.deepEqual((await get(fx.c, 'conv', key)).value, exp, JSON.stringify(v));
        }
        /*
         * NaN: PostgreSQL orders it above every number, so the index stage
         * matches it for >=; the post-filter (NaN in JavaScript) drops it.
         */
        assert.deepEqual(await findKeySet(fx.c, 'conv', '(num>=0)'), ['m1', 'm2', 's1']);
        assert.deepEqual(await findKeySet(fx.c, 'conv', '(num<=100)'), ['m1', 'm2', 's1']);
    });

    test('array types: scalars become one-element arrays, elements are normalised', async () => {
        await setup();
        const cases: [Record<string, unknown>, Record<string, unknown>][] = [
            [{ astr: 'c' }, { astr: ['c'] }],
            [{ astr: ['x,y', 'q"r', '{b}', 'back\\slash', 'plain'] },
                { astr: ['x,y', 'q"r', '{b}', 'back\\slash', 'plain'] }],
            [{ astr: [] }, { astr: [] }],
            /* reference quirks of the hand-built array literal (storage.md §5) */
            [{ astr: ['a', ' b '] }, { astr: ['a', 'b'] }],
            [{ astr: ['NULL', 'x'] }, { astr: [null, 'x'] }],
            [{ astr: [1, true] }, { astr: ['1', 'true'] }],
            [{ anum: ['1', 2.5, 'x'] }, { anum: [1, 2.5, null] }],
            [{ anum: 7 }, { anum: [7] }],
            [{ abool: [true, 'FALSE'] }, { abool: [true, false] }],
            [{ adt: ['2019-07-04T20:30:55Z', '2020-01-01T00:00:00.1Z'] },
                { adt: ['2019-07-04T20:30:55.000Z', '2020-01-01T00:00:00.100Z'] }],
            [{ adt: '2019-07-04T20:30:55Z' }, { adt: ['2019-07-04T20:30:55.000Z'] }],
            [{ aip: ['192.168.000.1', 'FD00::1'] }, { aip: ['192.168.0.1', 'fd00::1'] }],
            [{ amac: ['90-B8-D0-E6-BE-E1'] }, { amac: ['90:b8:d0:e6:be:e1'] }],
            [{ asub: ['10.1.2.3/8', 'fd00::1/16'] }, { asub: ['10.0.0.0/8', 'fd00::/16'] }],
            [{ astr: null }, { astr: null }],
        ];
        let i = 0;
        for (const [v, exp] of cases) {
            const key = `arr${i++}`;
            await put(fx.c, 'types', key, v);
            assert.deepEqual((await get(fx.c, 'types', key)).value, exp, JSON.stringify(v));
            await del(fx.c, 'types', key);
        }
        /* an empty-string element makes a malformed literal: PostgreSQL's error */
        await rejects(put(fx.c, 'types', 'bad', { astr: ['', 'x'] }),
            { name: 'error', message: /malformed array literal/ });
    });

    test('conversion failures are InvalidIndexTypeError "index(<field>) is of type <type>"',
        async () => {
            await setup();
            const bad: [string, unknown, string][] = [
                ['bool', 'yes', 'boolean'],
                ['bool', 1, 'boolean'],
                ['uid', '0000000A-0000-0000-0000-000000000000', 'uuid'],
                ['uid', 'nope', 'uuid'],
                ['dt', '2019-07-04T20:30:55+01:00', 'date'],
                ['dt', '2019-07-04', 'date'],
                ['dt', 1562272255000, 'date'],
                ['mac', '90b8.d0e6.bee1', 'mac'],
                ['mac', 'zz:zz:zz:zz:zz:zz', 'mac'],
                ['ip', '1.2.3.4/24', 'ip'],
                ['ip', 'garbage', 'ip'],
                ['sub', '192.168.4.7', 'subnet'],
                ['sub', '192.168.4.0/40', 'subnet'],
                ['numr', '1,5', 'numrange'],
                ['numr', '[a,b]', 'numrange'],
                ['dr', '[2019-01-01,)', 'daterange'],
                ['dr', 'x', 'daterange'],
                ['abool', ['true', 'maybe'], '[boolean]'],
                ['adt', ['2019-07-04'], '[date]'],
                ['aip', ['1.2.3.4', 'x'], '[ip]'],
                ['amac', ['x'], '[mac]'],
                ['asub', ['1.2.3.4'], '[subnet]'],
            ];
            for (const [field, v, type] of bad) {
                await rejects(put(fx.c, 'types', 'bad', { [field]: v }), {
                    name: 'InvalidIndexTypeError', message: `index(${field}) is of type ${type}`,
                });
            }
            await rejects(get(fx.c, 'types', 'bad'), { name: 'ObjectNotFoundError' });
        });

    test('overlay rules: missing column deletes, explicit null kept, scalar-typed arrays kept',
        async () => {
            await setup();
            /* a column changed behind the JSON's back (as updateObjects does) shows on read */
            await put(fx.c, 'types', 'ov', { str: 'a', num: 1, astr: ['x'], keep: 1 });
            await fx.db.query("UPDATE types SET num = 42, str = NULL, astr = '{y,z}' " +
                "WHERE _key = 'ov'");
            assert.deepEqual((await get(fx.c, 'types', 'ov')).value,
                { num: 42, astr: ['y', 'z'], keep: 1 });
            /* a column set where the JSON has no such field appears too */
            await fx.db.query("UPDATE types SET bool = true WHERE _key = 'ov'");
            assert.deepEqual((await get(fx.c, 'types', 'ov')).value,
                { num: 42, astr: ['y', 'z'], keep: 1, bool: true });
            await del(fx.c, 'types', 'ov');
        });

    test('fields being reindexed are not overlaid, and cannot be used in filters', async () => {
        await createBucket(fx.c, 'rx', { index: { a: { type: 'number' } },
            options: { version: 1 } });
        await put(fx.c, 'rx', 'old', { a: '5', b: '7' });
        await call(fx.c, 'updateBucket', 'rx', {
            index: { a: { type: 'number' }, b: { type: 'number' } },
            options: { version: 2 },
        }, {});
        /* b is reindexing: its (NULL) column is not overlaid, the JSON is authoritative */
        let g = await get(fx.c, 'rx', 'old', { noBucketCache: true });
        assert.deepEqual(g.value, { a: 5, b: '7' });
        await put(fx.c, 'rx', 'new', { a: 1, b: '8' });
        g = await get(fx.c, 'rx', 'new');
        assert.deepEqual(g.value, { a: 1, b: '8' });
        const r = await fx.db.query("SELECT b::text, _rver FROM rx WHERE _key = 'new'");
        assert.deepEqual(r.rows[0], { b: '8', _rver: 2 });
        /* only in the post-filter: a lone leaf on it is not indexable */
        await rejects(find(fx.c, 'rx', '(b=8)'),
            { name: 'InvalidQueryError', message: '(b=8) is an invalid filter' });
        /* and with an indexed sibling it is a raw JSON comparison */
        assert.deepEqual(await findKeySet(fx.c, 'rx', '(&(a>=0)(b=8))'), ['new']);
        await rejects(find(fx.c, 'rx', '(&(a>=0)(b=8))', { requireOnlineReindexing: true }), {
            name: 'NotIndexedError',
            message: 'rx does not have indexes that support (&(a>=0)(b=8)). ' +
                "Reindexing fields: [ 'b' ]. Unindexed fields: []",
        });
    });
});

describe('filters on every type (§10.3, §10.4, §10.7)', () => {
    const cases: [string, string[]][] = [
        /* string */
        ['(str=alpha)', ['o1']],
        ['(str>=alpha)', ['o1', 'o3', 'o4', 'o5']],
        ['(str<=b)', ['o1', 'o2', 'o4']],
        ['(str=*)', ['o1', 'o2', 'o3', 'o4', 'o5']],
        ['(!(str=*))', ['o6']],
        ['(str=alpha*)', ['o1', 'o4']],
        ['(str=*pha*)', ['o1', 'o4']],
        ['(str=*ta)', ['o2', 'o5']],
        ['(str=a*a)', ['o1']],
        ['(str=al*h*t)', ['o4']],
        ['(str:caseIgnoreMatch:=BETA)', ['o2']],
        ['(str:caseIgnoreSubstringsMatch:=*ET*)', ['o2', 'o4']],
        ['(str:caseIgnoreSubstringsMatch:=AL*)', ['o1', 'o4']],
        ['(!(str=alpha))', ['o2', 'o3', 'o4', 'o5', 'o6']],
        ['(str=al\\2a)', []],
        ['str=delta', ['o5']],
        /* number */
        ['(num=1)', ['o1']],
        ['(num=1.0)', ['o1']],
        ['(num>=2)', ['o2', 'o3']],
        ['(num<=1)', ['o1', 'o4']],
        ['(num=-3.5)', ['o4']],
        ['(num>=1.5)', ['o2', 'o3']],
        ['(num=abc)', []],
        ['(num:within:=[1,2])', ['o1', 'o2']],
        ['(num:within:=\\(1,10\\))', ['o2']],
        ['(num:within:=[,0])', ['o4']],
        ['(!(num=1))', ['o2', 'o3', 'o4', 'o5', 'o6']],
        ['(|(num=1)(str=gamma))', ['o1', 'o3']],
        ['(&(num>=0)(bool=true))', ['o1', 'o3']],
        ['(&(num>=0)(!(bool=true)))', ['o2']],
        /* boolean */
        ['(bool=true)', ['o1', 'o3']],
        ['(bool=FALSE)', ['o2', 'o4']],
        ['(bool>=true)', ['o1', 'o3']],
        /* uuid */
        [`(uid=${U(2)})`, ['o2']],
        [`(uid>=${U(3)})`, ['o3', 'o4']],
        /* date: the post-filter is always true for date leaves */
        ['(dt=2019-06-01T12:00:00Z)', ['o2']],
        ['(dt=2019-06-01T12:00:00.000Z)', ['o2']],
        ['(dt>=2019-01-01T00:00:00Z)', ['o1', 'o2', 'o3']],
        ['(dt<=2019-01-01T00:00:00.000Z)', ['o1', 'o4']],
        ['(dt:within:=[2019-01-01T00:00:00Z,2019-12-31T00:00:00Z])', ['o1', 'o2']],
        ['(!(dt=2019-06-01T12:00:00Z))', []],
        /* mac */
        ['(mac=00-00-00-00-00-02)', ['o2']],
        ['(mac>=00:00:00:00:00:02)', ['o2', 'o3', 'o4']],
        ['(mac<=00:00:00:00:00:01)', ['o1']],
        /* ip */
        ['(ip=10.0.0.1)', ['o1']],
        ['(ip=010.000.000.001)', ['o1']],
        ['(ip=FD00:0::5)', ['o3']],
        ['(ip>=10.0.1.0)', ['o2', 'o3', 'o4']],
        ['(ip:within:=10.0.0.0/16)', ['o1', 'o2']],
        ['(ip:within:=fd00::/16)', ['o3']],
        /* subnet */
        ['(sub=10.0.0.7/24)', ['o1']],
        ['(sub:contains:=10.0.1.9)', ['o2']],
        ['(sub:contains:=192.168.5.5)', ['o4']],
        ['(sub:contains:=fd00::1)', ['o3']],
        /* numrange */
        ['(numr:overlaps:=[4,6])', ['o1', 'o2']],
        ['(numr:contains:=5)', ['o1']],
        ['(numr:contains:=25)', ['o3']],
        ['(numr:contains:=-10)', ['o4']],
        ['(numr:overlaps:=\\(,0\\))', ['o4']],
        /* daterange */
        ['(dr:contains:=2019-01-15T00:00:00Z)', ['o1']],
        ['(dr:contains:=2030-01-01T00:00:00Z)', ['o2']],
        ['(dr:overlaps:=[2017-06-01T00:00:00Z,2018-06-01T00:00:00Z])', ['o3', 'o4']],
        /* [string] */
        ['(astr=b)', ['o1', 'o2']],
        ['(astr>=c)', ['o2', 'o3']],
        ['(astr<=A)', ['o4']],
        ['(astr=*)', ['o1', 'o2', 'o3', 'o4']],
        ['(astr:caseIgnoreMatch:=a)', ['o1', 'o4']],
        ['(!(astr=b))', ['o3', 'o4']],
        ['(&(num>=0)(!(astr=c)))', ['o1']],
        /* [number] */
        ['(anum=2)', ['o1']],
        ['(anum>=10)', ['o3']],
        ['(anum<=-1)', ['o4']],
        ['(anum:within:=[15,25])', ['o3']],
        /* [boolean]: an empty array counts as present */
        ['(abool=false)', ['o2', 'o3']],
        ['(abool=*)', ['o1', 'o2', 'o3', 'o4']],
        /* [date] */
        ['(adt=2021-01-01T00:00:00Z)', ['o3']],
        ['(adt:within:=[2019-05-01T00:00:00Z,2019-07-01T00:00:00Z])', ['o2']],
        ['(adt>=2020-06-01T00:00:00Z)', ['o3']],
        /* [ip] [mac] [subnet] */
        ['(aip=fd00::1)', ['o1']],
        ['(aip:within:=10.0.0.0/8)', ['o1', 'o2']],
        ['(amac=AA:BB:CC:DD:EE:FF)', ['o3']],
        ['(asub=192.168.0.0/16)', ['o2']],
        ['(asub:contains:=10.0.0.9)', ['o1']],
        ['(asub:contains:=fd00::9)', ['o3']],
        /* unindexed fields: post-filter only, raw JSON semantics */
        ['(&(num>=-100)(other=zz))', ['o1', 'o3']],
        ['(&(str=*)(x=15))', ['o2']],
        ['(&(str=*)(x>=10))', ['o1', 'o2']],
        ['(&(str=*)(OTHER=zz))', ['o1', 'o3']],
        ['(&(str=*)(|(str=Beta)(num=10)))', ['o2', 'o3']],
        /* shapes */
        ['(str=**)', ['o1', 'o2', 'o3', 'o4', 'o5']],
        ['(str=\\2a)', []],
        ['(str:dn:caseIgnoreMatch:=ALPHA)', ['o1']],
        ['(!(!(num=1)))', ['o1']],
        ['(&(|(num=1)(num=2))(!(bool=false)))', ['o1']],
        ['(&(num>=1)(num<=1))', ['o1']],
        ['(|(str=alpha)(astr=c))', ['o1', 'o2', 'o3']],
        ['(&(astr=a)(astr=b))', ['o1']],
        ['(&!(num=1)(str=*))', ['o2', 'o3', 'o4', 'o5']],
        /* internal fields */
        ['(_key=o*)', ['o1', 'o2', 'o3', 'o4', 'o5', 'o6']],
        ['(_key:caseIgnoreMatch:=O1)', ['o1']],
        ['(_key:caseIgnoreSubstringsMatch:=O*)', ['o1', 'o2', 'o3', 'o4', 'o5', 'o6']],
        ['(&(_key>=o3)(_key<=o4))', ['o3', 'o4']],
        ['(_mtime>=1)', ['o1', 'o2', 'o3', 'o4', 'o5', 'o6']],
        ['(&(_id>=1)(str=alpha))', ['o1']],
        ['(&(_id>=1)(_id<=2))', ['o1', 'o2']],
    ];
    for (const [filter, keys] of cases) {
        test(filter, async () => {
            await setup();
            assert.deepEqual(await findKeySet(fx.c, 'types', filter), keys);
        });
    }

    test('(_etag=<etag>) finds the object', async () => {
        const etags = await setup();
        assert.deepEqual(await findKeySet(fx.c, 'types', `(_etag=${etags['o3']})`), ['o3']);
    });

    test('records carry the overlaid value; the post-filter sees it', async () => {
        await setup();
        const [r] = await find(fx.c, 'types', '(uid=' + U(1) + ')');
        assert.equal(r.value.dt, '2019-01-01T00:00:00.000Z');
        assert.deepEqual(r.value.aip, ['10.0.0.1', 'fd00::1']);
        assert.equal(r.value.numr, '[1,5]');
        assert.equal(r.value.dr, '[2019-01-01T00:00:00.000Z,2019-02-01T00:00:00.000Z)');
    });
});

describe('filter errors (§10.5, §10.6)', () => {
    const invalid = (f: string, leaf = f): [string, { name: string; message: string }] =>
        [f, { name: 'InvalidQueryError', message: `${leaf} is an invalid filter` }];
    const notIndexed = (f: string, part = f): [string, { name: string; message: string }] =>
        [f, { name: 'NotIndexedError', message: `types does not have indexes that support ${part}` }];
    const cases: [string, { name: string; message: string }][] = [
        invalid('(bool=yes)'),
        invalid('(&(num>=0)(bool=yes))', '(bool=yes)'),
        invalid('(uid=ABCDEF00-0000-0000-0000-000000000000)'),
        invalid('(dt=2019)'),
        invalid('(adt=2019-01-01)'),
        invalid('(ip=nope)'),
        invalid('(sub=1.2.3.4)'),
        invalid('(mac=zz)'),
        invalid('(numr:overlaps:=x)'),
        invalid('(num:contains:=5)'),
        invalid('(numr:within:=[,])'),
        invalid('(str:overlaps:=[1,2])'),
        invalid('(other=zz)'),
        invalid('(!(other=zz))'),
        invalid('(_id=*)'),
        invalid('(n=5'),
        invalid('(n=5))', '(n=5))'),
        invalid('( n=5)'),
        invalid('(&)'),
        notIndexed('(|(other=zz)(num>=5))'),
        notIndexed('(|(num>=5)(other=zz))'),
        notIndexed('(&(other=zz)(x=15))'),
        notIndexed('(&(str=*)(|(other=yy)(x=15)))', '(|(other=yy)(x=15))'),
        notIndexed('(astr=c*)'),
        notIndexed('(astr:caseIgnoreSubstringsMatch:=*c*)'),
        notIndexed('(other:within:=[1,2])'),
        notIndexed('(str:2.5.13.2:=x)'),
        ['(num~=5)', { name: 'Error', message: 'approx filters not allowed' }],
        ['(num:foo:=5)', { name: 'Error', message: 'unsupported ext filter' }],
        ['(num:=5)', { name: 'Error', message: 'unsupported ext filter' }],
        ['(_idx=1)', { name: 'Error', message: 'filtering on "_idx" is not allowed' }],
    ];
    for (const [filter, exp] of cases) {
        test(filter, async () => {
            await setup();
            await rejects(find(fx.c, 'types', filter), exp);
        });
    }
});

describe('filter value escapes and LIKE metacharacters (§10.1, §10.3)', () => {
    let esc: Promise<void> | null = null;
    const setupEsc = () => {
        if (esc === null) {
            esc = (async () => {
                await createBucket(fx.c, 'esc', { index: { s: { type: 'string' } } });
                const values: Record<string, string> = {
                    star: 'a*b', paren: 'a(b)', back: 'a\\b', pct: 'x%y', under: 'x_y',
                    plain: 'xzy', empty: '', upper: 'X%Y', eq: 'k=v',
                };
                for (const [k, v] of Object.entries(values)) {
                    await put(fx.c, 'esc', k, { s: v });
                }
            })();
        }
        return esc;
    };
    const cases: [string, string[]][] = [
        ['(s=a\\2ab)', ['star']],
        ['(s=a\\*b)', ['star']],
        ['(s=a\\28b\\29)', ['paren']],
        ['(s=a\\(b\\))', ['paren']],
        ['(s=a\\\\b)', ['back']],
        ['(s=a\\5cb)', ['back']],
        ['(s=k=v)', ['eq']],
        ['(s=k\\=v)', ['eq']],
        ['(s=x%y)', ['pct']],
        ['(s=x_y)', ['under']],
        /* the index stage's LIKE treats % and _ as wildcards; the post-filter does not */
        ['(s=x%*)', ['pct']],
        ['(s=x_*)', ['under']],
        ['(s=*\\2a*)', ['star']],
        ['(s=)', ['empty']],
        ['(s:caseIgnoreMatch:=X%Y)', ['pct', 'upper']],
        ['(s:caseIgnoreMatch:=x_Y)', ['under']],
        ['(s:caseIgnoreSubstringsMatch:=*%Y)', ['pct', 'upper']],
    ];
    for (const [filter, keys] of cases) {
        test(filter, async () => {
            await setupEsc();
            assert.deepEqual(await findKeySet(fx.c, 'esc', filter), keys);
        });
    }
    test('(s=a\\zz) is an invalid escape', async () => {
        await setupEsc();
        await rejects(find(fx.c, 'esc', '(s=a\\zz)'),
            { name: 'InvalidQueryError', message: '(s=a\\zz) is an invalid filter' });
    });
});

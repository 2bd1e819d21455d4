/*
 * Compiled WHERE clauses on a real PostgreSQL 15: a bucket table with
 * every index type laid out as storage.md §3.1/§3.3 (DDL inline below),
 * rows written through convertForWrite, and for every operator on every
 * type the set of keys the index stage selects.
 *
 * The expectations are PostgreSQL's semantics, which the reference relied
 * on: C collation byte order, NaN above every number, NULL-producing array
 * comparisons for missing array fields, unquoted "NULL" array elements
 * becoming SQL NULL, and so on.
 */

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Client } from 'pg';
import { type CompileOptions, compileFilter, parseFilter, quoteIdent } from '../../src/filter';
import type { BucketSchema, IndexSpec } from '../../src/schema/bucket-types';
import { INDEX_TYPES, convertForWrite } from '../../src/schema/index-types';
import { type ThrowawayPg, startThrowawayPg } from '../helpers/filter-pg';

const U1 = '2b2ad5a6-dfd1-11e9-93c7-d7ab3cfab86f';
const U2 = 'c0ffee00-dfd1-11e9-93c7-d7ab3cfab86f';

const INDEX: Record<string, IndexSpec> = {
    str: { type: 'string', unique: true }, strs: { type: '[string]' }, num: { type: 'number' },
    nums: { type: '[number]' }, numr: { type: 'numrange' }, bool: { type: 'boolean' },
    bools: { type: '[boolean]' }, dt: { type: 'date' }, dts: { type: '[date]' },
    dtr: { type: 'daterange' }, ip: { type: 'ip' }, ips: { type: '[ip]' }, mac: { type: 'mac' },
    macs: { type: '[mac]' }, sub: { type: 'subnet' }, subs: { type: '[subnet]' },
    u: { type: 'uuid' }, order: { type: 'string' }, Mixed: { type: 'number' },
};

const BUCKET: BucketSchema = { name: 'fsql', index: INDEX, reindexing: new Set(), hasExtendedId: false };

const ROWS: Record<string, Record<string, unknown>> = {
    k1: {
        str: 'foo', strs: ['a', 'b'], num: 5, nums: [1, 5], numr: '[1,10)', bool: true,
        bools: [true, false], dt: '2019-07-04T20:30:55Z',
        dts: ['2019-07-04T20:30:55Z', '2021-01-01T00:00:00Z'],
        dtr: '[2019-01-01T00:00:00Z,2020-01-01T00:00:00Z)', ip: '10.0.0.1',
        ips: ['10.0.0.1', 'fd00::1'], mac: '90:b8:d0:e6:be:e1',
        macs: ['90:b8:d0:e6:be:e1', '00:00:00:00:00:01'], sub: '10.0.0.0/8',
        subs: ['10.0.0.0/8', '192.168.0.0/16'], u: U1, order: 'o1', Mixed: 1,
    },
    k2: {
        str: 'foobar', strs: ['c'], num: 10, nums: [10, 20], numr: '[20,30]', bool: false,
        bools: [false], dt: '2021-01-01T00:00:00Z', dts: ['2022-01-01T00:00:00Z'],
        dtr: '[2021-01-01T00:00:00Z,)', ip: '192.168.000.5', ips: ['192.168.0.5'],
        mac: '00-00-00-00-00-02', macs: ['000000000002'], sub: '192.168.0.0/16',
        subs: ['172.16.0.0/12'], u: U2, order: 'o2', Mixed: 2,
    },
    k3: {
        str: 'Bar', strs: ['a,b', 'q"x', '{}', 'back\\slash', 'NULL'], num: 'abc', nums: 7,
        ip: 'FD00:0::1', sub: 'fd00::/8', mac: '90B8D0E6BEE2', bool: 'TRUE',
    },
    k4: {},
    k5: { str: '100%_x', num: -1.5, strs: [] },
};

let pg: ThrowawayPg;
let db: Client;

function ddl(table: string, index: Record<string, IndexSpec>, idColumn = 'BIGINT'): string[] {
    const cols = Object.entries(index).map(([f, spec]) =>
        `,\n        ${quoteIdent(f)} ${INDEX_TYPES[spec.type].pgType}${spec.unique ? ' UNIQUE' : ''}`);
    const stmts = [
        `CREATE SEQUENCE ${table}_serial`,
        `CREATE TABLE ${table} (
  _id ${idColumn} DEFAULT nextval('${table}_serial'),
  _txn_snap INTEGER,
  _key TEXT PRIMARY KEY,
  _value TEXT NOT NULL,
  _etag CHAR(8) NOT NULL,
  _mtime BIGINT DEFAULT CAST (EXTRACT (EPOCH FROM NOW()) * 1000 AS BIGINT),
  _vnode BIGINT
  ${cols.join('')})`,
    ];
    for (const [f, spec] of Object.entries(index)) {
        if (!spec.unique) {
            const col = quoteIdent(f);
            stmts.push(`CREATE  INDEX ${quoteIdent(`${table}_${f}_idx`)} ON ${table} USING ` +
                `${INDEX_TYPES[spec.type].method} (${col}) WHERE ${col} IS NOT NULL`);
        }
    }
    for (const c of ['_id', '_etag', '_mtime', '_vnode']) {
        stmts.push(`CREATE  INDEX ${table}_${c}_idx ON ${table} USING BTREE (${c}) ` +
            `WHERE ${c} IS NOT NULL`);
    }
    return stmts;
}

async function insert(table: string, index: Record<string, IndexSpec>, key: string,
    value: Record<string, unknown>, n: number): Promise<void> {
    const cols = ['_key', '_value', '_etag', '_mtime'];
    const params: unknown[] = [key, JSON.stringify(value), `ETAG000${n}`, 1000 * n];
    for (const [f, spec] of Object.entries(index)) {
        if (value[f] !== undefined) {
            cols.push(quoteIdent(f));
            params.push(convertForWrite(f, spec.type, value[f]));
        }
    }
    await db.query(`INSERT INTO ${table} (${cols.join(', ')}) VALUES (` +
        `${params.map((_, i) => '$' + (i + 1)).join(', ')})`, params);
}

async function keys(filter: string, opts?: CompileOptions, b: BucketSchema = BUCKET,
    sorted = true): Promise<string[]> {
    const { where, args } = compileFilter(parseFilter(filter), b, opts);
    const r = await db.query<{ _key: string }>(`SELECT _key FROM ${b.name} ${where}`, args);
    const out = r.rows.map((row) => row._key);
    return sorted ? out.sort() : out;
}

async function expectKeys(filter: string, expected: string[]): Promise<void> {
    assert.deepEqual(await keys(filter), expected, filter);
}

describe('compiled filters on PostgreSQL 15', () => {
    before(async () => {
        pg = await startThrowawayPg();
        db = await pg.connect();
        for (const s of ddl('fsql', INDEX)) {
            await db.query(s);
        }
        let n = 1;
        for (const [k, v] of Object.entries(ROWS)) {
            await insert('fsql', INDEX, k, v, n++);
        }
    });

    after(async () => {
        await db?.end().catch(() => undefined);
        await pg?.stop();
    });

    it('stores write conversions as PostgreSQL reads them back', async () => {
        const r = await db.query(
            'SELECT _key, strs, num::text AS num, ip, mac, ' +
            'sub, bool, dtr::text AS dtr, nums::text AS nums FROM fsql ORDER BY _key');
        const byKey = Object.fromEntries(r.rows.map((row) => [row._key, row]));
        assert.deepEqual(byKey['k3'].strs, ['a,b', 'q"x', '{}', 'back\\slash', null]);
        assert.equal(byKey['k3'].num, 'NaN');
        assert.equal(byKey['k3'].ip, 'fd00::1');
        assert.equal(byKey['k3'].mac, '90:b8:d0:e6:be:e2');
        assert.equal(byKey['k3'].nums, '{7}');
        assert.equal(byKey['k3'].bool, true);
        assert.equal(byKey['k2'].ip, '192.168.0.5');
        assert.equal(byKey['k2'].sub, '192.168.0.0/16');
        assert.equal(byKey['k1'].dtr, '["2019-01-01 00:00:00+00","2020-01-01 00:00:00+00")');
        assert.deepEqual(byKey['k5'].strs, []);
        assert.equal(byKey['k4'].strs, null);
    });

    it('string', async () => {
        await expectKeys('(str=foo)', ['k1']);
        await expectKeys('(str>=foo)', ['k1', 'k2']);
        await expectKeys('(str<=Bar)', ['k3', 'k5']);
        await expectKeys('(str=*)', ['k1', 'k2', 'k3', 'k5']);
        await expectKeys('(str=foo*)', ['k1', 'k2']);
        await expectKeys('(str=*bar)', ['k2']);
        /* loose: _ and % from the value are wildcards, the final piece is unanchored */
        await expectKeys('(str=f_o*)', ['k1', 'k2']);
        await expectKeys('(str=1%*)', ['k5']);
        await expectKeys('(str=*oo)', ['k1', 'k2']);
        await expectKeys('(str:caseIgnoreMatch:=BAR)', ['k3']);
        await expectKeys('(str:caseIgnoreSubstringsMatch:=*BA*)', ['k2', 'k3']);
        await expectKeys('(!(str=foo))', ['k2', 'k3', 'k4', 'k5']);
    });

    it('[string]', async () => {
        await expectKeys('(strs=a)', ['k1']);
        await expectKeys('(strs=a\\2cb)', ['k3']);
        await expectKeys('(strs=q"x)', ['k3']);
        await expectKeys('(strs={})', ['k3']);
        await expectKeys('(strs=back\\5cslash)', ['k3']);
        await expectKeys('(strs>=c)', ['k2', 'k3']);
        await expectKeys('(strs<=a)', ['k1']);
        await expectKeys('(strs=*)', ['k1', 'k2', 'k3', 'k5']);
        /* array leaf on a missing array is unknown: k4 is in neither */
        await expectKeys('(!(strs=a))', ['k2', 'k3', 'k5']);
        await expectKeys('(strs:caseIgnoreMatch:=A)', ['k1']);
    });

    it('number and [number]', async () => {
        await expectKeys('(num=5)', ['k1']);
        /* NaN sorts above every number in PostgreSQL */
        await expectKeys('(num>=5)', ['k1', 'k2', 'k3']);
        await expectKeys('(num<=0)', ['k5']);
        await expectKeys('(num=abc)', ['k3']);
        await expectKeys('(num:within:=[1,5])', ['k1']);
        await expectKeys('(num:within:=\\(5,10])', ['k2']);
        await expectKeys('(nums=7)', ['k3']);
        await expectKeys('(nums>=15)', ['k2']);
        await expectKeys('(nums<=1)', ['k1']);
        await expectKeys('(nums:within:=[6,8])', ['k3']);
        await expectKeys('(Mixed>=2)', ['k2']);
    });

    it('numrange', async () => {
        await expectKeys('(numr:overlaps:=\\(5,25\\))', ['k1', 'k2']);
        await expectKeys('(numr:overlaps:=[10,15])', []);
        await expectKeys('(numr:contains:=25)', ['k2']);
        await expectKeys('(numr=*)', ['k1', 'k2']);
    });

    it('boolean and [boolean]', async () => {
        await expectKeys('(bool=true)', ['k1', 'k3']);
        await expectKeys('(bool=FALSE)', ['k2']);
        await expectKeys('(bool>=true)', ['k1', 'k3']);
        await expectKeys('(bools=false)', ['k1', 'k2']);
        await expectKeys('(bools>=true)', ['k1']);
    });

    it('date, [date], daterange', async () => {
        await expectKeys('(dt=2019-07-04T20:30:55.000Z)', ['k1']);
        await expectKeys('(dt>=2020-01-01T00:00:00Z)', ['k2']);
        await expectKeys('(dt:within:=[2019-01-01T00:00:00Z,2020-01-01T00:00:00Z\\))', ['k1']);
        await expectKeys('(dts=2022-01-01T00:00:00Z)', ['k2']);
        await expectKeys('(dts<=2019-12-31T00:00:00Z)', ['k1']);
        await expectKeys('(dts:within:=[2020-06-01T00:00:00Z,\\))', ['k1', 'k2']);
        await expectKeys('(dtr:overlaps:=[2019-06-01T00:00:00Z,2019-07-01T00:00:00Z])', ['k1']);
        await expectKeys('(dtr:contains:=2030-01-01T00:00:00Z)', ['k2']);
    });

    it('ip and [ip]', async () => {
        await expectKeys('(ip=10.0.0.1)', ['k1']);
        await expectKeys('(ip=192.168.0.005)', ['k2']);
        await expectKeys('(ip=FD00::1)', ['k3']);
        await expectKeys('(ip:within:=10.0.0.0/8)', ['k1']);
        await expectKeys('(ip>=192.168.0.0)', ['k2', 'k3']);
        await expectKeys('(ips=fd00::1)', ['k1']);
        await expectKeys('(ips:within:=192.168.0.0/16)', ['k2']);
        await expectKeys('(ips<=10.0.0.1)', ['k1']);
    });

    it('mac and [mac]', async () => {
        await expectKeys('(mac=90:b8:d0:e6:be:e1)', ['k1']);
        await expectKeys('(mac=90-B8-D0-E6-BE-E2)', ['k3']);
        await expectKeys('(mac>=90:b8:d0:e6:be:e1)', ['k1', 'k3']);
        await expectKeys('(macs=00:00:00:00:00:02)', ['k2']);
        await expectKeys('(macs<=0:0:0:0:0:1)', ['k1']);
    });

    it('subnet and [subnet]', async () => {
        await expectKeys('(sub=10.1.2.3/8)', ['k1']);
        await expectKeys('(sub:contains:=10.1.2.3)', ['k1']);
        await expectKeys('(sub:contains:=fd00::5)', ['k3']);
        await expectKeys('(subs:contains:=172.20.0.1)', ['k2']);
        await expectKeys('(subs=192.168.0.0/16)', ['k1']);
        await expectKeys('(subs>=172.0.0.0/8)', ['k1', 'k2']);
    });

    it('uuid, keyword-named columns, internal columns', async () => {
        await expectKeys(`(u=${U1})`, ['k1']);
        await expectKeys(`(u>=${U1})`, ['k1', 'k2']);
        await expectKeys('(order=o2)', ['k2']);
        await expectKeys('(order=*)', ['k1', 'k2']);
        await expectKeys('(_key=k1)', ['k1']);
        await expectKeys('(_key=k*)', ['k1', 'k2', 'k3', 'k4', 'k5']);
        await expectKeys('(_key:caseIgnoreMatch:=K2)', ['k2']);
        await expectKeys('(_id>=4)', ['k4', 'k5']);
        await expectKeys('(_etag=ETAG0001)', ['k1']);
        await expectKeys('(_mtime<=2000)', ['k1', 'k2']);
        await expectKeys('(_txn_snap=1)', []);
    });

    it('and / or / not and unindexed leaves', async () => {
        await expectKeys('(&(num>=5)(bool=true))', ['k1', 'k3']);
        await expectKeys('(|(str=foo)(ip=fd00::1))', ['k1', 'k3']);
        await expectKeys('(&(num>=5)(!(strs=c)))', ['k1', 'k3']);
        await expectKeys('(&(str=*)(unindexed=1))', ['k1', 'k2', 'k3', 'k5']);
        await expectKeys('(!(&(num>=5)(|(bool=false)(u=*))))', ['k3', 'k4', 'k5']);
    });

    it('sorts, limits and offsets', async () => {
        /* missing values sort first descending, NaN above numbers */
        assert.deepEqual(await keys('(_key=k*)', { sort: { attribute: 'num', order: 'DESC' } },
            BUCKET, false), ['k4', 'k3', 'k2', 'k1', 'k5']);
        assert.deepEqual(await keys('(_key=k*)',
            { sort: { attribute: 'num', order: 'DESC' }, limit: 2, offset: '1' }, BUCKET, false),
        ['k3', 'k2']);
        assert.deepEqual(await keys('(_key=k*)', { sort: [{ attribute: 'order' }, { attribute: '_key', order: 'desc' }] },
            BUCKET, false), ['k1', 'k2', 'k5', 'k4', 'k3']);
        assert.deepEqual(await keys('(_key=k*)', { limit: '0' }), []);
        await assert.rejects(keys('(_key=k*)', { sort: { attribute: 'nosuch' } }),
            /column "nosuch" does not exist/);
    });

    it('works with prepended parameters and in count / sub-select forms', async () => {
        const { where, args } = compileFilter(parseFilter('(&(num>=5)(strs=*))'), BUCKET,
            { firstParam: 2 });
        const r = await db.query<{ _key: string }>(
            `SELECT _key FROM fsql WHERE _key <> $1 AND _id IN (SELECT _id FROM fsql ${where})`,
            ['k1', ...args]);
        assert.deepEqual(r.rows.map((x) => x._key).sort(), ['k2', 'k3']);
        const c = compileFilter(parseFilter('(num>=5)'), BUCKET, { limit: 1 });
        const cr = await db.query<{ _count: string }>(
            `SELECT count(1) over () as _count, _key FROM fsql ${c.where}`, c.args);
        assert.equal(cr.rows.length, 1);
        assert.equal(cr.rows[0]!._count, '3');
    });

    it('expands _id over _id and _idx for extended-id buckets', async () => {
        const idx: Record<string, IndexSpec> = { a: { type: 'string' } };
        for (const s of ddl('xid', idx, 'INTEGER')) {
            await db.query(s);
        }
        await db.query('ALTER TABLE xid ADD COLUMN _idx BIGINT');
        await db.query("INSERT INTO xid (_id, _idx, _key, _value, _etag, a) VALUES " +
            "(1, NULL, 'a1', '{}', 'E', 'x'), (2, NULL, 'a2', '{}', 'E', 'x'), " +
            "(NULL, 3, 'a3', '{}', 'E', 'x'), (NULL, 4, 'a4', '{}', 'E', 'x')");
        const X: BucketSchema = { name: 'xid', index: idx, reindexing: new Set(), hasExtendedId: true };
        assert.deepEqual(await keys('(_id>=2)', {}, X), ['a2', 'a3', 'a4']);
        assert.deepEqual(await keys('(_id=3)', {}, X), ['a3']);
        assert.deepEqual(await keys('(&(a=x)(_id<=3))', {}, X), ['a1', 'a2', 'a3']);
        assert.deepEqual(await keys('(a=x)', { sort: { attribute: '_id', order: 'DESC' } }, X, false),
            ['a4', 'a3', 'a2', 'a1']);
    });
});

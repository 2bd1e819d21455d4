/*
 * storage §8.2 against a real PostgreSQL 15: select a literal of every
 * type through a pg Client configured with morayTypes and check the JS
 * value.  The process runs in America/New_York and the PG session in
 * Asia/Kolkata (+05:30) so that "local zone" and offset handling are
 * actually exercised.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from 'pg';

import { MORAY_TEXT_PARSERS, OID, morayTypes, parseTstzrange } from '../../src/pg/types';
import { startTmpPg, type TmpPg } from '../helpers/tmp-pg';

let pg: TmpPg;
let client: Client;
const savedTz = process.env['TZ'];

before(async () => {
    process.env['TZ'] = 'America/New_York';
    pg = await startTmpPg();
    client = new Client({
        host: pg.host, port: pg.port, user: pg.user, database: pg.database,
        types: morayTypes,
    });
    await client.connect();
    await client.query("SET TimeZone = 'Asia/Kolkata'");
});

after(async () => {
    await client?.end().catch(() => undefined);
    await pg?.stop();
    if (savedTz === undefined) {
        delete process.env['TZ'];
    } else {
        process.env['TZ'] = savedTz;
    }
});

async function one(sqlExpr: string): Promise<{ v: unknown; oid: number }> {
    const r = await client.query(`SELECT ${sqlExpr} AS v`);
    return { v: r.rows[0].v, oid: r.fields[0]!.dataTypeID };
}

async function expectValue(sqlExpr: string, oid: number, want: unknown): Promise<void> {
    const got = await one(sqlExpr);
    assert.equal(got.oid, oid, `${sqlExpr}: oid`);
    assert.deepStrictEqual(got.v, want, sqlExpr);
}

function iso(v: unknown): unknown {
    if (Array.isArray(v)) {
        return v.map(iso);
    }
    return v instanceof Date ? v.toISOString() : v;
}

test('integers: int8 stays a string, int2/int4/oid are numbers', async () => {
    await expectValue("'1562762031876'::int8", OID.INT8, '1562762031876');
    await expectValue("'-9223372036854775808'::int8", OID.INT8, '-9223372036854775808');
    await expectValue('5::int2', OID.INT2, 5);
    await expectValue('-7::int4', OID.INT4, -7);
    await expectValue('26::oid', OID.OID, 26);
    await expectValue('ARRAY[1,2]::int2[]', OID.INT2_ARRAY, [1, 2]);
    await expectValue('ARRAY[1,NULL,3]::int4[]', OID.INT4_ARRAY, [1, null, 3]);
    await expectValue("ARRAY['1','9007199254740993']::int8[]", OID.INT8_ARRAY,
        ['1', '9007199254740993']);
    await expectValue('NULL::int8', OID.INT8, null);
});

test('numeric and floats become numbers (NaN stays NaN, JSON null)', async () => {
    await expectValue('5::numeric', OID.NUMERIC, 5);
    await expectValue('5.50::numeric', OID.NUMERIC, 5.5);
    await expectValue('-0.000123::numeric', OID.NUMERIC, -0.000123);
    await expectValue("'1e20'::numeric", OID.NUMERIC, 1e20);
    const nan = await one("'NaN'::numeric");
    assert.equal(nan.oid, OID.NUMERIC);
    assert.ok(Number.isNaN(nan.v));
    assert.equal(JSON.stringify({ v: nan.v }), '{"v":null}');
    await expectValue('1.5::float4', OID.FLOAT4, 1.5);
    await expectValue('2.25::float8', OID.FLOAT8, 2.25);
    await expectValue("'NaN'::float8", OID.FLOAT8, NaN);
    await expectValue('ARRAY[1,2.5]::numeric[]', OID.NUMERIC_ARRAY, [1, 2.5]);
    await expectValue('ARRAY[1.5,NULL]::float4[]', OID.FLOAT4_ARRAY, [1.5, null]);
    await expectValue('ARRAY[0.125]::float8[]', OID.FLOAT8_ARRAY, [0.125]);
    await expectValue('NULL::numeric', OID.NUMERIC, null);
});

test('booleans', async () => {
    await expectValue('true', OID.BOOL, true);
    await expectValue('false', OID.BOOL, false);
    await expectValue('ARRAY[true,false,NULL]::bool[]', OID.BOOL_ARRAY, [true, false, null]);
});

test('timestamps: timestamptz absolute; timestamp and date in the local zone', async () => {
    const tz = await one("'2019-07-04 14:30:00+00'::timestamptz");
    assert.equal(tz.oid, OID.TIMESTAMPTZ);
    assert.ok(tz.v instanceof Date);
    assert.equal(iso(tz.v), '2019-07-04T14:30:00.000Z');
    await expectValue("'2019-07-04 14:30:00.123+02'::timestamptz", OID.TIMESTAMPTZ,
        new Date('2019-07-04T12:30:00.123Z'));
    // TIMESTAMP: wall-clock time read in the process zone (New York, UTC-4 in July)
    const ts = await one("'2019-07-04 14:30:00'::timestamp");
    assert.equal(ts.oid, OID.TIMESTAMP);
    assert.equal(iso(ts.v), '2019-07-04T18:30:00.000Z');
    assert.deepStrictEqual(ts.v, new Date(2019, 6, 4, 14, 30));
    // DATE: local midnight
    const d = await one("'2019-07-04'::date");
    assert.equal(d.oid, OID.DATE);
    assert.equal(iso(d.v), '2019-07-04T04:00:00.000Z');
    const tza = await one("ARRAY['2019-07-04 00:00:00+00', NULL]::timestamptz[]");
    assert.equal(tza.oid, OID.TIMESTAMPTZ_ARRAY);
    assert.deepEqual(iso(tza.v), ['2019-07-04T00:00:00.000Z', null]);
    const tsa = await one("ARRAY['2019-01-01 00:00:00']::timestamp[]");
    assert.equal(tsa.oid, OID.TIMESTAMP_ARRAY);
    assert.deepEqual(iso(tsa.v), ['2019-01-01T05:00:00.000Z']);
    const da = await one("ARRAY['2019-01-01']::date[]");
    assert.equal(da.oid, OID.DATE_ARRAY);
    assert.deepEqual(iso(da.v), ['2019-01-01T05:00:00.000Z']);
});

test('tstzrange: ISO bounds, brackets preserved; arrays too', async () => {
    await expectValue("tstzrange('2019-07-04 00:00:00+00', NULL, '[)')", OID.TSTZRANGE,
        '[2019-07-04T00:00:00.000Z,)');
    await expectValue("tstzrange(NULL, '2019-07-05 12:00:00+02', '(]')", OID.TSTZRANGE,
        '(,2019-07-05T10:00:00.000Z]');
    await expectValue("'[2019-07-04T00:00:00.000Z,2019-07-05T00:00:00.500Z]'::tstzrange",
        OID.TSTZRANGE, '[2019-07-04T00:00:00.000Z,2019-07-05T00:00:00.500Z]');
    await expectValue("'(,)'::tstzrange", OID.TSTZRANGE, '(,)');
    await expectValue("'empty'::tstzrange", OID.TSTZRANGE, 'empty');
    await expectValue("tstzrange('-infinity', 'infinity')", OID.TSTZRANGE, '[-infinity,infinity)');
    await expectValue(
        "ARRAY[tstzrange('2019-07-04 00:00:00+00', NULL), 'empty', NULL]::tstzrange[]",
        OID.TSTZRANGE_ARRAY, ['[2019-07-04T00:00:00.000Z,)', 'empty', null]);
    // the raw PostgreSQL text, for the record
    const raw = await client.query({
        text: "SELECT tstzrange('2019-07-04 00:00:00+00', NULL)::text AS v",
    });
    assert.equal(raw.rows[0].v, '["2019-07-04 05:30:00+05:30",)');
});

test('numrange: PostgreSQL text as-is', async () => {
    await expectValue("'[1,4]'::numrange", OID.NUMRANGE, '[1,4]');
    await expectValue('numrange(1.5, NULL)', OID.NUMRANGE, '[1.5,)');
    await expectValue("ARRAY['[1,4]'::numrange, 'empty']", OID.NUMRANGE_ARRAY, ['[1,4]', 'empty']);
});

test('text types and their arrays', async () => {
    await expectValue("'héllo'::text", OID.TEXT, 'héllo');
    await expectValue("'v'::varchar", OID.VARCHAR, 'v');
    await expectValue("'ABCDEF01'::char(8)", OID.BPCHAR, 'ABCDEF01');
    await expectValue("'ab'::char(4)", OID.BPCHAR, 'ab  ');
    await expectValue("ARRAY['a','b,c','d\"e',NULL]::text[]", OID.TEXT_ARRAY,
        ['a', 'b,c', 'd"e', null]);
    await expectValue("ARRAY['x']::varchar[]", OID.VARCHAR_ARRAY, ['x']);
    await expectValue("ARRAY['y']::char(2)[]", OID.BPCHAR_ARRAY, ['y ']);
});

test('network, mac and uuid types are PostgreSQL text; arrays of strings', async () => {
    await expectValue("'192.168.000.1'::inet", OID.INET, '192.168.0.1');
    await expectValue("'FD00:0::1'::inet", OID.INET, 'fd00::1');
    await expectValue("'192.168.4.0/24'::cidr", OID.CIDR, '192.168.4.0/24');
    await expectValue("'90-B8-D0-E6-BE-E1'::macaddr", OID.MACADDR, '90:b8:d0:e6:be:e1');
    await expectValue("'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'::uuid", OID.UUID,
        'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11');
    await expectValue("ARRAY['10.0.0.1','::1']::inet[]", OID.INET_ARRAY, ['10.0.0.1', '::1']);
    await expectValue("ARRAY['10.0.0.0/8']::cidr[]", OID.CIDR_ARRAY, ['10.0.0.0/8']);
    await expectValue("ARRAY['90:b8:d0:e6:be:e1']::macaddr[]", OID.MACADDR_ARRAY,
        ['90:b8:d0:e6:be:e1']);
    await expectValue("ARRAY['a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11']::uuid[]", OID.UUID_ARRAY,
        ['a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11']);
});

test('json / jsonb parsed, arrays too', async () => {
    await expectValue('\'{"a":[1,"x"],"b":null}\'::json', OID.JSON, { a: [1, 'x'], b: null });
    await expectValue('\'{"b":2,"a":1}\'::jsonb', OID.JSONB, { a: 1, b: 2 });
    await expectValue('ARRAY[\'{"a":1}\'::json, \'2\']', OID.JSON_ARRAY, [{ a: 1 }, 2]);
    await expectValue('ARRAY[\'[1]\'::jsonb, NULL]', OID.JSONB_ARRAY, [[1], null]);
});

test('bytea is a Buffer; interval an object; other types raw text', async () => {
    const b = await one("'\\x00ff10'::bytea");
    assert.equal(b.oid, OID.BYTEA);
    assert.ok(Buffer.isBuffer(b.v));
    assert.deepEqual([...(b.v as Buffer)], [0, 255, 16]);
    assert.equal(JSON.stringify(b.v), '{"type":"Buffer","data":[0,255,16]}');
    const i = await one("'1 day 02:03:04'::interval");
    assert.equal(i.oid, OID.INTERVAL);
    assert.deepEqual({ ...(i.v as object) }, { days: 1, hours: 2, minutes: 3, seconds: 4 });
    const tv = await one("'10:30'::time");
    assert.equal(tv.v, '10:30:00');
    const xml = await one("'<a/>'::xml");
    assert.equal(xml.v, '<a/>');
});

test('the override is per client: pg\'s global registry is untouched', async () => {
    const plain = new Client({ host: pg.host, port: pg.port, user: pg.user, database: pg.database });
    await plain.connect();
    try {
        const r = await plain.query("SELECT 5.50::numeric AS n, tstzrange('2019-07-04 00:00:00+00', NULL) AS r");
        assert.equal(r.rows[0].n, '5.50');
        assert.equal(r.rows[0].r, '["2019-07-04 00:00:00+00",)');
    } finally {
        await plain.end();
    }
});

test('parseTstzrange edge cases (no database)', () => {
    assert.equal(parseTstzrange('empty'), 'empty');
    assert.equal(parseTstzrange('["2019-07-04 00:00:00+00","2019-07-04 01:00:00+00")'),
        '[2019-07-04T00:00:00.000Z,2019-07-04T01:00:00.000Z)');
    assert.equal(parseTstzrange('["2019-07-04 00:00:00.25-03:30",]'),
        '[2019-07-04T03:30:00.250Z,]');
    assert.equal(parseTstzrange('(,)'), '(,)');
    assert.equal(parseTstzrange('["garbage",)'), '[garbage,)');
    assert.ok(MORAY_TEXT_PARSERS.has(OID.NUMERIC));
    // binary format falls through to pg-types
    assert.equal(typeof morayTypes.getTypeParser(OID.INT4, 'binary'), 'function');
});

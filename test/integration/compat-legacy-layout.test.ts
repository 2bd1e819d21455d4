/*
 * Older table layouts an existing Moray database may still contain
 * (storage.md §3.4, §13), written here with plain SQL the way old servers
 * and operators left them, then used through the npm client:
 *
 *   table        era / state                                   ids come from
 *   ──────────── ───────────────────────────────────────────── ──────────────────────────
 *   legacy407    pre-MORAY-407 `_id INTEGER DEFAULT nextval`,   legacy407_serial
 *                pre-MORAY-204 `_mtime BIGINT NOT NULL`, no
 *                default
 *   legacy2012   `_id SERIAL` (sequence legacy2012__id_seq,     legacy2012__id_seq
 *                no legacy2012_serial), `_mtime NOT NULL`
 *   legacyext    32-bit `_id` migrated to the extended id:      old rows: _id
 *                `_idx BIGINT DEFAULT nextval(...)`, valid      new rows: _idx (> 2^32)
 *                `legacyext__idx_idx`, `_id` without default
 *   legacyhalf   migration half done: `_idx` added but its      _id (the index is
 *                index is INVALID (failed CONCURRENTLY build)   not valid → no extended id)
 *
 * `buckets_config` has the pre-updateBucket layout (no `reindex_active`
 * column).  Everything is created before the server starts (the server
 * would otherwise create `buckets_config` itself).
 */

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as zlib from 'node:zlib';
import { call, innermostError, morayClient, startServer, stopOwnCluster, testDatabase,
    type MorayClient, type ServerProcess, type TestDatabase } from '../helpers/harness';

let db: TestDatabase;
let srv: ServerProcess;
let client: MorayClient;

/* reference etag: CRC-32 over the low byte of each UTF-16 code unit (storage.md §7) */
function refEtag(s: string): string {
    const b = Buffer.alloc(s.length);
    for (let i = 0; i < s.length; i++) {
        b[i] = s.charCodeAt(i) & 0xff;
    }
    return (zlib.crc32(b) >>> 0).toString(16).toUpperCase().padStart(8, '0');
}

const INDEX = JSON.stringify({ name: { type: 'string' }, size: { type: 'number' } });
const EXT_FIRST_IDX = 4294967291; /* first id handed out after the migration: beyond 32 bits */

function rowsSql(table: string, rows: [number | null, string, Record<string, unknown>, number][],
    idCol = '_id'): string {
    return rows.map(([id, key, value, mtime]) => {
        const json = JSON.stringify(value);
        const lit = (s: string) => `'${s.replace(/'/g, "''")}'`;
        const cols = [...(id === null ? [] : [idCol]), '_key', '_value', '_etag', '_mtime', 'name', 'size'];
        const vals = [...(id === null ? [] : [String(id)]), lit(key), lit(json), lit(refEtag(json)),
            String(mtime), value['name'] === undefined ? 'NULL' : lit(String(value['name'])),
            value['size'] === undefined ? 'NULL' : String(value['size'])];
        return `INSERT INTO ${table} (${cols.join(', ')}) VALUES (${vals.join(', ')});`;
    }).join('\n');
}

const COMMON_COLS = `
    _txn_snap INTEGER,
    _key TEXT PRIMARY KEY,
    _value TEXT NOT NULL,
    _etag CHAR(8) NOT NULL,
    _mtime BIGINT NOT NULL,
    _vnode BIGINT,
    name TEXT,
    size NUMERIC`;

function commonIndexes(t: string): string {
    return ['name', 'size', '_id', '_etag', '_mtime', '_vnode'].map((c) =>
        `CREATE INDEX ${t}_${c}_idx ON ${t} USING BTREE (${c}) WHERE ${c} IS NOT NULL;`).join('\n');
}

const SETUP = `
CREATE TABLE buckets_config (
    name text PRIMARY KEY,
    index text NOT NULL,
    pre text NOT NULL,
    post text NOT NULL,
    options text,
    mtime timestamp without time zone DEFAULT now() NOT NULL
);

CREATE SEQUENCE legacy407_serial;
CREATE TABLE legacy407 (
    _id INTEGER DEFAULT nextval('legacy407_serial'),${COMMON_COLS}
);
${commonIndexes('legacy407')}
${rowsSql('legacy407', [
        [null, 'a', { name: 'alpha', size: 1 }, 1336000000001],
        [null, 'b', { name: 'beta', size: 2, extra: 'ü' }, 1336000000002],
        [null, 'c', { size: 3 }, 1336000000003],
    ])}

CREATE TABLE legacy2012 (
    _id SERIAL,${COMMON_COLS}
);
${commonIndexes('legacy2012')}
${rowsSql('legacy2012', [
        [null, 'a', { name: 'alpha', size: 10 }, 1340000000001],
        [null, 'b', { name: 'beta', size: 20 }, 1340000000002],
    ])}

CREATE SEQUENCE legacyext_serial;
CREATE TABLE legacyext (
    _id INTEGER DEFAULT nextval('legacyext_serial'),${COMMON_COLS}
);
${commonIndexes('legacyext')}
${rowsSql('legacyext', [
        [null, 'old1', { name: 'one', size: 1 }, 1500000000001],
        [null, 'old2', { name: 'two', size: 2 }, 1500000000002],
        [null, 'old3', { name: 'three', size: 3 }, 1500000000003],
    ])}
ALTER TABLE legacyext ADD COLUMN _idx BIGINT;
CREATE INDEX legacyext__idx_idx ON legacyext USING BTREE (_idx) WHERE _idx IS NOT NULL;
ALTER TABLE legacyext ALTER COLUMN _id DROP DEFAULT;
ALTER TABLE legacyext ALTER COLUMN _idx SET DEFAULT nextval('legacyext_serial'::regclass);
SELECT setval('legacyext_serial', ${EXT_FIRST_IDX - 1});
${rowsSql('legacyext', [[null, 'mig1', { name: 'post-migration', size: 4 }, 1600000000001]])}

CREATE SEQUENCE legacyhalf_serial;
CREATE TABLE legacyhalf (
    _id INTEGER DEFAULT nextval('legacyhalf_serial'),${COMMON_COLS}
);
${commonIndexes('legacyhalf')}
${rowsSql('legacyhalf', [[null, 'h1', { name: 'half', size: 1 }, 1500000000001]])}
ALTER TABLE legacyhalf ADD COLUMN _idx BIGINT;
CREATE INDEX legacyhalf__idx_idx ON legacyhalf USING BTREE (_idx) WHERE _idx IS NOT NULL;
UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'legacyhalf__idx_idx'::regclass;

INSERT INTO buckets_config (name, index, pre, post, options) VALUES
    ('legacy407', '${INDEX}', '[]', '[]', '{"version":0}'),
    ('legacy2012', '${INDEX}', '[]', '[]', '{}'),
    ('legacyext', '${INDEX}', '[]', '[]', '{"version":0}'),
    ('legacyhalf', '${INDEX}', '[]', '[]', '{"version":0}');
`;

before(async () => {
    db = await testDatabase('compat_legacy');
    await db.query(SETUP);
    srv = await startServer({ db });
    client = await morayClient(srv.port);
});

after(async () => {
    client?.close();
    await srv?.stop();
    await db?.drop();
    await stopOwnCluster();
});

/* ---- helpers ---- */

const innermostName = (err: unknown): string => String(innermostError(err)?.name);


function find(bucket: string, filter: string, opts: Record<string, unknown> = {}):
    Promise<{ err: unknown; records: Record<string, any>[] }> {
    return new Promise((resolve) => {
        const res = client['findObjects'](bucket, filter, opts);
        const records: Record<string, any>[] = [];
        res.on('record', (r: Record<string, any>) => records.push(r));
        res.once('error', (err: unknown) => resolve({ err, records }));
        res.once('end', () => resolve({ err: null, records }));
    });
}

async function findOk(bucket: string, filter: string, opts: Record<string, unknown> = {}):
    Promise<Record<string, any>[]> {
    const { err, records } = await find(bucket, filter, opts);
    assert.equal(err, null, `${bucket} ${filter}: ${(err as Error)?.message}`);
    return records;
}

async function row(table: string, key: string): Promise<Record<string, any> | undefined> {
    const r = await db.query(`SELECT to_jsonb(t) AS r FROM ${table} t WHERE _key = $1`, [key]);
    return r.rows[0]?.r as Record<string, any> | undefined;
}

const get = (b: string, k: string) => call(client, 'getObject', b, k, {});
const put = (b: string, k: string, v: unknown, o: Record<string, unknown> = {}) =>
    call<{ etag: string }>(client, 'putObject', b, k, v, o);
const del = (b: string, k: string, o: Record<string, unknown> = {}) => call(client, 'delObject', b, k, o);

const keysAndIds = (rs: Record<string, any>[]) => rs.map((r) => [r['key'], r['_id']]);

/* ---- the tests ---- */

for (const [table, seq, firstNew] of [
    ['legacy407', 'legacy407_serial', 4],
    ['legacy2012', 'legacy2012__id_seq', 3],
] as const) {
    describe(`${table}: ${table === 'legacy407' ? 'INTEGER _id, _mtime NOT NULL without default' : '_id SERIAL'}`, () => {
        test('reads old rows', async () => {
            const o = await get(table, 'a');
            const stored = JSON.stringify({ name: 'alpha', size: table === 'legacy407' ? 1 : 10 });
            assert.deepEqual({ ...o, _txn_snap: undefined }, {
                bucket: table, key: 'a', value: JSON.parse(stored), _id: 1, _etag: refEtag(stored),
                _mtime: table === 'legacy407' ? 1336000000001 : 1340000000001,
                _txn_snap: undefined, _count: null,
            });
            const all = await findOk(table, '(size>=0)');
            assert.deepEqual(keysAndIds(all).sort(), table === 'legacy407' ?
                [['a', 1], ['b', 2], ['c', 3]] : [['a', 1], ['b', 2]]);
            const sorted = await findOk(table, '(_id>=2)', { sort: { attribute: '_id', order: 'DESC' } });
            assert.deepEqual(sorted.map((r) => r['_id']), table === 'legacy407' ? [3, 2] : [2]);
        });

        test('puts new objects with ids from the old sequence and an explicit _mtime', async () => {
            const value = { name: 'new', size: 5, vnode: 3 };
            const t0 = Date.now();
            const res = await put(table, 'new', value);
            const json = JSON.stringify(value);
            assert.equal(res.etag, refEtag(json));
            const r = await row(table, 'new');
            assert.ok(r);
            assert.ok(r['_mtime'] >= t0 - 1000 && r['_mtime'] <= Date.now() + 1000, `_mtime ${r['_mtime']}`);
            assert.deepEqual({ ...r, _mtime: 0 }, {
                _id: firstNew, _txn_snap: null, _key: 'new', _value: json, _etag: refEtag(json),
                _mtime: 0, _vnode: 3, name: 'new', size: 5,
            });
            const last = await db.query(`SELECT last_value FROM ${seq}`);
            assert.equal(Number(last.rows[0].last_value), firstNew);
            const o = await get(table, 'new');
            assert.equal(o._id, firstNew);
            assert.deepEqual(o.value, value);
            assert.deepEqual(keysAndIds(await findOk(table, '(name=new)')), [['new', firstNew]]);
        });

        test('overwrites and deletes old rows', async () => {
            const before_ = await row(table, 'b');
            await put(table, 'b', { name: 'beta2' }, { etag: before_!['_etag'] });
            const r = await row(table, 'b');
            assert.equal(r!['_id'], 2, '_id kept');
            assert.equal(r!['size'], null, 'absent index field → NULL on update');
            assert.deepEqual((await get(table, 'b')).value, { name: 'beta2' });

            await del(table, 'a', { etag: refEtag(JSON.stringify({ name: 'alpha', size: table === 'legacy407' ? 1 : 10 })) });
            assert.equal(await row(table, 'a'), undefined);
            await assert.rejects(get(table, 'a'), (e: unknown) => innermostName(e) === 'ObjectNotFoundError');
            await del(table, 'new');
            assert.equal(await row(table, 'new'), undefined);
        });
    });
}

describe('legacyext: extended id (_idx) after a 32-bit migration', () => {
    test('ids come from _id for old rows and from _idx when _id is null', async () => {
        const o = await get('legacyext', 'old2');
        assert.equal(o._id, 2);
        const m = await get('legacyext', 'mig1');
        assert.equal(m._id, EXT_FIRST_IDX);
        assert.deepEqual(m.value, { name: 'post-migration', size: 4 });
        assert.deepEqual(keysAndIds(await findOk('legacyext', '(name=*)')).sort(),
            [['mig1', EXT_FIRST_IDX], ['old1', 1], ['old2', 2], ['old3', 3]]);
    });

    test('new objects get _idx beyond 32 bits, _id stays NULL', async () => {
        const value = { name: 'fresh', size: 9 };
        await put('legacyext', 'fresh', value);
        const r = await row('legacyext', 'fresh');
        assert.equal(r!['_id'], null);
        assert.equal(r!['_idx'], EXT_FIRST_IDX + 1);
        const o = await get('legacyext', 'fresh');
        assert.equal(o._id, EXT_FIRST_IDX + 1);
        assert.equal(o._etag, refEtag(JSON.stringify(value)));
        assert.deepEqual(keysAndIds(await findOk('legacyext', '(name=fresh)')), [['fresh', EXT_FIRST_IDX + 1]]);
    });

    test('_id filters and sorts span both columns', async () => {
        assert.deepEqual(keysAndIds(await findOk('legacyext', '(_id>=3)')).sort(),
            [['fresh', EXT_FIRST_IDX + 1], ['mig1', EXT_FIRST_IDX], ['old3', 3]]);
        assert.deepEqual(keysAndIds(await findOk('legacyext', '(_id<=2)')).sort(), [['old1', 1], ['old2', 2]]);
        assert.deepEqual(keysAndIds(await findOk('legacyext', `(_id=${EXT_FIRST_IDX})`)), [['mig1', EXT_FIRST_IDX]]);
        const desc = await findOk('legacyext', '(size>=0)', { sort: { attribute: '_id', order: 'DESC' } });
        assert.deepEqual(desc.map((r) => r['_id']), [EXT_FIRST_IDX + 1, EXT_FIRST_IDX, 3, 2, 1]);
        const asc = await findOk('legacyext', '(size>=0)', { sort: { attribute: '_id', order: 'ASC' }, limit: 4 });
        assert.deepEqual(asc.map((r) => r['_id']), [1, 2, 3, EXT_FIRST_IDX]);
    });

    test('_idx itself may not be filtered or sorted on', async () => {
        const f = await find('legacyext', '(_idx>=1)');
        /* the reference throws a plain Error during decoration (storage.md §11.1) */
        assert.ok(f.err, 'filter on _idx rejected');
        assert.equal(innermostName(f.err), 'Error');
        assert.match((f.err as Error).message, /filtering on "_idx" is not allowed/);
        const s = await find('legacyext', '(size>=0)', { sort: { attribute: '_idx', order: 'ASC' } });
        assert.ok(s.err, 'sort on _idx rejected');
        assert.equal(innermostName(s.err), 'Error');
        assert.match((s.err as Error).message, /sorting on "_idx" is not allowed/);
    });

    test('overwrites keep whichever id the row had; deletes work for both', async () => {
        await put('legacyext', 'old1', { name: 'one-b', size: 11 });
        await put('legacyext', 'mig1', { name: 'mig-b', size: 12 });
        const o1 = await row('legacyext', 'old1');
        const m1 = await row('legacyext', 'mig1');
        assert.deepEqual([o1!['_id'], o1!['_idx']], [1, null]);
        assert.deepEqual([m1!['_id'], m1!['_idx']], [null, EXT_FIRST_IDX]);
        assert.equal((await get('legacyext', 'mig1'))._id, EXT_FIRST_IDX);

        await del('legacyext', 'old2');
        await del('legacyext', 'fresh');
        assert.equal(await row('legacyext', 'old2'), undefined);
        assert.equal(await row('legacyext', 'fresh'), undefined);
        assert.deepEqual(keysAndIds(await findOk('legacyext', '(name=*)')).sort(),
            [['mig1', EXT_FIRST_IDX], ['old1', 1], ['old3', 3]]);
    });
});

describe('legacyhalf: _idx column whose index is not valid yet', () => {
    test('is not treated as extended: ids keep coming from _id', async () => {
        assert.equal((await get('legacyhalf', 'h1'))._id, 1);
        await put('legacyhalf', 'h2', { name: 'half2', size: 2 });
        const r = await row('legacyhalf', 'h2');
        assert.deepEqual([r!['_id'], r!['_idx']], [2, null]);
        assert.equal((await get('legacyhalf', 'h2'))._id, 2);
        assert.deepEqual(keysAndIds(await findOk('legacyhalf', '(_id>=1)')).sort(), [['h1', 1], ['h2', 2]]);
        await del('legacyhalf', 'h1');
        assert.equal(await row('legacyhalf', 'h1'), undefined);
    });
});

describe('buckets_config without reindex_active', () => {
    test('getBucket and listBuckets read it', async () => {
        const b = await call(client, 'getBucket', 'legacy407');
        assert.equal(b.name, 'legacy407');
        assert.deepEqual(b.index, JSON.parse(INDEX));
        assert.deepEqual(b.options, { version: 0 });
        assert.equal('reindex_active' in b, false);
        const all = await call<Record<string, any>[]>(client, 'listBuckets');
        assert.deepEqual(all.map((x) => x['name']).sort(), ['legacy2012', 'legacy407', 'legacyext', 'legacyhalf']);
    });
});

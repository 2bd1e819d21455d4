/*
 * Compatibility with a database written by Joyent's reference Moray server.
 *
 *   reference-moray-db.sql ──(test/helpers/fixture.ts)──► fresh database
 *        │                                                    │
 *        │ moray-server 2.5.0 wrote it                        │ our server
 *        ▼                                                    ▼
 *   reference-moray-db.answers.json  ◄── same queries, same npm client ──┘
 *
 * Part 1 replays every recorded query and compares the normalised answer
 * (`_txn_snap`, `mtime`, `req_id` dropped from each record, object keys
 * sorted, JSON round trip so functions/NaN look as they did to the
 * recorder).  findObjects without `sort` and listBuckets (no ORDER BY in the
 * reference) compare as sets.
 *
 * Part 2 keeps using the database: re-putting every fixture object must
 * reproduce the reference's rows byte for byte (same `_value`, `_etag`,
 * index columns, `_id`), new objects continue the sequences, the pre trigger
 * stamps values as it did for the reference, overwrites/deletes follow the
 * etag rules, and the half-reindexed bucket never uses its reindexing
 * fields for lookups.  Rows are checked in PostgreSQL directly.
 *
 * Entries are sequential (node:test runs tests of a file in order): the
 * recorded answers are checked before anything is written.
 */

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as zlib from 'node:zlib';
import { call, innermostError, morayClient, startServer, stopOwnCluster, testDatabase,
    type MorayClient, type ServerProcess, type TestDatabase } from '../helpers/harness';
import { fixtureDatabase, loadDump, psqlPath, REFERENCE_ANSWERS, restoreWithPsql } from '../helpers/fixture';

const innermostName = (err: unknown): string => String(innermostError(err)?.name);

type Query =
    | ['get', string, string]
    | ['find', string, string, Record<string, unknown>?]
    | ['bucket', string]
    | ['buckets'];

interface Answer {
    q: Query;
    err: string | null;
    v: unknown;
}

const ANSWERS = JSON.parse(fs.readFileSync(REFERENCE_ANSWERS, 'utf8')) as Answer[];

let db: TestDatabase;
let srv: ServerProcess;
let client: MorayClient;

before(async () => {
    db = (await fixtureDatabase('compat_ref')).db;
    srv = await startServer({ db });
    client = await morayClient(srv.port);
});

after(async () => {
    client?.close();
    await srv?.stop();
    await db?.drop();
    await stopOwnCluster();
});

/* ---- normalisation, as the recorder did it ---- */

function sortKeys(v: unknown): unknown {
    if (Array.isArray(v)) {
        return v.map(sortKeys);
    }
    if (v !== null && typeof v === 'object') {
        const o = v as Record<string, unknown>;
        return Object.fromEntries(Object.keys(o).sort().map((k) => [k, sortKeys(o[k])]));
    }
    return v;
}

function normalise(rec: unknown): unknown {
    if (rec === undefined) {
        return null;
    }
    const o = JSON.parse(JSON.stringify(rec)) as unknown;
    if (o !== null && typeof o === 'object' && !Array.isArray(o)) {
        const r = o as Record<string, unknown>;
        delete r['_txn_snap'];
        delete r['mtime'];
        delete r['req_id'];
    }
    return sortKeys(o);
}

function asSet(list: unknown[]): unknown[] {
    return [...list].sort((a, b) => {
        const x = JSON.stringify(a);
        const y = JSON.stringify(b);
        return x < y ? -1 : x > y ? 1 : 0;
    });
}

/* The innermost cause's name (VError chains: cause() / jse_cause). */

interface Result {
    err: string | null;
    v: unknown;
}

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

async function ask(q: Query): Promise<Result> {
    try {
        switch (q[0]) {
        case 'get':
            return { err: null, v: normalise(await call(client, 'getObject', q[1], q[2], {})) };
        case 'find': {
            const { err, records } = await find(q[1], q[2], q[3] ?? {});
            const v = records.map(normalise);
            return { err: err === null ? null : innermostName(err), v: q[3]?.['sort'] ? v : asSet(v) };
        }
        case 'bucket':
            return { err: null, v: normalise(await call(client, 'getBucket', q[1])) };
        case 'buckets':
            return { err: null, v: asSet((await call<unknown[]>(client, 'listBuckets')).map(normalise)) };
        }
    } catch (err) {
        return { err: innermostName(err), v: null };
    }
    throw new Error(`unknown query ${JSON.stringify(q)}`);
}

function expected(a: Answer): Result {
    if (a.q[0] === 'find' && !a.q[3]?.['sort'] && Array.isArray(a.v)) {
        return { err: a.err, v: asSet(a.v) };
    }
    if (a.q[0] === 'buckets' && Array.isArray(a.v)) {
        return { err: a.err, v: asSet(a.v) };
    }
    return { err: a.err, v: a.v };
}

function label(q: Query): string {
    return q.map((x, i) => i === 0 ? String(x) : JSON.stringify(x)).join(' ');
}

/* ---- reference etag: CRC-32 over the low byte of each UTF-16 code unit ---- */

function refEtag(s: string): string {
    const b = Buffer.alloc(s.length);
    for (let i = 0; i < s.length; i++) {
        b[i] = s.charCodeAt(i) & 0xff;
    }
    return (zlib.crc32(b) >>> 0).toString(16).toUpperCase().padStart(8, '0');
}

/* every column of every row as JSON (jsonb: numbers for bigint/numeric) */
async function tableRows(table: string): Promise<Map<string, Record<string, any>>> {
    const r = await db.query(`SELECT _key, to_jsonb(t) AS r FROM ${table} t ORDER BY _key`);
    return new Map(r.rows.map((x) => [x._key as string, x.r as Record<string, any>]));
}

async function row(table: string, key: string): Promise<Record<string, any> | undefined> {
    return (await tableRows(table)).get(key);
}

async function put(bucket: string, key: string, value: unknown, opts: Record<string, unknown> = {}):
    Promise<{ etag: string }> {
    return call(client, 'putObject', bucket, key, value, opts);
}

async function rejects(p: Promise<unknown>, name: string): Promise<void> {
    await assert.rejects(p, (err: unknown) => {
        assert.equal(innermostName(err), name, `expected ${name}, got ${innermostName(err)}: ${(err as Error).message}`);
        return true;
    });
}

/* ---- the loader itself ---- */

test('fixture loader restores what psql restores', { skip: psqlPath() === null ? 'no psql' : false },
    async () => {
        const other = await testDatabase('compat_psql');
        try {
            restoreWithPsql(other);
            const snapshot = async (d: TestDatabase) => {
                const tables = (await d.query(`SELECT tablename FROM pg_tables
                    WHERE schemaname = 'public' ORDER BY 1`)).rows.map((r) => r.tablename as string);
                const out: Record<string, unknown> = { tables };
                for (const t of tables) {
                    out[t] = (await d.query(`SELECT t::text AS r FROM ${t} t ORDER BY 1`)).rows.map((r) => r.r);
                }
                out['indexes'] = (await d.query(`SELECT indexname, indexdef FROM pg_indexes
                    WHERE schemaname = 'public' ORDER BY 1`)).rows;
                out['columns'] = (await d.query(`SELECT table_name, column_name, data_type,
                    column_default, is_nullable FROM information_schema.columns
                    WHERE table_schema = 'public' ORDER BY 1, ordinal_position`)).rows;
                out['sequences'] = (await d.query(`SELECT sequencename, last_value FROM pg_sequences
                    WHERE schemaname = 'public' ORDER BY 1`)).rows;
                return out;
            };
            assert.deepEqual(await snapshot(db), await snapshot(other));
        } finally {
            await other.drop();
        }
    });

test('fixture loader: owners, COPY escapes, quoting, meta-commands', async () => {
    const d = await testDatabase('compat_loader');
    try {
        const dump = [
            '\\restrict AbC123',
            '-- comment; with a semicolon',
            "SET standard_conforming_strings = on;",
            'CREATE TABLE public.t (k text PRIMARY KEY, v text, n numeric[], ts timestamptz);',
            'ALTER TABLE public.t OWNER TO compat_loader_owner;',
            '/* block /* nested; */ comment */',
            "CREATE FUNCTION public.f() RETURNS text LANGUAGE sql AS $body$ SELECT 'a;b'::text $body$;",
            "COMMENT ON TABLE public.t IS E'it''s \\\\ a; \\'table\\'';",
            'COPY public.t (k, v, n, ts) FROM stdin;',
            'a\ttab\\there\\nnewline\\\\back\t{1,2.5}\t2019-07-04 20:30:00+00',
            'b\t\\N\t\\N\t\\N',
            'c\t\\303\\251\\xc3\\xa9 ü 😀\t{}\t\\N',
            '\\.',
            "INSERT INTO public.t (k, v) VALUES ('d', $$x;'y'$$);",
            '\\unrestrict AbC123',
            '',
        ].join('\n');
        const c = await d.client();
        let stats;
        try {
            stats = await loadDump(c, dump);
        } finally {
            await c.end();
        }
        assert.deepEqual({ ...stats, rolesCreated: [] }, { statements: 6, copies: 1, rows: 3, rolesCreated: [] });
        const r = await d.query(`SELECT k, v, n::text AS n, ts = '2019-07-04T20:30:00Z' AS ts_ok,
            pg_get_userbyid(c.relowner) AS owner, public.f() AS f, obj_description(c.oid) AS comment
            FROM public.t, pg_class c WHERE c.oid = 'public.t'::regclass ORDER BY k`);
        assert.deepEqual(r.rows, [
            { k: 'a', v: 'tab\there\nnewline\\back', n: '{1,2.5}', ts_ok: true,
                owner: 'compat_loader_owner', f: 'a;b', comment: "it's \\ a; 'table'" },
            { k: 'b', v: null, n: null, ts_ok: null, owner: 'compat_loader_owner', f: 'a;b',
                comment: "it's \\ a; 'table'" },
            { k: 'c', v: 'éé ü 😀', n: '{}', ts_ok: null, owner: 'compat_loader_owner', f: 'a;b',
                comment: "it's \\ a; 'table'" },
            { k: 'd', v: "x;'y'", n: null, ts_ok: null, owner: 'compat_loader_owner', f: 'a;b',
                comment: "it's \\ a; 'table'" },
        ]);
        /* a failing statement rolls the whole load back and names its line */
        const c2 = await d.client();
        try {
            await assert.rejects(loadDump(c2, 'CREATE TABLE public.u (x int);\n\nSELECT nope;\n'),
                /dump line 3: /);
            await assert.rejects(loadDump(c2, '\\connect other\n'), /meta-command \\connect/);
            await assert.rejects(loadDump(c2, "SELECT 'open;\n"), /unterminated string/);
        } finally {
            await c2.end();
        }
        const u = await d.query("SELECT to_regclass('public.u') AS u");
        assert.equal(u.rows[0].u, null);
    } finally {
        await d.drop();
    }
});

/* ---- part 1: the recorded answers ---- */

describe('reference answers', () => {
    for (const a of ANSWERS) {
        test(label(a.q), async () => {
            assert.deepStrictEqual(await ask(a.q), expected(a));
        });
    }
});

/* ---- part 2: keep reading and writing it ---- */

describe('keeps reading and writing it correctly', () => {
    test('every fixture etag is the reference CRC of its _value (checks this test\'s helper)', async () => {
        for (const t of ['compat_all_types', 'compat_versioned', 'compat_trigger']) {
            for (const [key, r] of await tableRows(t)) {
                assert.equal(refEtag(r['_value']), r['_etag'], `${t}/${key}`);
            }
        }
    });

    test('reindexing fields of compat_versioned are never used for lookups', async () => {
        /* make the b/c columns lie: only the JSON may decide */
        await db.query(`UPDATE compat_versioned SET b = 'zzz', c = NULL WHERE _key = 'v2'`);
        await db.query(`UPDATE compat_versioned SET b = 'b2', c = TRUE WHERE _key = 'v3'`);
        await db.query(`UPDATE compat_versioned SET a = 77 WHERE _key = 'v5'`);

        const all = await tableRows('compat_versioned');
        const sqlCount = [...all.values()].filter((r) => r['a'] !== null && r['a'] >= 0).length;
        const wantB2 = [...all.entries()].filter(([, r]) => JSON.parse(r['_value']).b === 'b2')
            .map(([k]) => k).sort();

        const { err, records } = await find('compat_versioned', '(&(a>=0)(b=b2))');
        assert.equal(err, null);
        assert.deepEqual(records.map((r) => r['key']).sort(), wantB2);
        assert.ok(records.some((r) => r['key'] === 'v2'), 'v2 (JSON b2, column zzz) found');
        assert.ok(!records.some((r) => r['key'] === 'v3'), 'v3 (JSON b3, column b2) not found');
        for (const r of records) {
            assert.equal(r['_count'], sqlCount, '_count counts the SQL (a only) matches');
        }

        /* reads do not overlay reindexing columns; other index columns are overlaid */
        const v2 = await call(client, 'getObject', 'compat_versioned', 'v2', {});
        assert.deepEqual(v2.value, { a: 2, b: 'b2', c: true });
        const v5 = await call(client, 'getObject', 'compat_versioned', 'v5', {});
        assert.deepEqual(v5.value, { a: 77, b: 'b1', c: false });

        /* c only: a lone non-SQL leaf */
        const c = await find('compat_versioned', '(c=true)');
        assert.equal(innermostName(c.err), 'InvalidQueryError');
        const or = await find('compat_versioned', '(|(a=1)(b=b1))');
        assert.equal(innermostName(or.err), 'NotIndexedError');

        for (const opt of ['requireIndexes', 'requireOnlineReindexing']) {
            for (const f of ['(&(a>=0)(b=b2))', '(c=true)', '(b=*)']) {
                const r = await find('compat_versioned', f, { [opt]: true });
                assert.equal(innermostName(r.err), 'NotIndexedError', `${f} with ${opt}`);
                assert.deepEqual(r.records, []);
            }
            const ok = await find('compat_versioned', '(a>=28)', { [opt]: true });
            assert.equal(ok.err, null, `(a>=28) with ${opt}: ${String(ok.err)}`);
            /* v5's a column (77) is overlaid and post-filtered like any indexed value */
            assert.deepEqual(ok.records.map((r) => r['key']).sort(), ['v-after', 'v28', 'v29', 'v5']);
        }
    });

    test('re-putting every fixture object reproduces the reference rows', async () => {
        const t0 = Date.now();
        const before_ = {
            compat_all_types: await tableRows('compat_all_types'),
            compat_trigger: await tableRows('compat_trigger'),
            compat_versioned: await tableRows('compat_versioned'),
        };
        for (const [table, rows] of Object.entries(before_)) {
            for (const [key, r] of rows) {
                const value = JSON.parse(r['_value']) as Record<string, unknown>;
                if (table === 'compat_trigger') {
                    delete value['stamped']; /* the client sent {n}; the pre trigger added it */
                }
                const res = await put(table, key, value);
                assert.equal(res.etag, r['_etag'], `${table}/${key}: putObject's etag`);
            }
        }
        const t1 = Date.now();
        for (const [table, rows] of Object.entries(before_)) {
            const after_ = await tableRows(table);
            assert.deepEqual([...after_.keys()], [...rows.keys()]);
            for (const [key, was] of rows) {
                const now = after_.get(key)!;
                assert.ok(now['_mtime'] >= t0 - 1000 && now['_mtime'] <= t1 + 1000,
                    `${table}/${key}: _mtime ${now['_mtime']} is the put time`);
                const want: Record<string, unknown> = { ...was, _mtime: now['_mtime'] };
                if (table === 'compat_versioned') {
                    /* reindex_active is truthy: every column incl. b, c and _rver = 2 */
                    const v = JSON.parse(was['_value']);
                    Object.assign(want, { a: v.a, b: v.b, c: v.c, _rver: 2 });
                }
                assert.deepEqual(now, want, `${table}/${key}`);
            }
        }
        const seq = await db.query(`SELECT
            (SELECT last_value FROM compat_all_types_serial) AS a,
            (SELECT last_value FROM compat_trigger_serial) AS t,
            (SELECT last_value FROM compat_versioned_serial) AS v`);
        assert.deepEqual(seq.rows[0], { a: '41', t: '5', v: '31' }, 'updates draw no ids');
    });

    test('new objects continue the sequences and are stored as the reference would', async () => {
        const fresh = {
            str: 'fresh "quoted" \\ ünï',
            num: 12.5,
            bool: true,
            id: '3bfa93f9-012e-c14c-fc29-1000000000ff',
            ts: '2020-02-29T12:00:00Z',
            mac: '90-b8-d0-e6-be-99',
            addr: 'FD00:0:0:0:0:0:0:99',
            net: '10.1.2.3/16',
            nr: '[1.5,2.5)',
            dr: '[2020-01-01T00:00:00Z,2020-02-01T00:00:00.250Z]',
            tags: ['a b', 'c,d', 'q"x', 'b\\s', '{br}'],
            nums: [1.5, 2, -3],
            u: 'unique-fresh',
            vnode: 7,
            nested: { x: [1, { y: null }] },
            'ünïcødé': '😀',
        };
        const json = JSON.stringify(fresh);
        const t0 = Date.now();
        const res = await put('compat_all_types', 'new-0', fresh);
        assert.equal(res.etag, refEtag(json));

        const r = (await db.query(`SELECT _id, _txn_snap, _value, _etag, _mtime, _vnode, str,
            num::text AS num, bool, id::text AS id, ts = '2020-02-29T12:00:00Z'::timestamptz AS ts_ok,
            mac, addr, net, nr::text AS nr,
            dr = '[2020-01-01T00:00:00Z,2020-02-01T00:00:00.25Z]'::tstzrange AS dr_ok,
            tags, nums::text AS nums, u FROM compat_all_types WHERE _key = 'new-0'`)).rows[0];
        assert.ok(r, 'row exists');
        assert.ok(Number(r._mtime) >= t0 - 1000 && Number(r._mtime) <= Date.now() + 1000);
        assert.deepEqual({ ...r, _mtime: undefined }, {
            _id: '42', _txn_snap: null, _value: json, _etag: refEtag(json), _mtime: undefined,
            _vnode: '7', str: fresh.str, num: '12.5', bool: true, id: fresh.id, ts_ok: true,
            mac: '90:b8:d0:e6:be:99', addr: 'fd00::99', net: '10.1.0.0/16', nr: '[1.5,2.5)',
            dr_ok: true, tags: fresh.tags, nums: '{1.5,2,-3}', u: 'unique-fresh',
        });

        const got = await call(client, 'getObject', 'compat_all_types', 'new-0', {});
        assert.deepEqual(normalise(got), sortKeys({
            bucket: 'compat_all_types', key: 'new-0', _id: 42, _etag: refEtag(json),
            _mtime: Number(r._mtime), _count: null,
            value: {
                ...fresh, ts: '2020-02-29T12:00:00.000Z', mac: '90:b8:d0:e6:be:99', addr: 'fd00::99',
                net: '10.1.0.0/16', dr: '[2020-01-01T00:00:00.000Z,2020-02-01T00:00:00.250Z]',
            },
        }));
        for (const f of ['(u=unique-fresh)', '(addr=fd00::99)', '(net=10.1.0.0/16)', '(tags=c,d)',
            '(mac=90:b8:d0:e6:be:99)', '(str=fresh*)', '(nums<=-3)', '(id=3bfa93f9-012e-c14c-fc29-1000000000ff)']) {
            const { err, records } = await find('compat_all_types', f);
            assert.equal(err, null, `${f}: ${String(err)}`);
            assert.deepEqual(records.map((x) => [x['key'], x['_id']]), [['new-0', 42]], f);
        }

        /* the pre trigger, with a unicode key */
        for (const [key, n, id] of [['t9', 9, 6], ['тр-😀', 10, 7]] as const) {
            const stored = JSON.stringify({ n, stamped: `pre:${key}` });
            const pr = await put('compat_trigger', key, { n });
            assert.equal(pr.etag, refEtag(stored));
            const tr = await row('compat_trigger', key);
            assert.deepEqual({ ...tr, _mtime: 0 }, {
                _id: id, _txn_snap: null, _key: key, _value: stored, _etag: refEtag(stored),
                _mtime: 0, _vnode: null, stamped: `pre:${key}`,
            });
            const g = await call(client, 'getObject', 'compat_trigger', key, {});
            assert.deepEqual(g.value, { n, stamped: `pre:${key}` });
            const fr = await find('compat_trigger', `(stamped=pre:${key})`);
            assert.deepEqual(fr.records.map((x) => x['key']), [key]);
        }
        /* same shape as the reference's own rows t0..t4 */
        const t3 = await row('compat_trigger', 't3');
        assert.equal(t3?.['_value'], '{"n":3,"stamped":"pre:t3"}');

        /* versioned: _rver = 2 and every column, like the reference's v-after */
        const vr = await put('compat_versioned', 'v-new', { a: 100, b: 'b1', c: true });
        const vAfter = await row('compat_versioned', 'v-after');
        const vNew = await row('compat_versioned', 'v-new');
        assert.equal(vr.etag, vAfter?.['_etag'], 'same value as v-after → same etag');
        assert.deepEqual({ ...vNew, _key: 'v-after', _id: 31, _mtime: vAfter?.['_mtime'] }, vAfter);
        assert.equal(vNew?.['_id'], 32);
    });

    test('overwrites keep _id and follow the etag rules', async () => {
        const before1 = await row('compat_all_types', 'key-1');
        await rejects(put('compat_all_types', 'key-1', { str: 'x' }, { etag: 'DEADBEEF' }), 'EtagConflictError');
        await rejects(put('compat_all_types', 'key-1', { str: 'x' }, { etag: null }), 'EtagConflictError');
        await rejects(put('compat_all_types', 'nope', { str: 'x' }, { etag: before1?.['_etag'] }),
            'EtagConflictError');
        assert.deepEqual(await row('compat_all_types', 'key-1'), before1, 'failed puts change nothing');

        const value = { str: 'Overwritten', num: 1, u: 'unique-1' };
        const res = await put('compat_all_types', 'key-1', value, { etag: before1?.['_etag'] });
        const now = await row('compat_all_types', 'key-1');
        assert.equal(res.etag, refEtag(JSON.stringify(value)));
        assert.deepEqual({ ...now, _mtime: 0 }, {
            _id: 2, _txn_snap: null, _key: 'key-1', _value: JSON.stringify(value), _etag: res.etag,
            _mtime: 0, _vnode: null, str: 'Overwritten', num: 1, bool: null, id: null, ts: null,
            mac: null, addr: null, net: null, nr: null, dr: null, tags: null, nums: null, u: 'unique-1',
        });
        const got = await call(client, 'getObject', 'compat_all_types', 'key-1', {});
        assert.deepEqual(got.value, value);

        await rejects(put('compat_all_types', 'dup', { u: 'unique-2' }), 'UniqueAttributeError');
        assert.equal(await row('compat_all_types', 'dup'), undefined);
    });

    test('deletes follow the etag rules and ids are never reused', async () => {
        await rejects(call(client, 'delObject', 'compat_all_types', 'key-8', { etag: 'DEADBEEF' }),
            'EtagConflictError');
        assert.ok(await row('compat_all_types', 'key-8'), 'key-8 still there');
        await rejects(call(client, 'delObject', 'compat_all_types', 'key-6', {}), 'ObjectNotFoundError');

        await call(client, 'delObject', 'compat_all_types', 'key-7', { etag: '48293C5D' });
        assert.equal(await row('compat_all_types', 'key-7'), undefined);
        await rejects(call(client, 'getObject', 'compat_all_types', 'key-7', {}), 'ObjectNotFoundError');
        await call(client, 'delObject', 'compat_trigger', 't0', {});
        await call(client, 'delObject', 'compat_versioned', 'v0', {});
        const { records } = await find('compat_versioned', '(a>=0)');
        assert.ok(!records.some((r) => r['key'] === 'v0'));

        const maxId = Math.max(...[...(await tableRows('compat_all_types')).values()].map((r) => r['_id']));
        await put('compat_all_types', 'key-7', { str: 'again', u: 'unique-7' });
        const again = await row('compat_all_types', 'key-7');
        const seq = await db.query('SELECT last_value FROM compat_all_types_serial');
        assert.ok(again!['_id'] > maxId, `new _id ${again!['_id']} > ${maxId}`);
        assert.equal(again!['_id'], Number(seq.rows[0].last_value));
    });

    test('findObjects still answers the recorded way for untouched rows', async () => {
        const want = ANSWERS.find((a) => label(a.q) === 'find "compat_all_types" "(nr:overlaps:=[35,36])"');
        assert.ok(want);
        const { err, records } = await find('compat_all_types', '(nr:overlaps:=[35,36])');
        assert.equal(err, null);
        /* every row was re-put above, so only _mtime moved */
        const noMtime = (l: unknown) => asSet((l as Record<string, unknown>[]).map((r) => ({ ...r, _mtime: 0 })));
        assert.deepEqual(noMtime(records.map(normalise)), noMtime(want.v));
    });
});

/*
 * The bucket RPCs (createBucket, getBucket, listBuckets, updateBucket,
 * delBucket) end to end: the real npm `moray` client and its CLI tools
 * against the server, with the resulting PostgreSQL objects checked in the
 * catalogs (column types, index methods and definitions, constraints).
 *
 *   moray client / CLI ──Fast──► server ──► PostgreSQL ◄── db.query(pg_catalog ...)
 *   node-fast client ───raw records──┘      (what the bucket RPCs created)
 *
 * Each test uses its own bucket names, so the order of tests matters only
 * where stated (the lazily added reindex_active column).
 */

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import {
    call, morayClient, runCli, standaloneConfig, startServer, stopOwnCluster, testDatabase,
    type MorayClient, type ServerProcess, type TestDatabase,
} from '../helpers/harness';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const fast = require('fast');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const bunyan = require('bunyan');

let db: TestDatabase;
let srv: ServerProcess;
let client: MorayClient;

before(async () => {
    db = await testDatabase('buckets');
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

/* The first error named `name` in a (VError) cause chain. */
function findCause(err: unknown, name: string): (Error & { name: string }) | null {
    let e = err as (Error & { cause?: unknown }) | undefined;
    for (let i = 0; e && i < 10; i++) {
        if (e.name === name) {
            return e;
        }
        const c: unknown = typeof e.cause === 'function' ? (e.cause as () => unknown)() : e.cause;
        e = c as (Error & { cause?: unknown }) | undefined;
    }
    return null;
}

async function rejects(p: Promise<unknown>, name: string, message: string): Promise<void> {
    await assert.rejects(p, (err: unknown) => {
        const found = findCause(err, name);
        assert.ok(found, `expected ${name}, got ${String(err)}`);
        assert.equal(found.message, message);
        return true;
    });
}

/* One RPC through the plain node-fast client: the records exactly as sent. */
async function rawRpc(method: string, args: unknown[]): Promise<unknown[]> {
    const sock = await new Promise<net.Socket>((resolve, reject) => {
        const s = net.connect(srv.port, '127.0.0.1', () => resolve(s));
        s.once('error', reject);
    });
    const fc = new fast.FastClient({
        log: bunyan.createLogger({ name: 'raw', level: 'fatal' }),
        nRecentRequests: 10, transport: sock,
    });
    try {
        return await new Promise<unknown[]>((resolve, reject) => {
            const r = fc.rpc({ rpcmethod: method, rpcargs: args });
            const out: unknown[] = [];
            r.on('data', (d: unknown) => out.push(d));
            r.on('end', () => resolve(out));
            r.on('error', reject);
        });
    } finally {
        fc.detach();
        sock.destroy();
    }
}

interface ColumnInfo { name: string; type: string; notnull: boolean; def: string | null }

async function columns(table: string): Promise<ColumnInfo[]> {
    const r = await db.query(
        'SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, ' +
        'a.attnotnull AS notnull, pg_get_expr(d.adbin, d.adrelid) AS def ' +
        'FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND ' +
        'd.adnum = a.attnum WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND ' +
        'NOT a.attisdropped ORDER BY a.attnum', [table]);
    return r.rows as ColumnInfo[];
}

/* indexname -> indexdef for one table */
async function indexes(table: string): Promise<Record<string, string>> {
    const r = await db.query(
        'SELECT indexname, indexdef FROM pg_indexes WHERE tablename = $1 ORDER BY indexname',
        [table]);
    return Object.fromEntries(r.rows.map((x) => [x.indexname, x.indexdef]));
}

async function relationExists(name: string): Promise<boolean> {
    const r = await db.query('SELECT to_regclass($1) IS NOT NULL AS e', [name]);
    return r.rows[0].e === true;
}

async function configRow(name: string): Promise<Record<string, unknown> | undefined> {
    const r = await db.query('SELECT * FROM buckets_config WHERE name = $1', [name]);
    return r.rows[0];
}

/* ---- tests ---- */

describe('createBucket / getBucket', () => {
    test('before any updateBucket, buckets_config has no reindex_active column', async () => {
        const r = await db.query("SELECT 1 FROM information_schema.columns WHERE " +
            "table_name = 'buckets_config' AND column_name = 'reindex_active'");
        assert.equal(r.rows.length, 0);
    });

    test('getBucket returns the raw row: JSON columns as text, reindex_active null', async () => {
        await call(client, 'createBucket', 'rawb', {
            index: { email: { type: 'string', unique: true }, n: { type: 'number' } },
            options: { syncUpdates: true, custom: 'kept' },
        });
        const recs = await rawRpc('getBucket', [{}, 'rawb']);
        assert.equal(recs.length, 1);
        const rec = recs[0] as Record<string, unknown>;
        assert.deepEqual(Object.keys(rec),
            ['name', 'index', 'pre', 'post', 'options', 'mtime', 'reindex_active']);
        assert.equal(rec['name'], 'rawb');
        assert.equal(rec['index'],
            '{"email":{"type":"string","unique":true},"n":{"type":"number"}}');
        assert.equal(rec['pre'], '[]');
        assert.equal(rec['post'], '[]');
        assert.equal(rec['options'], '{"syncUpdates":true,"custom":"kept","version":0}');
        assert.equal(rec['reindex_active'], null);
        assert.match(rec['mtime'] as string, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
        const age = Date.now() - Date.parse(rec['mtime'] as string);
        assert.ok(age >= -5000 && age < 60000, `mtime ${String(rec['mtime'])}`);

        const b = await call(client, 'getBucket', 'rawb');
        assert.equal(b.name, 'rawb');
        assert.deepEqual(b.index,
            { email: { type: 'string', unique: true }, n: { type: 'number' } });
        assert.deepEqual(b.options, { syncUpdates: true, custom: 'kept', version: 0 });
        assert.deepEqual(b.pre, []);
        assert.ok(b.mtime instanceof Date);
        assert.equal(b.reindex_active, undefined);
    });

    test('table layout, sequence default and indexes (storage §3.1, §3.3)', async () => {
        await call(client, 'createBucket', 'layout', {
            index: { str: { type: 'string' }, email: { type: 'string', unique: true },
                tags: { type: '[string]' } },
        });
        assert.deepEqual(await columns('layout'), [
            { name: '_id', type: 'bigint', notnull: false, def: "nextval('layout_serial'::regclass)" },
            { name: '_txn_snap', type: 'integer', notnull: false, def: null },
            { name: '_key', type: 'text', notnull: true, def: null },
            { name: '_value', type: 'text', notnull: true, def: null },
            { name: '_etag', type: 'character(8)', notnull: true, def: null },
            { name: '_mtime', type: 'bigint', notnull: false,
                def: '((EXTRACT(epoch FROM now()) * (1000)::numeric))::bigint' },
            { name: '_vnode', type: 'bigint', notnull: false, def: null },
            { name: 'str', type: 'text', notnull: false, def: null },
            { name: 'email', type: 'text', notnull: false, def: null },
            { name: 'tags', type: 'text[]', notnull: false, def: null },
        ]);
        assert.deepEqual(await indexes('layout'), {
            layout__etag_idx: 'CREATE INDEX layout__etag_idx ON public.layout USING btree (_etag) WHERE (_etag IS NOT NULL)',
            layout__id_idx: 'CREATE INDEX layout__id_idx ON public.layout USING btree (_id) WHERE (_id IS NOT NULL)',
            layout__mtime_idx: 'CREATE INDEX layout__mtime_idx ON public.layout USING btree (_mtime) WHERE (_mtime IS NOT NULL)',
            layout__vnode_idx: 'CREATE INDEX layout__vnode_idx ON public.layout USING btree (_vnode) WHERE (_vnode IS NOT NULL)',
            layout_email_key: 'CREATE UNIQUE INDEX layout_email_key ON public.layout USING btree (email)',
            layout_pkey: 'CREATE UNIQUE INDEX layout_pkey ON public.layout USING btree (_key)',
            layout_str_idx: 'CREATE INDEX layout_str_idx ON public.layout USING btree (str) WHERE (str IS NOT NULL)',
            layout_tags_idx: 'CREATE INDEX layout_tags_idx ON public.layout USING gin (tags) WHERE (tags IS NOT NULL)',
        });
        const con = await db.query("SELECT conname, contype FROM pg_constraint WHERE " +
            "conrelid = 'layout'::regclass ORDER BY conname");
        assert.deepEqual(con.rows, [
            { conname: 'layout_email_key', contype: 'u' },
            { conname: 'layout_pkey', contype: 'p' },
        ]);
        const seq = await db.query("SELECT data_type, start_value, increment FROM " +
            "information_schema.sequences WHERE sequence_name = 'layout_serial'");
        assert.deepEqual(seq.rows, [{ data_type: 'bigint', start_value: '1', increment: '1' }]);
        assert.equal(await relationExists('layout_locking_serial'), false);
    });

    test('every index type gets its PostgreSQL column type and index method', async () => {
        const types: [string, string, string, string][] = [
            /* field, moray type, PG column type, index method */
            ['f_string', 'string', 'text', 'btree'],
            ['f_strings', '[string]', 'text[]', 'gin'],
            ['f_number', 'number', 'numeric', 'btree'],
            ['f_numbers', '[number]', 'numeric[]', 'gin'],
            ['f_numrange', 'numrange', 'numrange', 'gist'],
            ['f_boolean', 'boolean', 'boolean', 'btree'],
            ['f_booleans', '[boolean]', 'boolean[]', 'gin'],
            ['f_date', 'date', 'timestamp with time zone', 'btree'],
            ['f_dates', '[date]', 'timestamp with time zone[]', 'gin'],
            ['f_daterange', 'daterange', 'tstzrange', 'gist'],
            ['f_ip', 'ip', 'inet', 'btree'],
            ['f_ips', '[ip]', 'inet[]', 'gin'],
            ['f_mac', 'mac', 'macaddr', 'btree'],
            ['f_macs', '[mac]', 'macaddr[]', 'gin'],
            ['f_subnet', 'subnet', 'cidr', 'btree'],
            ['f_subnets', '[subnet]', 'cidr[]', 'gin'],
            ['f_uuid', 'uuid', 'uuid', 'btree'],
        ];
        const index = Object.fromEntries(types.map(([f, t]) => [f, { type: t }]));
        await call(client, 'createBucket', 'alltypes', { index });
        const cols = await columns('alltypes');
        const idx = await indexes('alltypes');
        for (const [field, , pgType, method] of types) {
            const c = cols.find((x) => x.name === field);
            assert.equal(c?.type, pgType, field);
            assert.equal(idx[`alltypes_${field}_idx`],
                `CREATE INDEX alltypes_${field}_idx ON public.alltypes USING ${method} ` +
                `(${field}) WHERE (${field} IS NOT NULL)`, field);
        }
        const b = await call(client, 'getBucket', 'alltypes');
        assert.deepEqual(b.index, index);

        /* the same types added by updateBucket, unique ones where PostgreSQL allows it */
        const added = Object.fromEntries(types.map(([f, t]) => [`u${f}`, { type: t }]));
        await call(client, 'updateBucket', 'alltypes', { index: { ...index, ...added } });
        const cols2 = await columns('alltypes');
        const idx2 = await indexes('alltypes');
        for (const [field, , pgType, method] of types) {
            assert.equal(cols2.find((x) => x.name === `u${field}`)?.type, pgType, field);
            assert.equal(idx2[`alltypes_u${field}_idx`],
                `CREATE INDEX alltypes_u${field}_idx ON public.alltypes USING ${method} ` +
                `(u${field}) WHERE (u${field} IS NOT NULL)`, field);
        }
    });

    test('guaranteeOrder creates and seeds <bucket>_locking_serial', async () => {
        await call(client, 'createBucket', 'ordered', { options: { guaranteeOrder: true } });
        assert.deepEqual((await db.query('SELECT id FROM ordered_locking_serial')).rows, [{ id: 1 }]);
        assert.deepEqual(await columns('ordered_locking_serial'),
            [{ name: 'id', type: 'integer', notnull: true, def: null }]);
        const row = await configRow('ordered');
        assert.equal(row?.['options'], '{"guaranteeOrder":true,"version":0}');
        const b = await call(client, 'getBucket', 'ordered');
        assert.deepEqual(b.options, { guaranteeOrder: true, version: 0 });
    });

    test('trigger sources are stored and returned as functions', async () => {
        const pre = function preTrigger(req: any, cb: any) {
            req.value.pre = true;
            cb();
        };
        const post = function postTrigger(_req: any, cb: any) { cb(); };
        await call(client, 'createBucket', 'trig', { pre: [pre], post: [post, post] });
        const row = await configRow('trig');
        assert.equal(row?.['pre'], JSON.stringify([pre.toString()]));
        assert.equal(row?.['post'], JSON.stringify([post.toString(), post.toString()]));
        const b = await call(client, 'getBucket', 'trig');
        assert.equal(b.pre.length, 1);
        assert.equal(typeof b.pre[0], 'function');
        assert.equal(b.pre[0].toString(), pre.toString());
        assert.equal(b.post[1].toString(), post.toString());
        const rec = (await rawRpc('getBucket', [{}, 'trig']))[0] as Record<string, unknown>;
        assert.equal(rec['pre'], JSON.stringify([pre.toString()]));

        /* arrow functions and plain source strings work too */
        await call(client, 'createBucket', 'trig2', {
            pre: ['function (req, cb) { cb(); }', '(req, cb) => cb()'],
        });
        const b2 = await call(client, 'getBucket', 'trig2');
        assert.deepEqual(b2.pre.map(String), ['function (req, cb) { cb(); }', '(req, cb) => cb()']);
    });

    test('BucketConflictError for an existing name; putBucket treats it as done', async () => {
        await call(client, 'createBucket', 'dup', {});
        await rejects(call(client, 'createBucket', 'dup', {}), 'BucketConflictError',
            'dup was likely being concurrently updated');
        await call(client, 'putBucket', 'dup', {});

        /* racing creators: exactly one wins */
        const results = await Promise.allSettled([1, 2, 3].map(() =>
            call(client, 'createBucket', 'race', { index: { a: { type: 'string' } } })));
        assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
        for (const r of results) {
            if (r.status === 'rejected') {
                assert.equal(findCause(r.reason, 'BucketConflictError')?.message,
                    'race was likely being concurrently updated');
            }
        }
        assert.deepEqual((await call(client, 'getBucket', 'race')).index, { a: { type: 'string' } });
    });

    test('getBucket of a missing or malformed name is BucketNotFoundError', async () => {
        await rejects(call(client, 'getBucket', 'nosuch'), 'BucketNotFoundError',
            'nosuch does not exist');
        await rejects(call(client, 'getBucket', '1 bad name;'), 'BucketNotFoundError',
            '1 bad name; does not exist');
        await rejects(call(client, 'getBucket', 'RAWB'), 'BucketNotFoundError',
            'RAWB does not exist');
    });
});

describe('configuration errors (moray-api §5.1)', () => {
    const TYPE_ENUM = 'should be equal to one of the allowed values ("string", "[string]", ' +
        '"number", "[number]", "numrange", "boolean", "[boolean]", "date", "[date]", ' +
        '"daterange", "ip", "[ip]", "mac", "[mac]", "subnet", "[subnet]", "uuid")';
    const CFG = 'InvalidBucketConfigError';
    const NOTFN = 'NotFunctionError';
    const NAME = 'InvalidBucketNameError';
    const long = 'a'.repeat(64);
    const cases: [string, string, object, string, string][] = [
        ['bad type', 'cfgb', { index: { a: { type: 'bogus' } } }, CFG, `bucket.index['a'].type ${TYPE_ENUM}`],
        ['extra key', 'cfgb', { index: { a: { type: 'string', x: 1 } } }, CFG,
            "bucket.index['a'] should NOT have additional properties"],
        ['missing type', 'cfgb', { index: { a: { unique: true } } }, CFG,
            "bucket.index['a'] should have required property 'type'"],
        ['unique not boolean', 'cfgb', { index: { a: { type: 'string', unique: 'yes' } } }, CFG,
            "bucket.index['a'].unique should be boolean"],
        ['negative version', 'cfgb', { options: { version: -1 } }, CFG,
            'bucket.options.version should be >= 0'],
        ['fractional version', 'cfgb', { options: { version: 1.5 } }, CFG,
            'bucket.options.version should be integer'],
        ['guaranteeOrder not boolean', 'cfgb', { options: { guaranteeOrder: 1 } }, CFG,
            'bucket.options.guaranteeOrder should be boolean'],
        ['index not object', 'cfgb', { index: [] }, CFG, 'bucket.index should be object'],
        ['trackModification', 'cfgb', { options: { trackModification: false } }, CFG,
            '"trackModification" is no longer supported'],
        ['trigger does not compile', 'cfgb', { pre: ['function ( {'] }, NOTFN,
            'trigger not function must be [Function]'],
        ['trigger compile beats bad name', '9bad', { post: ['}}'] }, NOTFN,
            'trigger not function must be [Function]'],
        ['name starts with digit', '9bad', {}, NAME, '9bad is not a valid bucket name'],
        ['name with dash', 'a-b', {}, NAME, 'a-b is not a valid bucket name'],
        ['name too long', long, {}, NAME, `${long} is not a valid bucket name`],
        ['reserved buckets_config', 'buckets_config', {}, NAME,
            'buckets_config is not a valid bucket name'],
        ['reserved moray', 'moray', {}, NAME, 'moray is not a valid bucket name'],
        ['reserved search', 'search', {}, NAME, 'search is not a valid bucket name'],
        ['post not a function', 'cfgb', { post: ['42'] }, NOTFN, 'post must be [Function]'],
        ['pre not a function', 'cfgb', { pre: ['"str"'] }, NOTFN, 'pre must be [Function]'],
        ['post checked before pre', 'cfgb', { pre: ['1'], post: ['2'] }, NOTFN,
            'post must be [Function]'],
        ['index name with dash', 'cfgb', { index: { 'a-b': { type: 'string' } } }, CFG,
            'invalid index name "a-b"'],
        ['index name ends with _', 'cfgb', { index: { a_: { type: 'string' } } }, CFG,
            'invalid index name "a_"'],
        ['index name _a_b', 'cfgb', { index: { _a_b: { type: 'string' } } }, CFG,
            'invalid index name "_a_b"'],
        ['reserved index name', 'cfgb', { index: { _ID: { type: 'string' } } }, CFG,
            'index name "_ID" is reserved for use by Moray'],
        ['reserved _rver', 'cfgb', { index: { _rver: { type: 'number' } } }, CFG,
            'index name "_rver" is reserved for use by Moray'],
        ['moray prefix', 'cfgb', { index: { MorayThing: { type: 'string' } } }, CFG,
            'index names cannot start with "moray": "MorayThing"'],
        ['_moray prefix', 'cfgb', { index: { __moray: { type: 'string' } } }, CFG,
            'invalid index name "__moray"'],
        ['_moray prefix (valid syntax)', 'cfgb', { index: { _moray1: { type: 'string' } } }, CFG,
            'index names cannot start with "moray": "_moray1"'],
    ];
    for (const [what, name, cfg, errName, message] of cases) {
        test(`createBucket: ${what}`, async () => {
            await rejects(call(client, 'createBucket', name, cfg), errName, message);
        });
    }

    test('nothing was created by the failed calls', async () => {
        assert.equal(await configRow('cfgb'), undefined);
        assert.equal(await relationExists('cfgb'), false);
        assert.equal(await relationExists('cfgb_serial'), false);
    });

    test('updateBucket validates the same way, before looking the bucket up', async () => {
        await rejects(call(client, 'updateBucket', 'nosuch', { index: { a: { type: 'x' } } }),
            CFG, `bucket.index['a'].type ${TYPE_ENUM}`);
        await rejects(call(client, 'updateBucket', 'moray', {}), NAME,
            'moray is not a valid bucket name');
        await rejects(call(client, 'updateBucket', 'nosuch', { post: [1] }), NOTFN,
            'post must be [Function]');
        await rejects(call(client, 'updateBucket', 'nosuch', { options: { trackModification: true } }),
            CFG, '"trackModification" is no longer supported');
        await rejects(call(client, 'updateBucket', 'nosuch', {}), 'BucketNotFoundError',
            'nosuch does not exist');
    });

    test('index names differing only by case collide in the table', async () => {
        await rejects(call(client, 'createBucket', 'casecol',
            { index: { Foo: { type: 'string' }, foo: { type: 'string' } } }),
        'InternalError', 'Invalid SQL: column "foo" specified more than once');
        assert.equal(await configRow('casecol'), undefined);
    });
});

describe('updateBucket', () => {
    test('reindex_active column is added lazily, and getBucket keeps working', async () => {
        await call(client, 'createBucket', 'lazy', { index: { a: { type: 'string' } } });
        /* prepare getBucket's statement on every pooled connection first */
        await Promise.all(Array.from({ length: 8 }, () => call(client, 'getBucket', 'lazy')));
        await call(client, 'updateBucket', 'lazy', { index: { a: { type: 'string' } } });
        const r = await db.query("SELECT data_type FROM information_schema.columns WHERE " +
            "table_name = 'buckets_config' AND column_name = 'reindex_active'");
        assert.deepEqual(r.rows, [{ data_type: 'text' }]);
        const all = await Promise.all(Array.from({ length: 8 }, () =>
            call(client, 'getBucket', 'lazy')));
        for (const b of all) {
            assert.equal(b.name, 'lazy');
        }
        const listed = await call(client, 'listBuckets');
        assert.ok(listed.some((b: any) => b.name === 'lazy'));
        /* unversioned: no reindex bookkeeping, no _rver */
        assert.equal((await configRow('lazy'))?.['reindex_active'], null);
        assert.equal((await columns('lazy')).some((c) => c.name === '_rver'), false);
    });

    test('version gate: BucketVersionError with the stored and requested versions', async () => {
        await call(client, 'createBucket', 'vers', { options: { version: 1 } });
        await rejects(call(client, 'updateBucket', 'vers', { options: { version: 1 } }),
            'BucketVersionError', 'vers has a newer version than 1 (1)');
        await rejects(call(client, 'updateBucket', 'vers', {}),
            'BucketVersionError', 'vers has a newer version than 0 (1)');
        await call(client, 'updateBucket', 'vers', { options: { version: 2 } });
        await rejects(call(client, 'updateBucket', 'vers', { options: { version: 1 } }),
            'BucketVersionError', 'vers has a newer version than 1 (2)');
        await rejects(call(client, 'updateBucket', 'vers', { options: { version: 2 } }),
            'BucketVersionError', 'vers has a newer version than 2 (2)');
        /* putBucket with the stored version is a client-side no-op */
        await call(client, 'putBucket', 'vers', { options: { version: 2 } });
        await rejects(call(client, 'putBucket', 'vers', { options: { version: 1 } }),
            'BucketVersionError', 'vers has a newer version than 1 (2)');

        /* a stored version of 0 never blocks */
        await call(client, 'createBucket', 'vers0', {});
        await call(client, 'updateBucket', 'vers0', {});
        await call(client, 'updateBucket', 'vers0', { options: { version: 0 } });
        await call(client, 'updateBucket', 'vers0', { options: { version: 5 } });
        assert.equal((await call(client, 'getBucket', 'vers0')).options.version, 5);
    });

    test('versioned update records added fields in reindex_active and adds _rver', async () => {
        await call(client, 'createBucket', 'reidx', {
            index: { a: { type: 'string' } }, options: { version: 1 },
        });
        const mtime = (await configRow('reidx'))?.['mtime'] as Date;
        await call(client, 'updateBucket', 'reidx', {
            index: { a: { type: 'string' }, newfield: { type: 'number' } },
            options: { version: 2 },
        });
        const rec = (await rawRpc('getBucket', [{}, 'reidx']))[0] as Record<string, unknown>;
        assert.equal(rec['reindex_active'], '{"2":["newfield"]}');
        assert.equal(rec['options'], '{"version":2}');
        const b = await call(client, 'getBucket', 'reidx');
        assert.deepEqual(b.reindex_active, { 2: ['newfield'] });
        assert.deepEqual(b.index, { a: { type: 'string' }, newfield: { type: 'number' } });
        assert.equal(b.mtime.getTime(), mtime.getTime(), 'mtime is not changed');

        const cols = await columns('reidx');
        assert.deepEqual(cols.filter((c) => c.name === '_rver' || c.name === 'newfield')
            .map((c) => [c.name, c.type]), [['_rver', 'integer'], ['newfield', 'numeric']]);
        const idx = await indexes('reidx');
        assert.equal(idx['reidx__rver_idx'],
            'CREATE INDEX reidx__rver_idx ON public.reidx USING btree (_rver) WHERE (_rver IS NOT NULL)');
        assert.equal(idx['reidx_newfield_idx'],
            'CREATE INDEX reidx_newfield_idx ON public.reidx USING btree (newfield) WHERE (newfield IS NOT NULL)');

        /* a versioned update that adds nothing still writes an entry */
        await call(client, 'updateBucket', 'reidx', {
            index: { a: { type: 'string' }, newfield: { type: 'number' } },
            options: { version: 3 },
        });
        assert.deepEqual((await call(client, 'getBucket', 'reidx')).reindex_active,
            { 2: ['newfield'], 3: [] });

        /* no_reindex: column and index, but no bookkeeping */
        await call(client, 'updateBucket', 'reidx', {
            index: { a: { type: 'string' }, newfield: { type: 'number' }, quiet: { type: 'string' } },
            options: { version: 4 },
        }, { no_reindex: true });
        const b4 = await call(client, 'getBucket', 'reidx');
        assert.deepEqual(b4.reindex_active, { 2: ['newfield'], 3: [] });
        assert.equal(b4.options.version, 4);
        assert.ok((await columns('reidx')).some((c) => c.name === 'quiet'));
        assert.ok((await indexes('reidx'))['reidx_quiet_idx']);

        /* an existing entry for the same version is merged with the new fields */
        await db.query('UPDATE buckets_config SET reindex_active = $1 WHERE name = $2',
            ['{"5":["x"]}', 'reidx']);
        await call(client, 'updateBucket', 'reidx', {
            index: { a: { type: 'string' }, newfield: { type: 'number' },
                quiet: { type: 'string' }, y: { type: 'string' } },
            options: { version: 5 },
        });
        assert.deepEqual((await call(client, 'getBucket', 'reidx')).reindex_active,
            { 5: ['x', 'y'] });
        /* the _rver column and index are only created once */
        assert.equal((await columns('reidx')).filter((c) => c.name === '_rver').length, 1);
    });

    test('removed fields drop their columns; changed definitions change only the config', async () => {
        await call(client, 'createBucket', 'drops', {
            index: { keep: { type: 'string' }, gone: { type: '[number]' },
                retyped: { type: 'string' } },
        });
        await call(client, 'updateBucket', 'drops', {
            index: { keep: { type: 'string' }, retyped: { type: 'number', unique: true } },
        });
        const cols = await columns('drops');
        assert.equal(cols.some((c) => c.name === 'gone'), false);
        assert.equal(cols.find((c) => c.name === 'retyped')?.type, 'text');
        const idx = await indexes('drops');
        assert.equal(idx['drops_gone_idx'], undefined);
        assert.equal(idx['drops_retyped_idx'],
            'CREATE INDEX drops_retyped_idx ON public.drops USING btree (retyped) WHERE (retyped IS NOT NULL)');
        assert.deepEqual((await call(client, 'getBucket', 'drops')).index,
            { keep: { type: 'string' }, retyped: { type: 'number', unique: true } });
    });

    test('unique fields added later get a partial UNIQUE INDEX, not a constraint', async () => {
        await call(client, 'createBucket', 'uadd', { index: { a: { type: 'string' } } });
        await call(client, 'updateBucket', 'uadd', {
            index: { a: { type: 'string' }, email: { type: 'string', unique: true },
                n: { type: 'number' } },
        });
        const idx = await indexes('uadd');
        assert.equal(idx['uadd_email_idx'],
            'CREATE UNIQUE INDEX uadd_email_idx ON public.uadd USING btree (email) WHERE (email IS NOT NULL)');
        assert.equal(idx['uadd_n_idx'],
            'CREATE INDEX uadd_n_idx ON public.uadd USING btree (n) WHERE (n IS NOT NULL)');
        const con = await db.query("SELECT conname FROM pg_constraint WHERE " +
            "conrelid = 'uadd'::regclass AND contype = 'u'");
        assert.deepEqual(con.rows, []);
        /* the index enforces uniqueness of non-null values only */
        await db.query("INSERT INTO uadd (_key, _value, _etag, email) VALUES " +
            "('k1', '{}', 'x', NULL), ('k2', '{}', 'x', NULL), ('k3', '{}', 'x', 'e')");
        await assert.rejects(db.query("INSERT INTO uadd (_key, _value, _etag, email) " +
            "VALUES ('k4', '{}', 'x', 'e')"), /uadd_email_idx/);
    });

    test('triggers can be added and replaced', async () => {
        await call(client, 'createBucket', 'trigup', {});
        const fn = function (_req: any, cb: any) { cb(); };
        await call(client, 'updateBucket', 'trigup', { post: [fn] });
        assert.equal((await call(client, 'getBucket', 'trigup')).post[0].toString(), fn.toString());
        await call(client, 'updateBucket', 'trigup', {});
        assert.deepEqual((await call(client, 'getBucket', 'trigup')).post, []);
    });

    test('concurrent updates of one bucket serialise', async () => {
        await call(client, 'createBucket', 'conc', { index: { a: { type: 'string' } } });
        const cfg = { index: { a: { type: 'string' }, b: { type: 'number' } } };
        await Promise.all([1, 2, 3].map(() => call(client, 'updateBucket', 'conc', cfg)));
        assert.deepEqual((await columns('conc')).filter((c) => c.name === 'b').length, 1);
    });
});

describe('names: case and keywords', () => {
    test('mixed-case bucket and field names fold to lower-case relations', async () => {
        await call(client, 'createBucket', 'MixedCase', {
            index: { camelCol: { type: 'string' }, Uniq: { type: 'number', unique: true } },
            options: { version: 1, guaranteeOrder: true },
        });
        assert.deepEqual((await columns('mixedcase')).slice(7).map((c) => c.name),
            ['camelcol', 'uniq']);
        assert.ok(await relationExists('mixedcase_serial'));
        assert.ok(await relationExists('mixedcase_locking_serial'));
        assert.ok((await indexes('mixedcase'))['mixedcase_camelcol_idx']);
        const b = await call(client, 'getBucket', 'MixedCase');
        assert.equal(b.name, 'MixedCase');
        assert.deepEqual(Object.keys(b.index), ['camelCol', 'Uniq']);
        await rejects(call(client, 'getBucket', 'mixedcase'), 'BucketNotFoundError',
            'mixedcase does not exist');

        /* versioned updates twice (the reference failed the second one) */
        await call(client, 'updateBucket', 'MixedCase', {
            index: { camelCol: { type: 'string' }, Uniq: { type: 'number', unique: true },
                NewOne: { type: 'string' } },
            options: { version: 2 },
        });
        await call(client, 'updateBucket', 'MixedCase', {
            index: { camelCol: { type: 'string' }, Uniq: { type: 'number', unique: true },
                NewOne: { type: 'string' }, Other: { type: 'string', unique: true } },
            options: { version: 3 },
        });
        assert.deepEqual((await call(client, 'getBucket', 'MixedCase')).reindex_active,
            { 2: ['NewOne'], 3: ['Other'] });
        const idx = await indexes('mixedcase');
        assert.ok(idx['mixedcase__rver_idx']);
        assert.ok(idx['mixedcase_newone_idx']);
        assert.match(idx['mixedcase_other_idx'] ?? '', /^CREATE UNIQUE INDEX/);

        /* a name equal up to case collides at table level: raw database error */
        await rejects(call(client, 'createBucket', 'mixedCASE', {}), 'error',
            'relation "mixedcase_serial" already exists');
        assert.equal(await configRow('mixedCASE'), undefined);

        await call(client, 'delBucket', 'MixedCase');
        assert.equal(await relationExists('mixedcase'), false);
        assert.equal(await relationExists('mixedcase_serial'), false);
        assert.equal(await relationExists('mixedcase_locking_serial'), false);
    });

    test('SQL keywords as bucket and field names are quoted', async () => {
        await call(client, 'createBucket', 'select', {
            index: { order: { type: 'string' }, user: { type: 'number', unique: true },
                from: { type: '[string]' } },
            options: { guaranteeOrder: true },
        });
        assert.deepEqual((await columns('"select"')).slice(7).map((c) => [c.name, c.type]),
            [['order', 'text'], ['user', 'numeric'], ['from', 'text[]']]);
        assert.deepEqual((await columns('"select"'))[0]!.def, "nextval('select_serial'::regclass)");
        const idx = await indexes('select');
        assert.equal(idx['select_order_idx'],
            'CREATE INDEX select_order_idx ON public."select" USING btree ("order") WHERE ("order" IS NOT NULL)');
        await call(client, 'updateBucket', 'select', {
            index: { order: { type: 'string' }, user: { type: 'number', unique: true },
                table: { type: 'string', unique: true } },
            options: { version: 1 },
        });
        assert.deepEqual((await columns('"select"')).slice(7).map((c) => c.name),
            ['order', 'user', '_rver', 'table']);
        await call(client, 'delBucket', 'select');
        assert.equal(await relationExists('"select"'), false);
        assert.equal(await relationExists('select_serial'), false);
        assert.equal(await relationExists('select_locking_serial'), false);
    });

    test('long names: derived names are truncated as PostgreSQL does', async () => {
        /* 56 characters: <name>_serial still fits in 63 bytes; index names are cut */
        const name = 'B' + 'x'.repeat(55);
        await call(client, 'createBucket', name, { index: { f: { type: 'string' } } });
        await call(client, 'updateBucket', name, {
            index: { f: { type: 'string' }, g: { type: 'string' } }, options: { version: 1 },
        });
        await call(client, 'updateBucket', name, {
            index: { f: { type: 'string' }, g: { type: 'string' } }, options: { version: 2 },
        });
        const lc = name.toLowerCase();
        assert.deepEqual(Object.keys(await indexes(lc)), [
            '__etag_idx', '__id_idx', '__mtime_idx', '__rver_idx', '__vnode_idx', '_f_idx',
            '_g_idx', '_pkey',
        ].map((suffix) => (lc + suffix).slice(0, 63)));
        assert.equal((await call(client, 'getBucket', name)).name, name);
        await call(client, 'delBucket', name);
        assert.equal(await relationExists(lc), false);
        assert.equal(await relationExists(`${lc}_serial`), false);

        /* 63 characters: <name>_serial is cut back to <name> (as in the reference) */
        const full = 'C' + 'y'.repeat(62);
        await rejects(call(client, 'createBucket', full, {}), 'error',
            `relation "${full.toLowerCase()}" already exists`);
        assert.equal(await configRow(full), undefined);
        assert.equal(await relationExists(full.toLowerCase()), false);
    });
});

describe('listBuckets / delBucket', () => {
    test('listBuckets returns every bucket as a raw row', async () => {
        const recs = await rawRpc('listBuckets', [{}]) as Record<string, unknown>[];
        const names = recs.map((r) => r['name']);
        for (const n of ['rawb', 'layout', 'ordered', 'trig', 'reidx']) {
            assert.ok(names.includes(n), n);
        }
        for (const r of recs) {
            assert.deepEqual(Object.keys(r),
                ['name', 'index', 'pre', 'post', 'options', 'mtime', 'reindex_active']);
            for (const k of ['index', 'pre', 'post', 'options']) {
                assert.equal(typeof r[k], 'string');
            }
        }
        assert.equal(recs.find((r) => r['name'] === 'reidx')?.['reindex_active'],
            '{"5":["x","y"]}');
        const parsed = await call(client, 'listBuckets');
        assert.equal(parsed.length, recs.length);
        assert.deepEqual(parsed.find((b: any) => b.name === 'rawb').index,
            { email: { type: 'string', unique: true }, n: { type: 'number' } });
    });

    test('delBucket removes config, table, sequence and locking table', async () => {
        await call(client, 'createBucket', 'gone', {
            index: { a: { type: 'string' } }, options: { guaranteeOrder: true },
        });
        await db.query("INSERT INTO gone (_key, _value, _etag, a) VALUES ('k', '{}', 'x', 'v')");
        await call(client, 'delBucket', 'gone');
        assert.equal(await configRow('gone'), undefined);
        assert.equal(await relationExists('gone'), false);
        assert.equal(await relationExists('gone_serial'), false);
        assert.equal(await relationExists('gone_locking_serial'), false);
        await rejects(call(client, 'getBucket', 'gone'), 'BucketNotFoundError', 'gone does not exist');
        await rejects(call(client, 'delBucket', 'gone'), 'BucketNotFoundError', 'gone does not exist');
        /* the name can be reused */
        await call(client, 'createBucket', 'gone', {});
        await call(client, 'delBucket', 'gone');
    });

    test('delBucket: reserved names are invalid, other bad names are not found', async () => {
        for (const n of ['buckets_config', 'moray', 'search']) {
            await rejects(call(client, 'delBucket', n), 'InvalidBucketNameError',
                `${n} is not a valid bucket name`);
        }
        await rejects(call(client, 'delBucket', 'Moray'), 'BucketNotFoundError',
            'Moray does not exist');
        await rejects(call(client, 'delBucket', '1; DROP TABLE x'), 'BucketNotFoundError',
            '1; DROP TABLE x does not exist');
        assert.ok(await relationExists('buckets_config'));
    });

    test('a config row without its table fails delBucket and keeps the row', async () => {
        await call(client, 'createBucket', 'orphan', {});
        await db.query('DROP TABLE orphan');
        await rejects(call(client, 'delBucket', 'orphan'), 'error', 'table "orphan" does not exist');
        assert.ok(await configRow('orphan'));
        await db.query('DELETE FROM buckets_config WHERE name = $1', ['orphan']);
        await db.query('DROP SEQUENCE orphan_serial');
    });
});

describe('CLI tools (moray-api §16)', () => {
    test('putbucket -i/-u/-x creates, getbucket prints the parsed config', async () => {
        let r = await runCli('putbucket', ['-i', 'name', '-i', 'n:number', '-u', 'email',
            '-x', '2', 'clib'], srv.port);
        assert.deepEqual([r.code, r.stdout, r.stderr], [0, '', '']);
        r = await runCli('getbucket', ['clib'], srv.port);
        assert.equal(r.code, 0, r.stderr);
        const out = JSON.parse(r.stdout);
        assert.equal(r.stdout, JSON.stringify(out, null, 2) + '\n');
        assert.deepEqual(Object.keys(out), ['name', 'index', 'pre', 'post', 'options', 'mtime']);
        assert.deepEqual(out.index, {
            name: { type: 'string', unique: false },
            n: { type: 'number', unique: false },
            email: { type: 'string', unique: true },
        });
        assert.deepEqual(out.options, { version: 2 });
        assert.deepEqual([out.pre, out.post], [[], []]);
        assert.match(out.mtime, /Z$/);
        assert.ok((await indexes('clib'))['clib_email_key']);
    });

    test('putbucket -x: equal version is a no-op, older fails, newer updates', async () => {
        let r = await runCli('putbucket', ['-i', 'name', '-x', '2', 'clib'], srv.port);
        assert.equal(r.code, 0, r.stderr);
        assert.ok(Object.hasOwn((await call(client, 'getBucket', 'clib')).index, 'email'));

        r = await runCli('putbucket', ['-i', 'name', '-x', '1', 'clib'], srv.port);
        assert.equal(r.code, 1);
        assert.match(r.stderr, /^putbucket: .*clib has a newer version than 1 \(2\)\n$/);

        r = await runCli('putbucket', ['-i', 'name', '-i', 'extra:[ip]', '-x', '3', 'clib'], srv.port);
        assert.equal(r.code, 0, r.stderr);
        r = await runCli('getbucket', ['clib'], srv.port);
        const out = JSON.parse(r.stdout);
        assert.deepEqual(out.index,
            { name: { type: 'string', unique: false }, extra: { type: '[ip]', unique: false } });
        assert.deepEqual(out.reindex_active, { 3: ['extra'] });
        assert.equal((await columns('clib')).some((c) => c.name === 'email'), false);
    });

    test('putbucket -s reads the whole config from stdin', async () => {
        const cfg = {
            index: { k: { type: 'uuid' } },
            post: ['function post(req, cb) { cb(); }'],
            options: { version: 1, custom: 'x' },
        };
        let r = await runCli('putbucket', ['-s', '-i', 'ignored', 'clis'], srv.port,
            JSON.stringify(cfg));
        assert.equal(r.code, 0, r.stderr);
        r = await runCli('getbucket', ['clis'], srv.port);
        const out = JSON.parse(r.stdout);
        assert.deepEqual(out.index, cfg.index);
        assert.deepEqual(out.post, cfg.post);
        assert.deepEqual(out.options, { version: 1, custom: 'x' });
    });

    test('putbucket failures: -t, bad type, bad name', async () => {
        let r = await runCli('putbucket', ['-t', 'clit'], srv.port);
        assert.equal(r.code, 1);
        assert.match(r.stderr, /^putbucket: .*"trackModification" is no longer supported\n$/);
        r = await runCli('putbucket', ['-i', 'a:text', 'clit'], srv.port);
        assert.equal(r.code, 1);
        assert.match(r.stderr, /bucket\.index\['a'\]\.type should be equal to one of the allowed values/);
        r = await runCli('putbucket', ['1clit'], srv.port);
        assert.equal(r.code, 1);
        assert.match(r.stderr, /^putbucket: .*1clit is not a valid bucket name\n$/);
        r = await runCli('putbucket', ['-x', 'abc', 'clit'], srv.port);
        assert.equal(r.code, 2);
        assert.match(r.stderr, /unsupported value for -x: "abc"/);
    });

    test('listbuckets prints a JSON array; delbucket deletes', async () => {
        let r = await runCli('listbuckets', [], srv.port);
        assert.equal(r.code, 0, r.stderr);
        const list = JSON.parse(r.stdout) as { name: string }[];
        assert.ok(Array.isArray(list));
        assert.equal(r.stdout, JSON.stringify(list, null, 2) + '\n');
        assert.ok(list.some((b) => b.name === 'clib'));
        assert.ok(list.some((b) => b.name === 'clis'));

        r = await runCli('delbucket', ['clib'], srv.port);
        assert.deepEqual([r.code, r.stdout, r.stderr], [0, '', '']);
        r = await runCli('delbucket', ['clib'], srv.port);
        assert.equal(r.code, 1);
        assert.match(r.stderr, /^delbucket: .*clib does not exist\n$/);
        r = await runCli('getbucket', ['clib'], srv.port);
        assert.equal(r.code, 1);
        assert.match(r.stderr, /^getbucket: .*clib does not exist\n$/);
        r = await runCli('delbucket', ['moray'], srv.port);
        assert.equal(r.code, 1);
        assert.match(r.stderr, /moray is not a valid bucket name/);
    });

    test('usage errors exit 2', async () => {
        for (const tool of ['getbucket', 'delbucket', 'putbucket']) {
            const r = await runCli(tool, [], srv.port);
            assert.equal(r.code, 2, tool);
            assert.match(r.stderr, new RegExp(`^${tool}: missing required argument: "bucket"\\n` +
                'usage: ', 'm'), tool);
        }
    });
});

describe('features.triggers = false, on a fresh database', () => {
    let db2: TestDatabase;
    let srv2: ServerProcess;
    let c2: MorayClient;

    before(async () => {
        db2 = await testDatabase('buckets_notrig');
        srv2 = await startServer({ config: standaloneConfig(db2, { features: { triggers: false } }) });
        c2 = await morayClient(srv2.port);
    });

    after(async () => {
        c2?.close();
        await srv2?.stop();
        await db2?.drop();
    });

    test('no buckets: listBuckets is empty', async () => {
        assert.deepEqual(await call(c2, 'listBuckets'), []);
    });

    test('buckets with triggers are refused; others work', async () => {
        const msg = 'triggers are disabled on this server (features.triggers)';
        await rejects(call(c2, 'createBucket', 'nt', { pre: [function (_r: any, cb: any) { cb(); }] }),
            'InvalidBucketConfigError', msg);
        await rejects(call(c2, 'createBucket', 'nt', { post: ['function (r, cb) { cb(); }'] }),
            'InvalidBucketConfigError', msg);
        /* the §5.1 checks still come first */
        await rejects(call(c2, 'createBucket', 'nt', { post: ['42'] }), 'NotFunctionError',
            'post must be [Function]');
        await call(c2, 'createBucket', 'nt', { index: { a: { type: 'string' } } });
        await rejects(call(c2, 'updateBucket', 'nt', { post: ['function (r, cb) { cb(); }'] }),
            'InvalidBucketConfigError', msg);
        await call(c2, 'updateBucket', 'nt', { pre: [], index: {} });
        assert.equal((await columns2('nt')).some((c) => c === 'a'), false);
    });

    test('first-ever updates (adding reindex_active) racing on two buckets all succeed', async () => {
        await call(c2, 'createBucket', 'r1', {});
        await call(c2, 'createBucket', 'r2', {});
        await db2.query('ALTER TABLE buckets_config DROP COLUMN IF EXISTS reindex_active');
        await Promise.all(['r1', 'r2'].flatMap((b) => [1, 2].map((v) =>
            call(c2, 'updateBucket', b, { index: { ['f' + v]: { type: 'string' } } }))));
        const r = await db2.query("SELECT count(*)::int AS n FROM information_schema.columns " +
            "WHERE table_name = 'buckets_config' AND column_name = 'reindex_active'");
        assert.equal(r.rows[0].n, 1);
        for (const b of ['r1', 'r2']) {
            assert.equal(Object.keys((await call(c2, 'getBucket', b)).index).length, 1);
        }
    });

    async function columns2(table: string): Promise<string[]> {
        const r = await db2.query('SELECT attname FROM pg_attribute WHERE attrelid = ' +
            'to_regclass($1) AND attnum > 0 AND NOT attisdropped', [table]);
        return r.rows.map((x) => x.attname as string);
    }
});

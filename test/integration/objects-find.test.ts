/*
 * findObjects options through the npm `moray` client (moray-api.md §3,
 * §4.2, §7.9, §10.8-§10.10; storage.md §6.4, §11.4): limit (default 1000,
 * numeric 0, "0"), offset, noLimit, sort (object and array, asc/desc,
 * missing values, internal columns, bad attributes), _count semantics,
 * no_count, sql_only, requireIndexes / requireOnlineReindexing with the
 * _handledOptions record, and options.timeout.
 */

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { morayClient, standaloneConfig, startServer } from '../helpers/harness';
import {
    createBucket, find, findKeys, findKeySet, get, objectsFixture, put, rawClient, rejects,
} from './objects-shared';

const fx = objectsFixture('objfind');

let ready: Promise<void> | null = null;
/*
 * Bucket `big`: 1100 rows written with SQL (n = 1..1100).
 * Bucket `f`: twelve objects through putObject:
 *   k00..k09  n = 0..9, s = 'a'|'b'|'c' (i % 3), t = ['x'] for even i
 *   k10       no n, s = 'a'
 *   k11       n = 5, no s, other = 'zz'
 */
function setup(): Promise<void> {
    if (ready === null) {
        ready = (async () => {
            await createBucket(fx.c, 'big', { index: { n: { type: 'number' } } });
            await fx.db.query("INSERT INTO big (_key, _value, _etag, _mtime, n) SELECT " +
                "'b' || lpad(i::text, 4, '0'), '{\"n\":' || i || '}', 'ABCDEF01', 1, i " +
                'FROM generate_series(1, 1100) AS i');
            await createBucket(fx.c, 'f', { index: {
                n: { type: 'number' }, s: { type: 'string' }, t: { type: '[string]' },
            } });
            for (let i = 0; i < 10; i++) {
                const v: Record<string, unknown> = { n: i, s: 'abc'[i % 3] };
                if (i % 2 === 0) {
                    v['t'] = ['x'];
                }
                await put(fx.c, 'f', `k0${i}`, v);
            }
            await put(fx.c, 'f', 'k10', { s: 'a' });
            await put(fx.c, 'f', 'k11', { n: 5, other: 'zz' });
        })();
    }
    return ready;
}

const ALL_F = ['k00', 'k01', 'k02', 'k03', 'k04', 'k05', 'k06', 'k07', 'k08', 'k09', 'k10', 'k11'];

describe('limit, offset, noLimit', () => {
    test('default limit is 1000; _count is the total', async () => {
        await setup();
        const r = await find(fx.c, 'big', '(n>=1)');
        assert.equal(r.length, 1000);
        assert.ok(r.every((x) => x._count === 1100));
    });

    test('numeric limit 0 means the default; the string "0" means LIMIT 0', async () => {
        await setup();
        assert.equal((await find(fx.c, 'big', '(n>=1)', { limit: 0 })).length, 1000);
        assert.equal((await find(fx.c, 'big', '(n>=1)', { limit: '0' })).length, 0);
    });

    test('noLimit removes the limit; an explicit limit still applies', async () => {
        await setup();
        assert.equal((await find(fx.c, 'big', '(n>=1)', { noLimit: true })).length, 1100);
        assert.equal((await find(fx.c, 'big', '(n>=1)', { noLimit: true, limit: 0 })).length,
            1100);
        assert.equal((await find(fx.c, 'big', '(n>=1)', { noLimit: true, limit: 10 })).length, 10);
    });

    test('limit and offset as numbers and digit strings; _count ignores both', async () => {
        await setup();
        const sort = { attribute: 'n', order: 'ASC' };
        let r = await find(fx.c, 'big', '(n>=1)', { limit: 5, sort });
        assert.deepEqual(r.map((x) => x.value.n), [1, 2, 3, 4, 5]);
        assert.ok(r.every((x) => x._count === 1100));
        r = await find(fx.c, 'big', '(n>=1)', { limit: '3', offset: '10', sort });
        assert.deepEqual(r.map((x) => x.value.n), [11, 12, 13]);
        assert.ok(r.every((x) => x._count === 1100));
        r = await find(fx.c, 'big', '(n>=1)', { offset: 1098, sort });
        assert.deepEqual(r.map((x) => x.value.n), [1099, 1100]);
        assert.equal(r[0]._count, 1100);
        r = await find(fx.c, 'big', '(n>=1)', { offset: 0, limit: 2, sort });
        assert.deepEqual(r.map((x) => x.value.n), [1, 2]);
        /* offset past the end: nothing (and so no _count) */
        assert.deepEqual(await find(fx.c, 'big', '(n>=1)', { offset: 5000 }), []);
    });

    test('limit/offset of the wrong type: InvocationError', async () => {
        await setup();
        await rejects(find(fx.c, 'big', '(n>=1)', { limit: 'ten' }), {
            name: 'InvocationError',
            message: 'findObjects expects "options" (args[2]) to be a valid options object: ' +
                'options.limit should match pattern "^[0-9]+$"',
        });
        await rejects(find(fx.c, 'big', '(n>=1)', { offset: -1 }),
            { name: 'InvocationError', message: /options\.offset/ });
    });
});

describe('sort', () => {
    test('object form, ASC/asc/DESC/desc, default ascending', async () => {
        await setup();
        const f = '(n>=2)';
        const asc = ['k02', 'k03', 'k04', 'k05', 'k06', 'k07', 'k08', 'k09'];
        assert.deepEqual((await findKeys(fx.c, 'f', '(&(n>=2)(n<=9)(s=*))',
            { sort: { attribute: 'n', order: 'ASC' } })), asc);
        assert.deepEqual(await findKeys(fx.c, 'f', '(&(n>=2)(n<=9)(s=*))',
            { sort: { attribute: 'n', order: 'asc' } }), asc);
        assert.deepEqual(await findKeys(fx.c, 'f', '(&(n>=2)(n<=9)(s=*))',
            { sort: { attribute: 'n' } }), asc);
        assert.deepEqual(await findKeys(fx.c, 'f', '(&(n>=2)(n<=9)(s=*))',
            { sort: { attribute: 'n', order: 'desc' } }), [...asc].reverse());
        const desc = await find(fx.c, 'f', f, { sort: { attribute: 'n', order: 'DESC' }, limit: 2 });
        assert.deepEqual(desc.map((r) => r.value.n), [9, 8]);
        assert.equal(desc[0]._count, 9);
    });

    test('array form: successive keys', async () => {
        await setup();
        const r = await find(fx.c, 'f', '(s=*)',
            { sort: [{ attribute: 's', order: 'ASC' }, { attribute: 'n', order: 'DESC' }] });
        assert.deepEqual(r.map((x) => x.key),
            ['k10', 'k09', 'k06', 'k03', 'k00', 'k07', 'k04', 'k01', 'k08', 'k05', 'k02']);
        /* an item without attribute is ignored */
        const r2 = await findKeys(fx.c, 'f', '(s=b)',
            { sort: [{ order: 'DESC' }, { attribute: 'n', order: 'DESC' }] });
        assert.deepEqual(r2, ['k07', 'k04', 'k01']);
    });

    test('missing values sort last ascending, first descending', async () => {
        await setup();
        const asc = await findKeys(fx.c, 'f', '(_key=k*)', { sort: { attribute: 's' } });
        assert.equal(asc[asc.length - 1], 'k11');
        const desc = await findKeys(fx.c, 'f', '(_key=k*)',
            { sort: { attribute: 'n', order: 'DESC' } });
        assert.equal(desc[0], 'k10');
        assert.equal(desc[1], 'k09');
    });

    test('internal columns: _id, _key, _mtime, _etag', async () => {
        await setup();
        const byId = await find(fx.c, 'f', '(_key=k*)', { sort: { attribute: '_id', order: 'DESC' } });
        const ids = byId.map((r) => r._id);
        assert.deepEqual(ids, [...ids].sort((a, b) => b - a));
        assert.deepEqual(await findKeys(fx.c, 'f', '(_key=k*)', { sort: { attribute: '_key' } }),
            ALL_F);
        const byMtime = await find(fx.c, 'f', '(_key=k*)', { sort: { attribute: '_mtime' } });
        const mt = byMtime.map((r) => r._mtime);
        assert.deepEqual(mt, [...mt].sort((a, b) => a - b));
        const byEtag = await find(fx.c, 'f', '(_key=k*)', { sort: { attribute: '_etag' } });
        const et = byEtag.map((r) => r._etag);
        assert.deepEqual(et, [...et].sort());
    });

    test('bad sort attributes and orders', async () => {
        await setup();
        await rejects(find(fx.c, 'f', '(n>=0)', { sort: { attribute: 'nosuch' } }),
            { name: 'error', message: 'column "nosuch" does not exist' });
        await rejects(find(fx.c, 'f', '(n>=0)', { sort: { attribute: 'n; DROP TABLE f' } }),
            { name: 'error' });
        await rejects(find(fx.c, 'f', '(n>=0)', { sort: { attribute: '_idx' } }),
            { name: 'Error', message: 'sorting on "_idx" is not allowed' });
        await rejects(find(fx.c, 'f', '(n>=0)', { sort: { attribute: 'n', order: 'up' } }), {
            name: 'InvocationError',
            message: 'findObjects expects "options" (args[2]) to be a valid options object: ' +
                'options.sort.order should be equal to one of the allowed values ("ASC", "DESC")',
        });
        await rejects(find(fx.c, 'f', '(n>=0)', { sort: 'n' }), {
            name: 'InvocationError',
            message: 'findObjects expects "options" (args[2]) to be a valid options object: ' +
                'options.sort should be array, options.sort should be object, ' +
                'options.sort should match some schema in anyOf',
        });
        /* the table is intact, and no pooled connection was left unusable */
        const t0 = Date.now();
        const again = await Promise.all(Array.from({ length: 8 }, () =>
            find(fx.c, 'f', '(n>=0)')));
        assert.deepEqual(again.map((r) => r.length), Array(8).fill(11));
        assert.ok(Date.now() - t0 < 2000, `finds took ${Date.now() - t0} ms`);
    });
});

describe('_count, no_count, sql_only', () => {
    test('_count counts index-stage matches, not post-filter matches', async () => {
        await setup();
        const r = await find(fx.c, 'f', '(&(n>=0)(other=zz))');
        assert.deepEqual(r.map((x) => x.key), ['k11']);
        assert.equal(r[0]._count, 11);
        /* limit applies before the post-filter: a page can come back empty */
        const page = await find(fx.c, 'f', '(&(n>=0)(other=zz))',
            { sort: { attribute: 'n' }, limit: 3 });
        assert.deepEqual(page, []);
        assert.deepEqual(await find(fx.c, 'f', '(n>=100)'), []);
    });

    test('record shape; no_count drops the _count key', async () => {
        await setup();
        const [r] = await find(fx.c, 'f', '(n=3)');
        assert.deepEqual(Object.keys(r),
            ['bucket', 'key', 'value', '_id', '_etag', '_mtime', '_txn_snap', '_count']);
        assert.equal(r.bucket, 'f');
        assert.deepEqual(r.value, { n: 3, s: 'a' });
        assert.equal(r._count, 1);
        const [nc] = await find(fx.c, 'f', '(n=3)', { no_count: true });
        assert.deepEqual(Object.keys(nc),
            ['bucket', 'key', 'value', '_id', '_etag', '_mtime', '_txn_snap']);
    });

    test('a value with an own "__proto__" key reaches the post-filter and the client intact', async () => {
        await setup();
        await createBucket(fx.c, 'fp', { index: { n: { type: 'number' } } });
        /* JSON.parse makes "__proto__" an own data property, and it travels as one */
        const v = JSON.parse('{"__proto__":{"x":1},"n":42,"s":"p"}') as Record<string, unknown>;
        await put(fx.c, 'fp', 'kp', v);
        await put(fx.c, 'fp', 'kq', { n: 42, s: 'q' });
        const r = await find(fx.c, 'fp', '(&(n=42)(__proto__=*))');
        assert.deepEqual(r.map((x) => x.key), ['kp']);
        assert.ok(Object.prototype.hasOwnProperty.call(r[0].value, '__proto__'));
        assert.deepEqual(Object.keys(r[0].value), ['__proto__', 'n', 's']);
        assert.deepEqual(await findKeys(fx.c, 'fp', '(&(n=42)(s=q))'), ['kq']);
    });

    test('sql_only: one record {count, query, args}, nothing executed', async () => {
        await setup();
        const r = await find(fx.c, 'f', '(n>=6)', { sql_only: true });
        assert.equal(r.length, 1);
        assert.deepEqual(Object.keys(r[0]).sort(), ['args', 'count', 'query']);
        assert.deepEqual(r[0].args, [6]);
        assert.match(r[0].count, /count\(1\) over \(\)/i);
        assert.ok(r[0].query.endsWith('FROM f WHERE  ( $1 <= n AND n IS NOT NULL )  LIMIT 1000'),
            r[0].query);
        assert.ok(r[0].count.endsWith('FROM f WHERE  ( $1 <= n AND n IS NOT NULL )  LIMIT 1000'),
            r[0].count);
        const nc = await find(fx.c, 'f', '(&(s=x)(n>=5))', { sql_only: true, no_count: true,
            sort: [{ attribute: 'n' }, { attribute: 's', order: 'desc' }], limit: 10, offset: '20' });
        assert.deepEqual(Object.keys(nc[0]).sort(), ['args', 'query']);
        assert.deepEqual(nc[0].args, ['x', 5]);
        assert.ok(nc[0].query.endsWith('WHERE  ( ( $1 = s AND s IS NOT NULL ) ) AND ' +
            '( ( $2 <= n AND n IS NOT NULL ) )  ORDER BY n, s desc LIMIT 10 OFFSET 20'),
        nc[0].query);
        const nl = await find(fx.c, 'f', '(s=x)', { sql_only: true, noLimit: true });
        assert.ok(nl[0].query.endsWith('WHERE  ( $1 = s AND s IS NOT NULL ) '), nl[0].query);
        const arr = await find(fx.c, 'f', '(t=x)', { sql_only: true });
        assert.ok(arr[0].query.endsWith('WHERE  ( t @> ARRAY[$1]::TEXT[] )  LIMIT 1000'));
        /* filter errors still apply */
        await rejects(find(fx.c, 'f', '(other=zz)', { sql_only: true }),
            { name: 'InvalidQueryError' });
    });
});

describe('requireIndexes / requireOnlineReindexing and _handledOptions', () => {
    const HANDLED = ['req_id', 'limit', 'offset', 'sort', 'noLimit', 'no_count', 'sql_only',
        'noBucketCache', 'timeout', 'requireOnlineReindexing', 'requireIndexes'];

    test('NotIndexedError lists unindexed fields (in filter order, once each)', async () => {
        await setup();
        for (const opt of ['requireIndexes', 'requireOnlineReindexing']) {
            await rejects(find(fx.c, 'f', '(other=zz)', { [opt]: true }), {
                name: 'NotIndexedError',
                message: 'f does not have indexes that support (other=zz). ' +
                    "Reindexing fields: []. Unindexed fields: [ 'other' ]",
            });
        }
        await rejects(find(fx.c, 'f', '(&(n>=1)(a=1)(|(b=2)(a=3)))', { requireIndexes: true }), {
            name: 'NotIndexedError',
            message: 'f does not have indexes that support (&(n>=1)(a=1)(|(b=2)(a=3))). ' +
                "Reindexing fields: []. Unindexed fields: [ 'a', 'b' ]",
        });
    });

    test('fully indexed filters (internal fields included) succeed; the client sees no ' +
        'UnhandledOptionsError', async () => {
        await setup();
        const f = '(&(n>=1)(_key=k*)(_id>=1)(_mtime>=1)(_etag=*)(s=*))';
        const plain = await findKeySet(fx.c, 'f', f);
        assert.deepEqual(await findKeySet(fx.c, 'f', f, { requireIndexes: true }), plain);
        assert.deepEqual(await findKeySet(fx.c, 'f', f, { requireOnlineReindexing: true }),
            plain);
        assert.deepEqual(await findKeySet(fx.c, 'f', '(n>=100)', { requireIndexes: true }), []);
    });

    test('raw: the metadata record comes first, only when asked, after the index check',
        async () => {
            await setup();
            const raw = await rawClient(fx.srv.port);
            try {
                let r = await raw.rpc('findObjects', ['f', '(n=3)',
                    { requireIndexes: true, internalOpts: { sendHandledOptions: true } }]);
                assert.equal(r.err, null);
                assert.deepEqual(r.data[0], { _handledOptions: HANDLED });
                assert.equal(r.data.length, 2);
                assert.equal(r.data[1].key, 'k03');
                /* no records: still the metadata record */
                r = await raw.rpc('findObjects', ['f', '(n=300)',
                    { internalOpts: { sendHandledOptions: true } }]);
                assert.deepEqual(r.data, [{ _handledOptions: HANDLED }]);
                /* sql_only: metadata, then the SQL record */
                r = await raw.rpc('findObjects', ['f', '(n=3)',
                    { sql_only: true, internalOpts: { sendHandledOptions: true } }]);
                assert.equal(r.data.length, 2);
                assert.deepEqual(r.data[0], { _handledOptions: HANDLED });
                /* failed index check: error, no metadata */
                r = await raw.rpc('findObjects', ['f', '(zz=3)',
                    { requireIndexes: true, internalOpts: { sendHandledOptions: true } }]);
                assert.equal(r.err?.name, 'NotIndexedError');
                assert.deepEqual(r.data, []);
                /* parse error: before everything */
                r = await raw.rpc('findObjects', ['f', '(zz=3',
                    { internalOpts: { sendHandledOptions: true } }]);
                assert.equal(r.err?.name, 'InvalidQueryError');
                assert.deepEqual(r.data, []);
                /* not asked: no metadata */
                r = await raw.rpc('findObjects', ['f', '(n=3)', { requireIndexes: true }]);
                assert.equal(r.data.length, 1);
                assert.equal(r.data[0].key, 'k03');
                /* bucket missing: error, no metadata */
                r = await raw.rpc('findObjects', ['nope', '(n=3)',
                    { internalOpts: { sendHandledOptions: true } }]);
                assert.equal(r.err?.name, 'BucketNotFoundError');
                assert.deepEqual(r.data, []);
            } finally {
                raw.close();
            }
        });
});

describe('a statement that fails while streaming', () => {
    test('does not leave its pooled connection unusable (one-connection pool)', async () => {
        await setup();
        const srv = await startServer({ config: standaloneConfig(fx.db, {
            standalone: { url: fx.db.url, pg: { maxConnections: 1 } },
        }) });
        const c = await morayClient(srv.port);
        try {
            for (let i = 0; i < 3; i++) {
                await rejects(find(c, 'f', '(n>=0)', { sort: { attribute: 'nosuch' } }),
                    { name: 'error', message: 'column "nosuch" does not exist' });
                const t0 = Date.now();
                assert.equal((await find(c, 'f', '(n>=0)')).length, 11);
                assert.equal((await get(c, 'f', 'k01')).value.n, 1);
                assert.ok(Date.now() - t0 < 1500, `took ${Date.now() - t0} ms`);
            }
        } finally {
            c.close();
            await srv.stop();
        }
    });
});

describe('rows that cannot be converted', () => {
    test('bad stored JSON or an unsafe _id: InternalError, server and pool stay healthy',
        async () => {
            await createBucket(fx.c, 'broken', { index: { n: { type: 'number' } } });
            await fx.db.query("INSERT INTO broken (_key, _value, _etag, _mtime, n) SELECT " +
                "'g' || lpad(i::text, 4, '0'), '{\"n\":' || i || '}', 'ABCDEF01', 1, i " +
                'FROM generate_series(0, 1199) AS i');
            await fx.db.query("UPDATE broken SET _value = '{not json' WHERE n = 700");
            await fx.db.query("INSERT INTO broken (_id, _key, _value, _etag, _mtime, n) VALUES " +
                "(9007199254740993, 'huge', '{}', 'ABCDEF01', 1, -1)");
            const sort = { attribute: 'n' };
            await rejects(find(fx.c, 'broken', '(n>=0)', { sort, noLimit: true }),
                { name: 'InternalError', message: /^failed to convert row: / });
            await rejects(get(fx.c, 'broken', 'g0700'),
                { name: 'InternalError', message: /^failed to convert row: / });
            await rejects(find(fx.c, 'broken', '(n=-1)'), {
                name: 'InternalError',
                message: 'failed to convert row: _id 9007199254740993 is not a safe integer',
            });
            for (let i = 0; i < 8; i++) {
                assert.equal((await find(fx.c, 'broken', '(&(n>=0)(n<=699))',
                    { noLimit: true })).length,
                    700);
            }
            assert.equal(fx.srv.proc.exitCode, null);
        });
});

describe('options.timeout on reads', () => {
    test('a find blocked behind a table lock fails with QueryTimeoutError; then works',
        async () => {
            await setup();
            await find(fx.c, 'f', '(n>=0)');
            const locker = await fx.db.client();
            try {
                await locker.query('BEGIN');
                await locker.query('LOCK TABLE f IN ACCESS EXCLUSIVE MODE');
                const t0 = Date.now();
                await rejects(find(fx.c, 'f', '(n>=0)', { timeout: 200 }),
                    { name: 'QueryTimeoutError', message: /^query timeout: SELECT .* FROM f WHERE/ });
                assert.ok(Date.now() - t0 < 3000);
                await rejects(get(fx.c, 'f', 'k01', { timeout: 200 }),
                    { name: 'QueryTimeoutError' });
                await rejects(put(fx.c, 'f', 'k01', { n: 1 }, { timeout: 200 }),
                    { name: 'QueryTimeoutError' });
            } finally {
                await locker.query('ROLLBACK');
                await locker.end();
            }
            assert.equal((await find(fx.c, 'f', '(n>=0)', { timeout: 200 })).length, 11);
            assert.deepEqual(await findKeySet(fx.c, 'f', '(n=1)'), ['k01']);
        });
});

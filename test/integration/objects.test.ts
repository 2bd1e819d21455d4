/*
 * putObject / getObject / delObject through the real npm `moray` client
 * against a real PostgreSQL (moray-api.md §6-§8, storage.md §5-§8, §14):
 * record shape, etags (CRC vectors, conditional writes, races), _id and
 * _mtime assignment, vnode, unicode, every error these RPCs return,
 * guaranteeOrder, and pre/post triggers (including failing ones).
 *
 * Index types and filters: objects-types.test.ts; findObjects options:
 * objects-find.test.ts; CLI tools: objects-cli.test.ts; streaming memory:
 * objects-memory.test.ts.
 */

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as zlib from 'node:zlib';
import { call, morayClient, type MorayClient } from '../helpers/harness';
import {
    createBucket, del, find, findKeySet, get, objectsFixture, put, rawClient, rejects, uuid,
} from './objects-shared';

const fx = objectsFixture('objects');

const FOO_INDEX = {
    email: { type: 'string', unique: true },
    n: { type: 'number' },
    b: { type: 'boolean' },
    tags: { type: '[string]' },
    camelCol: { type: 'number', unique: true },
};

/* Standard CRC-32 of the UTF-8 bytes: an independent oracle for ASCII JSON. */
function zcrc(text: string): string {
    return (zlib as unknown as { crc32(s: string): number }).crc32(text)
        .toString(16).toUpperCase().padStart(8, '0');
}

let bucketsReady: Promise<void> | null = null;
function buckets(): Promise<void> {
    if (bucketsReady === null) {
        bucketsReady = (async () => {
            await createBucket(fx.c, 'foo', { index: FOO_INDEX });
            await createBucket(fx.c, 'plain', {});
            await createBucket(fx.c, 'ordered', { index: { n: { type: 'number' } },
                options: { guaranteeOrder: true } });
        })();
    }
    return bucketsReady;
}

describe('putObject / getObject basics', () => {
    test('put answers exactly one {etag} record; get answers the §6.1 record', async () => {
        await buckets();
        const raw = await rawClient(fx.srv.port);
        try {
            const value = { email: 'A@x.com', n: 5, b: true, tags: ['a', 'b'], other: 'zz' };
            const t0 = Date.now();
            const r = await raw.rpc('putObject', ['foo', 'k1', value, {}]);
            const t1 = Date.now();
            assert.equal(r.err, null);
            assert.deepEqual(r.data, [{ etag: 'D0E7F4DF' }]);

            const g = await raw.rpc('getObject', ['foo', 'k1', {}]);
            assert.equal(g.err, null);
            assert.equal(g.data.length, 1);
            const rec = g.data[0];
            assert.deepEqual(Object.keys(rec),
                ['bucket', 'key', 'value', '_id', '_etag', '_mtime', '_txn_snap', '_count']);
            assert.equal(rec.bucket, 'foo');
            assert.equal(rec.key, 'k1');
            assert.deepEqual(rec.value, value);
            assert.equal(typeof rec._id, 'number');
            assert.equal(rec._etag, 'D0E7F4DF');
            assert.equal(typeof rec._mtime, 'number');
            assert.ok(rec._mtime >= t0 && rec._mtime <= t1, `${rec._mtime} in [${t0}, ${t1}]`);
            assert.equal(rec._txn_snap, null);
            assert.equal(rec._count, null);

            /* the npm client returns the same record */
            const viaClient = await get(fx.c, 'foo', 'k1');
            assert.deepEqual(viaClient, rec);
        } finally {
            raw.close();
        }
    });

    test('etag vectors of moray-api.md §6.3 and storage.md §7 (low byte of each UTF-16 unit)',
        async () => {
            await buckets();
            const vectors: [unknown, string][] = [
                [{}, 'A3A6BF43'],
                [{ a: 1 }, '561BACAF'],
                [{ name: 'é' }, '625061AE'],
                [{ s: '☃' }, 'D2A2706C'],
                [{ e: '😀' }, '14AA0924'],
                [{ email: 'mark.cavage@joyent.com', ismanager: false }, 'D6AE42DF'],
                [{ n: 1 }, 'D44B3B7E'],
                [{ loginName: 'lisa', uid: '800' }, '406B60FB'],
                [{ email: 'A@x.com', n: 5, b: true, tags: ['a', 'b'], other: 'zz' }, 'D0E7F4DF'],
                [{ email: 'mark.cavage@joyent.com' }, '83E09E0F'],
                [{ numr: '[1,4]', num: 5 }, '2A7CFC8E'],
                [{ n: 'é' }, '70DED814'],
                [{ n: '€😀' }, 'AA39CFC0'],
            ];
            let i = 0;
            for (const [value, etag] of vectors) {
                const key = `vec${i++}`;
                const r = await put(fx.c, 'plain', key, value);
                assert.equal(r.etag, etag, JSON.stringify(value));
                const g = await get(fx.c, 'plain', key);
                assert.equal(g._etag, etag);
                assert.deepEqual(g.value, value);
            }
            /* for ASCII JSON the etag is the standard CRC-32 */
            assert.equal(zcrc('{"n":1}'), 'D44B3B7E');
            /* integer-like keys come first, ascending (V8 JSON.parse/stringify) */
            const r = await put(fx.c, 'plain', 'intkeys', { b: 1, 10: 'x', 2: 'y', a: [1.5, 'z'] });
            assert.equal(r.etag, zcrc('{"2":"y","10":"x","b":1,"a":[1.5,"z"]}'));
        });

    test('the client-supplied _value option is ignored (raw Fast put)', async () => {
        await buckets();
        const raw = await rawClient(fx.srv.port);
        try {
            const r = await raw.rpc('putObject', ['plain', 'v1', { a: 1 },
                { _value: '{"zzz":1}', req_id: uuid() }]);
            assert.deepEqual(r.data, [{ etag: '561BACAF' }]);
            const g = await get(fx.c, 'plain', 'v1');
            assert.deepEqual(g.value, { a: 1 });
        } finally {
            raw.close();
        }
    });

    test('_id: new per insert, kept on overwrite, new after delete, gap after a failed insert',
        async () => {
            await buckets();
            await createBucket(fx.c, 'ids', { index: { u: { type: 'string', unique: true } } });
            await put(fx.c, 'ids', 'a', { u: 'a' });
            await put(fx.c, 'ids', 'b', { u: 'b' });
            const a1 = (await get(fx.c, 'ids', 'a'))._id;
            const b1 = (await get(fx.c, 'ids', 'b'))._id;
            assert.equal(a1, 1);
            assert.equal(b1, 2);
            await put(fx.c, 'ids', 'a', { u: 'a2' });
            assert.equal((await get(fx.c, 'ids', 'a'))._id, 1, 'overwrite keeps _id');
            await del(fx.c, 'ids', 'a');
            await put(fx.c, 'ids', 'a', { u: 'a3' });
            assert.equal((await get(fx.c, 'ids', 'a'))._id, 3, 'recreate gets a new _id');
            /* unique violation: the insert attempt consumed id 4 */
            await rejects(put(fx.c, 'ids', 'c', { u: 'b' }), {
                name: 'UniqueAttributeError',
                message: '"u" is a unique attribute; value "b" already exists',
            });
            await put(fx.c, 'ids', 'c', { u: 'c' });
            assert.equal((await get(fx.c, 'ids', 'c'))._id, 5, 'failed insert leaves a gap');
        });

    test('_id up to 2^53-1 is exact; a larger one fails the put with InternalError', async () => {
        await createBucket(fx.c, 'bigid', {});
        await fx.db.query("SELECT setval('bigid_serial', 9007199254740990)");
        await put(fx.c, 'bigid', 'a', {});
        assert.equal((await get(fx.c, 'bigid', 'a'))._id, 9007199254740991);
        await rejects(put(fx.c, 'bigid', 'b', {}), {
            name: 'InternalError',
            message: 'failed to convert row: _id 9007199254740992 is not a safe integer',
        });
        await rejects(get(fx.c, 'bigid', 'b'), { name: 'ObjectNotFoundError' });
        assert.deepEqual((await find(fx.c, 'bigid', '(_id>=1)')).map((r) => r._id),
            [9007199254740991]);
    });

    test('_mtime changes on overwrite, _id does not', async () => {
        await buckets();
        await put(fx.c, 'plain', 'mt', { v: 1 });
        const g1 = await get(fx.c, 'plain', 'mt');
        await new Promise((r) => setTimeout(r, 15));
        await put(fx.c, 'plain', 'mt', { v: 2 });
        const g2 = await get(fx.c, 'plain', 'mt');
        assert.ok(g2._mtime > g1._mtime);
        assert.equal(g2._id, g1._id);
        assert.notEqual(g2._etag, g1._etag);
    });

    test('value.vnode is copied to the _vnode column on every put', async () => {
        await buckets();
        await put(fx.c, 'plain', 'vn', { vnode: 1234, x: 1 });
        let r = await fx.db.query("SELECT _vnode FROM plain WHERE _key = 'vn'");
        assert.equal(r.rows[0]._vnode, '1234');
        assert.deepEqual((await get(fx.c, 'plain', 'vn')).value, { vnode: 1234, x: 1 });
        await put(fx.c, 'plain', 'vn', { x: 2 });
        r = await fx.db.query("SELECT _vnode FROM plain WHERE _key = 'vn'");
        assert.equal(r.rows[0]._vnode, null);
        await put(fx.c, 'plain', 'vn', { vnode: '77' });
        r = await fx.db.query("SELECT _vnode FROM plain WHERE _key = 'vn'");
        assert.equal(r.rows[0]._vnode, '77');
        /* a non-integer vnode is PostgreSQL's bigint input error, passed through */
        await rejects(put(fx.c, 'plain', 'vn', { vnode: 'abc' }), {
            name: 'error', message: /invalid input syntax for type bigint/,
        });
        /* _vnode is not searchable and not returned */
        const g = await get(fx.c, 'plain', 'vn');
        assert.equal(g._vnode, undefined);
        assert.deepEqual(g.value, { vnode: '77' });
    });

    test('an overwrite recomputes every index column (absent fields become "no value")',
        async () => {
            await buckets();
            await put(fx.c, 'foo', 'ow', { email: 'ow@x', n: 1, b: false, tags: ['t'] });
            assert.deepEqual(await findKeySet(fx.c, 'foo', '(email=ow@x)'), ['ow']);
            await put(fx.c, 'foo', 'ow', { n: 2 });
            assert.deepEqual(await findKeySet(fx.c, 'foo', '(email=ow@x)'), []);
            assert.deepEqual(await findKeySet(fx.c, 'foo', '(tags=t)'), []);
            assert.deepEqual(await findKeySet(fx.c, 'foo', '(n=2)'), ['ow']);
            const r = await fx.db.query(
                "SELECT email, n, b, tags, camelcol FROM foo WHERE _key = 'ow'");
            assert.deepEqual(r.rows[0], { email: null, n: '2', b: null, tags: null, camelcol: null });
            /* the freed unique value can be taken by another object */
            await put(fx.c, 'foo', 'ow2', { email: 'ow@x' });
            await del(fx.c, 'foo', 'ow');
            await del(fx.c, 'foo', 'ow2');
        });

    test('unicode keys and values, astral characters included', async () => {
        await buckets();
        const key = 'ключ/😀/𐐷/\u{10FFFF}/é';
        const value = { s: 'snow ☃ and 😀 and 𐐷', email: 'ü😀@x', nested: { '😀': ['𝄞'] } };
        const r = await put(fx.c, 'foo', key, value);
        const g = await get(fx.c, 'foo', key);
        assert.equal(g.key, key);
        assert.deepEqual(g.value, value);
        assert.equal(g._etag, r.etag);
        assert.deepEqual((await find(fx.c, 'foo', `(_key=${key})`)).map((x) => x.key), [key]);
        assert.deepEqual(await findKeySet(fx.c, 'foo', '(email=ü😀@x)'), [key]);
        assert.deepEqual(await findKeySet(fx.c, 'foo', '(email=ü😀*)'), [key]);
        await del(fx.c, 'foo', key);
        await rejects(get(fx.c, 'foo', key), {
            name: 'ObjectNotFoundError', message: `foo::${key} does not exist`,
        });
    });

    test('noCache:false still reads fresh data (no object cache)', async () => {
        await buckets();
        await put(fx.c, 'plain', 'nc', { v: 1 });
        assert.deepEqual((await get(fx.c, 'plain', 'nc', { noCache: false })).value, { v: 1 });
        await put(fx.c, 'plain', 'nc', { v: 2 });
        assert.deepEqual((await get(fx.c, 'plain', 'nc', { noCache: false })).value, { v: 2 });
    });

    test('getObject handled-options record (§4.2) comes first, client accepts it', async () => {
        await buckets();
        await put(fx.c, 'plain', 'ho', { v: 1 });
        const raw = await rawClient(fx.srv.port);
        try {
            const r = await raw.rpc('getObject', ['plain', 'ho',
                { internalOpts: { sendHandledOptions: true }, requireOnlineReindexing: true }]);
            assert.equal(r.err, null);
            assert.equal(r.data.length, 2);
            assert.deepEqual(r.data[0], { _handledOptions: ['noBucketCache', 'noCache', 'req_id',
                'requireOnlineReindexing', 'timeout'] });
            assert.equal(r.data[1].key, 'ho');
            /* sent after the bucket is loaded: a missing bucket gets no record */
            const nb = await raw.rpc('getObject', ['nosuch', 'ho',
                { internalOpts: { sendHandledOptions: true } }]);
            assert.equal(nb.err?.name, 'BucketNotFoundError');
            assert.deepEqual(nb.data, []);
            /* a missing object: metadata record, then the error */
            const no = await raw.rpc('getObject', ['plain', 'nope',
                { internalOpts: { sendHandledOptions: true } }]);
            assert.equal(no.err?.name, 'ObjectNotFoundError');
            assert.equal(no.data.length, 1);
        } finally {
            raw.close();
        }
        const g = await get(fx.c, 'plain', 'ho', { requireOnlineReindexing: true });
        assert.deepEqual(g.value, { v: 1 });
    });

    test('noBucketCache re-reads a bucket changed behind the cache', async () => {
        await createBucket(fx.c, 'nbc', { index: { a: { type: 'string' } } });
        await put(fx.c, 'nbc', 'k0', { a: 'x', z: 'old' });
        /* add index field z directly in PostgreSQL: this server's cache does not know */
        await fx.db.query('ALTER TABLE nbc ADD COLUMN z TEXT');
        await fx.db.query('UPDATE buckets_config SET index = $1 WHERE name = $2',
            [JSON.stringify({ a: { type: 'string' }, z: { type: 'string' } }), 'nbc']);
        await put(fx.c, 'nbc', 'k1', { a: 'x', z: 'cached' });
        let r = await fx.db.query("SELECT z FROM nbc WHERE _key = 'k1'");
        assert.equal(r.rows[0].z, null, 'cached config: z not indexed yet');
        await put(fx.c, 'nbc', 'k2', { a: 'x', z: 'fresh' }, { noBucketCache: true });
        r = await fx.db.query("SELECT z FROM nbc WHERE _key = 'k2'");
        assert.equal(r.rows[0].z, 'fresh');
        /* the reload refilled the cache: later requests see z as well */
        assert.deepEqual(await findKeySet(fx.c, 'nbc', '(z=fresh)'), ['k2']);
    });
});

describe('stale bucket cache on put (storage.md §6.1 step 3)', () => {
    test('a row indexed at a newer bucket version makes put reload the config', async () => {
        await createBucket(fx.c, 'stale', { index: { a: { type: 'string' } },
            options: { version: 1 } });
        await call(fx.c, 'updateBucket', 'stale', { index: { a: { type: 'string' } },
            options: { version: 2 } }, {});
        await put(fx.c, 'stale', 'k', { a: 'x' });
        let r = await fx.db.query("SELECT _rver FROM stale WHERE _key = 'k'");
        assert.equal(r.rows[0]._rver, 2);
        /* another process moves the bucket to version 3 with a new field z ... */
        await fx.db.query('ALTER TABLE stale ADD COLUMN z TEXT');
        await fx.db.query('UPDATE buckets_config SET index = $1, options = $2, ' +
            'reindex_active = $3 WHERE name = $4', [
            JSON.stringify({ a: { type: 'string' }, z: { type: 'string' } }),
            JSON.stringify({ version: 3 }), JSON.stringify({ 2: [], 3: [] }), 'stale']);
        /* ... and writes k at version 3; our cache still says version 2 */
        await fx.db.query("UPDATE stale SET _rver = 3 WHERE _key = 'k'");
        await put(fx.c, 'stale', 'k', { a: 'y', z: 'zz' });
        r = await fx.db.query("SELECT a, z, _rver FROM stale WHERE _key = 'k'");
        assert.deepEqual(r.rows[0], { a: 'y', z: 'zz', _rver: 3 });
        /* and the reloaded config serves later requests */
        assert.deepEqual(await findKeySet(fx.c, 'stale', '(z=zz)'), ['k']);
    });
});

describe('errors of putObject / getObject / delObject', () => {
    test('BucketNotFoundError from every object RPC', async () => {
        await buckets();
        const exp = { name: 'BucketNotFoundError', message: 'nosuch does not exist' };
        await rejects(put(fx.c, 'nosuch', 'k', {}), exp);
        await rejects(get(fx.c, 'nosuch', 'k'), exp);
        await rejects(del(fx.c, 'nosuch', 'k'), exp);
        await rejects(find(fx.c, 'nosuch', '(a=1)'), exp);
        await rejects(put(fx.c, 'nosuch', 'k', {}, { noBucketCache: true }), exp);
        /* findObjects parses its filter before it looks the bucket up */
        await rejects(find(fx.c, 'nosuch', '(a=1'),
            { name: 'InvalidQueryError', message: '(a=1 is an invalid filter' });
    });

    test('ObjectNotFoundError from getObject and delObject', async () => {
        await buckets();
        await rejects(get(fx.c, 'foo', 'missing'),
            { name: 'ObjectNotFoundError', message: 'foo::missing does not exist' });
        await rejects(del(fx.c, 'foo', 'missing'),
            { name: 'ObjectNotFoundError', message: 'foo::missing does not exist' });
        /* not-found wins over an etag mismatch on delete */
        await rejects(del(fx.c, 'foo', 'missing', { etag: 'ABCDEF01' }),
            { name: 'ObjectNotFoundError', message: 'foo::missing does not exist' });
    });

    test('InvalidIndexTypeError, and nothing is written', async () => {
        await buckets();
        await rejects(put(fx.c, 'foo', 'bad', { b: 'yes' }),
            { name: 'InvalidIndexTypeError', message: 'index(b) is of type boolean' });
        await rejects(get(fx.c, 'foo', 'bad'), { name: 'ObjectNotFoundError' });
        /* on an overwrite the old object stays as it was */
        await put(fx.c, 'foo', 'bad', { b: 'TRUE', n: 1 });
        await rejects(put(fx.c, 'foo', 'bad', { b: 'no', n: 2 }),
            { name: 'InvalidIndexTypeError', message: 'index(b) is of type boolean' });
        assert.deepEqual((await get(fx.c, 'foo', 'bad')).value, { b: true, n: 1 });
        await del(fx.c, 'foo', 'bad');
    });

    test('UniqueAttributeError names the (lower-cased) column and the stored value', async () => {
        await buckets();
        await put(fx.c, 'foo', 'u1', { email: 'dup@x', camelCol: 7 });
        await rejects(put(fx.c, 'foo', 'u2', { email: 'dup@x' }), {
            name: 'UniqueAttributeError',
            message: '"email" is a unique attribute; value "dup@x" already exists',
        });
        await rejects(put(fx.c, 'foo', 'u2', { camelCol: '7.0' }), {
            name: 'UniqueAttributeError',
            message: '"camelcol" is a unique attribute; value "7" already exists',
        });
        /* on overwrite as well */
        await put(fx.c, 'foo', 'u3', { email: 'other@x' });
        await rejects(put(fx.c, 'foo', 'u3', { email: 'dup@x' }), {
            name: 'UniqueAttributeError',
            message: '"email" is a unique attribute; value "dup@x" already exists',
        });
        assert.equal((await get(fx.c, 'foo', 'u3')).value.email, 'other@x');
        /* nulls never conflict */
        await put(fx.c, 'foo', 'u4', { email: null });
        await put(fx.c, 'foo', 'u5', { email: null });
        for (const k of ['u1', 'u3', 'u4', 'u5']) {
            await del(fx.c, 'foo', k);
        }
    });

    test('InvocationError for malformed arguments (raw Fast)', async () => {
        await buckets();
        const raw = await rawClient(fx.srv.port);
        try {
            let r = await raw.rpc('putObject', ['foo', 'k', ['not', 'an', 'object'], {}]);
            assert.equal(r.err?.name, 'InvocationError');
            assert.equal(r.err?.message,
                'putObject expects "value" (args[2]) to be an object: value should be object');
            r = await raw.rpc('getObject', ['foo', '', {}]);
            assert.equal(r.err?.message, 'getObject expects "key" (args[1]) to be a nonempty ' +
                'string: key should NOT be shorter than 1 characters');
            r = await raw.rpc('delObject', ['foo', 'k']);
            assert.equal(r.err?.message, 'delObject expects 3 arguments');
            r = await raw.rpc('putObject', ['foo', 'k', {}, { etag: 5 }]);
            assert.equal(r.err?.message, 'putObject expects "options" (args[3]) to be a valid ' +
                'options object: options.etag should be null,string');
            r = await raw.rpc('getObject', ['foo', 'k', { req_id: 'nope' }]);
            assert.equal(r.err?.message, 'getObject expects "options" (args[2]) to be a valid ' +
                'options object: options.req_id should match format "uuid"');
            r = await raw.rpc('findObjects', ['foo', '', {}]);
            assert.equal(r.err?.name, 'InvocationError');
            /* a client-chosen req_id is fine, in any case */
            r = await raw.rpc('putObject', ['foo', 'rid', {}, { req_id: uuid().toUpperCase() }]);
            assert.equal(r.err, null);
            await del(fx.c, 'foo', 'rid');
        } finally {
            raw.close();
        }
    });
});

describe('conditional writes (§8)', () => {
    test('putObject: etag absent / null / string against absent and present objects', async () => {
        await buckets();
        const ctx = (key: string, expected: string, actual: string) =>
            ({ bucket: 'plain', key, expected, actual });
        /* null on an absent object: create */
        const e1 = (await put(fx.c, 'plain', 'c1', { v: 1 }, { etag: null })).etag;
        /* null on a present object: conflict, actual = current etag */
        await rejects(put(fx.c, 'plain', 'c1', { v: 2 }, { etag: null }), {
            name: 'EtagConflictError',
            message: `plain::c1 was expected to have etag "null", but was "${e1}"`,
            context: ctx('c1', 'null', e1),
        });
        /* string on an absent object: conflict, actual "null" */
        await rejects(put(fx.c, 'plain', 'c2', { v: 1 }, { etag: 'ABCDEF01' }), {
            name: 'EtagConflictError',
            message: 'plain::c2 was expected to have etag "ABCDEF01", but was "null"',
            context: ctx('c2', 'ABCDEF01', 'null'),
        });
        await rejects(get(fx.c, 'plain', 'c2'), { name: 'ObjectNotFoundError' });
        /* wrong string: conflict */
        await rejects(put(fx.c, 'plain', 'c1', { v: 2 }, { etag: 'ABCDEF01' }), {
            name: 'EtagConflictError', context: ctx('c1', 'ABCDEF01', e1),
        });
        /* right string: overwrite */
        const e2 = (await put(fx.c, 'plain', 'c1', { v: 2 }, { etag: e1 })).etag;
        assert.notEqual(e2, e1);
        assert.deepEqual((await get(fx.c, 'plain', 'c1')).value, { v: 2 });
        /* no etag: no check */
        await put(fx.c, 'plain', 'c1', { v: 3 });
        /* node-moray turns _etag into etag */
        await rejects(put(fx.c, 'plain', 'c1', { v: 4 }, { _etag: e2 }),
            { name: 'EtagConflictError' });
    });

    test('delObject: string etag checked, null and "" not checked, _etag alias (raw)', async () => {
        await buckets();
        const e1 = (await put(fx.c, 'plain', 'd1', { v: 1 })).etag;
        await rejects(del(fx.c, 'plain', 'd1', { etag: 'ABCDEF01' }), {
            name: 'EtagConflictError',
            message: `plain::d1 was expected to have etag "ABCDEF01", but was "${e1}"`,
            context: { bucket: 'plain', key: 'd1', expected: 'ABCDEF01', actual: e1 },
        });
        assert.equal((await get(fx.c, 'plain', 'd1'))._etag, e1, 'conflict rolled back');
        await del(fx.c, 'plain', 'd1', { etag: e1 });
        await rejects(get(fx.c, 'plain', 'd1'), { name: 'ObjectNotFoundError' });

        await put(fx.c, 'plain', 'd2', { v: 1 });
        await del(fx.c, 'plain', 'd2', { etag: null });
        await rejects(get(fx.c, 'plain', 'd2'), { name: 'ObjectNotFoundError' });

        const raw = await rawClient(fx.srv.port);
        try {
            const e3 = (await put(fx.c, 'plain', 'd3', { v: 3 })).etag;
            let r = await raw.rpc('delObject', ['plain', 'd3', { _etag: 'ABCDEF01' }]);
            assert.equal(r.err?.name, 'EtagConflictError');
            assert.deepEqual(r.err?.context,
                { bucket: 'plain', key: 'd3', expected: 'ABCDEF01', actual: e3 });
            /* etag "" is falsy: the _etag alias applies */
            r = await raw.rpc('delObject', ['plain', 'd3', { etag: '', _etag: 'ABCDEF01' }]);
            assert.equal(r.err?.name, 'EtagConflictError');
            r = await raw.rpc('delObject', ['plain', 'd3', { etag: '' }]);
            assert.equal(r.err, null);
            assert.deepEqual(r.data, [{}]);
        } finally {
            raw.close();
        }
    });

    test('N concurrent writers with the same etag: exactly one wins each round', async () => {
        await buckets();
        const clients: MorayClient[] = [fx.c];
        for (let i = 0; i < 3; i++) {
            clients.push(await morayClient(fx.srv.port));
        }
        try {
            let etag = (await put(fx.c, 'plain', 'race', { round: -1 })).etag;
            const N = 8;
            for (let round = 0; round < 6; round++) {
                const results = await Promise.allSettled(Array.from({ length: N }, (_, w) =>
                    put(clients[w % clients.length]!, 'plain', 'race', { round, w }, { etag })));
                const wins = results.filter((r) => r.status === 'fulfilled');
                assert.equal(wins.length, 1, `round ${round}: one winner`);
                const winEtag = (wins[0] as PromiseFulfilledResult<{ etag: string }>).value.etag;
                for (const r of results) {
                    if (r.status === 'rejected') {
                        assert.equal(r.reason.name, 'EtagConflictError');
                        assert.deepEqual({ ...r.reason.context },
                            { bucket: 'plain', key: 'race', expected: etag, actual: winEtag });
                    }
                }
                const g = await get(fx.c, 'plain', 'race');
                assert.equal(g._etag, winEtag);
                assert.equal(g.value.round, round);
                etag = winEtag;
            }
        } finally {
            clients.slice(1).forEach((c) => c.close());
        }
    });

    test('concurrent creators of one new key: one wins, losers get EtagConflict or _key ' +
        'UniqueAttributeError', async () => {
        await buckets();
        /* a pre trigger that sleeps makes every creator pass the locked read first */
        await createBucket(fx.c, 'slowpre', { pre: [
            'function slow(req, cb) { var q = req.pg.query("SELECT pg_sleep(0.2)"); ' +
            'q.on("error", cb); q.on("end", function () { cb(); }); }',
        ] });
        const clients: MorayClient[] = [fx.c];
        for (let i = 0; i < 3; i++) {
            clients.push(await morayClient(fx.srv.port));
        }
        try {
            for (const etagOpt of [{ etag: null }, {}]) {
                const key = `new-${JSON.stringify(etagOpt)}`;
                const results = await Promise.allSettled(clients.map((c, w) =>
                    put(c, 'slowpre', key, { w }, etagOpt)));
                const wins = results.filter((r) => r.status === 'fulfilled');
                const losers = results.filter((r) => r.status === 'rejected') as
                    PromiseRejectedResult[];
                if ('etag' in etagOpt) {
                    assert.equal(wins.length, 1);
                }
                assert.ok(losers.length >= 1, 'at least one creator lost the race');
                for (const l of losers) {
                    if (l.reason.name === 'UniqueAttributeError') {
                        assert.equal(l.reason.message,
                            `"_key" is a unique attribute; value "${key}" already exists`);
                    } else {
                        assert.equal(l.reason.name, 'EtagConflictError');
                        assert.equal(l.reason.context.expected, 'null');
                    }
                }
                assert.ok(losers.some((l) => l.reason.name === 'UniqueAttributeError'));
                const g = await get(fx.c, 'slowpre', key);
                assert.equal(g.key, key);
            }
        } finally {
            clients.slice(1).forEach((c) => c.close());
        }
    });
});

describe('options.timeout', () => {
    test('QueryTimeoutError when a statement outlives options.timeout; server keeps serving',
        async () => {
            await createBucket(fx.c, 'sleepy', { pre: [
                'function sleepy(req, cb) { if (!req.value.sleep) { return cb(); } ' +
                'var q = req.pg.query("SELECT pg_sleep(" + req.value.sleep + ")"); ' +
                'q.on("error", cb); q.on("end", function () { cb(); }); }',
            ] });
            await rejects(put(fx.c, 'sleepy', 'k', { sleep: 1 }, { timeout: 150 }), {
                name: 'QueryTimeoutError', message: 'query timeout: SELECT pg_sleep(1)',
            });
            await rejects(get(fx.c, 'sleepy', 'k'), { name: 'ObjectNotFoundError' });
            /* timeout 0 = none; a generous timeout lets the sleep finish */
            await put(fx.c, 'sleepy', 'k', { sleep: 0.3 }, { timeout: 0 });
            await put(fx.c, 'sleepy', 'k2', { sleep: 0.1 }, { timeout: 5000 });
            /* reads honour it too, and a later request on a reused connection has no timeout */
            assert.deepEqual((await get(fx.c, 'sleepy', 'k', { timeout: 5000 })).value,
                { sleep: 0.3 });
            for (let i = 0; i < 6; i++) {
                await put(fx.c, 'sleepy', `k${i}`, { sleep: 0.3 });
            }
        });
});

describe('guaranteeOrder buckets', () => {
    test('_txn_snap comes from the bucket counter: first put gets 2, then +1 per put', async () => {
        await buckets();
        await put(fx.c, 'ordered', 'a', { n: 1 });
        await put(fx.c, 'ordered', 'b', { n: 2 });
        await put(fx.c, 'ordered', 'a', { n: 3 });
        const a = await get(fx.c, 'ordered', 'a');
        const b = await get(fx.c, 'ordered', 'b');
        assert.equal(b._txn_snap, 3);
        assert.equal(a._txn_snap, 4);
        assert.deepEqual(a.value, { n: 3 }, 'the stored JSON has no _txn_snap');
        assert.deepEqual(await findKeySet(fx.c, 'ordered', '(_txn_snap>=4)'), ['a']);
        const r = await find(fx.c, 'ordered', '(n>=0)', { sort: { attribute: '_txn_snap' } });
        assert.deepEqual(r.map((x) => [x.key, x._txn_snap]), [['b', 3], ['a', 4]]);
        /* a plain bucket has null */
        await put(fx.c, 'plain', 'gs', {});
        assert.equal((await get(fx.c, 'plain', 'gs'))._txn_snap, null);
    });

    test('concurrent puts get distinct, gap-free _txn_snap values', async () => {
        await buckets();
        const before = (await fx.db.query('SELECT id FROM ordered_locking_serial')).rows[0].id;
        await Promise.all(Array.from({ length: 10 }, (_, i) =>
            put(fx.c, 'ordered', `p${i}`, { n: i })));
        const recs = await find(fx.c, 'ordered', '(_key=p*)');
        const snaps = recs.map((r) => r._txn_snap).sort((x, y) => x - y);
        assert.deepEqual(snaps, Array.from({ length: 10 }, (_, i) => before + 1 + i));
    });
});

describe('triggers', () => {
    let ready: Promise<void> | null = null;
    const setup = () => {
        if (ready === null) {
            ready = (async () => {
                await fx.db.query('CREATE TABLE audit (seq serial, bucket text, k text, id bigint, ' +
                    'upd boolean, hdr text, val text)');
                await createBucket(fx.c, 'trig', {
                    index: { n: { type: 'number' } },
                    pre: [
                        'function renameAndStamp(req, cb) {\n' +
                        '  if (req.key.indexOf("rename-") === 0) { req.key = req.key.slice(7); }\n' +
                        '  if (req.value.replace) { req.value = { replaced: true, n: 9 }; }\n' +
                        '  else { req.value.pre = { update: req.update, headers: req.headers,\n' +
                        '    bucket: req.bucket, schema: Object.keys(req.schema) }; }\n' +
                        '  cb();\n' +
                        '}',
                    ],
                    post: [
                        'function audit(req, cb) {\n' +
                        '  var q = req.pg.query("INSERT INTO audit (bucket, k, id, upd, hdr, val) " +\n' +
                        '    "VALUES ($1, $2, $3, $4, $5, $6)", [req.bucket, req.key,\n' +
                        '    req.id === undefined ? null : req.id, req.update,\n' +
                        '    JSON.stringify(req.headers),\n' +
                        '    req.value === undefined ? null : JSON.stringify(req.value)]);\n' +
                        '  q.once("error", cb);\n' +
                        '  q.once("end", function () { cb(); });\n' +
                        '}',
                    ],
                });
            })();
        }
        return ready;
    };

    async function auditRows(): Promise<any[]> {
        const r = await fx.db.query('SELECT bucket, k, id, upd, hdr, val FROM audit ORDER BY seq');
        await fx.db.query('DELETE FROM audit');
        return r.rows;
    }

    test('a pre trigger can change the value (etag covers the new value) and the key', async () => {
        await setup();
        const r = await put(fx.c, 'trig', 'k1', { n: 1 }, { headers: { h: 1 } });
        const g = await get(fx.c, 'trig', 'k1');
        const expectedValue = { n: 1, pre: { update: false, headers: {}, bucket: 'trig',
            schema: ['n'] } };
        assert.deepEqual(g.value, expectedValue);
        assert.equal(r.etag, zcrc(JSON.stringify(expectedValue)));
        assert.equal(g._etag, r.etag);

        await put(fx.c, 'trig', 'rename-k2', { n: 2 });
        await rejects(get(fx.c, 'trig', 'rename-k2'), { name: 'ObjectNotFoundError' });
        assert.equal((await get(fx.c, 'trig', 'k2')).value.n, 2);

        const r3 = await put(fx.c, 'trig', 'k1', { replace: true });
        assert.deepEqual((await get(fx.c, 'trig', 'k1')).value, { replaced: true, n: 9 });
        assert.equal(r3.etag, zcrc('{"replaced":true,"n":9}'));
        assert.deepEqual(await findKeySet(fx.c, 'trig', '(n=9)'), ['k1']);
        await auditRows();
    });

    test('a post trigger writes through req.pg inside the transaction (put and delete)',
        async () => {
            await setup();
            await auditRows();
            await put(fx.c, 'trig', 'p1', { n: 1 }, { headers: { who: 'me' } });
            const id = (await get(fx.c, 'trig', 'p1'))._id;
            await put(fx.c, 'trig', 'p1', { n: 2 });
            await del(fx.c, 'trig', 'p1', { headers: { why: 'gone' } });
            const rows = await auditRows();
            assert.equal(rows.length, 3);
            assert.deepEqual(rows.map((r) => [r.bucket, r.k, r.id, r.upd, JSON.parse(r.hdr)]), [
                ['trig', 'p1', String(id), false, { who: 'me' }],
                ['trig', 'p1', null, true, {}],
                ['trig', 'p1', String(id), false, { why: 'gone' }],
            ]);
            /* insert: the post trigger's value carries _id */
            assert.equal(JSON.parse(rows[0].val)._id, id);
            assert.equal(JSON.parse(rows[0].val).n, 1);
            assert.equal(rows[2].val, null);
            /* a failed put rolls the trigger's write back */
            await put(fx.c, 'trig', 'p2', { n: 1 });
            await auditRows();
            await rejects(put(fx.c, 'trig', 'p2', { n: 3 }, { etag: 'ABCDEF01' }),
                { name: 'EtagConflictError' });
            assert.deepEqual(await auditRows(), []);
        });

    test('throwing, failing and forbidden triggers fail only their RPC', async () => {
        await createBucket(fx.c, 'boom', {
            pre: [
                'function boom(req, cb) {\n' +
                '  if (req.value.mode === "throw") { throw new Error("kaboom"); }\n' +
                '  if (req.value.mode === "cb") { var e = new Error("nope"); ' +
                'e.name = "CustomTriggerError"; return cb(e); }\n' +
                '  if (req.value.mode === "require") { require("fs"); }\n' +
                '  if (req.value.mode === "crc") { req.value.crc = typeof require("crc"); }\n' +
                '  if (req.value.mode === "twice") { cb(); return cb(new Error("late")); }\n' +
                '  if (req.value.mode === "async") { return setTimeout(function () { ' +
                'cb(new Error("async")); }, 10); }\n' +
                '  if (req.value.mode === "loop") { for (;;) { } }\n' +
                '  cb();\n' +
                '}',
            ],
        });
        await rejects(put(fx.c, 'boom', 'k', { mode: 'throw' }),
            { name: 'Error', message: 'kaboom' });
        await rejects(put(fx.c, 'boom', 'k', { mode: 'cb' }),
            { name: 'CustomTriggerError', message: 'nope' });
        await rejects(put(fx.c, 'boom', 'k', { mode: 'require' }),
            { name: 'InvalidRequireError', message: '"fs" is not a permitted module' });
        await put(fx.c, 'boom', 'k', { mode: 'twice' });
        await put(fx.c, 'boom', 'k2', { mode: 'crc' });
        assert.equal((await get(fx.c, 'boom', 'k2')).value.crc, 'object');
        /* setTimeout is not among the context's globals */
        await rejects(put(fx.c, 'boom', 'k3', { mode: 'async' }),
            { name: 'ReferenceError', message: 'setTimeout is not defined' });
        await rejects(get(fx.c, 'boom', 'k3'), { name: 'ObjectNotFoundError' });
        /* a trigger that never returns is stopped by features.triggerTimeout (1 s) */
        await rejects(put(fx.c, 'boom', 'k5', { mode: 'loop' }),
            { name: 'Error', message: /^Script execution timed out/ });
        /* the server is still up and serving */
        await call(fx.c, 'ping', {});
        await put(fx.c, 'boom', 'k4', { mode: 'fine' });
        assert.equal(fx.srv.proc.exitCode, null);
    });

    test('a post trigger query error nobody listens for fails the RPC (no crash, rolled back)',
        async () => {
            await createBucket(fx.c, 'deaf', {
                post: [
                    'function deaf(req, cb) { req.pg.query("SELECT * FROM no_such_table"); ' +
                    'cb(); }',
                ],
            });
            await rejects(put(fx.c, 'deaf', 'k', { v: 1 }), {
                name: 'error', message: 'relation "no_such_table" does not exist',
            });
            await rejects(get(fx.c, 'deaf', 'k'), { name: 'ObjectNotFoundError' });
            await call(fx.c, 'ping', {});
            assert.equal(fx.srv.proc.exitCode, null);
        });
});

describe('trigger sandbox (real server)', () => {
    test('objects reached through req, req.pg (rows, end, errors), cb and require are ' +
        'context-realm: no path to process', async () => {
        await createBucket(fx.c, 'sandboxed', { pre: [
            'function probe(req, cb) {\n' +
            '  var leaks = [], n = 0;\n' +
            '  function check(name, x) {\n' +
            '    if (x === null || (typeof x !== "object" && typeof x !== "function")) { return; }\n' +
            '    n++;\n' +
            '    var F = (typeof x === "function" ? x : x.constructor).constructor;\n' +
            '    if (F !== Function) { leaks.push(name); }\n' +
            '    try { if (F("return typeof process")() !== "undefined") { leaks.push(name + "!"); } }\n' +
            '    catch (e) { }\n' +
            '  }\n' +
            '  check("req", req); check("value", req.value); check("log", req.log);\n' +
            '  check("log.info", req.log.info); check("pg", req.pg); check("cb", cb);\n' +
            '  check("require", require); check("crc", require("crc").crc32);\n' +
            '  try { require("fs"); } catch (e) { check("requireError", e); }\n' +
            '  var q = req.pg.query("SELECT now() AS t, $1::int AS i", [7]);\n' +
            '  check("emitter", q);\n' +
            '  q.on("row", function (r) { check("row", r); check("row.t", r.t);\n' +
            '    req.value.rowT = r.t instanceof Date; });\n' +
            '  q.on("end", function (res) { check("end", res);\n' +
            '    req.value.leaks = leaks; req.value.n = n; cb(); });\n' +
            '}',
        ] });
        await put(fx.c, 'sandboxed', 'k', { v: 1 });
        const g = await get(fx.c, 'sandboxed', 'k');
        assert.deepEqual(g.value.leaks, []);
        assert.ok(g.value.n >= 12, `checked ${g.value.n}`);
        assert.equal(g.value.rowT, true);
        assert.equal(fx.srv.proc.exitCode, null);
    });
});

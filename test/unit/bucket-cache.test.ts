/*
 * The bucket cache's LRU order (src/schema/bucket.ts BucketCache): a get
 * moves a bucket to the young end (skipped when it already is the most
 * recently used one), the oldest goes when the cache is full, an entry
 * expires after 300 s, an eviction forgets it.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BucketCache, bucketFromRow, type Bucket } from '../../src/schema/bucket';

function bucket(name: string, loadedAt = Date.now()): Bucket {
    const b = bucketFromRow({ name, index: '{}', pre: '[]', post: '[]', options: null,
        mtime: new Date() });
    return { ...b, loadedAt };
}

function names(c: BucketCache): string[] {
    return c.entries().map((b) => b.name);
}

test('get moves a bucket to the young end; the oldest is dropped when full', () => {
    const c = new BucketCache();
    for (const n of ['a', 'b', 'c']) {
        c.set(bucket(n));
    }
    assert.equal(c.get('a')?.name, 'a');
    assert.deepEqual(names(c), ['b', 'c', 'a']);
    /* the most recent one stays where it is */
    assert.equal(c.get('a')?.name, 'a');
    assert.deepEqual(names(c), ['b', 'c', 'a']);
    assert.equal(c.get('b')?.name, 'b');
    assert.deepEqual(names(c), ['c', 'a', 'b']);
    for (let i = 0; i < 97; i++) {
        c.set(bucket(`x${i}`));
    }
    assert.equal(c.entries().length, 100);
    assert.equal(c.lruDrops, 0);
    c.get('c');
    c.set(bucket('y'));
    assert.equal(c.lruDrops, 1);
    assert.equal(c.get('a'), undefined, 'a was the oldest');
    assert.equal(c.get('c')?.name, 'c');
});

test('an evicted or expired bucket is gone, and a new one is the young end again', () => {
    const c = new BucketCache();
    c.set(bucket('a'));
    c.set(bucket('b'));
    c.evict('b');
    assert.equal(c.evictions, 1);
    assert.equal(c.get('b'), undefined);
    c.set(bucket('b'));
    c.get('a');
    assert.deepEqual(names(c), ['b', 'a']);
    c.set(bucket('old', Date.now() - 301 * 1000));
    assert.equal(c.get('old'), undefined);
    assert.equal(c.expired, 1);
    c.get('b');
    assert.deepEqual(names(c), ['a', 'b']);
});

/*
 * The view of a bucket that the filter compiler, the post-filter and the
 * write conversions need: its name, its declared index fields, which of
 * those are still being reindexed, and whether the table has the extended
 * `_idx` id column (storage.md §13).
 *
 *   index        every declared field  ──► column exists, may be sorted on,
 *                                          counts as "indexed" for requireIndexes
 *   reindexing   fields listed in reindex_active (any version)
 *   usable       index minus reindexing ──► produces SQL in filters, gets
 *                                          typed values in the post-filter
 *
 * Lookups go through own-property checks only: filter attributes are
 * client-controlled and may be "constructor" or "__proto__".
 */

import type { IndexType } from './index-types';

export interface IndexSpec {
    readonly type: IndexType;
    readonly unique?: boolean;
}

export interface BucketSchema {
    readonly name: string;
    readonly index: Readonly<Record<string, IndexSpec>>;
    readonly reindexing: ReadonlySet<string>;
    readonly hasExtendedId: boolean;
}

/* The declared index entry for `field`, reindexing or not. */
export function declaredIndex(bucket: BucketSchema, field: string): IndexSpec | undefined {
    return Object.prototype.hasOwnProperty.call(bucket.index, field)
        ? bucket.index[field]
        : undefined;
}

/* The index entry for `field` if it is usable (declared, not reindexing). */
export function usableIndex(bucket: BucketSchema, field: string): IndexSpec | undefined {
    if (bucket.reindexing.has(field)) {
        return undefined;
    }
    return declaredIndex(bucket, field);
}

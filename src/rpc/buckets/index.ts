/*
 * The five bucket RPCs (moray-api §7.1-§7.5), one module each:
 *
 *   createBucket   create-bucket.ts   config row + sequence + table + indexes
 *   getBucket      get-bucket.ts      the raw config row (JSON columns as text)
 *   listBuckets    list-buckets.ts    every raw config row, streamed
 *   updateBucket   update-bucket.ts   version gate, column/index diff, reindex_active
 *   delBucket      del-bucket.ts      config row, table, sequence, locking table
 *
 * All DDL text comes from src/schema/ddl.ts.  None of them reads the
 * bucket cache; update and delete evict from it.
 */

import type { MorayRpc } from '../context';
import { createBucket } from './create-bucket';
import { delBucket } from './del-bucket';
import { getBucket } from './get-bucket';
import { listBuckets } from './list-buckets';
import { updateBucket } from './update-bucket';

export const BUCKET_RPCS: MorayRpc[] = [
    createBucket,
    getBucket,
    listBuckets,
    updateBucket,
    delBucket,
];

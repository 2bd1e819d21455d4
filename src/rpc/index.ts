/* Every Moray RPC, one module each. */

import type { MorayRpc } from './context';
import { ping } from './ping';
import { version } from './version';
import { getTokens } from './get-tokens';
import { putObject } from './objects/put-object';
import { getObject } from './objects/get-object';
import { delObject } from './objects/del-object';
import { findObjects } from './objects/find-objects';
import { sql } from './sql';
import { updateObjects, deleteMany } from './objects/update-objects';
import { batch } from './objects/batch';
import { reindexObjects } from './objects/reindex-objects';
import { listen, unlisten } from './listen';
import { BUCKET_RPCS } from './buckets';

export const ALL_RPCS: readonly MorayRpc[] = [
    ping,
    version,
    getTokens,
    ...BUCKET_RPCS,
    putObject,
    getObject,
    delObject,
    findObjects,
    sql,
    updateObjects,
    deleteMany,
    batch,
    reindexObjects,
    listen,
    unlisten,
];

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

export const ALL_RPCS: readonly MorayRpc[] = [
    ping,
    version,
    getTokens,
    putObject,
    getObject,
    delObject,
    findObjects,
    sql,
];

/*
 * updateBucket(name, config, options): END only
 * (moray-api §5.5, §7.4; storage.md §10.4, §12).
 *
 * One READ COMMITTED transaction, in pipeline steps:
 *
 *   getPGHandleAndTransaction   BEGIN
 *   validateBucket              §5.1 checks 1-10, then features.triggers
 *   loadBucket                  [ADD COLUMN reindex_active, first time only]
 *                               SELECT ... FOR UPDATE  ──none──► BucketNotFoundError
 *                               version gate ──────────────────► BucketVersionError
 *   ensureReindexProperty       (done by loadBucket, see below)
 *   calculateDiff               old vs new index: add / del / mod
 *   ensureRowVer                versioned and not no_reindex: _rver column + b__rver_idx
 *   updateConfig                UPDATE buckets_config (+ reindex_active when versioned)
 *   dropColumns                 ALTER TABLE b DROP COLUMN <del>...
 *   addColumns                  ALTER TABLE b ADD COLUMN <add> <PGTYPE>...
 *   createIndexes               CREATE  INDEX b_<add>_idx ... (non-unique adds)
 *   createUniqueIndexes         CREATE UNIQUE INDEX b_<add>_idx ... WHERE <add> IS NOT NULL
 *   shootdownBucket             evict from this process's bucket cache
 *   COMMIT                      (and evict again: see below)
 *
 * Version gate: stored = options.version of the row (0 if none), requested
 * = the new options.version (0 if none).  stored ≠ 0 and stored ≥ requested
 * → BucketVersionError "<name> has a newer version than <requested>
 * (<stored>)".  A stored 0 never blocks.
 *
 * reindex_active (versioned update without no_reindex): the stored map
 * with map[requested] = its old list ∪ the added fields, written even when
 * nothing was added ({"2":[]}); readers treat listed fields as not yet
 * usable until reindexObjects finishes.  Changed definitions (`mod`) only
 * change the stored JSON: no column type, index or uniqueness change.
 *
 * Deviations from the reference, all about concurrency and naming:
 *   - The lazy `ALTER TABLE buckets_config ADD COLUMN reindex_active` runs
 *     *before* this transaction first reads buckets_config (the reference
 *     read first).  Two first-ever updateBuckets that each hold a read
 *     lock and then both ask for the ACCESS EXCLUSIVE lock deadlock; taking
 *     the exclusive lock first makes the second simply wait, and
 *     `IF NOT EXISTS` makes it a no-op for the one that lost the race.  The
 *     ensureReindexProperty step still fires its probes, in its place.
 *   - The config row is read FOR UPDATE, so concurrent updates of one
 *     bucket serialise and the second diffs against the first's result
 *     (the reference could try to add the same column twice).
 *   - Catalog lookups for _rver use the lower-cased (stored) table and
 *     index names; the reference passed the name as given, so a mixed-case
 *     bucket failed its second versioned update with "Invalid SQL".
 *   - The cache is evicted again after COMMIT, so a concurrent request
 *     that reloaded the old row between the eviction and the commit does
 *     not keep it for 300 s.
 */

import { errors } from '../../errors/catalog';
import type { PgHandle, Row } from '../../pg/handle';
import { probe } from '../../probes';
import type { BucketConfig, IndexDef } from '../../schema/bucket-config';
import {
    ADD_REINDEX_ACTIVE_SQL, addColumnSql, addFieldIndexSql, addRverColumnSql,
    createRverIndexSql, dropColumnSql, rverIndexName, tableName,
} from '../../schema/ddl';
import { withConnection, type AppServices, type MorayRequest, type MorayRpc } from '../context';
import { ddl, validateForServer } from './create-bucket';

const UPDATEBUCKET_START = probe('moray', 'updatebucket-start');
const UPDATEBUCKET_DONE = probe('moray', 'updatebucket-done');

export const HAS_REINDEX_ACTIVE_SQL =
    'SELECT 1 FROM pg_catalog.pg_attribute WHERE attrelid = ' +
    "to_regclass('buckets_config') AND attname = 'reindex_active' AND NOT attisdropped";

export const LOCK_CONFIG_SQL =
    'SELECT name, index, pre, post, options, reindex_active FROM buckets_config ' +
    'WHERE name = $1 FOR UPDATE';

export const HAS_RVER_SQL =
    'SELECT column_name FROM information_schema.columns WHERE ' +
    'table_schema = current_schema() AND table_name = $1 AND column_name = $2';

export const HAS_RVER_INDEX_SQL =
    'SELECT indexname FROM pg_catalog.pg_indexes WHERE ' +
    'schemaname = current_schema() AND tablename = $1 AND indexname = $2';

const UPDATE_CONFIG_SQL =
    'UPDATE buckets_config SET index = $1, pre = $2, post = $3, options = $4 WHERE name = $5';

const UPDATE_CONFIG_REINDEX_SQL =
    'UPDATE buckets_config SET index = $1, pre = $2, post = $3, options = $4, ' +
    'reindex_active = $5 WHERE name = $6';

type ReindexMap = Record<string, string[]>;

export interface IndexDiff {
    readonly add: string[];
    readonly del: string[];
    readonly mod: string[];
}

function hasOwn(o: object, k: string): boolean {
    return Object.prototype.hasOwnProperty.call(o, k);
}

function parseObject(text: unknown): Record<string, unknown> {
    if (typeof text !== 'string' || text.length === 0) {
        return {};
    }
    const v: unknown = JSON.parse(text);
    return typeof v === 'object' && v !== null && !Array.isArray(v)
        ? v as Record<string, unknown> : {};
}

/* Order-insensitive equality of two index definitions ({type, unique}). */
function sameDefinition(a: unknown, b: unknown): boolean {
    if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) {
        return a === b;
    }
    const ka = Object.keys(a);
    const kb = Object.keys(b);
    return ka.length === kb.length && ka.every((k) => hasOwn(b, k) &&
        JSON.stringify((a as Record<string, unknown>)[k]) ===
        JSON.stringify((b as Record<string, unknown>)[k]));
}

/* Field-name diff of two index maps, each list in its map's key order. */
export function diffIndexes(before: Record<string, unknown>,
    after: Readonly<Record<string, IndexDef>>): IndexDiff {
    const add: string[] = [];
    const del: string[] = [];
    const mod: string[] = [];
    for (const k of Object.keys(after)) {
        if (!hasOwn(before, k)) {
            add.push(k);
        } else if (!sameDefinition(before[k], after[k])) {
            mod.push(k);
        }
    }
    for (const k of Object.keys(before)) {
        if (!hasOwn(after, k)) {
            del.push(k);
        }
    }
    return { add, del, mod };
}

/* reindex_active after this update: map[version] = old list ∪ added. */
export function mergeReindexActive(stored: unknown, version: number,
    added: readonly string[]): ReindexMap {
    const map = parseObject(stored) as ReindexMap;
    const key = String(version);
    const prev = hasOwn(map, key) && Array.isArray(map[key]) ? map[key]! : [];
    const merged = [...prev];
    for (const f of added) {
        if (!merged.includes(f)) {
            merged.push(f);
        }
    }
    Object.defineProperty(map, key, {
        value: merged, enumerable: true, writable: true, configurable: true,
    });
    return map;
}

function storedVersion(row: Row): number {
    const v = parseObject(row['options'])['version'];
    return parseInt(String(v || 0), 10) || 0;
}

async function ensureReindexColumn(pg: PgHandle): Promise<void> {
    const r = await pg.query(HAS_REINDEX_ACTIVE_SQL, undefined, { prepare: true });
    if (r.rows.length === 0) {
        await ddl(pg, ADD_REINDEX_ACTIVE_SQL);
    }
}

async function ensureRowVersion(pg: PgHandle, name: string): Promise<void> {
    const table = tableName(name);
    const col = await pg.query(HAS_RVER_SQL, [table, '_rver']);
    if (col.rows.length === 0) {
        await ddl(pg, addRverColumnSql(name));
    }
    const idx = await pg.query(HAS_RVER_INDEX_SQL, [table, rverIndexName(name)]);
    if (idx.rows.length === 0) {
        await ddl(pg, createRverIndexSql(name));
    }
}

async function update(app: AppServices, req: MorayRequest, pg: PgHandle, name: string,
    config: object): Promise<void> {
    const cfg: BucketConfig = await req.step('validateBucket',
        () => validateForServer(app, name, config));
    const requested = cfg.options.version;

    const row = await req.step('loadBucket', async () => {
        await ensureReindexColumn(pg);
        const r = await pg.query(LOCK_CONFIG_SQL, [name]);
        const found = r.rows[0];
        if (found === undefined) {
            throw errors.bucketNotFound(name);
        }
        const stored = storedVersion(found);
        if (stored !== 0 && stored >= requested) {
            throw errors.bucketVersion(name, requested, stored);
        }
        return found;
    });

    /* loadBucket already made sure the column exists (see the design note). */
    req.skipStep('ensureReindexProperty');

    const diff = await req.step('calculateDiff', () => {
        const d = diffIndexes(parseObject(row['index']), cfg.index);
        req.log.debug({ bucket: name, diff: d }, 'updateBucket: index diff');
        return d;
    });

    const reindex = requested !== 0 && req.options['no_reindex'] !== true;
    if (reindex) {
        await req.step('ensureRowVer', () => ensureRowVersion(pg, name));
    } else {
        req.skipStep('ensureRowVer');
    }

    await req.step('updateConfig', async () => {
        const values: unknown[] = [JSON.stringify(cfg.index), JSON.stringify(cfg.pre),
            JSON.stringify(cfg.post), JSON.stringify(cfg.options)];
        if (reindex) {
            values.push(JSON.stringify(
                mergeReindexActive(row['reindex_active'], requested, diff.add)));
            await pg.query(UPDATE_CONFIG_REINDEX_SQL, [...values, name]);
        } else {
            await pg.query(UPDATE_CONFIG_SQL, [...values, name]);
        }
    });

    await req.step('dropColumns', async () => {
        for (const f of diff.del) {
            await ddl(pg, dropColumnSql(name, f));
        }
    });

    await req.step('addColumns', async () => {
        for (const f of diff.add) {
            await ddl(pg, addColumnSql(name, f, cfg.index[f]!));
        }
    });

    await req.step('createIndexes', async () => {
        for (const f of diff.add) {
            if (cfg.index[f]!.unique !== true) {
                await ddl(pg, addFieldIndexSql(name, f, cfg.index[f]!));
            }
        }
    });

    await req.step('createUniqueIndexes', async () => {
        for (const f of diff.add) {
            if (cfg.index[f]!.unique === true) {
                await ddl(pg, addFieldIndexSql(name, f, cfg.index[f]!));
            }
        }
    });

    await req.step('shootdownBucket', () => app.buckets.evict(name));
}

export const updateBucket: MorayRpc = {
    name: 'updateBucket',
    async run(app: AppServices, req: MorayRequest): Promise<void> {
        const name = req.args[0] as string;
        const config = req.args[1] as object;
        UPDATEBUCKET_START.fire(() => [req.msgid, req.reqId, name]);
        try {
            await withConnection(app, req, 'getPGHandleAndTransaction', 'READ COMMITTED',
                (pg) => update(app, req, pg, name, config));
            app.buckets.evict(name);
        } finally {
            UPDATEBUCKET_DONE.fire(() => [req.msgid, req.reqId, name]);
        }
    },
};

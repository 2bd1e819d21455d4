/*
 * createBucket(bucket, config, options): END only
 * (moray-api §7.1, storage.md §3, §10.1).
 *
 * One READ COMMITTED transaction; each box is a pipeline step (handler
 * probes, observability §10.2):
 *
 *   getPGHandleAndTransaction ─► validateBucket ─► insertConfig ─► createSequence
 *     BEGIN                        §5.1 checks      INSERT INTO      CREATE SEQUENCE b_serial
 *                                  1-10, then the   buckets_config
 *                                  triggers switch
 *   ─► createLockingSerial ─► createTable ─► createIndexes ─► COMMIT
 *      guaranteeOrder only:    §3.1 layout,    non-unique fields,
 *      b_locking_serial (1)    UNIQUE columns  then _id _etag _mtime _vnode
 *
 * Failure modes, in the order they can occur (any one rolls everything
 * back, so a failed create leaves no half-made bucket):
 *   - validation: InvalidBucketConfigError / NotFunctionError /
 *     InvalidBucketNameError (bucket-config.ts); with features.triggers
 *     off, a config with pre/post triggers is InvalidBucketConfigError;
 *   - the name is taken (primary key of buckets_config, SQLSTATE 23505):
 *     BucketConflictError.  A concurrent creator of the same name blocks on
 *     our uncommitted row and gets this error once we commit; node-moray's
 *     putBucket treats it as success.  Any other INSERT failure is
 *     InternalError "unable to create bucket";
 *   - a leftover relation (say a sequence without a config row), or a
 *     bucket whose name differs from an existing one only by case (both
 *     fold to the same table): the raw PostgreSQL "already exists" error;
 *   - two index names equal up to case: raw "column specified more than
 *     once" (42701 → InternalError "Invalid SQL: ...").
 *
 * The createbucket-done probe fires when the RPC settles, success or not.
 */

import { errors } from '../../errors/catalog';
import type { PgHandle } from '../../pg/handle';
import { probe } from '../../probes';
import { validateBucketConfigAsync, type BucketConfig } from '../../schema/bucket-config';
import {
    createBucketIndexesSql, createLockingSerialSql, createSequenceSql, createTableSql,
} from '../../schema/ddl';
import { withConnection, type AppServices, type MorayRequest, type MorayRpc } from '../context';

const CREATEBUCKET_START = probe('moray', 'createbucket-start');
const CREATEBUCKET_DONE = probe('moray', 'createbucket-done');

export const INSERT_CONFIG_SQL =
    'INSERT INTO buckets_config (name, index, pre, post, options) VALUES ($1, $2, $3, $4, $5)';

export const TRIGGERS_DISABLED_MESSAGE = 'triggers are disabled on this server (features.triggers)';

/*
 * The §5.1 checks, then this server's own policy: with features.triggers
 * off, buckets may not carry triggers at all.  The policy check comes last
 * so that a malformed config reports the same error as on any server.
 */
export async function validateForServer(app: AppServices, name: string,
    config: object): Promise<BucketConfig> {
    const cfg = await validateBucketConfigAsync(name, config);
    if (!app.config.features.triggers && (cfg.pre.length > 0 || cfg.post.length > 0)) {
        throw errors.invalidBucketConfig(TRIGGERS_DISABLED_MESSAGE);
    }
    return cfg;
}

/* DDL text is never worth a named prepared statement: run it unnamed. */
export function ddl(pg: PgHandle, sql: string): Promise<unknown> {
    return pg.query(sql, undefined, { prepare: false });
}

function isUniqueViolation(err: unknown): boolean {
    const e = err as { name?: unknown; info?: { sqlState?: unknown } } | null;
    return e !== null && typeof e === 'object' &&
        (e.name === 'UniqueAttributeError' || e.info?.sqlState === '23505');
}

export const createBucket: MorayRpc = {
    name: 'createBucket',
    async run(app: AppServices, req: MorayRequest): Promise<void> {
        const name = req.args[0] as string;
        const config = req.args[1] as object;
        CREATEBUCKET_START.fire(() => [req.msgid, req.reqId, name]);
        try {
            await withConnection(app, req, 'getPGHandleAndTransaction', 'READ COMMITTED',
                async (pg) => {
                    const cfg = await req.step('validateBucket',
                        () => validateForServer(app, name, config));

                    await req.step('insertConfig', async () => {
                        try {
                            await pg.query(INSERT_CONFIG_SQL, [name,
                                JSON.stringify(cfg.index), JSON.stringify(cfg.pre),
                                JSON.stringify(cfg.post), JSON.stringify(cfg.options)]);
                        } catch (err) {
                            if (isUniqueViolation(err)) {
                                throw errors.bucketConflict(name);
                            }
                            req.log.warn({ err, bucket: name }, 'createBucket: insert failed');
                            throw errors.internal('unable to create bucket');
                        }
                    });

                    await req.step('createSequence', () => ddl(pg, createSequenceSql(name)));

                    if (cfg.options.guaranteeOrder === true) {
                        await req.step('createLockingSerial', async () => {
                            for (const sql of createLockingSerialSql(name)) {
                                await ddl(pg, sql);
                            }
                        });
                    } else {
                        req.skipStep('createLockingSerial');
                    }

                    await req.step('createTable', () => ddl(pg, createTableSql(name, cfg.index)));

                    await req.step('createIndexes', async () => {
                        for (const sql of createBucketIndexesSql(name, cfg.index)) {
                            await ddl(pg, sql);
                        }
                    });
                });
            /* a stale entry could survive a delete+create done by another process */
            app.buckets.evict(name);
        } finally {
            CREATEBUCKET_DONE.fire(() => [req.msgid, req.reqId, name]);
        }
    },
};

/*
 * delBucket(bucket, options): END only
 * (moray-api §7.5, storage.md §10.5).
 *
 * One READ COMMITTED transaction, in pipeline steps:
 *
 *   getPGHandleAndTransaction   BEGIN
 *   validate                    buckets_config / moray / search → InvalidBucketNameError
 *   checkExists                 SELECT ... FOR UPDATE   ──none──► BucketNotFoundError
 *   deleteConfig                DELETE FROM buckets_config WHERE name = $1
 *   dropTable                   DROP TABLE b            (all objects go with it)
 *   dropSequence                DROP SEQUENCE IF EXISTS b_serial
 *   dropLockingSerial           DROP TABLE IF EXISTS b_locking_serial
 *   shootdownBucket             evict from this process's bucket cache
 *   COMMIT                      (and evict again, as updateBucket does)
 *
 * Only the reserved names are rejected up front (case-sensitive, as in the
 * reference); any other name that has no config row is "not found".  A
 * config row whose table is missing fails at dropTable with the raw
 * PostgreSQL error and nothing is deleted.  The IF EXISTS forms tolerate
 * legacy buckets (SERIAL ids with an owned `b__id_seq`, storage.md §3.4)
 * and buckets created without guaranteeOrder.
 *
 * The row lock makes a concurrent updateBucket of the same bucket wait and
 * then find it gone (BucketNotFoundError) instead of racing the DROP.
 */

import { errors } from '../../errors/catalog';
import { probe } from '../../probes';
import { isReservedBucketName } from '../../schema/bucket-config';
import { dropLockingSerialSql, dropSequenceSql, dropTableSql } from '../../schema/ddl';
import { withConnection, type AppServices, type MorayRequest, type MorayRpc } from '../context';
import { ddl } from './create-bucket';

const DELBUCKET_START = probe('moray', 'delbucket-start');
const DELBUCKET_DONE = probe('moray', 'delbucket-done');

export const CHECK_EXISTS_SQL = 'SELECT name FROM buckets_config WHERE name = $1 FOR UPDATE';

export const DELETE_CONFIG_SQL = 'DELETE FROM buckets_config WHERE name = $1';

export const delBucket: MorayRpc = {
    name: 'delBucket',
    async run(app: AppServices, req: MorayRequest): Promise<void> {
        const name = req.args[0] as string;
        DELBUCKET_START.fire(() => [req.msgid, req.reqId, name]);
        try {
            await withConnection(app, req, 'getPGHandleAndTransaction', 'READ COMMITTED',
                async (pg) => {
                    await req.step('validate', () => {
                        if (isReservedBucketName(name)) {
                            throw errors.invalidBucketName(name);
                        }
                    });
                    await req.step('checkExists', async () => {
                        const r = await pg.query(CHECK_EXISTS_SQL, [name]);
                        if (r.rows.length === 0) {
                            throw errors.bucketNotFound(name);
                        }
                    });
                    await req.step('deleteConfig', () => pg.query(DELETE_CONFIG_SQL, [name]));
                    await req.step('dropTable', () => ddl(pg, dropTableSql(name)));
                    await req.step('dropSequence', () => ddl(pg, dropSequenceSql(name)));
                    await req.step('dropLockingSerial', () => ddl(pg, dropLockingSerialSql(name)));
                    await req.step('shootdownBucket', () => app.buckets.evict(name));
                });
            app.buckets.evict(name);
        } finally {
            DELBUCKET_DONE.fire(() => [req.msgid, req.reqId, name]);
        }
    },
};

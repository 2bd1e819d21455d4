/*
 * The primary + standby PostgreSQL pair of helpers/pg-replica works:
 * a table created on the primary reaches the standby, the standby refuses
 * writes, a failover promotes it and it then accepts writes as `moray`
 * with the data acknowledged before the failover present.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as pg from 'pg';
import { pgReplicaSkip, startPgReplicaPair } from '../helpers/pg-replica';

const skip = pgReplicaSkip();
if (skip !== false) {
    console.log(`# skipping pg-replica test: ${skip}`);
}

test('pg-replica: streaming replication, then failover and writes on the promoted standby', { skip }, async (t) => {
    const t0 = Date.now();
    const pair = await startPgReplicaPair();
    t.diagnostic(`pair up in ${Date.now() - t0} ms (${pair.peers[0].pgUrl} -> ${pair.peers[1].pgUrl})`);
    const [p0, p1] = pair.peers;
    const moray = async (port: number, sql: string, params: unknown[] = []): Promise<pg.QueryResult> => {
        const c = new pg.Client({ host: '127.0.0.1', port, user: 'moray', database: 'moray' });
        await c.connect();
        try {
            return await c.query(sql, params);
        } finally {
            await c.end();
        }
    };
    try {
        const rep = await pair.query(p0, 'SELECT application_name, state, sync_state FROM pg_stat_replication');
        assert.deepEqual(rep.rows, [{ application_name: 'peer1', state: 'streaming', sync_state: 'sync' }]);
        assert.equal(pair.primary(), p0);

        await moray(p0.port, 'CREATE TABLE t (k text PRIMARY KEY, v int NOT NULL)');
        await moray(p0.port, "INSERT INTO t VALUES ('a', 1), ('b', 2)");
        await pair.waitReplayed();
        const seen = await moray(p1.port, 'SELECT k, v FROM t ORDER BY k');
        assert.deepEqual(seen.rows, [{ k: 'a', v: 1 }, { k: 'b', v: 2 }]);
        assert.equal((await pair.query(p1, 'SELECT pg_is_in_recovery() AS r')).rows[0].r, true);
        await assert.rejects(moray(p1.port, "INSERT INTO t VALUES ('c', 3)"),
            (err: Error & { code?: string }) => err.code === '25006');

        /* synchronous commit: acknowledged on the primary => present on the standby */
        await moray(p0.port, "INSERT INTO t VALUES ('acked', 9)");

        const f0 = Date.now();
        await pair.failover();
        t.diagnostic(`failover (immediate stop + promote) in ${Date.now() - f0} ms`);
        assert.equal(pair.primary(), p1);
        assert.equal(p0.running, false);
        assert.equal((await pair.query(p1, 'SELECT pg_is_in_recovery() AS r')).rows[0].r, false);
        await moray(p1.port, "INSERT INTO t VALUES ('c', 3)");
        await moray(p1.port, "UPDATE t SET v = v + 10 WHERE k = 'a'");
        const after = await moray(p1.port, 'SELECT k, v FROM t ORDER BY k');
        assert.deepEqual(after.rows, [
            { k: 'a', v: 11 }, { k: 'acked', v: 9 }, { k: 'b', v: 2 }, { k: 'c', v: 3 },
        ]);
        await assert.rejects(moray(p0.port, 'SELECT 1'), /ECONNREFUSED/);
    } finally {
        await pair.stop();
    }
});

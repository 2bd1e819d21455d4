/*
 * Helpers for tests that drive src/pg/pool.ts directly against the
 * runner's PostgreSQL (test/integration/pg-pipeline*.test.ts): a pool on a
 * test database, opened until every connection is IDLE and closed after
 * the test body, a silent logger, and waits that report a hang by name
 * instead of blocking the run.
 */

import { PgPool, type Logger } from '../../src/pg/pool';
import type { PgTunables } from '../../src/config';
import { StaticTopology } from '../../src/pg/topology';
import { morayTypes } from '../../src/pg/types';
import type { TestDatabase } from './harness';

export const quiet: Logger = {
    info() {}, warn() {}, error() {}, debug() {}, trace() {},
    child() {
        return quiet;
    },
};

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export type PoolTunables = Partial<PgTunables> & { maxConnections: number };

/* Run fn with a pool on `db` whose connections are all open (IDLE); close it after. */
export async function withTestPool(db: TestDatabase, t: PoolTunables,
    fn: (pool: PgPool) => Promise<void>): Promise<void> {
    const topology = new StaticTopology(db.url);
    const pool = new PgPool({
        topology, database: db.database, user: 'postgres', log: quiet, types: morayTypes,
        tunables: { connectTimeout: 2000, checkInterval: 0, maxQueueLength: 0, targetClaimDelay: 1000, ...t },
    });
    topology.start();
    pool.start();
    try {
        await until(() => pool.stats().idle === t.maxConnections, 'pool connections open');
        await fn(pool);
    } finally {
        await pool.close();
        await topology.stop();
    }
}

export async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!cond()) {
        if (Date.now() > deadline) {
            throw new Error(`timed out waiting for: ${what}`);
        }
        await sleep(10);
    }
}

/* Settle within `ms` or report a hang instead of blocking the run. */
export function bounded<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
    let t: NodeJS.Timeout;
    return Promise.race([
        p.finally(() => clearTimeout(t)),
        new Promise<never>((_, reject) => {
            t = setTimeout(() => reject(new Error(`hung: ${what}`)), ms);
        }),
    ]);
}

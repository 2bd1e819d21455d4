/*
 * Create `buckets_config` when the database lacks it (what Joyent's
 * pg-setup.js did once per database; storage.md §2).  Idempotent; the
 * `reindex_active` column is left to updateBucket, as in the reference, so
 * a database we touch stays readable by the reference server.
 *
 * The Fast listener does not wait for the database (observability.md §6):
 * start() waits for the bootstrap for a short while, then lets it go on
 * retrying in the background while RPCs that need the database fail with
 * the usual connection errors.
 */

import type { AppServices } from '../rpc/context';

export const CREATE_BUCKETS_CONFIG = `CREATE TABLE IF NOT EXISTS buckets_config (
    name text PRIMARY KEY,
    index text NOT NULL,
    pre text NOT NULL,
    post text NOT NULL,
    options text,
    mtime timestamp without time zone DEFAULT now() NOT NULL
)`;

async function once(app: AppServices): Promise<void> {
    const pg = await app.pool.claim('bootstrap');
    try {
        const r = await pg.query(
            "SELECT 1 FROM pg_catalog.pg_tables WHERE tablename = 'buckets_config'",
            undefined, { prepare: false });
        if (r.rows.length > 0) {
            return;
        }
        await pg.query(CREATE_BUCKETS_CONFIG, undefined, { prepare: false });
        app.log.info('created table buckets_config (the database had no Moray schema)');
    } catch (err) {
        pg.broken = true;
        throw err;
    } finally {
        pg.release();
    }
}

export async function bootstrapSchema(app: AppServices, waitMs = 3000): Promise<void> {
    let done = false;
    const loop = (async () => {
        for (let attempt = 1; !app.pool.isClosing(); attempt++) {
            try {
                await once(app);
                done = true;
                return;
            } catch (err) {
                if (attempt === 1 || attempt % 10 === 0) {
                    app.log.warn({ err, attempt }, 'bootstrap: cannot check buckets_config yet; retrying');
                }
                /* 250 ms, doubling to 2 s: catch a database that comes back soon */
                const delay = Math.min(2000, 250 * 2 ** Math.min(attempt - 1, 3));
                await new Promise((r) => setTimeout(r, delay).unref());
            }
        }
    })();
    await Promise.race([loop, new Promise((r) => setTimeout(r, waitMs).unref())]);
    if (!done) {
        app.log.warn('bootstrap still waiting for the database; serving anyway');
    }
}

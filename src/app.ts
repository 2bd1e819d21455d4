/*
 * The assembled server: everything main.ts starts, in one object that the
 * tests can also start in-process.
 *
 *   Config ─► topology (static URL | Manatee) ─► PgPool
 *          ─► FastServer + RpcRegistry (every RPC in rpc/index.ts)
 *          ─► monitoring HTTP server (kang, metrics)
 *
 * start(): bootstrap the schema (buckets_config), listen, log readiness.
 * stop():  stop accepting, let in-flight RPCs finish (bounded), close the
 *          pool and the topology source.
 */

import type { Config } from './config';
import { FastServer } from './fast/server';
import { PgPool, type Logger } from './pg/pool';
import { StaticTopology, type TopologySource } from './pg/topology';
import { RpcRegistry } from './rpc/registry';
import type { AppServices } from './rpc/context';
import { ALL_RPCS } from './rpc';
import { bootstrapSchema } from './schema/bootstrap';
import { morayTypes } from './pg/types';
import { metricsOf } from './observe/metrics';
import { BucketCache } from './schema/bucket';

export interface StartedAddress { port: number; address: string }

export interface DatabaseTarget {
    /* standalone/embedded: the URL; manatee: undefined */
    url?: string;
    topology?: TopologySource;
    database: string;
    user?: string;
}

export class MorayServer {
    readonly fast: FastServer;
    readonly pool: PgPool;
    readonly registry: RpcRegistry;
    readonly services: AppServices;
    readonly topology: TopologySource;
    readonly extraStops: (() => Promise<void>)[] = [];

    constructor(readonly config: Config, readonly log: Logger, db: DatabaseTarget) {
        this.topology = db.topology ?? new StaticTopology(db.url!);
        const tunables = config.standalone?.pg ?? config.manatee?.pg ?? config.embedded?.pg ?? {
            maxConnections: 5, connectTimeout: 1000, checkInterval: 60000,
            maxQueueLength: 2000, targetClaimDelay: 500,
        };
        this.pool = new PgPool({
            topology: this.topology,
            tunables,
            database: db.database,
            user: db.user,
            log: log.child({ component: 'pgpool' }),
            types: morayTypes,
        });
        this.fast = new FastServer(config.limits, log.child({ component: 'fast' }));
        this.services = { config, pool: this.pool, log, buckets: new BucketCache(), ext: {} };
        this.registry = new RpcRegistry(this.services, this.fast);
        for (const rpc of ALL_RPCS) {
            this.registry.register(rpc);
        }
        const metrics = metricsOf(this.services);
        this.fast.onUnknownMethod = (m, s) => metrics.unknownMethod(m, s);
        const audit = config.features.audit;
        this.registry.onComplete((c) => {
            const errName = c.error === null ? null : String((c.error as Error).name ?? 'Error');
            metrics.requestDone(c.method, c.seconds, errName);
            if (audit) {
                log.info({ audit: true, method: c.method, bucket: c.bucket, req_id: c.reqId,
                    latency_ms: Math.round(c.seconds * 1e6) / 1000, error: errName }, 'audit');
            }
        });
    }

    async start(): Promise<StartedAddress> {
        this.topology.start();
        this.pool.start();
        await bootstrapSchema(this.services);
        const addr = await this.fast.listen(this.config.port, this.config.bindip);
        this.log.info({ address: addr }, `Moray listening on port ${addr.port}`);
        return { port: addr.port, address: addr.address };
    }

    async stop(): Promise<void> {
        await this.fast.close(this.config.limits.shutdownTimeout);
        for (const s of this.extraStops) {
            await s();
        }
        await this.pool.close();
        await this.topology.stop();
    }
}

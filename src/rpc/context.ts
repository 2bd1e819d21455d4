/*
 * What every Moray RPC handler works with.
 *
 *   FastRequest ──► MorayRequest (validated args, req_id, child logger,
 *                   per-step probes) ──► rpc.run(app, req)
 *
 * AppContext holds the process-wide services (config, pool, bucket cache,
 * listeners, counters).  RPC modules are plain objects { name, run } so
 * that each RPC lives in its own file and the registry (rpc/index.ts) is
 * one list.
 */

import { randomUUID } from 'node:crypto';
import type { Config } from '../config';
import type { FastRequest } from '../fast/request';
import type { PgPool } from '../pg/pool';
import type { PgHandle } from '../pg/handle';
import type { Logger } from '../pg/pool';
import { probe } from '../probes';
import { abortOnError, abortOnErrorEnabled } from '../probes/abort-on-error';
import { MorayError } from '../errors/catalog';
import type { BucketCache } from '../schema/bucket';

const HANDLER_START = probe('moray', 'handler-start');
const HANDLER_DONE = probe('moray', 'handler-done');
const HANDLER_ERROR = probe('moray', 'handler-error');

export interface AppServices {
    readonly config: Config;
    readonly pool: PgPool;
    readonly log: Logger;
    readonly buckets: BucketCache;
    /* filled by the modules that own them */
    readonly ext: Record<string, unknown>;
}

export class MorayRequest {
    readonly method: string;
    readonly msgid: number;
    readonly connId: number;
    private childLog: Logger | null = null;

    constructor(readonly fast: FastRequest, readonly args: unknown[],
        readonly options: Record<string, unknown>, readonly reqId: string,
        private readonly parentLog: Logger) {
        this.method = fast.method;
        this.msgid = fast.msgid;
        this.connId = fast.connId;
    }

    /*
     * The request's child logger (connId, msgid, route, req_id), created on
     * first use: most requests never log, and a bunyan child per request
     * is a measurable share of a getObject.
     */
    get log(): Logger {
        if (this.childLog === null) {
            this.childLog = this.parentLog.child({
                connId: this.connId, msgid: this.msgid, route: this.method, req_id: this.reqId,
            });
        }
        return this.childLog;
    }

    write(value: unknown): boolean {
        return this.fast.write(value);
    }

    drained(): Promise<void> {
        return this.fast.drained();
    }

    /*
     * Run one named pipeline step with handler-start/done/error probes.
     * Not an async function: a step whose work is synchronous (most are)
     * costs one resolved promise instead of an async frame and its extra
     * microtask turns; a request runs a dozen steps.
     */
    step<T>(handler: string, fn: () => Promise<T> | T): Promise<T> {
        const { msgid, method, reqId } = this;
        this.fast.phase = handler;
        HANDLER_START.fire(() => [msgid, method, handler, reqId]);
        let r: Promise<T> | T;
        try {
            r = fn();
        } catch (err) {
            return Promise.reject(this.stepFailed(handler, err));
        }
        if (typeof (r as { then?: unknown } | null)?.then === 'function') {
            return Promise.resolve(r).then((v) => {
                HANDLER_DONE.fire(() => [msgid, method, handler, reqId]);
                return v;
            }, (err: unknown) => {
                throw this.stepFailed(handler, err);
            });
        }
        HANDLER_DONE.fire(() => [msgid, method, handler, reqId]);
        return Promise.resolve(r);
    }

    private stepFailed(handler: string, err: unknown): unknown {
        const { msgid, method, reqId } = this;
        HANDLER_DONE.fire(() => [msgid, method, handler, reqId]);
        HANDLER_ERROR.fire(() => [msgid, reqId, method, handler, String(err)]);
        if (abortOnErrorEnabled()) {
            abortOnError('handler-error', String(err));
        }
        return err;
    }

    /* A step with no work in this configuration still fires its probes. */
    skipStep(handler: string): void {
        const { msgid, method, reqId } = this;
        HANDLER_START.fire(() => [msgid, method, handler, reqId]);
        HANDLER_DONE.fire(() => [msgid, method, handler, reqId]);
    }
}

export interface MorayRpc {
    readonly name: string;
    /* index of the options argument in `d` (getBucket: 0; most: last) */
    readonly optionsIndex?: number;
    run(app: AppServices, req: MorayRequest): Promise<void>;
}

export function reqIdOf(options: Record<string, unknown>): string {
    const r = options['req_id'];
    return typeof r === 'string' && r.length > 0 ? r : randomUUID();
}

export function optionTimeout(options: Record<string, unknown>): number {
    const t = options['timeout'];
    return typeof t === 'number' && t > 0 ? t : 0;
}

/*
 * Claim a connection, apply the request timeout, run fn, release.  With
 * a transaction `mode`, fn runs inside BEGIN/COMMIT (ROLLBACK on error); with 'shared',
 * fn runs single plain SELECTs only and may share a pipelined connection
 * with other reads (pool.claimShared); with 'shared-write', single
 * autocommit statements that may share one with other such writes.
 */
export async function withConnection<T>(app: AppServices, req: MorayRequest,
    stepName: string,
    mode: 'READ COMMITTED' | 'REPEATABLE READ' | 'shared' | 'shared-write' | null,
    fn: (pg: PgHandle) => Promise<T>): Promise<T> {
    const shared = mode === 'shared' || mode === 'shared-write';
    const txn = shared ? null : mode;
    const pg = await req.step(stepName, async () => {
        const h = shared ? await app.pool.claimShared(req.reqId, mode === 'shared' ? 'read' : 'write')
            : await app.pool.claim(req.reqId);
        try {
            h.setTimeout(optionTimeout(req.options));
            if (txn !== null) {
                await h.begin(txn);
            }
        } catch (err) {
            h.broken = true;
            h.release();
            throw err;
        }
        return h;
    });
    try {
        const r = await fn(pg);
        if (txn !== null) {
            await pg.commit();
        }
        return r;
    } catch (err) {
        if (txn !== null) {
            await pg.rollback();
        }
        if (!(err instanceof MorayError)) {
            pg.broken = true;
        }
        throw err;
    } finally {
        pg.release();
    }
}

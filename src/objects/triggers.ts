/*
 * pre/post triggers (moray-api.md §5.6, storage.md §14).
 *
 * Each trigger is JavaScript source stored in buckets_config.  We compile
 * it once per bucket load in a fresh node:vm context whose only globals are
 * `Error` and a `require` that allows `microtime` and `crc` (anything else
 * → InvalidRequireError), and call it as `fn(req, cb)`:
 *
 *   compile ──► for each trigger, in order:
 *                 fn.call(this, req, cb) inside the context, with a time
 *                 limit on its synchronous part (features.triggerTimeout)
 *                 ──► wait for cb (call-once; a deadline turns a trigger that
 *                     never calls back into an error)
 *               cb(err) / a throw ──► the RPC fails with that error, rolled back
 *             ──► settle req.pg: wait for every query a trigger started;
 *                 any that failed fails the RPC
 *
 * Failure modes, all operational (the RPC fails, the process lives on):
 *   - a synchronous throw, including InvalidRequireError from `require`;
 *   - a trigger that loops: the vm timeout stops it;
 *   - an exception thrown by a trigger's own req.pg event handler ('row',
 *     'end', 'error' listeners run from our code): it fails the trigger;
 *   - a req.pg query that fails.  Its 'error' event is emitted only when
 *     the trigger listens for it (an unheard EventEmitter 'error' throws);
 *     either way the transaction is now aborted, so COMMIT would silently
 *     roll back: the RPC fails with the query's error instead of pretending
 *     success;
 *   - a trigger that never calls back: "trigger did not call back in time"
 *     after CALLBACK_DEADLINE_MS.
 *
 * The first two need care because the server runs with
 * --abort-on-uncaught-exception: V8 aborts the process on any exception
 * that unwinds out of a vm script, and on the watchdog's termination, even
 * when the caller of runInContext catches them.  Node consults an abort
 * toggle first, and an uncaught-exception capture callback turns it off,
 * so every vm entry runs inside withAbortSuspended(), which installs a
 * no-op capture callback for the (synchronous) duration of the call only.
 *
 * Unlike the reference, a throwing trigger fails its RPC instead of
 * crashing the process.  `req.pg` offers the reference's event-emitter
 * query API over the request's own connection (inside its transaction).
 * The vm context is not a security boundary against hostile code; it keeps
 * well-meant triggers away from the process's globals.
 */

import { EventEmitter } from 'node:events';
import * as vm from 'node:vm';
import { errors, MorayError } from '../errors/catalog';
import type { PgHandle } from '../pg/handle';
import type { Bucket } from '../schema/bucket';

const ALLOWED = new Set(['microtime', 'crc']);
const CALLBACK_DEADLINE_MS = 30000;

const CALL_SCRIPT = new vm.Script('fn.call(__this, __req, __cb)');

/*
 * Run `fn` (which enters a vm context) with --abort-on-uncaught-exception
 * suspended, so that its exceptions, and the vm timeout, reach our own
 * try/catch instead of aborting the process.  Synchronous: nothing else
 * runs while the capture callback is installed.  If some other code owns
 * the capture callback already, the abort toggle is off anyway.
 */
function withAbortSuspended<T>(fn: () => T): T {
    if (process.hasUncaughtExceptionCaptureCallback()) {
        return fn();
    }
    process.setUncaughtExceptionCaptureCallback(() => undefined);
    try {
        return fn();
    } finally {
        process.setUncaughtExceptionCaptureCallback(null);
    }
}

export interface CompiledTriggers {
    pre: vm.Context[];
    post: vm.Context[];
}

function compileOne(source: string, timeoutMs: number): vm.Context {
    const sandbox: Record<string, unknown> = {
        Error,
        require: (name: string) => {
            if (!ALLOWED.has(name)) {
                throw errors.invalidRequire(name);
            }
            // eslint-disable-next-line @typescript-eslint/no-require-imports
            return require(name);
        },
    };
    const ctx = vm.createContext(sandbox);
    /*
     * createBucket/updateBucket already evaluated this source (in a worker)
     * and got a function; a source that now fails is an internal error.
     */
    try {
        withAbortSuspended(() => vm.runInContext('fn = ' + source, ctx, { timeout: timeoutMs }));
    } catch (err) {
        throw errors.internal(`trigger does not evaluate: ${String(err)}`);
    }
    if (typeof ctx['fn'] !== 'function') {
        throw errors.internal('trigger does not evaluate to a function');
    }
    return ctx;
}

/*
 * The bucket's compiled triggers.  With features.triggers off the server
 * refuses to write to a bucket that has triggers (running a write without
 * its triggers would silently break what they maintain, e.g. a changelog).
 */
export function compiledTriggers(b: Bucket,
    features: { triggers: boolean; triggerTimeout: number }): CompiledTriggers {
    if (!features.triggers) {
        throw errors.invalidBucketConfig(
            `${b.name} has triggers, which are disabled on this server (features.triggers)`);
    }
    const timeoutMs = features.triggerTimeout;
    if (b.compiled === undefined) {
        b.compiled = {
            pre: b.pre.map((s) => compileOne(s, timeoutMs)),
            post: b.post.map((s) => compileOne(s, timeoutMs)),
        } satisfies CompiledTriggers;
    }
    return b.compiled as CompiledTriggers;
}

function toMorayError(e: unknown): MorayError {
    if (e instanceof MorayError) {
        return e;
    }
    if (e !== null && typeof e === 'object' && 'message' in e) {
        const name = typeof (e as Error).name === 'string' ? (e as Error).name : 'Error';
        return new MorayError(name, String((e as Error).message));
    }
    return new MorayError('Error', String(e));
}

/*
 * The reference's req.pg: query(sql, args) → emitter of row / end / error,
 * over the request's connection.  Remembers what its queries did, so that
 * runTriggers can wait for them and fail the RPC on any error.
 */
export class TriggerPg {
    private readonly inflight = new Set<Promise<void>>();
    private failure: MorayError | null = null;
    /* where an exception thrown by a trigger's event handler goes */
    onHandlerError: ((err: unknown) => void) | null = null;

    constructor(private readonly pg: PgHandle) {}

    query(sql: string, args?: unknown[]): EventEmitter {
        const ee = new EventEmitter();
        const emit = (event: string, arg: unknown): void => {
            try {
                ee.emit(event, arg);
            } catch (err) {
                this.fail(toMorayError(err));
                this.onHandlerError?.(err);
            }
        };
        const p = this.pg.query(String(sql), args ?? [], { prepare: false }).then((r) => {
            for (const row of r.rows) {
                emit('row', row);
            }
            emit('end', { rowCount: r.rowCount, rows: r.rows });
        }, (err: unknown) => {
            this.fail(toMorayError(err));
            if (ee.listenerCount('error') > 0) {
                emit('error', err);
            }
        }).finally(() => {
            this.inflight.delete(p);
        });
        this.inflight.add(p);
        return ee;
    }

    private fail(err: MorayError): void {
        if (this.failure === null) {
            this.failure = err;
        }
    }

    /* Wait for every query started so far; throw the first failure. */
    async settle(): Promise<void> {
        while (this.inflight.size > 0) {
            await Promise.all([...this.inflight]);
        }
        if (this.failure !== null) {
            throw this.failure;
        }
    }
}

export function triggerPg(pg: PgHandle): TriggerPg {
    return new TriggerPg(pg);
}

/*
 * Run `ctxs` in order with the cookie `req`; then, if req.pg is a
 * TriggerPg, wait for its queries.  Rejects with the first failure.
 */
export async function runTriggers(ctxs: readonly vm.Context[], req: Record<string, unknown>,
    timeoutMs: number): Promise<void> {
    const tpg = req['pg'] instanceof TriggerPg ? req['pg'] : null;
    try {
        for (const ctx of ctxs) {
            await runOne(ctx, req, timeoutMs, tpg);
        }
    } finally {
        if (tpg !== null) {
            tpg.onHandlerError = null;
        }
    }
    if (tpg !== null) {
        await tpg.settle();
    }
}

function runOne(ctx: vm.Context, req: Record<string, unknown>, timeoutMs: number,
    tpg: TriggerPg | null): Promise<void> {
    return new Promise<void>((resolve, reject) => {
        let done = false;
        const settle = (err: unknown): void => {
            if (done) {
                return;
            }
            done = true;
            clearTimeout(timer);
            if (err) {
                reject(toMorayError(err));
            } else {
                resolve();
            }
        };
        const timer = setTimeout(() => settle(errors.plain('trigger did not call back in time')),
            CALLBACK_DEADLINE_MS);
        if (tpg !== null) {
            tpg.onHandlerError = (err) => settle(err ?? new Error('trigger handler threw'));
        }
        ctx['__req'] = req;
        ctx['__cb'] = (err?: unknown) => settle(err);
        ctx['__this'] = {};
        try {
            withAbortSuspended(() => CALL_SCRIPT.runInContext(ctx, { timeout: timeoutMs }));
        } catch (e) {
            /* a synchronous throw, or the vm timeout (a trigger that loops) */
            settle(e ?? new Error('trigger threw'));
        }
    });
}

/*
 * pre/post triggers (moray-api.md §5.6, storage.md §14).
 *
 * Each trigger is JavaScript source stored in buckets_config.  We compile
 * it once per bucket load in a fresh node:vm context whose only globals are
 * `Error` and a `require` that allows `microtime` and `crc` (anything else
 * → InvalidRequireError), and call it as `fn(req, cb)`:
 *
 *   compile ──► for each trigger, in order:
 *                 run the call inside the context with a time limit on its
 *                 synchronous part (features.triggerTimeout)
 *                 ──► wait for cb (call-once; a deadline turns a trigger that
 *                     never calls back into an error)
 *               cb(err) / a throw ──► the RPC fails with that error, rolled back
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
    vm.runInContext('fn = ' + source, ctx, { timeout: timeoutMs });
    return ctx;
}

export function compiledTriggers(b: Bucket, timeoutMs: number): CompiledTriggers {
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

/* The reference's req.pg: query(sql, args) → emitter of row / end / error. */
export function triggerPg(pg: PgHandle): { query(sql: string, args?: unknown[]): EventEmitter } {
    return {
        query(sql: string, args?: unknown[]): EventEmitter {
            const ee = new EventEmitter();
            pg.query(sql, args ?? [], { prepare: false }).then((r) => {
                for (const row of r.rows) {
                    ee.emit('row', row);
                }
                ee.emit('end', { rowCount: r.rowCount, rows: r.rows });
            }, (err: unknown) => ee.emit('error', err));
            return ee;
        },
    };
}

export async function runTriggers(ctxs: readonly vm.Context[], req: Record<string, unknown>,
    timeoutMs: number): Promise<void> {
    for (const ctx of ctxs) {
        await new Promise<void>((resolve, reject) => {
            let done = false;
            const timer = setTimeout(() => {
                if (!done) {
                    done = true;
                    reject(errors.plain('trigger did not call back in time'));
                }
            }, CALLBACK_DEADLINE_MS);
            const cb = (err?: unknown) => {
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
            ctx['__req'] = req;
            ctx['__cb'] = cb;
            ctx['__this'] = {};
            try {
                vm.runInContext('fn.call(__this, __req, __cb)', ctx, { timeout: timeoutMs });
            } catch (e) {
                if (!done) {
                    done = true;
                    clearTimeout(timer);
                    reject(toMorayError(e));
                }
            }
        });
    }
}

/*
 * Bucket configuration validation for createBucket / updateBucket
 * (moray-api §5.1, §5.2; storage §2).
 *
 * A config is `{index, pre, post, options}` (all optional, other top-level
 * keys ignored).  The reference checks it in a fixed order and the first
 * failure wins; clients and the test-suite see *which* check fired through
 * the error name and message, so the order below is part of the contract:
 *
 *   #  check                                              error
 *   1  shape (schema, ajv-style detail, dataVar "bucket") InvalidBucketConfigError
 *   2  options.trackModification present                 InvalidBucketConfigError
 *   3  every pre/post source compiles and evaluates      NotFunctionError "trigger not function ..."
 *   4  bucket name ^[a-zA-Z]\w{0,62}$                     InvalidBucketNameError
 *   5  bucket name not reserved                          InvalidBucketNameError
 *   6  every post source evaluated to a function         NotFunctionError "post must be [Function]"
 *   7  every pre source evaluated to a function          NotFunctionError "pre must be [Function]"
 *   8  index name syntax      \
 *   9  index name reserved     } per index name, in the config's key order
 *  10  index name "moray..."  /                          InvalidBucketConfigError
 *
 * Trigger sources are untrusted text.  The reference `eval`ed them in its
 * own scope.  We evaluate `fn = <source>` in a throw-away worker thread,
 * each source in a fresh vm context with a null-prototype global (so
 * `this.constructor.constructor` cannot reach a Function of a realm that
 * has `require`/`process`), under a per-source timeout, and only send back
 * what `fn` became:
 *
 *     main thread                         worker (only if there are triggers)
 *     -----------                         ------------------------------------
 *     checks 1, 2                         for each source:
 *     spawn worker(sources) ----------->    vm.Script('fn = ' + source)  SyntaxError -> !ok
 *       deadline timer                      run in fresh context, timeout  throws/times out -> !ok
 *     <---------------- [{ok, isFunction, source}]   typeof fn, Function.prototype.toString
 *     checks 3..10
 *
 *     worker hits its heap limit, or the deadline passes  -> check 3 fails
 *     worker cannot start at all                          -> InternalError (async form)
 *
 * Two entry points with identical checks and results:
 *   validateBucketConfigAsync()  awaits the worker; use it in RPC handlers.
 *   validateBucketConfig()       blocks on Atomics.wait until the worker
 *                                replies or the deadline passes (~40 ms with
 *                                triggers, 0 without); kept for sync callers.
 *
 * Why a worker and not vm in the main thread: a source may queue an
 * endless microtask chain (`(async () => { await 0; for (;;); })()`).  In
 * the main thread that either hangs the event loop (default microtask
 * mode) or, with `microtaskMode: 'afterEvaluate'` + timeout, aborts the
 * whole process with "async hook stack has become corrupted" as soon as
 * any async hook / AsyncLocalStorage is active (verified on Node 20.20).
 * A worker costs ~40 ms and bucket configs with triggers are rare.  The
 * evaluated functions are never called; the trigger runner compiles the
 * stored sources again in its own sandbox.
 *
 * All failures are operational (bad client input) and are MorayErrors.
 * The shape check reuses the ajv-4-style interpreter of src/rpc/validate.ts
 * (dataVar "bucket", so paths read `bucket.index['a'].type`).
 */

import {
    MessageChannel, Worker, receiveMessageOnPort, type Transferable, type WorkerOptions,
} from 'node:worker_threads';

import { errors } from '../errors/catalog';
import { check, errorsText, type Schema } from '../rpc/validate';

/* moray-api §5.3, in the order the enum message lists them. */
export const INDEX_TYPES = [
    'string', '[string]', 'number', '[number]', 'numrange', 'boolean',
    '[boolean]', 'date', '[date]', 'daterange', 'ip', '[ip]', 'mac', '[mac]',
    'subnet', '[subnet]', 'uuid',
] as const;

export type IndexType = typeof INDEX_TYPES[number];

export interface IndexDef {
    type: IndexType;
    unique?: boolean;
}

export interface BucketOptions {
    version: number;
    guaranteeOrder?: boolean;
    syncUpdates?: boolean;
    [other: string]: unknown;
}

/* The validated, normalised configuration (what gets stored). */
export interface BucketConfig {
    index: Record<string, IndexDef>;
    /* trigger sources, as Function.prototype.toString renders them */
    pre: string[];
    post: string[];
    options: BucketOptions;
}

export const BUCKET_NAME_RE = /^[a-zA-Z]\w{0,62}$/;

export const RESERVED_BUCKET_NAMES: readonly string[] =
    Object.freeze(['buckets_config', 'moray', 'search']);

export const INDEX_NAME_RE = /^(_[a-zA-Z0-9]+|[a-zA-Z][_a-zA-Z0-9]*[a-zA-Z0-9]|[a-zA-Z])$/;

/* Compared against the lower-cased index name. */
export const RESERVED_INDEX_NAMES: readonly string[] = Object.freeze([
    '_etag', '_id', '_idx', '_key', '_atime', '_ctime', '_mtime', '_rver',
    '_txn_snap', '_value', '_vnode',
]);

const MORAY_PREFIX_RE = /^_*moray/;

/* Bound on evaluating one trigger source at config time. */
export const TRIGGER_EVAL_TIMEOUT_MS = 250;
/* Worker start-up allowance, on top of TRIGGER_EVAL_TIMEOUT_MS per source. */
export const TRIGGER_WORKER_DEADLINE_MS = 2000;
const TRIGGER_WORKER_LIMITS = {
    maxOldGenerationSizeMb: 64,
    maxYoungGenerationSizeMb: 16,
    codeRangeSizeMb: 16,
    stackSizeMb: 4,
};

const BOOLEAN: Schema = { type: 'boolean' };

const INDEX_ENTRY_SCHEMA: Schema = {
    type: 'object',
    required: ['type'],
    additionalProperties: false,
    properties: {
        type: { enum: INDEX_TYPES },
        unique: BOOLEAN,
    },
};

export const BUCKET_CONFIG_SCHEMA: Schema = {
    type: 'object',
    properties: {
        index: { type: 'object', additionalProperties: INDEX_ENTRY_SCHEMA },
        pre: { type: 'array' },
        post: { type: 'array' },
        options: {
            type: 'object',
            properties: {
                version: { type: 'integer', minimum: 0 },
                guaranteeOrder: BOOLEAN,
                syncUpdates: BOOLEAN,
            },
        },
    },
};

export function isReservedBucketName(name: string): boolean {
    return RESERVED_BUCKET_NAMES.includes(name);
}

/* Checks 4 and 5: syntax and reserved names (case-sensitive). */
export function isValidBucketName(name: string): boolean {
    return BUCKET_NAME_RE.test(name) && !isReservedBucketName(name);
}

/* Checks 8-10 for one index name: the error message, or null if fine. */
export function indexNameProblem(name: string): string | null {
    if (!INDEX_NAME_RE.test(name)) {
        return `invalid index name "${name}"`;
    }
    const lc = name.toLowerCase();
    if (RESERVED_INDEX_NAMES.includes(lc)) {
        return `index name "${name}" is reserved for use by Moray`;
    }
    if (MORAY_PREFIX_RE.test(lc)) {
        return `index names cannot start with "moray": "${name}"`;
    }
    return null;
}

export interface EvaluatedTrigger {
    /* false: the source did not compile, threw, or ran out of time/memory */
    readonly ok: boolean;
    readonly isFunction: boolean;
    /* Function.prototype.toString of the result, when it is a function */
    readonly source: string;
}

/*
 * Runs in the worker.  Plain JS (it is not compiled by tsc): one result
 * per source, in order, posted back in a single message.
 */
const WORKER_SOURCE = `
'use strict';
const { parentPort, workerData } = require('node:worker_threads');
const vm = require('node:vm');
const fnToString = Function.prototype.toString;
const readFn = new vm.Script('fn');
const opts = { timeout: workerData.timeoutMs };
const results = workerData.sources.map((src) => {
    try {
        const script = new vm.Script('fn = ' + String(src), { filename: 'trigger.js' });
        const ctx = vm.createContext(Object.create(null),
            { microtaskMode: 'afterEvaluate' });
        script.runInContext(ctx, opts);
        const fn = readFn.runInContext(ctx, opts);
        if (typeof fn !== 'function') {
            return { ok: true, isFunction: false, source: '' };
        }
        return { ok: true, isFunction: true, source: fnToString.call(fn) };
    } catch (e) {
        return { ok: false, isFunction: false, source: '' };
    }
});
if (workerData.port) {
    workerData.port.postMessage(results);
    const flag = new Int32Array(workerData.flag);
    Atomics.store(flag, 0, 1);
    Atomics.notify(flag, 0);
} else {
    parentPort.postMessage(results);
}
`;

const NOT_EVALUATED: EvaluatedTrigger = { ok: false, isFunction: false, source: '' };

function workerOptions(workerData: object, transferList?: Transferable[]): WorkerOptions {
    return {
        eval: true,
        workerData,
        env: {},
        stdout: true,
        stderr: true,
        resourceLimits: TRIGGER_WORKER_LIMITS,
        ...(transferList === undefined ? {} : { transferList }),
    };
}

function deadlineMs(n: number): number {
    return TRIGGER_WORKER_DEADLINE_MS + n * TRIGGER_EVAL_TIMEOUT_MS;
}

/*
 * Evaluate trigger sources as the reference did (`fn = <source>`), off
 * the main thread.  Resolves with one result per source; rejects only
 * when the worker itself cannot run (an internal failure).
 */
export function evaluateTriggers(sources: readonly unknown[]): Promise<EvaluatedTrigger[]> {
    if (sources.length === 0) {
        return Promise.resolve([]);
    }
    return new Promise((resolve, reject) => {
        const worker = new Worker(WORKER_SOURCE,
            workerOptions({ sources, timeoutMs: TRIGGER_EVAL_TIMEOUT_MS }));
        let settled = false;
        const finish = (fn: () => void): void => {
            if (!settled) {
                settled = true;
                clearTimeout(deadline);
                void worker.terminate();
                fn();
            }
        };
        const allFailed = () => sources.map(() => NOT_EVALUATED);
        const deadline = setTimeout(() => finish(() => resolve(allFailed())),
            deadlineMs(sources.length));
        worker.on('message', (m: EvaluatedTrigger[]) => finish(() => resolve(m)));
        worker.on('error', (err: Error & { code?: string }) => finish(() => {
            if (err.code === 'ERR_WORKER_OUT_OF_MEMORY') {
                resolve(allFailed());
            } else {
                reject(err);
            }
        }));
        worker.on('exit', () => finish(() => resolve(allFailed())));
    });
}

/*
 * The same evaluation, blocking the calling thread (Atomics.wait) until
 * the worker answers or the deadline passes.  Only for synchronous
 * callers: it stalls the event loop for the worker's start-up (~40 ms), and
 * for the whole deadline if a source exhausts the worker's heap (a dead
 * worker cannot be noticed synchronously).  A worker that cannot start
 * also reads as "not evaluated" here.
 */
export function evaluateTriggersSync(sources: readonly unknown[]): EvaluatedTrigger[] {
    if (sources.length === 0) {
        return [];
    }
    const flag = new SharedArrayBuffer(4);
    const { port1, port2 } = new MessageChannel();
    let worker: Worker | undefined;
    try {
        worker = new Worker(WORKER_SOURCE, workerOptions(
            { sources, timeoutMs: TRIGGER_EVAL_TIMEOUT_MS, flag, port: port2 }, [port2]));
        /* its death (e.g. heap limit) is reported later, asynchronously: ignore */
        worker.on('error', () => undefined);
        Atomics.wait(new Int32Array(flag), 0, 0, deadlineMs(sources.length));
        const reply = receiveMessageOnPort(port1);
        return reply === undefined
            ? sources.map(() => NOT_EVALUATED)
            : reply.message as EvaluatedTrigger[];
    } catch {
        return sources.map(() => NOT_EVALUATED);
    } finally {
        port1.close();
        void worker?.terminate();
    }
}

function hasOwn(o: object, k: string): boolean {
    return Object.prototype.hasOwnProperty.call(o, k);
}

interface RawConfig {
    index?: Record<string, IndexDef>;
    pre?: unknown[];
    post?: unknown[];
    options?: Record<string, unknown>;
}

/* Checks 1 and 2; returns the config and the sources to evaluate (pre, then post). */
function checkShape(config: object): { cfg: RawConfig; sources: unknown[] } {
    const errs = check(BUCKET_CONFIG_SCHEMA, config);
    if (errs !== null) {
        throw errors.invalidBucketConfig(errorsText(errs, 'bucket'));
    }
    const cfg = config as RawConfig;
    if (hasOwn(cfg.options ?? {}, 'trackModification')) {
        throw errors.invalidBucketConfig('"trackModification" is no longer supported');
    }
    return { cfg, sources: [...(cfg.pre ?? []), ...(cfg.post ?? [])] };
}

/* Checks 3-10 given the evaluated triggers, then normalisation. */
function finish(name: string, cfg: RawConfig, evaluated: EvaluatedTrigger[]): BucketConfig {
    if (evaluated.some((e) => !e.ok)) {
        throw errors.notFunction('trigger not function must be [Function]');
    }

    if (!BUCKET_NAME_RE.test(name) || isReservedBucketName(name)) {
        throw errors.invalidBucketName(name);
    }

    const nPre = (cfg.pre ?? []).length;
    const sources = (list: EvaluatedTrigger[], what: 'pre' | 'post'): string[] =>
        list.map((e) => {
            if (!e.isFunction) {
                throw errors.notFunction(`${what} must be [Function]`);
            }
            return e.source;
        });
    const post = sources(evaluated.slice(nPre), 'post');
    const pre = sources(evaluated.slice(0, nPre), 'pre');

    const index: Record<string, IndexDef> = {};
    for (const [field, def] of Object.entries(cfg.index ?? {})) {
        const problem = indexNameProblem(field);
        if (problem !== null) {
            throw errors.invalidBucketConfig(problem);
        }
        index[field] = { ...def };      /* check 8 already ruled out "__proto__" */
    }

    const options = { ...cfg.options } as BucketOptions;
    options.version = (options.version as number | undefined) || 0;

    return { index, pre, post, options };
}

/*
 * Validate `config` for bucket `name` (checks 1-10; the first failure
 * rejects with a MorayError) and resolve with the normalised config:
 * missing members defaulted, trigger sources re-rendered, options.version
 * defaulted to 0.  Triggers are evaluated off the main thread without
 * blocking it.  A worker that cannot start rejects with InternalError.
 */
export async function validateBucketConfigAsync(name: string, config: object):
    Promise<BucketConfig> {
    const { cfg, sources } = checkShape(config);
    let evaluated: EvaluatedTrigger[];
    try {
        evaluated = await evaluateTriggers(sources);
    } catch (err) {
        throw errors.internal(`unable to evaluate triggers: ${(err as Error).message}`);
    }
    return finish(name, cfg, evaluated);
}

/*
 * Synchronous twin of validateBucketConfigAsync (same checks, same
 * result), for callers that cannot await.  When the config has triggers it
 * blocks the event loop while they are evaluated (see evaluateTriggersSync):
 * prefer the async form in RPC handlers.
 */
export function validateBucketConfig(name: string, config: object): BucketConfig {
    const { cfg, sources } = checkShape(config);
    return finish(name, cfg, evaluateTriggersSync(sources));
}

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
 * own scope; we compile `fn = <source>` as a vm.Script in a fresh, empty
 * context, run it under a short timeout (microtasks included), and only
 * then look at what `fn` became:
 *
 *     source --vm.Script--> SyntaxError ------------------------> #3
 *                 |
 *                 +--run (timeout)--> throws / times out -------> #3
 *                 |
 *                 +--> fn: typeof 'function'? --no--> #6 / #7
 *                                    |
 *                                   yes --> Function.prototype.toString -> stored source
 *
 * Nothing from the vm context is touched in the main realm except through
 * `typeof` and the main realm's Function.prototype.toString, neither of
 * which can run user code.  These functions are never called here; the
 * trigger runner compiles the stored sources again in its own sandbox.
 *
 * All failures are operational (bad client input) and are MorayErrors.
 */

import * as vm from 'node:vm';

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

type Evaluated =
    | { readonly ok: true; readonly isFunction: boolean; readonly source: string }
    | { readonly ok: false };

const fnToString = Function.prototype.toString;
const READ_FN = new vm.Script('fn');

/* Evaluate `fn = <src>` in a fresh context (check 3's unit of work). */
function evaluateTrigger(src: unknown): Evaluated {
    try {
        const text = 'fn = ' + String(src);
        const script = new vm.Script(text, { filename: 'trigger.js' });
        const ctx = vm.createContext({}, { microtaskMode: 'afterEvaluate' });
        const opts = { timeout: TRIGGER_EVAL_TIMEOUT_MS };
        script.runInContext(ctx, opts);
        const fn: unknown = READ_FN.runInContext(ctx, opts);
        if (typeof fn !== 'function') {
            return { ok: true, isFunction: false, source: '' };
        }
        return { ok: true, isFunction: true, source: fnToString.call(fn) };
    } catch {
        return { ok: false };
    }
}

function hasOwn(o: object, k: string): boolean {
    return Object.prototype.hasOwnProperty.call(o, k);
}

/*
 * Validate `config` for bucket `name` (checks 1-10, first failure throws a
 * MorayError) and return the normalised config: missing members defaulted,
 * trigger sources re-rendered, options.version defaulted to 0.
 */
export function validateBucketConfig(name: string, config: object): BucketConfig {
    const errs = check(BUCKET_CONFIG_SCHEMA, config);
    if (errs !== null) {
        throw errors.invalidBucketConfig(errorsText(errs, 'bucket'));
    }
    const cfg = config as {
        index?: Record<string, IndexDef>;
        pre?: unknown[];
        post?: unknown[];
        options?: Record<string, unknown>;
    };
    const rawOptions = cfg.options ?? {};

    if (hasOwn(rawOptions, 'trackModification')) {
        throw errors.invalidBucketConfig('"trackModification" is no longer supported');
    }

    const pre = (cfg.pre ?? []).map(evaluateTrigger);
    const post = (cfg.post ?? []).map(evaluateTrigger);
    if (pre.some((e) => !e.ok) || post.some((e) => !e.ok)) {
        throw errors.notFunction('trigger not function must be [Function]');
    }

    if (!BUCKET_NAME_RE.test(name) || isReservedBucketName(name)) {
        throw errors.invalidBucketName(name);
    }

    const sources = (list: Evaluated[], what: 'pre' | 'post'): string[] =>
        list.map((e) => {
            if (!e.ok || !e.isFunction) {
                throw errors.notFunction(`${what} must be [Function]`);
            }
            return e.source;
        });
    const postSources = sources(post, 'post');
    const preSources = sources(pre, 'pre');

    const index: Record<string, IndexDef> = {};
    for (const [field, def] of Object.entries(cfg.index ?? {})) {
        const problem = indexNameProblem(field);
        if (problem !== null) {
            throw errors.invalidBucketConfig(problem);
        }
        Object.defineProperty(index, field, {
            value: { ...def }, enumerable: true, writable: true, configurable: true,
        });
    }

    const options = { ...rawOptions } as BucketOptions;
    options.version = (options.version as number | undefined) || 0;

    return { index, pre: preSources, post: postSources, options };
}

/*
 * RPC argument validation (moray-api §2, §3, §7.12).
 *
 * Every handler starts by checking its positional `d` array.  A failure is
 * an *operational* error: the client gets an `InvocationError` and nothing
 * else happens.  The message is a contract (the moray test-suite matches
 * substrings of it), so it reproduces the reference server, which used
 * ajv 4 with `errorsText(errors, {dataVar: <argName>})`:
 *
 *     d.length wrong   ->  "putObject expects 4 arguments"
 *                          "ping expects 1 argument"
 *     args[i] invalid  ->  "<method> expects \"<arg>\" (args[<i>]) to be <desc>: <details>"
 *
 *                            findObjects expects "options" (args[2]) to be a valid
 *                            options object: options.sort.order should be equal to
 *                            one of the allowed values ("ASC", "DESC")
 *                                            \__________/ \_____________________/
 *                                             data path         ajv message
 *
 * Pipeline:
 *
 *     RPC_ARGS[method] --count--> for each arg, left to right:
 *                                   check(ARG_KINDS[kind].schema, arg)
 *                                      null -> next arg
 *                                      SchemaError[] -> errorsText(errs, argName)
 *                                                    -> throw errors.invocation(msg)
 *
 * An unknown method name is a programmer error (the Fast layer answers
 * unknown methods before we are called): plain Error, not InvocationError.
 *
 * check() is a deliberately tiny interpreter for the subset of JSON Schema
 * the reference used, with ajv 4's observable semantics:
 *
 *   - allErrors: false.  Validation stops at the first error, so <details>
 *     normally holds one phrase.  The exception is `anyOf`: when every
 *     branch fails, each branch's (first) error is reported, then
 *     "should match some schema in anyOf", all joined with ", ".
 *   - keyword order: type, then the keywords of the data's type group
 *     (number: minimum; string: maxLength, minLength, pattern, format;
 *     array: items; object: required, then additionalProperties over the
 *     data's keys, then properties in schema order), then enum, not,
 *     anyOf, and finally our own `custom` hook.
 *   - data paths: `.prop` for schema properties that are identifiers,
 *     `['prop']` otherwise; `[i]` for array items; `['key']` (raw, not
 *     escaped) for keys matched by additionalProperties.
 *   - string lengths count code points, not UTF-16 units (ajv's ucs2length).
 *   - `integer` means a number with no fractional part.
 *
 * The enum phrase differs from stock ajv 4: the reference appends the
 * allowed values, with values that differ only by case shown once
 * (`("ASC", "DESC")` for ASC/asc/DESC/desc).
 *
 * Our one addition (spec §7.12): a batch request that lacks the member its
 * operation needs (put: key, value; delete: key; update: fields, filter;
 * deleteMany: filter) is rejected here with an ajv-style
 * "requests[<i>] should have required property '<m>'" instead of failing
 * later with a low-level error.
 *
 * The interpreter is also used by src/schema/bucket-config.ts for the
 * bucket configuration schema (moray-api §5.1 check 1).
 */

import { errors } from '../errors/catalog';

/* ------------------------------------------------------------------ */
/* Schema subset                                                       */
/* ------------------------------------------------------------------ */

export type JsonType = 'null' | 'boolean' | 'object' | 'array' | 'number' |
    'integer' | 'string';

export interface SchemaError {
    /* ajv 4 `dataPath`, relative to the data variable: '', '.a', '[0]' ... */
    readonly dataPath: string;
    /* ajv 4 message, e.g. 'should be boolean' */
    readonly message: string;
}

export interface Schema {
    readonly type?: JsonType | readonly JsonType[];
    readonly minimum?: number;
    readonly maxLength?: number;
    readonly minLength?: number;
    readonly pattern?: RegExp;
    readonly format?: 'uuid';
    readonly items?: Schema;
    readonly required?: readonly string[];
    readonly additionalProperties?: false | Schema;
    readonly properties?: Readonly<Record<string, Schema>>;
    readonly enum?: readonly unknown[];
    readonly not?: Schema;
    readonly anyOf?: readonly Schema[];
    /* Not JSON Schema: a last check run when everything else passed. */
    readonly custom?: (data: unknown, dataPath: string) => SchemaError | null;
}

/* ajv's "uuid" format. */
const UUID_FORMAT = /^(?:urn:uuid:)?[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}$/i;

/* ajv 4 util.getProperty: identifier-like names use dot notation. */
const IDENTIFIER = /^[a-z$_][a-z$_0-9]*$/i;

function propertyPath(key: string): string {
    return IDENTIFIER.test(key) ? '.' + key : "['" + key.replace(/\\/g, '\\\\')
        .replace(/'/g, "\\'") + "']";
}

/*
 * Per `properties` object: [name, path suffix, schema] computed once, so
 * the hot path (valid options on every RPC) does no regex or allocation.
 */
type PropertyEntry = readonly [string, string, Schema];
const propertyEntries = new WeakMap<object, readonly PropertyEntry[]>();

function entriesOf(props: Readonly<Record<string, Schema>>): readonly PropertyEntry[] {
    let e = propertyEntries.get(props);
    if (e === undefined) {
        e = Object.keys(props).map((k): PropertyEntry => [k, propertyPath(k), props[k]!]);
        propertyEntries.set(props, e);
    }
    return e;
}

function hasOwn(o: object, k: string): boolean {
    return Object.prototype.hasOwnProperty.call(o, k);
}

function isType(t: JsonType, data: unknown): boolean {
    switch (t) {
    case 'null': return data === null;
    case 'boolean': return typeof data === 'boolean';
    case 'string': return typeof data === 'string';
    case 'number': return typeof data === 'number';
    case 'integer':
        return typeof data === 'number' && !(data % 1) && !Number.isNaN(data);
    case 'array': return Array.isArray(data);
    case 'object':
        return typeof data === 'object' && data !== null && !Array.isArray(data);
    }
}

/* Code points, as ajv's ucs2length counts them. */
function ucs2length(s: string): number {
    let n = 0;
    for (let i = 0; i < s.length; i++, n++) {
        const c = s.charCodeAt(i);
        if (c >= 0xD800 && c <= 0xDBFF && i + 1 < s.length) {
            const d = s.charCodeAt(i + 1);
            if ((d & 0xFC00) === 0xDC00) {
                i++;
            }
        }
    }
    return n;
}

function enumMessage(values: readonly unknown[]): string {
    const seen = new Set<string>();
    const shown: string[] = [];
    for (const v of values) {
        const folded = typeof v === 'string' ? v.toLowerCase() : JSON.stringify(v);
        if (!seen.has(folded)) {
            seen.add(folded);
            shown.push(JSON.stringify(v));
        }
    }
    return `should be equal to one of the allowed values (${shown.join(', ')})`;
}

function deepEqual(a: unknown, b: unknown): boolean {
    if (a === b) {
        return true;
    }
    if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) {
        return false;
    }
    return JSON.stringify(a) === JSON.stringify(b);
}

function one(dataPath: string, message: string): SchemaError[] {
    return [{ dataPath, message }];
}

/*
 * Validate `data` against `s`.  Returns null when valid, else the error
 * list ajv 4 (allErrors: false) would produce.
 */
export function check(s: Schema, data: unknown, dataPath = ''): SchemaError[] | null {
    if (s.type !== undefined) {
        if (typeof s.type === 'string') {
            if (!isType(s.type, data)) {
                return one(dataPath, 'should be ' + s.type);
            }
        } else if (!s.type.some((t) => isType(t, data))) {
            return one(dataPath, 'should be ' + s.type.join(','));
        }
    }

    if (typeof data === 'number') {
        if (s.minimum !== undefined && data < s.minimum) {
            return one(dataPath, `should be >= ${s.minimum}`);
        }
    } else if (typeof data === 'string') {
        if (s.maxLength !== undefined && data.length > s.maxLength &&
            ucs2length(data) > s.maxLength) {
            return one(dataPath,
                `should NOT be longer than ${s.maxLength} characters`);
        }
        if (s.minLength !== undefined && (data.length + 1) >> 1 < s.minLength &&
            ucs2length(data) < s.minLength) {
            return one(dataPath,
                `should NOT be shorter than ${s.minLength} characters`);
        }
        if (s.pattern !== undefined && !s.pattern.test(data)) {
            return one(dataPath, `should match pattern "${s.pattern.source}"`);
        }
        if (s.format === 'uuid' && !UUID_FORMAT.test(data)) {
            return one(dataPath, 'should match format "uuid"');
        }
    } else if (Array.isArray(data)) {
        if (s.items !== undefined) {
            for (let i = 0; i < data.length; i++) {
                const e = check(s.items, data[i], `${dataPath}[${i}]`);
                if (e !== null) {
                    return e;
                }
            }
        }
    } else if (typeof data === 'object' && data !== null) {
        const e = checkObject(s, data, dataPath);
        if (e !== null) {
            return e;
        }
    }

    if (s.enum !== undefined && !s.enum.some((v) => deepEqual(v, data))) {
        return one(dataPath, enumMessage(s.enum));
    }
    if (s.not !== undefined && check(s.not, data, dataPath) === null) {
        return one(dataPath, 'should NOT be valid');
    }
    if (s.anyOf !== undefined) {
        const collected: SchemaError[] = [];
        let passed = false;
        for (const branch of s.anyOf) {
            const e = check(branch, data, dataPath);
            if (e === null) {
                passed = true;
                break;
            }
            collected.push(...e);
        }
        if (!passed) {
            collected.push({ dataPath, message: 'should match some schema in anyOf' });
            return collected;
        }
    }
    if (s.custom !== undefined) {
        const e = s.custom(data, dataPath);
        if (e !== null) {
            return [e];
        }
    }
    return null;
}

function checkObject(s: Schema, data: object, dataPath: string): SchemaError[] | null {
    const rec = data as Record<string, unknown>;
    if (s.required !== undefined) {
        for (const k of s.required) {
            if (!hasOwn(data, k)) {
                return one(dataPath, `should have required property '${k}'`);
            }
        }
    }
    if (s.additionalProperties !== undefined) {
        for (const k of Object.keys(data)) {
            if (s.properties !== undefined && hasOwn(s.properties, k)) {
                continue;
            }
            if (s.additionalProperties === false) {
                return one(dataPath, 'should NOT have additional properties');
            }
            const e = check(s.additionalProperties, rec[k], `${dataPath}['${k}']`);
            if (e !== null) {
                return e;
            }
        }
    }
    if (s.properties !== undefined) {
        for (const [k, suffix, sub] of entriesOf(s.properties)) {
            if (!hasOwn(data, k)) {
                continue;
            }
            const e = check(sub, rec[k], dataPath + suffix);
            if (e !== null) {
                return e;
            }
        }
    }
    return null;
}

/* ajv's errorsText(errors, {dataVar}) with the default ", " separator. */
export function errorsText(errs: readonly SchemaError[], dataVar: string): string {
    return errs.map((e) => `${dataVar}${e.dataPath} ${e.message}`).join(', ');
}

/* ------------------------------------------------------------------ */
/* Moray's schemas                                                     */
/* ------------------------------------------------------------------ */

const BOOLEAN: Schema = { type: 'boolean' };
const NONEMPTY_STRING: Schema = { type: 'string', minLength: 1 };
const NONNEGATIVE_INTEGER: Schema = { type: 'integer', minimum: 0 };
const ANY_ARRAY: Schema = { type: 'array' };

/* Objects may not carry an own `hasOwnProperty` (it would shadow the method). */
const OBJECT: Schema = {
    type: 'object',
    properties: { hasOwnProperty: { not: {} } },
};

/* limit / offset: a non-negative integer, or a string of digits. */
const COUNT_OR_DIGITS: Schema = {
    type: ['integer', 'string'],
    minimum: 0,
    pattern: /^[0-9]+$/,
};

const SORT_ITEM_PROPERTIES: Record<string, Schema> = {
    attribute: { type: 'string' },
    order: { enum: ['ASC', 'asc', 'DESC', 'desc'] },
};

/*
 * `sort` is one {attribute, order} object or an array of them.  The
 * shape keywords sit beside the anyOf, so a bad `order` reports just that
 * (properties run before anyOf) while a non-object, non-array reports both
 * branches plus the anyOf line.
 */
const SORT: Schema = {
    items: { type: 'object', properties: SORT_ITEM_PROPERTIES },
    properties: SORT_ITEM_PROPERTIES,
    anyOf: [{ type: 'array' }, { type: 'object' }],
};

/* moray-api §3: typed keys; any other key is accepted and ignored. */
export const OPTIONS_SCHEMA: Schema = {
    type: 'object',
    properties: {
        req_id: { type: 'string', format: 'uuid', maxLength: 36 },
        timeout: NONNEGATIVE_INTEGER,
        etag: { type: ['null', 'string'] },
        noCache: BOOLEAN,
        noBucketCache: BOOLEAN,
        headers: { type: 'object' },
        requireOnlineReindexing: BOOLEAN,
        requireIndexes: BOOLEAN,
        noLimit: BOOLEAN,
        limit: COUNT_OR_DIGITS,
        offset: COUNT_OR_DIGITS,
        sort: SORT,
        no_count: BOOLEAN,
        sql_only: BOOLEAN,
        no_reindex: BOOLEAN,
        deep: BOOLEAN,
        internalOpts: {
            type: 'object',
            properties: { sendHandledOptions: BOOLEAN },
        },
    },
};

export const BATCH_OPERATIONS = ['put', 'delete', 'update', 'deleteMany'] as const;
export type BatchOperation = typeof BATCH_OPERATIONS[number];

/* The members each batch operation cannot do without (spec §7.12). */
export const BATCH_REQUIRED: Readonly<Record<BatchOperation, readonly string[]>> = {
    put: ['key', 'value'],
    delete: ['key'],
    update: ['fields', 'filter'],
    deleteMany: ['filter'],
};

function batchOperationMembers(data: unknown, dataPath: string): SchemaError | null {
    const req = data as Record<string, unknown>;
    const op = (hasOwn(req, 'operation') ? req['operation'] : 'put') as BatchOperation;
    for (const k of BATCH_REQUIRED[op]) {
        if (!hasOwn(req, k)) {
            return { dataPath, message: `should have required property '${k}'` };
        }
    }
    return null;
}

export const BATCH_REQUEST_SCHEMA: Schema = {
    type: 'object',
    required: ['bucket'],
    properties: {
        bucket: NONEMPTY_STRING,
        operation: { enum: BATCH_OPERATIONS },
        key: NONEMPTY_STRING,
        value: OBJECT,
        fields: OBJECT,
        filter: NONEMPTY_STRING,
        options: OPTIONS_SCHEMA,
    },
    custom: batchOperationMembers,
};

/* ------------------------------------------------------------------ */
/* Per-RPC argument table (moray-api §1.1)                             */
/* ------------------------------------------------------------------ */

export type ArgKind = 'string' | 'integer' | 'object' | 'array' | 'requests' |
    'options';

export interface ArgSpec {
    readonly name: string;
    readonly kind: ArgKind;
}

interface KindInfo {
    readonly description: string;
    readonly schema: Schema;
}

export const ARG_KINDS: Readonly<Record<ArgKind, KindInfo>> = {
    string: { description: 'a nonempty string', schema: NONEMPTY_STRING },
    integer: { description: 'a nonnegative integer', schema: NONNEGATIVE_INTEGER },
    object: { description: 'an object', schema: OBJECT },
    array: { description: 'an array', schema: ANY_ARRAY },
    requests: {
        description: 'an array of valid request objects',
        schema: { type: 'array', items: BATCH_REQUEST_SCHEMA },
    },
    options: { description: 'a valid options object', schema: OPTIONS_SCHEMA },
};

const a = (name: string, kind: ArgKind): ArgSpec => ({ name, kind });
const BUCKET = a('bucket', 'string');
const KEY = a('key', 'string');
const FILTER = a('filter', 'string');
const OPTIONS = a('options', 'options');

export const RPC_ARGS = {
    createBucket: [BUCKET, a('config', 'object'), OPTIONS],
    getBucket: [OPTIONS, BUCKET],                   /* note: reversed */
    listBuckets: [OPTIONS],
    updateBucket: [a('name', 'string'), a('config', 'object'), OPTIONS],
    delBucket: [BUCKET, OPTIONS],
    putObject: [BUCKET, KEY, a('value', 'object'), OPTIONS],
    getObject: [BUCKET, KEY, OPTIONS],
    delObject: [BUCKET, KEY, OPTIONS],
    findObjects: [BUCKET, FILTER, OPTIONS],
    updateObjects: [BUCKET, a('fields', 'object'), FILTER, OPTIONS],
    deleteMany: [BUCKET, FILTER, OPTIONS],
    batch: [a('requests', 'requests'), OPTIONS],
    reindexObjects: [BUCKET, a('count', 'integer'), OPTIONS],
    getTokens: [OPTIONS],
    sql: [a('statement', 'string'), a('values', 'array'), OPTIONS],
    ping: [OPTIONS],
    version: [OPTIONS],
    listen: [a('channel', 'string'), OPTIONS],
    unlisten: [a('id', 'string'), OPTIONS],
} as const satisfies Record<string, readonly ArgSpec[]>;

export type RpcMethod = keyof typeof RPC_ARGS;

export const RPC_METHODS = Object.keys(RPC_ARGS) as RpcMethod[];

export function isRpcMethod(m: string): m is RpcMethod {
    return hasOwn(RPC_ARGS, m);
}

/*
 * The InvocationError message for `args`, or null when they are valid.
 * An unknown method is a programmer error (the Fast layer answers those).
 */
export function invocationProblem(method: string, args: readonly unknown[]): string | null {
    if (!isRpcMethod(method)) {
        throw new Error(`validateArgs: unknown RPC method ${JSON.stringify(method)}`);
    }
    const specs: readonly ArgSpec[] = RPC_ARGS[method];
    if (args.length !== specs.length) {
        return `${method} expects ${specs.length} argument` +
            (specs.length === 1 ? '' : 's');
    }
    for (let i = 0; i < specs.length; i++) {
        const spec = specs[i]!;
        const kind = ARG_KINDS[spec.kind];
        const errs = check(kind.schema, args[i]);
        if (errs !== null) {
            return `${method} expects "${spec.name}" (args[${i}]) to be ` +
                `${kind.description}: ${errorsText(errs, spec.name)}`;
        }
    }
    return null;
}

/* Throws InvocationError (a MorayError) when `args` do not fit `method`. */
export function validateArgs(method: string, args: readonly unknown[]): void {
    const problem = invocationProblem(method, args);
    if (problem !== null) {
        throw errors.invocation(problem);
    }
}

/*
 * The catalog of every error a Moray client can see.
 *
 * Clients locate errors by walking the cause chain for a *name*
 * (VError.findCauseByName(err, 'ObjectNotFoundError')), so the `name`
 * strings here are a wire contract: never rename one.  Each error carries
 * the ERROR payload fields of fast-protocol.md §7:
 *
 *     { name, message, context: {}, info: {} [, ase_errors] }
 *
 * Two families:
 *   - operational errors (bad arguments, missing buckets, database trouble)
 *     are MorayError instances and are sent to the client as-is;
 *   - programmer errors (bugs) are plain Errors; the RPC layer still answers
 *     the request (as InternalError) but logs them at error level and counts
 *     them, so that one broken handler cannot take down the process.
 *
 * docs/errors.md is checked against ERROR_NAMES by test/unit/errors.test.ts.
 */

export type ErrorContext = Record<string, unknown>;

export interface WireError {
    name: string;
    message: string;
    context: ErrorContext;
    info: Record<string, unknown>;
    ase_errors?: WireError[];
}

export class MorayError extends Error {
    readonly context: ErrorContext;
    readonly info: Record<string, unknown>;

    constructor(name: string, message: string, context: ErrorContext = {},
        info: Record<string, unknown> = {}) {
        super(message);
        /*
         * `name` is an own property so that it serializes and survives
         * structured logging exactly as sent on the wire.
         */
        Object.defineProperty(this, 'name', {
            value: name, enumerable: false, writable: true, configurable: true,
        });
        this.context = context;
        this.info = info;
    }

    toWire(): WireError {
        return {
            name: this.name,
            message: this.message,
            context: this.context,
            info: this.info,
        };
    }
}

/* Every name a client may see, with where it comes from. */
export const ERROR_NAMES = {
    InvocationError: 'wrong argument count, types or options',
    FastError: 'Fast layer: unsupported method or malformed request',
    BucketNotFoundError: 'the bucket does not exist',
    BucketConflictError: 'createBucket on an existing name',
    BucketVersionError: 'updateBucket to an older or equal version',
    InvalidBucketNameError: 'bad or reserved bucket name',
    InvalidBucketConfigError: 'bad bucket configuration',
    NotFunctionError: 'a trigger is not a function',
    InvalidIndexTypeError: 'a value does not convert to its index type',
    ObjectNotFoundError: 'the object does not exist',
    EtagConflictError: 'conditional write failed',
    UniqueAttributeError: 'unique index violation',
    InvalidQueryError: 'the filter is invalid',
    NotIndexedError: 'the filter needs fields that are not usable indexes',
    NotNullableError: 'updateObjects with a null value',
    FieldUpdateError: 'updateObjects with no fields',
    InvalidArgumentError: 'reindexObjects count below 1',
    QueryTimeoutError: 'a query exceeded options.timeout',
    NoDatabasePeersError: 'overloaded, or no database available',
    InternalError: 'internal failure (bad SQL, row conversion, a bug)',
    InvalidRequireError: 'a trigger required a module it may not use',
    Error: 'getTokens, database unreachable, filter rejections, trigger errors',
    error: 'a raw PostgreSQL error passed through',
} as const;

export type ErrorName = keyof typeof ERROR_NAMES;

function mk(name: ErrorName, message: string, context?: ErrorContext,
    info?: Record<string, unknown>): MorayError {
    return new MorayError(name, message, context, info);
}

export const errors = {
    invocation: (msg: string) => mk('InvocationError', msg),
    fastUnsupportedMethod: (method: string, msgid: number) =>
        mk('FastError', `unsupported RPC method: ${JSON.stringify(method)}`, {},
            { fastReason: 'bad_method', rpcMethod: method, rpcMsgid: msgid }),
    fastNotWellFormed: (msgid: number, message: unknown) =>
        mk('FastError', 'RPC request is not well-formed', {},
            { fastReason: 'bad_data', rpcMsgid: msgid, rpcMessage: message }),
    bucketNotFound: (bucket: string) =>
        mk('BucketNotFoundError', `${bucket} does not exist`),
    bucketConflict: (bucket: string) =>
        mk('BucketConflictError', `${bucket} was likely being concurrently updated`),
    bucketVersion: (bucket: string, requested: number, stored: number) =>
        mk('BucketVersionError',
            `${bucket} has a newer version than ${requested} (${stored})`),
    invalidBucketName: (name: string) =>
        mk('InvalidBucketNameError', `${name} is not a valid bucket name`),
    invalidBucketConfig: (msg: string) => mk('InvalidBucketConfigError', msg),
    notFunction: (msg: string) => mk('NotFunctionError', msg),
    invalidIndexType: (field: string, type: string) =>
        mk('InvalidIndexTypeError', `index(${field}) is of type ${type}`),
    objectNotFound: (bucket: string, key: string) =>
        mk('ObjectNotFoundError', `${bucket}::${key} does not exist`),
    etagConflict: (bucket: string, key: string, expected: string, actual: string) =>
        mk('EtagConflictError',
            `${bucket}::${key} was expected to have etag "${expected}", but was "${actual}"`,
            { bucket, key, expected, actual }),
    uniqueAttribute: (column: string, value: string) =>
        mk('UniqueAttributeError',
            `"${column}" is a unique attribute; value "${value}" already exists`),
    invalidQuery: (filter: string) =>
        mk('InvalidQueryError', `${filter} is an invalid filter`),
    notIndexed: (bucket: string, filter: string) =>
        mk('NotIndexedError', `${bucket} does not have indexes that support ${filter}`),
    notIndexedFields: (bucket: string, filter: string, reindexing: string[],
        unindexed: string[]) =>
        mk('NotIndexedError',
            `${bucket} does not have indexes that support ${filter}. ` +
            `Reindexing fields: ${inspectList(reindexing)}. ` +
            `Unindexed fields: ${inspectList(unindexed)}`),
    notNullable: (field: string, type: string) =>
        mk('NotNullableError',
            `index "${field}" (of type "${type}") cannot store null values`),
    fieldUpdate: (fields: unknown) =>
        mk('FieldUpdateError', `${JSON.stringify(fields)} is not a valid update definition`),
    invalidArgument: (msg: string) => mk('InvalidArgumentError', msg),
    queryTimeout: (sql: string) => mk('QueryTimeoutError', `query timeout: ${sql}`),
    overloaded: () =>
        mk('NoDatabasePeersError',
            'unable to acquire backend connection due to service being overloaded',
            { name: 'OverloadedError', message: 'maximum moray queue length reached' }),
    noBackends: () =>
        mk('NoDatabasePeersError', 'no database backends are available'),
    connRefused: () => mk('Error', 'connect ECONNREFUSED'),
    internal: (msg: string) => mk('InternalError', msg),
    invalidRequire: (mod: string) =>
        mk('InvalidRequireError', `"${mod}" is not a permitted module`),
    plain: (msg: string) => mk('Error', msg),
    /* A PostgreSQL error passed through: node-postgres names these "error". */
    raw: (msg: string, info: Record<string, unknown> = {}) => mk('error', msg, {}, info),
};

/* Node's util.inspect rendering of a string array: [], [ 'a' ], [ 'a', 'b' ]. */
export function inspectList(list: readonly string[]): string {
    if (list.length === 0) {
        return '[]';
    }
    return '[ ' + list.map((s) => `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`)
        .join(', ') + ' ]';
}

/*
 * Turn anything thrown inside a handler into the wire payload.  MorayErrors
 * go out verbatim; anything else is a bug and becomes InternalError (the
 * caller logs the original).
 */
export function toWireError(err: unknown): WireError {
    if (err instanceof MorayError) {
        return err.toWire();
    }
    const msg = err instanceof Error ? err.message : String(err);
    return { name: 'InternalError', message: msg, context: {}, info: {} };
}

/*
 * THE probe table.  Every USDT probe the server can fire is declared here,
 * once; every backend (dtrace-provider on illumos/macOS/FreeBSD, the static
 * SDT addon on Linux, the no-op stub), docs/probes.md and the D-script
 * checker are driven from this list.
 *
 * Argument types follow dtrace-provider: 'int' is an integer, 'char *' a
 * string, 'json' a JS value passed as its JSON text (a char * in D).
 *
 * The `moray` and `fastserver` providers keep the reference names and
 * argument lists unchanged so that operators' existing D scripts work
 * (observability.md §10).  Two reference bugs are fixed: `update-done` and
 * `delmany-done` fire.  Probes marked `added` are new in this server.
 *
 * Probes are named with dashes; in D and bpftrace `rpc-start` is spelled
 * `rpc__start`.
 */

export type ProbeArgType = 'int' | 'char *' | 'json';

export interface ProbeDef {
    readonly provider: 'moray' | 'fastserver';
    readonly name: string;
    readonly args: readonly (readonly [string, ProbeArgType])[];
    readonly doc: string;
    readonly added?: true;
}

const I = 'int' as const;
const S = 'char *' as const;
const J = 'json' as const;

function m(name: string, args: ProbeDef['args'], doc: string, added?: true): ProbeDef {
    return added ? { provider: 'moray', name, args, doc, added } :
        { provider: 'moray', name, args, doc };
}

const msgReq = [['msgid', I], ['req_id', S]] as const;
const msgReqBucket = [['msgid', I], ['req_id', S], ['bucket', S]] as const;

export const PROBE_TABLE: readonly ProbeDef[] = [
    /* fastserver: the Fast layer (node-fast names) */
    { provider: 'fastserver', name: 'conn-create',
        args: [['server_id', I], ['conn_id', I], ['label', S]],
        doc: 'a client connection was accepted' },
    { provider: 'fastserver', name: 'conn-destroy',
        args: [['server_id', I], ['conn_id', I]],
        doc: 'a client connection was removed after draining' },
    { provider: 'fastserver', name: 'rpc-start',
        args: [['server_id', I], ['conn_id', I], ['msgid', I], ['method', S]],
        doc: 'a valid request was dispatched to a handler' },
    { provider: 'fastserver', name: 'rpc-done',
        args: [['server_id', I], ['conn_id', I], ['msgid', I]],
        doc: 'a request completed (only if rpc-start fired)' },

    /* moray: per-RPC start/done (reference) */
    m('createbucket-start', msgReqBucket, 'createBucket accepted'),
    m('createbucket-done', msgReqBucket, 'createBucket finished'),
    m('getbucket-start', msgReqBucket, 'getBucket accepted'),
    m('getbucket-done', msgReqBucket, 'getBucket finished'),
    m('listbuckets-start', msgReq, 'listBuckets accepted'),
    m('listbuckets-done', msgReq, 'listBuckets finished'),
    m('updatebucket-start', msgReqBucket, 'updateBucket accepted'),
    m('updatebucket-done', msgReqBucket, 'updateBucket finished'),
    m('delbucket-start', msgReqBucket, 'delBucket accepted'),
    m('delbucket-done', msgReqBucket, 'delBucket finished'),
    m('putobject-start', [...msgReqBucket, ['key', S], ['value', S]],
        'putObject accepted; value is the client\'s options._value'),
    m('putobject-done', msgReq, 'putObject finished'),
    m('getobject-start', [...msgReqBucket, ['key', S]], 'getObject accepted'),
    m('getobject-done', [...msgReq, ['value', S]],
        'getObject finished; value is the JSON of the object (undefined on error)'),
    m('delobject-start', [...msgReqBucket, ['key', S]], 'delObject accepted'),
    m('delobject-done', msgReq, 'delObject finished'),
    m('findobjects-start', [...msgReqBucket, ['filter', S]], 'findObjects accepted'),
    m('findobjects-record', [['msgid', I], ['key', S], ['id', I], ['etag', S], ['value', S]],
        'each record sent (after the post-filter); value is the raw _value text'),
    m('findobjects-done', [['msgid', I], ['count', I]],
        'findObjects finished; count = records sent'),
    m('update-start', [...msgReqBucket, ['fields', S], ['filter', S]],
        'updateObjects accepted (fields as JSON text)'),
    m('update-done', msgReq, 'updateObjects finished (never fired by the reference)'),
    m('delmany-start', [...msgReqBucket, ['filter', S]], 'deleteMany accepted'),
    m('delmany-done', msgReq, 'deleteMany finished (never fired by the reference)'),
    m('batch-start', msgReq, 'batch accepted'),
    m('batch-done', msgReq, 'batch finished'),
    m('batch-op-start', [...msgReqBucket, ['op', S], ['key_or_filter', S]],
        'before each batch operation'),
    m('batch-op-done', msgReq, 'after each batch operation'),
    m('reindexobjects-start', [...msgReqBucket, ['count', I]], 'reindexObjects accepted'),
    m('reindexobjects-record', [['msgid', I], ['bucket', S], ['key', S]],
        'before each reindexed row is rewritten'),
    m('reindexobjects-done', msgReq, 'reindexObjects finished'),
    m('ping-start', [...msgReq, ['deep', I]], 'ping accepted'),
    m('ping-done', [...msgReq, ['deep', I]], 'ping succeeded'),

    /* moray: pipeline steps, queries, pool, listen (reference) */
    m('handler-start', [['msgid', I], ['route', S], ['handler', S], ['req_id', S]],
        'before each pipeline step'),
    m('handler-done', [['msgid', I], ['route', S], ['handler', S], ['req_id', S]],
        'after each pipeline step'),
    m('handler-error', [['msgid', I], ['req_id', S], ['route', S], ['handler', S], ['error', S]],
        'a pipeline step failed'),
    m('pool-checkout', [['total', I], ['idle', I], ['pending', I], ['waiters', I]],
        'a connection claim passed the queue-length check'),
    m('query-start', [['req_id', S], ['sql', S]], 'a SQL statement was sent'),
    m('query-row', [['req_id', S], ['sql', S], ['row', J]], 'a result row arrived'),
    m('query-done', [['req_id', S], ['sql', S], ['result', J]], 'a statement completed'),
    m('query-error', [['req_id', S], ['sql', S], ['error', S]], 'a statement failed'),
    m('query-conn-error', [['req_id', S], ['sql', S], ['error', S]],
        'the connection failed while a statement was outstanding'),
    m('query-timeout', [['req_id', S], ['sql', S]], 'options.timeout expired'),
    m('listen-start', [['req_id', S], ['channel', S]], 'LISTEN issued'),
    m('listen-notification', [['req_id', S], ['channel', S], ['payload', S]],
        'a notification was received'),
    m('listen-conn-error', [['req_id', S], ['sql', S], ['error', S]],
        'the dedicated LISTEN connection failed'),

    /* moray: added in this server */
    m('request-start', [['conn_id', I], ['msgid', I], ['method', S], ['req_id', S]],
        'any RPC accepted (every method, including sql/listen/version)', true),
    m('request-done', [['conn_id', I], ['msgid', I], ['method', S], ['req_id', S],
        ['error', S], ['latency_us', I]],
    'any RPC finished; error is the error name or empty', true),
    m('pool-connect', [['conn_id', I], ['backend', S]], 'a pool connection was established', true),
    m('pool-connect-error', [['backend', S], ['error', S]], 'a pool connection attempt failed', true),
    m('pool-queue-wait', [['waiters', I], ['wait_us', I]],
        'a queued claim got its connection after waiting', true),
    m('pool-release', [['conn_id', I], ['held_us', I]], 'a connection went back to the pool', true),
    m('pool-destroy', [['conn_id', I], ['reason', S]], 'a pool connection was closed', true),
    m('bucket-cache-hit', [['bucket', S]], 'a bucket config was served from the cache', true),
    m('bucket-cache-miss', [['bucket', S]], 'a bucket config was loaded from PostgreSQL', true),
    m('topology-change', [['old_primary', S], ['new_primary', S]],
        'the database primary changed', true),
    m('log', [['level', I], ['record', S]],
        'every log record while a tracer is attached, including those below the configured ' +
        'level (tools/snoop); usdt backend: NUL-padded to a multiple of 199 bytes + 1', true),
];

export type ProbeKey = `${ProbeDef['provider']}:${string}`;

export function probeKey(def: ProbeDef): string {
    return `${def.provider}:${def.name}`;
}

/*
 * The configuration schema: one declarative table of every key the server
 * accepts, with its type, default and documentation.  validate.ts checks a
 * config against it once at start-up (every problem reported at once, unknown
 * keys rejected by name); tools/gen-config-docs.ts renders docs/config.md
 * from it.
 *
 * The reference keys (observability.md §3, §4) keep their names, defaults
 * and meaning.  Keys marked `added` are new in this server; they live in
 * their own sections (`limits`, `features`, `embedded`) so that a reference
 * config file is valid as it is.
 */

export type Scalar = 'integer' | 'string' | 'boolean' | 'number-or-false';

export interface KeySpec {
    readonly type: Scalar | 'object' | 'any';
    readonly doc: string;
    readonly required?: boolean;
    readonly default?: unknown;
    readonly min?: number;
    readonly max?: number;
    readonly enum?: readonly string[];
    readonly keys?: Readonly<Record<string, KeySpec>>;
    /* an object whose keys are not checked (passed through verbatim) */
    readonly open?: boolean;
    readonly added?: true;
}

const PG_KEYS: Record<string, KeySpec> = {
    maxConnections: { type: 'number-or-false', default: 5, min: 1,
        doc: 'maximum pooled connections to the primary' },
    minSpareConnections: { type: 'number-or-false', min: 0,
        doc: 'idle connections kept ready (default: maxConnections, i.e. all opened eagerly)' },
    connectTimeout: { type: 'number-or-false', default: 1000, min: 0,
        doc: 'timeout of one connection attempt (ms); doubles per retry up to 10000' },
    checkInterval: { type: 'number-or-false', default: 60000, min: 0,
        doc: 'a connection idle this long (ms) is health-checked with SELECT NOW()' },
    maxQueueLength: { type: 'number-or-false', default: 2000, min: 0,
        doc: 'claims allowed to wait for a connection; beyond it requests fail with ' +
            'NoDatabasePeersError (0 = unlimited)' },
    targetClaimDelay: { type: 'number-or-false', default: 500, min: 1,
        doc: 'CoDel target (ms) for queued claims: a claim waits at most 3x (or 10x) this' },
    pipelineConnections: { type: 'integer', default: 2, min: 0, added: true,
        doc: 'connections shared by single-statement reads (getObject), each with up to ' +
            'pipelineDepth statements in flight (pg pipeline mode); at most maxConnections - 1 ' +
            '(0 = every request claims a connection of its own)' },
    pipelineDepth: { type: 'integer', default: 32, min: 1, added: true,
        doc: 'statements in flight on one shared connection before reads fall back to a ' +
            'connection of their own; a read that waits on the disk holds up the reads behind ' +
            'it, so lower it (or pipelineConnections) where reads often miss the cache' },
    pipelineWriteDepth: { type: 'integer', default: 4, min: 0, added: true,
        doc: 'single-statement writes (putObject without triggers) take an idle connection ' +
            'while there is one and, when there is none, queue on a busy write connection ' +
            'with fewer than this many statements in flight instead of waiting for a free one ' +
            '(0 = every write claims a connection of its own)' },
    maxIdleTime: { type: 'any', doc: 'accepted for compatibility; ignored' },
    user: { type: 'string', doc: 'PostgreSQL role (manatee mode); standalone takes it from the URL' },
};

export const CONFIG_SCHEMA: Readonly<Record<string, KeySpec>> = {
    port: { type: 'integer', default: 2020, min: 0, max: 65535,
        doc: 'Fast RPC listener port (-p overrides)' },
    bindip: { type: 'string', default: '0.0.0.0',
        doc: 'address of both listeners' },
    monitorPort: { type: 'integer', default: 3020, min: 0, max: 65535,
        doc: 'monitoring HTTP port: /metrics, /kang/*, /ping (-k overrides; 0 disables)' },
    server_uuid: { type: 'string',
        doc: 'metrics label `server` (required in a config file; defaults to the hostname ' +
            'when the server runs without one)' },
    datacenter: { type: 'string',
        doc: 'metrics label `datacenter` (required in a config file; default `local` without one)' },
    service_name: { type: 'string', doc: 'metrics label `service` (only when set)' },
    bunyan: { type: 'object', doc: 'logging', keys: {
        level: { type: 'string', doc: 'bunyan level name (ignored when -v is given)' },
        syslog: { type: 'object', doc: 'send records to syslog instead of stderr', keys: {
            facility: { type: 'string', required: true, doc: 'e.g. local0' },
            type: { type: 'string', required: true, enum: ['udp', 'tcp', 'sys'],
                doc: 'udp, tcp or sys' },
            host: { type: 'string', doc: 'default 127.0.0.1' },
            port: { type: 'integer', min: 1, max: 65535, doc: 'default 514' },
        } },
    } },
    manatee: { type: 'object', doc: 'follow a Manatee shard through ZooKeeper', keys: {
        manatee: { type: 'object', required: true, doc: 'the shard to follow', keys: {
            path: { type: 'string', required: true,
                doc: 'ZooKeeper path of the shard, e.g. /manatee/1.moray.example.com' },
            zk: { type: 'object', required: true, doc: 'ZooKeeper connection', keys: {
                connStr: { type: 'string', required: true, doc: 'host:port[,host:port...]' },
                opts: { type: 'object', open: true,
                    doc: 'client options: sessionTimeout, spinDelay, retries' },
            } },
        } },
        pg: { type: 'object', required: true, doc: 'pool tunables', keys: PG_KEYS },
    } },
    standalone: { type: 'object', doc: 'a single PostgreSQL server (wins over manatee)', keys: {
        url: { type: 'string', required: true,
            doc: 'PostgreSQL connection URL, e.g. postgres://moray@10.0.0.5:5432/moray' },
        pg: { type: 'object', required: true, doc: 'pool tunables', keys: PG_KEYS },
    } },
    embedded: { type: 'object', added: true,
        doc: 'the embedded PostgreSQL used when neither standalone nor manatee is configured',
        keys: {
            dataDir: { type: 'string',
                doc: 'data directory (default $MORAY_DATA_DIR, else ./.moray-data)' },
            port: { type: 'integer', default: 0, min: 0, max: 65535,
                doc: 'PostgreSQL port (0 = pick a free one)' },
            pg: { type: 'object', doc: 'pool tunables', keys: PG_KEYS },
        } },
    limits: { type: 'object', added: true, doc: 'protection limits', keys: {
        maxFrameBytes: { type: 'integer', default: 64 * 1024 * 1024, min: 1024,
            doc: 'largest Fast frame accepted; a bigger length closes the connection ' +
                'before any payload is buffered' },
        maxRequestsPerConnection: { type: 'integer', default: 1024, min: 1,
            doc: 'in-flight requests per connection before the server stops reading it' },
        maxUnsentBytesPerConnection: { type: 'integer', default: 4 * 1024 * 1024, min: 1024,
            doc: 'unsent response bytes per connection before the server stops reading it ' +
                'and pauses its streaming handlers' },
        shutdownTimeout: { type: 'integer', default: 10000, min: 0,
            doc: 'ms to let in-flight RPCs finish on SIGTERM/SIGINT' },
    } },
    features: { type: 'object', added: true, doc: 'switches', keys: {
        sql: { type: 'boolean', default: true, doc: 'serve the `sql` RPC' },
        triggers: { type: 'boolean', default: true,
            doc: 'accept buckets with pre/post triggers (false: refuse them)' },
        triggerTimeout: { type: 'integer', default: 1000, min: 1,
            doc: 'ms a trigger may run synchronously before it is stopped' },
        audit: { type: 'boolean', default: false,
            doc: 'write one `audit` record per RPC at info level' },
    } },
    /* set by the process itself, allowed for reference parity */
    name: { type: 'string', doc: 'internal (service name in logs)' },
    file: { type: 'string', doc: 'internal (the config file path)' },
    log: { type: 'any', doc: 'internal' },
};

/*
 * LeanQuery: one named prepared statement on a shared (pipelined) pg
 * connection, without the per-execution costs of pg.Query.
 *
 *   first use of a statement on a connection:
 *       Parse, Bind, Describe(portal), Execute, Sync
 *       RowDescription ──► column names + type parsers, cached for the
 *                          (connection, statement) pair
 *   every later use:
 *       Bind, Execute, Sync
 *       DataRow ──► row object built with the cached parsers
 *       CommandComplete ──► command, rowCount
 *       ReadyForQuery ──► callback(null, rows, rowCount, command)
 *       ErrorResponse ──► callback(err)        (at most one callback)
 *
 * Why: a getObject is one SELECT by key, and the profile of the server at
 * 64 in flight showed pg.Query's own bookkeeping as a fifth of the
 * request's JavaScript: copying the query config through property
 * descriptors (cloneQueryConfig), a Describe and RowDescription on every
 * execution with the parsers looked up again (addFields), a Result and
 * three event listeners per statement.  A prepared statement's result
 * shape is fixed once PostgreSQL has parsed it (a changed table makes
 * PostgreSQL fail the statement with "cached plan must not change result
 * type", exactly as with pg.Query), so describing it once per connection
 * is enough.
 *
 * How it plugs into pg 8.23 (pinned): pg's Client accepts any object whose
 * prototype chain contains pg.Query in pipeline mode, queues it, calls
 * submit(connection), and hands it the backend messages through the
 * handle* methods below while it is the active query.  The object does
 * not run Query's constructor (that is the cost being avoided), so every
 * handle* method the client can call is defined here.  The client reads
 * `name` and `text` (parse bookkeeping), `callback`, `_result` and `rows`
 * (both left undefined: no portal, no Result).  Every integration test
 * that touches the database runs through this path;
 * test/integration/pg-pipeline.test.ts covers row shapes, NoData
 * statements, bind failures and pipelining itself.
 */

import * as pg from 'pg';

/* the parts of pg's Connection (lib/connection.js) used here */
interface PgConnection {
    parsedStatements: Record<string, string>;
    submittedNamedStatements: Record<string, string>;
    stream: { cork?(): void; uncork?(): void };
    parse(q: { text: string; name: string; types?: unknown }): void;
    bind(c: { portal: string; statement: string; values: readonly unknown[];
        binary: boolean; valueMapper: (v: unknown) => unknown }): void;
    describe(m: { type: 'P'; name: string }): void;
    execute(c: { portal: string; rows?: number }): void;
    sync(): void;
    sendCopyFail(msg: string): void;
}

interface FieldDesc {
    name: string;
    dataTypeID: number;
    format?: string;
}

interface TypeSource {
    getTypeParser(oid: number, format: string): (v: string) => unknown;
}

interface Shape {
    names: string[];
    parsers: ((v: string) => unknown)[];
}

export type LeanRow = Record<string, unknown>;
export type LeanCallback = (err: Error | null, rows: LeanRow[], rowCount: number,
    command: string | null) => void;

/* pg's own value mapping for Bind (dates, arrays, buffers, toPostgres) */
const prepareValue = (require('pg/lib/utils') as { prepareValue(v: unknown): unknown }).prepareValue;

const shapesByConnection = new WeakMap<PgConnection, Map<string, Shape>>();

function shapesOf(con: PgConnection): Map<string, Shape> {
    let m = shapesByConnection.get(con);
    if (m === undefined) {
        m = new Map();
        shapesByConnection.set(con, m);
    }
    return m;
}

const COMMAND_RE = /^([A-Za-z]+)(?: (\d+))?(?: (\d+))?/;

export class LeanQuery {
    readonly callback = undefined;
    readonly rows = undefined;
    readonly _result = undefined;
    readonly portal = '';
    private shape: Shape | undefined;
    private readonly out: LeanRow[] = [];
    private rowCount = 0;
    private command: string | null = null;
    private failed: Error | null = null;
    private done = false;

    constructor(readonly name: string, readonly text: string,
        private readonly values: readonly unknown[], private readonly types: TypeSource,
        private readonly cb: LeanCallback,
        private readonly onRow: ((row: LeanRow) => void) | null) {}

    submit(con: PgConnection): null {
        const shapes = shapesOf(con);
        this.shape = shapes.get(this.name);
        con.stream.cork?.();
        try {
            if (con.parsedStatements[this.name] === undefined &&
                con.submittedNamedStatements[this.name] === undefined) {
                con.parse({ text: this.text, name: this.name });
                con.submittedNamedStatements[this.name] = this.text;
            }
            try {
                con.bind({ portal: '', statement: this.name, values: this.values, binary: false,
                    valueMapper: prepareValue });
            } catch (err) {
                /*
                 * Answer at the Sync.  Unlike pg.Query, do not Close the
                 * statement: pg still records it as parsed when
                 * ParseComplete arrives, and every later use on this
                 * connection (other requests' too, when it is shared)
                 * would Bind a statement that no longer exists.
                 */
                con.sync();
                this.failed = err as Error;
                return null;
            }
            if (this.shape === undefined) {
                con.describe({ type: 'P', name: '' });
            }
            con.execute({ portal: '' });
            con.sync();
        } finally {
            con.stream.uncork?.();
        }
        return null;
    }

    handleRowDescription(msg: { fields: FieldDesc[] }): void {
        const names: string[] = [];
        const parsers: ((v: string) => unknown)[] = [];
        for (const f of msg.fields) {
            names.push(f.name);
            parsers.push(this.types.getTypeParser(f.dataTypeID, f.format ?? 'text'));
        }
        this.shape = { names, parsers };
        this.shapeSink?.(this.shape);
    }

    /* set by run(): stores a described shape for the connection */
    shapeSink: ((s: Shape) => void) | null = null;

    handleDataRow(msg: { fields: (string | null)[] }): void {
        if (this.failed !== null) {
            return;
        }
        const shape = this.shape;
        if (shape === undefined) {
            this.failed = new Error('pg: DataRow before any RowDescription for ' + this.name);
            return;
        }
        try {
            const row: LeanRow = {};
            const fields = msg.fields;
            for (let i = 0; i < fields.length; i++) {
                const raw = fields[i];
                row[shape.names[i]!] = raw === null || raw === undefined ? null : shape.parsers[i]!(raw);
            }
            if (this.onRow !== null) {
                this.onRow(row);
            }
            this.out.push(row);
        } catch (err) {
            this.failed = err as Error;
        }
    }

    handleCommandComplete(msg: { text: string }): void {
        if (this.shape === undefined) {
            /* described, and NoData came instead of a RowDescription: no rows, ever */
            this.shape = { names: [], parsers: [] };
            this.shapeSink?.(this.shape);
        }
        const m = COMMAND_RE.exec(msg.text);
        if (m !== null) {
            this.command = m[1]!;
            const n = m[3] ?? m[2];
            this.rowCount = n === undefined ? this.out.length : parseInt(n, 10);
        }
    }

    handleEmptyQuery(): void {
        /* a named statement with empty text: no CommandComplete follows */
    }

    handlePortalSuspended(): void {
        this.finish(new Error('pg: portal suspended on a statement run without a row limit'));
    }

    handleCopyInResponse(con: PgConnection): void {
        /* COPY FROM STDIN with no data: refuse it; PostgreSQL answers with an error */
        con.sendCopyFail('No source stream defined');
    }

    handleCopyData(): void {
        /* nothing: a COPY was already refused */
    }

    handleError(err: Error): void {
        this.finish(err);
    }

    handleReadyForQuery(): void {
        this.finish(this.failed);
    }

    private finish(err: Error | null): void {
        if (this.done) {
            return;
        }
        this.done = true;
        if (err !== null) {
            this.cb(err, [], 0, null);
        } else {
            this.cb(null, this.out, this.rowCount, this.command);
        }
    }
}

Object.setPrototypeOf(LeanQuery.prototype, pg.Query.prototype);

/*
 * Queue `text` (as named statement `name`) on a pipelined client.  The
 * shape described by the first execution on a connection is kept for the
 * later ones.
 */
export function submitLean(client: pg.Client, name: string, text: string,
    values: readonly unknown[], cb: LeanCallback, onRow: ((row: LeanRow) => void) | null = null): LeanQuery {
    const c = client as unknown as { connection: PgConnection; _types: TypeSource };
    const q = new LeanQuery(name, text, values, c._types, cb, onRow);
    const shapes = shapesOf(c.connection);
    q.shapeSink = (s) => shapes.set(name, s);
    client.query(q as unknown as pg.QueryConfig);
    return q;
}

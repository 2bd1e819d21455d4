/*
 * One claimed connection, as an RPC sees it.
 *
 *   claim ─► [setTimeout] ─► query … query ─► release
 *
 * - Statements with constant text run as named prepared statements (the
 *   name is derived from the text, so a changed schema gives a new name and
 *   never a stale plan).  This is why no request id is ever embedded in SQL
 *   text: unique texts defeat prepared statements (2-3x slower gets).
 * - The per-request `timeout` option bounds each statement's time to its
 *   FIRST row or its completion (storage.md §4.2), as the reference does.
 *   On expiry the RPC fails with QueryTimeoutError, the statement is
 *   cancelled inside PostgreSQL (pg_cancel_backend from a short-lived
 *   connection, so the database stops the work), and the connection is
 *   closed rather than reused.  BEGIN/COMMIT/ROLLBACK are never timed.
 *   Why not statement_timeout: it bounds the whole statement, including
 *   the time PostgreSQL spends blocked sending rows to a slow reader, so a
 *   findObjects streaming a large result to a slow client would fail; it
 *   would also time COMMIT, which can wait on synchronous replication and
 *   must not be cancelled half-way.
 * - Every statement fires query-start and then query-done or query-error;
 *   query-row fires per row only when a tracer is attached.
 * - Rows can be streamed in batches (portal with a row limit) with
 *   back-pressure: the caller's onRow may return a promise, and the socket
 *   to PostgreSQL is paused until it settles.
 * - A shared handle (pool.claimShared) sits on a pipelined connection with
 *   other requests' statements: it runs single statements only (no
 *   transaction, no streaming, no portal), and its timeout cancels the
 *   backend only when its own statement is the one PostgreSQL is running
 *   (otherwise the statement ahead of it is the slow one, with its own
 *   timer); its result is then discarded when it arrives.
 */

import { createHash } from 'node:crypto';
import * as pg from 'pg';
import { errors, MorayError } from '../errors/catalog';
import { probe } from '../probes';
import { abortOnError, abortOnErrorEnabled } from '../probes/abort-on-error';
import { mapPgError, probeSql } from './errors';
import { submitLean } from './lean-query';
import type { PgPool, PoolConn } from './pool';

const QUERY_START = probe('moray', 'query-start');
const QUERY_ROW = probe('moray', 'query-row');
const QUERY_DONE = probe('moray', 'query-done');
const QUERY_ERROR = probe('moray', 'query-error');
const QUERY_CONN_ERROR = probe('moray', 'query-conn-error');
const QUERY_TIMEOUT = probe('moray', 'query-timeout');

export type Row = Record<string, unknown>;

export interface QueryOptions {
    /* run as a named prepared statement (default true when values given) */
    prepare?: boolean;
    /* stream rows: called for each row; may return a promise to apply back-pressure */
    onRow?: (row: Row) => void | Promise<void>;
    /*
     * With onRow: read through a portal in batches of this many rows (for
     * unbounded results).  Without it the whole statement is sent at once
     * (one round trip) and rows still reach onRow one by one, with the
     * PostgreSQL socket paused while onRow's promise is pending.
     */
    batch?: number;
    /* not subject to the request timeout (BEGIN/COMMIT/ROLLBACK) */
    untimed?: boolean;
}

export interface Result {
    rows: Row[];
    rowCount: number;
}

const nameCache = new Map<string, string>();

function statementName(text: string): string {
    let n = nameCache.get(text);
    if (n === undefined) {
        n = 'm' + createHash('sha1').update(text).digest('hex').slice(0, 20);
        if (nameCache.size > 10000) {
            nameCache.clear();
        }
        nameCache.set(text, n);
    }
    return n;
}

/*
 * Did this error end the session?  A FATAL/PANIC report (57P01 terminated
 * by pg_terminate_backend or a fast shutdown, 57P02 crash of another
 * backend, 57P03 cannot connect now) or a connection-exception class 08
 * error is followed by the server closing the socket, but the socket end
 * can arrive after the RPC has already released the connection; without
 * this check the dead connection would go back to the pool and fail the
 * next request too.
 */
export function connectionLost(err: unknown): boolean {
    const e = err as { code?: unknown; severity?: unknown };
    if (typeof e?.code !== 'string') {
        return false;
    }
    return e.severity === 'FATAL' || e.severity === 'PANIC' ||
        e.code.startsWith('08') || e.code.startsWith('57P');
}

interface Streamable {
    connection: { stream: { pause(): void; resume(): void } };
}

export class PgHandle {
    private released = false;
    private timeoutMs = 0;
    private readonly claimed = Date.now();
    broken = false;
    inTransaction = false;

    constructor(private readonly pool: PgPool, readonly conn: PoolConn, readonly reqId: string,
        readonly shared = false) {}

    get id(): number {
        return this.conn.id;
    }

    /* Apply the request's `timeout` option (ms; 0 = none) to later statements. */
    setTimeout(ms: number): void {
        this.timeoutMs = ms > 0 ? Math.floor(ms) : 0;
    }

    async begin(isolation: 'READ COMMITTED' | 'REPEATABLE READ' = 'READ COMMITTED'): Promise<void> {
        if (this.shared) {
            throw new Error('BEGIN on a shared connection');
        }
        await this.query(`BEGIN TRANSACTION ISOLATION LEVEL ${isolation}`, undefined,
            { prepare: false, untimed: true });
        this.inTransaction = true;
    }

    async commit(): Promise<void> {
        await this.query('COMMIT', undefined, { prepare: false, untimed: true });
        this.inTransaction = false;
    }

    async rollback(): Promise<void> {
        if (!this.inTransaction || this.broken) {
            return;
        }
        try {
            await this.query('ROLLBACK', undefined, { prepare: false, untimed: true });
            this.inTransaction = false;
        } catch {
            this.broken = true;
        }
    }

    /* Map a failed statement's error, mark the connection, fire the probes. */
    private failed(err: unknown, text: string): MorayError {
        const reqId = this.reqId;
        const mapped = mapPgError(err, text, false);
        if (connectionLost(err)) {
            /* never hand this connection to another request */
            this.broken = true;
        }
        if (mapped.name === 'QueryTimeoutError') {
            QUERY_TIMEOUT.fire(() => [reqId, probeSql(text)]);
        } else if (!(err as { code?: string }).code) {
            this.broken = true;
            QUERY_CONN_ERROR.fire(() => [reqId, probeSql(text), String(err)]);
        } else {
            QUERY_ERROR.fire(() => [reqId, probeSql(text), String(err)]);
            if (abortOnErrorEnabled()) {
                abortOnError('query-error', String(err));
            }
        }
        return mapped;
    }

    /*
     * The request timeout fired before statement `q` saw its first row.
     * PostgreSQL is told to stop (pg_cancel_backend) and the connection is
     * not reused; on a shared connection only while `q` is the statement
     * running, since otherwise the one ahead of it is the slow one (with
     * its own timer) and `q`'s answer is simply dropped when it comes.
     * The cancel takes a few milliseconds to arrive: if `q` finishes
     * meanwhile, PostgreSQL cancels the statement pipelined behind it,
     * which then fails with QueryTimeoutError too.  That window is the
     * price of stopping the work in the database rather than abandoning it.
     */
    private timedOut(q: unknown, text: string): MorayError {
        const reqId = this.reqId;
        QUERY_TIMEOUT.fire(() => [reqId, probeSql(text)]);
        if (!this.shared) {
            this.conn.currentQuery = null;
        }
        if (!this.shared || (this.conn.client as unknown as { _activeQuery?: unknown })._activeQuery === q) {
            this.broken = true;
            /* shared: no new statement may join a connection that will close */
            this.conn.broken = true;
            this.pool.cancelBackend(this.conn);
        }
        return errors.queryTimeout(text);
    }

    /*
     * A prepared statement whose rows are collected (lean-query.ts).  On a
     * shared connection the timeout cancels the backend only while this
     * statement is the one running.
     */
    private leanQuery(text: string, values: readonly unknown[], untimed: boolean): Promise<Result> {
        const reqId = this.reqId;
        const client = this.conn.client;
        const shared = this.shared;
        if (!shared) {
            this.conn.currentQuery = text;
        }
        return new Promise<Result>((resolve, reject) => {
            let timer: NodeJS.Timeout | null = null;
            let settled = false;
            if (shared) {
                this.pool.corkShared(this.conn);
            }
            const q = submitLean(client, statementName(text), text, values,
                (err, rows, rowCount, command) => {
                    if (settled) {
                        return;
                    }
                    settled = true;
                    if (timer !== null) {
                        clearTimeout(timer);
                    }
                    if (!shared) {
                        this.conn.currentQuery = null;
                    }
                    if (err !== null) {
                        reject(this.failed(err, text));
                        return;
                    }
                    QUERY_DONE.fire(() => [reqId, probeSql(text), { rowCount, command }]);
                    resolve({ rows, rowCount });
                }, QUERY_ROW.enabled() ? (row) => QUERY_ROW.fire(() => [reqId, probeSql(text), row]) : null);
            if (this.timeoutMs > 0 && !untimed) {
                timer = setTimeout(() => {
                    timer = null;
                    if (settled) {
                        return;
                    }
                    settled = true;
                    reject(this.timedOut(q, text));
                }, this.timeoutMs);
            }
        });
    }

    query(text: string, values?: readonly unknown[], opts: QueryOptions = {}): Promise<Result> {
        if (this.released) {
            return Promise.reject(new Error('query on a released connection'));
        }
        if (this.shared && opts.onRow !== undefined) {
            return Promise.reject(new Error('streaming query on a shared connection'));
        }
        const client = this.conn.client;
        const prepare = opts.prepare ?? (values !== undefined && values.length > 0);
        const reqId = this.reqId;
        QUERY_START.fire(() => [reqId, probeSql(text)]);
        if (prepare && opts.onRow === undefined) {
            return this.leanQuery(text, values ?? [], opts.untimed === true);
        }
        if (!this.shared) {
            this.conn.currentQuery = text;
        }
        const cfg: pg.QueryConfig & { rows?: number } = { text, values: values as unknown[] };
        if (prepare) {
            cfg.name = statementName(text);
        }
        const onRow = opts.onRow;
        if (onRow && opts.batch !== undefined && opts.batch > 0) {
            /* a portal read in batches: one more round trip, bounded memory */
            cfg.rows = opts.batch;
        }
        return new Promise<Result>((resolve, reject) => {
            const q = new pg.Query(cfg);
            const rows: Row[] = [];
            let nrows = 0;
            let timer: NodeJS.Timeout | null = null;
            let settled = false;
            let pending: Promise<void> | null = null;
            let paused = false;
            const stream = (client as unknown as Streamable).connection.stream;
            const finish = (err: unknown, res?: Result) => {
                if (settled) {
                    return;
                }
                settled = true;
                if (timer) {
                    clearTimeout(timer);
                }
                if (paused) {
                    stream.resume();
                }
                if (!this.shared) {
                    this.conn.currentQuery = null;
                }
                if (err !== undefined && err !== null) {
                    reject(this.failed(err, text));
                    return;
                }
                QUERY_DONE.fire(() => [reqId, probeSql(text),
                    { rowCount: res!.rowCount, command: (q as unknown as { _result?: { command?: string } })._result?.command }]);
                resolve(res!);
            };
            if (this.timeoutMs > 0 && opts.untimed !== true) {
                timer = setTimeout(() => {
                    timer = null;
                    if (settled) {
                        return;
                    }
                    settled = true;
                    if (paused) {
                        stream.resume();
                    }
                    reject(this.timedOut(q, text));
                }, this.timeoutMs);
            }
            q.on('row', (row: Row) => {
                if (timer !== null) {
                    /* the first row arrived: the timeout no longer applies */
                    clearTimeout(timer);
                    timer = null;
                }
                if (settled) {
                    return;
                }
                nrows++;
                if (QUERY_ROW.enabled()) {
                    QUERY_ROW.fire(() => [reqId, probeSql(text), row]);
                }
                if (onRow === undefined) {
                    rows.push(row);
                    return;
                }
                const p = onRow(row);
                if (p !== undefined && pending === null) {
                    /* the consumer is full: stop reading PostgreSQL until it drains */
                    paused = true;
                    stream.pause();
                    pending = p.then(() => {
                        pending = null;
                        if (paused && !settled) {
                            paused = false;
                            stream.resume();
                        }
                    }, (e: unknown) => {
                        pending = null;
                        this.broken = true;
                        if (paused) {
                            paused = false;
                            stream.resume();
                        }
                        finish(e instanceof MorayError ? e : errors.internal(String(e)));
                    });
                }
            });
            q.on('error', (err: Error) => {
                /*
                 * pg 8.23 does not send Sync after an error on a portal read
                 * in batches (`rows`), so the connection would wait forever;
                 * send it as pg-cursor does.
                 */
                if (cfg.rows !== undefined && (err as { code?: string }).code !== undefined) {
                    (client as unknown as { connection: { sync(): void } }).connection.sync();
                }
                finish(err);
            });
            q.on('end', (r: pg.QueryResult) => {
                /* a portal read in batches reports only its last batch's count */
                const done = () => finish(null, { rows,
                    rowCount: cfg.rows !== undefined ? nrows : r?.rowCount ?? nrows });
                if (pending !== null) {
                    (pending as Promise<void>).then(done, () => undefined);
                } else {
                    done();
                }
            });
            if (this.shared) {
                this.pool.corkShared(this.conn);
            }
            client.query(q as unknown as pg.QueryConfig);
        });
    }

    release(): void {
        if (this.released) {
            return;
        }
        this.released = true;
        if (this.shared) {
            this.pool.releaseShared(this.conn, this.broken, Date.now() - this.claimed);
            return;
        }
        const broken = this.broken || this.inTransaction;
        this.pool.release(this.conn, broken, Date.now() - this.claimed);
    }
}

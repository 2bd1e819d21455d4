/*
 * sql(statement, values, options) → one record per result row
 * (moray-api.md §7.15, storage.md §6.9).  Runs inside a READ COMMITTED
 * transaction; values are bind parameters.  Syntax errors become
 * InternalError "Invalid SQL: …", unique violations UniqueAttributeError,
 * anything else the raw PostgreSQL error (name `error`).  node-moray's
 * notify() is `select pg_notify($1, $2)` through this RPC.
 *
 * Operators can turn it off with features.sql = false: the RPC then fails
 * with InvocationError-free `Error` "the sql RPC is disabled on this server"
 * (except the notify statement, which listen/notify users depend on).
 *
 * Rows stream from PostgreSQL in batches (a portal) with back-pressure:
 *
 *   BEGIN ─► query(statement, values) ─► each row → record (PostgreSQL's
 *   socket paused while the client is slow) ─► COMMIT
 *                                  error ─► mapped error, ROLLBACK
 */

import { errors } from '../errors/catalog';
import { withConnection, type MorayRpc } from './context';

const NOTIFY_SQL = /^\s*select\s+pg_notify\s*\(\s*\$1\s*,\s*\$2\s*\)\s*;?\s*$/i;

export const sql: MorayRpc = {
    name: 'sql',
    async run(app, req) {
        const [statement, values] = req.args as [string, unknown[]];
        if (!app.config.features.sql && !NOTIFY_SQL.test(statement)) {
            throw errors.plain('the sql RPC is disabled on this server (features.sql)');
        }
        await withConnection(app, req, 'getPGHandleAndTransaction', 'READ COMMITTED', (pg) =>
            req.step('execSql', () => pg.query(statement, values ?? [], {
                prepare: false,
                batch: 500,
                onRow: (row) => (req.write(row) ? undefined : req.drained()),
            })));
    },
};

/*
 * PostgreSQL errors → Moray wire errors (storage.md §4.3).
 *
 *   23505 "violates unique constraint"  → UniqueAttributeError (column, value
 *                                          parsed from the detail text)
 *   42601 syntax error, 42701 dup column → InternalError "Invalid SQL: ..."
 *   57014 statement timeout              → QueryTimeoutError (when we set it)
 *   anything else                        → name "error", the PostgreSQL text
 *
 * Connection-level failures (ECONNREFUSED, a terminated backend) are mapped
 * by the pool, not here.
 */

import { errors, MorayError } from '../errors/catalog';

export interface PgErrorLike {
    code?: string;
    message: string;
    detail?: string;
}

export function isPgError(e: unknown): e is PgErrorLike {
    return e instanceof Error && typeof (e as PgErrorLike).code === 'string' &&
        /^[0-9A-Z]{5}$/.test((e as PgErrorLike).code!);
}

const UNIQUE_DETAIL = /^Key \((.*)\)=\((.*)\) already exists\.$/s;

export function mapPgError(e: unknown, sql: string, timeoutSet: boolean): MorayError {
    if (e instanceof MorayError) {
        return e;
    }
    if (!isPgError(e)) {
        const msg = e instanceof Error ? e.message : String(e);
        return errors.raw(msg);
    }
    switch (e.code) {
    case '23505':
        if (e.message.includes('violates unique constraint')) {
            const m = UNIQUE_DETAIL.exec(e.detail ?? '');
            if (m) {
                return errors.uniqueAttribute(m[1]!, m[2]!);
            }
        }
        break;
    case '42601':
    case '42701':
        return errors.internal(`Invalid SQL: ${e.message}`);
    case '57014':
        if (timeoutSet) {
            return errors.queryTimeout(sql);
        }
        break;
    default:
        break;
    }
    return errors.raw(e.message, { sqlState: e.code });
}

/* SQL text as the query-* probes show it: no line breaks, first whitespace run collapsed. */
export function probeSql(sql: string): string {
    return sql.replace(/\n/g, ' ').replace(/\s+/, ' ');
}

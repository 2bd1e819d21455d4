/*
 * Restoring a plain-SQL `pg_dump` into a test database with nothing but the
 * `pg` driver.
 *
 * Why not `psql -f`: psql is not guaranteed on every machine that runs the
 * tests (the server itself only needs the `pg` module and embedded
 * PostgreSQL), and `pg` has no COPY FROM STDIN support without
 * pg-copy-streams.  A plain dump is a simple language, so we read it
 * ourselves:
 *
 *   dump text ──► DumpReader ──► items ──────────────────► one connection
 *                  │                                        │
 *                  ├─ statement  "CREATE TABLE …;"           ├─ run as is
 *                  ├─ copy       "COPY t (a,b) FROM stdin;"  ├─ decoded rows →
 *                  │               data lines … "\."          │  INSERT … VALUES
 *                  │                                          │  (literal, batched)
 *                  └─ meta       "\restrict KEY", "\connect"  └─ skipped / refused
 *
 * The reader tracks what psql's lexer tracks to find a statement's end: `--`
 * and nested block comments, '…' (with '' and E'…\'' escapes), "…"
 * identifiers and $tag$…$tag$ bodies.  A COPY statement switches it to
 * data mode until the `\.` line.  COPY text format per field:
 *
 *   \N alone        → NULL
 *   \b \f \n \r \t \v, \ooo (octal), \xhh (hex) → that byte
 *   \<any other>    → that character
 *
 * Octal/hex escapes produce *bytes* (the dump's encoding is UTF-8), so a
 * field is decoded into a byte buffer, then into a string.  Values are sent
 * as literals (`pg` escapeLiteral) in multi-row INSERTs; INSERT … VALUES
 * coerces each literal straight to the target column type, exactly like
 * COPY's input functions.
 *
 * Roles: dumps made without --no-owner contain `ALTER … OWNER TO moray`,
 * GRANTs, `SET ROLE`.  Roles are cluster-wide, so we create any referenced
 * role that is missing (NOLOGIN, tolerating a concurrent creator) instead of
 * rewriting statements.
 *
 * Failure modes: a statement error aborts the load and is rethrown with the
 * statement's line number; an unterminated string/COPY block or an unknown
 * psql meta-command is an error (better than silently restoring half).
 * Everything runs in one transaction, so a failed load leaves nothing.
 */

import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type * as pg from 'pg';
import { ROOT, testDatabase, type TestDatabase } from './harness';

export const FIXTURES_DIR = process.env['MORAY_FIXTURES_DIR'] ??
    (fs.existsSync(path.join(ROOT, '..', 'shared', 'fixtures')) ?
        path.join(ROOT, '..', 'shared', 'fixtures') : path.join(ROOT, 'test', 'fixtures'));

export const REFERENCE_DUMP = path.join(FIXTURES_DIR, 'reference-moray-db.sql');
export const REFERENCE_ANSWERS = path.join(FIXTURES_DIR, 'reference-moray-db.answers.json');

/* ---- reading the dump ---- */

export type DumpItem =
    | { kind: 'statement'; line: number; sql: string }
    | { kind: 'copy'; line: number; table: string; columns: string[] | null; rows: (string | null)[][] }
    | { kind: 'meta'; line: number; command: string; args: string };

/* psql meta-commands pg_dump emits that do not change what gets restored. */
const HARMLESS_META = new Set(['restrict', 'unrestrict', 'set', 'encoding']);

export function parseDump(text: string): DumpItem[] {
    const items: DumpItem[] = [];
    const n = text.length;
    /* offsets of line starts, for error messages and item line numbers */
    const lineStarts = [0];
    for (let k = 0; k < n; k++) {
        if (text.charCodeAt(k) === 10) {
            lineStarts.push(k + 1);
        }
    }
    const lineOf = (off: number): number => {
        let lo = 0;
        let hi = lineStarts.length - 1;
        while (lo < hi) {
            const mid = (lo + hi + 1) >> 1;
            if (lineStarts[mid]! <= off) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        return lo + 1;
    };
    const fail = (off: number, msg: string): never => {
        throw new Error(`dump line ${lineOf(off)}: ${msg}`);
    };
    const endOfLine = (off: number): number => {
        const e = text.indexOf('\n', off);
        return e === -1 ? n : e;
    };

    let i = 0;
    let start = -1; /* offset of the current statement, -1 between statements */

    while (i < n) {
        const c = text[i]!;
        if (start === -1) {
            if (c === '\n' || c === ' ' || c === '\t' || c === '\r') {
                i++;
                continue;
            }
            if (c === '\\') {
                /* a psql meta-command occupies the rest of the line */
                const e = endOfLine(i);
                const m = /^\\([A-Za-z_]+)\s*(.*)$/.exec(text.slice(i, e).trimEnd());
                if (m === null) {
                    fail(i, 'unparsable meta-command');
                }
                items.push({ kind: 'meta', line: lineOf(i), command: m![1]!, args: m![2]! });
                i = e;
                continue;
            }
            start = i;
        }
        if (c === '-' && text[i + 1] === '-') {
            i = endOfLine(i);
            if (text.slice(start, i).trim().startsWith('--')) {
                /* a comment between statements is not part of the next one */
                start = -1;
            }
            continue;
        }
        if (c === '/' && text[i + 1] === '*') {
            let depth = 1;
            let k = i + 2;
            while (k < n && depth > 0) {
                if (text[k] === '/' && text[k + 1] === '*') {
                    depth++;
                    k += 2;
                } else if (text[k] === '*' && text[k + 1] === '/') {
                    depth--;
                    k += 2;
                } else {
                    k++;
                }
            }
            if (depth > 0) {
                fail(i, 'unterminated comment');
            }
            i = k;
            continue;
        }
        if (c === "'") {
            const escaped = i > 0 && /[eE]/.test(text[i - 1]!) && !/[\w$]/.test(text[i - 2] ?? ' ');
            let k = i + 1;
            for (;;) {
                if (k >= n) {
                    fail(i, 'unterminated string');
                }
                const d = text[k]!;
                if (escaped && d === '\\') {
                    k += 2;
                } else if (d === "'") {
                    if (text[k + 1] === "'") {
                        k += 2;
                    } else {
                        k++;
                        break;
                    }
                } else {
                    k++;
                }
            }
            i = k;
            continue;
        }
        if (c === '"') {
            let k = i + 1;
            for (;;) {
                const e = text.indexOf('"', k);
                if (e === -1) {
                    fail(i, 'unterminated identifier');
                }
                if (text[e + 1] === '"') {
                    k = e + 2;
                    continue;
                }
                k = e + 1;
                break;
            }
            i = k;
            continue;
        }
        if (c === '$' && !/[\w$]/.test(text[i - 1] ?? ' ')) {
            const m = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(text.slice(i, i + 80));
            if (m !== null) {
                const tag = m[0];
                const e = text.indexOf(tag, i + tag.length);
                if (e === -1) {
                    fail(i, `unterminated ${tag} string`);
                }
                i = e + tag.length;
                continue;
            }
        }
        i++;
        if (c !== ';') {
            continue;
        }
        const sql = text.slice(start, i);
        const line = lineOf(start);
        start = -1;
        const copy = /^\s*COPY\s+((?:"(?:[^"]|"")*"|[\w.$])+)\s*(?:\(([^)]*)\))?\s+FROM\s+stdin\s*(.*);$/is
            .exec(sql);
        if (copy === null) {
            items.push({ kind: 'statement', line, sql });
            continue;
        }
        if (copy[3]!.trim() !== '') {
            fail(i, `COPY options not supported: ${copy[3]}`);
        }
        /* data starts on the next line and ends at a line "\." */
        let p = endOfLine(i) + 1;
        const rows: (string | null)[][] = [];
        for (;;) {
            if (p >= n) {
                fail(i, 'COPY data not terminated by \\.');
            }
            const q = endOfLine(p);
            let l = text.slice(p, q);
            if (l.endsWith('\r')) {
                l = l.slice(0, -1);
            }
            p = q + 1;
            if (l === '\\.') {
                break;
            }
            rows.push(l.split('\t').map(decodeCopyField));
        }
        const columns = copy[2] === undefined ? null : copy[2].split(',').map((s) => s.trim());
        items.push({ kind: 'copy', line, table: copy[1]!, columns, rows });
        i = Math.min(p, n);
    }
    if (start !== -1 && text.slice(start).trim() !== '') {
        fail(start, "statement without terminating ';'");
    }
    return items;
}

/* One field of COPY text format → string (or null for \N). */
export function decodeCopyField(f: string): string | null {
    if (f === '\\N') {
        return null;
    }
    if (!f.includes('\\')) {
        return f;
    }
    const out: number[] = [];
    const pushStr = (s: string) => {
        for (const b of Buffer.from(s, 'utf8')) {
            out.push(b);
        }
    };
    let k = 0;
    while (k < f.length) {
        const ch = f[k]!;
        if (ch !== '\\' || k + 1 >= f.length) {
            const cp = f.codePointAt(k)!;
            const s = String.fromCodePoint(cp);
            pushStr(s);
            k += s.length;
            continue;
        }
        const d = f[k + 1]!;
        k += 2;
        switch (d) {
        case 'b': out.push(8); break;
        case 'f': out.push(12); break;
        case 'n': out.push(10); break;
        case 'r': out.push(13); break;
        case 't': out.push(9); break;
        case 'v': out.push(11); break;
        case 'x': {
            const m = /^[0-9a-fA-F]{1,2}/.exec(f.slice(k));
            if (m === null) {
                out.push(0x78);
            } else {
                out.push(parseInt(m[0], 16));
                k += m[0].length;
            }
            break;
        }
        default:
            if (d >= '0' && d <= '7') {
                const m = /^[0-7]{0,2}/.exec(f.slice(k))!;
                out.push(parseInt(d + m[0], 8) & 0xff);
                k += m[0].length;
            } else {
                const cp = f.codePointAt(k - 1)!;
                const s = String.fromCodePoint(cp);
                pushStr(s);
                k += s.length - 1;
            }
        }
    }
    return Buffer.from(out).toString('utf8');
}

/* ---- loading ---- */

export interface LoadStats {
    statements: number;
    copies: number;
    rows: number;
    rolesCreated: string[];
}

/* Roles a dump refers to (owners, grantees, SET ROLE / SESSION AUTHORIZATION). */
export function referencedRoles(items: DumpItem[]): string[] {
    const roles = new Set<string>();
    const ident = '("(?:[^"]|"")+"|[A-Za-z_][\\w$]*)';
    const res = [
        new RegExp(`OWNER\\s+TO\\s+${ident}`, 'gi'),
        new RegExp(`^\\s*SET\\s+(?:SESSION\\s+)?ROLE\\s+(?:TO\\s+|=\\s*)?'?${ident}`, 'gi'),
        new RegExp(`^\\s*SET\\s+SESSION\\s+AUTHORIZATION\\s+'?${ident}`, 'gi'),
        new RegExp(`^\\s*GRANT\\s[\\s\\S]*?\\sTO\\s+${ident}`, 'gi'),
    ];
    for (const it of items) {
        if (it.kind !== 'statement') {
            continue;
        }
        for (const re of res) {
            for (const m of it.sql.matchAll(re)) {
                let r = m[1]!;
                if (r.startsWith('"')) {
                    r = r.slice(1, -1).replace(/""/g, '"');
                } else {
                    r = r.toLowerCase();
                }
                if (!['public', 'current_user', 'session_user', 'current_role', 'default', 'none']
                    .includes(r.toLowerCase())) {
                    roles.add(r);
                }
            }
        }
    }
    return [...roles].sort();
}

const INSERT_BATCH_BYTES = 1 << 20;

/*
 * Run a parsed dump on `client` (which must be able to create the objects;
 * the harness connects as the superuser `postgres`).  One transaction.
 */
export async function loadDump(client: pg.Client, text: string): Promise<LoadStats> {
    const items = parseDump(text);
    const stats: LoadStats = { statements: 0, copies: 0, rows: 0, rolesCreated: [] };

    for (const role of referencedRoles(items)) {
        const r = await client.query('SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1', [role]);
        if (r.rowCount === 0) {
            try {
                await client.query(`CREATE ROLE ${client.escapeIdentifier(role)} NOLOGIN`);
                stats.rolesCreated.push(role);
            } catch (err) {
                /* another test file created it meanwhile: 42710 / 23505 on pg_authid */
                const code = (err as { code?: string }).code;
                if (code !== '42710' && code !== '23505') {
                    throw err;
                }
            }
        }
    }

    const run = async (sql: string, line: number): Promise<void> => {
        try {
            await client.query(sql);
        } catch (err) {
            const e = err as Error;
            e.message = `dump line ${line}: ${e.message}\n  in: ${sql.slice(0, 200)}`;
            throw e;
        }
    };

    await client.query('BEGIN');
    try {
        for (const it of items) {
            if (it.kind === 'meta') {
                if (!HARMLESS_META.has(it.command)) {
                    throw new Error(`dump line ${it.line}: psql meta-command \\${it.command} not supported`);
                }
                continue;
            }
            if (it.kind === 'statement') {
                await run(it.sql, it.line);
                stats.statements++;
                continue;
            }
            stats.copies++;
            if (it.rows.length === 0) {
                continue;
            }
            const head = `INSERT INTO ${it.table}` +
                (it.columns === null ? '' : ` (${it.columns.join(', ')})`) + ' VALUES\n';
            let batch: string[] = [];
            let bytes = 0;
            const flush = async () => {
                if (batch.length > 0) {
                    await run(head + batch.join(',\n'), it.line);
                    batch = [];
                    bytes = 0;
                }
            };
            for (const row of it.rows) {
                if (it.columns !== null && row.length !== it.columns.length) {
                    throw new Error(`dump line ${it.line}: COPY row has ${row.length} fields, ` +
                        `expected ${it.columns.length}`);
                }
                const tuple = '(' + row.map((v) => v === null ? 'NULL' : client.escapeLiteral(v))
                    .join(', ') + ')';
                batch.push(tuple);
                bytes += tuple.length;
                stats.rows++;
                if (bytes >= INSERT_BATCH_BYTES) {
                    await flush();
                }
            }
            await flush();
        }
        await client.query('COMMIT');
    } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw err;
    }
    return stats;
}

/* Load a dump file into an existing database (fresh session, closed after). */
export async function restoreDump(db: TestDatabase, file = REFERENCE_DUMP): Promise<LoadStats> {
    const text = fs.readFileSync(file, 'utf8');
    const c = await db.client();
    try {
        return await loadDump(c, text);
    } finally {
        await c.end();
    }
}

/* A fresh test database holding the reference fixture. */
export async function fixtureDatabase(prefix = 'compat', file = REFERENCE_DUMP):
    Promise<{ db: TestDatabase; stats: LoadStats }> {
    const db = await testDatabase(prefix);
    try {
        const stats = await restoreDump(db, file);
        return { db, stats };
    } catch (err) {
        await db.drop().catch(() => undefined);
        throw err;
    }
}

/* ---- psql, when present (used to cross-check the loader) ---- */

export function psqlPath(): string | null {
    for (const p of ['/usr/lib/postgresql/15/bin/psql', '/usr/bin/psql']) {
        if (fs.existsSync(p)) {
            return p;
        }
    }
    const r = spawnSync('sh', ['-c', 'command -v psql'], { encoding: 'utf8' });
    const p = r.stdout.trim();
    return r.status === 0 && p !== '' ? p : null;
}

/* `psql -v ON_ERROR_STOP=1 -1 -f file` against the database; throws on failure. */
export function restoreWithPsql(db: TestDatabase, file = REFERENCE_DUMP): void {
    const psql = psqlPath();
    if (psql === null) {
        throw new Error('psql not available');
    }
    const r = spawnSync(psql, ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-1', '-d', db.url, '-f', file],
        { encoding: 'utf8' });
    if (r.status !== 0) {
        throw new Error(`psql failed (${r.status}): ${r.stderr}`);
    }
}

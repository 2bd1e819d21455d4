/*
 * Filter AST + bucket schema -> the WHERE clause of the index stage
 * (storage.md §11.2-§11.4, moray-api.md §10.3/§10.5/§10.6/§10.9).
 *
 *   parse.ts ──► AST ──► decorate() ──► Compiler.node() ──► "WHERE " + clause
 *                         │ (whole-tree      │ (one fragment per node,     + ORDER BY
 *                         │  rejections)     │  values only as $n)         + LIMIT/OFFSET
 *                         ▼                  ▼
 *                     Error / NotIndexed   { where, args }
 *
 * Two rules this module never bends:
 *   1. Values never enter the SQL text.  Every filter value becomes a bind
 *      parameter ($n); the only literals written are LIMIT/OFFSET numbers
 *      (validated as digits) and sort orders (one of ASC/asc/DESC/desc).
 *   2. Identifiers only pass through quoteIdent().  The reference wrote
 *      bare column names and let PostgreSQL fold them to lower case, so a
 *      name must come out as its (ASCII) lower-case form.  quoteIdent
 *      writes that form bare when it is a plain identifier that is not a
 *      PostgreSQL keyword (so sql_only text matches the reference: `str`,
 *      `_id`), and double-quoted otherwise ("order", "user", ...), which
 *      names the same column PostgreSQL's folding would have and can never
 *      be read as SQL.
 *
 * Fragment text, spacing included, is the reference's (it is visible in
 * sql_only output).  Leaf fragments, column always on the right:
 *
 *   (a=v)         " ( $1 = a AND a IS NOT NULL ) "      array: " ( a @> ARRAY[$1]::TEXT[] ) "
 *   (a>=v)        " ( $1 <= a AND a IS NOT NULL ) "     array: " ( $1 <= ANY(a) ) "
 *   (a<=v)        " ( $1 >= a AND a IS NOT NULL ) "     array: " ( $1 >= ANY(a) ) "
 *   caseIgnore    " ( $1 ILIKE a AND a IS NOT NULL ) "  array: " ( $1 ILIKE ANY(a) ) "
 *   (a=*)         "a IS NOT NULL"                       (index fields only)
 *   (a=x*y)       " ( a LIKE $1 AND a IS NOT NULL ) "   array: NotIndexedError
 *   range ops     "$1::NUMRANGE && a"                   array: "$1::NUMRANGE @> ANY(a)"
 *   and / or      " (" + parts.join(") AND (") + ") "
 *   not           " NOT (" + part + ")"
 *
 * Untranslatable leaves (unindexed or reindexing fields, presence on
 * internal fields) compile to "" and are left to the post-filter:
 *   and: drops "" children, all "" -> NotIndexedError(<and text>)
 *   or:  any "" child -> NotIndexedError(<or text>), at the first one
 *   not: "" stays ""
 *   whole filter "" -> InvalidQueryError(<filter text>)
 * The reference crashed with AssertionError while printing an OR whose
 * earlier child had been converted to a number (it mutated the tree); the
 * tree here is immutable, so the message always shows the filter as sent.
 *
 * Errors are operational (MorayError) except programmer errors such as an
 * unknown node type, which the type system already excludes.
 */

import { errors } from '../errors/catalog';
import { type BucketSchema, declaredIndex, usableIndex } from '../schema/bucket-types';
import {
    ARG_CAST, type ExtRule, type IndexTypeInfo, INDEX_TYPES, type ScalarType, filterParam,
} from '../schema/index-types';
import { ValueFormatError } from '../schema/values';
import {
    type ExtNode, type FilterNode, type LeafNode, filterToString, forEachNode, isLeaf,
} from './ast';

/* ------------------------------------------------------------------ */
/* Identifiers                                                         */
/* ------------------------------------------------------------------ */

/*
 * PostgreSQL 15 keywords that are not "unreserved" (pg_get_keywords()
 * catcode <> 'U'): as bare column references these are either syntax
 * errors or, worse, something else (`user` is CURRENT_USER).
 */
const PG_KEYWORDS: ReadonlySet<string> = new Set([
    'all', 'analyse', 'analyze', 'and', 'any', 'array', 'as', 'asc', 'asymmetric',
    'authorization', 'between', 'bigint', 'binary', 'bit', 'boolean', 'both', 'case', 'cast',
    'char', 'character', 'check', 'coalesce', 'collate', 'collation', 'column', 'concurrently',
    'constraint', 'create', 'cross', 'current_catalog', 'current_date', 'current_role',
    'current_schema', 'current_time', 'current_timestamp', 'current_user', 'dec', 'decimal',
    'default', 'deferrable', 'desc', 'distinct', 'do', 'else', 'end', 'except', 'exists',
    'extract', 'false', 'fetch', 'float', 'for', 'foreign', 'freeze', 'from', 'full', 'grant',
    'greatest', 'group', 'grouping', 'having', 'ilike', 'in', 'initially', 'inner', 'inout',
    'int', 'integer', 'intersect', 'interval', 'into', 'is', 'isnull', 'join', 'lateral',
    'leading', 'least', 'left', 'like', 'limit', 'localtime', 'localtimestamp', 'national',
    'natural', 'nchar', 'none', 'normalize', 'not', 'notnull', 'null', 'nullif', 'numeric',
    'offset', 'on', 'only', 'or', 'order', 'out', 'outer', 'overlaps', 'overlay', 'placing',
    'position', 'precision', 'primary', 'real', 'references', 'returning', 'right', 'row',
    'select', 'session_user', 'setof', 'similar', 'smallint', 'some', 'substring', 'symmetric',
    'table', 'tablesample', 'then', 'time', 'timestamp', 'to', 'trailing', 'treat', 'trim',
    'true', 'union', 'unique', 'user', 'using', 'values', 'varchar', 'variadic', 'verbose',
    'when', 'where', 'window', 'with', 'xmlattributes', 'xmlconcat', 'xmlelement', 'xmlexists',
    'xmlforest', 'xmlnamespaces', 'xmlparse', 'xmlpi', 'xmlroot', 'xmlserialize', 'xmltable',
]);

const BARE_IDENT_RE = /^[a-z_][a-z0-9_]*$/;

/*
 * THE identifier quoting function: the column PostgreSQL would have folded
 * an unquoted `name` to (ASCII lower case), bare when that is safe, else
 * double-quoted with embedded quotes doubled.
 */
export function quoteIdent(name: string): string {
    const folded = name.replace(/[A-Z]/g, (c) => c.toLowerCase());
    if (BARE_IDENT_RE.test(folded) && !PG_KEYWORDS.has(folded)) {
        return folded;
    }
    return '"' + folded.replace(/"/g, '""') + '"';
}

/* ------------------------------------------------------------------ */
/* Attributes -> columns                                               */
/* ------------------------------------------------------------------ */

/* Internal columns a filter may use, and how their values are typed. */
export const INTERNAL_FIELDS: Readonly<Record<string, 'number' | 'string'>> = Object.freeze({
    _id: 'number',
    _txn_snap: 'number',
    _mtime: 'number',
    _key: 'string',
    _etag: 'string',
});

export function isInternalField(attr: string): boolean {
    return Object.prototype.hasOwnProperty.call(INTERNAL_FIELDS, attr);
}

export type ResolvedField =
    | { readonly kind: 'index'; readonly column: string; readonly info: IndexTypeInfo }
    | { readonly kind: 'internal'; readonly column: string; readonly scalar: ScalarType };

/* Where a filter attribute lives in the index stage, or null (post-filter only). */
export function resolveField(bucket: BucketSchema, attr: string): ResolvedField | null {
    const spec = usableIndex(bucket, attr);
    if (spec !== undefined) {
        return { kind: 'index', column: quoteIdent(attr), info: INDEX_TYPES[spec.type] };
    }
    const internal = INTERNAL_FIELDS[attr];
    if (isInternalField(attr) && internal !== undefined) {
        return { kind: 'internal', column: quoteIdent(attr), scalar: internal };
    }
    return null;
}

/* ------------------------------------------------------------------ */
/* Decoration: whole-tree rejections (storage.md §11.1)                */
/* ------------------------------------------------------------------ */

export const SUPPORTED_EXT_RULES: ReadonlySet<string> = new Set([
    'overlaps', 'contains', 'within', 'caseIgnoreMatch', 'caseIgnoreSubstringsMatch',
    '2.5.13.2', '2.5.13.4',
]);

export function isRangeRule(rule: string | undefined): rule is ExtRule {
    return rule === 'overlaps' || rule === 'contains' || rule === 'within';
}

/*
 * Checks that apply to the whole filter before any SQL is built, in the
 * reference's traversal order (depth-first, leaves in document order):
 * _idx anywhere, approx, unsupported ext rules, range rules on fields that
 * are not usable indexes.  Shared by the compiler and the matcher.
 */
export function decorateFilter(ast: FilterNode, bucket: BucketSchema): void {
    forEachNode(ast, (node) => {
        if (!isLeaf(node)) {
            return;
        }
        if (node.attribute === '_idx') {
            throw errors.plain('filtering on "_idx" is not allowed');
        }
        if (node.type === 'approx') {
            throw errors.plain('approx filters not allowed');
        }
        if (node.type === 'ext') {
            if (node.rule === undefined || !SUPPORTED_EXT_RULES.has(node.rule)) {
                throw errors.plain('unsupported ext filter');
            }
            if (isRangeRule(node.rule) && usableIndex(bucket, node.attribute) === undefined) {
                throw errors.notIndexed(bucket.name, filterToString(node));
            }
        }
    });
}

/* ------------------------------------------------------------------ */
/* requireIndexes (moray-api.md §10.8)                                 */
/* ------------------------------------------------------------------ */

export interface UsableIndexReport {
    /* leaf attributes that are neither index fields nor internal fields */
    readonly unindexed: string[];
    /* leaf attributes that are index fields still being reindexed */
    readonly reindexing: string[];
}

/* Every leaf attribute, classified; each name listed once, in filter order. */
export function checkUsableIndexes(ast: FilterNode, bucket: BucketSchema): UsableIndexReport {
    const unindexed: string[] = [];
    const reindexing: string[] = [];
    forEachNode(ast, (node) => {
        if (!isLeaf(node) || isInternalField(node.attribute)) {
            return;
        }
        const attr = node.attribute;
        if (declaredIndex(bucket, attr) === undefined) {
            if (!unindexed.includes(attr)) {
                unindexed.push(attr);
            }
        } else if (bucket.reindexing.has(attr) && !reindexing.includes(attr)) {
            reindexing.push(attr);
        }
    });
    return { unindexed, reindexing };
}

/*
 * Throw NotIndexedError with both lists when any leaf is unusable.  The
 * message shows `rawFilter`, the filter exactly as the client sent it.
 */
export function assertUsableIndexes(ast: FilterNode, bucket: BucketSchema,
    rawFilter: string): void {
    const r = checkUsableIndexes(ast, bucket);
    if (r.unindexed.length !== 0 || r.reindexing.length !== 0) {
        throw errors.notIndexedFields(bucket.name, rawFilter, r.reindexing, r.unindexed);
    }
}

/* ------------------------------------------------------------------ */
/* The compiler                                                        */
/* ------------------------------------------------------------------ */

export interface SortKey {
    readonly attribute?: string;
    readonly order?: string;
}

export interface CompileOptions {
    readonly sort?: SortKey | readonly SortKey[];
    readonly limit?: number | string;
    readonly offset?: number | string;
    readonly noLimit?: boolean;
    /* number of the first $n this clause uses (callers prepend their own) */
    readonly firstParam?: number;
}

export interface CompiledWhere {
    /* "WHERE <clause>[ ORDER BY ...][ LIMIT n][ OFFSET m]" */
    readonly where: string;
    readonly args: unknown[];
}

export const DEFAULT_LIMIT = 1000;

/* The loose LIKE pattern of the reference: the final piece is not anchored. */
export function likePattern(initial: string, any: readonly string[], final: string): string {
    let p = '';
    if (initial) {
        p += initial + '%';
    }
    for (const piece of any) {
        p += '%' + piece + '%';
    }
    if (final) {
        p += '%' + final + '%';
    }
    return p;
}

/* The value's bind parameter for a column of element type `scalar`. */
export function typedFilterValue(scalar: ScalarType, raw: string, leaf: LeafNode): unknown {
    try {
        return filterParam(scalar, raw);
    } catch (err) {
        if (err instanceof ValueFormatError) {
            throw errors.invalidQuery(filterToString(leaf));
        }
        throw err;
    }
}

const COMPARE_OPS = { equal: '=', ge: '<=', le: '>=' } as const;

class Compiler {
    readonly args: unknown[] = [];

    constructor(private readonly bucket: BucketSchema, private readonly firstParam: number) {}

    private param(value: unknown): string {
        this.args.push(value);
        return '$' + (this.firstParam + this.args.length - 1);
    }

    node(node: FilterNode): string {
        switch (node.type) {
        case 'and': {
            const parts: string[] = [];
            for (const child of node.filters) {
                const part = this.node(child);
                if (part !== '') {
                    parts.push(part);
                }
            }
            if (parts.length === 0) {
                throw errors.notIndexed(this.bucket.name, filterToString(node));
            }
            return ' (' + parts.join(') AND (') + ') ';
        }
        case 'or': {
            const parts: string[] = [];
            for (const child of node.filters) {
                const part = this.node(child);
                if (part === '') {
                    throw errors.notIndexed(this.bucket.name, filterToString(node));
                }
                parts.push(part);
            }
            return ' (' + parts.join(') OR (') + ') ';
        }
        case 'not': {
            const part = this.node(node.filter);
            return part === '' ? '' : ' NOT (' + part + ')';
        }
        default:
            return this.leaf(node);
        }
    }

    private leaf(node: LeafNode): string {
        const field = resolveField(this.bucket, node.attribute);
        if (field === null) {
            return '';
        }
        const col = field.column;
        const isArray = field.kind === 'index' && field.info.isArray;
        const scalar: ScalarType = field.kind === 'index' ? field.info.element : field.scalar;

        switch (node.type) {
        case 'present':
            return field.kind === 'index' ? `${col} IS NOT NULL` : '';
        case 'equal':
        case 'ge':
        case 'le': {
            const p = this.param(typedFilterValue(scalar, node.value, node));
            const op = COMPARE_OPS[node.type];
            if (isArray && field.kind === 'index') {
                return node.type === 'equal'
                    ? ` ( ${col} @> ARRAY[${p}]::${field.info.arrayCast} ) `
                    : ` ( ${p} ${op} ANY(${col}) ) `;
            }
            return this.scalarCompare(p, op, field);
        }
        case 'substring':
            if (isArray) {
                throw errors.notIndexed(this.bucket.name, filterToString(node));
            }
            return ` ( ${col} LIKE ${this.param(likePattern(node.initial, node.any, node.final))}` +
                ` AND ${col} IS NOT NULL ) `;
        case 'ext':
            return this.ext(node, field, isArray, scalar);
        case 'approx':
            /* decorateFilter rejects these before compilation */
            throw errors.plain('approx filters not allowed');
        }
    }

    /* " ( $n <op> col AND col IS NOT NULL ) ", or its extended-id form for _id. */
    private scalarCompare(p: string, op: string, field: ResolvedField): string {
        const col = field.column;
        if (field.kind === 'internal' && col === '_id' && this.bucket.hasExtendedId) {
            const idx = quoteIdent('_idx');
            return ` ( ( ${p} ${op} ${col}::BIGINT AND ${col} IS NOT NULL ) OR` +
                ` ( ${p} ${op} ${idx} AND ${idx} IS NOT NULL ) ) `;
        }
        return ` ( ${p} ${op} ${col} AND ${col} IS NOT NULL ) `;
    }

    private ext(node: ExtNode, field: ResolvedField,
        isArray: boolean, scalar: ScalarType): string {
        const col = field.column;
        switch (node.rule) {
        case 'caseIgnoreMatch': {
            const p = this.param(typedFilterValue(scalar, node.value, node));
            return isArray ? ` ( ${p} ILIKE ANY(${col}) ) ` : this.scalarCompare(p, 'ILIKE', field);
        }
        case 'caseIgnoreSubstringsMatch': {
            if (isArray) {
                throw errors.notIndexed(this.bucket.name, filterToString(node));
            }
            const s = node.substring;
            const pattern = s === undefined
                ? node.value.toLowerCase()
                : likePattern(s.initial.toLowerCase(), s.any.map((a) => a.toLowerCase()),
                    s.final.toLowerCase());
            return ` ( ${col} ILIKE ${this.param(pattern)} AND ${col} IS NOT NULL ) `;
        }
        case 'overlaps':
        case 'contains':
        case 'within': {
            /* decorateFilter guarantees a usable index field here */
            const op = field.kind === 'index' ? field.info.ext[node.rule] : undefined;
            if (op === undefined) {
                throw errors.invalidQuery(filterToString(node));
            }
            const p = this.param(typedFilterValue(op.arg, node.value, node));
            const target = isArray ? `ANY(${col})` : col;
            return `${p}::${ARG_CAST[op.arg]} ${op.op} ${target}`;
        }
        default:
            /* the caseIgnore OIDs 2.5.13.2 / 2.5.13.4: parsed, never indexable */
            throw errors.notIndexed(this.bucket.name, filterToString(node));
        }
    }
}

const SORT_ORDERS: ReadonlySet<string> = new Set(['ASC', 'asc', 'DESC', 'desc']);
const SORT_ATTR_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
const DIGITS_RE = /^[0-9]+$/;

function orderBy(bucket: BucketSchema, sort: CompileOptions['sort']): string {
    if (sort === undefined) {
        return '';
    }
    const keys: readonly SortKey[] = Array.isArray(sort) ? sort : [sort as SortKey];
    const cols: string[] = [];
    for (const key of keys) {
        const attr = key.attribute;
        if (!attr) {
            continue;
        }
        if (typeof attr === 'string' && attr.toLowerCase() === '_idx') {
            throw errors.plain('sorting on "_idx" is not allowed');
        }
        if (typeof attr !== 'string' || !SORT_ATTR_RE.test(attr)) {
            /* what PostgreSQL says about a column it cannot find */
            throw errors.raw(`column "${String(attr)}" does not exist`);
        }
        let suffix = '';
        if (key.order !== undefined) {
            if (!SORT_ORDERS.has(key.order)) {
                throw errors.invocation('options.sort.order should be equal to one of the ' +
                    'allowed values ("ASC", "DESC")');
            }
            suffix = ' ' + key.order;
        }
        const col = quoteIdent(attr);
        cols.push(col + suffix);
        if (bucket.hasExtendedId && col === '_id') {
            cols.push(quoteIdent('_idx') + suffix);
        }
    }
    return cols.length === 0 ? '' : ' ORDER BY ' + cols.join(', ');
}

/* A LIMIT/OFFSET value as SQL text: a safe non-negative integer or digits. */
function countText(name: string, v: number | string): string {
    if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) {
        return String(v);
    }
    if (typeof v === 'string' && DIGITS_RE.test(v)) {
        return v;
    }
    throw errors.invocation(`options.${name} should be integer,string`);
}

/*
 * The WHERE clause of the index stage, starting with "WHERE ".  Used as is
 * by findObjects (followed by the post-filter of match.ts) and by
 * updateObjects/deleteMany (index stage only: see compileIndexStageOnly).
 */
export function compileFilter(ast: FilterNode, bucket: BucketSchema,
    opts: CompileOptions = {}): CompiledWhere {
    decorateFilter(ast, bucket);
    const compiler = new Compiler(bucket, opts.firstParam ?? 1);
    const clause = compiler.node(ast);
    if (clause === '') {
        throw errors.invalidQuery(filterToString(ast));
    }
    let where = 'WHERE ' + clause + orderBy(bucket, opts.sort);
    if (opts.limit) {
        where += ' LIMIT ' + countText('limit', opts.limit);
    } else if (opts.noLimit !== true) {
        where += ' LIMIT ' + DEFAULT_LIMIT;
    }
    if (opts.offset) {
        where += ' OFFSET ' + countText('offset', opts.offset);
    }
    return { where, args: compiler.args };
}

/*
 * updateObjects / deleteMany: every leaf must be a usable index or an
 * internal field (NotIndexedError with the field lists otherwise, showing
 * `rawFilter`), then the same WHERE clause as findObjects.  No post-filter
 * runs for these, so substring matches stay as loose as the SQL.
 */
export function compileIndexStageOnly(ast: FilterNode, bucket: BucketSchema, rawFilter: string,
    opts: CompileOptions = {}): CompiledWhere {
    assertUsableIndexes(ast, bucket, rawFilter);
    return compileFilter(ast, bucket, opts);
}

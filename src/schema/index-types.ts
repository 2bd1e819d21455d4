/*
 * The 17 Moray index types, as ONE declarative table (storage.md §3.2,
 * moray-api.md §5.3), and the value conversions that hang off it.
 *
 *   type name ──► IndexTypeInfo
 *                   pgType       column type in CREATE TABLE / ALTER TABLE
 *                   arrayCast    "TEXT[]" in  col @> ARRAY[$n]::TEXT[]  (array types)
 *                   method       BTREE / GIN / GIST for the partial index
 *                   element      scalar type each value (or array element) converts as
 *                   ext          overlaps / contains / within: argument type + SQL operator
 *                   postFilter   how the JavaScript exact stage treats leaves on it
 *
 * Everything else (DDL, filter SQL, the post-filter, the bucket config
 * validator's list of allowed names) reads this table instead of repeating
 * it, so adding a type is one row.
 *
 * Conversions, three directions, one scalar rule each:
 *
 *   write   convertForWrite(field, type, v)   storage.md §5: bind parameter
 *           (scalars as text / number / Date, arrays as the PostgreSQL array
 *           literal text the reference built by hand), or null.
 *           Failure -> InvalidIndexTypeError "index(<field>) is of type <type>".
 *   filter  filterParam(scalar, raw)          storage.md §11.3: bind parameter
 *           for a filter value (boolean as 'TRUE'/'FALSE' text, date as a Date,
 *           number via parseFloat with NaN allowed, addresses canonical text).
 *   match   (src/filter/match.ts) typed JavaScript values for the post-filter.
 *
 * filterParam throws ValueFormatError; the filter compiler owns the leaf
 * text and turns it into InvalidQueryError.
 */

import { errors } from '../errors/catalog';
import {
    ValueFormatError, booleanText, canonicalIp, canonicalMac, canonicalSubnet, checkNumrange,
    checkUuid, isoDate, normaliseDaterange, parseDate, toNumber,
} from './values';

/* Element ("scalar") types: what one value, or one array element, is. */
export type ScalarType =
    | 'string' | 'number' | 'boolean' | 'date' | 'uuid'
    | 'ip' | 'subnet' | 'mac' | 'numrange' | 'daterange';

export type ExtRule = 'overlaps' | 'contains' | 'within';

export const EXT_RULES: readonly ExtRule[] = ['overlaps', 'contains', 'within'];

/* Argument type of a range operator -> the cast written before it. */
export const ARG_CAST: Readonly<Record<ScalarType, string>> = Object.freeze({
    numrange: 'NUMRANGE',
    number: 'NUMERIC',
    daterange: 'TSTZRANGE',
    date: 'TIMESTAMPTZ',
    subnet: 'CIDR',
    ip: 'INET',
    string: 'TEXT',
    boolean: 'BOOLEAN',
    uuid: 'UUID',
    mac: 'MACADDR',
});

export interface ExtOp {
    /* type the filter value is parsed as */
    readonly arg: ScalarType;
    /* SQL operator; the value is on the left: $n::<ARG_CAST> <op> col */
    readonly op: '&&' | '<@' | '@>' | '>>' | '<<';
}

/*
 * exact    JavaScript comparison (=== / <= / >=) on typed values
 * address  =, >=, <= compare parsed addresses (ip, subnet, mac)
 * always   every leaf is true in JavaScript; PostgreSQL alone decides
 */
export type PostFilterMode = 'exact' | 'address' | 'always';

export interface IndexTypeInfo {
    readonly name: IndexType;
    readonly isArray: boolean;
    readonly element: ScalarType;
    readonly pgType: string;
    /* cast for ARRAY[$n]::<arrayCast> (array types only) */
    readonly arrayCast: string | null;
    readonly method: 'BTREE' | 'GIN' | 'GIST';
    readonly ext: Readonly<Partial<Record<ExtRule, ExtOp>>>;
    readonly postFilter: PostFilterMode;
}

/* In the order the bucket validator lists them (moray-api.md §5.1). */
export const INDEX_TYPE_NAMES = [
    'string', '[string]', 'number', '[number]', 'numrange', 'boolean', '[boolean]',
    'date', '[date]', 'daterange', 'ip', '[ip]', 'mac', '[mac]', 'subnet', '[subnet]', 'uuid',
] as const;

export type IndexType = typeof INDEX_TYPE_NAMES[number];

type Row = [IndexType, ScalarType, string, IndexTypeInfo['method'], IndexTypeInfo['ext'],
    PostFilterMode];

const WITHIN_NUMRANGE = { within: { arg: 'numrange', op: '@>' } } as const;
const WITHIN_DATERANGE = { within: { arg: 'daterange', op: '@>' } } as const;
const WITHIN_SUBNET = { within: { arg: 'subnet', op: '>>' } } as const;
const CONTAINS_IP = { contains: { arg: 'ip', op: '<<' } } as const;

/*  type          element      PG type        method   range operators        post-filter */
const ROWS: readonly Row[] = [
    ['string', 'string', 'TEXT', 'BTREE', {}, 'exact'],
    ['[string]', 'string', 'TEXT[]', 'GIN', {}, 'exact'],
    ['number', 'number', 'NUMERIC', 'BTREE', WITHIN_NUMRANGE, 'exact'],
    ['[number]', 'number', 'NUMERIC[]', 'GIN', WITHIN_NUMRANGE, 'exact'],
    ['numrange', 'numrange', 'NUMRANGE', 'GIST',
        { overlaps: { arg: 'numrange', op: '&&' }, contains: { arg: 'number', op: '<@' } },
        'always'],
    ['boolean', 'boolean', 'BOOLEAN', 'BTREE', {}, 'exact'],
    ['[boolean]', 'boolean', 'BOOLEAN[]', 'GIN', {}, 'exact'],
    ['date', 'date', 'TIMESTAMPTZ', 'BTREE', WITHIN_DATERANGE, 'always'],
    ['[date]', 'date', 'TIMESTAMPTZ[]', 'GIN', WITHIN_DATERANGE, 'always'],
    ['daterange', 'daterange', 'TSTZRANGE', 'GIST',
        { overlaps: { arg: 'daterange', op: '&&' }, contains: { arg: 'date', op: '<@' } },
        'always'],
    ['ip', 'ip', 'INET', 'BTREE', WITHIN_SUBNET, 'address'],
    ['[ip]', 'ip', 'INET[]', 'GIN', WITHIN_SUBNET, 'address'],
    ['mac', 'mac', 'MACADDR', 'BTREE', {}, 'address'],
    ['[mac]', 'mac', 'MACADDR[]', 'GIN', {}, 'address'],
    ['subnet', 'subnet', 'CIDR', 'BTREE', CONTAINS_IP, 'address'],
    ['[subnet]', 'subnet', 'CIDR[]', 'GIN', CONTAINS_IP, 'address'],
    ['uuid', 'uuid', 'UUID', 'BTREE', {}, 'exact'],
];

export const INDEX_TYPES: Readonly<Record<IndexType, IndexTypeInfo>> = Object.freeze(
    Object.fromEntries(ROWS.map(([name, element, pgType, method, ext, postFilter]) => {
        const isArray = name.startsWith('[');
        const info: IndexTypeInfo = Object.freeze({
            name, isArray, element, pgType, method, postFilter,
            arrayCast: isArray ? pgType : null,
            ext: Object.freeze({ ...ext }),
        });
        return [name, info];
    })) as Record<IndexType, IndexTypeInfo>);

export function isIndexType(name: unknown): name is IndexType {
    return typeof name === 'string' &&
        Object.prototype.hasOwnProperty.call(INDEX_TYPES, name);
}

export function indexTypeInfo(name: IndexType): IndexTypeInfo {
    return INDEX_TYPES[name];
}

/* ------------------------------------------------------------------ */
/* Writes (storage.md §5)                                              */
/* ------------------------------------------------------------------ */

/* A bind parameter for one index column. */
export type WriteParam = string | number | Date;

/* Characters that make the reference quote an element of a [string] literal. */
const ARRAY_SPECIAL_RE = /[",{}\\]/;
const ARRAY_SPECIAL_G = /([",{}\\])/g;

/*
 * One scalar, for a scalar column: the bind parameter.  `inArray` selects
 * the text form used inside an array literal (dates as ISO text, strings
 * quoted when they contain one of " , { } \).
 */
function writeScalar(element: ScalarType, v: unknown, inArray: boolean): WriteParam {
    switch (element) {
    case 'string': {
        const s = String(v);
        if (inArray && ARRAY_SPECIAL_RE.test(s)) {
            return '"' + s.replace(ARRAY_SPECIAL_G, '\\$1') + '"';
        }
        return s;
    }
    case 'number': {
        const n = toNumber(v);
        return inArray ? String(n) : n;
    }
    case 'boolean':
        return booleanText(v);
    case 'date':
        return inArray ? isoDate(v) : parseDate(v);
    case 'daterange':
        return normaliseDaterange(v);
    case 'numrange':
        return checkNumrange(v);
    case 'ip':
        return canonicalIp(v);
    case 'subnet':
        return canonicalSubnet(v);
    case 'mac':
        return canonicalMac(v);
    case 'uuid':
        return checkUuid(v);
    }
}

/*
 * storage.md §5: the column value for field `field` of type `type`.
 *
 *   undefined / null      -> null (the caller knows whether the key was
 *                            absent: absent columns are left out of INSERTs)
 *   array type, array     -> '{' + elements.join(', ') + '}'
 *   array type, scalar    -> '{' + element + '}'
 *   scalar type           -> the scalar rule (a JS array given to a scalar
 *                            field goes through the rule whole, e.g.
 *                            String(['a','b']) = 'a,b')
 *
 * Throws InvalidIndexTypeError when a value does not convert.
 */
export function convertForWrite(field: string, type: IndexType, value: unknown): WriteParam | null {
    if (value === undefined || value === null) {
        return null;
    }
    const info = INDEX_TYPES[type];
    try {
        if (info.isArray) {
            const elems = Array.isArray(value) ? value : [value];
            return '{' + elems.map((e) => String(writeScalar(info.element, e, true)))
                .join(', ') + '}';
        }
        return writeScalar(info.element, value, false);
    } catch (err) {
        if (err instanceof ValueFormatError) {
            throw errors.invalidIndexType(field, type);
        }
        throw err;
    }
}

/* ------------------------------------------------------------------ */
/* Filter values (storage.md §11.3)                                    */
/* ------------------------------------------------------------------ */

/* The bind parameter for a filter value on a column of element type `scalar`. */
export function filterParam(scalar: ScalarType, raw: string): string | number | Date {
    switch (scalar) {
    case 'string':
        return raw;
    case 'number':
        return parseFloat(raw);
    case 'boolean':
        return booleanText(raw);
    case 'date':
        return parseDate(raw);
    case 'daterange':
        return normaliseDaterange(raw);
    case 'numrange':
        return checkNumrange(raw);
    case 'ip':
        return canonicalIp(raw);
    case 'subnet':
        return canonicalSubnet(raw);
    case 'mac':
        return canonicalMac(raw);
    case 'uuid':
        return checkUuid(raw);
    }
}

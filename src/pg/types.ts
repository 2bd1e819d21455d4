/*
 * PostgreSQL -> JavaScript value conversion (storage §8.2).
 *
 * Everything a client sees that came out of a column (index fields
 * overlaid on `value`, `sql` RPC rows, bucket rows) must look exactly as
 * the reference produced it with node-postgres 6 + pg-types 1.x +
 * pg-parse-float + its own TSTZRANGE parser.  pg 8.23.1 (pg-types 2.2)
 * differs in two places, which we override:
 *
 *     oid   type             pg 8 default                  Moray
 *     1700  numeric          "5.50" (string)               5.5 (parseFloat; 'NaN' -> NaN)
 *     3910  tstzrange        '["2019-07-04 00:00:00+00",)'  '[2019-07-04T00:00:00.000Z,)'
 *     3911  tstzrange[]      '{"[\"2019-...\",)"}'          ['[2019-07-04T00:00:00.000Z,)']
 *
 * All other types of the §8.2 table already match (int8 stays a string,
 * int2/int4 numbers, float/numeric arrays numbers, timestamps Dates with
 * TIMESTAMP and DATE read in the process's local zone, inet/cidr/macaddr/
 * uuid text, json/jsonb parsed, bytea Buffer, interval objects).  Their
 * parsers are captured from pg-types when this module loads, so a later
 * `pg.types.setTypeParser()` elsewhere in the process cannot change what
 * Moray clients see.
 *
 * The overrides are applied per client, not globally:
 *
 *     new pg.Client({ ..., types: morayTypes })      (or pg.Pool: same option)
 *
 *     query result column (oid, format)
 *        -> pg Result -> client._types (TypeOverrides) -> morayTypes.getTypeParser
 *              -> MORAY_TEXT_PARSERS[oid]  (the §8.2 table)
 *              -> else pg-types default (raw text for unknown types)
 *
 * Only the text format is used by node-postgres for results (no binary
 * mode here); binary lookups fall through to pg-types.
 *
 * Parsers never throw on well-formed PostgreSQL output; a TSTZRANGE bound
 * that does not parse as a timestamp is passed through as its raw text.
 */

import { types as pgTypes, type CustomTypesConfig } from 'pg';

export type TextParser = (value: string) => unknown;

/* The OIDs of storage §8.2 (and the array twins it mentions). */
export const OID = {
    BOOL: 16, BYTEA: 17, INT8: 20, INT2: 21, INT4: 23, TEXT: 25, OID: 26,
    JSON: 114, JSON_ARRAY: 199, CIDR: 650, CIDR_ARRAY: 651,
    FLOAT4: 700, FLOAT8: 701, MACADDR: 829, INET: 869,
    BOOL_ARRAY: 1000, INT2_ARRAY: 1005, INT4_ARRAY: 1007, TEXT_ARRAY: 1009,
    BPCHAR_ARRAY: 1014, VARCHAR_ARRAY: 1015, INT8_ARRAY: 1016,
    FLOAT4_ARRAY: 1021, FLOAT8_ARRAY: 1022, OID_ARRAY: 1028,
    MACADDR_ARRAY: 1040, INET_ARRAY: 1041, BPCHAR: 1042, VARCHAR: 1043,
    DATE: 1082, TIMESTAMP: 1114, TIMESTAMP_ARRAY: 1115, DATE_ARRAY: 1182,
    TIMESTAMPTZ: 1184, TIMESTAMPTZ_ARRAY: 1185, INTERVAL: 1186,
    INTERVAL_ARRAY: 1187, NUMERIC_ARRAY: 1231, NUMERIC: 1700,
    UUID: 2950, UUID_ARRAY: 2951, JSONB: 3802, JSONB_ARRAY: 3807,
    NUMRANGE: 3906, NUMRANGE_ARRAY: 3907, TSTZRANGE: 3910,
    TSTZRANGE_ARRAY: 3911,
} as const;

function pgDefault(oid: number): TextParser {
    return pgTypes.getTypeParser(oid, 'text') as TextParser;
}

/* postgres-date, as pg-types uses it for TIMESTAMPTZ: Date, or ±Infinity. */
const parseTimestamptz = pgDefault(OID.TIMESTAMPTZ);

/*
 * One range bound as PostgreSQL prints it: bare, or double-quoted with
 * `""` / `\x` escapes.  Returns the unescaped text and where it ended.
 */
function readBound(s: string, start: number, stop: string): [string, number] {
    let i = start;
    let out = '';
    let quoted = false;
    while (i < s.length) {
        const c = s[i]!;
        if (quoted) {
            if (c === '\\' && i + 1 < s.length) {
                out += s[i + 1];
                i += 2;
                continue;
            }
            if (c === '"') {
                if (s[i + 1] === '"') {
                    out += '"';
                    i += 2;
                    continue;
                }
                quoted = false;
                i++;
                continue;
            }
            out += c;
            i++;
            continue;
        }
        if (c === '"') {
            quoted = true;
            i++;
            continue;
        }
        if (stop.includes(c)) {
            break;
        }
        out += c;
        i++;
    }
    return [out, i];
}

function isoBound(text: string): string {
    if (text === '') {
        return '';
    }
    const d = parseTimestamptz(text);
    if (d instanceof Date && !Number.isNaN(d.getTime())) {
        return d.toISOString();
    }
    return text;   /* infinity, -infinity, or something unexpected */
}

/*
 * '["2019-07-04 00:00:00+00","2019-07-05 12:00:00+02")'
 *     -> '[2019-07-04T00:00:00.000Z,2019-07-05T10:00:00.000Z)'
 * Unbounded sides stay empty; 'empty' stays 'empty'.
 */
export function parseTstzrange(value: string): string {
    const open = value[0];
    if (open !== '[' && open !== '(') {
        return value;                     /* 'empty' */
    }
    const [lower, comma] = readBound(value, 1, ',');
    const [upper, end] = readBound(value, comma + 1, ')]');
    const close = value[end] ?? '';
    return `${open}${isoBound(lower)},${isoBound(upper)}${close}`;
}

/* pg-types' real arrayParser shape (its .d.ts declares it wrongly). */
const arrayParser = pgTypes.arrayParser as unknown as {
    create(source: string, transform: (entry: string | null) => unknown): { parse(): unknown[] };
};

export function parseTstzrangeArray(value: string): unknown[] {
    return arrayParser.create(value, (entry) =>
        entry === null ? null : parseTstzrange(entry)).parse();
}

/* storage §8.2 reference behaviour, keyed by OID, for the text format. */
export const MORAY_TEXT_PARSERS: ReadonlyMap<number, TextParser> = (() => {
    const table = new Map<number, TextParser>();
    for (const oid of Object.values(OID)) {
        table.set(oid, pgDefault(oid));
    }
    table.set(OID.NUMERIC, parseFloat);
    table.set(OID.TSTZRANGE, parseTstzrange);
    table.set(OID.TSTZRANGE_ARRAY, parseTstzrangeArray);
    return table;
})();

function getTypeParser(oid: number, format?: 'text' | 'binary'): TextParser {
    if (format === undefined || format === 'text') {
        const p = MORAY_TEXT_PARSERS.get(oid);
        if (p !== undefined) {
            return p;
        }
    }
    return pgTypes.getTypeParser(oid, format ?? 'text') as TextParser;
}

/*
 * Pass as `types` to new pg.Client() / new pg.Pool().  The cast satisfies
 * @types/pg's overloaded signature; the runtime contract is just
 * getTypeParser(oid, format) -> (text) => value.
 */
export const morayTypes: CustomTypesConfig = {
    getTypeParser: getTypeParser as unknown as CustomTypesConfig['getTypeParser'],
};

/*
 * PostgreSQL → JavaScript value conversion, reproducing what the reference
 * (node-postgres 6 + pg-types 1.x + pg-parse-float + its TSTZRANGE parser)
 * hands to clients (storage.md §8.2).  pg 8's defaults differ for NUMERIC
 * (string) and TSTZRANGE; everything else keeps pg's parser.
 *
 * Given to each pg.Client as its `types`, so pg's global registry is never
 * mutated.
 */

import * as pg from 'pg';

const OID = {
    NUMERIC: 1700, FLOAT4: 700, FLOAT8: 701,
    NUMERIC_ARRAY: 1231, FLOAT4_ARRAY: 1021, FLOAT8_ARRAY: 1022,
    TSTZRANGE: 3910, TSTZRANGE_ARRAY: 3911,
    NUMRANGE: 3906, NUMRANGE_ARRAY: 3907,
} as const;

type Parser = (text: string) => unknown;

const textArray = (pg.types.getTypeParser as (oid: number, f: string) => Parser)(1009, 'text');

function parseFloatArray(text: string): unknown {
    const arr = textArray(text) as (string | null)[] | null;
    return arr === null ? null : arr.map((s) => (s === null ? null : parseFloat(s)));
}

/* "[\"2019-07-04 00:00:00+00\",)" → "[2019-07-04T00:00:00.000Z,)" */
export function parseTstzRange(text: string): string {
    if (text === 'empty') {
        return text;
    }
    const m = /^([[(])("?)([^",]*)\2,("?)([^",]*)\4([\])])$/.exec(text);
    if (m === null) {
        return text;
    }
    const iso = (s: string) => (s === '' ? '' : new Date(s.replace(' ', 'T')
        .replace(/([+-]\d\d)$/, '$1:00')).toISOString());
    return `${m[1]}${iso(m[3]!)},${iso(m[5]!)}${m[6]}`;
}

function parseTstzRangeArray(text: string): unknown {
    const arr = textArray(text) as (string | null)[] | null;
    return arr === null ? null : arr.map((s) => (s === null ? null : parseTstzRange(s)));
}

const OVERRIDES: Record<number, Parser> = {
    [OID.NUMERIC]: parseFloat,
    [OID.FLOAT4]: parseFloat,
    [OID.FLOAT8]: parseFloat,
    [OID.NUMERIC_ARRAY]: parseFloatArray,
    [OID.FLOAT4_ARRAY]: parseFloatArray,
    [OID.FLOAT8_ARRAY]: parseFloatArray,
    [OID.TSTZRANGE]: parseTstzRange,
    [OID.TSTZRANGE_ARRAY]: parseTstzRangeArray,
    [OID.NUMRANGE]: (s) => s,
    [OID.NUMRANGE_ARRAY]: textArray,
};

export const morayTypes: pg.CustomTypesConfig = {
    getTypeParser: ((oid: number, format?: 'text' | 'binary') => {
        if ((format ?? 'text') === 'text' && OVERRIDES[oid] !== undefined) {
            return OVERRIDES[oid];
        }
        return pg.types.getTypeParser(oid, format as 'text');
    }) as pg.CustomTypesConfig['getTypeParser'],
};

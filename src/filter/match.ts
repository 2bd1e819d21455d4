/*
 * The exact stage of findObjects: the whole filter evaluated in JavaScript
 * on each candidate row (moray-api.md §10.4, storage.md §11.5).
 *
 *   candidate row ──► record = overlaid value + _id _txn_snap _etag _key _mtime _count
 *                        │
 *                        ▼
 *   compileMatcher(ast, bucket) ──► predicate(record) ──► keep / drop
 *
 * The semantics are moray-filter@1.0.0's matches() plus the reference's
 * decorations, reproduced on purpose (clients depend on them):
 *
 *   lookup      own property with exactly that name, else the first own
 *               property whose name matches case-insensitively
 *   arrays      a leaf matches when any element matches
 *   (a=F)       F === v, where F is typed for usable index fields (number
 *               via parseFloat, boolean as true/false) and for _id, _mtime,
 *               _txn_snap (number); a string everywhere else, so on an
 *               unindexed field (x=15) does not match the number 15
 *   (a>=F)      F <= v     (JavaScript coercion: "15" <= 15 is true)
 *   (a<=F)      F >= v
 *   (a=*)       v is neither undefined nor null
 *   substring   ^initial.*any.*final$ (anchors only for non-empty pieces)
 *   caseIgnoreMatch            v is a string and lower(v) === lower(F)
 *   caseIgnoreSubstringsMatch  lower(v) against the pattern made by
 *               splitting lower(F) on "*": an escaped \* in the filter is
 *               lost here and acts as a wildcard (reference quirk)
 *   ip/subnet/mac fields  =, >=, <= compare parsed addresses; a value
 *               that does not parse never matches
 *   date, [date], daterange, numrange fields, and every
 *   overlaps/contains/within leaf: always true (PostgreSQL decided)
 *
 * Consequence worth knowing: (!(d=...)) on a date field is never true in
 * this stage, exactly as in the reference.
 *
 * Typed filter values are computed once, when the matcher is built; a bad
 * value throws InvalidQueryError with the leaf's text, the same error the
 * compiler gives.  The AST is not modified.
 */

import { errors } from '../errors/catalog';
import { type BucketSchema, usableIndex } from '../schema/bucket-types';
import { INDEX_TYPES, type IndexTypeInfo, type ScalarType } from '../schema/index-types';
import {
    type Cidr, type IpAddr, compareCidr, compareIp, compareMac, parseCidr, parseIp, parseMac,
} from '../schema/values';
import { type FilterNode, type LeafNode, filterToString } from './ast';
import {
    INTERNAL_FIELDS, decorateFilter, isInternalField, isRangeRule, typedFilterValue,
} from './compile';

export type RecordMatcher = (record: Readonly<Record<string, unknown>>) => boolean;

type Pred = RecordMatcher;
type ValueTest = (v: unknown) => boolean;

const ALWAYS: Pred = () => true;

/* moray-filter helpers.getAttrValue (case-insensitive fallback). */
export function getAttrValue(record: Readonly<Record<string, unknown>>, attr: string): unknown {
    if (Object.prototype.hasOwnProperty.call(record, attr)) {
        return record[attr];
    }
    const lower = attr.toLowerCase();
    for (const name of Object.getOwnPropertyNames(record)) {
        if (name.toLowerCase() === lower) {
            return record[name];
        }
    }
    return undefined;
}

/* moray-filter helpers.testValues (any element of an array). */
function testValues(test: ValueTest, value: unknown): boolean {
    if (Array.isArray(value)) {
        return value.some((v) => test(v));
    }
    return test(value);
}

/* moray-filter substr_filter escapeRegExp. */
function escapeRegExp(s: string): string {
    return s.replace(/[-[\]/{}()*+?.\\^$|]/g, '\\$&');
}

function substringRegExp(initial: string, any: readonly string[], final: string): RegExp {
    let re = '';
    if (initial) {
        re += '^' + escapeRegExp(initial) + '.*';
    }
    for (const piece of any) {
        re += escapeRegExp(piece) + '.*';
    }
    if (final) {
        re += escapeRegExp(final) + '$';
    }
    return new RegExp(re);
}

/*
 * JavaScript's own <=, on values of any type.  The casts only silence the
 * type checker; the comparison keeps its run-time coercion semantics.
 */
function jsLe(a: unknown, b: unknown): boolean {
    return (a as number) <= (b as number);
}

/* Typing of a leaf's attribute in the exact stage. */
type FieldTyping =
    | { readonly kind: 'index'; readonly info: IndexTypeInfo }
    | { readonly kind: 'internal'; readonly scalar: ScalarType }
    | { readonly kind: 'raw' };

function fieldTyping(bucket: BucketSchema, attr: string): FieldTyping {
    const spec = usableIndex(bucket, attr);
    if (spec !== undefined) {
        return { kind: 'index', info: INDEX_TYPES[spec.type] };
    }
    const internal = INTERNAL_FIELDS[attr];
    if (isInternalField(attr) && internal !== undefined) {
        return { kind: 'internal', scalar: internal };
    }
    return { kind: 'raw' };
}

/* (F op v) for one element, given the sign convention of compare(F, v). */
function orderTest(type: 'equal' | 'ge' | 'le', cmp: number): boolean {
    switch (type) {
    case 'equal': return cmp === 0;
    case 'ge': return cmp <= 0;
    case 'le': return cmp >= 0;
    }
}

/* =, >=, <= on ip/subnet/mac fields: parsed-address comparison. */
function addressTest(node: LeafNode & { type: 'equal' | 'ge' | 'le' }, scalar: ScalarType): ValueTest {
    /* validates the filter value exactly as the compiler does */
    typedFilterValue(scalar, node.value, node);
    const type = node.type;
    switch (scalar) {
    case 'ip': {
        const f: IpAddr = parseIp(node.value);
        return (v) => {
            let addr: IpAddr;
            try {
                addr = parseIp(v);
            } catch {
                return false;
            }
            return orderTest(type, compareIp(f, addr));
        };
    }
    case 'subnet': {
        const f: Cidr = parseCidr(node.value);
        return (v) => {
            let c: Cidr;
            try {
                c = parseCidr(v);
            } catch {
                return false;
            }
            return orderTest(type, compareCidr(f, c));
        };
    }
    default: {
        const f = parseMac(node.value);
        return (v) => {
            let m: number;
            try {
                m = parseMac(v);
            } catch {
                return false;
            }
            return orderTest(type, compareMac(f, m));
        };
    }
    }
}

/* The post-filter's typed value F for =, >=, <= (not for address types). */
function exactValue(node: LeafNode & { value: string }, scalar: ScalarType): unknown {
    switch (scalar) {
    case 'number':
        return parseFloat(node.value);
    case 'boolean':
        return typedFilterValue('boolean', node.value, node) === 'TRUE';
    case 'date':
        return (typedFilterValue('date', node.value, node) as Date).toISOString();
    default:
        /* strings as sent; uuid and the rest validated, canonical text kept */
        return typedFilterValue(scalar, node.value, node);
    }
}

function leafPredicate(node: LeafNode, bucket: BucketSchema): Pred {
    const attr = node.attribute;
    const typing = fieldTyping(bucket, attr);
    const lookup = (r: Readonly<Record<string, unknown>>): unknown => getAttrValue(r, attr);

    if (typing.kind === 'index' && typing.info.postFilter === 'always') {
        return ALWAYS;
    }

    switch (node.type) {
    case 'present':
        return (r) => {
            const v = lookup(r);
            return v !== undefined && v !== null;
        };

    case 'equal':
    case 'ge':
    case 'le': {
        let test: ValueTest;
        if (typing.kind === 'index' && typing.info.postFilter === 'address') {
            test = addressTest(node, typing.info.element);
        } else {
            const scalar: ScalarType | null = typing.kind === 'index' ? typing.info.element
                : typing.kind === 'internal' ? typing.scalar : null;
            const f: unknown = scalar === null ? node.value : exactValue(node, scalar);
            test = node.type === 'equal' ? (v) => f === v
                : node.type === 'ge' ? (v) => jsLe(f, v)
                    : (v) => jsLe(v, f);
        }
        return (r) => testValues(test, lookup(r));
    }

    case 'substring': {
        const re = substringRegExp(node.initial, node.any, node.final);
        return (r) => {
            const tv = lookup(r);
            if (tv === undefined || tv === null) {
                return false;
            }
            return testValues((v) => re.test(String(v)), tv);
        };
    }

    case 'ext': {
        if (isRangeRule(node.rule)) {
            return ALWAYS;
        }
        if (node.rule === 'caseIgnoreMatch') {
            const f = node.value.toLowerCase();
            return (r) => testValues(
                (v) => typeof v === 'string' && v.toLowerCase() === f, lookup(r));
        }
        if (node.rule === 'caseIgnoreSubstringsMatch') {
            const pieces = node.value.toLowerCase().split('*');
            let test: (s: string) => boolean;
            if (pieces.length === 1) {
                const only = pieces[0]!;
                test = (s) => s === only;
            } else {
                const re = substringRegExp(pieces[0]!, pieces.slice(1, -1),
                    pieces[pieces.length - 1]!);
                test = (s) => re.test(s);
            }
            return (r) => testValues(
                (v) => typeof v === 'string' && test(v.toLowerCase()), lookup(r));
        }
        /* 2.5.13.2 / 2.5.13.4: never indexable (the compiler says the same) */
        throw errors.notIndexed(bucket.name, filterToString(node));
    }

    case 'approx':
        throw errors.plain('approx filters not allowed');
    }
}

function build(node: FilterNode, bucket: BucketSchema): Pred {
    switch (node.type) {
    case 'and': {
        const preds = node.filters.map((f) => build(f, bucket));
        return (r) => preds.every((p) => p(r));
    }
    case 'or': {
        const preds = node.filters.map((f) => build(f, bucket));
        return (r) => preds.some((p) => p(r));
    }
    case 'not': {
        const p = build(node.filter, bucket);
        return (r) => !p(r);
    }
    default:
        return leafPredicate(node, bucket);
    }
}

/*
 * The exact-stage predicate for `ast` on `bucket` (usable index fields get
 * typed values).  Throws the same decoration and value errors as
 * compileFilter.
 */
export function compileMatcher(ast: FilterNode, bucket: BucketSchema): RecordMatcher {
    decorateFilter(ast, bucket);
    return build(ast, bucket);
}

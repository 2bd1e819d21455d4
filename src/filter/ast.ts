/*
 * The filter syntax tree: immutable nodes, one per moray-filter@1.0.0
 * filter class, and the canonical printer that reproduces its toString().
 *
 *   "(&(n>=5)(!(tags=c*)))"
 *          │ parse.ts
 *          ▼
 *   and ─┬─ ge        { attribute: 'n', value: '5' }
 *        └─ not ── substring { attribute: 'tags', initial: 'c', any: [], final: '' }
 *          │
 *          ├─► compile.ts   WHERE text + $n args (index stage)
 *          └─► match.ts     JavaScript predicate (exact stage)
 *
 * Nodes are frozen plain objects: the compiler and the matcher derive their
 * typed values from a node instead of mutating it, so one parsed filter can
 * be compiled, matched and printed in any order.  (The reference mutated the
 * values in place, which is how it printed "5" as a number and crashed; see
 * the AssertionError quirk in moray-api.md §10.5.)
 *
 * Every leaf keeps `attribute` and the *unescaped* value(s).  The printer
 * re-escapes exactly like moray-filter's helpers.escape:  * ( ) \ =  get a
 * backslash, nothing else does.  Two printer quirks are kept because error
 * messages show them:
 *   - ext leaves print their value raw (no escaping): (n:within:=[1,2)) ;
 *   - substring pieces that are empty are omitted: (a=**) prints as (a=**).
 */

export interface AndNode {
    readonly type: 'and';
    readonly filters: readonly FilterNode[];
}

export interface OrNode {
    readonly type: 'or';
    readonly filters: readonly FilterNode[];
}

export interface NotNode {
    readonly type: 'not';
    readonly filter: FilterNode;
}

export interface EqualNode {
    readonly type: 'equal';
    readonly attribute: string;
    readonly value: string;
}

export interface GeNode {
    readonly type: 'ge';
    readonly attribute: string;
    readonly value: string;
}

export interface LeNode {
    readonly type: 'le';
    readonly attribute: string;
    readonly value: string;
}

export interface ApproxNode {
    readonly type: 'approx';
    readonly attribute: string;
    readonly value: string;
}

export interface PresentNode {
    readonly type: 'present';
    readonly attribute: string;
}

export interface SubstringNode {
    readonly type: 'substring';
    readonly attribute: string;
    readonly initial: string;
    readonly any: readonly string[];
    readonly final: string;
}

/* The pieces of an ext value that contained an unescaped "*". */
export interface SubstringPieces {
    readonly initial: string;
    readonly any: readonly string[];
    readonly final: string;
}

export interface ExtNode {
    readonly type: 'ext';
    /* '' when the filter had no attribute: (:rule:=v) */
    readonly attribute: string;
    /* undefined when absent: (a:=v) ; may be '' for (a::=v) */
    readonly rule: string | undefined;
    readonly dnAttributes: boolean;
    readonly value: string;
    readonly substring: SubstringPieces | undefined;
}

export type LeafNode =
    | EqualNode | GeNode | LeNode | ApproxNode | PresentNode | SubstringNode | ExtNode;
export type FilterNode = AndNode | OrNode | NotNode | LeafNode;

export function isLeaf(node: FilterNode): node is LeafNode {
    return node.type !== 'and' && node.type !== 'or' && node.type !== 'not';
}

/* ---- constructors (the only way nodes are made) ---- */

export function andNode(filters: readonly FilterNode[]): AndNode {
    return Object.freeze({ type: 'and', filters: Object.freeze([...filters]) });
}

export function orNode(filters: readonly FilterNode[]): OrNode {
    return Object.freeze({ type: 'or', filters: Object.freeze([...filters]) });
}

export function notNode(filter: FilterNode): NotNode {
    return Object.freeze({ type: 'not', filter });
}

export function compareNode<T extends 'equal' | 'ge' | 'le' | 'approx'>(
    type: T, attribute: string, value: string): { readonly type: T; readonly attribute: string;
        readonly value: string } {
    return Object.freeze({ type, attribute, value });
}

export function presentNode(attribute: string): PresentNode {
    return Object.freeze({ type: 'present', attribute });
}

export function substringNode(attribute: string, initial: string, any: readonly string[],
    final: string): SubstringNode {
    return Object.freeze({
        type: 'substring', attribute, initial, any: Object.freeze([...any]), final,
    });
}

export function extNode(attribute: string, rule: string | undefined, dnAttributes: boolean,
    value: string, substring: SubstringPieces | undefined): ExtNode {
    return Object.freeze({
        type: 'ext', attribute, rule, dnAttributes, value,
        substring: substring === undefined ? undefined : Object.freeze({
            initial: substring.initial,
            any: Object.freeze([...substring.any]),
            final: substring.final,
        }),
    });
}

/* ---- traversal ---- */

/*
 * Depth-first, children before their parent, leaves in document order:
 * the order of moray-filter's forEach, which decides which error a filter
 * with several problems reports.
 */
export function forEachNode(node: FilterNode, cb: (n: FilterNode) => void): void {
    if (node.type === 'and' || node.type === 'or') {
        for (const child of node.filters) {
            forEachNode(child, cb);
        }
    } else if (node.type === 'not') {
        forEachNode(node.filter, cb);
    }
    cb(node);
}

/* ---- canonical printer ---- */

/* moray-filter helpers.escape for strings. */
export function escapeFilterValue(s: string): string {
    let out = '';
    for (const ch of s) {
        switch (ch) {
        case '*': out += '\\*'; break;
        case '(': out += '\\('; break;
        case ')': out += '\\)'; break;
        case '\\': out += '\\\\'; break;
        case '=': out += '\\='; break;
        default: out += ch; break;
        }
    }
    return out;
}

/* The text moray-filter's toString() gives for the same filter. */
export function filterToString(node: FilterNode): string {
    const esc = escapeFilterValue;
    switch (node.type) {
    case 'and':
        return '(&' + node.filters.map(filterToString).join('') + ')';
    case 'or':
        return '(|' + node.filters.map(filterToString).join('') + ')';
    case 'not':
        return '(!' + filterToString(node.filter) + ')';
    case 'equal':
        return '(' + esc(node.attribute) + '=' + esc(node.value) + ')';
    case 'ge':
        return '(' + esc(node.attribute) + '>=' + esc(node.value) + ')';
    case 'le':
        return '(' + esc(node.attribute) + '<=' + esc(node.value) + ')';
    case 'approx':
        return '(' + esc(node.attribute) + '~=' + esc(node.value) + ')';
    case 'present':
        return '(' + esc(node.attribute) + '=*)';
    case 'substring': {
        let s = '(' + esc(node.attribute) + '=';
        if (node.initial) {
            s += esc(node.initial);
        }
        s += '*';
        for (const piece of node.any) {
            s += esc(piece) + '*';
        }
        if (node.final) {
            s += esc(node.final);
        }
        return s + ')';
    }
    case 'ext': {
        let s = '(';
        if (node.attribute) {
            s += node.attribute;
        }
        s += ':';
        if (node.dnAttributes) {
            s += 'dn:';
        }
        if (node.rule) {
            s += node.rule + ':';
        }
        return s + '=' + node.value + ')';
    }
    }
}

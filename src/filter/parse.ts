/*
 * Filter text -> AST, accepting and rejecting exactly what moray-filter@1.0.0
 * does (moray-api.md §10.1).  A hand port of its recursive-descent parser:
 * the differential tests in test/unit/filter-parse.test.ts run both on the
 * same (also random) inputs and compare trees and printed text.
 *
 *   filter    = "(" inner ")"  |  "!" filter          ; "!" without parens only as a child
 *   inner     = "&" 1*filter | "|" 1*filter | "!" filter | item
 *   item      = everything up to the first unescaped ")"  -> parseItem
 *   parseItem = attr "=*" | attr "=" value | attr ">=" value | attr "<=" value
 *             | attr "~=" value | [attr] ":" ["dn:"] [rule ":"] "=" value
 *   attr      = 1*( ALPHA / DIGIT / "-" / "_" )
 *
 * Properties of the grammar worth knowing (all inherited, all tested):
 *   - input not starting with "(" is wrapped in parentheses first;
 *   - no whitespace is skipped anywhere;
 *   - a value escape is "\" + two hex digits, or "\" + one of ( ) * \ = ;
 *     while scanning for ")" and "*", a backslash skips exactly one
 *     character, so "\2)" ends the item (and then fails as a bad escape);
 *   - an unescaped "*" in an "=" value makes a substring filter; in ext
 *     values it also records substring pieces next to the full value;
 *   - equality values pass through a UTF-8 Buffer round trip in the
 *     reference (EqualityFilter keeps a Buffer), which turns lone UTF-16
 *     surrogates into U+FFFD; so does this parser, for equality only.
 *
 * Errors: any failure is InvalidQueryError "<raw filter> is an invalid
 * filter" with the text as the client sent it (before wrapping).  Internally
 * failures are ParseFailure; deep nesting can also overflow the stack, which
 * the reference reported the same way, and so do we.
 */

import { errors } from '../errors/catalog';
import {
    type FilterNode, type SubstringPieces, andNode, compareNode, extNode, notNode, orNode,
    presentNode, substringNode,
} from './ast';

class ParseFailure extends Error {}

function fail(msg: string): never {
    throw new ParseFailure(msg);
}

const ATTR_RE = /^[-_a-zA-Z0-9]+/;
const HEX2_RE = /^[a-fA-F0-9]{2}$/;
const ESCAPABLE = ['(', ')', '*', '\\', '='];

/* Index of the first `c` at or after `start`, a backslash skipping one char. */
function indexOfSkipEscapes(str: string, start: number, c: string): number {
    for (let cur = start; cur < str.length; cur++) {
        if (str[cur] === '\\') {
            cur++;
        } else if (str[cur] === c) {
            return cur;
        }
    }
    return -1;
}

/* Resolve escapes in a value; an unescaped "(" is an error. */
function unescapeValue(str: string): string {
    let cur = 0;
    let out = '';
    while (cur < str.length) {
        const c = str[cur]!;
        if (c === '(') {
            fail('illegal unescaped char: (');
        } else if (c === '\\') {
            const val = str.substr(cur + 1, 2);
            if (HEX2_RE.test(val)) {
                out += String.fromCharCode(parseInt(val, 16));
                cur += 3;
            } else {
                const first = val[0];
                if (first === undefined || !ESCAPABLE.includes(first)) {
                    fail('invalid escape sequence');
                }
                out += first;
                cur += 2;
            }
        } else {
            out += c;
            cur++;
        }
    }
    return out;
}

/* Split on unescaped "*" (there is at least one) and unescape each piece. */
function splitSubstring(str: string): SubstringPieces {
    const fields: string[] = [];
    let idx: number;
    while ((idx = indexOfSkipEscapes(str, 0, '*')) !== -1) {
        fields.push(str.substring(0, idx));
        str = str.substring(idx + 1);
    }
    fields.push(str);
    /* Same evaluation order as the reference: initial, final, then any. */
    const initial = unescapeValue(fields.shift()!);
    const final = unescapeValue(fields.pop()!);
    const any = fields.map(unescapeValue);
    return { initial, any, final };
}

/* Lone surrogates become U+FFFD, as through Buffer.from(s).toString(). */
function utf8RoundTrip(s: string): string {
    return Buffer.from(s, 'utf8').toString('utf8');
}

function parseExt(attribute: string, str: string): FilterNode {
    const fields = str.split(':');
    /* str starts with ':', so fields[0] is '' and there are at least two. */
    fields.shift();
    let dnAttributes = false;
    let rule: string | undefined;
    if (fields[0]!.toLowerCase() === 'dn') {
        dnAttributes = true;
        fields.shift();
    }
    if (fields.length !== 0 && fields[0]![0] !== '=') {
        rule = fields.shift();
    }
    if (fields.length === 0 || fields[0]![0] !== '=') {
        fail('missing := in ext filter');
    }
    /* Drop the "=" of ":=" and put back any ':' that was inside the value. */
    const rawValue = fields.join(':').substr(1);
    const value = unescapeValue(rawValue);
    const pieces = indexOfSkipEscapes(rawValue, 0, '*') !== -1
        ? splitSubstring(rawValue)
        : undefined;
    return extNode(attribute, rule, dnAttributes, value, pieces);
}

function parseItem(str: string): FilterNode {
    let attr: string;
    let remain: string;
    if (str[0] === ':') {
        attr = '';
        remain = str;
    } else {
        const m = ATTR_RE.exec(str);
        if (m === null) {
            fail('invalid attribute name');
        }
        attr = m[0];
        remain = str.substr(attr.length);
    }

    if (remain === '=*') {
        return presentNode(attr);
    } else if (remain[0] === '=') {
        remain = remain.substr(1);
        if (indexOfSkipEscapes(remain, 0, '*') !== -1) {
            const p = splitSubstring(remain);
            return substringNode(attr, p.initial, p.any, p.final);
        }
        return compareNode('equal', attr, utf8RoundTrip(unescapeValue(remain)));
    } else if (remain[0] === '>' && remain[1] === '=') {
        return compareNode('ge', attr, unescapeValue(remain.substr(2)));
    } else if (remain[0] === '<' && remain[1] === '=') {
        return compareNode('le', attr, unescapeValue(remain.substr(2)));
    } else if (remain[0] === '~' && remain[1] === '=') {
        return compareNode('approx', attr, unescapeValue(remain.substr(2)));
    } else if (remain[0] === ':') {
        return parseExt(attr, remain);
    }
    return fail('invalid expression');
}

interface Parsed {
    /* index of the ")" that closed this filter (or of its last character) */
    readonly end: number;
    readonly filter: FilterNode;
}

function parseAt(str: string, start: number): Parsed {
    let unwrappedBang = false;
    let cur = start;
    const len = str.length;
    let output: FilterNode;

    switch (str[cur]) {
    case '(':
        cur++;
        break;
    case '!':
        unwrappedBang = true;
        break;
    default:
        fail('expected "("');
    }

    if (str[cur] === '&' || str[cur] === '|') {
        const op = str[cur];
        const children: FilterNode[] = [];
        cur++;
        do {
            const res = parseAt(str, cur);
            children.push(res.filter);
            cur = res.end + 1;
        } while (cur < len && str[cur] !== ')');
        output = op === '&' ? andNode(children) : orNode(children);
    } else if (str[cur] === '!') {
        const res = parseAt(str, cur + 1);
        output = notNode(res.filter);
        if (unwrappedBang) {
            cur = res.end;
        } else {
            cur = res.end + 1;
            if (str[cur] !== ')') {
                fail('unbalanced parens');
            }
        }
    } else {
        const end = indexOfSkipEscapes(str, cur, ')');
        if (end === -1) {
            fail('unbalanced parens');
        }
        output = parseItem(str.substr(cur, end - cur));
        cur = end;
    }
    if (cur >= len) {
        fail('unbalanced parens');
    }
    return { end: cur, filter: output };
}

/*
 * Parse a filter string.  Throws InvalidQueryError (a MorayError) for
 * anything moray-filter would reject, including the empty string.
 */
export function parseFilter(raw: string): FilterNode {
    if (typeof raw !== 'string' || raw.length === 0) {
        throw errors.invalidQuery(String(raw));
    }
    const str = raw.charAt(0) === '(' ? raw : '(' + raw + ')';
    try {
        const parsed = parseAt(str, 0);
        if (parsed.end < str.length - 1) {
            fail('unbalanced parens');
        }
        return parsed.filter;
    } catch {
        /*
         * ParseFailure, or a RangeError from absurd nesting depth: the
         * reference wraps whatever the parser throws in InvalidQueryError.
         */
        throw errors.invalidQuery(raw);
    }
}

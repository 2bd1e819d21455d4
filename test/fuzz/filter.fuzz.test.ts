/*
 * Seeded fuzzing of parse -> compile -> match over a rich alphabet.
 *
 * Invariants, for every generated filter and option set:
 *   - parse, compile and compileMatcher throw nothing but MorayError;
 *   - the WHERE text is made only of SQL vocabulary, known column names,
 *     $n placeholders and LIMIT/OFFSET digits (a strict lexical whitelist:
 *     no filter value can appear in it);
 *   - no filter value (other than pure punctuation) appears in the text
 *     once identifiers are blanked out;
 *   - every $n is within 1..args.length (offset by firstParam) and every
 *     argument is referenced;
 *   - the matcher never throws on arbitrary records.
 */

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MorayError } from '../../src/errors/catalog';
import {
    type FilterNode, compileFilter, compileMatcher, forEachNode, parseFilter, quoteIdent,
} from '../../src/filter';
import type { BucketSchema, IndexSpec } from '../../src/schema/bucket-types';
import { INDEX_TYPE_NAMES } from '../../src/schema/index-types';

const INDEX: Record<string, IndexSpec> = {};
for (const t of INDEX_TYPE_NAMES) {
    INDEX['f_' + t.replace(/[[\]]/g, '') + (t.startsWith('[') ? 's' : '')] = { type: t };
}
INDEX['order'] = { type: 'string' };
INDEX['Mixed'] = { type: 'number' };
INDEX['re'] = { type: 'string' };

const BUCKETS: BucketSchema[] = [
    { name: 'fz', index: INDEX, reindexing: new Set(['re']), hasExtendedId: false },
    { name: 'fz', index: INDEX, reindexing: new Set(), hasExtendedId: true },
];

const ATTRS = [...Object.keys(INDEX), '_id', '_key', '_etag', '_mtime', '_txn_snap', '_vnode',
    '_idx', 'other', 'x-y', 'MIXED', ''];
const OPS = ['=', '=', '>=', '<=', '~=', '=*', ':caseIgnoreMatch:=', ':caseIgnoreSubstringsMatch:=',
    ':overlaps:=', ':contains:=', ':within:=', ':dn:within:=', ':2.5.13.2:=', ':bogus:=', ':='];
const VALUE_PARTS = [
    'x', 'abc', "'", "''", '"', ';', '--', '$1', '$$', '%', '_', '\\2a', '*', '\\28', '\\29',
    '\\5c', '\\(', '\\)', '\\\\', '=', ':', 'é', '𐐗', ' ', 'DROP TABLE fz', 'NULL', 'true',
    'FALSE', '5', '-1.5', 'NaN', '1e3', '[1,5]', '\\(1,5\\)', '[,]', '10.0.0.1', '10.0.0.0/8',
    'fd00::1', '90:b8:d0:e6:be:e1', '2019-01-01T00:00:00Z', '[2019-01-01T00:00:00Z,\\)',
    '2b2ad5a6-dfd1-11e9-93c7-d7ab3cfab86f', ',', '{', '}', '\u0000', '\\00',
];

function rng(seed: number): () => number {
    let x = seed >>> 0;
    return () => {
        x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
        return x / 0x100000000;
    };
}

function generator(rand: () => number): () => string {
    const pick = <T>(a: readonly T[]): T => a[Math.floor(rand() * a.length)]!;
    const leaf = (): string => {
        let v = '';
        const n = Math.floor(rand() * 3);
        for (let i = 0; i < n; i++) {
            v += pick(VALUE_PARTS);
        }
        return '(' + pick(ATTRS) + pick(OPS) + v + ')';
    };
    const filter = (d: number): string => {
        const r = rand();
        if (d > 3 || r < 0.5) {
            return leaf();
        }
        if (r < 0.85) {
            const n = 1 + Math.floor(rand() * 3);
            return '(' + pick(['&', '|']) + Array.from({ length: n }, () => filter(d + 1)).join('') + ')';
        }
        return '(!' + filter(d + 1) + ')';
    };
    return () => {
        let s = filter(0);
        if (rand() < 0.15) {
            const at = Math.floor(rand() * (s.length + 1));
            s = s.slice(0, at) + pick(['(', ')', '\\', '*', '!', '&', ' ']) + s.slice(at);
        }
        return s;
    };
}

const KEYWORDS = new Set(['WHERE', 'AND', 'OR', 'NOT', 'IS', 'NULL', 'LIKE', 'ILIKE', 'ANY',
    'ARRAY', 'ORDER', 'BY', 'LIMIT', 'OFFSET', 'ASC', 'DESC', 'asc', 'desc']);
const CASTS = new Set(['::BIGINT', '::TEXT[]', '::NUMERIC[]', '::BOOLEAN[]', '::TIMESTAMPTZ[]',
    '::INET[]', '::MACADDR[]', '::CIDR[]', '::NUMRANGE', '::NUMERIC', '::TSTZRANGE',
    '::TIMESTAMPTZ', '::CIDR', '::INET']);
const COLUMNS = new Set([...Object.keys(INDEX), '_id', '_idx', '_key', '_etag', '_mtime',
    '_txn_snap', '_vnode'].map(quoteIdent));

const TOKEN_RE = /\s+|\$\d+|::[A-Z]+(?:\[\])?|"(?:[^"]|"")*"|[A-Za-z_][A-Za-z0-9_]*|\d+|>=|<=|@>|<@|<<|>>|&&|[()=,[\]]/y;

/* Returns the text with identifiers blanked, after checking every token. */
function checkVocabulary(where: string, args: unknown[], firstParam: number): string {
    let pos = 0;
    let blanked = '';
    const seen = new Set<number>();
    let prevWord = '';
    while (pos < where.length) {
        TOKEN_RE.lastIndex = pos;
        const m = TOKEN_RE.exec(where);
        assert.ok(m !== null, `unexpected text at ${pos}: ${JSON.stringify(where.slice(pos))} in ${where}`);
        const tok = m[0];
        pos += tok.length;
        if (/^\s+$/.test(tok)) {
            blanked += ' ';
            continue;
        }
        if (tok.startsWith('$')) {
            const n = Number(tok.slice(1));
            assert.ok(n >= firstParam && n < firstParam + args.length, `${tok} out of range in ${where}`);
            seen.add(n);
            blanked += tok;
        } else if (tok.startsWith('::')) {
            assert.ok(CASTS.has(tok), `cast ${tok}`);
            blanked += ' ';
        } else if (/^\d+$/.test(tok)) {
            assert.ok(prevWord === 'LIMIT' || prevWord === 'OFFSET', `number ${tok} in ${where}`);
            blanked += ' ';
        } else if (/^[A-Za-z_"]/.test(tok)) {
            assert.ok(KEYWORDS.has(tok) || COLUMNS.has(tok), `word ${tok} in ${where}`);
            blanked += ' ';
        } else {
            blanked += tok;
        }
        prevWord = tok;
    }
    for (let i = 0; i < args.length; i++) {
        assert.ok(seen.has(firstParam + i), `argument ${i} unused in ${where}`);
    }
    return blanked;
}

function values(ast: FilterNode): string[] {
    const out: string[] = [];
    forEachNode(ast, (n) => {
        if (n.type === 'substring') {
            out.push(n.initial, ...n.any, n.final);
        } else if ('value' in n) {
            out.push(n.value);
        }
    });
    /* values made only of SQL punctuation cannot carry anything */
    return out.filter((v) => !/^[\s$0-9()=<>@&:[\],]*$/.test(v));
}

function expectMorayError(f: () => void, what: string): boolean {
    try {
        f();
        return true;
    } catch (err) {
        assert.ok(err instanceof MorayError, `${what}: ${String(err)}`);
        return false;
    }
}

const RECORDS: Record<string, unknown>[] = [
    {}, { f_string: 'x', f_number: 5, f_strings: ['x', null], f_ip: '10.0.0.1', f_ips: ['bad', 3] },
    { f_subnet: '10.0.0.0/8', f_mac: 'nope', f_macs: [1, '90:b8:d0:e6:be:e1'], other: { a: 1 } },
    { _id: 1, _key: 'k', _etag: 'E', _mtime: 2, _txn_snap: null, MIXED: 'm', order: [] },
];

describe('filter fuzz: nothing but parameters reaches the SQL text', () => {
    for (const seed of [101, 202, 303]) {
        it(`holds for 8000 random filters (seed ${seed})`, (t) => {
            const rand = rng(seed);
            const next = generator(rand);
            let compiled = 0;
            for (let i = 0; i < 8000; i++) {
                const text = next();
                let ast: FilterNode | undefined;
                if (!expectMorayError(() => {
                    ast = parseFilter(text);
                }, `parse ${text}`) || ast === undefined) {
                    continue;
                }
                const b = BUCKETS[i % 2]!;
                const firstParam = 1 + (i % 3);
                const opts = {
                    firstParam,
                    limit: i % 5 === 0 ? '25' : undefined,
                    offset: i % 7 === 0 ? 3 : undefined,
                    sort: i % 4 === 0 ? [{ attribute: 'order', order: 'DESC' }, { attribute: '_id' }]
                        : undefined,
                };
                const tree = ast;
                let where = '';
                let args: unknown[] = [];
                if (expectMorayError(() => {
                    ({ where, args } = compileFilter(tree, b, opts));
                }, `compile ${text}`)) {
                    compiled++;
                    assert.ok(where.startsWith('WHERE '));
                    const blanked = checkVocabulary(where, args, firstParam);
                    for (const v of values(tree)) {
                        assert.ok(!blanked.includes(v), `value ${JSON.stringify(v)} in ${where}`);
                    }
                }
                expectMorayError(() => {
                    const match = compileMatcher(tree, b);
                    for (const r of RECORDS) {
                        assert.equal(typeof match(r), 'boolean');
                    }
                }, `match ${text}`);
            }
            t.diagnostic(`${compiled} compiled`);
            assert.ok(compiled > 800, `only ${compiled} compiled`);
        });
    }
});

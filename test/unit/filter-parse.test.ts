/*
 * Filter parsing: fixed cases from moray-api.md §10.1, then a differential
 * test against the reference parser (moray-filter@1.0.0) on hand-picked and
 * seeded random inputs: same accept/reject decision, same tree, same
 * canonical text.
 */

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MorayError } from '../../src/errors/catalog';
import { type FilterNode, filterToString, parseFilter } from '../../src/filter';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const morayFilter = require('moray-filter') as { parse(s: string): RefNode };

interface RefNode {
    type: string;
    attribute?: string;
    matchType?: string;
    value?: string;
    initial?: string;
    any?: string[];
    final?: string;
    rule?: string;
    dnAttributes?: boolean;
    filters?: RefNode[];
    filter?: RefNode;
    toString(): string;
}

/* One plain shape for both trees. */
function norm(n: FilterNode): unknown {
    switch (n.type) {
    case 'and':
    case 'or':
        return { type: n.type, filters: n.filters.map(norm) };
    case 'not':
        return { type: 'not', filter: norm(n.filter) };
    case 'present':
        return { type: 'present', attribute: n.attribute };
    case 'substring':
        return {
            type: 'substring', attribute: n.attribute, initial: n.initial, any: [...n.any],
            final: n.final,
        };
    case 'ext':
        return {
            type: 'ext', attribute: n.attribute, rule: n.rule, dnAttributes: n.dnAttributes,
            value: n.value,
            substring: n.substring === undefined ? undefined
                : { initial: n.substring.initial, any: [...n.substring.any], final: n.substring.final },
        };
    default:
        return { type: n.type, attribute: n.attribute, value: n.value };
    }
}

function normRef(n: RefNode): unknown {
    switch (n.type) {
    case 'and':
    case 'or':
        return { type: n.type, filters: n.filters!.map(normRef) };
    case 'not':
        return { type: 'not', filter: normRef(n.filter!) };
    case 'present':
        return { type: 'present', attribute: n.attribute };
    case 'substring':
        return {
            type: 'substring', attribute: n.attribute, initial: n.initial, any: [...n.any!],
            final: n.final,
        };
    case 'ext':
        return {
            type: 'ext', attribute: n.matchType, rule: n.rule, dnAttributes: n.dnAttributes,
            value: n.value,
            substring: n.any === undefined ? undefined
                : { initial: n.initial, any: [...n.any], final: n.final },
        };
    default:
        return { type: n.type, attribute: n.attribute, value: n.value };
    }
}

type Outcome = { ok: true; tree: unknown; text: string } | { ok: false };

function ours(s: string): Outcome {
    try {
        const t = parseFilter(s);
        return { ok: true, tree: norm(t), text: filterToString(t) };
    } catch (err) {
        assert.ok(err instanceof MorayError, `non-MorayError for ${JSON.stringify(s)}: ${err}`);
        assert.equal(err.name, 'InvalidQueryError');
        assert.equal(err.message, `${s} is an invalid filter`);
        return { ok: false };
    }
}

function reference(s: string): Outcome {
    let t: RefNode;
    try {
        t = morayFilter.parse(s);
    } catch {
        return { ok: false };
    }
    return { ok: true, tree: normRef(t), text: t.toString() };
}

function same(s: string): Outcome {
    const a = ours(s);
    const b = reference(s);
    assert.deepEqual(a, b, `differs on ${JSON.stringify(s)}`);
    return a;
}

function tree(s: string): unknown {
    return norm(parseFilter(s));
}

function rejects(s: string): void {
    assert.throws(() => parseFilter(s), (err: unknown) => err instanceof MorayError &&
        err.name === 'InvalidQueryError' && err.message === `${s} is an invalid filter`);
}

describe('filter parser: grammar of moray-api §10.1', () => {
    it('parses every leaf kind', () => {
        assert.deepEqual(tree('(a=1)'), { type: 'equal', attribute: 'a', value: '1' });
        assert.deepEqual(tree('(a>=1)'), { type: 'ge', attribute: 'a', value: '1' });
        assert.deepEqual(tree('(a<=1)'), { type: 'le', attribute: 'a', value: '1' });
        assert.deepEqual(tree('(a~=1)'), { type: 'approx', attribute: 'a', value: '1' });
        assert.deepEqual(tree('(a=*)'), { type: 'present', attribute: 'a' });
        assert.deepEqual(tree('(a=x*y*z)'),
            { type: 'substring', attribute: 'a', initial: 'x', any: ['y'], final: 'z' });
        assert.deepEqual(tree('(a=*x*)'),
            { type: 'substring', attribute: 'a', initial: '', any: ['x'], final: '' });
        assert.deepEqual(tree('(a=**)'),
            { type: 'substring', attribute: 'a', initial: '', any: [''], final: '' });
        assert.deepEqual(tree('(a:caseIgnoreMatch:=X)'), {
            type: 'ext', attribute: 'a', rule: 'caseIgnoreMatch', dnAttributes: false,
            value: 'X', substring: undefined,
        });
        assert.deepEqual(tree('(a:dn:caseIgnoreSubstringsMatch:=*X\\2a*)'), {
            type: 'ext', attribute: 'a', rule: 'caseIgnoreSubstringsMatch', dnAttributes: true,
            value: '*X**', substring: { initial: '', any: ['X*'], final: '' },
        });
        assert.deepEqual(tree('(a:=b)'), {
            type: 'ext', attribute: 'a', rule: undefined, dnAttributes: false, value: 'b',
            substring: undefined,
        });
        assert.deepEqual(tree('(:r:=v:w)'), {
            type: 'ext', attribute: '', rule: 'r', dnAttributes: false, value: 'v:w',
            substring: undefined,
        });
    });

    it('wraps unparenthesised input and accepts bare "!" children', () => {
        assert.deepEqual(tree('n=5'), tree('(n=5)'));
        assert.deepEqual(tree('!(a=1)'), tree('(!(a=1))'));
        assert.deepEqual(tree('(&!(a=1)(b=2))'), {
            type: 'and', filters: [
                { type: 'not', filter: { type: 'equal', attribute: 'a', value: '1' } },
                { type: 'equal', attribute: 'b', value: '2' },
            ],
        });
    });

    it('resolves escapes in values', () => {
        assert.deepEqual(tree('(a=\\2a)'), { type: 'equal', attribute: 'a', value: '*' });
        assert.deepEqual(tree('(a=\\41\\(\\)\\*\\\\\\=)'),
            { type: 'equal', attribute: 'a', value: 'A()*\\=' });
        assert.deepEqual(tree('(a==)'), { type: 'equal', attribute: 'a', value: '=' });
        assert.deepEqual(tree('(a>=*)'), { type: 'ge', attribute: 'a', value: '*' });
        assert.deepEqual(tree('(a=)'), { type: 'equal', attribute: 'a', value: '' });
    });

    it('rejects what the reference rejects, with the raw text in the message', () => {
        for (const s of ['(&)', '(|)', '( a=1)', '(a=1) ', '(n=5', '(n=5))', '(a=\\x)',
            '(a=\\)', '(a=b(c)', '(a b=1)', '()', '(=1)', '(a)', '(a:dn)', '(a:r:x:=y)',
            '(a=\\2)', '(!(a=1)', '!', '(&(a=1)', '((a=1))', '(a!=1)', 'a=1)(b=2']) {
            rejects(s);
        }
    });

    it('rejects absurd nesting as InvalidQueryError, not a crash', () => {
        rejects('(!'.repeat(50000) + '(a=1)' + ')'.repeat(50000));
        rejects('('.repeat(100000));
    });

    it('prints the canonical text of moray-filter', () => {
        assert.equal(filterToString(parseFilter('(a=\\2a\\28)')), '(a=\\*\\()');
        assert.equal(filterToString(parseFilter('(a:DN:r:=\\28x\\29)')), '(a:dn:r:=(x))');
        assert.equal(filterToString(parseFilter('(n:within:=\\(1,2\\))')), '(n:within:=(1,2))');
        assert.equal(filterToString(parseFilter('a=b')), '(a=b)');
        assert.equal(filterToString(parseFilter('(&(a=1)(|(b=2)(!(c=*))))')),
            '(&(a=1)(|(b=2)(!(c=*))))');
        assert.equal(filterToString(parseFilter('(a=\\3d=)')), '(a=\\=\\=)');
    });

    it('turns lone surrogates of equality values into U+FFFD like the reference', () => {
        assert.deepEqual(tree('(a=x\ud800)'), { type: 'equal', attribute: 'a', value: 'x\ufffd' });
        assert.deepEqual(tree('(a>=x\ud800)'), { type: 'ge', attribute: 'a', value: 'x\ud800' });
        same('(a=x\ud800)');
    });

    it('returns frozen nodes', () => {
        const t = parseFilter('(&(a=1)(b=2))');
        assert.ok(Object.isFrozen(t));
        assert.ok(t.type === 'and' && Object.isFrozen(t.filters) && Object.isFrozen(t.filters[0]));
    });
});

describe('filter parser: differential against moray-filter@1.0.0', () => {
    const CASES = [
        '(a=1)', 'a=1', '(a=)', '(a=*)', '(a=**)', '(a=***)', '(a=\\*)', '(a=*\\**)',
        '(a=b*)', '(a=*b)', '(a=b*c)', '(a=\\2a*\\2A)', '(a>=*)', '(a<=b*)', '(a~=*)',
        '(&(a=1)(b=2))', '(|(a=1)(b=2)(c=3))', '(!(a=1))', '!(a=1)', '!!(a=1)',
        '(&!(a=1)(b=2))', '(|!(a=1)!(b=2))', '(&(a=1)!(b=2))', '(!!(a=1))', '(&(a=1))',
        '(&(a=1)b=2)', '(&(a=1)(b=2)', '(&(a=1)(b=2)))', '(a=1)(b=2)', '(a=(b)', '(a=b))',
        '(a:=b)', '(a::=b)', '(a:dn:=b)', '(a:DN:=b)', '(a:dn:rule:=b)', '(a:rule:=)',
        '(:rule:=b)', '(:=b)', '(:dn:=b)', '(a:rule:=b:c:d)', '(a:rule:=*b*)',
        '(a:rule:=\\2a)', '(a:rule:=b\\)', '(a:rule:=b\\)c)', '(a:rule)', '(a:rule:x:=y)',
        '(a:dn)', '(a:)', '(a:=)', '(a-b_c9=1)', '(a.b=1)', '(a =1)', '(a= 1)', ' (a=1)',
        '(a=\\5c)', '(a=\\5C\\5c)', '(a=\\g1)', '(a=\\1)', '(a=\\)', '(a=\\()', '(a=\\))',
        '(a=\\=)', '(a=\\\\)', '(a=\\\\\\)', '(a==*)', '(a=*=)', '(a>==)', '(a<=\\2a)',
        '(a>1)', '(a<1)', '(a~1)', '(a!=1)', '(a=1', '(', ')', '(&)', '(|)', '(!)', '(!a=1)',
        '&(a=1)', '|(a=1)(b=2)', '(a=1)x', '(a=é)', '(é=1)', '(a=\u0000)', '(a=\\00)',
        '(&(|(a=1)(b=2))(!(c=*)))', '(numr:overlaps:=\\(3,7\\))', '(numr:overlaps:=(3,7))',
        '(n:within:=[1,2])', '(dt:within:=[2019-01-01T00:00:00Z,\\))',
        '(email:caseIgnoreSubstringsMatch:=*X.COM)', '(n:2.5.13.2:=x)',
    ];
    for (const s of CASES) {
        it(`agrees on ${JSON.stringify(s)}`, () => {
            same(s);
        });
    }

    /* Small LCG so failures reproduce from the printed seed. */
    function rng(seed: number): () => number {
        let x = seed >>> 0;
        return () => {
            x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
            return x / 0x100000000;
        };
    }

    const NOISE = [
        '(', ')', '&', '|', '!', '=', '*', '\\', '\\2a', '\\(', '\\x', ':', 'dn:', '~', '>',
        '<', ' ', 'é', 'a', '1',
    ];
    const ATTRS = ['a', 'b', 'N-1', '_x', 'dn', ''];
    const OPS = ['=', '=', '>=', '<=', '~=', ':caseIgnoreMatch:=', ':dn:r:=', ':=', '::=', ':dn:=',
        ':r:x:=', '=*', '>', ''];
    const VALUE_PARTS = ['x', 'y', '*', '*', '\\2a', '\\28', '\\(', '\\)', '\\*', '\\\\', '=',
        ':', '\\x', '\\', '(', 'é', '', '\\5C'];

    function generator(rand: () => number): () => string {
        const pick = <T>(a: readonly T[]): T => a[Math.floor(rand() * a.length)]!;
        const leaf = (): string => {
            let v = '';
            const n = Math.floor(rand() * 4);
            for (let i = 0; i < n; i++) {
                v += pick(VALUE_PARTS);
            }
            return '(' + pick(ATTRS) + pick(OPS) + v + ')';
        };
        const filter = (depth: number, child: boolean): string => {
            const r = rand();
            if (depth > 3 || r < 0.45) {
                return leaf();
            }
            if (r < 0.75) {
                const n = Math.floor(rand() * 4);
                let s = '(' + pick(['&', '|']);
                for (let i = 0; i < n; i++) {
                    s += filter(depth + 1, true);
                }
                return s + ')';
            }
            if (child && r < 0.85) {
                return '!' + filter(depth + 1, true);
            }
            return '(!' + filter(depth + 1, true) + ')';
        };
        return () => {
            let s = rand() < 0.2 ? leaf().slice(1, -1) : filter(0, false);
            if (rand() < 0.3) {
                const edits = 1 + Math.floor(rand() * 3);
                for (let i = 0; i < edits; i++) {
                    const at = Math.floor(rand() * (s.length + 1));
                    const del = Math.floor(rand() * 2);
                    s = s.slice(0, at) + pick(NOISE) + s.slice(at + del);
                }
            }
            return s;
        };
    }

    for (const seed of [1, 2, 3, 4]) {
        it(`agrees on 12000 random filters (seed ${seed})`, (t) => {
            const next = generator(rng(seed));
            let accepted = 0;
            for (let i = 0; i < 12000; i++) {
                if (same(next()).ok) {
                    accepted++;
                }
            }
            /* the generator must exercise acceptance as well as errors */
            t.diagnostic(`${accepted} accepted`);
            assert.ok(accepted > 1500 && accepted < 10500, `${accepted} accepted`);
        });
    }
});

/*
 * Filter -> WHERE clause: exact SQL text and parameters for every example
 * of storage.md §11.4 and moray-api.md §10.11, every operator on every
 * index type (arrays included), and every error of §10.5/§10.6/§11.1.
 */

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MorayError } from '../../src/errors/catalog';
import {
    type CompileOptions, assertUsableIndexes, checkUsableIndexes, compileFilter,
    compileIndexStageOnly, parseFilter, quoteIdent,
} from '../../src/filter';
import type { BucketSchema, IndexSpec } from '../../src/schema/bucket-types';
import { INDEX_TYPES, INDEX_TYPE_NAMES, type IndexType } from '../../src/schema/index-types';

function bucket(name: string, index: Record<string, IndexSpec>,
    more: Partial<BucketSchema> = {}): BucketSchema {
    return { name, index, reindexing: new Set(), hasExtendedId: false, ...more };
}

function compile(b: BucketSchema, filter: string, opts?: CompileOptions) {
    return compileFilter(parseFilter(filter), b, opts);
}

function expectSql(b: BucketSchema, filter: string, where: string, args?: unknown[],
    opts?: CompileOptions): void {
    const r = compile(b, filter, opts);
    assert.equal(r.where, where, filter);
    if (args !== undefined) {
        assert.deepEqual(r.args, args, filter);
    }
}

function expectError(b: BucketSchema, filter: string, name: string, message: string,
    opts?: CompileOptions): void {
    assert.throws(() => compile(b, filter, opts), (err: unknown) => {
        assert.ok(err instanceof MorayError, `not a MorayError: ${String(err)}`);
        assert.equal(err.name, name, filter);
        assert.equal(err.message, message, filter);
        return true;
    });
}

/* storage.md §11.4 */
const SPEC = bucket('b', {
    str: { type: 'string' }, num: { type: 'number' }, strs: { type: '[string]' },
    nums: { type: '[number]' }, numr: { type: 'numrange' }, dt: { type: 'date' },
    sub: { type: 'subnet' }, bool: { type: 'boolean' },
});

/* moray-api.md §10.11 */
const FOO = bucket('foo', {
    email: { type: 'string', unique: true }, n: { type: 'number' }, b: { type: 'boolean' },
    tags: { type: '[string]' },
});

describe('storage.md §11.4 examples', () => {
    it('produces the documented WHERE clauses and args', () => {
        expectSql(SPEC, '(str=foo)', 'WHERE  ( $1 = str AND str IS NOT NULL )  LIMIT 1000', ['foo']);
        expectSql(SPEC, '(&(str=foo)(num>=5))',
            'WHERE  ( ( $1 = str AND str IS NOT NULL ) ) AND ( ( $2 <= num AND num IS NOT NULL ) )  LIMIT 1000',
            ['foo', 5]);
        expectSql(SPEC, '(!(str=foo))',
            'WHERE  NOT ( ( $1 = str AND str IS NOT NULL ) ) LIMIT 1000', ['foo']);
        expectSql(SPEC, '(strs=x)', 'WHERE  ( strs @> ARRAY[$1]::TEXT[] )  LIMIT 1000', ['x']);
        expectSql(SPEC, '(nums<=3)', 'WHERE  ( $1 >= ANY(nums) )  LIMIT 1000', [3]);
        expectSql(SPEC, '(str=*)', 'WHERE str IS NOT NULL LIMIT 1000', []);
        expectSql(SPEC, '(numr:overlaps:=\\(1,2\\))', 'WHERE $1::NUMRANGE && numr LIMIT 1000',
            ['(1,2)']);
        expectSql(SPEC, '(dt:within:=[2019-01-01T00:00:00Z,\\))',
            'WHERE $1::TSTZRANGE @> dt LIMIT 1000', ['[2019-01-01T00:00:00.000Z,)']);
        expectSql(SPEC, '(sub:contains:=10.1.2.3)', 'WHERE $1::INET << sub LIMIT 1000',
            ['10.1.2.3']);
        expectSql(SPEC, '(bool=true)', 'WHERE  ( $1 = bool AND bool IS NOT NULL )  LIMIT 1000',
            ['TRUE']);
        expectSql(SPEC, '(str=x)',
            'WHERE  ( $1 = str AND str IS NOT NULL )  ORDER BY num, str desc LIMIT 10 OFFSET 20',
            ['x'], {
                sort: [{ attribute: 'num' }, { attribute: 'str', order: 'desc' }], limit: 10,
                offset: '20',
            });
        expectSql(SPEC, '(str=x)', 'WHERE  ( $1 = str AND str IS NOT NULL ) ', ['x'],
            { noLimit: true });
    });

    it('builds the reference substring patterns (final piece unanchored)', () => {
        expectSql(SPEC, '(str=a*b*c)', 'WHERE  ( str LIKE $1 AND str IS NOT NULL )  LIMIT 1000',
            ['a%%b%%c%']);
        expectSql(SPEC, '(str=*suf)', 'WHERE  ( str LIKE $1 AND str IS NOT NULL )  LIMIT 1000',
            ['%suf%']);
        expectSql(SPEC, '(str=pre*)', 'WHERE  ( str LIKE $1 AND str IS NOT NULL )  LIMIT 1000',
            ['pre%']);
        expectSql(SPEC, '(str=**)', 'WHERE  ( str LIKE $1 AND str IS NOT NULL )  LIMIT 1000',
            ['%%']);
        /* % and _ are not escaped: they act as wildcards in SQL */
        expectSql(SPEC, '(str=a%_*)', 'WHERE  ( str LIKE $1 AND str IS NOT NULL )  LIMIT 1000',
            ['a%_%']);
    });

    it('applies the empty-fragment rules of §11.2', () => {
        expectError(SPEC, '(unindexed=1)', 'InvalidQueryError', '(unindexed=1) is an invalid filter');
        expectSql(SPEC, '(&(unindexed=1)(str=x))',
            'WHERE  ( ( $1 = str AND str IS NOT NULL ) )  LIMIT 1000', ['x']);
        expectError(SPEC, '(|(unindexed=1)(str=x))', 'NotIndexedError',
            'b does not have indexes that support (|(unindexed=1)(str=x))');
    });
});

describe('moray-api.md §10.11 examples', () => {
    it('compiles the captured filters', () => {
        expectSql(FOO, '(n>=6)', 'WHERE  ( $1 <= n AND n IS NOT NULL )  LIMIT 1000', [6]);
        expectSql(FOO, '(n>=6)', 'WHERE  ( $1 <= n AND n IS NOT NULL )  ORDER BY n DESC LIMIT 1',
            [6], { sort: { attribute: 'n', order: 'DESC' }, limit: 1 });
        expectSql(FOO, '(&(n>=5)(other=zz))',
            'WHERE  ( ( $1 <= n AND n IS NOT NULL ) )  LIMIT 1000', [5]);
        expectSql(FOO, '(tags=c)', 'WHERE  ( tags @> ARRAY[$1]::TEXT[] )  LIMIT 1000', ['c']);
        expectSql(FOO, '(email:caseIgnoreMatch:=a@X.COM)',
            'WHERE  ( $1 ILIKE email AND email IS NOT NULL )  LIMIT 1000', ['a@X.COM']);
        expectSql(FOO, '(email:caseIgnoreSubstringsMatch:=*X.COM)',
            'WHERE  ( email ILIKE $1 AND email IS NOT NULL )  LIMIT 1000', ['%x.com%']);
        expectSql(FOO, '(!(n=5))', 'WHERE  NOT ( ( $1 = n AND n IS NOT NULL ) ) LIMIT 1000', [5]);
        expectSql(FOO, '(&(n>=77)(!(tags=c)))',
            'WHERE  ( ( $1 <= n AND n IS NOT NULL ) ) AND ( NOT ( ( tags @> ARRAY[$2]::TEXT[] ) )) ' +
            ' LIMIT 1000', [77, 'c']);
        expectSql(FOO, '(_key=not*)', 'WHERE  ( _key LIKE $1 AND _key IS NOT NULL )  LIMIT 1000',
            ['not%']);
        expectSql(FOO, '(_key:caseIgnoreMatch:=NOTAGS)',
            'WHERE  ( $1 ILIKE _key AND _key IS NOT NULL )  LIMIT 1000', ['NOTAGS']);
        expectSql(FOO, '(_etag=45C42E31)',
            'WHERE  ( $1 = _etag AND _etag IS NOT NULL )  LIMIT 1000', ['45C42E31']);
        expectSql(FOO, '(_mtime>=1)', 'WHERE  ( $1 <= _mtime AND _mtime IS NOT NULL )  LIMIT 1000',
            [1]);
        expectSql(FOO, '(_txn_snap<=9)',
            'WHERE  ( $1 >= _txn_snap AND _txn_snap IS NOT NULL )  LIMIT 1000', [9]);
        expectSql(FOO, 'n=5', 'WHERE  ( $1 = n AND n IS NOT NULL )  LIMIT 1000', [5]);
        const nan = compile(FOO, '(n=abc)');
        assert.equal(nan.where, 'WHERE  ( $1 = n AND n IS NOT NULL )  LIMIT 1000');
        assert.equal(nan.args.length, 1);
        assert.ok(Number.isNaN(nan.args[0]));
    });

    it('rejects what the reference rejects', () => {
        expectError(FOO, '(other=zz)', 'InvalidQueryError', '(other=zz) is an invalid filter');
        expectError(FOO, '(!(other=zz))', 'InvalidQueryError', '(!(other=zz)) is an invalid filter');
        expectError(FOO, '(|(other=zz)(n>=5))', 'NotIndexedError',
            'foo does not have indexes that support (|(other=zz)(n>=5))');
        /* the reference answered AssertionError here; we keep NotIndexedError */
        expectError(FOO, '(|(n>=5)(other=zz))', 'NotIndexedError',
            'foo does not have indexes that support (|(n>=5)(other=zz))');
        expectError(FOO, '(&(other=1)(!(x=2)))', 'NotIndexedError',
            'foo does not have indexes that support (&(other=1)(!(x=2)))');
        expectError(FOO, '(tags=c*)', 'NotIndexedError',
            'foo does not have indexes that support (tags=c*)');
        expectError(FOO, '(tags:caseIgnoreSubstringsMatch:=*c*)', 'NotIndexedError',
            'foo does not have indexes that support (tags:caseIgnoreSubstringsMatch:=*c*)');
        expectError(FOO, '(_id=*)', 'InvalidQueryError', '(_id=*) is an invalid filter');
        expectError(FOO, '(n~=5)', 'Error', 'approx filters not allowed');
        expectError(FOO, '(n:foo:=5)', 'Error', 'unsupported ext filter');
        expectError(FOO, '(n:=5)', 'Error', 'unsupported ext filter');
        expectError(FOO, '(n::=5)', 'Error', 'unsupported ext filter');
        expectError(FOO, '(b=yes)', 'InvalidQueryError', '(b=yes) is an invalid filter');
        expectError(FOO, '(&(n>=0)(b=yes))', 'InvalidQueryError', '(b=yes) is an invalid filter');
        expectError(FOO, '(_idx=1)', 'Error', 'filtering on "_idx" is not allowed');
        expectError(FOO, '(&(n=1)(!(_idx=*)))', 'Error', 'filtering on "_idx" is not allowed');
        expectError(FOO, '(email:2.5.13.2:=x)', 'NotIndexedError',
            'foo does not have indexes that support (email:2.5.13.2:=x)');
        expectError(FOO, '(&(n=1)(email:2.5.13.4:=*x*))', 'NotIndexedError',
            'foo does not have indexes that support (email:2.5.13.4:=*x*)');
    });

    it('reports the first problem in document order', () => {
        expectError(FOO, '(&(n~=5)(_idx=1))', 'Error', 'approx filters not allowed');
        expectError(FOO, '(&(_idx=1)(n~=5))', 'Error', 'filtering on "_idx" is not allowed');
        /* decoration runs over the whole tree before compilation */
        expectError(FOO, '(&(b=yes)(n~=5))', 'Error', 'approx filters not allowed');
        expectError(FOO, '(|(other=1)(b=yes))', 'NotIndexedError',
            'foo does not have indexes that support (|(other=1)(b=yes))');
        expectError(FOO, '(|(b=yes)(other=1))', 'InvalidQueryError', '(b=yes) is an invalid filter');
    });
});

/* ---- operator x type matrix ---- */

const ALL: Record<string, IndexSpec> = {};
const COL: Record<IndexType, string> = {} as Record<IndexType, string>;
for (const t of INDEX_TYPE_NAMES) {
    const col = 'c_' + t.replace(/[[\]]/g, '') + (t.startsWith('[') ? 's' : '');
    COL[t] = col;
    ALL[col] = { type: t };
}
const ALL_BUCKET = bucket('all', ALL);

/* filter text -> expected parameter, per element type */
const SAMPLE: Record<string, [string, unknown]> = {
    string: ['x', 'x'],
    number: ['5', 5],
    boolean: ['true', 'TRUE'],
    date: ['2019-01-01T00:00:00Z', new Date('2019-01-01T00:00:00.000Z')],
    uuid: ['2b2ad5a6-dfd1-11e9-93c7-d7ab3cfab86f', '2b2ad5a6-dfd1-11e9-93c7-d7ab3cfab86f'],
    ip: ['FD00:0::1', 'fd00::1'],
    subnet: ['10.1.2.3/8', '10.0.0.0/8'],
    mac: ['90-B8-D0-E6-BE-E1', '90:b8:d0:e6:be:e1'],
    numrange: ['\\(1,2\\)', '(1,2)'],
    daterange: ['[2019-01-01T00:00:00Z,\\)', '[2019-01-01T00:00:00.000Z,)'],
};
const BAD: Record<string, string | undefined> = {
    boolean: 'yes', date: '2019-01-01', uuid: '2B2AD5A6-DFD1-11E9-93C7-D7AB3CFAB86F', ip: 'nope',
    subnet: '10.0.0.1', mac: 'zz', numrange: '[a,b]', daterange: '[x,)',
};
const CASTS: Record<string, string> = {
    numrange: 'NUMRANGE', number: 'NUMERIC', daterange: 'TSTZRANGE', date: 'TIMESTAMPTZ',
    subnet: 'CIDR', ip: 'INET',
};
/* type -> rule -> [arg type, operator] (storage.md §3.2, written out again) */
const RANGE_OPS: Partial<Record<IndexType, Record<string, [string, string]>>> = {
    'number': { within: ['numrange', '@>'] },
    '[number]': { within: ['numrange', '@>'] },
    'numrange': { overlaps: ['numrange', '&&'], contains: ['number', '<@'] },
    'date': { within: ['daterange', '@>'] },
    '[date]': { within: ['daterange', '@>'] },
    'daterange': { overlaps: ['daterange', '&&'], contains: ['date', '<@'] },
    'ip': { within: ['subnet', '>>'] },
    '[ip]': { within: ['subnet', '>>'] },
    'subnet': { contains: ['ip', '<<'] },
    '[subnet]': { contains: ['ip', '<<'] },
};
const ARG_SAMPLE: Record<string, [string, unknown]> = {
    numrange: ['[1,5]', '[1,5]'],
    number: ['5', 5],
    daterange: ['[2019-01-01T00:00:00Z,2020-01-01T00:00:00Z\\)',
        '[2019-01-01T00:00:00.000Z,2020-01-01T00:00:00.000Z)'],
    date: ['2019-06-01T00:00:00.5Z', new Date('2019-06-01T00:00:00.500Z')],
    subnet: ['10.1.2.3/8', '10.0.0.0/8'],
    ip: ['10.001.2.3', '10.1.2.3'],
};

describe('every operator on every index type', () => {
    for (const t of INDEX_TYPE_NAMES) {
        const c = COL[t];
        const info = INDEX_TYPES[t];
        const el = info.element;
        const [text, param] = SAMPLE[el]!;
        const cast = t.replace(/[[\]]/g, '').replace(/.*/, (s) => ({
            string: 'TEXT', number: 'NUMERIC', boolean: 'BOOLEAN', date: 'TIMESTAMPTZ',
            ip: 'INET', mac: 'MACADDR', subnet: 'CIDR',
        } as Record<string, string>)[s] ?? '?') + '[]';

        it(`${t}: =, >=, <=, =*, caseIgnoreMatch`, () => {
            if (info.isArray) {
                expectSql(ALL_BUCKET, `(${c}=${text})`,
                    `WHERE  ( ${c} @> ARRAY[$1]::${cast} )  LIMIT 1000`, [param]);
                expectSql(ALL_BUCKET, `(${c}>=${text})`,
                    `WHERE  ( $1 <= ANY(${c}) )  LIMIT 1000`, [param]);
                expectSql(ALL_BUCKET, `(${c}<=${text})`,
                    `WHERE  ( $1 >= ANY(${c}) )  LIMIT 1000`, [param]);
                expectSql(ALL_BUCKET, `(${c}:caseIgnoreMatch:=${text})`,
                    `WHERE  ( $1 ILIKE ANY(${c}) )  LIMIT 1000`, [param]);
            } else {
                for (const [op, sqlOp] of [['=', '='], ['>=', '<='], ['<=', '>=']]) {
                    expectSql(ALL_BUCKET, `(${c}${op}${text})`,
                        `WHERE  ( $1 ${sqlOp} ${c} AND ${c} IS NOT NULL )  LIMIT 1000`, [param]);
                }
                expectSql(ALL_BUCKET, `(${c}:caseIgnoreMatch:=${text})`,
                    `WHERE  ( $1 ILIKE ${c} AND ${c} IS NOT NULL )  LIMIT 1000`, [param]);
            }
            expectSql(ALL_BUCKET, `(${c}=*)`, `WHERE ${c} IS NOT NULL LIMIT 1000`, []);
        });

        it(`${t}: substring and caseIgnoreSubstringsMatch`, () => {
            if (info.isArray) {
                expectError(ALL_BUCKET, `(${c}=a*)`, 'NotIndexedError',
                    `all does not have indexes that support (${c}=a*)`);
                expectError(ALL_BUCKET, `(${c}:caseIgnoreSubstringsMatch:=A*)`, 'NotIndexedError',
                    `all does not have indexes that support (${c}:caseIgnoreSubstringsMatch:=A*)`);
            } else {
                expectSql(ALL_BUCKET, `(${c}=a*b)`,
                    `WHERE  ( ${c} LIKE $1 AND ${c} IS NOT NULL )  LIMIT 1000`, ['a%%b%']);
                expectSql(ALL_BUCKET, `(${c}:caseIgnoreSubstringsMatch:=A*B*C)`,
                    `WHERE  ( ${c} ILIKE $1 AND ${c} IS NOT NULL )  LIMIT 1000`, ['a%%b%%c%']);
            }
        });

        it(`${t}: overlaps, contains, within`, () => {
            for (const rule of ['overlaps', 'contains', 'within']) {
                const op = RANGE_OPS[t]?.[rule];
                if (op === undefined) {
                    const leaf = `(${c}:${rule}:=[1,2])`;
                    expectError(ALL_BUCKET, leaf, 'InvalidQueryError', `${leaf} is an invalid filter`);
                    continue;
                }
                const [arg, sqlOp] = op;
                const [atext, aparam] = ARG_SAMPLE[arg]!;
                const target = info.isArray ? `ANY(${c})` : c;
                expectSql(ALL_BUCKET, `(${c}:${rule}:=${atext})`,
                    `WHERE $1::${CASTS[arg]} ${sqlOp} ${target} LIMIT 1000`, [aparam]);
                const bad = BAD[arg] ?? undefined;
                if (bad !== undefined) {
                    const leaf = `(${c}:${rule}:=${bad.replace(/\)/g, '\\)')})`;
                    expectError(ALL_BUCKET, leaf, 'InvalidQueryError',
                        `(${c}:${rule}:=${bad}) is an invalid filter`);
                }
            }
        });

        it(`${t}: malformed values are InvalidQueryError with the leaf text`, () => {
            const bad = BAD[el];
            if (bad === undefined) {
                /* string and number never fail */
                assert.ok(el === 'string' || el === 'number');
                return;
            }
            const esc = bad.replace(/\)/g, '\\)').replace(/\(/g, '\\(');
            for (const op of ['=', '>=', '<=']) {
                const printed = `(${c}${op}${bad.replace(/\)/g, '\\)').replace(/\(/g, '\\(')})`;
                expectError(ALL_BUCKET, `(&(c_string=1)(${c}${op}${esc}))`, 'InvalidQueryError',
                    `${printed} is an invalid filter`);
            }
            expectError(ALL_BUCKET, `(${c}:caseIgnoreMatch:=${esc})`, 'InvalidQueryError',
                `(${c}:caseIgnoreMatch:=${bad}) is an invalid filter`);
        });
    }
});

describe('reindexing fields, internal fields, extended id', () => {
    const R = bucket('r', { a: { type: 'string' }, n: { type: 'number' }, dt: { type: 'date' } },
        { reindexing: new Set(['n', 'dt']) });

    it('gives reindexing fields no SQL', () => {
        expectError(R, '(n=1)', 'InvalidQueryError', '(n=1) is an invalid filter');
        expectSql(R, '(&(a=x)(n=1))', 'WHERE  ( ( $1 = a AND a IS NOT NULL ) )  LIMIT 1000', ['x']);
        expectError(R, '(dt:within:=[,])', 'NotIndexedError',
            'r does not have indexes that support (dt:within:=[,])');
        expectError(R, '(other:within:=[,])', 'NotIndexedError',
            'r does not have indexes that support (other:within:=[,])');
        expectError(R, '(_id:within:=[1,2])', 'NotIndexedError',
            'r does not have indexes that support (_id:within:=[1,2])');
        /* unindexed values are never converted */
        expectSql(R, '(&(a=x)(n=zz)(dt=nope))',
            'WHERE  ( ( $1 = a AND a IS NOT NULL ) )  LIMIT 1000', ['x']);
    });

    it('ignores _vnode, unknown _x and presence on internal fields', () => {
        for (const f of ['(_vnode=1)', '(_x=1)', '(_key=*)', '(_etag=*)', '(_mtime=*)']) {
            expectError(R, f, 'InvalidQueryError', `${f} is an invalid filter`);
        }
    });

    it('expands _id for buckets with the extended id', () => {
        const X = bucket('x', { a: { type: 'string' } }, { hasExtendedId: true });
        expectSql(X, '(_id=5)',
            'WHERE  ( ( $1 = _id::BIGINT AND _id IS NOT NULL ) OR ( $1 = _idx AND _idx IS NOT NULL ) )  LIMIT 1000',
            [5]);
        expectSql(X, '(_id>=5)',
            'WHERE  ( ( $1 <= _id::BIGINT AND _id IS NOT NULL ) OR ( $1 <= _idx AND _idx IS NOT NULL ) )  LIMIT 1000',
            [5]);
        expectSql(X, '(&(a=q)(_id<=7))',
            'WHERE  ( ( $1 = a AND a IS NOT NULL ) ) AND ( ( ( $2 >= _id::BIGINT AND _id IS NOT NULL ) OR ( $2 >= _idx AND _idx IS NOT NULL ) ) )  LIMIT 1000',
            ['q', 7]);
        expectSql(X, '(a=q)', 'WHERE  ( $1 = a AND a IS NOT NULL )  ORDER BY _id DESC, _idx DESC LIMIT 1000',
            ['q'], { sort: { attribute: '_id', order: 'DESC' } });
        expectSql(X, '(a=q)', 'WHERE  ( $1 = a AND a IS NOT NULL )  ORDER BY a, _id, _idx LIMIT 1000',
            ['q'], { sort: [{ attribute: 'a' }, { attribute: '_id' }] });
        expectSql(FOO, '(n=1)', 'WHERE  ( $1 = n AND n IS NOT NULL )  ORDER BY _id LIMIT 1000',
            [1], { sort: { attribute: '_id' } });
        expectError(X, '(_idx=5)', 'Error', 'filtering on "_idx" is not allowed');
    });
});

describe('sort, limit, offset, parameters, identifiers', () => {
    it('numbers parameters from firstParam', () => {
        const r = compile(SPEC, '(&(str=a)(|(num>=1)(nums<=2)))', { firstParam: 3 });
        assert.equal(r.where, 'WHERE  ( ( $3 = str AND str IS NOT NULL ) ) AND ( ( ( $4 <= num AND num IS NOT NULL ) ) OR ( ( $5 >= ANY(nums) ) ) )  LIMIT 1000');
        assert.deepEqual(r.args, ['a', 1, 2]);
    });

    it('handles limit and offset like the reference', () => {
        const base = 'WHERE  ( $1 = str AND str IS NOT NULL ) ';
        expectSql(SPEC, '(str=x)', base + ' LIMIT 1000', ['x'], { limit: 0 });
        expectSql(SPEC, '(str=x)', base + ' LIMIT 0', ['x'], { limit: '0' });
        expectSql(SPEC, '(str=x)', base + ' LIMIT 7', ['x'], { limit: '7', noLimit: true });
        expectSql(SPEC, '(str=x)', base + ' LIMIT 1000', ['x'], { offset: 0 });
        expectSql(SPEC, '(str=x)', base + ' LIMIT 1000 OFFSET 0', ['x'], { offset: '0' });
        expectSql(SPEC, '(str=x)', base + ' OFFSET 5', ['x'], { offset: 5, noLimit: true });
        for (const limit of ['1; DROP TABLE b', -1, 1.5, '1e3', ' 1']) {
            assert.throws(() => compile(SPEC, '(str=x)', { limit }), { name: 'InvocationError' });
            assert.throws(() => compile(SPEC, '(str=x)', { offset: limit }),
                { name: 'InvocationError' });
        }
    });

    it('emits sort attributes only through the quoting function', () => {
        const base = 'WHERE  ( $1 = str AND str IS NOT NULL ) ';
        expectSql(SPEC, '(str=x)', base + ' ORDER BY num ASC, str asc LIMIT 1000', ['x'],
            { sort: [{ attribute: 'NUM', order: 'ASC' }, { attribute: 'str', order: 'asc' }] });
        expectSql(SPEC, '(str=x)', base + ' ORDER BY "order" DESC LIMIT 1000', ['x'],
            { sort: { attribute: 'order', order: 'DESC' } });
        expectSql(SPEC, '(str=x)', base + ' ORDER BY _mtime LIMIT 1000', ['x'],
            { sort: [{ order: 'DESC' }, { attribute: '_mtime' }] });
        expectSql(SPEC, '(str=x)', base + ' LIMIT 1000', ['x'], { sort: [] });
        expectError(SPEC, '(str=x)', 'Error', 'sorting on "_idx" is not allowed',
            { sort: { attribute: '_idx' } });
        expectError(SPEC, '(str=x)', 'error', 'column "a;b" does not exist',
            { sort: { attribute: 'a;b' } });
        expectError(SPEC, '(str=x)', 'error', 'column "a b" does not exist',
            { sort: { attribute: 'a b' } });
        expectError(SPEC, '(str=x)', 'error', 'column ""x" does not exist',
            { sort: { attribute: '"x' } });
        assert.throws(() => compile(SPEC, '(str=x)',
            { sort: { attribute: 'str', order: 'DESC; DROP TABLE b' } }), { name: 'InvocationError' });
    });

    it('quotes identifiers to the column PostgreSQL folding would pick', () => {
        assert.equal(quoteIdent('str'), 'str');
        assert.equal(quoteIdent('Str'), 'str');
        assert.equal(quoteIdent('_id'), '_id');
        assert.equal(quoteIdent('a1_b'), 'a1_b');
        assert.equal(quoteIdent('order'), '"order"');
        assert.equal(quoteIdent('User'), '"user"');
        assert.equal(quoteIdent('1a'), '"1a"');
        assert.equal(quoteIdent('a"b'), '"a""b"');
        assert.equal(quoteIdent('a-b'), '"a-b"');
        assert.equal(quoteIdent('Éa'), '"Éa"');
        const K = bucket('k', { order: { type: 'string' }, User: { type: '[number]' } });
        expectSql(K, '(&(order=x)(User>=2))',
            'WHERE  ( ( $1 = "order" AND "order" IS NOT NULL ) ) AND ( ( $2 <= ANY("user") ) )  LIMIT 1000',
            ['x', 2]);
    });

    it('treats caseIgnoreSubstringsMatch without "*" as a case-insensitive equality', () => {
        expectSql(FOO, '(email:caseIgnoreSubstringsMatch:=AbC)',
            'WHERE  ( email ILIKE $1 AND email IS NOT NULL )  LIMIT 1000', ['abc']);
        expectSql(FOO, '(email:caseIgnoreSubstringsMatch:=A\\2aB*)',
            'WHERE  ( email ILIKE $1 AND email IS NOT NULL )  LIMIT 1000', ['a*b%']);
    });

    it('never lets an own-property lookup reach Object.prototype', () => {
        for (const f of ['(constructor=1)', '(__proto__=1)', '(toString=*)', '(hasOwnProperty>=1)']) {
            expectError(FOO, f, 'InvalidQueryError', `${f} is an invalid filter`);
        }
    });
});

describe('requireIndexes (moray-api.md §10.8)', () => {
    const V = bucket('foo', { email: { type: 'string' }, n: { type: 'number' }, r: { type: 'number' } },
        { reindexing: new Set(['r']) });

    it('lists unindexed and reindexing attributes once each', () => {
        assert.deepEqual(checkUsableIndexes(parseFilter('(other=zz)'), V),
            { unindexed: ['other'], reindexing: [] });
        assert.deepEqual(checkUsableIndexes(parseFilter(
            '(&(b=1)(|(r=2)(a=1))(!(b=*))(_id=1)(_key=x)(_etag=1)(_mtime=1)(_txn_snap=1)(r>=1)(n=1)(_vnode=1))'), V),
        { unindexed: ['b', 'a', '_vnode'], reindexing: ['r'] });
        assert.deepEqual(checkUsableIndexes(parseFilter('(&(n=1)(email=x))'), V),
            { unindexed: [], reindexing: [] });
    });

    it('throws NotIndexedError with the raw filter and inspect-style lists', () => {
        assert.throws(() => assertUsableIndexes(parseFilter('other=zz'), V, 'other=zz'), {
            name: 'NotIndexedError',
            message: "foo does not have indexes that support other=zz. Reindexing fields: []. Unindexed fields: [ 'other' ]",
        });
        assert.throws(() => assertUsableIndexes(parseFilter('(&(r=1)(x=1)(y=2))'), V, '(&(r=1)(x=1)(y=2))'), {
            name: 'NotIndexedError',
            message: "foo does not have indexes that support (&(r=1)(x=1)(y=2)). Reindexing fields: [ 'r' ]. Unindexed fields: [ 'x', 'y' ]",
        });
    });

    it('compileIndexStageOnly checks usability first, then compiles the same clause', () => {
        assert.throws(() => compileIndexStageOnly(parseFilter('(&(n=1)(other=2))'), V,
            '(&(n=1)(other=2))'), { name: 'NotIndexedError' });
        const r = compileIndexStageOnly(parseFilter('(email=*foo)'), V, '(email=*foo)');
        assert.equal(r.where, 'WHERE  ( email LIKE $1 AND email IS NOT NULL )  LIMIT 1000');
        assert.deepEqual(r.args, ['%foo%']);
    });
});

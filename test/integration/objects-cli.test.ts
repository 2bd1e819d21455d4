/*
 * The node-moray object CLI tools against this server (moray-api.md §16):
 * putobject (-d, -e), getobject (-H, -s), delobject, findobjects
 * (-a -d -l -o -n -s -i -H): outputs, exit codes (0 ok, 1 server or
 * client failure, 2 usage) and the `<tool>: <message>` lines on stderr.
 */

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { runCli, type CliResult } from '../helpers/harness';
import { createBucket, get, objectsFixture, put } from './objects-shared';

const fx = objectsFixture('objcli');

let ready: Promise<void> | null = null;
function setup(): Promise<void> {
    if (ready === null) {
        ready = (async () => {
            await createBucket(fx.c, 'cli', {});
            await createBucket(fx.c, 'clif', { index: {
                n: { type: 'number' }, s: { type: 'string' },
            } });
            for (let i = 1; i <= 5; i++) {
                await put(fx.c, 'clif', `f${i}`, { n: i, s: i % 2 === 0 ? 'even' : 'odd' });
            }
        })();
    }
    return ready;
}

const cli = (tool: string, args: string[]): Promise<CliResult> => runCli(tool, args, fx.srv.port);

function ok(r: CliResult): void {
    assert.equal(r.stderr, '', 'stderr');
    assert.equal(r.code, 0, 'exit code');
}

/* A failed RPC: exit 1, one line "<tool>: moray client (...): ...: <server message>". */
function failed(r: CliResult, tool: string, serverMessage: string): void {
    assert.equal(r.code, 1, `exit code (stderr: ${r.stderr})`);
    assert.equal(r.stdout, '');
    assert.ok(r.stderr.startsWith(`${tool}: `), r.stderr);
    assert.ok(r.stderr.trimEnd().endsWith(serverMessage), r.stderr);
}

/* A usage error: exit 2, "<tool>: <problem>" then a usage line. */
function usage(r: CliResult, tool: string, problem: string): void {
    assert.equal(r.code, 2, `exit code (stderr: ${r.stderr})`);
    assert.equal(r.stdout, '');
    assert.ok(r.stderr.startsWith(`${tool}: ${problem}\n`), r.stderr);
    assert.match(r.stderr, /usage: /);
}

/* stdout of findobjects/getobject without -H: 2-space JSON documents. */
function prettyDocs(stdout: string): any[] {
    const out: any[] = [];
    for (const chunk of stdout.split(/\n(?=\{)/)) {
        if (chunk.trim() !== '') {
            out.push(JSON.parse(chunk));
        }
    }
    return out;
}

describe('putobject / getobject / delobject', () => {
    test('putobject (value defaults to {}) then getobject prints the record, 2-space JSON',
        async () => {
            await setup();
            ok(await cli('putobject', ['cli', 'empty']));
            const g = await cli('getobject', ['cli', 'empty']);
            ok(g);
            const rec = await get(fx.c, 'cli', 'empty');
            assert.equal(g.stdout, JSON.stringify(rec, null, 2) + '\n');
            assert.deepEqual(rec.value, {});
            assert.equal(rec._etag, 'A3A6BF43');
        });

    test('putobject -d, getobject -H (one line) and -s (accepted, ignored)', async () => {
        await setup();
        ok(await cli('putobject', ['-d', '{"n":42,"s":"hello ☃ 😀","x":[1,2]}', 'cli', 'k1']));
        const g = await cli('getobject', ['-H', 'cli', 'k1']);
        ok(g);
        assert.equal(g.stdout.split('\n').length, 2, 'one line');
        const rec = JSON.parse(g.stdout);
        assert.deepEqual(rec.value, { n: 42, s: 'hello ☃ 😀', x: [1, 2] });
        assert.equal(rec.key, 'k1');
        assert.equal(rec._count, null);
        const s = await cli('getobject', ['-s', '-H', 'cli', 'k1']);
        ok(s);
        assert.equal(s.stdout, g.stdout);
    });

    test('putobject -e: conditional write, conflict is exit 1 with the server message',
        async () => {
            await setup();
            const { etag } = await put(fx.c, 'cli', 'k2', { v: 1 });
            failed(await cli('putobject', ['-e', 'ABCDEF01', '-d', '{"v":2}', 'cli', 'k2']),
                'putobject', `cli::k2 was expected to have etag "ABCDEF01", but was "${etag}"`);
            assert.deepEqual((await get(fx.c, 'cli', 'k2')).value, { v: 1 });
            ok(await cli('putobject', ['-e', etag, '-d', '{"v":2}', 'cli', 'k2']));
            assert.deepEqual((await get(fx.c, 'cli', 'k2')).value, { v: 2 });
            failed(await cli('putobject', ['-e', etag, 'cli', 'absent']),
                'putobject', `cli::absent was expected to have etag "${etag}", but was "null"`);
        });

    test('putobject errors: bad -d JSON, bad index value, missing bucket, usage', async () => {
        await setup();
        const bad = await cli('putobject', ['-d', '{nope', 'cli', 'k3']);
        assert.equal(bad.code, 1);
        assert.match(bad.stderr, /^putobject: parsing value for -d: /);
        failed(await cli('putobject', ['-d', '{"n":"x","s":{"a":1}}', 'nosuch', 'k']),
            'putobject', 'nosuch does not exist');
        await createBucket(fx.c, 'clib', { index: { b: { type: 'boolean' } } });
        failed(await cli('putobject', ['-d', '{"b":"maybe"}', 'clib', 'k']),
            'putobject', 'index(b) is of type boolean');
        usage(await cli('putobject', ['cli']), 'putobject', 'missing required arguments: "key"');
        usage(await cli('putobject', []), 'putobject', 'missing required arguments: "bucket"');
    });

    test('getobject / delobject of missing objects: exit 1 with the server message', async () => {
        await setup();
        failed(await cli('getobject', ['cli', 'nosuch']), 'getobject', 'cli::nosuch does not exist');
        failed(await cli('getobject', ['nosuch', 'k']), 'getobject', 'nosuch does not exist');
        failed(await cli('delobject', ['cli', 'nosuch']), 'delobject', 'cli::nosuch does not exist');
        usage(await cli('getobject', ['cli']), 'getobject', 'missing required arguments: "key"');
        usage(await cli('delobject', ['cli']), 'delobject', 'missing required arguments: "key"');
    });

    test('delobject deletes; unicode keys round-trip through the tools', async () => {
        await setup();
        const key = 'ключ-😀';
        ok(await cli('putobject', ['-d', '{"u":"𐐷"}', 'cli', key]));
        const g = await cli('getobject', ['-H', 'cli', key]);
        ok(g);
        assert.deepEqual(JSON.parse(g.stdout).value, { u: '𐐷' });
        ok(await cli('delobject', ['cli', key]));
        failed(await cli('getobject', ['cli', key]), 'getobject', `cli::${key} does not exist`);
    });
});

describe('findobjects', () => {
    test('default: one 2-space JSON document per record; -H: one line per record', async () => {
        await setup();
        const r = await cli('findobjects', ['-a', 'n', 'clif', '(n>=1)']);
        ok(r);
        const docs = prettyDocs(r.stdout);
        assert.deepEqual(docs.map((d) => d.key), ['f1', 'f2', 'f3', 'f4', 'f5']);
        assert.equal(r.stdout, docs.map((d) => JSON.stringify(d, null, 2) + '\n').join(''));
        assert.ok(docs.every((d) => d._count === 5));
        const h = await cli('findobjects', ['-H', '-a', 'n', 'clif', '(n>=1)']);
        ok(h);
        const lines = h.stdout.trimEnd().split('\n');
        assert.deepEqual(lines.map((l) => JSON.parse(l)), docs);
    });

    test('-d (descending), -l (limit), -o (offset), -n (no _count)', async () => {
        await setup();
        const d = await cli('findobjects', ['-H', '-d', 'n', 'clif', '(n>=1)']);
        ok(d);
        assert.deepEqual(d.stdout.trimEnd().split('\n').map((l) => JSON.parse(l).key),
            ['f5', 'f4', 'f3', 'f2', 'f1']);
        const lo = await cli('findobjects', ['-H', '-a', 'n', '-l', '2', '-o', '1', 'clif',
            '(n>=1)']);
        ok(lo);
        const recs = lo.stdout.trimEnd().split('\n').map((l) => JSON.parse(l));
        assert.deepEqual(recs.map((x) => x.key), ['f2', 'f3']);
        assert.ok(recs.every((x) => x._count === 5));
        const n = await cli('findobjects', ['-H', '-n', '-a', 'n', '-l', '1', 'clif', '(s=odd)']);
        ok(n);
        const one = JSON.parse(n.stdout);
        assert.equal(one.key, 'f1');
        assert.equal('_count' in one, false);
        /* -l 0 is numeric 0: the default limit */
        const zero = await cli('findobjects', ['-H', '-l', '0', 'clif', '(n>=1)']);
        ok(zero);
        assert.equal(zero.stdout.trimEnd().split('\n').length, 5);
        const none = await cli('findobjects', ['-H', 'clif', '(n>=100)']);
        ok(none);
        assert.equal(none.stdout, '');
    });

    test('-s prints the SQL record instead of objects', async () => {
        await setup();
        const r = await cli('findobjects', ['-H', '-s', 'clif', '(n>=3)']);
        ok(r);
        const rec = JSON.parse(r.stdout);
        assert.deepEqual(Object.keys(rec).sort(), ['args', 'count', 'query']);
        assert.deepEqual(rec.args, [3]);
        assert.match(rec.query, /WHERE {2}\( \$1 <= n AND n IS NOT NULL \) {2}LIMIT 1000$/);
        const rn = await cli('findobjects', ['-H', '-s', '-n', 'clif', '(n>=3)']);
        ok(rn);
        assert.deepEqual(Object.keys(JSON.parse(rn.stdout)).sort(), ['args', 'query']);
    });

    test('-i (requireIndexes): indexed filters work, unindexed fields fail', async () => {
        await setup();
        const r = await cli('findobjects', ['-H', '-i', '-a', 'n', 'clif', '(&(n>=4)(_key=f*))']);
        ok(r);
        assert.deepEqual(r.stdout.trimEnd().split('\n').map((l) => JSON.parse(l).key),
            ['f4', 'f5']);
        failed(await cli('findobjects', ['-i', 'clif', '(&(n>=1)(zz=1))']), 'findobjects',
            'clif does not have indexes that support (&(n>=1)(zz=1)). ' +
            "Reindexing fields: []. Unindexed fields: [ 'zz' ]");
    });

    test('errors: bad filter, missing bucket, bad -l/-o, missing arguments', async () => {
        await setup();
        failed(await cli('findobjects', ['clif', '(n>=1']), 'findobjects',
            '(n>=1 is an invalid filter');
        failed(await cli('findobjects', ['clif', '(zz=1)']), 'findobjects',
            '(zz=1) is an invalid filter');
        failed(await cli('findobjects', ['nosuch', '(n>=1)']), 'findobjects',
            'nosuch does not exist');
        failed(await cli('findobjects', ['-a', 'nocol', 'clif', '(n>=1)']), 'findobjects',
            'column "nocol" does not exist');
        usage(await cli('findobjects', ['-l', 'abc', 'clif', '(n>=1)']), 'findobjects',
            'unsupported value for -l: "abc"');
        usage(await cli('findobjects', ['-o', '-1', 'clif', '(n>=1)']), 'findobjects',
            'unsupported value for -o / --offset: "-1"');
        usage(await cli('findobjects', ['clif']), 'findobjects',
            'missing required arguments: "filter"');
    });
});

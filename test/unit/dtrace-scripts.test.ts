/*
 * The D scripts (dtrace/*.d) and their bpftrace twins (dtrace/linux/*.bt)
 * against PROBE_TABLE: every probe they name exists, every argN they read
 * exists for every probe of the clause, and each script has a twin that
 * enables the same probes.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { PROBE_TABLE } from '../../src/probes/table';
import { packageRoot } from '../../src/probes/package-root';
import { parseScript, readScripts, resolveProbe, type ScriptFile } from '../../tools/probe-scripts';

const root = packageRoot();
const scripts = readScripts(root);

function probesOf(s: ScriptFile): Set<string> {
    const out = new Set<string>();
    for (const c of s.clauses) {
        for (const ref of c.probes) {
            for (const def of resolveProbe(ref)) {
                out.add(`${def.provider}:${def.name}`);
            }
        }
    }
    return out;
}

test('there are D scripts and bpftrace twins', () => {
    const d = scripts.filter((s) => s.kind === 'd').map((s) => path.basename(s.file, '.d'));
    const bt = scripts.filter((s) => s.kind === 'bt').map((s) => path.basename(s.file, '.bt'));
    for (const name of ['moraystat', 'moray-queries', 'findslow', 'get_latency', 'put_latency',
        'del_latency', 'find_latency', 'rpc-latency']) {
        assert.ok(d.includes(name), `dtrace/${name}.d missing`);
    }
    assert.deepEqual(bt.sort(), d.sort(), 'every .d has a dtrace/linux/<name>.bt twin and vice versa');
});

for (const s of scripts) {
    test(`${s.file}: probes exist and arguments are in range`, () => {
        let seen = 0;
        for (const c of s.clauses) {
            for (const spec of c.specs) {
                if (s.kind === 'bt' && spec.startsWith('usdt:')) {
                    assert.ok(c.probes.some((p) => p.spec === spec),
                        `${s.file}:${c.line}: ${spec} is not provider moray/fastserver`);
                }
                if (s.kind === 'd' && /^(moray|fastserver)/.test(spec)) {
                    assert.ok(c.probes.some((p) => p.spec === spec),
                        `${s.file}:${c.line}: ${spec} is not a provider:module:function:name spec`);
                }
            }
            for (const ref of c.probes) {
                assert.ok(['moray', 'fastserver'].includes(ref.provider),
                    `${s.file}:${c.line}: unknown provider ${ref.provider}`);
                if (s.kind === 'bt') {
                    assert.ok(!ref.spec.split(':')[3]!.includes('-'),
                        `${s.file}:${c.line}: ${ref.spec}: bpftrace spells dashes as __`);
                }
                const defs = resolveProbe(ref);
                assert.ok(defs.length > 0, `${s.file}:${c.line}: ${ref.spec} is not in PROBE_TABLE`);
                for (const def of defs) {
                    seen++;
                    assert.ok(c.maxArg < def.args.length,
                        `${s.file}:${c.line}: reads arg${c.maxArg} but ${def.provider}:${def.name} ` +
                        `has ${def.args.length} arguments`);
                }
            }
        }
        assert.ok(seen > 0, `${s.file} enables no moray/fastserver probe`);
    });
}

for (const s of scripts.filter((x) => x.kind === 'd')) {
    const name = path.basename(s.file, '.d');
    const twin = scripts.find((x) => x.kind === 'bt' && path.basename(x.file, '.bt') === name);
    test(`${s.file} and its twin enable the same probes`, () => {
        assert.ok(twin !== undefined);
        assert.deepEqual([...probesOf(twin)].sort(), [...probesOf(s)].sort());
    });
}

test('the scanner: clauses, predicates with division, multi-probe clauses, globs', () => {
    const d = parseScript([
        '#!/usr/sbin/dtrace -s',
        '#pragma D option quiet',
        'inline int X = 1;',
        'BEGIN { printf("{ not a clause } /* nor a comment */"); }',
        '/* moray*:::ping-start { arg9 } */',
        'moray*:::ping-start,',
        'moray$target:::listbuckets-start',
        '/(timestamp - t[arg0]) / 1000 > 5/',
        '{ @[copyinstr(arg1)] = count(); }',
        'fastserver*:::rpc-*',
        '{ x = args[2]; }',
    ].join('\n'), 'd');
    assert.equal(d.length, 3);
    assert.deepEqual(d[0]!.specs, ['BEGIN']);
    assert.equal(d[0]!.probes.length, 0);
    assert.deepEqual(d[1]!.probes.map((p) => p.name), ['ping-start', 'listbuckets-start']);
    assert.equal(d[1]!.maxArg, 1);
    assert.equal(d[1]!.line, 6);
    assert.deepEqual(resolveProbe(d[2]!.probes[0]!).map((p) => p.name), ['rpc-start', 'rpc-done']);
    assert.equal(d[2]!.maxArg, 2);

    const bt = parseScript([
        'usdt:*:moray:getobject__start, usdt:/x/moray_usdt.node:moray:query__row',
        '/str($1) == "a/b"/ { @[arg2] = count(); }',
        'interval:s:1 { print(arg0); }',
    ].join('\n'), 'bt');
    assert.deepEqual(bt[0]!.probes.map((p) => p.name), ['getobject-start', 'query-row']);
    assert.equal(bt[0]!.maxArg, 2);
    assert.equal(bt[1]!.probes.length, 0);
});

test('an out-of-range argument and an unknown probe are caught', () => {
    const [c] = parseScript('moray*:::findobjects-done { x = arg2; }', 'd');
    const def = PROBE_TABLE.find((p) => p.name === 'findobjects-done')!;
    assert.equal(def.args.length, 2);
    assert.ok(c!.maxArg >= def.args.length);
    const [u] = parseScript('usdt:*:moray:no__such__probe { }', 'bt');
    assert.deepEqual(resolveProbe(u!.probes[0]!), []);
});

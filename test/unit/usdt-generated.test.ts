/*
 * native/usdt/src/probes.gen.c and docs/probes.md are generated from
 * PROBE_TABLE and committed; they must match what the generators write now.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PROBE_TABLE } from '../../src/probes/table';
import { packageRoot } from '../../src/probes/package-root';
import { generateUsdtSource, GENERATED_PATH, MAX_USDT_ARGS, sdtName } from '../../tools/gen-usdt';

const root = packageRoot();

test('probes.gen.c is up to date (node --import tsx tools/gen-usdt.ts)', () => {
    const committed = fs.readFileSync(path.join(root, GENERATED_PATH), 'utf8');
    assert.ok(committed === generateUsdtSource(),
        `${GENERATED_PATH} is stale: run node --import tsx tools/gen-usdt.ts`);
});

test('one semaphore and one probe site per probe, named as tracers expect', () => {
    const src = generateUsdtSource();
    for (const def of PROBE_TABLE) {
        const n = sdtName(def.name);
        assert.ok(src.includes(`MUSDT_DEFINE_SEMAPHORE(${def.provider}, ${n});`), def.name);
        assert.ok(src.includes(`MUSDT_PROBE(${def.provider}, ${n},`) ||
            src.includes(`MUSDT_PROBE0(${def.provider}, ${n});`), def.name);
    }
    assert.equal(sdtName('query-conn-error'), 'query__conn__error');
    assert.equal((src.match(/MUSDT_DEFINE_SEMAPHORE\(/g) ?? []).length, PROBE_TABLE.length);
});

test('the table fits the backend: at most 6 arguments, unique SDT names', () => {
    for (const def of PROBE_TABLE) {
        assert.ok(def.args.length <= MAX_USDT_ARGS, `${def.name} has ${def.args.length} args`);
    }
    const tooMany = [{ provider: 'moray' as const, name: 'x', doc: '',
        args: Array.from({ length: 7 }, (_, i) => [`a${i}`, 'int'] as const) }];
    assert.throws(() => generateUsdtSource(tooMany), /7 arguments/);
    assert.throws(() => generateUsdtSource([
        { provider: 'moray', name: 'a-b', args: [], doc: '' },
        { provider: 'moray', name: 'a-b', args: [], doc: '' },
    ]), /duplicate/);
    assert.throws(() => generateUsdtSource([{ provider: 'moray', name: 'bad name', args: [], doc: '' }]),
        /bad probe name/);
});

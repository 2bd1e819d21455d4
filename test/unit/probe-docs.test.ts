/* docs/probes.md is generated from PROBE_TABLE and must be up to date. */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PROBE_TABLE } from '../../src/probes/table';
import { packageRoot } from '../../src/probes/package-root';
import { DOC_PATH, generateProbeDocs } from '../../tools/gen-probe-docs';

const root = packageRoot();

test('docs/probes.md is up to date (node --import tsx tools/gen-probe-docs.ts)', () => {
    const committed = fs.readFileSync(path.join(root, DOC_PATH), 'utf8');
    assert.ok(committed === generateProbeDocs(root),
        `${DOC_PATH} is stale: run node --import tsx tools/gen-probe-docs.ts`);
});

test('docs/probes.md lists every probe with its arguments', () => {
    const doc = generateProbeDocs(root);
    for (const def of PROBE_TABLE) {
        const row = doc.split('\n').find((l) => l.startsWith(`| \`${def.name}\``) &&
            l.includes(def.args.map(([n, t], i) => `arg${i} ${n} \`${t}\``).join('<br>')));
        assert.ok(row, `${def.provider}:${def.name}`);
    }
});

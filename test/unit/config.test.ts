import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs, UsageError } from '../../src/config';
import { ConfigError, validateConfig } from '../../src/config/validate';
import { renderConfigDocs } from '../../tools/gen-config-docs';
import { ROOT } from '../helpers/harness';

test('argv: the reference getopt surface', () => {
    assert.deepEqual(parseArgs(['-f', 'x.json', '-p', '2021', '-k3021', '-vv']),
        { file: 'x.json', port: 2021, monitorPort: 3021, verbose: 2, coverage: false });
    assert.throws(() => parseArgs(['-x']), (e: Error) => e instanceof UsageError &&
        e.message === 'Invalid option: -x');
    assert.throws(() => parseArgs(['-f']), /Expected argument for -f/);
    assert.throws(() => parseArgs(['extra']), /Positional arguments found when none were expected: extra/);
    assert.throws(() => parseArgs(['-p', 'abc']), /Invalid port "abc"/);
    assert.throws(() => parseArgs(['-p', '70000']), /out of range/);
});

test('config: every problem at once, unknown keys by name, defaults, frozen', () => {
    try {
        validateConfig({ port: -1, nope: 1, standalone: { pg: { foo: 2 } }, bunyan: { level: 3 } },
            { fromFile: true });
        assert.fail('should throw');
    } catch (e) {
        assert.ok(e instanceof ConfigError);
        const p = (e as ConfigError).problems.join('\n');
        for (const frag of ['nope: unknown key', 'port: must be >= 0', 'standalone.url: required',
            'standalone.pg.foo: unknown key', 'bunyan.level: must be a non-empty string',
            'server_uuid: required', 'datacenter: required']) {
            assert.ok(p.includes(frag), `missing "${frag}" in:\n${p}`);
        }
    }
    const c = validateConfig({ server_uuid: 's', datacenter: 'd',
        standalone: { url: 'postgres://x@h/db', pg: { maxQueueLength: false } } }, { fromFile: true });
    assert.equal(c['port'], 2020);
    assert.equal(c['monitorPort'], 3020);
    assert.equal((c['standalone'] as any).pg.maxQueueLength, 0);
    assert.equal((c['standalone'] as any).pg.maxConnections, 5);
    assert.equal((c['limits'] as any).maxFrameBytes, 64 * 1024 * 1024);
    assert.equal((c['features'] as any).sql, true);
    assert.ok(Object.isFrozen(c) && Object.isFrozen(c['standalone']));
});

test('docs/config.md is generated from the schema and up to date', () => {
    const committed = fs.readFileSync(path.join(ROOT, 'docs', 'config.md'), 'utf8');
    assert.equal(committed, renderConfigDocs(), 'run: node --import tsx tools/gen-config-docs.ts > docs/config.md');
});

/*
 * The USDT backend and backend selection, without a tracer: against a
 * stand-in addon (records fires, semaphores in a plain buffer), and, when
 * native/usdt is built, against the real addon with its semaphores written
 * from JS the way a tracer writes them from outside.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { packageRoot } from '../../src/probes/package-root';
import { PROBE_TABLE } from '../../src/probes/table';
import { installBackend, noopBackend, probe, backendName, type ProbeBackend } from '../../src/probes/index';
import {
    convertArgs, createUsdtBackend, loadUsdtAddon, typeLetters, usdtAddonPath, UsdtLoadError,
    type UsdtAddon,
} from '../../src/probes/usdt-backend';
import { chooseBackend, probeBackendInfo, selectBackend } from '../../src/probes/select';

function fakeAddon(opts: { drop?: string; withBuffer?: boolean } = {}):
UsdtAddon & { fires: unknown[][]; sems: Uint16Array; calls: number } {
    const defs = PROBE_TABLE.filter((d) => d.name !== opts.drop);
    const buf = new ArrayBuffer(defs.length * 2);
    const sems = new Uint16Array(buf);
    const fires: unknown[][] = [];
    const addon = {
        abi: 1,
        probes: defs.map((d, i) => ({ provider: d.provider, name: d.name, types: typeLetters(d),
            semaphore: defs.length - 1 - i })),
        semaphores: opts.withBuffer === false ? undefined : buf,
        fires,
        sems,
        calls: 0,
        enabled(index: number): boolean {
            addon.calls++;
            return sems[defs.length - 1 - index] !== 0;
        },
        fire(index: number, ...args: (number | string)[]): void {
            fires.push([defs[index]!.name, ...args]);
        },
    };
    return addon;
}

test('convertArgs mirrors dtrace-provider conversions', () => {
    const def = PROBE_TABLE.find((d) => d.name === 'query-row')!;
    assert.deepEqual(convertArgs(def, ['r', 'SELECT', { a: 1 }]), ['r', 'SELECT', '{"a":1}']);
    assert.deepEqual(convertArgs(def, [undefined, {}, undefined]),
        ['undefined', '[object Object]', 'undefined']);
    const circular: Record<string, unknown> = {};
    circular['self'] = circular;
    assert.equal(convertArgs(def, ['r', 's', circular])[2], '{ "error": "stringify failed" }');
    const ping = PROBE_TABLE.find((d) => d.name === 'ping-start')!;
    assert.deepEqual(convertArgs(ping, [5n, 'r', true]), [5, 'r', 1]);
    assert.deepEqual(convertArgs(ping, [undefined, null, 'x']), [0, 'null', 0]);
    assert.deepEqual(convertArgs(ping, ['12', 7]), [12, '7', 0], 'missing args become 0/"undefined"');
});

test('usdt backend: enabled() reads the semaphore; fire converts and calls the addon', (t) => {
    t.after(() => installBackend(noopBackend));
    const addon = fakeAddon();
    const backend = createUsdtBackend(addon);
    installBackend(backend);
    assert.equal(backendName(), 'usdt');
    assert.deepEqual(backend.missing, []);

    const h = probe('moray', 'putobject-start');
    let built = 0;
    h.fire(() => {
        built++;
        return [1, 'r', 'b', 'k', undefined];
    });
    assert.equal(built, 0);
    assert.equal(addon.calls, 0, 'no native call for enabled()');

    const idx = addon.probes.findIndex((p) => p.name === 'putobject-start');
    addon.sems[addon.probes[idx]!.semaphore] = 1;
    h.fire(() => {
        built++;
        return [1, 'r', 'b', 'k', undefined];
    });
    assert.equal(built, 1);
    assert.deepEqual(addon.fires, [['putobject-start', 1, 'r', 'b', 'k', 'undefined']]);
    assert.equal(addon.calls, 0);
});

test('usdt backend without an external buffer falls back to addon.enabled()', (t) => {
    t.after(() => installBackend(noopBackend));
    const addon = fakeAddon({ withBuffer: false });
    installBackend(createUsdtBackend(addon));
    assert.equal(probe('moray', 'log').enabled(), false);
    assert.ok(addon.calls > 0);
});

test('a probe the addon lacks (stale build) is a no-op and is reported', (t) => {
    t.after(() => installBackend(noopBackend));
    const addon = fakeAddon({ drop: 'topology-change' });
    const backend = createUsdtBackend(addon);
    installBackend(backend);
    assert.deepEqual(backend.missing, ['moray:topology-change']);
    addon.sems.fill(1);
    probe('moray', 'topology-change').fire(() => ['a', 'b']);
    probe('moray', 'bucket-cache-hit').fire(() => ['b']);
    assert.deepEqual(addon.fires, [['bucket-cache-hit', 'b']]);
});

test('loadUsdtAddon: missing file is a UsdtLoadError', () => {
    assert.throws(() => loadUsdtAddon('/nonexistent/moray_usdt.node'), UsdtLoadError);
    assert.match(usdtAddonPath({ MORAY_USDT_ADDON: '/x/y.node' }), /^\/x\/y\.node$/);
    assert.match(usdtAddonPath({}), /native\/usdt\/build\/Release\/moray_usdt\.node$/);
});

const fakeBackend = (name: string): ProbeBackend => ({ name, create: () => ({
    enabled: () => false, fire: () => undefined }) });
const fail = (): ProbeBackend => {
    throw new Error('not built');
};

test('chooseBackend: platform defaults, MORAY_PROBES, fallbacks', () => {
    const loaders = { loadUsdt: () => fakeBackend('usdt'), loadDTrace: () => fakeBackend('dtrace') };
    const pick = (platform: NodeJS.Platform, env: NodeJS.ProcessEnv, l = loaders): string =>
        chooseBackend({ platform, env, ...l }).backend.name;
    assert.equal(pick('linux', {}), 'usdt');
    assert.equal(pick('sunos', {}), 'dtrace');
    assert.equal(pick('darwin', {}), 'dtrace');
    assert.equal(pick('freebsd', {}), 'dtrace');
    assert.equal(pick('win32', {}), 'noop');
    assert.equal(pick('linux', { MORAY_PROBES: 'off' }), 'noop');
    assert.equal(pick('sunos', { MORAY_PROBES: 'noop' }), 'noop');
    assert.equal(pick('linux', { MORAY_PROBES: 'dtrace' }), 'dtrace');
    assert.equal(pick('linux', { MORAY_PROBES: 'auto' }), 'usdt');
    assert.equal(pick('linux', {}, { loadUsdt: fail, loadDTrace: loaders.loadDTrace }), 'noop');
    assert.equal(pick('sunos', {}, { loadUsdt: loaders.loadUsdt, loadDTrace: fail }), 'noop');

    const c = chooseBackend({ platform: 'linux', env: {}, loadUsdt: fail });
    assert.match(c.reason, /usdt unavailable: not built/);
    assert.equal(c.forcedFailed, false);
    const f = chooseBackend({ platform: 'linux', env: { MORAY_PROBES: 'usdt' }, loadUsdt: fail });
    assert.equal(f.backend.name, 'noop');
    assert.equal(f.forcedFailed, true);
    const u = chooseBackend({ platform: 'linux', env: { MORAY_PROBES: 'bogus' }, ...loaders });
    assert.equal(u.backend.name, 'usdt');
    assert.equal(u.failures[0]?.backend, 'MORAY_PROBES');
});

test('selectBackend installs, logs skipped backends, returns the name', (t) => {
    t.after(() => installBackend(noopBackend));
    const records: [string, object, string][] = [];
    const log = {
        debug: (o: object, m: string) => records.push(['debug', o, m]),
        warn: (o: object, m: string) => records.push(['warn', o, m]),
    };
    assert.equal(selectBackend(log, { platform: 'linux', env: {}, loadUsdt: fail }), 'noop');
    assert.equal(backendName(), 'noop');
    assert.equal(records.length, 1);
    assert.equal(records[0]![0], 'debug');
    assert.equal(probeBackendInfo().probeBackend, 'noop');

    records.length = 0;
    assert.equal(selectBackend(log, { platform: 'linux', env: { MORAY_PROBES: 'usdt' }, loadUsdt: fail }),
        'noop');
    assert.equal(records[0]![0], 'warn');

    records.length = 0;
    assert.equal(selectBackend(log, { platform: 'linux', env: {},
        loadUsdt: () => createUsdtBackend(fakeAddon({ drop: 'log' })) }), 'usdt');
    assert.equal(backendName(), 'usdt');
    assert.deepEqual(probeBackendInfo().probesMissing, ['moray:log']);
    assert.equal(records[0]![0], 'warn');
});

test('the real addon: table matches, semaphores are shared memory, fire() accepts every probe',
    { skip: process.platform === 'linux' ? false : 'the USDT addon is Linux-only' }, (t) => {
        t.after(() => installBackend(noopBackend));
        /* npm install builds it; build it here if that was skipped */
        const r = spawnSync(process.execPath, [path.join(packageRoot(), 'native/usdt/build.js'),
            '--strict', '--if-missing'], { encoding: 'utf8' });
        assert.equal(r.status, 0, `native/usdt build failed:\n${r.stderr}`);
        assert.ok(fs.existsSync(usdtAddonPath({})));
        const addon = loadUsdtAddon(usdtAddonPath({}));
        assert.equal(addon.probes.length, PROBE_TABLE.length);
        PROBE_TABLE.forEach((def) => {
            const p = addon.probes.find((x) => x.provider === def.provider && x.name === def.name);
            assert.ok(p, `${def.provider}:${def.name} in the addon (rebuild native/usdt?)`);
            assert.equal(p.types, typeLetters(def));
        });
        assert.ok(addon.semaphores instanceof ArrayBuffer);
        const sems = new Uint16Array(addon.semaphores);
        assert.equal(new Set(addon.probes.map((p) => p.semaphore)).size, PROBE_TABLE.length,
            'one semaphore per probe');

        const backend = createUsdtBackend(addon);
        installBackend(backend);
        assert.deepEqual(backend.missing, []);
        const h = probe('moray', 'request-done');
        const native = addon.probes.findIndex((p) => p.name === 'request-done');
        const slot = addon.probes[native]!.semaphore;
        assert.equal(h.enabled(), false);
        assert.equal(addon.enabled(native), false);
        sems[slot] = 1;           /* what bpftrace -p does through /proc/PID/mem */
        try {
            assert.equal(addon.enabled(native), true, 'C sees the write: same memory');
            assert.equal(h.enabled(), true);
            let ran = 0;
            h.fire(() => {
                ran++;
                return [1, 2, 'getObject', 'r', '', 1234];
            });
            assert.equal(ran, 1);
        } finally {
            sems[slot] = 0;
        }
        /* every probe site, with odd values: must neither throw nor crash */
        addon.probes.forEach((p, i) => {
            addon.fire(i, ...Array.from(p.types, (c) => (c === 'i' ? -1 : 'x'.repeat(300))));
            addon.fire(i);
        });
        assert.throws(() => addon.fire(addon.probes.length), RangeError);
        assert.throws(() => addon.enabled(-1), RangeError);
    });

test('selectBackend falls back to noop when the backend throws while installing', (t) => {
    t.after(() => installBackend(noopBackend));
    const warnings: object[] = [];
    const log = { debug: () => undefined, warn: (o: object) => warnings.push(o) };
    const broken: ProbeBackend = { name: 'dtrace', create: () => {
        throw new Error('usdt_create_provider failed');
    } };
    assert.equal(selectBackend(log, { platform: 'sunos', env: {}, loadDTrace: () => broken }), 'noop');
    assert.equal(backendName(), 'noop');
    assert.equal(probe('moray', 'ping-start').enabled(), false);
    assert.match(probeBackendInfo().probeBackendReason, /failed to install/);
    assert.ok(warnings.length >= 1);
});

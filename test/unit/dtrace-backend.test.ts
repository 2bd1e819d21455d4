/*
 * The dtrace-provider backend against a stand-in module that behaves like
 * dtrace-provider 0.8 (fire(cb) runs cb only while the probe is enabled,
 * fires only if cb returns an array) and records providers, probe argument
 * types, enable() calls and every fire.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PROBE_TABLE } from '../../src/probes/table';
import { allProbes, installBackend, noopBackend, probe } from '../../src/probes/index';
import {
    createDTraceBackend, loadDTraceProvider, DTraceLoadError,
    type DTraceProviderModule, type DTraceProbeLike, type DTraceProviderLike,
} from '../../src/probes/dtrace-backend';

class StandInProbe implements DTraceProbeLike {
    enabled = false;
    callbacks = 0;
    readonly fires: unknown[][] = [];
    constructor(readonly name: string, readonly types: string[]) {}
    fire(cb: () => unknown[] | undefined): unknown {
        if (!this.enabled) {
            return undefined;
        }
        this.callbacks++;
        const args = cb();
        if (!Array.isArray(args)) {
            return undefined;
        }
        this.fires.push(args.slice(0, this.types.length));
        return true;
    }
}

class StandInProvider implements DTraceProviderLike {
    readonly probes = new Map<string, StandInProbe>();
    enables = 0;
    constructor(readonly name: string) {}
    addProbe(name: string, ...types: string[]): StandInProbe {
        assert.equal(this.enables, 0, 'probes are added before enable()');
        const p = new StandInProbe(name, types);
        this.probes.set(name, p);
        return p;
    }
    enable(): void {
        this.enables++;
    }
}

function standIn(): DTraceProviderModule & { providers: StandInProvider[] } {
    const providers: StandInProvider[] = [];
    return {
        providers,
        createDTraceProvider(name: string): StandInProvider {
            const p = new StandInProvider(name);
            providers.push(p);
            return p;
        },
    };
}

test('one provider per table provider, one probe per entry, types as in the table', (t) => {
    t.after(() => installBackend(noopBackend));
    const mod = standIn();
    installBackend(createDTraceBackend(mod));
    assert.deepEqual(mod.providers.map((p) => p.name).sort(), ['fastserver', 'moray']);
    for (const p of mod.providers) {
        assert.equal(p.enables, 1, `${p.name} enabled once, after its probes`);
    }
    for (const def of PROBE_TABLE) {
        const prov = mod.providers.find((p) => p.name === def.provider)!;
        const sp = prov.probes.get(def.name);
        assert.ok(sp, `${def.provider}:${def.name} added`);
        assert.deepEqual(sp.types, def.args.map(([, type]) => type));
    }
    const total = mod.providers.reduce((n, p) => n + p.probes.size, 0);
    assert.equal(total, PROBE_TABLE.length);
    assert.ok(mod.providers.find((p) => p.name === 'moray')!.probes.get('query-row')!
        .types.includes('json'), "'json' is passed through as dtrace-provider's json type");
});

test('arguments are built only while a probe is enabled, and reach dtrace-provider', (t) => {
    t.after(() => installBackend(noopBackend));
    const mod = standIn();
    installBackend(createDTraceBackend(mod));
    const moray = mod.providers.find((p) => p.name === 'moray')!;
    const sp = moray.probes.get('getobject-start')!;
    const handle = probe('moray', 'getobject-start');

    let built = 0;
    const build = (): unknown[] => {
        built++;
        return [7, 'req-1', 'bucket', 'key'];
    };
    handle.fire(build);
    assert.equal(built, 0, 'disabled: closure not run');
    assert.equal(handle.enabled(), false);
    assert.deepEqual(sp.fires, []);

    sp.enabled = true;
    assert.equal(handle.enabled(), true);
    assert.deepEqual(sp.fires, [], 'enabled() fires nothing');
    handle.fire(build);
    assert.equal(built, 1);
    assert.deepEqual(sp.fires, [[7, 'req-1', 'bucket', 'key']]);

    sp.enabled = false;
    handle.fire(build);
    assert.equal(built, 1);
    assert.equal(sp.fires.length, 1);
});

test('values are handed over unconverted (dtrace-provider converts)', (t) => {
    t.after(() => installBackend(noopBackend));
    const mod = standIn();
    installBackend(createDTraceBackend(mod));
    const sp = mod.providers.find((p) => p.name === 'moray')!.probes.get('query-done')!;
    sp.enabled = true;
    const result = { rowCount: 3 };
    probe('moray', 'query-done').fire(() => ['rid', 'SELECT 1', result]);
    assert.equal(sp.fires[0]![2], result);
});

test('every probe fires through its own dtrace-provider probe', (t) => {
    t.after(() => installBackend(noopBackend));
    const mod = standIn();
    installBackend(createDTraceBackend(mod));
    for (const p of mod.providers) {
        for (const sp of p.probes.values()) {
            sp.enabled = true;
        }
    }
    for (const h of allProbes()) {
        h.fire(() => h.def.args.map(([n]) => `${h.def.name}/${n}`));
    }
    for (const def of PROBE_TABLE) {
        const sp = mod.providers.find((p) => p.name === def.provider)!.probes.get(def.name)!;
        assert.deepEqual(sp.fires, [def.args.map(([n]) => `${def.name}/${n}`)]);
    }
});

test('loadDTraceProvider: missing module, stub and real module', () => {
    assert.throws(() => loadDTraceProvider(() => {
        throw new Error('Cannot find module');
    }), DTraceLoadError);
    function DTraceProviderStub(): void { /* as dtrace-provider's JS stub */ }
    assert.throws(() => loadDTraceProvider(() => ({
        DTraceProvider: DTraceProviderStub,
        createDTraceProvider: () => ({}),
    })), /stub/);
    assert.throws(() => loadDTraceProvider(() => ({})), DTraceLoadError);
    const mod = standIn();
    assert.equal(loadDTraceProvider(() => mod), mod);
});

test('the installed dtrace-provider on Linux is the stub and is rejected', () => {
    /* node_modules/dtrace-provider comes with bunyan; its build is skipped */
    let present = true;
    try {
        require.resolve('dtrace-provider');
    } catch {
        present = false;
    }
    if (!present || process.platform !== 'linux') {
        return;
    }
    assert.throws(() => loadDTraceProvider(), DTraceLoadError);
});

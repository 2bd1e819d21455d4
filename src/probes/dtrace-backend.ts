/*
 * The dtrace-provider backend (illumos, macOS, FreeBSD): the reference
 * Moray's own mechanism, so operators' D scripts see exactly the providers,
 * probe names and argument conversions they always did.
 *
 *   PROBE_TABLE ─► createDTraceProvider('moray'), createDTraceProvider('fastserver')
 *                    └─ addProbe(name, ...types)   one per table entry
 *                  finish(): enable() each provider (probes become visible
 *                            to `dtrace -l -n 'moray*:::'` as moray<pid>)
 *
 * dtrace-provider has no cheap "is this probe enabled?" call: its probe
 * object only offers fire(cb), which runs cb only when the probe is enabled
 * and fires only if cb returns an array.  enabled() therefore fires with a
 * preallocated callback that records that it ran and returns undefined, so
 * nothing is fired; the facade then builds the arguments and fire() passes
 * them in a closure.  One native is-enabled check per untraced probe, and
 * arguments are still built only for a listening tracer.
 *
 * Arguments are handed over unconverted: dtrace-provider itself turns ints
 * into int64, strings via ToString (undefined → "undefined") and 'json'
 * values via JSON.stringify, as in the reference server.
 *
 * The module is a parameter (not a static import) because dtrace-provider
 * is an optional native dependency: select.ts requires it dynamically, and
 * the unit tests pass a stand-in that records providers, types and fires.
 * On Linux its JavaScript falls back to a stub whose fire() never calls its
 * callback; loadDTraceProvider() rejects that stub so selection can move on.
 */

import type { ProbeBackend, ProbeImpl } from './index';
import type { ProbeDef } from './table';

export interface DTraceProbeLike {
    fire(cb: () => unknown[] | undefined): unknown;
}

export interface DTraceProviderLike {
    addProbe(name: string, ...types: string[]): DTraceProbeLike;
    enable(): void;
}

export interface DTraceProviderModule {
    createDTraceProvider(name: string, module?: string): DTraceProviderLike;
}

export class DTraceLoadError extends Error {
    constructor(message: string, options?: { cause?: unknown }) {
        super(message, options);
        this.name = 'DTraceLoadError';
    }
}

/*
 * require('dtrace-provider') and make sure the native binding was built
 * (the package silently returns a stub otherwise).  Throws DTraceLoadError.
 */
export function loadDTraceProvider(
    req: (id: string) => unknown = require,
): DTraceProviderModule {
    let mod: unknown;
    try {
        mod = req('dtrace-provider');
    } catch (err) {
        throw new DTraceLoadError(`dtrace-provider not loadable: ${(err as Error).message}`,
            { cause: err });
    }
    const m = mod as Partial<DTraceProviderModule> & { DTraceProvider?: { name?: string } };
    if (typeof m.createDTraceProvider !== 'function') {
        throw new DTraceLoadError('dtrace-provider has no createDTraceProvider()');
    }
    if (m.DTraceProvider?.name === 'DTraceProviderStub') {
        throw new DTraceLoadError('dtrace-provider native binding not built (stub)');
    }
    return m as DTraceProviderModule;
}

export interface DTraceBackend extends ProbeBackend {
    /* the providers, by name, after create() calls */
    readonly providers: ReadonlyMap<string, DTraceProviderLike>;
}

export function createDTraceBackend(mod: DTraceProviderModule): DTraceBackend {
    const providers = new Map<string, DTraceProviderLike>();

    function providerFor(name: string): DTraceProviderLike {
        let p = providers.get(name);
        if (p === undefined) {
            p = mod.createDTraceProvider(name);
            providers.set(name, p);
        }
        return p;
    }

    function create(def: ProbeDef): ProbeImpl {
        const probe = providerFor(def.provider).addProbe(def.name,
            ...def.args.map(([, t]) => t));
        let ran = false;
        const check = (): undefined => {
            ran = true;
            return undefined;
        };
        return {
            enabled(): boolean {
                ran = false;
                probe.fire(check);
                return ran;
            },
            fire(args: unknown[]): void {
                probe.fire(() => args);
            },
        };
    }

    function finish(): void {
        for (const p of providers.values()) {
            p.enable();
        }
    }

    return { name: 'dtrace', providers, create, finish };
}

/*
 * The probe facade.  Code that fires probes holds a ProbeHandle obtained
 * once at module load:
 *
 *     const PUT_START = probe('moray', 'putobject-start');
 *     ...
 *     PUT_START.fire(() => [msgid, reqId, bucket, key, value]);
 *
 * The closure that builds the arguments runs only when a tracer has enabled
 * the probe, so an untraced probe costs one call and one flag read (pino,
 * node-fast).  Handles exist before a backend is chosen: installBackend()
 * swaps the implementation under every handle at start-up.
 *
 *     PROBE_TABLE ──► handles (one per probe) ──► backend impl
 *                                                   ├─ noop   (default)
 *                                                   ├─ usdt   (Linux static SDT addon)
 *                                                   └─ dtrace (dtrace-provider)
 *
 * Asking for a probe that is not in the table is a programmer error and
 * throws at load time.
 */

import { PROBE_TABLE, type ProbeDef } from './table';

export interface ProbeImpl {
    /* true when a tracer is attached to this probe */
    enabled(): boolean;
    /* fire with already-built arguments (only called when enabled) */
    fire(args: unknown[]): void;
}

export interface ProbeBackend {
    readonly name: string;
    /* Create one implementation per probe; called once per table entry. */
    create(def: ProbeDef): ProbeImpl;
    /* Called after every probe was created (e.g. to enable a provider). */
    finish?(): void;
}

const NOOP_IMPL: ProbeImpl = {
    enabled: () => false,
    fire: () => undefined,
};

export class ProbeHandle {
    impl: ProbeImpl = NOOP_IMPL;
    fired = 0;

    constructor(readonly def: ProbeDef) {}

    enabled(): boolean {
        return this.impl.enabled();
    }

    fire(build: () => unknown[]): void {
        const impl = this.impl;
        if (impl.enabled()) {
            this.fired++;
            impl.fire(build());
        }
    }
}

const handles = new Map<string, ProbeHandle>();
for (const def of PROBE_TABLE) {
    handles.set(`${def.provider}:${def.name}`, new ProbeHandle(def));
}

let activeBackend = 'noop';

export function probe(provider: ProbeDef['provider'], name: string): ProbeHandle {
    const h = handles.get(`${provider}:${name}`);
    if (h === undefined) {
        throw new Error(`probe ${provider}:${name} is not in the probe table`);
    }
    return h;
}

export function allProbes(): ProbeHandle[] {
    return [...handles.values()];
}

export function installBackend(backend: ProbeBackend): void {
    for (const h of handles.values()) {
        h.impl = backend.create(h.def);
    }
    backend.finish?.();
    activeBackend = backend.name;
}

export function backendName(): string {
    return activeBackend;
}

export const noopBackend: ProbeBackend = {
    name: 'noop',
    create: () => NOOP_IMPL,
};

/*
 * The Linux USDT backend: static SDT probes in native/usdt (moray_usdt.node).
 *
 * Why static probes: Linux tracers find USDT probes through ELF notes in a
 * mapped file, so the sites must exist when the addon is built.  They are
 * generated from PROBE_TABLE (tools/gen-usdt.ts), one site and one
 * semaphore per probe; bpftrace, perf and bcc see them as
 *
 *     usdt:<package>/native/usdt/build/Release/moray_usdt.node:moray:getobject__start
 *
 * Cost model (what makes this safe to leave on):
 *
 *     handle.fire(build)
 *       └─ impl.enabled()  = sems[i] !== 0      one typed-array read over the
 *            │                                  addon's .probes section; a
 *            │                                  tracer attached with -p PID
 *            │                                  has incremented the semaphore
 *            └─ (traced only) build(), convert, addon.fire(i, a0..a5)
 *                                                → C converts → NOP site → uprobe
 *
 * Argument conversion mirrors dtrace-provider so that D scripts and their
 * bpftrace twins see the same text: 'int' → integer (undefined → 0), 'char *'
 * → String(v) (undefined → "undefined", objects → "[object Object]"),
 * 'json' → JSON.stringify(v) (undefined → "undefined").
 *
 * Loading: lazily, from the package root (works from src/ under tsx and from
 * dist/src/ after tsc), or from MORAY_USDT_ADDON.  A missing or stale addon
 * is an operational condition, not a crash: loadUsdtAddon() throws a
 * UsdtLoadError that select.ts turns into the no-op backend.  A probe the
 * addon does not know (stale build) or whose argument types differ gets the
 * no-op implementation and is listed in `backend.missing`.
 */

import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ProbeBackend, ProbeImpl } from './index';
import type { ProbeArgType, ProbeDef } from './table';
import { packageRoot } from './package-root';

export const USDT_ADDON_RELPATH = path.join('native', 'usdt', 'build', 'Release', 'moray_usdt.node');
const USDT_ABI = 1;

export interface UsdtAddonProbe {
    readonly provider: string;
    readonly name: string;
    /* one letter per argument: i (int), s (char *), j (json) */
    readonly types: string;
    /* index of this probe's semaphore in `new Uint16Array(semaphores)` */
    readonly semaphore: number;
}

export interface UsdtAddon {
    readonly abi: number;
    readonly probes: readonly UsdtAddonProbe[];
    readonly semaphores?: ArrayBuffer;
    enabled(index: number): boolean;
    fire(index: number, ...args: (number | string)[]): void;
}

export class UsdtLoadError extends Error {
    constructor(message: string, readonly path: string, options?: { cause?: unknown }) {
        super(message, options);
        this.name = 'UsdtLoadError';
    }
}

export function usdtAddonPath(env: NodeJS.ProcessEnv = process.env): string {
    const override = env['MORAY_USDT_ADDON'];
    if (override !== undefined && override !== '') {
        return path.resolve(override);
    }
    return path.join(packageRoot(), USDT_ADDON_RELPATH);
}

let loaded: { path: string; addon: UsdtAddon } | undefined;

/* Load (once) and sanity-check the addon.  Throws UsdtLoadError. */
export function loadUsdtAddon(file: string = usdtAddonPath()): UsdtAddon {
    if (loaded !== undefined && loaded.path === file) {
        return loaded.addon;
    }
    if (!fs.existsSync(file)) {
        throw new UsdtLoadError(`USDT addon not built (${file} missing)`, file);
    }
    let addon: UsdtAddon;
    try {
        addon = require(file) as UsdtAddon;
    } catch (err) {
        throw new UsdtLoadError(`USDT addon failed to load: ${(err as Error).message}`, file,
            { cause: err });
    }
    if (addon.abi !== USDT_ABI || !Array.isArray(addon.probes) ||
        typeof addon.fire !== 'function' || typeof addon.enabled !== 'function') {
        throw new UsdtLoadError(`USDT addon at ${file} has an unexpected shape ` +
            `(abi ${String(addon.abi)}, want ${USDT_ABI}): rebuild it`, file);
    }
    if (addon.probes.length === 0) {
        throw new UsdtLoadError(`USDT addon at ${file} has no probes (stub build)`, file);
    }
    loaded = { path: file, addon };
    return addon;
}

export function typeLetters(def: ProbeDef): string {
    return def.args.map(([, t]) => TYPE_LETTER[t]).join('');
}

const TYPE_LETTER: Record<ProbeArgType, string> = { 'int': 'i', 'char *': 's', 'json': 'j' };

export function toProbeInt(v: unknown): number {
    switch (typeof v) {
    case 'number': return v;
    case 'bigint': return Number(v);
    case 'boolean': return v ? 1 : 0;
    case 'undefined': return 0;
    default: {
        const n = Number(v);
        return Number.isNaN(n) ? 0 : n;
    }
    }
}

export function toProbeString(v: unknown): string {
    return typeof v === 'string' ? v : String(v);
}

export function toProbeJson(v: unknown): string {
    if (v === undefined) {
        return 'undefined';
    }
    try {
        return JSON.stringify(v) ?? 'undefined';
    } catch {
        return '{ "error": "stringify failed" }';
    }
}

type Converter = (v: unknown) => number | string;
const CONVERT: Record<ProbeArgType, Converter> = {
    'int': toProbeInt,
    'char *': toProbeString,
    'json': toProbeJson,
};

/* The arguments exactly as the addon receives them (exported for tests). */
export function convertArgs(def: ProbeDef, args: readonly unknown[]): (number | string)[] {
    return def.args.map(([, t], i) => CONVERT[t](args[i]));
}

export interface UsdtBackend extends ProbeBackend {
    readonly addon: UsdtAddon;
    /* probes of the table that the addon lacks (stale build) */
    readonly missing: string[];
}

const NOOP_IMPL: ProbeImpl = { enabled: () => false, fire: () => undefined };

export function createUsdtBackend(addon: UsdtAddon): UsdtBackend {
    const byKey = new Map<string, number>();
    addon.probes.forEach((p, i) => byKey.set(`${p.provider}:${p.name}`, i));
    /* The tracer writes these; we only ever read them. */
    const sems = addon.semaphores !== undefined ? new Uint16Array(addon.semaphores) : undefined;
    const missing: string[] = [];

    function create(def: ProbeDef): ProbeImpl {
        const key = `${def.provider}:${def.name}`;
        const index = byKey.get(key);
        const native = index === undefined ? undefined : addon.probes[index];
        if (index === undefined || native === undefined || native.types !== typeLetters(def)) {
            missing.push(key);
            return NOOP_IMPL;
        }
        const convert = def.args.map(([, t]) => CONVERT[t]);
        const fire = (args: unknown[]): void => {
            const a = convert.map((c, i) => c(args[i]));
            addon.fire(index, ...a);
        };
        if (sems !== undefined) {
            const slot = native.semaphore;
            return { enabled: () => sems[slot] !== 0, fire };
        }
        return { enabled: () => addon.enabled(index), fire };
    }

    return { name: 'usdt', addon, missing, create };
}

/*
 * Choose and install the probe backend, once, at start-up.
 *
 *   MORAY_PROBES=off|noop ─────────────────────────────► noop
 *   MORAY_PROBES=usdt|dtrace ──► that backend, or noop (warn) if unloadable
 *   unset / auto:
 *     sunos, darwin, freebsd ──► dtrace-provider (if its binding was built)
 *     linux ───────────────────► native/usdt addon (if it was built)
 *     anything else, or the load failed ──────────────► noop
 *
 * A backend that cannot load is an operational condition, never fatal: the
 * server runs without probes and says so.  selectBackend() logs the load
 * failures it skipped (debug, or warn when the operator asked for that
 * backend explicitly) and returns the active backend's name; the caller
 * logs the one info record that names it, e.g. with probeBackendInfo():
 *
 *     log.info(probeBackendInfo(), 'probe backend: %s', selectBackend(log));
 *
 * The loaders are injectable so every branch is testable on Linux.
 */

import { installBackend, noopBackend, type ProbeBackend } from './index';
import { createDTraceBackend, loadDTraceProvider } from './dtrace-backend';
import { createUsdtBackend, loadUsdtAddon, usdtAddonPath } from './usdt-backend';

export interface ProbeLogger {
    debug(obj: object, msg: string): void;
    warn(obj: object, msg: string): void;
}

export interface SelectOptions {
    readonly platform?: NodeJS.Platform;
    readonly env?: NodeJS.ProcessEnv;
    readonly loadUsdt?: () => ProbeBackend;
    readonly loadDTrace?: () => ProbeBackend;
}

export interface BackendChoice {
    readonly backend: ProbeBackend;
    /* why this one: "MORAY_PROBES=off", "linux default", "usdt failed: ..." */
    readonly reason: string;
    /* load failures on the way, in order */
    readonly failures: readonly { backend: string; error: string }[];
    /* the operator asked for a specific backend that failed */
    readonly forcedFailed: boolean;
}

export interface ProbeBackendInfo {
    probeBackend: string;
    probeBackendReason: string;
    /* file to give bpftrace (usdt backend only) */
    usdtAddon?: string;
    /* table probes the loaded backend lacks (stale usdt build) */
    probesMissing?: string[];
}

const DTRACE_PLATFORMS: ReadonlySet<string> = new Set(['sunos', 'darwin', 'freebsd']);

function defaultLoadUsdt(): ProbeBackend {
    return createUsdtBackend(loadUsdtAddon());
}

function defaultLoadDTrace(): ProbeBackend {
    return createDTraceBackend(loadDTraceProvider());
}

export function chooseBackend(opts: SelectOptions = {}): BackendChoice {
    const platform = opts.platform ?? process.platform;
    const env = opts.env ?? process.env;
    const loaders: Record<string, () => ProbeBackend> = {
        usdt: opts.loadUsdt ?? defaultLoadUsdt,
        dtrace: opts.loadDTrace ?? defaultLoadDTrace,
    };
    const failures: { backend: string; error: string }[] = [];

    function attempt(name: string): ProbeBackend | undefined {
        try {
            return loaders[name]!();
        } catch (err) {
            failures.push({ backend: name, error: (err as Error).message });
            return undefined;
        }
    }

    const mode = (env['MORAY_PROBES'] ?? '').trim().toLowerCase();
    if (mode === 'off' || mode === 'noop') {
        return { backend: noopBackend, reason: `MORAY_PROBES=${mode}`, failures, forcedFailed: false };
    }
    if (mode === 'usdt' || mode === 'dtrace') {
        const b = attempt(mode);
        return b !== undefined ?
            { backend: b, reason: `MORAY_PROBES=${mode}`, failures, forcedFailed: false } :
            { backend: noopBackend, reason: `MORAY_PROBES=${mode} but ${failures[0]?.error}`,
                failures, forcedFailed: true };
    }
    if (mode !== '' && mode !== 'auto') {
        failures.push({ backend: 'MORAY_PROBES', error: `unknown value "${mode}" (auto used)` });
    }

    const preferred = platform === 'linux' ? 'usdt' :
        DTRACE_PLATFORMS.has(platform) ? 'dtrace' : undefined;
    if (preferred === undefined) {
        return { backend: noopBackend, reason: `no probe mechanism on ${platform}`, failures,
            forcedFailed: false };
    }
    const b = attempt(preferred);
    if (b !== undefined) {
        return { backend: b, reason: `${platform} default`, failures, forcedFailed: false };
    }
    return { backend: noopBackend,
        reason: `${preferred} unavailable: ${failures[failures.length - 1]?.error}`,
        failures, forcedFailed: false };
}

let info: ProbeBackendInfo = { probeBackend: 'noop', probeBackendReason: 'not selected yet' };

/* Choose, install, log skipped failures; returns the active backend name. */
export function selectBackend(log?: ProbeLogger, opts: SelectOptions = {}): string {
    let choice = chooseBackend(opts);
    try {
        installBackend(choice.backend);
    } catch (err) {
        /* e.g. dtrace-provider could not create a provider */
        const error = (err as Error).message;
        log?.warn({ probeBackend: choice.backend.name, err: error },
            'probe backend failed to install; probes disabled');
        installBackend(noopBackend);
        choice = { backend: noopBackend, reason: `${choice.backend.name} failed to install: ${error}`,
            failures: [...choice.failures, { backend: choice.backend.name, error }],
            forcedFailed: false };
    }
    info = { probeBackend: choice.backend.name, probeBackendReason: choice.reason };
    const b = choice.backend as ProbeBackend & { missing?: string[] };
    if (b.name === 'usdt' && opts.loadUsdt === undefined) {
        info.usdtAddon = usdtAddonPath(opts.env ?? process.env);
    }
    if (b.missing !== undefined && b.missing.length > 0) {
        info.probesMissing = [...b.missing];
        log?.warn({ probesMissing: b.missing },
            'probe backend lacks some probes (stale native/usdt build?); they will not fire');
    }
    for (const f of choice.failures) {
        const rec = { probeBackend: f.backend, err: f.error };
        if (f.backend === 'MORAY_PROBES') {
            log?.warn(rec, 'MORAY_PROBES not understood (off, noop, usdt, dtrace, auto)');
        } else if (choice.forcedFailed) {
            log?.warn(rec, 'requested probe backend could not be loaded; probes disabled');
        } else {
            log?.debug(rec, 'probe backend not available');
        }
    }
    return choice.backend.name;
}

/* Fields for the caller's "probe backend" log record and for kang. */
export function probeBackendInfo(): ProbeBackendInfo {
    return { ...info };
}

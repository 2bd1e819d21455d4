/*
 * Live log snooping: the `moray:log` probe fires with every bunyan record,
 * including those BELOW the configured level, while a tracer is attached;
 * and costs nothing while none is.  tools/snoop attaches bpftrace to it.
 *
 * Why not simply a bunyan raw stream at level trace: bunyan drops a record
 * before it reaches any stream when the LOGGER's level says so
 * (`if (this._level <= minLevel) ...` in each level method), and every child
 * logger keeps its own copy of the level, taken when it was created.  So a
 * stream at trace sees nothing below info, and lowering the root's level
 * would change neither the children already made (per component, per
 * connection) nor what goes to the log.  What every logger does share is
 * the Logger prototype: that is where this module hooks in, and only while
 * the probe is enabled (bunyan's own dtrace-provider probes do the same
 * thing from inside bunyan, but dtrace-provider is a stub on Linux).
 *
 *            poll every second: probe('moray','log').enabled() ?
 *   DETACHED ───────────── yes: patch Logger.prototype ──────────► ATTACHED
 *      ▲   bunyan methods untouched: a debug() below level          │
 *      │   costs what it always did (~12 ns)                        │
 *      └──────────── no: restore the original methods ◄─────────────┘
 *   stop() from either state restores and ends the poll (STOPPED).
 *
 * While ATTACHED:
 *
 *   log.debug(fields, msg)  (logger level info)
 *     └─ patched debug(): lower this._level to debug for the call only
 *          └─ bunyan's debug(): builds the record, calls _emit(rec)
 *               └─ patched _emit(): fire log(level, JSON) ─► bunyan's _emit:
 *                  writes to every stream whose level <= debug: none, so
 *                  the log file does not change.
 *   Records at or above the level take bunyan's normal path, and also fire.
 *
 * The same patch serves `src` (file/line of the caller, with -v): bunyan
 * 1.8.15 finds the caller with a stack trace captured on the global object,
 * which Node 20 no longer formats (`src: {}`), and would count our frame
 * anyway; the patched method records its caller and _emit puts it in the
 * record (enableSourceLocations, called by log.ts for -v).  The prototype is
 * patched while snooping OR source locations want it, and only then.
 *
 * The record argument.  bpftrace 0.17 reads at most 200 bytes per string
 * (they live on the 512-byte BPF stack), and bunyan records are longer.
 * With the usdt backend the JSON is followed by NUL bytes up to the next
 * multiple of SNOOP_CHUNK_BYTES, plus one, so a script can print it as
 * consecutive 199-byte pieces and stop at the first piece that starts with
 * NUL (tools/snoop, up to SNOOP_MAX_CHUNKS pieces).  A record longer than
 * that is replaced by a short one with `snoop_truncated: <bytes>`.  Other
 * readers (str(), copyinstr()) stop at the first NUL and see plain JSON;
 * the dtrace backend (illumos: `-x strsize=`) gets plain JSON, uncut.
 *
 * Failure modes: none that reach a request.  A throwing serializer throws
 * exactly as it would at the configured level; the patch is synchronous, so
 * the lowered level can never leak to another call.
 */

import { backendName, probe, type ProbeHandle } from '../probes';

export const SNOOP_CHUNK_BYTES = 199;
export const SNOOP_MAX_CHUNKS = 24;
export const SNOOP_MAX_BYTES = SNOOP_CHUNK_BYTES * SNOOP_MAX_CHUNKS;
export const SNOOP_POLL_MS = 1000;

const LEVELS = [['trace', 10], ['debug', 20], ['info', 30], ['warn', 40], ['error', 50],
    ['fatal', 60]] as const;

export const SnoopState = {
    DETACHED: 'DETACHED',
    ATTACHED: 'ATTACHED',
    STOPPED: 'STOPPED',
} as const;
export type SnoopState = typeof SnoopState[keyof typeof SnoopState];

const LEGAL: Record<SnoopState, readonly SnoopState[]> = {
    DETACHED: ['ATTACHED', 'STOPPED'],
    ATTACHED: ['DETACHED', 'STOPPED'],
    STOPPED: [],
};

/* The parts of bunyan's Logger this module relies on (bunyan 1.8.15). */
interface BunyanInternals {
    _level: number;
    src?: boolean;
    _emit(rec: Record<string, unknown>, noemit?: boolean): string | undefined;
}
type LevelMethod = (this: BunyanInternals, ...args: unknown[]) => unknown;
type EmitMethod = BunyanInternals['_emit'];
type Proto = Record<string, unknown>;

interface SrcInfo { file: string | null; line: number | null; func?: string }

export interface LogSnoopStats {
    state: SnoopState | 'NOT_INSTALLED';
    /* records fired into the probe */
    records: number;
    /* records replaced because they were longer than SNOOP_MAX_BYTES */
    truncated: number;
    /* DETACHED → ATTACHED transitions */
    attachments: number;
    pollMs: number;
}

export interface LogProbeHandle {
    /* check the probe now (the timer does this every pollMs) */
    poll(): void;
    /* restore bunyan and stop polling */
    stop(): void;
}

/*
 * The prototype patch, shared by snooping and by source locations (-v):
 * applied while either wants it, removed when neither does.
 */
interface Hooks {
    readonly proto: Proto;
    readonly originals: Map<string, unknown>;
    /* log-probe attached: fire the probe, let below-level records through */
    snoop: boolean;
    /* compute `src` ourselves (bunyan 1.8's getCaller3Info yields {} on Node 20) */
    src: boolean;
    patched: boolean;
}

let hooks: Hooks | null = null;

let installed: {
    state: SnoopState;
    probe: ProbeHandle;
    timer: NodeJS.Timeout;
    stats: LogSnoopStats;
    handle: LogProbeHandle;
} | null = null;

/* Caller of the patched method, as bunyan's getCaller3Info should report it. */
let pendingSrc: SrcInfo | undefined;

function callerOf(fn: (...a: never[]) => unknown): SrcInfo {
    const holder: { stack?: unknown } = {};
    const limit = Error.stackTraceLimit;
    const prepare = Error.prepareStackTrace;
    Error.stackTraceLimit = 1;
    Error.prepareStackTrace = (_e, frames) => frames;
    Error.captureStackTrace(holder, fn);
    const frames = holder.stack as NodeJS.CallSite[] | undefined;
    Error.stackTraceLimit = limit;
    Error.prepareStackTrace = prepare;
    const site = frames?.[0];
    const info: SrcInfo = { file: site?.getFileName() ?? null, line: site?.getLineNumber() ?? null };
    const func = site?.getFunctionName();
    if (func) {
        info.func = func;
    }
    return info;
}

/*
 * The probe's record argument for one bunyan JSON text (no trailing
 * newline).  `chunked` is true for the usdt backend (see the top).
 */
export function encodeSnoopRecord(json: string, rec: Record<string, unknown>, chunked: boolean):
{ text: string; truncated: boolean } {
    if (!chunked) {
        return { text: json, truncated: false };
    }
    let text = json;
    let bytes = Buffer.byteLength(text);
    let truncated = false;
    if (bytes > SNOOP_MAX_BYTES) {
        truncated = true;
        const short: Record<string, unknown> = {};
        for (const k of ['name', 'hostname', 'pid', 'component', 'req_id', 'level']) {
            if (rec[k] !== undefined) {
                short[k] = rec[k];
            }
        }
        short['msg'] = String(rec['msg'] ?? '').slice(0, 1024);
        short['time'] = rec['time'];
        short['v'] = rec['v'];
        short['snoop_truncated'] = bytes;
        text = JSON.stringify(short);
        bytes = Buffer.byteLength(text);
        if (bytes > SNOOP_MAX_BYTES) {
            short['msg'] = '';
            text = JSON.stringify(short);
            bytes = Buffer.byteLength(text);
        }
    }
    const padded = Math.ceil(bytes / SNOOP_CHUNK_BYTES) * SNOOP_CHUNK_BYTES + 1;
    return { text: text + '\0'.repeat(padded - bytes), truncated };
}

function hooksFor(logger: object): Hooks {
    const proto = Object.getPrototypeOf(logger) as Proto;
    if (hooks !== null) {
        if (hooks.proto !== proto) {
            throw new Error('log hooks: a second copy of bunyan (one Logger class per process)');
        }
        return hooks;
    }
    for (const [name] of LEVELS) {
        if (typeof proto[name] !== 'function') {
            throw new Error(`log hooks: not a bunyan logger (no ${name}())`);
        }
    }
    if (typeof proto['_emit'] !== 'function') {
        throw new Error('log hooks: bunyan without _emit (unsupported version)');
    }
    const originals = new Map<string, unknown>();
    for (const [name] of LEVELS) {
        originals.set(name, proto[name]);
    }
    originals.set('_emit', proto['_emit']);
    hooks = { proto, originals, snoop: false, src: false, patched: false };
    return hooks;
}

function patch(h: Hooks): void {
    const proto = h.proto;
    const origEmit = h.originals.get('_emit') as EmitMethod;
    const logProbe = probe('moray', 'log');
    proto['_emit'] = function hookedEmit(this: BunyanInternals, rec: Record<string, unknown>,
        noemit?: boolean): string | undefined {
        if (pendingSrc !== undefined && rec['src'] !== undefined) {
            rec['src'] = pendingSrc;
        }
        const str = origEmit.call(this, rec, noemit);
        if (h.snoop && noemit !== true) {
            logProbe.fire(() => {
                const json = (str ?? origEmit.call(this, rec, true) ?? '').replace(/\r?\n$/, '');
                const enc = encodeSnoopRecord(json, rec, backendName() === 'usdt');
                const st = installed?.stats;
                if (st !== undefined) {
                    st.records++;
                    st.truncated += enc.truncated ? 1 : 0;
                }
                return [rec['level'], enc.text];
            });
        }
        return str;
    } satisfies EmitMethod;
    for (const [name, level] of LEVELS) {
        const orig = h.originals.get(name) as LevelMethod;
        const hooked = function (this: BunyanInternals, ...args: unknown[]): unknown {
            if (args.length === 0) {
                return orig.apply(this, args);
            }
            const saved = this._level;
            pendingSrc = this.src === true && h.src ? callerOf(hooked) : undefined;
            try {
                if (h.snoop && saved > level) {
                    this._level = level;
                }
                return orig.apply(this, args);
            } finally {
                this._level = saved;
                pendingSrc = undefined;
            }
        };
        proto[name] = hooked;
    }
    h.patched = true;
}

function unpatch(h: Hooks): void {
    for (const [name, fn] of h.originals) {
        h.proto[name] = fn;
    }
    h.patched = false;
}

/* Patch or restore bunyan to match what is wanted now. */
function sync(h: Hooks): void {
    const want = h.snoop || h.src;
    if (want && !h.patched) {
        patch(h);
    } else if (!want && h.patched) {
        unpatch(h);
    }
}

/*
 * Make `src` (file, line, func of the caller) work for loggers created
 * with `src: true`; bunyan 1.8.15 emits `src: {}` on Node 20 (its
 * getCaller3Info captures a stack on the global object, which V8 no longer
 * formats).  Costs a stack capture per record of a src logger: the -v
 * debugging mode only.
 */
export function enableSourceLocations(logger: object): void {
    const h = hooksFor(logger);
    h.src = true;
    sync(h);
}

function move(to: SnoopState): void {
    const s = installed!;
    if (!LEGAL[s.state].includes(to)) {
        throw new Error(`log snoop: illegal move ${s.state} -> ${to}`);
    }
    s.state = to;
    s.stats.state = to;
}

function poll(): void {
    const s = installed;
    if (s === null || s.state === SnoopState.STOPPED || hooks === null) {
        return;
    }
    const on = s.probe.enabled();
    if (on && s.state === SnoopState.DETACHED) {
        hooks.snoop = true;
        sync(hooks);
        move(SnoopState.ATTACHED);
        s.stats.attachments++;
    } else if (!on && s.state === SnoopState.ATTACHED) {
        hooks.snoop = false;
        sync(hooks);
        move(SnoopState.DETACHED);
    }
}

/*
 * Start watching the `log` probe for the bunyan loggers of `logger`'s
 * class (any logger: they share one prototype).  Call once, after the
 * probe backend is installed; a second call returns the same handle.
 */
export function installLogProbe(logger: object, opts: { pollMs?: number } = {}): LogProbeHandle {
    if (installed !== null && installed.state !== SnoopState.STOPPED) {
        return installed.handle;
    }
    const h = hooksFor(logger);
    const pollMs = opts.pollMs ?? SNOOP_POLL_MS;
    const timer = setInterval(poll, pollMs);
    timer.unref();
    const handle: LogProbeHandle = {
        poll,
        stop() {
            const s = installed;
            if (s === null || s.state === SnoopState.STOPPED) {
                return;
            }
            clearInterval(s.timer);
            h.snoop = false;
            sync(h);
            move(SnoopState.STOPPED);
        },
    };
    installed = {
        state: SnoopState.DETACHED, probe: probe('moray', 'log'), timer,
        stats: { state: SnoopState.DETACHED, records: 0, truncated: 0, attachments: 0, pollMs },
        handle,
    };
    poll();
    return handle;
}

export function logSnoopStats(): LogSnoopStats {
    if (installed === null) {
        return { state: 'NOT_INSTALLED', records: 0, truncated: 0, attachments: 0,
            pollMs: SNOOP_POLL_MS };
    }
    return { ...installed.stats };
}

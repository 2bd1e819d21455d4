/*
 * pre/post triggers (moray-api.md §5.6, storage.md §14), run in a sandbox.
 *
 * Each trigger is JavaScript source stored in buckets_config.  We compile
 * it once per bucket load in its own node:vm context and call it as
 * `fn.call(holder, req, cb)`; triggers run in order, each must call cb
 * (call-once; extra calls ignored), cb(err) or a throw fails the RPC, and
 * the RPC then waits for every req.pg query the triggers started.
 *
 * The sandbox: NO main-realm object is reachable from trigger code
 * ----------------------------------------------------------------
 * A main-realm object handed to a context leaks the process: any function
 * reachable from it has `.constructor` = the main realm's Function, and
 * `Function('return process')()` is the process.  So the context is
 * created from a null-prototype sandbox with no globals of ours, and
 * everything a trigger can touch is built INSIDE the context by a
 * bootstrap script (context-realm objects, functions and errors only):
 *
 *   main realm                              context realm (one per trigger)
 *   ──────────                              ───────────────────────────────
 *   Sandbox ── BOOTSTRAP(bridge) ─────────► closure holds `bridge` (never
 *     │                                      stored on any object); builds
 *     │                                      require, crc/microtime facades,
 *     │                                      H = frozen entry points, locks
 *     │                                      Error / Error.prepareStackTrace
 *     │  set input (JSON string)
 *     ├─ runInContext('H.run()', timeout) ─► JSON.parse(input) → req (+ req.log,
 *     │                                      req.pg, cb wrappers) → fn(req, cb)
 *     │ ◄── bridge('cb', run, err, JSON{key,value}) ── cb(err)   (primitives only)
 *     │ ◄── bridge('query', run, sql, JSON args) → qid ── req.pg.query()
 *     │ ◄── bridge('log', run, level, JSON args) ──────── req.log.info()
 *     │  query done: set input (tagged JSON rows | error)
 *     └─ runInContext('H.deliver()', timeout) ► emitter.emit('row'/'end'/'error')
 *
 * Rules that keep the boundary: the bridge takes and returns primitives
 * only and never throws (every wrapper also catches around it and throws a
 * fresh context error, so not even a stack-overflow RangeError from the
 * main realm gets through); data goes in as JSON and is parsed in the
 * context (Dates and Buffers in rows are tagged and rebuilt there); an
 * error coming from our side (InvalidRequireError, a query's error) is a
 * context Error with the same name/message and own primitive fields,
 * carrying a token so that, if the trigger hands it back to cb or throws
 * it, the RPC fails with the original MorayError; main code never reads a
 * context object (exceptions are caught and flattened inside the context,
 * within the time limit).  Further: eval/new Function/wasm are disabled in
 * the context (codeGeneration), Error.prepareStackTrace is locked (node
 * would call it with call sites), and a source that contains a dynamic
 * `import(` is refused when run (node 20 rejects import() in a vm script
 * with a MAIN-realm error and offers no hook without
 * --experimental-vm-modules).  The trigger's event handlers are always
 * entered through runInContext, so each entry has the time limit.
 *
 * Not microtaskMode 'afterEvaluate': it would put the trigger's promise
 * jobs inside the time limit, but a timeout that fires in that microtask
 * checkpoint aborts node ("async hook stack has become corrupted") as soon
 * as any async hook / AsyncLocalStorage is active (Node 20.20, verified;
 * see also src/schema/bucket-config.ts).  So promise jobs a trigger queues
 * run on the main microtask queue, outside the time limit: a trigger that
 * loops in a promise job (`Promise.resolve().then(loop)`) hangs the
 * process, as before.  They still reach no main-realm object.
 *
 * What remains shared: the context's global object and the entry point
 * object `__moraySandbox` (frozen, context-realm) are shared by every
 * request that runs this trigger; a trigger can keep global state, or
 * call its own entry points, but reaches nothing outside its context.
 * Not a defence against denial of service beyond the time limit (memory
 * use, promise jobs, or a FinalizationRegistry callback that loops, are
 * not bounded).
 *
 * Failure modes, all operational (the RPC fails, the process lives on):
 *   - a synchronous throw, including InvalidRequireError from `require`;
 *   - a trigger (or one of its event handlers) that loops: the vm timeout;
 *   - an exception thrown by a trigger's own req.pg event handler: it fails
 *     the trigger;
 *   - a req.pg query that fails.  Its 'error' event is emitted only when
 *     the trigger listens for it; either way the transaction is now
 *     aborted, so the RPC fails with the query's error;
 *   - a trigger that never calls back: "trigger did not call back in time"
 *     after CALLBACK_DEADLINE_MS.
 *
 * The first two need care because the server runs with
 * --abort-on-uncaught-exception: V8 aborts the process on any exception
 * that unwinds out of a vm script, and on the watchdog's termination, even
 * when the caller of runInContext catches them.  Node consults an abort
 * toggle first, and an uncaught-exception capture callback turns it off,
 * so every vm entry runs inside withAbortSuspended(), which installs a
 * no-op capture callback for the (synchronous) duration of the call only.
 *
 * Unlike the reference, a throwing trigger fails its RPC instead of
 * crashing the process, and eval / new Function are unavailable.
 */

import * as vm from 'node:vm';
import { types } from 'node:util';
import { errors, MorayError } from '../errors/catalog';
import type { PgHandle } from '../pg/handle';
import type { Bucket } from '../schema/bucket';

const CALLBACK_DEADLINE_MS = 30000;
const MAX_TOKENS = 1024;
const TAG_DATE = '\u0000date';
const TAG_BYTES = '\u0000bytes';
/* a dynamic import() (node 20 would reject it with a main-realm error) */
const DYNAMIC_IMPORT = /\bimport\s*(?:\(|\/[*/])/;

/*
 * Evaluated in each context before the trigger source; returns the setup
 * function, called once with the bridge.  Context-realm code only; every
 * call into the bridge goes through call(), which never lets a main-realm
 * exception through.
 */
const BOOTSTRAP = new vm.Script(`(function (bridge) {
'use strict';
var G = globalThis, CtxError = Error, parse = JSON.parse, stringify = JSON.stringify;
var defineProperty = Object.defineProperty, freeze = Object.freeze, isView = ArrayBuffer.isView;
var arrayFrom = Array.from, U8 = Uint8Array, DateC = Date, MapC = Map;
var TAG_DATE = ${JSON.stringify(TAG_DATE)}, TAG_BYTES = ${JSON.stringify(TAG_BYTES)};
var tokens = new WeakMap();
var emitters = new MapC();

function call(op, a, b, c, d) {
    try {
        return bridge(op, a, b, c, d);
    } catch (e) {
        throw new CtxError('trigger sandbox bridge failed');
    }
}
function revive(k, v) {
    if (v !== null && typeof v === 'object') {
        if (TAG_DATE in v) { return new DateC(v[TAG_DATE]); }
        if (TAG_BYTES in v) { return new U8(v[TAG_BYTES]); }
    }
    return v;
}
function tag(k, v) {
    var o = this[k];
    if (o instanceof DateC) { var t = {}; t[TAG_DATE] = o.getTime(); return t; }
    if (isView(o)) { var b = {}; b[TAG_BYTES] = arrayFrom(new U8(o.buffer, o.byteOffset, o.byteLength)); return b; }
    return v;
}
function mkError(d) {
    var e = new CtxError(String(d.message));
    defineProperty(e, 'name', { value: String(d.name), writable: true, configurable: true, enumerable: false });
    var p = d.props || {};
    for (var k in p) { e[k] = p[k]; }
    if (d.token !== undefined) { tokens.set(e, d.token); }
    return e;
}
function callJ(op, a, b, c, d) {
    var r = parse(call(op, a, b, c, d), revive);
    if (r.e !== undefined) { throw mkError(r.e); }
    return r.v;
}
/* a thrown / cb(err) value, flattened to JSON: {token} | {name, message} */
function flatten(e) {
    try {
        if (e !== null && (typeof e === 'object' || typeof e === 'function')) {
            var t = tokens.get(e);
            if (t !== undefined) { return stringify({ token: t }); }
            if ('message' in e) {
                var n = e.name;
                return stringify({ name: typeof n === 'string' ? n : 'Error', message: String(e.message) });
            }
        }
        return stringify({ name: 'Error', message: String(e) });
    } catch (x) {
        return stringify({ name: 'Error', message: 'trigger failed with an unprintable value' });
    }
}

/* require('crc') / require('microtime'): context-realm facades */
function encode(buf) {
    if (isView(buf)) { return 'b' + stringify(arrayFrom(new U8(buf.buffer, buf.byteOffset, buf.byteLength))); }
    return 's' + String(buf);
}
var crc = {};
parse(call('crcNames')).forEach(function (m) {
    function variant(v) {
        return function (buf, previous) {
            return callJ('crc', m.name, v, encode(buf), previous === undefined ? undefined : Number(previous));
        };
    }
    var f = variant('');
    f.signed = variant('signed');
    f.unsigned = variant('unsigned');
    if (typeof m.model === 'string') { f.model = m.model; }
    crc[m.name] = freeze(f);
});
var microtime = {
    now: function () { return callJ('microtime', 'now'); },
    nowDouble: function () { return callJ('microtime', 'nowDouble'); },
    nowStruct: function () { return callJ('microtime', 'nowStruct'); },
};
var modules = { crc: freeze(crc), microtime: freeze(microtime) };
var require = function require(name) {
    if (name === 'crc' || name === 'microtime') { return modules[name]; }
    return callJ('require', String(name));
};

/* req.log: bunyan's level methods; arguments go over as JSON */
function logArg(a) {
    if (a instanceof CtxError || (a !== null && typeof a === 'object' && tokens.has(a))) {
        return { '\\u0000err': { name: String(a.name), message: String(a.message), stack: String(a.stack) } };
    }
    return a;
}
function makeLog(run) {
    var log = {};
    ['trace', 'debug', 'info', 'warn', 'error', 'fatal'].forEach(function (level) {
        log[level] = function () {
            var args = [];
            for (var i = 0; i < arguments.length; i++) { args.push(logArg(arguments[i])); }
            var json;
            try { json = stringify(args); } catch (e) { json = stringify(args.map(function (a) { return String(a); })); }
            return call('log', run, level, json) === true;
        };
    });
    return log;
}

/* req.pg.query(): a minimal EventEmitter, fed by deliver() */
function Emitter() { defineProperty(this, '_l', { value: new MapC() }); }
Emitter.prototype.on = Emitter.prototype.addListener = function (ev, fn) {
    var l = this._l.get(ev) || [];
    l.push({ fn: fn, once: false });
    this._l.set(ev, l);
    return this;
};
Emitter.prototype.once = function (ev, fn) {
    this.on(ev, fn);
    var l = this._l.get(ev);
    l[l.length - 1].once = true;
    return this;
};
Emitter.prototype.off = Emitter.prototype.removeListener = function (ev, fn) {
    var l = this._l.get(ev) || [];
    for (var i = l.length - 1; i >= 0; i--) {
        if (l[i].fn === fn) { l.splice(i, 1); break; }
    }
    return this;
};
Emitter.prototype.removeAllListeners = function (ev) {
    if (ev === undefined) { this._l.clear(); } else { this._l.delete(ev); }
    return this;
};
Emitter.prototype.listenerCount = function (ev) { return (this._l.get(ev) || []).length; };
Emitter.prototype.listeners = function (ev) {
    return (this._l.get(ev) || []).map(function (x) { return x.fn; });
};
Emitter.prototype.emit = function (ev) {
    var args = [];
    for (var i = 1; i < arguments.length; i++) { args.push(arguments[i]); }
    var l = (this._l.get(ev) || []).slice();
    if (ev === 'error' && l.length === 0) { throw args[0]; }
    for (var j = 0; j < l.length; j++) {
        if (l[j].once) { this.removeListener(ev, l[j].fn); }
        l[j].fn.apply(this, args);
    }
    return l.length > 0;
};
function makePg(run) {
    return {
        query: function (sql, args) {
            var json = stringify(args === undefined || args === null ? [] : args, tag);
            var qid = callJ('query', run, String(sql), json === undefined ? '[]' : json);
            var em = new Emitter();
            emitters.set(qid, em);
            return em;
        },
    };
}

var H = freeze({
    run: function () {
        var d = parse(call('input'), revive);
        var run = d.run, req = d.req;
        if (d.log) { req.log = makeLog(run); }
        if (d.pg) { req.pg = makePg(run); }
        var called = false;
        var cb = function (err) {
            if (called) { return; }
            called = true;
            if (err) { call('cb', run, flatten(err), ''); return; }
            var out;
            try {
                out = stringify({ key: req.key, value: req.value });
            } catch (e) {
                call('cb', run, flatten(e), '');
                return;
            }
            call('cb', run, '', out);
        };
        try {
            G.fn.call({}, req, cb);
        } catch (e) {
            call('throw', run, flatten(e));
        }
    },
    deliver: function () {
        var d = parse(call('input'), revive);
        var em = emitters.get(d.qid);
        emitters.delete(d.qid);
        if (em === undefined) { return; }
        function emit(ev, arg) {
            try { em.emit(ev, arg); } catch (e) { call('handlerError', d.qid, flatten(e)); }
        }
        if (d.error !== undefined) {
            if (em.listenerCount('error') > 0) { emit('error', mkError(d.error)); }
            return;
        }
        for (var i = 0; i < d.rows.length; i++) { emit('row', d.rows[i]); }
        emit('end', { rowCount: d.rowCount, rows: d.rows });
    },
});
/* node calls <realm>.Error.prepareStackTrace with call sites: lock it */
defineProperty(CtxError, 'prepareStackTrace', { value: undefined, writable: false, configurable: false });
defineProperty(G, 'Error', { value: CtxError, writable: false, configurable: false, enumerable: false });
defineProperty(G, 'require', { value: require, writable: true, configurable: true, enumerable: false });
defineProperty(G, '__moraySandbox', { value: H, writable: false, configurable: false, enumerable: false });
})`, { filename: 'trigger-sandbox-bootstrap.js' });

const RUN = new vm.Script('void __moraySandbox.run()');
const DELIVER = new vm.Script('void __moraySandbox.deliver()');
const TYPEOF_FN = new vm.Script('typeof fn');

/*
 * Run `fn` (which enters a vm context) with --abort-on-uncaught-exception
 * suspended, so that its exceptions, and the vm timeout, reach our own
 * try/catch instead of aborting the process.  Synchronous: nothing else
 * runs while the capture callback is installed.  If some other code owns
 * the capture callback already, the abort toggle is off anyway.
 */
function withAbortSuspended<T>(fn: () => T): T {
    if (process.hasUncaughtExceptionCaptureCallback()) {
        return fn();
    }
    process.setUncaughtExceptionCaptureCallback(() => undefined);
    try {
        return fn();
    } finally {
        process.setUncaughtExceptionCaptureCallback(null);
    }
}

/*
 * What runInContext threw (the vm timeout, whose error node creates in the
 * CONTEXT's realm; or something that got past the bootstrap's catch, e.g.
 * a stack overflow), as a main-realm Error, without running any context
 * code: only own data properties of a non-proxy native error are read (no
 * proxy traps, no getters, no prototype chain).
 */
function caughtError(e: unknown): Error {
    if (types.isNativeError(e) && !types.isProxy(e)) {
        const d = Object.getOwnPropertyDescriptor(e, 'message');
        if (d !== undefined && 'value' in d && typeof d.value === 'string') {
            return new Error(d.value);
        }
    }
    return new Error('trigger failed');
}

function toMorayError(e: unknown): MorayError {
    if (e instanceof MorayError) {
        return e;
    }
    if (e !== null && typeof e === 'object' && 'message' in e) {
        const name = typeof (e as Error).name === 'string' ? (e as Error).name : 'Error';
        return new MorayError(name, String((e as Error).message));
    }
    return new MorayError('Error', String(e));
}

/* an error of ours, as the context rebuilds it (primitive fields only) */
function describe(e: unknown, token: number): Record<string, unknown> {
    const m = toMorayError(e);
    const props: Record<string, unknown> = {};
    if (e !== null && typeof e === 'object') {
        for (const [k, v] of Object.entries(e)) {
            if (k !== 'name' && k !== 'message' && k !== 'stack' &&
                (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean')) {
                props[k] = v;
            }
        }
    }
    return { name: m.name, message: m.message, props, token };
}

function tagReplacer(this: unknown, k: string, v: unknown): unknown {
    const o = (this as Record<string, unknown>)[k];
    if (o instanceof Date) {
        return { [TAG_DATE]: o.getTime() };
    }
    if (Buffer.isBuffer(o)) {
        return { [TAG_BYTES]: [...o] };
    }
    return v;
}

function untag(_k: string, v: unknown): unknown {
    if (v !== null && typeof v === 'object') {
        if (TAG_DATE in v) {
            return new Date((v as Record<string, number>)[TAG_DATE]!);
        }
        if (TAG_BYTES in v) {
            return Buffer.from((v as Record<string, number[]>)[TAG_BYTES]!);
        }
        if ('\u0000err' in v) {
            const d = (v as Record<string, { name: string; message: string; stack: string }>)['\u0000err']!;
            const err = new Error(d.message);
            err.name = d.name;
            err.stack = d.stack;
            return err;
        }
    }
    return v;
}

type Logger = Record<string, unknown>;
type BridgeArg = string | number | undefined;

/* one trigger invocation (one request's turn through one context) */
interface Run {
    cookie: Record<string, unknown>;
    tpg: TriggerPg | null;
    log: Logger | null;
    timeoutMs: number;
    done: boolean;
    settle(err: unknown): void;
    tokens: number[];
}

/*
 * One compiled trigger: its context and the main side of its bridge.
 * Shared by every request that runs the trigger (runs are told apart by
 * id); entries into the context are synchronous, so `input` is a slot.
 */
export class TriggerSandbox {
    private readonly ctx: vm.Context;
    private readonly runs = new Map<number, Run>();
    private readonly queries = new Map<number, number>(); /* qid → run id */
    private readonly tokens = new Map<number, unknown>();
    private input: string | null = null;
    private nextId = 1;
    /* set when the source cannot be run safely (see DYNAMIC_IMPORT) */
    private readonly refused: string | null;

    constructor(source: string, private readonly timeoutMs: number) {
        this.ctx = vm.createContext(Object.create(null), {
            name: 'moray trigger',
            codeGeneration: { strings: false, wasm: false },
        });
        this.refused = DYNAMIC_IMPORT.test(source) ?
            'dynamic import() is not allowed in a trigger' : null;
        /*
         * createBucket/updateBucket already evaluated this source (in a
         * worker) and got a function; a source that now fails is an
         * internal error.
         */
        let kind: unknown;
        try {
            withAbortSuspended(() => {
                const setup = BOOTSTRAP.runInContext(this.ctx) as (b: unknown) => void;
                setup(this.bridge);
                new vm.Script('fn = ' + source, { filename: 'trigger.js' })
                    .runInContext(this.ctx, { timeout: timeoutMs });
                kind = TYPEOF_FN.runInContext(this.ctx, { timeout: timeoutMs });
            });
        } catch (err) {
            throw errors.internal(`trigger does not evaluate: ${caughtError(err).message}`);
        }
        if (kind !== 'function') {
            throw errors.internal('trigger does not evaluate to a function');
        }
    }

    /* Enter the context (with the time limit); a failure, or null. */
    private enter(script: vm.Script, input: string, timeoutMs: number): Error | null {
        this.input = input;
        try {
            withAbortSuspended(() => script.runInContext(this.ctx, { timeout: timeoutMs }));
            return null;
        } catch (e) {
            /* the vm timeout; a context value is not touched */
            return caughtError(e);
        } finally {
            this.input = null;
        }
    }

    private token(run: Run | undefined, err: unknown): number {
        const t = this.nextId++;
        /* tokens not tied to a run (require errors) must not pile up */
        if (this.tokens.size >= MAX_TOKENS) {
            this.tokens.delete(this.tokens.keys().next().value as number);
        }
        this.tokens.set(t, err);
        run?.tokens.push(t);
        return t;
    }

    private fromFlat(json: string): MorayError {
        try {
            const d = JSON.parse(json) as { token?: number; name?: string; message?: string };
            if (typeof d.token === 'number' && this.tokens.has(d.token)) {
                return toMorayError(this.tokens.get(d.token));
            }
            return new MorayError(String(d.name), String(d.message));
        } catch {
            return new MorayError('Error', 'trigger failed');
        }
    }

    /*
     * The only main-realm function the context ever holds (in a closure
     * of the bootstrap).  Primitives in, primitives out, never throws.
     */
    private readonly bridge = (op: unknown, a: unknown, b: unknown, c: unknown,
        d: unknown): BridgeArg | boolean => {
        const s = (x: unknown): string => (typeof x === 'string' ? x : '');
        const n = (x: unknown): number => (typeof x === 'number' ? x : NaN);
        try {
            switch (op) {
            case 'input':
                return this.input ?? 'null';
            case 'crcNames':
                return JSON.stringify(Object.entries(crcModule()).map(([name, f]) =>
                    ({ name, model: (f as { model?: unknown }).model })));
            case 'crc': {
                const fns = crcModule() as Record<string, CrcFn>;
                const f0 = Object.prototype.hasOwnProperty.call(fns, s(a)) ? fns[s(a)] : undefined;
                const f = f0 === undefined ? undefined : b === 'signed' ? f0.signed :
                    b === 'unsigned' ? f0.unsigned : f0;
                if (f === undefined) {
                    throw new Error('no such crc function');
                }
                const enc = s(c);
                const input = enc[0] === 'b' ?
                    Buffer.from(JSON.parse(enc.slice(1)) as number[]) : enc.slice(1);
                return JSON.stringify({ v: f(input, typeof d === 'number' ? d : undefined) });
            }
            case 'microtime': {
                const m = microtimeModule();
                const v = a === 'now' ? m.now() : a === 'nowDouble' ? m.nowDouble() : m.nowStruct();
                return JSON.stringify({ v });
            }
            case 'require': {
                const err = errors.invalidRequire(s(a));
                return JSON.stringify({ e: describe(err, this.token(undefined, err)) });
            }
            case 'cb':
            case 'throw': {
                const run = this.runs.get(n(a));
                if (run === undefined || run.done) {
                    return undefined;
                }
                if (s(b) !== '') {
                    run.settle(this.fromFlat(s(b)));
                } else {
                    const out = JSON.parse(s(c)) as { key?: unknown; value?: unknown };
                    run.cookie['key'] = out.key;
                    run.cookie['value'] = out.value;
                    run.settle(null);
                }
                return undefined;
            }
            case 'log': {
                const run = this.runs.get(n(a));
                const f = run?.log?.[s(b)];
                if (typeof f !== 'function') {
                    return false;
                }
                const args = JSON.parse(s(c), untag) as unknown[];
                return (f as (...x: unknown[]) => unknown).apply(run!.log, args) === true;
            }
            case 'query': {
                const runId = n(a);
                const run = this.runs.get(runId);
                if (run === undefined || run.tpg === null) {
                    throw new Error('req.pg is not available');
                }
                const qid = this.nextId++;
                this.queries.set(qid, runId);
                const args = JSON.parse(s(c), untag) as unknown[];
                run.tpg.start(s(b), Array.isArray(args) ? args : [], (err, r) =>
                    this.deliver(qid, err, r));
                return JSON.stringify({ v: qid });
            }
            case 'handlerError': {
                const run = this.runs.get(this.queries.get(n(a)) ?? NaN);
                const err = this.fromFlat(s(b));
                run?.tpg?.fail(err);
                run?.settle(err);
                return undefined;
            }
            default:
                return undefined;
            }
        } catch (e) {
            const m = toMorayError(e);
            return JSON.stringify({ e: { name: m.name, message: m.message } });
        }
    };

    /* a query's outcome into the context: row / end / error events */
    private deliver(qid: number, err: unknown, r: { rows: unknown[]; rowCount: number } | null): void {
        const run = this.runs.get(this.queries.get(qid) ?? NaN);
        let input: string;
        try {
            input = err !== null ?
                JSON.stringify({ qid, error: describe(err, this.token(run, err)) }) :
                JSON.stringify({ qid, rows: r!.rows, rowCount: r!.rowCount }, tagReplacer);
        } catch (e) {
            input = JSON.stringify({ qid, error: describe(e, this.token(run, e)) });
        }
        const failed = this.enter(DELIVER, input, run?.timeoutMs ?? this.timeoutMs);
        this.queries.delete(qid);
        if (failed !== null) {
            const m = toMorayError(failed);
            run?.tpg?.fail(m);
            run?.settle(m);
        }
    }

    /* Run the trigger for `cookie`; resolves when it calls back. */
    run(cookie: Record<string, unknown>, timeoutMs: number, tpg: TriggerPg | null): Promise<number> {
        return new Promise<number>((resolve, reject) => {
            if (this.refused !== null) {
                reject(errors.plain(this.refused));
                return;
            }
            const id = this.nextId++;
            const timer = setTimeout(() => run.settle(errors.plain('trigger did not call back in time')),
                CALLBACK_DEADLINE_MS);
            const run: Run = {
                cookie, tpg, timeoutMs, tokens: [], done: false,
                log: cookie['log'] !== null && typeof cookie['log'] === 'object' ?
                    cookie['log'] as Logger : null,
                settle: (err: unknown) => {
                    if (run.done) {
                        return;
                    }
                    run.done = true;
                    clearTimeout(timer);
                    if (err) {
                        const m = toMorayError(err);
                        /* nobody waits for a failed request's queries */
                        this.release([id]);
                        reject(m);
                    } else {
                        resolve(id);
                    }
                },
            };
            this.runs.set(id, run);
            let input: string;
            try {
                input = JSON.stringify({
                    run: id, log: run.log !== null, pg: tpg !== null,
                    req: {
                        bucket: cookie['bucket'], key: cookie['key'], value: cookie['value'],
                        id: cookie['id'], schema: cookie['schema'], update: cookie['update'],
                        headers: cookie['headers'],
                    },
                }, tagReplacer);
            } catch (e) {
                run.settle(e);
                return;
            }
            const failed = this.enter(RUN, input, timeoutMs);
            if (failed !== null) {
                /* the vm timeout (a trigger that loops) */
                run.settle(failed);
            }
        });
    }

    /* Forget the request's runs (after its queries settled). */
    release(ids: readonly number[]): void {
        for (const id of ids) {
            const run = this.runs.get(id);
            if (run !== undefined) {
                for (const t of run.tokens) {
                    this.tokens.delete(t);
                }
                this.runs.delete(id);
            }
        }
    }
}

type CrcFn = ((buf: Buffer | string, prev?: number) => number) &
    { signed: (buf: Buffer | string, prev?: number) => number;
      unsigned: (buf: Buffer | string, prev?: number) => number; model?: string };
interface Microtime { now(): number; nowDouble(): number; nowStruct(): number[] }

/* the allowed modules, loaded on first use (main realm; never handed out) */
let crcMod: Record<string, unknown> | null = null;
let microMod: Microtime | null = null;
function crcModule(): Record<string, unknown> {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    crcMod ??= require('crc') as Record<string, unknown>;
    return crcMod;
}
function microtimeModule(): Microtime {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    microMod ??= require('microtime') as Microtime;
    return microMod;
}

export interface CompiledTriggers {
    pre: TriggerSandbox[];
    post: TriggerSandbox[];
}

/*
 * The bucket's compiled triggers.  With features.triggers off the server
 * refuses to write to a bucket that has triggers (running a write without
 * its triggers would silently break what they maintain, e.g. a changelog).
 */
export function compiledTriggers(b: Bucket,
    features: { triggers: boolean; triggerTimeout: number }): CompiledTriggers {
    if (!features.triggers) {
        throw errors.invalidBucketConfig(
            `${b.name} has triggers, which are disabled on this server (features.triggers)`);
    }
    const timeoutMs = features.triggerTimeout;
    if (b.compiled === undefined) {
        b.compiled = {
            pre: b.pre.map((s) => new TriggerSandbox(s, timeoutMs)),
            post: b.post.map((s) => new TriggerSandbox(s, timeoutMs)),
        } satisfies CompiledTriggers;
    }
    return b.compiled as CompiledTriggers;
}

/*
 * The reference's req.pg, main side: runs the queries a trigger asks for
 * over the request's connection (inside its transaction), and remembers
 * what they did, so that runTriggers can wait for them and fail the RPC
 * on any error.  The trigger sees a context-realm emitter (BOOTSTRAP).
 */
export class TriggerPg {
    private readonly inflight = new Set<Promise<void>>();
    private failure: MorayError | null = null;

    constructor(private readonly pg: Pick<PgHandle, 'query'>) {}

    start(sql: string, args: unknown[],
        done: (err: unknown, r: { rows: unknown[]; rowCount: number } | null) => void): void {
        const p = this.pg.query(sql, args, { prepare: false }).then((r) => {
            done(null, r);
        }, (err: unknown) => {
            this.fail(toMorayError(err));
            done(err ?? new Error('query failed'), null);
        }).finally(() => {
            this.inflight.delete(p);
        });
        this.inflight.add(p);
    }

    fail(err: MorayError): void {
        if (this.failure === null) {
            this.failure = err;
        }
    }

    /* Wait for every query started so far; throw the first failure. */
    async settle(): Promise<void> {
        while (this.inflight.size > 0) {
            await Promise.all([...this.inflight]);
        }
        if (this.failure !== null) {
            throw this.failure;
        }
    }
}

export function triggerPg(pg: Pick<PgHandle, 'query'>): TriggerPg {
    return new TriggerPg(pg);
}

/*
 * Run the triggers in order with the cookie `req` (its key and value are
 * updated from what each trigger left in its copy); then, if req.pg is a
 * TriggerPg, wait for its queries.  Rejects with the first failure.
 */
export async function runTriggers(sandboxes: readonly TriggerSandbox[],
    req: Record<string, unknown>, timeoutMs: number): Promise<void> {
    const tpg = req['pg'] instanceof TriggerPg ? req['pg'] : null;
    const ran: Array<[TriggerSandbox, number]> = [];
    try {
        for (const sb of sandboxes) {
            ran.push([sb, await sb.run(req, timeoutMs, tpg)]);
        }
        if (tpg !== null) {
            await tpg.settle();
        }
    } finally {
        for (const [sb, id] of ran) {
            sb.release([id]);
        }
    }
}

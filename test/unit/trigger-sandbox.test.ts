/*
 * The trigger sandbox (src/objects/triggers.ts): no main-realm object is
 * reachable from trigger code, and triggers still do everything they did.
 *
 * Escape probes run INSIDE a trigger: for every object / function the
 * trigger can reach, `realm(x)` checks that its prototype chain ends at the
 * context's Object.prototype and that its constructor's constructor is the
 * context's Function; a probe also tries the classic
 * `x.constructor.constructor('return typeof process')()`.  The trigger
 * records the names of leaking values in req.value.leaks (and how many
 * probes ran, so the test is not vacuous).  A control test runs the same
 * probe code in a naive context holding a main-realm object and sees it.
 *
 * req.pg uses a fake PgHandle-like object here; the real database is
 * covered by test/integration/objects.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as vm from 'node:vm';
import { MorayError } from '../../src/errors/catalog';
import { runTriggers, triggerPg, TriggerSandbox } from '../../src/objects/triggers';

interface Call { text: string; values: unknown[] }

function fakePg() {
    const calls: Call[] = [];
    return {
        calls,
        query(text: string, values?: readonly unknown[]) {
            calls.push({ text, values: [...(values ?? [])] });
            return new Promise<{ rows: Record<string, unknown>[]; rowCount: number }>((resolve, reject) => {
                setImmediate(() => {
                    if (text === 'timeout') {
                        reject(new MorayError('QueryTimeoutError', 'query timeout: timeout',
                            { sql: 'timeout' }));
                    } else if (text === 'pgerr') {
                        reject(Object.assign(new Error('relation "x" does not exist'),
                            { name: 'error', code: '42P01' }));
                    } else {
                        resolve({ rows: [{ a: 1, d: new Date(0), b: Buffer.from([1, 2]) }, { a: 2 }],
                            rowCount: 2 });
                    }
                });
            });
        },
    };
}

function fakeLog() {
    const lines: unknown[][] = [];
    const log: Record<string, unknown> = {};
    for (const l of ['trace', 'debug', 'info', 'warn', 'error', 'fatal']) {
        log[l] = (...args: unknown[]) => {
            if (args.length === 0) {
                return l !== 'trace';
            }
            lines.push([l, ...args]);
            return undefined;
        };
    }
    return { log, lines };
}

async function run(source: string, value: unknown = { n: 1 }, opts: { timeoutMs?: number } = {}) {
    const timeoutMs = opts.timeoutMs ?? 1000;
    const sb = new TriggerSandbox(source, timeoutMs);
    const pg = fakePg();
    const { log, lines } = fakeLog();
    const cookie: Record<string, unknown> = {
        bucket: 'b', key: 'k', value, schema: { n: { type: 'number' } }, update: false,
        headers: { h: 1 }, log, pg: triggerPg(pg),
    };
    await runTriggers([sb], cookie, timeoutMs);
    return { cookie, pg, lines };
}

/* probe helpers, in the trigger's own source */
const PROBES = `
  var leaks = [], checked = 0, CtxFunction = Function, CtxObjectProto = Object.prototype;
  function realm(name, x) {
    if (x === null || (typeof x !== 'object' && typeof x !== 'function')) { return; }
    checked++;
    try {
      var p = x, last = null, i = 0;
      while (p !== null && i++ < 20) { last = p; p = Object.getPrototypeOf(p); }
      if (last !== CtxObjectProto) { leaks.push(name + ':proto'); }
      var c = typeof x === 'function' ? x : x.constructor;
      if (c && c.constructor !== CtxFunction && typeof c.constructor === 'function') {
        leaks.push(name + ':ctor');
      }
    } catch (e) { }
    try {
      var F = (typeof x === 'function' ? x : x.constructor).constructor;
      if (F('return typeof process')() !== 'undefined') { leaks.push(name + ':process'); }
    } catch (e) {
      if (e && e.constructor !== EvalError && e.constructor !== TypeError) { realm(name + ':err', e); }
    }
  }
  function caught(f) { try { f(); } catch (e) { return e; } return undefined; }
  function deep(f) {
    var depth = 0;
    function rec() { depth++; try { return rec(); } catch (e) { return caught(f); } }
    return rec();
  }
`;

test('control: the probe does see a main-realm object in a naive context', () => {
    const ctx = vm.createContext({ mainObj: {}, mainFn: () => 1 });
    const r = vm.runInContext(PROBES + 'realm("obj", mainObj); realm("fn", mainFn); ' +
        'JSON.stringify({ leaks: leaks, checked: checked })', ctx) as string;
    const { leaks, checked } = JSON.parse(r) as { leaks: string[]; checked: number };
    assert.equal(checked, 2);
    assert.ok(leaks.includes('obj:process') && leaks.includes('fn:process'), String(leaks));
});

test('nothing the trigger can reach is a main-realm object', async () => {
    const src = `(function () {
      ${PROBES}
      var top = this;
      realm('compile-time this', top);
      return function probe(req, cb) {
        realm('req', req); realm('req.value', req.value); realm('req.schema', req.schema);
        realm('req.schema.n', req.schema.n); realm('req.headers', req.headers);
        realm('req.log', req.log); realm('req.log.info', req.log.info);
        realm('req.log.info()', req.log.info({ a: 1 }, 'msg', new Error('x')));
        realm('req.pg', req.pg); realm('req.pg.query', req.pg.query);
        var q = req.pg.query('rows', [1, new Date(5), new Uint8Array([3])]);
        realm('emitter', q); realm('emitter.on', q.on); realm('emitter.emit', q.emit);
        realm('emitter proto', Object.getPrototypeOf(q));
        realm('cb', cb); realm('require', require);
        var crc = require('crc'), mt = require('microtime');
        realm('crc', crc); realm('crc.crc32', crc.crc32); realm('crc.crc32.signed', crc.crc32.signed);
        realm('microtime', mt); realm('microtime.now', mt.now); realm('nowStruct', mt.nowStruct());
        realm('require error', caught(function () { require('fs'); }));
        realm('require non-string', caught(function () { require({ toString: function () { return 'x'; } }); }));
        realm('crc error', caught(function () { crc.crc32(Symbol('s')); }));
        realm('Error', Error); realm('globalThis', globalThis); realm('this', this);
        realm('new Error', new Error('e'));
        realm('caller', arguments.callee.caller);
        realm('cb.caller', caught(function () { return cb.caller; }));
        realm('Function.prototype', Function.prototype);
        realm('async ctor', (async function () {}).constructor);
        realm('generator ctor', (function* () {}).constructor);
        realm('async generator ctor', (async function* () {}).constructor);
        realm('eval error', caught(function () { eval('1'); }));
        realm('Function error', caught(function () { Function('return 1'); }));
        /* prepareStackTrace: locked, so no call sites */
        realm('prepareStackTrace set', caught(function () {
          'use strict'; Error.prepareStackTrace = function (e, t) { realm('trace', t); return t; };
        }));
        var st = new Error('s').stack;
        realm('stack', st);
        realm('Error replaced', caught(function () { 'use strict'; Error = { prepareStackTrace: 1 }; }));
        /* errors produced by wrappers near the stack limit */
        realm('overflow require', deep(function () { require('fs'); }));
        realm('overflow log', deep(function () { req.log.info('x'); }));
        realm('overflow query', deep(function () { req.pg.query('rows'); }));
        realm('overflow crc', deep(function () { crc.crc32('abc'); }));
        realm('overflow cb', deep(function () { cb(new Error('never')); }));
        Object.getOwnPropertyNames(globalThis).forEach(function (n) {
          try { realm('global ' + n, globalThis[n]); } catch (e) { }
        });
        var pending = 3;
        function done() {
          if (--pending > 0) { return; }
          /* a heard query error still fails the RPC: report through cb's error */
          var e = new Error(JSON.stringify({ leaks: leaks, checked: checked }));
          e.name = 'Report';
          cb(e);
        }
        q.on('row', function (row) {
          realm('row', row); realm('row.d', row.d); realm('row.b', row.b);
          realm('listener caller', arguments.callee.caller);
          realm('listener this', this);
        });
        q.on('end', function (r) { realm('end', r); realm('end.rows', r.rows); done(); });
        var qe = req.pg.query('timeout');
        qe.on('error', function (e) {
          realm('query error', e); realm('query error caller', arguments.callee.caller); done();
        });
        var qp = req.pg.query('pgerr');
        qp.on('error', function (e) { realm('pg error', e); done(); });
      };
    })()`;
    let v = { leaks: ['not run'], checked: 0 };
    await assert.rejects(run(src), (e: Error) => {
        assert.equal(e.name, 'Report', e.message);
        v = JSON.parse(e.message) as typeof v;
        return true;
    });
    assert.deepEqual(v.leaks, []);
    assert.ok(v.checked > 60, `probes ran: ${v.checked}`);
});

test('escape attempts do not reach process (classic one-liners)', async () => {
    const attempts = [
        'req.constructor.constructor("return process")()',
        'cb.constructor("return process")()',
        'require.constructor("return process")()',
        'req.log.info.constructor("return process")()',
        'req.pg.query.constructor("return process")()',
        'req.pg.query("x").constructor.constructor("return process")()',
        'require("crc").crc32.constructor("return process")()',
        'Error.constructor("return process")()',
        'this.constructor.constructor("return process")()',
        'globalThis.constructor.constructor("return process")()',
        '(async function () {}).constructor("return process")()',
        'Object.getPrototypeOf(function* () {}).constructor("return process")()',
        'process',
        'globalThis.process',
        '(function () { return this; })().process',
    ];
    for (const a of attempts) {
        const src = `function t(req, cb) {
          var p;
          try { p = (function () { return ${a}; }).call(this); } catch (e) { p = undefined; }
          if (p && typeof p.pid === 'number') { req.value.escaped = true; }
          req.value.tried = true;
          cb();
        }`;
        const { cookie } = await run(src);
        assert.deepEqual(cookie['value'], { n: 1, tried: true }, a);
    }
});

test('dynamic import() is refused (node 20 would answer it with a main-realm error)', async () => {
    await assert.rejects(run('function t(req, cb) { import("fs").then(function () { cb(); }, cb); }'),
        { name: 'Error', message: 'dynamic import() is not allowed in a trigger' });
    await assert.rejects(run('function t(req, cb) { import /* x */ ("fs"); cb(); }'),
        { message: 'dynamic import() is not allowed in a trigger' });
});

test('value and key mutations come back; replacing the value works', async () => {
    let r = await run('function t(req, cb) { req.value.x = [1, { y: 2 }]; req.key = "k2"; cb(); }');
    assert.deepEqual(r.cookie['value'], { n: 1, x: [1, { y: 2 }] });
    assert.equal(r.cookie['key'], 'k2');
    r = await run('function t(req, cb) { req.value = { replaced: true }; cb(); }');
    assert.deepEqual(r.cookie['value'], { replaced: true });
    /* the cookie carries bucket, schema, headers, update */
    r = await run('function t(req, cb) { req.value.seen = [req.bucket, Object.keys(req.schema), ' +
        'req.headers, req.update, typeof req.id]; cb(); }');
    assert.deepEqual((r.cookie['value'] as { seen: unknown }).seen,
        ['b', ['n'], { h: 1 }, false, 'undefined']);
    /* two triggers in order: the second sees the first's changes */
    const timeoutMs = 1000;
    const cookie: Record<string, unknown> = { bucket: 'b', key: 'k', value: { n: 1 }, schema: {},
        headers: {}, update: false };
    await runTriggers([
        new TriggerSandbox('function a(req, cb) { req.value.n++; cb(); }', timeoutMs),
        new TriggerSandbox('function b(req, cb) { req.value.n *= 10; cb(); }', timeoutMs),
    ], cookie, timeoutMs);
    assert.deepEqual(cookie['value'], { n: 20 });
});

test('cb(err), throws, require allowlist, extra cb calls', async () => {
    await assert.rejects(run('function t(req, cb) { var e = new Error("nope"); e.name = "Custom"; cb(e); }'),
        { name: 'Custom', message: 'nope' });
    await assert.rejects(run('function t(req, cb) { throw new TypeError("bad"); }'),
        { name: 'TypeError', message: 'bad' });
    await assert.rejects(run('function t(req, cb) { throw "str"; }'), { name: 'Error', message: 'str' });
    await assert.rejects(run('function t(req, cb) { require("fs"); }'),
        { name: 'InvalidRequireError', message: '"fs" is not a permitted module' });
    await assert.rejects(run('function t(req, cb) { setTimeout(cb, 1); }'),
        { name: 'ReferenceError', message: 'setTimeout is not defined' });
    const r = await run('function t(req, cb) { cb(); cb(new Error("late")); throw new Error("later"); }');
    assert.deepEqual(r.cookie['value'], { n: 1 });
    /* a value that cannot be serialised fails the trigger */
    await assert.rejects(run('function t(req, cb) { req.value.self = req.value; cb(); }'),
        { name: 'TypeError', message: /circular/ });
});

test('crc and microtime facades compute what the modules do', async () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const crc = require('crc') as { crc32: ((b: unknown, p?: number) => number) &
        { signed: (b: unknown) => number } ; crc16: (b: unknown) => number };
    const r = await run('function t(req, cb) { var c = require("crc"), m = require("microtime");\n' +
        'req.value.out = [typeof c, c.crc32("héllo"), c.crc32(new Uint8Array([1, 2, 3])),\n' +
        ' c.crc32("b", c.crc32("a")), c.crc32.signed("x"), c.crc16("abc"), c.crc32.model,\n' +
        ' typeof m.now(), typeof m.nowDouble(), Array.isArray(m.nowStruct())]; cb(); }');
    assert.deepEqual((r.cookie['value'] as { out: unknown }).out, [
        'object', crc.crc32('héllo'), crc.crc32(Buffer.from([1, 2, 3])), crc.crc32('b', crc.crc32('a')),
        crc.crc32.signed('x'), crc.crc16('abc'), 'crc-32', 'number', 'number', true,
    ]);
});

test('req.pg: rows, end, error events; Dates and bytes rebuilt; args passed through', async () => {
    const r = await run(`function t(req, cb) {
      var rows = [];
      var q = req.pg.query("rows", [1, "s", null, new Date(7), new Uint8Array([9]), { j: 1 }]);
      q.on("row", function (row) { rows.push([row.a, row.d instanceof Date && row.d.getTime(),
        row.b instanceof Uint8Array && Array.from(row.b)]); });
      q.once("end", function (res) {
        req.value.rows = rows; req.value.rowCount = res.rowCount;
        cb();
      });
    }`);
    const v = r.cookie['value'] as Record<string, unknown>;
    assert.deepEqual(v['rows'], [[1, 0, [1, 2]], [2, false, false]]);
    assert.equal(v['rowCount'], 2);
    /* the error event carries a context Error with the query error's fields */
    await assert.rejects(run(`function t(req, cb) {
      req.pg.query("pgerr").on("error", function (err) {
        var e = new Error(JSON.stringify([err.name, err.message, err.code, err instanceof Error]));
        e.name = "Report";
        cb(e);
      });
    }`), { name: 'Report', message: JSON.stringify(['error', 'relation "x" does not exist', '42P01', true]) });
    assert.deepEqual(r.pg.calls[0]!.values, [1, 's', null, new Date(7), Buffer.from([9]), { j: 1 }]);
});

test('req.pg: the failed query fails the RPC even when heard; cb(queryError) keeps the original error',
    async () => {
        /* the trigger hands the query's error to cb: the RPC fails with the original MorayError */
        await assert.rejects(run('function t(req, cb) { req.pg.query("timeout").on("error", cb); }'),
            (e: unknown) => e instanceof MorayError && e.name === 'QueryTimeoutError' &&
                (e.context as { sql?: string }).sql === 'timeout');
        /* nobody listens: cb() succeeded, settle fails with the query's error */
        await assert.rejects(run('function t(req, cb) { req.pg.query("pgerr"); cb(); }'),
            { name: 'error', message: 'relation "x" does not exist' });
        /* an event handler that throws fails the trigger */
        await assert.rejects(run('function t(req, cb) { req.pg.query("rows").on("row", function () ' +
            '{ throw new RangeError("in handler"); }); }'), { name: 'RangeError', message: 'in handler' });
    });

/*
 * Not tested: a loop in a promise job.  Without microtaskMode
 * 'afterEvaluate' it runs outside the time limit (hangs); with it, the
 * timeout aborts node when async hooks are active (see triggers.ts).
 */
test('time limits: loops in the trigger and in its event handlers', async () => {
    const t0 = Date.now();
    await assert.rejects(run('function t(req, cb) { for (;;) {} }', {}, { timeoutMs: 100 }),
        { name: 'Error', message: /^Script execution timed out/ });
    await assert.rejects(run('function t(req, cb) { req.pg.query("rows").on("end", function () ' +
        '{ for (;;) {} }); }', {}, { timeoutMs: 100 }), { message: /^Script execution timed out/ });
    assert.ok(Date.now() - t0 < 2000);
});

test('promises and async functions still call back, including from req.pg handlers', async () => {
    let r = await run('function t(req, cb) { Promise.resolve(5).then(function (x) { req.value.p = x; cb(); }); }');
    assert.equal((r.cookie['value'] as { p: number }).p, 5);
    r = await run(`function t(req, cb) {
      function q(sql) { return new Promise(function (res, rej) {
        var e = req.pg.query(sql); var n = 0;
        e.on("row", function () { n++; }); e.on("end", function () { res(n); }); e.on("error", rej); }); }
      (async function () { var a = await q("rows"); var b = await q("rows"); req.value.n = a + b; })()
        .then(function () { cb(); }, cb);
    }`);
    assert.equal((r.cookie['value'] as { n: number }).n, 4);
});

test('req.log reaches the logger (fields, message, errors)', async () => {
    const r = await run('function t(req, cb) { req.log.info({ a: 1 }, "hello %s", "x"); ' +
        'req.log.warn(new Error("w")); req.value.enabled = [req.log.debug(), req.log.trace()]; cb(); }');
    assert.deepEqual(r.lines[0], ['info', { a: 1 }, 'hello %s', 'x']);
    assert.equal(r.lines[1]![0], 'warn');
    assert.ok(r.lines[1]![1] instanceof Error);
    assert.equal((r.lines[1]![1] as Error).message, 'w');
    assert.deepEqual((r.cookie['value'] as { enabled: boolean[] }).enabled, [true, false]);
});

test('eval and new Function are disabled in the context', async () => {
    const r = await run('function t(req, cb) { var out = [];\n' +
        'try { eval("1"); out.push("eval"); } catch (e) { out.push(e.name); }\n' +
        'try { Function("return 1"); out.push("Function"); } catch (e) { out.push(e.name); }\n' +
        'req.value.out = out; cb(); }');
    assert.deepEqual((r.cookie['value'] as { out: string[] }).out, ['EvalError', 'EvalError']);
});

test('cost per trigger call', async () => {
    const timeoutMs = 1000;
    const sb = new TriggerSandbox('function t(req, cb) { req.value.s = "x"; cb(); }', timeoutMs);
    const cookie = () => ({ bucket: 'b', key: 'k', value: { n: 1, s: 'abc' }, schema: { n: {} },
        headers: {}, update: false, log: fakeLog().log });
    for (let i = 0; i < 200; i++) {
        await runTriggers([sb], cookie(), timeoutMs);
    }
    const N = 2000;
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < N; i++) {
        await runTriggers([sb], cookie(), timeoutMs);
    }
    const us = Number(process.hrtime.bigint() - t0) / 1000 / N;
    const c0 = process.hrtime.bigint();
    new TriggerSandbox('function t(req, cb) { cb(); }', timeoutMs);
    const compileMs = Number(process.hrtime.bigint() - c0) / 1e6;
    console.log(`# trigger call: ${us.toFixed(1)} µs; compile (new context): ${compileMs.toFixed(2)} ms`);
    assert.ok(us < 5000);
});

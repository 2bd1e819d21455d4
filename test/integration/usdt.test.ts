/*
 * Linux USDT end to end: the built addon carries SDT notes for every probe
 * of PROBE_TABLE, bpftrace lists them, and a bpftrace attached with -p to a
 * process that fires through the usdt backend sees every probe with the
 * right arguments; probe arguments are built only while it is attached.
 * Then every bpftrace twin in dtrace/linux runs against a process firing
 * request-shaped sequences, and tools/gcore-on-error stops and resumes a
 * process around its (stand-in) gcore.
 *
 * Needs Linux, root and bpftrace (CI installs it); skips, saying why,
 * otherwise.  Builds native/usdt if it is missing.
 */

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PROBE_TABLE } from '../../src/probes/table';
import { packageRoot } from '../../src/probes/package-root';
import { usdtAddonPath } from '../../src/probes/usdt-backend';
import { sdtName } from '../../tools/gen-usdt';
import { demoArgs } from '../../tools/probe-demo';
import { ensureUsdtAddon, tracingUnavailable } from '../helpers/harness';

const root = packageRoot();
const addon = usdtAddonPath({});

const skipReason = tracingUnavailable();
if (skipReason !== undefined) {
    process.stdout.write(`# usdt integration skipped: ${skipReason}\n`);
}

interface Demo { child: ChildProcess; pid: number; lines: string[] }

/* Start tools/probe-demo.ts and wait for its "ready" line. */
async function startDemo(t: TestContext, args: string[]): Promise<Demo> {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'tools/probe-demo.ts'),
        '--backend', 'usdt', ...args], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
    t.after(() => {
        child.kill('SIGKILL');
    });
    const lines: string[] = [];
    let buf = '';
    return new Promise((resolve, reject) => {
        child.stdout!.setEncoding('utf8');
        child.stdout!.on('data', (d: string) => {
            buf += d;
            let nl: number;
            while ((nl = buf.indexOf('\n')) >= 0) {
                const line = buf.slice(0, nl);
                buf = buf.slice(nl + 1);
                lines.push(line);
                const m = /^ready (\d+) (\S+)/.exec(line);
                if (m !== null) {
                    if (m[2] !== 'usdt') {
                        reject(new Error(`demo runs backend ${m[2]}, not usdt`));
                    }
                    resolve({ child, pid: Number(m[1]), lines });
                }
            }
        });
        child.on('exit', (code) => reject(new Error(`demo exited early (${code})`)));
    });
}

interface Run { stdout: string; stderr: string; code: number | null }

/* Run a command in its own process group; SIGINT the group after `ms`. */
function runFor(cmd: string, args: string[], ms: number, env: NodeJS.ProcessEnv = process.env,
    until?: (stdout: string) => boolean): Promise<Run> {
    return new Promise((resolve) => {
        const child = spawn(cmd, args, { cwd: root, env, detached: true,
            stdio: ['ignore', 'pipe', 'pipe'] });
        let stdout = '';
        let stderr = '';
        const stop = (): void => {
            try {
                process.kill(-child.pid!, 'SIGINT');
            } catch {
                /* already gone */
            }
        };
        const timer = setTimeout(stop, ms);
        const hard = setTimeout(() => child.kill('SIGKILL'), ms + 15000);
        child.stdout.on('data', (d: Buffer) => {
            stdout += d.toString();
            if (until?.(stdout) === true) {
                stop();
            }
        });
        child.stderr.on('data', (d: Buffer) => {
            stderr += d.toString();
        });
        child.on('close', (code) => {
            clearTimeout(timer);
            clearTimeout(hard);
            resolve({ stdout, stderr, code });
        });
    });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('usdt: ELF notes, bpftrace -l, every probe with its arguments', { skip: skipReason }, async (t) => {
    ensureUsdtAddon();

    await t.test('readelf -n shows one NT_STAPSDT note per probe', (t2) => {
        const r = spawnSync('readelf', ['-n', addon], { encoding: 'utf8' });
        if (r.error !== undefined) {
            t2.skip('readelf not installed');
            return;
        }
        const notes = [...r.stdout.matchAll(/Provider: (\S+)\s+Name: (\S+)\s+Location: \S+, Base: \S+, Semaphore: (\S+)\s+Arguments: ([^\n]*)/g)];
        assert.equal((r.stdout.match(/NT_STAPSDT/g) ?? []).length, PROBE_TABLE.length);
        for (const def of PROBE_TABLE) {
            const note = notes.find((n) => n[1] === def.provider && n[2] === sdtName(def.name));
            assert.ok(note, `note for ${def.provider}:${def.name}`);
            assert.notEqual(BigInt(note[3]!), 0n, 'has a semaphore');
            const args = note[4]!.trim().split(/\s+/).filter((a) => a !== '');
            assert.equal(args.length, def.args.length, `${def.name} argument count`);
            def.args.forEach(([, type], i) => {
                assert.match(args[i]!, type === 'int' ? /^-8@/ : /^8@/, `${def.name} arg${i}`);
            });
        }
    });

    await t.test('bpftrace -l lists every probe in the table', () => {
        const r = spawnSync('bpftrace', ['-l', `usdt:${addon}:*`], { encoding: 'utf8' });
        assert.equal(r.status, 0, r.stderr);
        const listed = new Set(r.stdout.split('\n').filter((l) => l !== '')
            .map((l) => l.split(':').slice(-2).join(':')));
        for (const def of PROBE_TABLE) {
            assert.ok(listed.has(`${def.provider}:${sdtName(def.name)}`), `${def.provider}:${def.name}`);
        }
        assert.equal(listed.size, PROBE_TABLE.length);
    });

    await t.test('bpftrace -p sees each probe fire with the right arguments', async (t2) => {
        const demo = await startDemo(t2, ['--mode', 'table', '--interval', '20', '--seconds', '40',
            '--report']);
        await sleep(700);
        assert.ok(demo.lines.includes('fired 0'), 'no tracer: no argument closure ran');

        const prog = PROBE_TABLE.map((def) => {
            const fmt = def.args.map(([, ty]) => (ty === 'int' ? '%d' : '%s')).join('|');
            const vals = def.args.map(([, ty], i) => (ty === 'int' ? `(int64)arg${i}` : `str(arg${i})`));
            return `usdt:${addon}:${def.provider}:${sdtName(def.name)} ` +
                `{ printf("P ${def.provider}:${def.name}|${fmt}\\n"${vals.map((v) => `, ${v}`).join('')}); }`;
        }).join('\n');
        const seen = new Map<string, string>();
        const run = await runFor('bpftrace', ['-p', String(demo.pid), '-e', prog], 20000,
            { ...process.env, BPFTRACE_STRLEN: '64' }, (out) => {
                for (const line of out.split('\n')) {
                    const m = /^P ([^|]+)\|?(.*)$/.exec(line);
                    if (m !== null && !seen.has(m[1]!)) {
                        seen.set(m[1]!, m[2]!);
                    }
                }
                return seen.size === PROBE_TABLE.length;
            });
        assert.match(run.stdout, new RegExp(`Attaching ${PROBE_TABLE.length} probes`));
        PROBE_TABLE.forEach((def, index) => {
            const got = seen.get(`${def.provider}:${def.name}`);
            assert.ok(got !== undefined, `${def.provider}:${def.name} never seen\n${run.stderr}`);
            const want = demoArgs(def, index).map((v, i) =>
                (def.args[i]![1] === 'json' ? JSON.stringify(v) : String(v))).join('|');
            assert.equal(got, want, `${def.provider}:${def.name} arguments`);
        });
        await sleep(700);
        const fired = demo.lines.filter((l) => l.startsWith('fired ')).map((l) => Number(l.slice(6)));
        assert.ok(fired[fired.length - 1]! > 0, 'closures ran while traced');
        /* detached: the semaphores are back to 0 and the count stops */
        const before = fired[fired.length - 1]!;
        await sleep(1100);
        const after = demo.lines.filter((l) => l.startsWith('fired ')).map((l) => Number(l.slice(6)));
        assert.equal(after[after.length - 1], before, 'no closure runs after bpftrace detached');
    });
});

/*
 * script -> [args, what its output must contain].  Scripts that print as
 * they go are stopped as soon as everything matched (10 s at most); those
 * that print on exit get 3.5 s of traffic.
 */
const STREAMING = new Set(['moraystat', 'moray-queries', 'findslow']);
const TWINS: Record<string, [string[], RegExp[]]> = {
    'moraystat': [[], [/PID\s+CONN\s+QLEN\s+OPS\s+GETS\s+FIND\s+PUTS\s+UPDS\s+DELS\s+BTCH\s+RIDX/,
        /^\d+\s+\d+\s+\d+\s+[1-9]\d*\s+[1-9]\d*\s+[1-9]\d*\s+[1-9]\d*\s+0\s+[1-9]\d*\s+0\s+0$/m]],
    'moray-queries': [[], [/^\d{4} \w{3} [ \d]\d \d\d:\d\d:\d\d\s+\d+ [0-9a-f-]{36} start SELECT \* FROM bucket\d WHERE _key = \$1$/m,
        /^\d{4} \w{3} [ \d]\d \d\d:\d\d:\d\d\s+\d+ [0-9a-f-]{36} done \d+us$/m,
        /^\d{4} \w{3} [ \d]\d \d\d:\d\d:\d\d\s+\d+ [0-9a-f-]{36} error \d+us error: canceling statement/m]],
    'findslow': [['10'], [/^MS\s+BUCKET\s+RECORDS\s+FILTER$/m,
        /^[1-9]\d+\s+bucket\d\s+\d+\s+\(name=key\d\)$/m]],
    'get_latency': [[], [/@lat\[bucket\d, key\d\]:/]],
    'put_latency': [[], [/@lat\[bucket\d, key\d\]:/]],
    'del_latency': [[], [/@lat\[bucket\d, key\d\]:/]],
    'find_latency': [[], [/@lat\[bucket\d, \(name=key\d\), \d+\]:/]],
    'rpc-latency': [['bucket'], [/@lat\[getObject, bucket\d\]:/, /@lat\[findObjects, bucket\d\]:/,
        /@errs\[\w+, ObjectNotFoundError\]: \d+/]],
};

test('bpftrace twins run against a process and print what their D scripts print',
    { skip: skipReason, concurrency: 2 }, async (t) => {
        ensureUsdtAddon();
        const demo = await startDemo(t, ['--mode', 'rpc', '--interval', '5', '--seconds', '120']);
        const scripts = fs.readdirSync(path.join(root, 'dtrace/linux'))
            .filter((f) => f.endsWith('.bt')).map((f) => f.slice(0, -3));
        assert.deepEqual(scripts.sort(), Object.keys(TWINS).sort());
        const runs: Promise<void>[] = [];
        for (const name of scripts) {
            runs.push(t.test(name, async () => {
                const [args, expect] = TWINS[name]!;
                const streaming = STREAMING.has(name);
                const run = await runFor(path.join(root, 'tools/bt'),
                    [name, String(demo.pid), ...args], streaming ? 10000 : 3500, process.env,
                    streaming ? (out) => expect.every((re) => re.test(out)) : undefined);
                assert.doesNotMatch(run.stderr, /ERROR|error:/i, run.stderr);
                for (const re of expect) {
                    assert.match(run.stdout, re, `${name} output:\n${run.stdout.slice(0, 2000)}`);
                }
            }));
        }
        await Promise.all(runs);
    });

test('tools/gcore-on-error stops the process for gcore and resumes it', { skip: skipReason },
    async (t) => {
        ensureUsdtAddon();
        const demo = await startDemo(t, ['--mode', 'rpc', '--interval', '5', '--seconds', '60']);
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gcore-on-error-'));
        t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
        /* stand-in for gcore: records the process state it found */
        const fake = path.join(dir, 'fake-gcore');
        fs.writeFileSync(fake, '#!/bin/sh\n' +
            'awk \'/^State:/ { print $2 }\' /proc/$3/status > "$2.$3"\n', { mode: 0o755 });
        const run = await runFor(path.join(root, 'tools/gcore-on-error'),
            ['-p', String(demo.pid), '-e', 'ObjectNotFound', '-w', 'handler', '-d', dir],
            20000, { ...process.env, GCORE_CMD: fake });
        assert.equal(run.code, 0, run.stderr);
        assert.match(run.stdout, /pid \d+ handler-error: ObjectNotFoundError: demo error: gcore/);
        const cores = fs.readdirSync(dir).filter((f) => f.startsWith('core.'));
        assert.equal(cores.length, 1);
        assert.match(cores[0]!, new RegExp(`^core\\.\\d+\\.${demo.pid}$`));
        assert.equal(fs.readFileSync(path.join(dir, cores[0]!), 'utf8').trim(), 'T',
            'stopped while cored');
        await sleep(200);
        const state = fs.readFileSync(`/proc/${demo.pid}/status`, 'utf8').match(/^State:\s+(\S)/m)?.[1];
        assert.notEqual(state, 'T', 'resumed afterwards');
    });

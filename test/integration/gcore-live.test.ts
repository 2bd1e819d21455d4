/*
 * tools/gcore-on-error against a REAL running server, with the real
 * bpftrace and the real gdb: a request fails, the server is cored at that
 * moment, and it keeps serving.
 *
 *   pinger ──ping every 100 ms──────────────────────────────┐
 *   client ──getObject(B, <marker>-i) every 150 ms──► server pid P (MORAY_PROBES=usdt)
 *                                                      │ handler-error "ObjectNotFoundError: ..."
 *   tools/gcore-on-error -p P -w handler               ▼
 *     -e ObjectNotFoundError -n 1 -d DIR      bpftrace: SIGSTOP P, system(helper)
 *                                                      │
 *                       helper: madvise(DONTDUMP) the reservations, gcore,
 *                       madvise(DODUMP), detach; SIGCONT P ──► DIR/core.<ms>.P
 *
 * Checked: the tool exits 0 after one core; the core is an ELF core of P
 * (readelf -h; gdb -c core shows LWP P with musdt_fire, the probe site,
 * on top); it is small (the reservations were left out: < 1 GiB where
 * plain gcore writes ~11 GB); it holds the failing request's key (the JS
 * heap is in it); P has the same MADV_DONTDUMP mappings as before; every
 * ping during and after was answered.  The core is deleted afterwards.
 *
 * Needs Linux, root, bpftrace and gdb (CI installs both); skips, saying
 * why, otherwise.  Builds native/usdt if it is missing.  Takes a few
 * seconds.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
    ROOT, call, errName, morayClient, usdtServerFile, type MorayClient,
} from '../helpers/harness';

const fx = usdtServerFile('gcore-live integration', 'gcorelive', ['gdb']);
const skipReason = fx.skipReason;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/* mappings of a process marked MADV_DONTDUMP ("dd" in smaps VmFlags) */
function dontDump(pid: number): string[] {
    const out: string[] = [];
    let range = '';
    for (const line of fs.readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
        const m = /^([0-9a-f]+-[0-9a-f]+) /.exec(line);
        if (m !== null) {
            range = m[1]!;
        } else if (line.startsWith('VmFlags:') && line.split(/\s+/).includes('dd')) {
            out.push(range);
        }
    }
    return out;
}

/* does the file contain these bytes?  (read in chunks: cores are big) */
function fileContains(file: string, text: string): boolean {
    const needle = Buffer.from(text, 'latin1');
    const fd = fs.openSync(file, 'r');
    try {
        const chunk = Buffer.alloc(16 << 20);
        let carry = Buffer.alloc(0);
        for (;;) {
            const n = fs.readSync(fd, chunk, 0, chunk.length, null);
            if (n === 0) {
                return false;
            }
            const buf = Buffer.concat([carry, chunk.subarray(0, n)]);
            if (buf.includes(needle)) {
                return true;
            }
            carry = Buffer.from(buf.subarray(Math.max(0, buf.length - needle.length + 1)));
        }
    } finally {
        fs.closeSync(fd);
    }
}

const B = 'gcore_live';
test('gcore-on-error cores a live server at a failing request, and it keeps serving',
    { skip: skipReason, timeout: 60000 }, async (t) => {
        const srv = fx.srv;
        const pid = srv.proc.pid!;
        assert.match(fs.readFileSync(`/proc/${pid}/maps`, 'utf8'), /moray_usdt\.node$/m,
            'server runs the usdt backend');
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gcore-live-'));
        t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
        const ddBefore = dontDump(pid);

        const client: MorayClient = await morayClient(srv.port);
        const pinger: MorayClient = await morayClient(srv.port);
        t.after(() => {
            client.close();
            pinger.close();
        });
        await call(client, 'createBucket', B, { index: {} }, {});

        /* ping all along; every ping must be answered (late is fine) */
        const pings: { ok: boolean; ms: number; at: number; err?: string }[] = [];
        let pinging = true;
        const pingLoop = (async () => {
            while (pinging) {
                const t0 = Date.now();
                try {
                    await call(pinger, 'ping', {});
                    pings.push({ ok: true, ms: Date.now() - t0, at: Date.now() });
                } catch (err) {
                    pings.push({ ok: false, ms: Date.now() - t0, at: Date.now(), err: String(err) });
                }
                await sleep(100);
            }
        })();

        const tool = spawn(path.join(ROOT, 'tools/gcore-on-error'), ['-p', String(pid), '-w', 'handler',
            '-e', 'ObjectNotFoundError', '-n', '1', '-d', dir],
        { cwd: ROOT, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
        let stdout = '';
        let stderr = '';
        tool.stdout.on('data', (d: Buffer) => {
            stdout += d.toString();
        });
        tool.stderr.on('data', (d: Buffer) => {
            stderr += d.toString();
        });
        const started = Date.now();
        let exitCode: number | null | undefined;
        let exitSignal: NodeJS.Signals | null = null;
        const closed = new Promise<void>((r) => tool.on('close', (code, signal) => {
            exitCode = code;
            exitSignal = signal;
            r();
        }));
        const killGroup = (sig: NodeJS.Signals): void => {
            try {
                process.kill(-tool.pid!, sig);
            } catch {
                /* gone */
            }
        };
        t.after(async () => {
            if (exitCode === undefined) {
                killGroup('SIGINT');
                const hard = setTimeout(() => killGroup('SIGKILL'), 10000);
                await closed;
                clearTimeout(hard);
            }
        });

        /*
         * Fail requests until the tool has taken its core and exited: the
         * first ones may come before bpftrace has armed the probe.
         */
        const marker = `gcore-live-${randomBytes(6).toString('hex')}`;
        let failed = 0;
        for (let i = 0; exitCode === undefined && Date.now() - started < 40000; i++) {
            await assert.rejects(call(client, 'getObject', B, `${marker}-${i}`, {}),
                (err) => errName(err) === 'ObjectNotFoundError');
            failed++;
            await sleep(150);
        }
        if (exitCode === undefined) {
            killGroup('SIGINT');
            await Promise.race([closed, sleep(10000)]);
            assert.fail(`the tool did not exit after ${failed} errors\nstdout: ${stdout}\nstderr: ${stderr}`);
        }
        await closed;
        const toolMs = Date.now() - started;
        assert.equal(exitCode, 0, `exit ${exitCode} ${exitSignal}\nstdout: ${stdout}\nstderr: ${stderr}`);

        /* the probe fired for one of our keys, and the helper wrote a trimmed core */
        const fired = new RegExp(`pid ${pid} handler-error: ObjectNotFoundError: ${B}::(${marker}-\\d+) ` +
            'does not exist: gcore').exec(stdout);
        assert.ok(fired, `no probe line\nstdout: ${stdout}\nstderr: ${stderr}`);
        const key = fired[1]!;
        assert.match(stderr, new RegExp(`process ${pid} state T: dumping to`), stderr);
        assert.match(stderr, /leaving out [1-9]\d* reserved-only mappings/, stderr);
        assert.doesNotMatch(stderr, /only \d+ of \d+ madvise calls|still MADV_DONTDUMP|gcore failed/, stderr);
        const wrote = /wrote (\S+) \((\d+) MiB\) in (\d+\.\d+)s; resuming/.exec(stderr);
        assert.ok(wrote, stderr);

        const cores = fs.readdirSync(dir).filter((f) => f.startsWith('core.'));
        assert.equal(cores.length, 1, `cores: ${cores.join(' ')}`);
        assert.match(cores[0]!, new RegExp(`^core\\.\\d+\\.${pid}$`));
        const core = path.join(dir, cores[0]!);
        assert.equal(wrote[1], core);
        const size = fs.statSync(core).size;
        t.diagnostic(`core ${size >> 20} MiB in ${wrote[3]} s; tool ran ${toolMs} ms, ` +
            `${failed} requests failed`);
        t.after(() => fs.rmSync(core, { force: true }));

        /* an ELF core of that process, stopped at the probe site */
        const elf = spawnSync('readelf', ['-h', core], { encoding: 'utf8' });
        assert.equal(elf.status, 0, elf.stderr);
        assert.match(elf.stdout, /Type:\s+CORE \(Core file\)/);
        const gdb = spawnSync('gdb', ['--nx', '--batch', '-iex', 'set debuginfod enabled off',
            '-ex', 'info threads', '-ex', 'bt 1', fs.readlinkSync(`/proc/${pid}/exe`), '-c', core],
        { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 30000 });
        assert.equal(gdb.status, 0, gdb.stderr);
        assert.match(gdb.stdout + gdb.stderr, new RegExp(`\\(LWP ${pid}\\)`), gdb.stdout);
        assert.match(gdb.stdout, /^#0 .* in musdt_fire \(\)/m, `not stopped at the probe:\n${gdb.stdout}`);

        /* small: the reservations are out (plain gcore: ~11 GB, ~30 GB under tsx) */
        assert.ok(size < 1 << 30, `core is ${size} bytes`);
        /* the heap is in: the failing request's key */
        assert.ok(fileContains(core, key), `core lacks ${key}`);
        fs.rmSync(core, { force: true });

        /* the process is as before: running, same MADV_DONTDUMP mappings */
        const state = /^State:\s+(\S)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
        assert.notEqual(state, 'T', 'resumed');
        assert.deepEqual(dontDump(pid), ddBefore, 'MADV_DONTDUMP flags put back');

        /* it kept serving: every ping answered, some after the core */
        const coreAt = Date.now();
        await call(client, 'getObject', B, `${marker}-after`, {}).catch((err) => {
            assert.equal(errName(err), 'ObjectNotFoundError');
        });
        while (!pings.some((p) => p.at > coreAt)) {
            await sleep(50);
        }
        pinging = false;
        await pingLoop;
        assert.deepEqual(pings.filter((p) => !p.ok), [], 'failed pings');
        assert.equal(srv.proc.exitCode, null, 'server still running');
        t.diagnostic(`${pings.length} pings, slowest ${Math.max(...pings.map((p) => p.ms))} ms`);
    });

/*
 * bench-probes: what a probe costs the server, in ns per call.
 *
 *   node --import tsx tools/bench-probes.ts [--iterations N] [--traced]
 *
 * Each case runs in its own process (a fresh V8, so one backend's shapes do
 * not deopt another's) and reports the best of 5 rounds:
 *
 *   noop fire()            handle.fire(closure), no-op backend (the default
 *                          off state: one call, one flag read)
 *   usdt fire() untraced   usdt backend, nobody attached: the semaphore read
 *                          through the shared Uint16Array, closure not run
 *   usdt enabled() native  the addon's C enabled(idx), for comparison with
 *                          the typed-array read above
 *   usdt fire() traced     (--traced, root + bpftrace) a bpftrace attached
 *                          to this process with an empty action: closure,
 *                          conversion, C call, uprobe trap
 *
 * The closure builds a 5-argument putobject-start array, as the server does.
 */

import { spawn, spawnSync } from 'node:child_process';
import { installBackend, noopBackend, probe } from '../src/probes/index';
import { createUsdtBackend, loadUsdtAddon, usdtAddonPath } from '../src/probes/usdt-backend';

type CaseName = 'noop' | 'usdt' | 'native-enabled' | 'traced';

function measure(iterations: number, body: (n: number) => void): number {
    let best = Infinity;
    body(Math.min(iterations, 100000));            /* warm up, let V8 optimise */
    for (let round = 0; round < 5; round++) {
        const t0 = process.hrtime.bigint();
        body(iterations);
        const ns = Number(process.hrtime.bigint() - t0) / iterations;
        best = Math.min(best, ns);
    }
    return best;
}

let sink = 0;

function fireLoop(n: number): void {
    const h = probe('moray', 'putobject-start');
    for (let i = 0; i < n; i++) {
        h.fire(() => [i, 'a-req-id', 'bucket', 'key', '{"value":1}']);
    }
}

async function runCase(name: CaseName, iterations: number): Promise<void> {
    let ns: number;
    switch (name) {
    case 'noop':
        installBackend(noopBackend);
        ns = measure(iterations, fireLoop);
        break;
    case 'usdt':
        installBackend(createUsdtBackend(loadUsdtAddon()));
        ns = measure(iterations, fireLoop);
        break;
    case 'native-enabled': {
        const addon = loadUsdtAddon();
        const idx = addon.probes.findIndex((p) => p.name === 'putobject-start');
        ns = measure(iterations, (n) => {
            for (let i = 0; i < n; i++) {
                if (addon.enabled(idx)) {
                    sink++;
                }
            }
        });
        break;
    }
    case 'traced': {
        installBackend(createUsdtBackend(loadUsdtAddon()));
        const h = probe('moray', 'putobject-start');
        const bt = spawn('bpftrace', ['-p', String(process.pid), '-e',
            `usdt:${usdtAddonPath()}:moray:putobject__start { @n = count(); }`],
        { stdio: ['ignore', 'ignore', 'ignore'] });
        const deadline = Date.now() + 30000;
        while (!h.enabled() && Date.now() < deadline) {
            await new Promise((r) => setTimeout(r, 100));
        }
        if (!h.enabled()) {
            bt.kill('SIGKILL');
            throw new Error('bpftrace did not attach');
        }
        ns = measure(Math.max(1, Math.floor(iterations / 20)), fireLoop);
        bt.kill('SIGINT');
        break;
    }
    }
    process.stdout.write(`${JSON.stringify({ name, ns, sink })}\n`);
}

const LABELS: Record<CaseName, string> = {
    'noop': 'noop fire()',
    'usdt': 'usdt fire() untraced',
    'native-enabled': 'usdt enabled() native',
    'traced': 'usdt fire() traced',
};

function main(): void {
    const argv = process.argv.slice(2);
    const at = argv.indexOf('--iterations');
    const iterations = at >= 0 ? Number(argv[at + 1]) : 20_000_000;
    const ci = argv.indexOf('--case');
    if (ci >= 0) {
        runCase(argv[ci + 1] as CaseName, iterations).catch((err: unknown) => {
            process.stderr.write(`${(err as Error).message}\n`);
            process.exit(1);
        });
        return;
    }
    const cases: CaseName[] = ['noop', 'usdt', 'native-enabled'];
    if (argv.includes('--traced')) {
        cases.push('traced');
    }
    process.stdout.write(`node ${process.version}, ${iterations} iterations, best of 5\n`);
    for (const c of cases) {
        const r = spawnSync(process.execPath, [...process.execArgv, __filename, '--case', c,
            '--iterations', String(iterations)], { encoding: 'utf8' });
        if (r.status !== 0) {
            process.stdout.write(`${LABELS[c].padEnd(24)} unavailable: ${r.stderr.trim().split('\n')[0]}\n`);
            continue;
        }
        const { ns } = JSON.parse(r.stdout.trim().split('\n').pop()!) as { ns: number };
        process.stdout.write(`${LABELS[c].padEnd(24)} ${ns.toFixed(2).padStart(9)} ns/call\n`);
    }
}

if (require.main === module) {
    main();
}

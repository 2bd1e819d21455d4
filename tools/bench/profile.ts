/*
 * Summaries of V8 .cpuprofile files (node --cpu-prof), parsed by hand.
 *
 *   { nodes: [{ id, callFrame: { functionName, url, lineNumber }, children }],
 *     samples: [nodeId ...], timeDeltas: [µs ...] }
 *
 *   sample i hit node samples[i]; it lasted until the next sample, i.e.
 *   timeDeltas[i+1] µs  ──► self time per node ──► grouped two ways:
 *
 *     by function  "name  file:line"          (top N self-time entries)
 *     by module    src/fast/encoder.js, pg-protocol, node:internal/streams,
 *                  (garbage collector), (program), ...
 *
 * "(idle)" is time the event loop waited; it is reported apart and every
 * share is of busy (non-idle) time.  Given the number of operations the
 * profiled server completed, self times are also shown as µs per
 * operation, which adds up to the server's CPU per operation (the profile
 * sees the main thread only; GC helper threads are not in it).
 */

import * as fs from 'node:fs';
import * as path from 'node:path';
import { REPO_ROOT } from './server-process';

interface CallFrame {
    functionName: string;
    url: string;
    lineNumber: number;
}

interface ProfileNode {
    id: number;
    callFrame: CallFrame;
}

interface CpuProfile {
    nodes: ProfileNode[];
    samples: number[];
    timeDeltas: number[];
}

export interface ProfileEntry {
    name: string;
    selfMs: number;
    /* share of busy time */
    share: number;
    microsPerOp: number | null;
}

export interface ProfileSummary {
    file: string;
    busyMs: number;
    idleMs: number;
    ops: number | null;
    topFunctions: ProfileEntry[];
    topModules: ProfileEntry[];
}

function shortUrl(url: string): string {
    let u = url.replace(/^file:\/\//, '');
    const nm = u.lastIndexOf('/node_modules/');
    if (nm !== -1) {
        return u.slice(nm + '/node_modules/'.length);
    }
    if (u.startsWith(REPO_ROOT + '/')) {
        u = u.slice(REPO_ROOT.length + 1);
    }
    return u.replace(/^dist\//, '');
}

/* The "module" a frame belongs to: a repo file, an npm package, a node: area, or a VM pseudo-frame. */
function moduleOf(cf: CallFrame): string {
    if (cf.url === '') {
        return cf.functionName.startsWith('(') ? cf.functionName : '(native)';
    }
    const u = shortUrl(cf.url);
    if (u.startsWith('node:')) {
        const parts = u.split('/');
        return parts.length > 2 ? `${parts[0]}/${parts[1]}` : parts[0]!;
    }
    if (!u.startsWith('/') && !u.startsWith('src/') && !u.startsWith('tools/') && u.includes('/')) {
        const parts = u.split('/');
        return parts[0]!.startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0]!;
    }
    return u;
}

function rank(map: Map<string, number>, busy: number, ops: number | null, n: number): ProfileEntry[] {
    return [...map.entries()].sort((a, b) => b[1] - a[1]).slice(0, n).map(([name, us]) => ({
        name,
        selfMs: us / 1000,
        share: busy > 0 ? us / busy : 0,
        microsPerOp: ops === null || ops === 0 ? null : us / ops,
    }));
}

/*
 * `window` (ms since the profile started, i.e. about since the process was
 * spawned) keeps only the samples of the load phase, leaving out start-up
 * (module loading, compilation) and shutdown.
 */
export function summarizeProfile(file: string, ops: number | null, top = 25,
    window?: { from: number; to: number }): ProfileSummary {
    const p = JSON.parse(fs.readFileSync(file, 'utf8')) as CpuProfile;
    const byId = new Map<number, ProfileNode>();
    for (const n of p.nodes) {
        byId.set(n.id, n);
    }
    const self = new Map<number, number>();
    let at = 0;
    for (let i = 0; i < p.samples.length; i++) {
        at += p.timeDeltas[i] ?? 0;
        if (window !== undefined && (at < window.from * 1000 || at > window.to * 1000)) {
            continue;
        }
        const dt = p.timeDeltas[i + 1] ?? p.timeDeltas[i] ?? 0;
        const id = p.samples[i]!;
        self.set(id, (self.get(id) ?? 0) + Math.max(0, dt));
    }
    const fns = new Map<string, number>();
    const mods = new Map<string, number>();
    let idle = 0;
    let busy = 0;
    for (const [id, us] of self) {
        const cf = byId.get(id)!.callFrame;
        if (cf.functionName === '(idle)') {
            idle += us;
            continue;
        }
        busy += us;
        const where = cf.url === '' ? '' : ` ${shortUrl(cf.url)}:${cf.lineNumber + 1}`;
        const fname = `${cf.functionName || '(anonymous)'}${where}`;
        fns.set(fname, (fns.get(fname) ?? 0) + us);
        const m = moduleOf(cf);
        mods.set(m, (mods.get(m) ?? 0) + us);
    }
    return {
        file, busyMs: busy / 1000, idleMs: idle / 1000, ops,
        topFunctions: rank(fns, busy, ops, top),
        topModules: rank(mods, busy, ops, top),
    };
}

/* The newest .cpuprofile in a directory. */
export function latestProfile(dir: string): string | null {
    const files = fs.readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'))
        .map((f) => path.join(dir, f));
    if (files.length === 0) {
        return null;
    }
    return files.sort((a, b) => fs.statSync(b).mtimeMs - fs.statSync(a).mtimeMs)[0]!;
}

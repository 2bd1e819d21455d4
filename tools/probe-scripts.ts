/*
 * probe-scripts: read the D scripts in dtrace/ and their bpftrace twins in
 * dtrace/linux/ well enough to check them against PROBE_TABLE (which probes
 * each clause enables, which argN it reads) and to list, per probe, the
 * scripts that use it (docs/probes.md).
 *
 * Not a D or bpftrace parser: a scanner for the one shape both languages
 * share at top level,
 *
 *     probe-spec[, probe-spec...]  [ /predicate/ ]  { body }
 *
 * after removing comments, string literals (their text can hold braces or
 * slashes) and preprocessor / shebang lines.  Top-level declarations ending
 * in ';' are skipped.  Probe specs:
 *
 *     D:         moray*:::getobject-start   moray$target:::x   fastserver1234:::x
 *     bpftrace:  usdt:<file or *>:moray:getobject__start
 *
 * Names may use * and ? globs; they are expanded against the table.
 */

import * as fs from 'node:fs';
import * as path from 'node:path';
import { PROBE_TABLE, type ProbeDef } from '../src/probes/table';

export type ScriptKind = 'd' | 'bt';

export interface ProbeRef {
    readonly spec: string;
    readonly provider: string;
    /* table spelling (dashes), possibly a glob */
    readonly name: string;
}

export interface Clause {
    readonly line: number;
    readonly specs: readonly string[];
    /* the moray / fastserver / usdt probes among the specs */
    readonly probes: readonly ProbeRef[];
    /* highest argN / args[N] read in predicate or body; -1 if none */
    readonly maxArg: number;
}

/* Replace comments and string literals by spaces (newlines kept). */
export function stripCommentsAndStrings(src: string): string {
    let out = '';
    let i = 0;
    while (i < src.length) {
        const c = src[i]!;
        const next = src[i + 1];
        if (c === '/' && next === '*') {
            const end = src.indexOf('*/', i + 2);
            const stop = end < 0 ? src.length : end + 2;
            out += src.slice(i, stop).replace(/[^\n]/g, ' ');
            i = stop;
        } else if (c === '/' && next === '/') {
            const end = src.indexOf('\n', i);
            const stop = end < 0 ? src.length : end;
            out += ' '.repeat(stop - i);
            i = stop;
        } else if (c === '"') {
            let j = i + 1;
            while (j < src.length && src[j] !== '"') {
                j += src[j] === '\\' ? 2 : 1;
            }
            out += '""' + ' '.repeat(Math.max(0, j - i - 1));
            i = j + 1;
        } else {
            out += c;
            i++;
        }
    }
    /* preprocessor directives, #pragma, shebang */
    return out.replace(/^[ \t]*#.*$/gm, '');
}

function lineOf(text: string, index: number): number {
    let n = 1;
    for (let i = 0; i < index; i++) {
        if (text[i] === '\n') {
            n++;
        }
    }
    return n;
}

function probeRef(spec: string, kind: ScriptKind): ProbeRef | undefined {
    if (kind === 'd') {
        const m = /^(moray|fastserver)[^:]*:[^:]*:[^:]*:(.+)$/.exec(spec);
        return m === null ? undefined : { spec, provider: m[1]!, name: m[2]! };
    }
    const m = /^usdt:[^:]*:([^:]+):(.+)$/.exec(spec);
    return m === null ? undefined : { spec, provider: m[1]!, name: m[2]!.replace(/__/g, '-') };
}

/*
 * Where the predicate starts: the first '/' that is not part of a file path
 * in a probe spec (a path starts with '/' right after ':' and runs to the
 * next ':', as in usdt:/opt/moray/x.node:moray:ping__start).
 */
function predicateStart(header: string): number {
    let inPath = false;
    for (let i = 0; i < header.length; i++) {
        const c = header[i];
        if (c === ':') {
            inPath = false;
        } else if (c === '/') {
            if (inPath) {
                continue;
            }
            if (i > 0 && header[i - 1] === ':') {
                inPath = true;
                continue;
            }
            return i;
        }
    }
    return -1;
}

export function parseScript(src: string, kind: ScriptKind): Clause[] {
    const text = stripCommentsAndStrings(src);
    const clauses: Clause[] = [];
    let i = 0;
    while (i < text.length) {
        const open = text.indexOf('{', i);
        if (open < 0) {
            if (text.slice(i).trim() !== '') {
                throw new Error(`trailing text at line ${lineOf(text, i)}`);
            }
            break;
        }
        let header = text.slice(i, open);
        const semi = header.lastIndexOf(';');
        let headerStart = i;
        if (semi >= 0) {
            headerStart = i + semi + 1;
            header = header.slice(semi + 1);
        }
        let depth = 0;
        let close = open;
        for (; close < text.length; close++) {
            if (text[close] === '{') {
                depth++;
            } else if (text[close] === '}') {
                depth--;
                if (depth === 0) {
                    break;
                }
            }
        }
        if (depth !== 0) {
            throw new Error(`unbalanced braces from line ${lineOf(text, open)}`);
        }
        const slash = predicateStart(header);
        const probePart = slash < 0 ? header : header.slice(0, slash);
        const predicate = slash < 0 ? '' : header.slice(slash);
        const specs = probePart.split(',').map((s) => s.trim()).filter((s) => s !== '');
        if (specs.length === 0) {
            throw new Error(`clause without probes at line ${lineOf(text, open)}`);
        }
        const code = predicate + text.slice(open, close + 1);
        let maxArg = -1;
        for (const m of code.matchAll(/\barg(\d+)\b|\bargs\[(\d+)\]/g)) {
            maxArg = Math.max(maxArg, Number(m[1] ?? m[2]));
        }
        const probes = specs.map((s) => probeRef(s, kind))
            .filter((p): p is ProbeRef => p !== undefined);
        const firstNonSpace = headerStart + (header.length - header.trimStart().length);
        clauses.push({ line: lineOf(text, firstNonSpace), specs, probes, maxArg });
        i = close + 1;
    }
    return clauses;
}

function globToRegExp(glob: string): RegExp {
    const esc = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
    return new RegExp(`^${esc}$`);
}

/* The table entries a reference names (empty: unknown probe). */
export function resolveProbe(ref: ProbeRef, table: readonly ProbeDef[] = PROBE_TABLE): ProbeDef[] {
    const re = globToRegExp(ref.name);
    return table.filter((d) => d.provider === ref.provider && re.test(d.name));
}

export interface ScriptFile {
    readonly file: string;      /* relative to the package root */
    readonly kind: ScriptKind;
    readonly clauses: readonly Clause[];
}

/* Every .d in dtrace/ and .bt in dtrace/linux/, sorted by path. */
export function readScripts(root: string): ScriptFile[] {
    const out: ScriptFile[] = [];
    const add = (dir: string, ext: string, kind: ScriptKind): void => {
        const abs = path.join(root, dir);
        if (!fs.existsSync(abs)) {
            return;
        }
        for (const f of fs.readdirSync(abs).sort()) {
            if (f.endsWith(ext)) {
                const rel = path.join(dir, f);
                out.push({ file: rel, kind,
                    clauses: parseScript(fs.readFileSync(path.join(root, rel), 'utf8'), kind) });
            }
        }
    };
    add('dtrace', '.d', 'd');
    add(path.join('dtrace', 'linux'), '.bt', 'bt');
    return out;
}

/* Probe key (provider:name) -> script files that enable it. */
export function probeUsage(scripts: readonly ScriptFile[]): Map<string, string[]> {
    const usage = new Map<string, string[]>();
    for (const s of scripts) {
        for (const c of s.clauses) {
            for (const ref of c.probes) {
                for (const def of resolveProbe(ref)) {
                    const key = `${def.provider}:${def.name}`;
                    const list = usage.get(key) ?? [];
                    if (!list.includes(s.file)) {
                        list.push(s.file);
                    }
                    usage.set(key, list);
                }
            }
        }
    }
    return usage;
}

/*
 * Validate a parsed config object against CONFIG_SCHEMA: every problem is
 * collected (not just the first), unknown keys are named, defaults are
 * filled in, and the result is deep-frozen.  A failure is an operational
 * error (bad config), reported by main.ts as one fatal record listing all
 * problems, then exit 2.
 */

import { CONFIG_SCHEMA, type KeySpec } from './schema';

export class ConfigError extends Error {
    constructor(readonly problems: string[]) {
        super('invalid configuration:\n  ' + problems.join('\n  '));
        this.name = 'InvalidMorayConfigError';
    }
}

function typeOk(spec: KeySpec, v: unknown): boolean {
    switch (spec.type) {
    case 'any': return true;
    case 'string': return typeof v === 'string' && v.length > 0;
    case 'boolean': return typeof v === 'boolean';
    case 'integer': return Number.isInteger(v);
    case 'number-or-false': return v === false || Number.isInteger(v);
    case 'object': return typeof v === 'object' && v !== null && !Array.isArray(v);
    }
}

const TYPE_TEXT: Record<KeySpec['type'], string> = {
    any: 'anything', string: 'a non-empty string', boolean: 'a boolean',
    integer: 'an integer', 'number-or-false': 'an integer (or false)', object: 'an object',
};

function check(path: string, keys: Readonly<Record<string, KeySpec>>,
    input: Record<string, unknown>, problems: string[]): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(input)) {
        if (!Object.prototype.hasOwnProperty.call(keys, k)) {
            problems.push(`${path}${k}: unknown key`);
        }
    }
    for (const [k, spec] of Object.entries(keys)) {
        const name = path + k;
        let v = input[k];
        if (v === undefined) {
            if (spec.required) {
                problems.push(`${name}: required`);
            } else if (spec.default !== undefined) {
                out[k] = spec.default;
            } else if (spec.type === 'object' && spec.keys && !spec.open &&
                Object.values(spec.keys).every((c) => !c.required) &&
                Object.values(spec.keys).some((c) => c.default !== undefined)) {
                /* a section of defaults (limits, features): fill it in */
                out[k] = check(name + '.', spec.keys, {}, problems);
            }
            continue;
        }
        if (!typeOk(spec, v)) {
            problems.push(`${name}: must be ${TYPE_TEXT[spec.type]}, got ${JSON.stringify(v)}`);
            continue;
        }
        if (v === false && spec.type === 'number-or-false') {
            v = 0;
        }
        if (typeof v === 'number') {
            if (spec.min !== undefined && v < spec.min) {
                problems.push(`${name}: must be >= ${spec.min}, got ${v}`);
            }
            if (spec.max !== undefined && v > spec.max) {
                problems.push(`${name}: must be <= ${spec.max}, got ${v}`);
            }
        }
        if (spec.enum && !spec.enum.includes(v as string)) {
            problems.push(`${name}: must be one of ${spec.enum.join(', ')}, got ${JSON.stringify(v)}`);
        }
        if (spec.type === 'object' && spec.keys && !spec.open) {
            out[k] = check(name + '.', spec.keys, v as Record<string, unknown>, problems);
        } else {
            out[k] = v;
        }
    }
    return out;
}

function deepFreeze<T>(o: T): T {
    if (typeof o === 'object' && o !== null) {
        for (const v of Object.values(o)) {
            deepFreeze(v);
        }
        Object.freeze(o);
    }
    return o;
}

export function validateConfig(input: unknown, opts: { fromFile: boolean }): Record<string, unknown> {
    const problems: string[] = [];
    if (typeof input !== 'object' || input === null || Array.isArray(input)) {
        throw new ConfigError(['config: must be a JSON object']);
    }
    const out = check('', CONFIG_SCHEMA, input as Record<string, unknown>, problems);
    if (opts.fromFile) {
        for (const k of ['server_uuid', 'datacenter']) {
            if (out[k] === undefined) {
                problems.push(`${k}: required`);
            }
        }
    }
    if (problems.length > 0) {
        throw new ConfigError(problems);
    }
    return deepFreeze(out);
}

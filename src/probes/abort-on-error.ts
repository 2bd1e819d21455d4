/*
 * Development crash switch: abort the server, and so get a core dump with
 * the failing request's stack, the moment a request fails.
 *
 *   moray-server --abort-on-error[=TEXT]     (flag, parsed by main.ts)
 *   MORAY_ABORT_ON_ERROR=TEXT|1              (environment)
 *
 *   TEXT absent, "1" or "*": any failure; otherwise only failures whose
 *   error text contains TEXT (e.g. ObjectNotFoundError, "duplicate key").
 *
 * Where it runs: next to the two probes that report failures, with the
 * same text they fire (err.toString()):
 *
 *   pipeline step failed ──► handler-error probe ──► abortOnError('handler-error', text)
 *   SQL statement failed ──► query-error probe   ──► abortOnError('query-error', text)
 *
 * process.abort() raises SIGABRT synchronously, so the core (ulimit -c,
 * core_pattern) shows the JavaScript stack of the failure itself, which
 * mdb/llnode can read.  This is for development and tests: in production
 * use tools/gcore-on-error, which takes a core through the probes without
 * killing the process (its --abort option is this switch, from outside).
 *
 * Off by default; when off the cost is one boolean test.
 */

export type AbortErrorKind = 'handler-error' | 'query-error';

interface AbortConfig {
    /* undefined: any error */
    readonly match: string | undefined;
    readonly abort: () => never;
}

let config: AbortConfig | undefined;

/* The value of MORAY_ABORT_ON_ERROR, as a spec for configureAbortOnError. */
export function abortOnErrorFromEnv(env: NodeJS.ProcessEnv = process.env): string | undefined {
    const v = env['MORAY_ABORT_ON_ERROR'];
    return v === undefined || v === '' || v === '0' ? undefined : v;
}

/*
 * spec: undefined/false = off; true, '1', '*' = any error; other string =
 * substring of the error text.  `abort` is replaceable for tests.
 */
export function configureAbortOnError(spec: string | boolean | undefined,
    abort: () => never = () => process.abort()): void {
    if (spec === undefined || spec === false || spec === '') {
        config = undefined;
        return;
    }
    const match = spec === true || spec === '1' || spec === '*' ? undefined : spec;
    config = { match, abort };
}

export function abortOnErrorEnabled(): boolean {
    return config !== undefined;
}

export function abortOnError(kind: AbortErrorKind, errorText: string): void {
    if (config === undefined) {
        return;
    }
    if (config.match !== undefined && !errorText.includes(config.match)) {
        return;
    }
    process.stderr.write(`moray: --abort-on-error: ${kind}: ${errorText}: aborting\n`);
    config.abort();
}

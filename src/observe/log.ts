/*
 * The bunyan logger (observability.md §5).
 *
 * Name `moray`, JSON records on stderr, level from LOG_LEVEL (default info).
 * Each -v lowers the level one step (info → debug → trace) and makes the
 * server ignore the config's `bunyan` section; at debug or lower, records
 * carry `src`.  Without -v the config may set `bunyan.level` and send
 * records to syslog instead of stderr.
 *
 * `src` works around bunyan 1.8.15 on Node 20, whose own caller lookup
 * yields `src: {}`: log-probe.ts fills it in (enableSourceLocations), at
 * the price of one stack capture per record, only in -v mode.
 *
 * Live snooping of records below the level (tools/snoop) is log-probe.ts.
 */

import * as bunyan from 'bunyan';
import type { Config } from '../config';
import { syslogStream } from './syslog';
import { enableSourceLocations } from './log-probe';

const STEPS = [bunyan.TRACE, bunyan.DEBUG, bunyan.INFO, bunyan.WARN, bunyan.ERROR, bunyan.FATAL];

export type MorayLogger = bunyan;

function levelOf(name: string | undefined, fallback: number): number {
    if (name === undefined) {
        return fallback;
    }
    const n = bunyan.resolveLevel(name as bunyan.LogLevel);
    return typeof n === 'number' && STEPS.includes(n) ? n : fallback;
}

export function createLogger(env: NodeJS.ProcessEnv = process.env): bunyan {
    return bunyan.createLogger({
        name: 'moray',
        level: levelOf(env['LOG_LEVEL'], bunyan.INFO) as bunyan.LogLevel,
        stream: process.stderr,
        serializers: bunyan.stdSerializers,
    });
}

/* Apply -v and the config's bunyan section; returns the logger to use. */
export function configureLogger(log: bunyan, cfg: Config, verbose: number): bunyan {
    if (verbose > 0) {
        let idx = STEPS.indexOf(log.level());
        idx = Math.max(0, (idx === -1 ? 2 : idx) - verbose);
        const level = STEPS[idx]!;
        if (level <= bunyan.DEBUG) {
            const verboseLog = bunyan.createLogger({
                name: 'moray', level: level as bunyan.LogLevel, stream: process.stderr,
                serializers: bunyan.stdSerializers, src: true,
            });
            enableSourceLocations(verboseLog);
            return verboseLog;
        }
        log.level(level as bunyan.LogLevel);
        return log;
    }
    const b = cfg.bunyan;
    if (b?.level !== undefined) {
        log.level(levelOf(b.level, log.level()) as bunyan.LogLevel);
    }
    if (b?.syslog !== undefined) {
        return bunyan.createLogger({
            name: 'moray', level: log.level() as bunyan.LogLevel,
            streams: [{ type: 'raw', level: log.level() as bunyan.LogLevel,
                stream: syslogStream(b.syslog) }],
            serializers: bunyan.stdSerializers,
        });
    }
    return log;
}

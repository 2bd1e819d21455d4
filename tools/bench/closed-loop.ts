/*
 * A closed-loop load driver: C slots, each with exactly one operation in
 * flight, so "concurrency" is the number of requests in flight in total.
 *
 *   slot 0:  [op]──►[op]──►[op]──► ...        each completion issues the
 *   slot 1:  [op]──►[op]──►[op]──► ...        next op of the same slot
 *   ...
 *
 *   time ──► | warm-up (unrecorded) | measured window        | drain |
 *            t0                     tm  onMeasureStart()     te      all slots idle
 *                                       onMeasureEnd() at te ─┘
 *
 * Throughput counts operations that *complete* inside [tm, te]; their
 * latencies (issue → completion, client-side) feed the recorder.  At te the
 * slots stop issuing and the loop resolves once the last in-flight
 * operation has returned, so the next cell starts from quiet.  The
 * measurement hooks let the caller sample CPU exactly at tm and te.
 *
 * Errors are counted, not fatal: the first message is kept for the report
 * so that a broken cell is visible instead of silently fast.
 */

import { performance } from 'node:perf_hooks';
import { LatencyRecorder, type LatencySummary } from './latency';

/* Start one operation for `slot`; call done exactly once. */
export type IssueFn = (slot: number, done: (err: Error | null) => void) => void;

export interface LoopOptions {
    concurrency: number;
    warmupMs: number;
    durationMs: number;
    onMeasureStart?: () => void;
    onMeasureEnd?: () => void;
}

export interface LoopResult {
    ops: number;
    errors: number;
    firstError: string | null;
    /* measured window, ms */
    elapsedMs: number;
    opsPerSec: number;
    latency: LatencySummary;
    /* the load generator's event-loop utilisation over the measured window (1 = saturated) */
    elu: number;
}

const Phase = { WARMUP: 0, MEASURE: 1, DRAIN: 2 } as const;
type Phase = typeof Phase[keyof typeof Phase];

export function runClosedLoop(issue: IssueFn, o: LoopOptions): Promise<LoopResult> {
    return new Promise((resolve) => {
        const rec = new LatencyRecorder();
        let phase: Phase = Phase.WARMUP;
        let measureStart = 0;
        let measureEnd = 0;
        let ops = 0;
        let errors = 0;
        let firstError: string | null = null;
        let active = o.concurrency;
        let elu0 = performance.eventLoopUtilization();
        let elu = 0;

        const finish = () => {
            const elapsedMs = measureEnd - measureStart;
            resolve({ ops, errors, firstError, elapsedMs,
                opsPerSec: elapsedMs > 0 ? ops / (elapsedMs / 1000) : 0,
                latency: rec.summary(), elu });
        };

        const go = (slot: number) => {
            if (phase === Phase.DRAIN) {
                if (--active === 0) {
                    finish();
                }
                return;
            }
            const t = performance.now();
            issue(slot, (err) => {
                if (phase === Phase.MEASURE) {
                    if (err === null) {
                        ops++;
                        rec.record(performance.now() - t);
                    } else {
                        errors++;
                        firstError ??= err.message;
                    }
                } else if (err !== null && firstError === null && phase === Phase.WARMUP) {
                    firstError = err.message;
                    errors++;
                }
                go(slot);
            });
        };

        setTimeout(() => {
            o.onMeasureStart?.();
            measureStart = performance.now();
            elu0 = performance.eventLoopUtilization();
            phase = Phase.MEASURE;
            setTimeout(() => {
                measureEnd = performance.now();
                elu = performance.eventLoopUtilization(elu0).utilization;
                o.onMeasureEnd?.();
                phase = Phase.DRAIN;
            }, o.durationMs);
        }, o.warmupMs);

        for (let s = 0; s < o.concurrency; s++) {
            go(s);
        }
    });
}

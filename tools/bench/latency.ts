/*
 * Client-side latency samples and their percentiles.
 *
 * Every completed operation's latency (ms, from performance.now()) is kept
 * in a growing Float64Array; percentiles come from one sort at the end, so
 * they are exact (no histogram buckets).  A 5 s cell at 40k ops/s is 200k
 * samples = 1.6 MB: cheap, and recording costs one store per operation.
 *
 *   record(ms) ──► [ f64 f64 f64 ... | free ]  (doubles when full)
 *   summary()  ──► sort a copy ──► p50 / p99 / p99.9 / mean / max
 */

export interface LatencySummary {
    count: number;
    mean: number;
    p50: number;
    p99: number;
    p999: number;
    max: number;
}

export class LatencyRecorder {
    private buf = new Float64Array(4096);
    private n = 0;

    get count(): number {
        return this.n;
    }

    record(ms: number): void {
        if (this.n === this.buf.length) {
            const next = new Float64Array(this.buf.length * 2);
            next.set(this.buf);
            this.buf = next;
        }
        this.buf[this.n++] = ms;
    }

    reset(): void {
        this.n = 0;
    }

    summary(): LatencySummary {
        return summarize(this.buf.subarray(0, this.n));
    }
}

/* Nearest-rank percentile of sorted samples. */
function rank(sorted: Float64Array, q: number): number {
    if (sorted.length === 0) {
        return NaN;
    }
    const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
    return sorted[i]!;
}

export function summarize(samples: Float64Array | readonly number[]): LatencySummary {
    const sorted = Float64Array.from(samples).sort();
    let sum = 0;
    for (const v of sorted) {
        sum += v;
    }
    return {
        count: sorted.length,
        mean: sorted.length === 0 ? NaN : sum / sorted.length,
        p50: rank(sorted, 0.5),
        p99: rank(sorted, 0.99),
        p999: rank(sorted, 0.999),
        max: sorted.length === 0 ? NaN : sorted[sorted.length - 1]!,
    };
}

/*
 * Prometheus metrics with the reference names, types, help texts and labels
 * (observability.md §9), from a small hand-written registry.
 *
 * Why not artedi (the reference's library): it costs 8–35 µs per histogram
 * observation here, which would be a visible share of a ~40 µs getObject;
 * this registry costs well under a microsecond (an array index and two
 * additions), see docs/dependencies.md.  Label sets are built once per
 * method and cached.
 *
 * Static labels on every series: datacenter, server, zonename, pid,
 * service (when configured).
 */

import * as os from 'node:os';
import type { MorayServer } from '../app';

export const REQUEST_TIME_BUCKETS = [
    0.0002, 0.0004, 0.0006, 0.0008, 0.001, 0.002, 0.004, 0.006, 0.008, 0.01,
    0.02, 0.04, 0.06, 0.08, 0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40,
    60, 80, 100,
] as const;

class Histogram {
    readonly counts = new Float64Array(REQUEST_TIME_BUCKETS.length + 1);
    sum = 0;
    count = 0;

    observe(v: number): void {
        let i = 0;
        while (i < REQUEST_TIME_BUCKETS.length && v > REQUEST_TIME_BUCKETS[i]!) {
            i++;
        }
        this.counts[i]!++;
        this.sum += v;
        this.count++;
    }
}

export class MorayMetrics {
    readonly completed = new Map<string, number>();
    readonly latency = new Map<string, Histogram>();
    readonly poolEvents = new Map<string, number>();
    listenConnections = 0;
    errorsByName = new Map<string, number>();

    requestDone(method: string, seconds: number, errorName: string | null): void {
        this.completed.set(method, (this.completed.get(method) ?? 0) + 1);
        let h = this.latency.get(method);
        if (h === undefined) {
            h = new Histogram();
            this.latency.set(method, h);
        }
        h.observe(seconds);
        if (errorName !== null) {
            const k = `${method}\u0000${errorName}`;
            this.errorsByName.set(k, (this.errorsByName.get(k) ?? 0) + 1);
        }
    }
}

function esc(v: string): string {
    return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function labels(pairs: [string, string][]): string {
    return '{' + pairs.map(([k, v]) => `${k}="${esc(v)}"`).join(',') + '}';
}

function fmt(n: number): string {
    return Number.isInteger(n) ? String(n) : String(n);
}

export function staticLabels(server: MorayServer): [string, string][] {
    const c = server.config;
    const l: [string, string][] = [
        ['datacenter', c.datacenter], ['server', c.server_uuid],
        ['zonename', os.hostname()], ['pid', String(process.pid)],
    ];
    if (c.service_name !== undefined) {
        l.push(['service', c.service_name]);
    }
    return l;
}

export function metricsOf(services: { ext: Record<string, unknown> }): MorayMetrics {
    let m = services.ext['metrics'] as MorayMetrics | undefined;
    if (m === undefined) {
        m = new MorayMetrics();
        services.ext['metrics'] = m;
    }
    return m;
}

export function renderMetrics(server: MorayServer): string {
    const m = metricsOf(server.services);
    const st = staticLabels(server);
    const out: string[] = [];
    const family = (name: string, type: string, help: string) => {
        out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    };
    family('fast_requests_completed', 'counter', 'count of fast requests completed');
    for (const [method, n] of m.completed) {
        out.push(`fast_requests_completed${labels([['rpcMethod', method], ...st])} ${n}`);
    }
    family('fast_server_request_time_seconds', 'histogram', 'total time to process fast requests');
    for (const [method, h] of m.latency) {
        const base: [string, string][] = [['rpcMethod', method], ...st, ['buckets_version', '1']];
        let cum = 0;
        REQUEST_TIME_BUCKETS.forEach((le, i) => {
            cum += h.counts[i]!;
            out.push(`fast_server_request_time_seconds${labels([...base, ['le', String(le)]])} ${cum}`);
        });
        cum += h.counts[REQUEST_TIME_BUCKETS.length]!;
        out.push(`fast_server_request_time_seconds${labels([...base, ['le', '+Inf']])} ${cum}`);
        out.push(`fast_server_request_time_seconds_count${labels(base)} ${h.count}`);
        out.push(`fast_server_request_time_seconds_sum${labels(base)} ${fmt(h.sum)}`);
    }
    const ps = server.pool.stats();
    const gauge = (name: string, help: string, v: number) => {
        family(name, 'gauge', help);
        out.push(`${name}${labels(st)} ${v}`);
    };
    gauge('postgres_connections_open', 'count of open postgres connections', ps.total);
    gauge('postgres_connections_pending', 'count of pending postgres connections', ps.pending);
    gauge('postgres_connections_available', 'count of available postgres connections', ps.idle);
    gauge('request_queue_depth', 'number of queued requests', ps.waiters);
    gauge('postgres_standalone_connections_open', 'count of open standalone postgres connections',
        m.listenConnections);
    /* added: the Fast layer's drop/reject counters and errors by name */
    const fc = server.fast.counters;
    family('moray_fast_connections_active', 'gauge', 'open client connections');
    out.push(`moray_fast_connections_active${labels(st)} ${fc.nConnectionsActive}`);
    family('moray_fast_protocol_errors_total', 'counter',
        'connections closed for malformed input, by reason');
    for (const [reason, n] of Object.entries(fc.protocolErrors)) {
        out.push(`moray_fast_protocol_errors_total${labels([['reason', reason], ...st])} ${n}`);
    }
    family('moray_rpc_errors_total', 'counter', 'RPCs that failed, by method and error name');
    for (const [k, n] of m.errorsByName) {
        const [method, name] = k.split('\u0000') as [string, string];
        out.push(`moray_rpc_errors_total${labels([['rpcMethod', method], ['error', name], ...st])} ${n}`);
    }
    family('moray_pool_events_total', 'counter', 'PostgreSQL pool events');
    for (const [k, n] of Object.entries(server.pool.counters)) {
        out.push(`moray_pool_events_total${labels([['evt', k], ...st])} ${n}`);
    }
    return out.join('\n') + '\n';
}

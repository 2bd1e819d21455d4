/*
 * findObjects back-pressure, end to end: a client that does not read must
 * not make the server buffer the result (moray-api.md §7.9, STYLE habit 8).
 *
 *   200,000 rows (~780 B of JSON each, ~173 MB of DATA frames in total)
 *   inserted with generate_series
 *        │
 *   raw socket ── findObjects(noLimit) ──► server ──► PostgreSQL portal
 *   (paused 6 s)                             ▲             │
 *        │                                   └─ paused ◄───┘ (pg socket)
 *        ▼
 *   sample the server's VmRSS every 500 ms; check that PostgreSQL is
 *   waiting on the server (wait_event ClientRead: the portal is suspended
 *   and the server has stopped asking for the next batch, or ClientWrite);
 *   then read everything and count the records.
 *
 * Bounds (stated, asserted):
 *   - over the whole run the server's RSS stays within +100 MiB of its idle
 *     baseline, while the response is ~173 MB (without back-pressure the
 *     frames and the row objects behind them would pile up in the server);
 *   - while the client is paused, RSS is flat (less than 16 MiB between the
 *     samples of the last 3 s of a 6 s pause): nothing accumulates over time.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { encodeFrame } from '../../src/fast/encoder';
import { FastDecoder } from '../../src/fast/decoder';
import { createBucket, find, objectsFixture } from './objects-shared';

const fx = objectsFixture('objmem');

/* MORAY_MEMORY_ROWS=1000000 for the full-size check (docs/performance.md) */
const ROWS = Number(process.env['MORAY_MEMORY_ROWS'] ?? 200000);
const PAD = 700;
const RSS_BOUND_MIB = 100;
const PAUSED_FLAT_MIB = 16;

function rssMiB(pid: number): number {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = /VmRSS:\s+(\d+) kB/.exec(status);
    assert.ok(m, 'VmRSS in /proc/<pid>/status');
    return Number(m[1]) / 1024;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let ready: Promise<void> | null = null;
function setup(): Promise<void> {
    if (ready === null) {
        ready = (async () => {
            await createBucket(fx.c, 'mem', { index: { n: { type: 'number' } } });
            const pad = 'x'.repeat(PAD);
            await fx.db.query("INSERT INTO mem (_key, _value, _etag, _mtime, n) SELECT 'k' || i, " +
                `'{"n":' || i || ',"pad":"${pad}"}', 'ABCDEF01', 1, i ` +
                `FROM generate_series(1, ${ROWS}) AS i`);
            await fx.db.query('ANALYZE mem');
        })();
    }
    return ready;
}

interface SlowRead {
    records: number;
    bytes: number;
    pausedBytes: number;
    end: boolean;
    error: { name: string; message: string } | null;
    pausedSamples: number[];
    readingSamples: number[];
    waitingForUs: number;
}

/* Send one findObjects on a raw socket, do not read for `pauseMs`, then read it all. */
async function slowRead(options: Record<string, unknown>, pauseMs: number): Promise<SlowRead> {
    const pid = fx.srv.proc.pid!;
    const sock = net.connect(fx.srv.port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => {
        sock.once('connect', () => resolve());
        sock.once('error', reject);
    });
    const dec = new FastDecoder({ maxFrameBytes: 1 << 24 });
    const out: SlowRead = { records: 0, bytes: 0, pausedBytes: 0, end: false, error: null,
        pausedSamples: [], readingSamples: [], waitingForUs: 0 };
    sock.on('data', (chunk: Buffer) => {
        out.bytes += chunk.length;
        dec.write(chunk);
        let m;
        while ((m = dec.read()) !== undefined) {
            if (m.status === 1) {
                out.records++;
            } else if (m.status === 2) {
                out.end = true;
            } else {
                out.error = m.data.d as unknown as SlowRead['error'];
            }
        }
    });
    sock.pause();
    sock.write(encodeFrame(2, 1, 1, 'findObjects', ['mem', '(n>=1)', options]));
    for (let t = 0; t < pauseMs; t += 500) {
        await sleep(500);
        out.pausedSamples.push(rssMiB(pid));
        const r = await fx.db.query('SELECT wait_event FROM pg_stat_activity WHERE ' +
            "query LIKE '%FROM mem WHERE%' AND state = 'active' AND pid <> pg_backend_pid()");
        if (r.rows.some((row) => row.wait_event === 'ClientRead' ||
            row.wait_event === 'ClientWrite')) {
            out.waitingForUs++;
        }
    }
    out.pausedBytes = out.bytes;
    sock.resume();
    const deadline = Date.now() + 40000 * Math.max(1, ROWS / 200000);
    while (!out.end && out.error === null && Date.now() < deadline) {
        await sleep(500);
        out.readingSamples.push(rssMiB(pid));
    }
    sock.destroy();
    return out;
}

test(`findObjects noLimit over ${ROWS} rows to a client that reads slowly: server RSS ` +
    `stays within +${RSS_BOUND_MIB} MiB, every row arrives`, async () => {
    await setup();
    const pid = fx.srv.proc.pid!;
    /* warm up the code paths once, then take the baseline */
    assert.equal((await find(fx.c, 'mem', '(n<=10)')).length, 10);
    await sleep(300);
    const baseline = rssMiB(pid);

    /* a bigger table takes longer to produce its first (counted) row: pause longer */
    const r = await slowRead({ noLimit: true }, 6000 * Math.max(1, ROWS / 500000));
    assert.equal(r.error, null, `error: ${JSON.stringify(r.error)}`);
    assert.ok(r.end, 'END arrived');
    assert.equal(r.records, ROWS, 'every row arrived');
    assert.equal(r.pausedBytes, 0, 'nothing was read while paused');
    /*
     * The server stopped asking for rows: the backend sits in its portal
     * waiting for the next Execute (ClientRead), or blocked sending (ClientWrite).
     */
    assert.ok(r.waitingForUs >= 6, `PostgreSQL waited on the server in ${r.waitingForUs}/` +
        `${r.pausedSamples.length} samples`);

    const all = [...r.pausedSamples, ...r.readingSamples];
    const peak = Math.max(...all);
    /* the second half of the pause: well after PostgreSQL produced its first rows */
    const flat = r.pausedSamples.slice(-6);
    const drift = Math.max(...flat) - Math.min(...flat);
    const total = r.bytes / (1024 * 1024);
    // eslint-disable-next-line no-console
    console.log(`# baseline ${baseline.toFixed(1)} MiB, peak ${peak.toFixed(1)} MiB ` +
        `(+${(peak - baseline).toFixed(1)}), paused drift ${drift.toFixed(1)} MiB, ` +
        `response ${total.toFixed(1)} MiB; samples ${all.map((x) => x.toFixed(0)).join(' ')}`);
    assert.ok(total > 150, `the response (${total.toFixed(1)} MiB) dwarfs the bound`);
    assert.ok(peak - baseline < RSS_BOUND_MIB, `RSS grew by ${(peak - baseline).toFixed(1)} MiB`);
    assert.ok(drift < PAUSED_FLAT_MIB, `RSS drifted by ${drift.toFixed(1)} MiB while paused`);
});

test('a client that goes away mid-stream stops the query; the server keeps serving',
    async () => {
        await setup();
        const activeFinds = async (): Promise<number> => (await fx.db.query(
            "SELECT count(*)::int AS n FROM pg_stat_activity WHERE query LIKE '%FROM mem WHERE%' " +
            "AND state <> 'idle' AND pid <> pg_backend_pid()")).rows[0].n;
        for (const options of [{ noLimit: true, no_count: true }, { noLimit: true }]) {
            const sock = net.connect(fx.srv.port, '127.0.0.1');
            await new Promise<void>((resolve) => sock.once('connect', () => resolve()));
            let got = 0;
            const firstData = new Promise<void>((resolve) => sock.once('data', (d: Buffer) => {
                got += d.length;
                resolve();
            }));
            sock.write(encodeFrame(2, 1, 1, 'findObjects', ['mem', '(n>=1)', options]));
            await firstData;
            assert.ok(got > 0);
            sock.destroy();
            const until = Date.now() + 5000;
            while (await activeFinds() > 0 && Date.now() < until) {
                await sleep(100);
            }
            assert.equal(await activeFinds(), 0, 'the abandoned query is gone');
        }
        assert.equal((await find(fx.c, 'mem', '(n<=5)')).length, 5);
        assert.equal(fx.srv.proc.exitCode, null);
    });

/*
 * moray-api.md §3: `timeout` bounds the time to a query's FIRST row (or
 * completion), not its total duration.  Here the first rows come at once
 * (no_count: no window count to materialise), then the client stalls for
 * 2.5 s with timeout 1000: the stream must finish, as with the reference.
 */
test('options.timeout bounds the time to the first row, not a slow reader\'s stream',
    async () => {
        await setup();
        const r = await slowRead({ noLimit: true, no_count: true, timeout: 1000 }, 2500);
        assert.equal(r.error, null, `error: ${JSON.stringify(r.error)}`);
        assert.equal(r.records, ROWS);
    });

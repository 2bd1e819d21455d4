/*
 * The Fast server through the real node-fast 3.1.3 client and hand-built
 * frames: both protocol versions, unknown methods, every malformed-input
 * case closing only its own connection, pipelining, the frame-size limit,
 * a client that never reads, and the process surface (ping/version through
 * the npm moray client, SIGTERM draining).
 */

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { call, morayClient, startServer, testDatabase, errName,
    type ServerProcess, type TestDatabase } from '../helpers/harness';
import { encodeFrame } from '../../src/fast/encoder';
import { FastDecoder } from '../../src/fast/decoder';
import type { FastMessage } from '../../src/fast/message';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const fast = require('fast');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const bunyan = require('bunyan');

let db: TestDatabase;
let srv: ServerProcess;

before(async () => {
    db = await testDatabase('fast');
    srv = await startServer({ db });
});

after(async () => {
    await srv?.stop();
    await db?.drop();
});

function connect(port: number): Promise<net.Socket> {
    return new Promise((resolve, reject) => {
        const s = net.connect(port, '127.0.0.1', () => resolve(s));
        s.once('error', reject);
    });
}

/* A raw connection: send frames, collect decoded replies, see when it closes. */
class Raw {
    readonly msgs: FastMessage[] = [];
    closed: Promise<void>;
    private readonly dec = new FastDecoder({ maxFrameBytes: 1 << 26 });
    private waiters: (() => void)[] = [];

    constructor(readonly sock: net.Socket) {
        sock.on('data', (d) => {
            this.dec.write(d);
            let m;
            while ((m = this.dec.read()) !== undefined) {
                this.msgs.push(m);
            }
            this.waiters.splice(0).forEach((w) => w());
        });
        this.closed = new Promise((r) => sock.once('close', () => r()));
        sock.on('error', () => undefined);
    }

    static async open(): Promise<Raw> {
        return new Raw(await connect(srv.port));
    }

    async waitFor(n: number, ms = 5000): Promise<void> {
        const until = Date.now() + ms;
        while (this.msgs.length < n) {
            if (Date.now() > until) {
                throw new Error(`timed out waiting for ${n} messages (have ${this.msgs.length})`);
            }
            await new Promise<void>((r) => {
                this.waiters.push(r);
                setTimeout(r, 50);
            });
        }
    }

    send(buf: Buffer): void {
        this.sock.write(buf);
    }
}

function req(version: 1 | 2, msgid: number, method: string, args: unknown[]): Buffer {
    return encodeFrame(version, 1, msgid, method, args);
}

async function isClosedSoon(raw: Raw, ms = 3000): Promise<boolean> {
    return Promise.race([raw.closed.then(() => true),
        new Promise<boolean>((r) => setTimeout(() => r(false), ms))]);
}

describe('Fast protocol', () => {
    test('version and ping through the npm moray client', async () => {
        const c = await morayClient(srv.port);
        try {
            const v = await new Promise<number>((resolve, reject) => {
                c.versionInternal({}, (err: Error | null, ver: number) =>
                    err ? reject(err) : resolve(ver));
            });
            assert.equal(v, 2);
            await call(c, 'ping', {});
            await call(c, 'ping', { deep: true });
        } finally {
            c.close();
        }
    });

    test('version 1 and version 2 requests get answers in their own version', async () => {
        const raw = await Raw.open();
        raw.send(Buffer.concat([req(2, 1, 'version', [{}]), req(1, 2, 'version', [{}])]));
        await raw.waitFor(4);
        const byId = (id: number) => raw.msgs.filter((m) => m.msgid === id);
        assert.deepEqual(byId(1).map((m) => [m.version, m.status]), [[2, 1], [2, 2]]);
        assert.deepEqual(byId(2).map((m) => [m.version, m.status]), [[1, 1], [1, 2]]);
        assert.deepEqual(byId(1)[0]!.data.d, [{ version: 2 }]);
        raw.sock.destroy();
    });

    test('node-fast client: unknown method gets FastError, connection stays usable', async () => {
        const sock = await connect(srv.port);
        const client = new fast.FastClient({
            log: bunyan.createLogger({ name: 't', level: 'fatal' }),
            nRecentRequests: 10, transport: sock,
        });
        const rpc = (method: string, args: unknown[]) => new Promise<{ err: any; data: unknown[] }>((resolve) => {
            const r = client.rpc({ rpcmethod: method, rpcargs: args });
            const data: unknown[] = [];
            r.on('data', (d: unknown) => data.push(d));
            r.on('end', () => resolve({ err: null, data }));
            r.on('error', (err: unknown) => resolve({ err, data }));
        });
        const bad = await rpc('bogus', []);
        const cause = bad.err.cause();
        const inner = cause.cause ? cause.cause() : cause;
        assert.equal(inner.name, 'FastError');
        assert.equal(inner.message, 'unsupported RPC method: "bogus"');
        const ok = await rpc('version', [{}]);
        assert.equal(ok.err, null);
        assert.deepEqual(ok.data, [{ version: 2 }]);
        client.detach();
        sock.destroy();
    });

    test('not-well-formed request gets FastError bad_data, connection stays open', async () => {
        const raw = await Raw.open();
        raw.send(encodeFrame(2, 1, 7, '', []));
        raw.send(req(2, 8, 'version', [{}]));
        await raw.waitFor(3);
        const err = raw.msgs.find((m) => m.msgid === 7)!;
        assert.equal(err.status, 3);
        assert.equal((err.data.d as any).name, 'FastError');
        assert.equal((err.data.d as any).message, 'RPC request is not well-formed');
        assert.equal((err.data.d as any).info.fastReason, 'bad_data');
        raw.sock.destroy();
    });

    test('client ERROR frames are ignored', async () => {
        const raw = await Raw.open();
        raw.send(encodeFrame(2, 3, 5, 'x', { name: 'RPCCanceled', message: 'cancel' }));
        raw.send(req(2, 6, 'version', [{}]));
        await raw.waitFor(2);
        assert.deepEqual(raw.msgs.map((m) => m.msgid), [6, 6]);
        raw.sock.destroy();
    });

    const malformed: [string, () => Buffer][] = [
        ['bad version byte', () => { const b = req(2, 1, 'version', [{}]); b[0] = 9; return b; }],
        ['bad type byte', () => { const b = req(2, 1, 'version', [{}]); b[1] = 2; return b; }],
        ['bad status byte', () => { const b = req(2, 1, 'version', [{}]); b[2] = 7; return b; }],
        ['msgid >= 2^31', () => { const b = req(2, 1, 'version', [{}]); b.writeUInt32BE(2 ** 31, 3); return b; }],
        ['bad checksum', () => { const b = req(2, 1, 'version', [{}]); b.writeUInt32BE(1, 7); return b; }],
        ['v1 frame with a v2 checksum', () => { const b = req(2, 1, 'version', [{}]); b[0] = 1; return b; }],
        ['invalid JSON', () => rawFrame('{"m":', 1)],
        ['payload not an object', () => rawFrame('[1]', 1)],
        ['d not an array', () => rawFrame('{"m":{"name":"ping"},"d":{}}', 1)],
        ['client END', () => encodeFrame(2, 2, 1, 'ping', [])],
    ];

    for (const [name, mk] of malformed) {
        test(`malformed: ${name} closes only that connection`, async () => {
            const other = await Raw.open();
            const raw = await Raw.open();
            raw.send(mk());
            assert.equal(await isClosedSoon(raw), true, 'bad connection closed');
            assert.equal(raw.msgs.length, 0, 'no reply on a bad stream');
            other.send(req(2, 1, 'version', [{}]));
            await other.waitFor(2);
            other.sock.destroy();
        });
    }

    test('duplicate in-flight msgid closes the connection', async () => {
        const raw = await Raw.open();
        /* a slow statement keeps msgid 1 in flight */
        raw.send(req(2, 1, 'sql', ['SELECT pg_sleep(2)', [], {}]));
        await new Promise((r) => setTimeout(r, 200));
        raw.send(req(2, 1, 'version', [{}]));
        assert.equal(await isClosedSoon(raw), true);
    });

    test('a 4 GiB length is refused at once, without buffering', async () => {
        const raw = await Raw.open();
        const hdr = Buffer.alloc(15);
        hdr[0] = 2; hdr[1] = 1; hdr[2] = 1;
        hdr.writeUInt32BE(1, 3);
        hdr.writeUInt32BE(0xffffffff, 11);
        raw.send(hdr);
        assert.equal(await isClosedSoon(raw, 2000), true);
    });

    test('1000 pipelined requests on one connection', async () => {
        const raw = await Raw.open();
        const frames: Buffer[] = [];
        for (let i = 1; i <= 1000; i++) {
            frames.push(req(2, i, i % 2 ? 'version' : 'ping', [{}]));
        }
        raw.send(Buffer.concat(frames));
        await raw.waitFor(1500, 20000);
        const ends = raw.msgs.filter((m) => m.status === 2).map((m) => m.msgid).sort((a, b) => a - b);
        assert.equal(ends.length, 1000);
        assert.equal(ends[0], 1);
        assert.equal(ends[999], 1000);
        raw.sock.destroy();
    });

    test('half close: a request followed by FIN still gets its answer', async () => {
        const raw = await Raw.open();
        raw.sock.end(req(2, 1, 'version', [{}]));
        await raw.closed;
        assert.deepEqual(raw.msgs.map((m) => m.status), [1, 2]);
    });

    test('unknown msgid 0 is accepted', async () => {
        const raw = await Raw.open();
        raw.send(req(2, 0, 'version', [{}]));
        await raw.waitFor(2);
        assert.equal(raw.msgs[0]!.msgid, 0);
        raw.sock.destroy();
    });
});

function rawFrame(text: string, status: number): Buffer {
    const body = Buffer.from(text);
    const b = encodeFrame(2, status as 1, 1, 'x', []);
    const out = Buffer.alloc(15 + body.length);
    b.copy(out, 0, 0, 15);
    out.writeUInt32BE(body.length, 11);
    body.copy(out, 15);
    /* correct CRC so that only the payload check fails */
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { crc16Arc } = require('../../src/fast/crc16');
    out.writeUInt32BE(crc16Arc(body), 7);
    return out;
}

describe('process', () => {
    test('a client that never reads does not grow server memory without bound', async (t) => {
        /* Pipeline many large-response requests and never read. */
        const sock = await connect(srv.port);
        sock.pause();
        const frame = req(2, 1, 'version', [{}]);
        const before = await rssOf(srv.proc.pid!);
        let id = 1;
        const big: Buffer[] = [];
        for (let i = 0; i < 200000; i++) {
            frame.writeUInt32BE(id++, 3);
            big.push(Buffer.from(frame));
        }
        const all = Buffer.concat(big);
        sock.write(all);
        await new Promise((r) => setTimeout(r, 3000));
        const afterRss = await rssOf(srv.proc.pid!);
        t.diagnostic(`server RSS ${(before / 1048576).toFixed(1)} MiB -> ` +
            `${(afterRss / 1048576).toFixed(1)} MiB after 200,000 unread pipelined requests`);
        /* limits: 1024 in flight, 4 MiB unsent; allow generous slack for GC */
        assert.ok(afterRss - before < 96 * 1024 * 1024,
            `RSS grew by ${((afterRss - before) / 1048576).toFixed(1)} MiB`);
        sock.destroy();
        /* still serving */
        const c = await morayClient(srv.port);
        await call(c, 'ping', {});
        c.close();
    });

    test('SIGTERM lets an in-flight request finish, then exits 0', async () => {
        const s2 = await startServer({ db });
        const raw = new Raw(await connect(s2.port));
        raw.send(req(2, 1, 'sql', ['SELECT pg_sleep(1) AS slept', [], {}]));
        await new Promise((r) => setTimeout(r, 300));
        const code = s2.stop('SIGTERM');
        await raw.waitFor(2, 10000).catch(() => undefined);
        assert.equal(await code, 0);
        const statuses = raw.msgs.map((m) => m.status);
        assert.ok(statuses.includes(2) || statuses.includes(3), 'request completed before exit');
    });

    test('unknown config keys are rejected by name, with every problem listed', async () => {
        await assert.rejects(startServer({
            config: { server_uuid: 'x', datacenter: 'y', bogus: 1, port: 'nope',
                standalone: { url: db.url, pg: { maxConnections: 2, queryTimeout: 5 } } },
        }), (err: Error) => {
            assert.match(err.message, /bogus: unknown key/);
            assert.match(err.message, /port: must be an integer/);
            assert.match(err.message, /standalone\.pg\.queryTimeout: unknown key/);
            return true;
        });
    });

    test('bad flags are usage errors', async () => {
        await assert.rejects(startServer({ args: ['-x'] }), /Invalid option: -x/);
        await assert.rejects(startServer({ args: ['-p'] }), /Expected argument for -p/);
    });
});

async function rssOf(pid: number): Promise<number> {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const fs = require('node:fs');
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8') as string;
    const m = /VmRSS:\s+(\d+) kB/.exec(status);
    return Number(m![1]) * 1024;
}

void errName;

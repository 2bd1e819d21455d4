/*
 * A minimal bunyan raw stream to syslog (RFC 3164 over UDP or TCP, or the
 * local /dev/log socket for type `sys`), replacing bunyan-syslog, whose
 * native dependency does not build on current Node.  One datagram (or one
 * newline-terminated TCP line) per record; the message is the bunyan JSON,
 * as the reference's rsyslog template expects.
 */

import * as dgram from 'node:dgram';
import * as net from 'node:net';
import * as os from 'node:os';
import { Writable } from 'node:stream';

const FACILITIES: Record<string, number> = {
    kern: 0, user: 1, mail: 2, daemon: 3, auth: 4, syslog: 5, lpr: 6, news: 7,
    uucp: 8, cron: 9, authpriv: 10, ftp: 11, local0: 16, local1: 17, local2: 18,
    local3: 19, local4: 20, local5: 21, local6: 22, local7: 23,
};

/* bunyan level → syslog severity */
function severity(level: number): number {
    if (level >= 60) return 2;
    if (level >= 50) return 3;
    if (level >= 40) return 4;
    if (level >= 30) return 6;
    return 7;
}

export interface SyslogOptions { facility: string; type: string; host?: string; port?: number }

export function syslogStream(o: SyslogOptions): Writable {
    const facility = FACILITIES[o.facility] ?? 16;
    const host = o.host ?? '127.0.0.1';
    const port = o.port ?? 514;
    const hostname = os.hostname();
    const format = (rec: Record<string, unknown>): string => {
        const pri = facility * 8 + severity(Number(rec['level']));
        const d = new Date();
        const ts = d.toString().slice(4, 10) + ' ' + d.toTimeString().slice(0, 8);
        return `<${pri}>${ts} ${hostname} moray[${process.pid}]: ${JSON.stringify(rec)}`;
    };
    if (o.type === 'tcp') {
        const sock = net.connect(port, host);
        sock.on('error', () => undefined);
        return new Writable({ objectMode: true, write(rec, _e, cb) {
            sock.write(format(rec as Record<string, unknown>) + '\n');
            cb();
        } });
    }
    const udp = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
    udp.unref();
    udp.on('error', () => undefined);
    const target = o.type === 'sys' ? { port: 514, host: '127.0.0.1' } : { port, host };
    return new Writable({ objectMode: true, write(rec, _e, cb) {
        const buf = Buffer.from(format(rec as Record<string, unknown>));
        udp.send(buf, target.port, target.host, () => cb());
    } });
}

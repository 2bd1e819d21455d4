/*
 * CPU and memory of other processes, read from /proc (Linux only).
 *
 *   /proc/<pid>/stat     field 14 utime, 15 stime, 16 cutime, 17 cstime
 *                        (clock ticks, 100 Hz: 10 ms resolution, so cells
 *                        shorter than ~1 s get coarse CPU figures)
 *   /proc/<pid>/status   VmRSS (kB)
 *
 * Server CPU = utime+stime of the server process alone (all its threads:
 * JS, libuv pool, V8 GC helpers).  PostgreSQL runs in other processes, so
 * its share is excluded by construction.
 *
 * PostgreSQL CPU = the postmaster's own + reaped-children time (cutime +
 * cstime: backends that already exited, e.g. pgbench's at the end of its
 * run) + utime+stime of every live child of the postmaster.  A backend that
 * exits between two samples moves from the live sum to cutime, so deltas
 * stay right.  Processes that vanish mid-read are skipped.
 *
 * Our own process uses process.cpuUsage() (µs) instead.
 *
 * Foreign CPU = machine busy time (/proc/stat) minus all of the above:
 * what other processes (other users of this shared machine) burned during
 * a measurement, reported so that a disturbed cell can be recognised.
 */

import * as fs from 'node:fs';

const TICK_MICROS = 1e6 / 100;   /* CLK_TCK is 100 on every Linux we run on */

interface StatFields {
    ppid: number;
    utime: number;
    stime: number;
    cutime: number;
    cstime: number;
}

function readStat(pid: number): StatFields | null {
    let text: string;
    try {
        text = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
    } catch {
        return null;
    }
    /* comm (field 2) may contain spaces and parentheses: split after the last ')' */
    const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
    /* rest[0] is field 3 (state) */
    const f = (n: number) => Number(rest[n - 3]);
    return { ppid: f(4), utime: f(14), stime: f(15), cutime: f(16), cstime: f(17) };
}

/* utime+stime of one process, in µs (0 if it is gone). */
export function processCpuMicros(pid: number): number {
    const s = readStat(pid);
    return s === null ? 0 : (s.utime + s.stime) * TICK_MICROS;
}

/* stime alone (time in the kernel: syscalls, loopback TCP delivery), in µs. */
export function processSysMicros(pid: number): number {
    const s = readStat(pid);
    return s === null ? 0 : s.stime * TICK_MICROS;
}

/* CPU of a postmaster and all its backends (live and reaped), in µs. */
export function clusterCpuMicros(postmasterPid: number): number {
    const pm = readStat(postmasterPid);
    if (pm === null) {
        return 0;
    }
    let ticks = pm.utime + pm.stime + pm.cutime + pm.cstime;
    for (const name of fs.readdirSync('/proc')) {
        const c = name.charCodeAt(0);
        if (c < 48 || c > 57) {
            continue;
        }
        const pid = Number(name);
        if (pid === postmasterPid) {
            continue;
        }
        const s = readStat(pid);
        if (s !== null && s.ppid === postmasterPid) {
            ticks += s.utime + s.stime;
        }
    }
    return ticks * TICK_MICROS;
}

/* Resident set size in bytes (0 if the process is gone). */
export function rssBytes(pid: number): number {
    try {
        const m = /VmRSS:\s+(\d+)\s+kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'latin1'));
        return m ? Number(m[1]) * 1024 : 0;
    } catch {
        return 0;
    }
}

/* Busy time of the whole machine (all CPUs, /proc/stat) in µs. */
export function machineBusyMicros(): number {
    const f = fs.readFileSync('/proc/stat', 'latin1').split('\n', 1)[0]!.trim().split(/\s+/).slice(1)
        .map(Number);
    /* user nice system idle iowait irq softirq steal ... */
    const busy = (f[0] ?? 0) + (f[1] ?? 0) + (f[2] ?? 0) + (f[5] ?? 0) + (f[6] ?? 0) + (f[7] ?? 0);
    return busy * TICK_MICROS;
}

/* Our own CPU (user+system, all threads) in µs. */
export function selfCpuMicros(): number {
    const u = process.cpuUsage();
    return u.user + u.system;
}

/*
 * A CPU meter over several processes: start() then stop() gives the µs
 * each consumed in between.
 */
export interface CpuSample {
    server: number;
    /* the server's kernel share of `server` */
    serverSys: number;
    postgres: number;
    client: number;
    /* our own kernel share of `client` */
    clientSys: number;
    /* CPU of every other process on the machine (other users' noise) */
    foreign: number;
}

export class CpuMeter {
    private start0: CpuSample | null = null;

    constructor(private readonly serverPid: number | null, private readonly postmasterPid: number) {}

    private sample(): CpuSample {
        const self = process.cpuUsage();
        return {
            server: this.serverPid === null ? 0 : processCpuMicros(this.serverPid),
            serverSys: this.serverPid === null ? 0 : processSysMicros(this.serverPid),
            postgres: clusterCpuMicros(this.postmasterPid),
            client: self.user + self.system,
            clientSys: self.system,
            foreign: machineBusyMicros(),
        };
    }

    start(): void {
        this.start0 = this.sample();
    }

    stop(): CpuSample {
        const a = this.start0;
        if (a === null) {
            throw new Error('CpuMeter.stop() before start()');
        }
        const b = this.sample();
        this.start0 = null;
        return { server: b.server - a.server, serverSys: b.serverSys - a.serverSys,
            postgres: b.postgres - a.postgres, client: b.client - a.client,
            clientSys: b.clientSys - a.clientSys,
            foreign: Math.max(0, (b.foreign - a.foreign) - (b.server - a.server) -
                (b.postgres - a.postgres) - (b.client - a.client)) };
    }
}

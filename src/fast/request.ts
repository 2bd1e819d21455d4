/*
 * One Fast RPC in flight on a connection.
 *
 *   RUNNING ──handler resolves──► DONE    (END sent)
 *      │ └───handler rejects───► FAILED  (ERROR sent)
 *      └──connection gone──────► DETACHED (handler keeps running; its
 *                                          output is discarded, then DONE/FAILED
 *                                          are recorded without sending)
 *
 * A handler sees a FastRequest through the RpcRequest interface: it emits
 * records with write(), and when write() returns false (the connection's
 * unsent bytes passed the limit) it should `await drained()` before
 * producing more.  That is the back-pressure path from the client's socket
 * to a streaming handler (and through it to the PostgreSQL cursor).
 */

import type { FastVersion } from './constants';
import { encodeData } from './encoder';

export const RequestState = {
    RUNNING: 'RUNNING',
    DONE: 'DONE',
    FAILED: 'FAILED',
} as const;
export type RequestState = typeof RequestState[keyof typeof RequestState];

export interface RequestSink {
    send(frame: Buffer): boolean;
    waitDrain(): Promise<void>;
    readonly detached: boolean;
    onDetach(cb: () => void): void;
    onClientEnd(cb: () => void): void;
}

export class FastRequest {
    state: RequestState = RequestState.RUNNING;
    readonly started = process.hrtime.bigint();
    readonly timeStarted = new Date();
    nWritten = 0;
    /* set by the RPC layer for introspection */
    reqId: string | undefined;
    phase = 'start';

    constructor(
        readonly connId: number,
        readonly msgid: number,
        readonly version: FastVersion,
        readonly method: string,
        readonly args: unknown[],
        private readonly sink: RequestSink,
    ) {}

    get detached(): boolean {
        return this.sink.detached;
    }

    /* Emit one record (one DATA frame).  false = slow down (await drained()). */
    write(value: unknown): boolean {
        if (this.state !== RequestState.RUNNING) {
            throw new Error(`write after ${this.state} on ${this.method} msgid ${this.msgid}`);
        }
        if (value === null || value === undefined) {
            throw new Error('a Fast record must not be null');
        }
        this.nWritten++;
        if (this.sink.detached) {
            return true;
        }
        return this.sink.send(encodeData(this.version, this.msgid, this.method, [value]));
    }

    drained(): Promise<void> {
        return this.sink.waitDrain();
    }

    onDetach(cb: () => void): void {
        this.sink.onDetach(cb);
    }

    /*
     * Called once when the client can no longer send anything: it
     * half-closed the connection, or the connection is gone.  Long-lived
     * RPCs (listen) end themselves here; others need not care.
     */
    onClientEnd(cb: () => void): void {
        this.sink.onClientEnd(cb);
    }

    ageMs(): number {
        return Number(process.hrtime.bigint() - this.started) / 1e6;
    }
}

/*
 * From a Fast request to a Moray RPC:
 *
 *   FastRequest ─► validate args (InvocationError) ─► req_id, child logger
 *     ─► request-start probe ─► rpc.run() ─► request-done probe,
 *        completion hooks (metrics, audit)
 *
 * Every registered RPC goes through here, so every method (including sql,
 * listen and version, which the reference leaves untraced) fires
 * request-start/request-done.
 */

import type { FastServer } from '../fast/server';
import type { FastRequest } from '../fast/request';
import { probe } from '../probes';
import { validateArgs } from './validate';
import { MorayRequest, reqIdOf, type AppServices, type MorayRpc } from './context';

const REQUEST_START = probe('moray', 'request-start');
const REQUEST_DONE = probe('moray', 'request-done');
const LOG_PROBE = probe('moray', 'log');

export interface CompletionInfo {
    method: string;
    reqId: string;
    bucket: string | undefined;
    seconds: number;
    error: unknown;
    req: MorayRequest;
}

export type CompletionHook = (c: CompletionInfo) => void;

export class RpcRegistry {
    private readonly hooks: CompletionHook[] = [];

    constructor(private readonly app: AppServices, private readonly server: FastServer) {}

    /* is debug logging on?  (bunyan level, or a snooping tracer lowering it) */
    private debug(): boolean {
        const l = this.app.log as unknown as { level?: () => number };
        return typeof l.level !== 'function' || l.level() <= 20 || LOG_PROBE.enabled();
    }

    onComplete(h: CompletionHook): void {
        this.hooks.push(h);
    }

    register(rpc: MorayRpc): void {
        this.server.register(rpc.name, (fast) => this.run(rpc, fast));
    }

    private async run(rpc: MorayRpc, fast: FastRequest): Promise<void> {
        const args = fast.args;
        let error: unknown = null;
        let req: MorayRequest | undefined;
        try {
            validateArgs(rpc.name, args);
            const oi = rpc.optionsIndex ?? args.length - 1;
            const options = (args[oi] ?? {}) as Record<string, unknown>;
            const reqId = reqIdOf(options);
            fast.reqId = reqId;
            req = new MorayRequest(fast, args, options, reqId, this.app.log);
            REQUEST_START.fire(() => [fast.connId, fast.msgid, rpc.name, reqId]);
            if (this.debug()) {
                req.log.debug({ args }, `${rpc.name}: entered`);
            }
            await rpc.run(this.app, req);
            if (this.debug()) {
                req.log.debug(`${rpc.name}: done`);
            }
        } catch (err) {
            error = err;
            if (req !== undefined && this.debug()) {
                req.log.debug({ err }, `${rpc.name}: failed`);
            }
            throw err;
        } finally {
            const seconds = fast.ageMs() / 1000;
            const reqId = fast.reqId ?? '';
            if (req !== undefined) {
                REQUEST_DONE.fire(() => [fast.connId, fast.msgid, rpc.name, reqId,
                    error === null ? '' : String((error as Error).name ?? 'Error'),
                    Math.round(seconds * 1e6)]);
            }
            if (this.hooks.length > 0) {
                const bucket = typeof args[0] === 'string' ? args[0] : undefined;
                const info: CompletionInfo = {
                    method: rpc.name, reqId, bucket, seconds, error,
                    req: req as MorayRequest,
                };
                for (const h of this.hooks) {
                    h(info);
                }
            }
        }
    }
}

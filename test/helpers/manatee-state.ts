/*
 * Drive a fake Manatee shard in ZooKeeper the way Manatee itself writes it
 * (manatee.md §2, §3), so the follower can be tested against a real server.
 *
 *     P              persistent
 *     P/state        cluster state JSON (putState / putRawState / deleteState)
 *     P/history/     "<generation>-<seq>" persistent sequential copy of each state
 *     P/election/    "<ip>:<pgPort>:<backupPort>-<seq>" ephemeral sequential,
 *                    data {zoneId, ip, pgUrl, backupUrl} (joinElection)
 *
 * Election nodes are ephemeral: they belong to this writer's session and
 * vanish when it closes, exactly like a dead sitter's.  Every call has a
 * timeout so a paused ZooKeeper fails a test instead of hanging it.
 */

import {
    type ZkClient,
    type ZkException,
    ZK_NO_NODE,
    ZkCreateMode,
    closeZkClient,
    createZkClient,
} from '../../src/pg/manatee';

export interface Peer {
    id: string;
    ip: string;
    pgUrl: string;
    zoneId: string;
    backupUrl: string;
}

export interface ClusterState {
    generation: number;
    primary: Peer;
    sync: Peer | null;
    async: Peer[];
    deposed: Peer[];
    initWal: string;
    freeze?: null | boolean | { date: string; reason: string };
    oneNodeWriteMode?: boolean;
}

/* A peer as Manatee describes it: id "<ip>:<pgPort>:<backupPort>". */
export function peer(ip: string, pgPort: number, zoneId = `zone-${pgPort}`, backupPort = 12345): Peer {
    const host = ip.includes(':') ? `[${ip}]` : ip;
    return {
        id: `${ip}:${pgPort}:${backupPort}`,
        ip,
        pgUrl: `tcp://postgres@${host}:${pgPort}/postgres`,
        zoneId,
        backupUrl: `http://${host}:${backupPort}`,
    };
}

export function clusterState(generation: number, primary: Peer, sync: Peer | null,
    async: Peer[] = [], deposed: Peer[] = [], initWal = '0/3000000'): ClusterState {
    return { generation, primary, sync, async, deposed, initWal };
}

function call<T>(what: string, timeoutMs: number, fn: (cb: (err: ZkException | null, v?: T) => void) => void): Promise<T | undefined> {
    return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`zookeeper ${what}: no reply in ${timeoutMs} ms`)), timeoutMs);
        fn((err, v) => {
            clearTimeout(t);
            if (err !== null) {
                reject(err);
            } else {
                resolve(v);
            }
        });
    });
}

export class ManateeStateWriter {
    readonly statePath: string;
    readonly electionPath: string;
    readonly historyPath: string;

    private expired = false;

    private constructor(private client: ZkClient, readonly shardPath: string,
        private readonly timeoutMs: number, private readonly connStr: string) {
        this.statePath = `${shardPath}/state`;
        this.electionPath = `${shardPath}/election`;
        this.historyPath = `${shardPath}/history`;
        this.watch(client);
    }

    private watch(client: ZkClient): void {
        client.once('expired', () => {
            if (client === this.client) {
                this.expired = true;
            }
        });
    }

    private static async connect(connStr: string, timeoutMs: number): Promise<ZkClient> {
        const client = createZkClient(connStr, { sessionTimeout: 10000, spinDelay: 100, retries: 0 });
        await new Promise<void>((resolve, reject) => {
            const t = setTimeout(() => {
                void closeZkClient(client, 0);
                reject(new Error(`could not connect to ZooKeeper ${connStr} in ${timeoutMs} ms`));
            }, timeoutMs);
            client.once('connected', () => {
                clearTimeout(t);
                resolve();
            });
            client.connect();
        });
        return client;
    }

    /* Connect and create P, P/election and P/history (like the sitters' mkdirp). */
    static async open(connStr: string, shardPath: string, timeoutMs = 10000): Promise<ManateeStateWriter> {
        const client = await ManateeStateWriter.connect(connStr, timeoutMs);
        const w = new ManateeStateWriter(client, shardPath, timeoutMs, connStr);
        for (const p of [w.electionPath, w.historyPath]) {
            await call<string>(`mkdirp ${p}`, timeoutMs, (cb) => client.mkdirp(p, cb));
        }
        return w;
    }

    /*
     * A session that expired while ZooKeeper was down (or starved, on a
     * loaded machine) leaves node-zookeeper-client dead: replace it.
     */
    private async renew(): Promise<void> {
        const old = this.client;
        this.client = await ManateeStateWriter.connect(this.connStr, this.timeoutMs);
        this.expired = false;
        this.watch(this.client);
        void closeZkClient(old, 0);
    }

    private async op<T>(what: string, fn: (c: ZkClient, cb: (err: ZkException | null, v?: T) => void) => void): Promise<T | undefined> {
        if (this.expired) {
            await this.renew();
        }
        try {
            return await call<T>(what, this.timeoutMs, (cb) => fn(this.client, cb));
        } catch (e) {
            if ((e as ZkException).code !== undefined) {
                throw e;
            }
            /* no reply: the client may be wedged after a restart; retry once on a new one */
            await this.renew();
            return call<T>(what, this.timeoutMs, (cb) => fn(this.client, cb));
        }
    }

    /* Write P/state (create or overwrite) plus a history entry. */
    async putState(state: ClusterState): Promise<void> {
        const json = JSON.stringify(state);
        await this.putRawState(json);
        await this.op<string>('create history', (c, cb) =>
            c.create(`${this.historyPath}/${state.generation}-`, Buffer.from(json),
                ZkCreateMode.PERSISTENT_SEQUENTIAL, cb));
    }

    /* Write arbitrary bytes to P/state (malformed-state tests). */
    async putRawState(text: string): Promise<void> {
        const data = Buffer.from(text);
        try {
            await this.op('setData state', (c, cb) => c.setData(this.statePath, data, -1, cb));
        } catch (e) {
            if ((e as ZkException).code !== ZK_NO_NODE) {
                throw e;
            }
            await this.op<string>('create state', (c, cb) =>
                c.create(this.statePath, data, ZkCreateMode.PERSISTENT, cb));
        }
    }

    async deleteState(): Promise<void> {
        try {
            await this.op('remove state', (c, cb) => c.remove(this.statePath, -1, cb));
        } catch (e) {
            if ((e as ZkException).code !== ZK_NO_NODE) {
                throw e;
            }
        }
    }

    async getState(): Promise<string | null> {
        try {
            const data = await call<Buffer | null>('getData state', this.timeoutMs,
                (cb) => this.client.getData(this.statePath, (err, d) => cb(err, d ?? null)));
            return data === null || data === undefined ? null : data.toString('utf8');
        } catch (e) {
            if ((e as ZkException).code === ZK_NO_NODE) {
                return null;
            }
            throw e;
        }
    }

    /* A sitter joining the election: ephemeral sequential "<id>-<seq>"; returns the full path. */
    async joinElection(p: Peer): Promise<string> {
        const data = Buffer.from(JSON.stringify({ zoneId: p.zoneId, ip: p.ip, pgUrl: p.pgUrl, backupUrl: p.backupUrl }));
        const created = await this.op<string>('create election node', (c, cb) =>
            c.create(`${this.electionPath}/${p.id}-`, data, ZkCreateMode.EPHEMERAL_SEQUENTIAL, cb));
        return created as string;
    }

    /* Create an arbitrary (possibly malformed) ephemeral node under P/election. */
    async createElectionNode(name: string): Promise<string> {
        const created = await this.op<string>('create election node', (c, cb) =>
            c.create(`${this.electionPath}/${name}`, undefined, ZkCreateMode.EPHEMERAL, cb));
        return created as string;
    }

    async leaveElection(nodePath: string): Promise<void> {
        await this.op('remove election node', (c, cb) => c.remove(nodePath, -1, cb));
    }

    async electionChildren(): Promise<string[]> {
        const c = await call<string[]>('getChildren election', this.timeoutMs,
            (cb) => this.client.getChildren(this.electionPath, (err, ch) => cb(err, ch)));
        return c ?? [];
    }

    close(): Promise<void> {
        return closeZkClient(this.client, 200);
    }
}

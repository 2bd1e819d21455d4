/*
 * features.triggers = false: a server refuses to write to a bucket that
 * already has triggers (created by a server that allows them), instead of
 * writing without running them.
 */

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { call, morayClient, standaloneConfig, startServer, testDatabase,
    type MorayClient, type ServerProcess, type TestDatabase } from '../helpers/harness';

let db: TestDatabase;
let allow: ServerProcess;
let deny: ServerProcess;
let ca: MorayClient;
let cd: MorayClient;

before(async () => {
    db = await testDatabase('trigoff');
    allow = await startServer({ db });
    deny = await startServer({ config: standaloneConfig(db, { features: { triggers: false } }) });
    ca = await morayClient(allow.port);
    cd = await morayClient(deny.port);
});

after(async () => {
    ca?.close();
    cd?.close();
    await allow?.stop();
    await deny?.stop();
    await db?.drop();
});

test('writes to a bucket with triggers are refused where triggers are disabled', async () => {
    const stamp = function (req: any, cb: any) { req.value.stamped = true; cb(); };
    await call(ca, 'createBucket', 'withtrig', { index: { n: { type: 'number' } }, pre: [stamp] });
    await call(ca, 'createBucket', 'plain', { index: { n: { type: 'number' } } });
    await call(ca, 'putObject', 'withtrig', 'k', { n: 1 }, {});
    const got = await call(ca, 'getObject', 'withtrig', 'k', {});
    assert.equal(got.value.stamped, true);
    await assert.rejects(call(cd, 'putObject', 'withtrig', 'k2', { n: 2 }, {}), (err: Error) => {
        assert.equal(err.name, 'InvalidBucketConfigError');
        assert.match(err.message, /withtrig has triggers, which are disabled on this server/);
        return true;
    });
    /* reads and trigger-free buckets are unaffected */
    assert.equal((await call(cd, 'getObject', 'withtrig', 'k', {})).value.n, 1);
    await call(cd, 'putObject', 'plain', 'p', { n: 3 }, {});
});

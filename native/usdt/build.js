#!/usr/bin/env node
/*
 * build.js: build native/usdt/build/Release/moray_usdt.node, offline, with
 * the node-gyp that ships inside npm.
 *
 *   node native/usdt/build.js            never fails: on any problem it
 *                                        prints "USDT addon not built:
 *                                        probes disabled (...)" and exits 0,
 *                                        so `npm install` goes on and the
 *                                        server runs with the no-op backend
 *   node native/usdt/build.js --strict   exits non-zero on failure (tests)
 *   ... --if-missing                     do nothing if the addon exists; if
 *                                        another process is building it
 *                                        (lock directory native/usdt/.building),
 *                                        wait for that build instead
 *
 * Why not plain `node-gyp rebuild`: outside `npm run` there is no node-gyp
 * on PATH (`npx node-gyp` wants to download it), and node-gyp downloads the
 * Node headers unless told where they are.  We pass --nodedir: the npm
 * config value when npm runs us, else the prefix of the running node
 * (/usr for Debian's /usr/bin/node, which has /usr/include/node).
 *
 * Only Linux and FreeBSD get probes (ELF + SDT notes); elsewhere the
 * dtrace-provider backend is used and this script does nothing.
 */
'use strict';

const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');

const strict = process.argv.includes('--strict');
const ifMissing = process.argv.includes('--if-missing');
const dir = __dirname;
const product = path.join(dir, 'build', 'Release', 'moray_usdt.node');
const lock = path.join(dir, '.building');

function giveUp(why) {
    process.stderr.write(`USDT addon not built: probes disabled (${why})\n`);
    process.exit(strict ? 1 : 0);
}

function findNodeGyp() {
    const env = process.env.npm_config_node_gyp;
    if (env && fs.existsSync(env)) {
        return env;
    }
    try {
        return require.resolve('node-gyp/bin/node-gyp.js', { paths: [dir] });
    } catch {
        /* not a local dependency */
    }
    const prefix = path.resolve(path.dirname(process.execPath), '..');
    for (const candidate of [
        path.join(prefix, 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
        path.join(path.dirname(process.execPath), 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
    ]) {
        if (fs.existsSync(candidate)) {
            return candidate;
        }
    }
    return undefined;
}

function findNodeDir() {
    const env = process.env.npm_config_nodedir;
    if (env) {
        return env;
    }
    const prefix = path.resolve(path.dirname(process.execPath), '..');
    if (fs.existsSync(path.join(prefix, 'include', 'node', 'node_api.h'))) {
        return prefix;
    }
    return undefined;
}

if (process.platform !== 'linux' && process.platform !== 'freebsd') {
    process.stdout.write(`USDT addon skipped on ${process.platform} (dtrace-provider is used there)\n`);
    process.exit(0);
}

function sleep(ms) {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

if (ifMissing && fs.existsSync(product)) {
    process.exit(0);
}
/* One build at a time (tests running in parallel may all ask). */
for (let waited = 0; ; waited += 200) {
    try {
        fs.mkdirSync(lock);
        break;
    } catch (err) {
        if (err.code !== 'EEXIST') {
            giveUp(`cannot create ${lock}: ${err.message}`);
        }
        if (waited > 180000) {
            giveUp(`${lock} held for 3 minutes (stale? remove it)`);
        }
        sleep(200);
        if (ifMissing && !fs.existsSync(lock) && fs.existsSync(product)) {
            process.exit(0);
        }
    }
}
process.on('exit', () => fs.rmSync(lock, { recursive: true, force: true }));

const gyp = findNodeGyp();
if (gyp === undefined) {
    giveUp('node-gyp not found');
}
const args = [gyp, 'rebuild', '--directory', dir];
const nodedir = findNodeDir();
if (nodedir !== undefined) {
    args.push(`--nodedir=${nodedir}`);
}
const r = spawnSync(process.execPath, args, { stdio: ['ignore', 'inherit', 'inherit'] });
if (r.error !== undefined) {
    giveUp(r.error.message);
}
if (r.status !== 0) {
    giveUp(`node-gyp exited with ${r.status ?? r.signal}`);
}
if (!fs.existsSync(product)) {
    giveUp('node-gyp succeeded but build/Release/moray_usdt.node is missing');
}

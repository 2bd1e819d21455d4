/*
 * Where the package lives on disk.
 *
 * The same module runs from two places: src/probes/*.ts under tsx (tests,
 * development) and dist/src/probes/*.js after `tsc`.  Files that are not
 * compiled (the native addon, dtrace/ scripts, docs/) are found relative to
 * the package root, which is the nearest ancestor directory holding a
 * package.json with our name.  Looked up once and cached.
 *
 *   /opt/moray/dist/src/probes/usdt-backend.js
 *   /opt/moray/src/probes/usdt-backend.ts        --> /opt/moray
 *   /opt/moray/package.json {"name": "moray-ts"}
 */

import * as fs from 'node:fs';
import * as path from 'node:path';

const PACKAGE_NAME = 'moray-ts';

let cached: string | undefined;

export function packageRoot(start: string = __dirname): string {
    if (cached !== undefined && start === __dirname) {
        return cached;
    }
    let dir = path.resolve(start);
    for (;;) {
        const candidate = path.join(dir, 'package.json');
        try {
            const pkg = JSON.parse(fs.readFileSync(candidate, 'utf8')) as { name?: unknown };
            if (pkg.name === PACKAGE_NAME) {
                if (start === __dirname) {
                    cached = dir;
                }
                return dir;
            }
        } catch {
            /* no (readable) package.json here: keep climbing */
        }
        const parent = path.dirname(dir);
        if (parent === dir) {
            throw new Error(`package root (${PACKAGE_NAME}) not found above ${start}`);
        }
        dir = parent;
    }
}

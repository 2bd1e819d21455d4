/* version(options): one record {version: 2}, the Moray API version. */

import type { MorayRpc } from './context';

export const API_VERSION = 2;

export const version: MorayRpc = {
    name: 'version',
    async run(_app, req) {
        req.write({ version: API_VERSION });
    },
};

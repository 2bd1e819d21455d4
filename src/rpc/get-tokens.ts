/* getTokens(options): only electric-moray implements it; Moray always fails. */

import { errors } from '../errors/catalog';
import type { MorayRpc } from './context';

export const getTokens: MorayRpc = {
    name: 'getTokens',
    async run() {
        throw errors.plain('Operation not supported');
    },
};

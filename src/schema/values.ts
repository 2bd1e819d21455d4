/*
 * Value normalisers for the Moray index types: the exact text forms the
 * reference server produced with ip6addr@0.2.2, macaddr@0.0.1 and its own
 * regular expressions.
 *
 * Why hand-ported instead of "any correct parser": the canonical text is
 * observable.  It is what goes into unique columns (two spellings of one
 * address must collide), what a filter value is compared with, and what
 * error a malformed value gets.  So the ports below keep the reference's
 * accept/reject decisions, quirks included:
 *
 *   ip     "192.168.000.1" -> "192.168.0.1"      (dotted fields go through
 *          " 1", "+1", "-0" also pass, as         Number() and parseInt())
 *          "FD00:0::1"     -> "fd00::1"           (longest zero run elided,
 *          "1:0:2:3:4:5:6:7" -> "1::2:3:4:5:6:7"   even a single group)
 *          "::ffff:1.2.3.4" stays v4-mapped; an integer is an IPv4 address
 *   subnet "192.168.4.7/24" -> "192.168.4.0/24"  (host bits cleared; the
 *          prefix goes through parseInt(..)|0; a bare address is rejected)
 *   mac    "90-B8-D0-E6-BE-E1", "90b8d0e6bee1", "0:1:2:3:4:5", 159447859953377
 *          -> lower-case colon form; "90b8.d0e6.bee1" (Cisco) rejected
 *   date   /^(?:[-+]00)?\d+-\d+-\d+T\d+:\d+:\d+(?:.\d+)?Z$/ then
 *          new Date(v).toISOString()   (only "Z" offsets)
 *
 * Every failure throws ValueFormatError, an operational error: the caller
 * turns it into InvalidIndexTypeError (writes) or InvalidQueryError
 * (filters).  Nothing here knows about either.
 *
 * Address comparison (for the JavaScript post-filter) follows the same
 * libraries: ip by the eight 16-bit groups (so 1.2.3.4 equals
 * ::ffff:1.2.3.4), subnet by network address then by *descending* prefix
 * length (PostgreSQL's order), mac by its 48-bit value.
 */

export class ValueFormatError extends Error {
    constructor(message: string) {
        super(message);
        this.name = 'ValueFormatError';
    }
}

function fail(message: string): never {
    throw new ValueFormatError(message);
}

/* ------------------------------------------------------------------ */
/* IP addresses (ip6addr@0.2.2)                                        */
/* ------------------------------------------------------------------ */

export interface IpAddr {
    /* eight 16-bit groups, network order */
    readonly fields: readonly number[];
    /* written as a bare dotted quad (or given as an integer): print as v4 */
    readonly ipv4Bare: boolean;
    /* dotted-quad notation was used: print as ::ffff:a.b.c.d unless bare */
    readonly ipv4Mapped: boolean;
}

function mkAddr(fields: number[], ipv4Bare: boolean, ipv4Mapped: boolean): IpAddr {
    return Object.freeze({ fields: Object.freeze(fields), ipv4Bare, ipv4Mapped });
}

function ipFromString(raw: string): IpAddr {
    const input = raw.toLowerCase();
    let ip6Fields: string[] = [];
    const ip4Fields: string[] = [];
    let expIndex: number | null = null;
    let value = '';
    let ipv4Bare = false;

    /* No valid IPv6 is longer than 39 characters (one spare for "::"). */
    if (input.length > 40) {
        fail('Input too long');
    }
    for (let i = 0; i < input.length; i++) {
        const c = input[i];
        if (c === ':') {
            if (i + 1 < input.length && input[i + 1] === ':') {
                if (expIndex !== null) {
                    fail('Multiple :: delimiters');
                }
                if (value !== '') {
                    ip6Fields.push(value);
                    value = '';
                }
                expIndex = ip6Fields.length;
                i++;
            } else {
                if (value === '') {
                    fail('illegal delimiter');
                }
                ip6Fields.push(value);
                value = '';
            }
        } else if (c === '.') {
            ip4Fields.push(value);
            value = '';
        } else {
            value += c;
        }
    }
    if (value !== '') {
        if (ip4Fields.length !== 0) {
            ip4Fields.push(value);
        } else {
            ip6Fields.push(value);
        }
    } else if (expIndex !== ip6Fields.length || ip4Fields.length > 0) {
        fail('Cannot end with delimiter besides ::');
    }

    if (ip4Fields.length === 0) {
        if (ip6Fields.length > 8) {
            fail('Too many fields');
        } else if (ip6Fields.length < 8 && expIndex === null) {
            fail('Too few fields');
        }
    } else {
        if (ip4Fields.length !== 4) {
            fail('IPv4 portion must have 4 fields');
        }
        if (ip6Fields.length === 0 && expIndex === null) {
            ipv4Bare = true;
            ip6Fields = ['ffff'];
            expIndex = 0;
        }
        if (ip6Fields.length > 6) {
            fail('Too many fields');
        } else if (ip6Fields.length < 6 && expIndex === null) {
            fail('Too few fields');
        }
    }

    let groups: number[] = ip6Fields.map((field) => {
        const num = Number('0x' + field);
        if (isNaN(num) || num < 0 || num > 65535) {
            fail('Invalid field value: ' + field);
        }
        return num;
    });
    const quad = ip4Fields.map((field) => {
        const num = Number(field);
        if (parseInt(field, 10) !== num || num < 0 || num > 255) {
            fail('Invalid field value: ' + field);
        }
        return num;
    });
    if (quad.length !== 0) {
        groups.push(quad[0]! * 256 + quad[1]!);
        groups.push(quad[2]! * 256 + quad[3]!);
    }
    if (groups.length < 8 && expIndex !== null) {
        const filler: number[] = new Array<number>(8 - groups.length).fill(0);
        groups = [...groups.slice(0, expIndex), ...filler, ...groups.slice(expIndex)];
    }
    let ipv4Mapped = false;
    if (quad.length !== 0) {
        if (!isV4MappedPrefix(groups)) {
            fail('invalid dotted-quad notation');
        }
        ipv4Mapped = true;
    }
    /* "-0" survives the checks above; normalise so formatting prints 0. */
    return mkAddr(groups.map((g) => g + 0), ipv4Bare, ipv4Mapped);
}

function ipFromInteger(input: number): IpAddr {
    if (input !== Math.floor(input)) {
        fail('Value must be integer');
    }
    if (input < 0 || input > 0xffffffff) {
        fail('Value must be 32 bit');
    }
    return mkAddr([0, 0, 0, 0, 0, 0xffff, input >>> 16, input & 0xffff], true, true);
}

/* ip6addr.parse: a string or an integer (the IPv4 address as uint32). */
export function parseIp(input: unknown): IpAddr {
    if (typeof input === 'string') {
        return ipFromString(input);
    }
    if (typeof input === 'number') {
        return ipFromInteger(input);
    }
    return fail('Invalid argument: only string|number allowed');
}

function isV4MappedPrefix(groups: readonly number[]): boolean {
    const comp = [0, 0, 0, 0, 0, 0xffff];
    for (let i = 0; i < 6; i++) {
        if (groups[i] !== comp[i]) {
            return false;
        }
    }
    return true;
}

function octets(groups: readonly number[]): string {
    const a = groups[0]!;
    const b = groups[1]!;
    return `${a >> 8}.${a & 0xff}.${b >> 8}.${b & 0xff}`;
}

/* ip6addr _arrayToHex with zeroElide=true, zeroPad=false. */
function hexGroups(input: readonly number[]): string[] {
    let elStart: number | null = null;
    let elLen = 0;
    let start: number | null = null;
    let len = 0;
    for (let i = 0; i < input.length; i++) {
        if (input[i] === 0) {
            if (start === null) {
                start = i;
                len = 1;
            } else {
                len++;
            }
        } else if (start !== null) {
            if (len > elLen) {
                elStart = start;
                elLen = len;
            }
            start = null;
        }
    }
    if (start !== null && len > elLen) {
        elStart = start;
        elLen = len;
    }
    const out: string[] = [];
    for (let i = 0; i < input.length; i++) {
        if (elStart !== null) {
            if (i === elStart) {
                if (elLen === 8) {
                    return ['::'];
                } else if (elStart === 0 || elStart + elLen === input.length) {
                    out.push(':');
                } else {
                    out.push('');
                }
            }
            if (i >= elStart && i < elStart + elLen) {
                continue;
            }
        }
        out.push(input[i]!.toString(16));
    }
    return out;
}

/* Addr.toString() with the default "auto" format. */
export function formatIp(addr: IpAddr): string {
    if (addr.ipv4Bare) {
        if (!isV4MappedPrefix(addr.fields)) {
            fail('cannot print non-v4 address in dotted quad notation');
        }
        return octets(addr.fields.slice(6));
    }
    if (addr.ipv4Mapped) {
        if (!isV4MappedPrefix(addr.fields)) {
            fail('cannot print non-v4 address as a v4-mapped address');
        }
        const out = hexGroups(addr.fields.slice(0, 6));
        out.push(octets(addr.fields.slice(6)));
        return out.join(':');
    }
    return hexGroups(addr.fields).join(':');
}

export function compareIp(a: IpAddr, b: IpAddr): number {
    for (let i = 0; i < 8; i++) {
        const x = a.fields[i]!;
        const y = b.fields[i]!;
        if (x < y) {
            return -1;
        } else if (x > y) {
            return 1;
        }
    }
    return 0;
}

export function canonicalIp(input: unknown): string {
    return formatIp(parseIp(input));
}

/* ------------------------------------------------------------------ */
/* CIDR subnets (ip6addr.createCIDR)                                   */
/* ------------------------------------------------------------------ */

export interface Cidr {
    /* network address (host bits cleared), keeping the input's print style */
    readonly addr: IpAddr;
    /* IPv6 prefix length (IPv4 prefixes are stored +96) */
    readonly prefix: number;
}

const CIDR_RE = /^([a-fA-F0-9:.]+)\/([0-9]+)$/;

function prefixMask(len: number): number[] {
    const mask = [0, 0, 0, 0, 0, 0, 0, 0];
    let i = 0;
    for (; len > 16; i++, len -= 16) {
        mask[i] = 0xffff;
    }
    if (len > 0) {
        mask[i] = 0xffff - ((1 << (16 - len)) - 1);
    }
    return mask;
}

export function parseCidr(input: unknown): Cidr {
    if (typeof input !== 'string') {
        return fail('Invalid argument: <addr>/<prefix> expected');
    }
    const m = CIDR_RE.exec(input);
    if (m === null) {
        return fail('Invalid argument: <addr>/<prefix> expected');
    }
    // eslint-disable-next-line no-bitwise
    let prefix = parseInt(m[2]!, 10) | 0;
    const addr = parseIp(m[1]!);
    if (addr.ipv4Bare) {
        prefix += 96;
    }
    if (prefix < 0 || prefix > 128) {
        fail('Invalid prefix length');
    }
    const mask = prefixMask(prefix);
    const net = addr.fields.map((g, i) => g & mask[i]!);
    return Object.freeze({ addr: mkAddr(net, addr.ipv4Bare, addr.ipv4Mapped), prefix });
}

export function formatCidr(c: Cidr): string {
    let len = c.prefix;
    if (c.addr.ipv4Bare) {
        if (!isV4MappedPrefix(c.addr.fields)) {
            fail('cannot return v4 prefix length for non-v4 address');
        }
        len -= 96;
    }
    return formatIp(c.addr) + '/' + len;
}

export function compareCidr(a: Cidr, b: Cidr): number {
    const cmp = compareIp(a.addr, b.addr);
    return cmp === 0 ? b.prefix - a.prefix : cmp;
}

export function canonicalSubnet(input: unknown): string {
    return formatCidr(parseCidr(input));
}

/* ------------------------------------------------------------------ */
/* MAC addresses (macaddr@0.0.1)                                       */
/* ------------------------------------------------------------------ */

const HEX_DIGIT_RE = /^[a-f0-9]$/;

function macFromString(raw: string): number {
    const input = raw.toLowerCase();
    let pos = 0;
    let value = 0;
    let octet = '';
    let sep: string | null = null;
    let chr: string | undefined;

    /* The first ':' or '-' seen locks the separator for the rest. */
    const issep = (s: string | undefined): boolean => {
        if (sep !== null) {
            return s === sep;
        }
        if (s === ':' || s === '-') {
            sep = s;
            return true;
        }
        return false;
    };
    const processOctet = (): void => {
        if (octet.length === 0) {
            fail('expected to find a hexadecimal number before ' + JSON.stringify(sep));
        } else if (octet.length > 2) {
            fail('too many hexadecimal digits in ' + JSON.stringify(octet));
        } else if (pos < 6) {
            value = value * 0x100 + parseInt(octet, 16);
            pos += 1;
            octet = '';
        } else {
            fail('too many octets in MAC address');
        }
    };

    for (let i = 0; i < input.length; i++) {
        chr = input[i];
        if (issep(chr)) {
            processOctet();
        } else if (chr !== undefined && HEX_DIGIT_RE.test(chr)) {
            octet += chr;
        } else {
            fail('unrecognized character ' + JSON.stringify(chr));
        }
    }
    if (issep(chr)) {
        fail('trailing separator in MAC address');
    }
    if (pos === 0) {
        if (octet.length !== 12) {
            fail('MAC address is too short');
        }
        value = parseInt(octet, 16);
    } else {
        processOctet();
        if (pos !== 6) {
            fail('too few octets in MAC address');
        }
    }
    return value;
}

/* macaddr.parse: a string or a 48-bit integer; returns the 48-bit value. */
export function parseMac(input: unknown): number {
    if (typeof input === 'string') {
        return macFromString(input);
    }
    if (typeof input === 'number') {
        if (input !== Math.floor(input)) {
            fail('Value must be an integer');
        }
        if (input < 0 || input > 0xffffffffffff) {
            fail('Value must be 48-bit');
        }
        return input;
    }
    return fail('expected string or integer, but got ' + typeof input);
}

export function formatMac(value: number): string {
    const fields = [
        Math.floor(value / 0x010000000000) & 0xff,
        Math.floor(value / 0x000100000000) & 0xff,
        (value >>> 24) & 0xff,
        (value >>> 16) & 0xff,
        (value >>> 8) & 0xff,
        value & 0xff,
    ];
    return fields.map((f) => f.toString(16).padStart(2, '0')).join(':');
}

export function compareMac(a: number, b: number): number {
    return a < b ? -1 : a > b ? 1 : 0;
}

export function canonicalMac(input: unknown): string {
    return formatMac(parseMac(input));
}

/* ------------------------------------------------------------------ */
/* Dates, ranges, uuid, boolean                                        */
/* ------------------------------------------------------------------ */

/* Note the unescaped "." before the fraction: any character is accepted. */
export const DATE_RE = /^(?:[-+]00)?\d+-\d+-\d+T\d+:\d+:\d+(?:.\d+)?Z$/;
export const DATERANGE_RE = /^([([])([\d:.TZ+-]+)?,([\d:.TZ+-]+)?([)\]])$/;
export const NUMRANGE_RE = /^[([](-?\d+(?:\.\d+)?)?,(-?\d+(?:\.\d+)?)?[)\]]$/;
export const UUID_RE = /^[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12}$/;

/* Validate a timestamp and return it as a Date (always a valid one). */
export function parseDate(input: unknown): Date {
    const s = String(input);
    if (!DATE_RE.test(s)) {
        fail('invalid date');
    }
    const d = new Date(s);
    if (isNaN(d.getTime())) {
        fail('invalid date');
    }
    return d;
}

/* The normalised text of a timestamp: new Date(v).toISOString(). */
export function isoDate(input: unknown): string {
    return parseDate(input).toISOString();
}

/* "[a,b)" with each present bound normalised as a date. */
export function normaliseDaterange(input: unknown): string {
    const m = DATERANGE_RE.exec(String(input));
    if (m === null) {
        return fail('invalid daterange');
    }
    const lower = m[2] === undefined ? '' : isoDate(m[2]);
    const upper = m[3] === undefined ? '' : isoDate(m[3]);
    return `${m[1]}${lower},${upper}${m[4]}`;
}

/* Numeric ranges are validated only, and passed on as written. */
export function checkNumrange(input: unknown): string {
    const s = String(input);
    if (!NUMRANGE_RE.test(s)) {
        fail('invalid numrange');
    }
    return s;
}

/* Lower-case canonical UUIDs only (upper case is rejected, not folded). */
export function checkUuid(input: unknown): string {
    const s = String(input);
    if (!UUID_RE.test(s)) {
        fail('invalid uuid');
    }
    return s;
}

/* String(v).toUpperCase() must be TRUE or FALSE; that text is the value. */
export function booleanText(input: unknown): 'TRUE' | 'FALSE' {
    const s = String(input).toUpperCase();
    if (s === 'TRUE' || s === 'FALSE') {
        return s;
    }
    return fail('invalid boolean');
}

/* Number conversion never fails: parseFloat, so garbage becomes NaN. */
export function toNumber(input: unknown): number {
    return typeof input === 'number' ? input : parseFloat(String(input));
}

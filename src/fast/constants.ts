/*
 * Fast protocol constants: every number of the wire format, written once.
 *
 *     0x00 +---------+---------+---------+---------+
 *          | VERSION | TYPE    | STATUS  | MSGID   |
 *     0x04 +---------+---------+---------+ (u32BE) |
 *          |         MSGID (cont.)       | CRC     |
 *     0x08 +---------+---------+---------+ (u32BE) |
 *          |        CRC (cont.)          | DATALEN |
 *     0x0C +---------+---------+---------+ (u32BE) |
 *          |      DATALEN (cont.)        | DATA... |
 *     0x0F +---------+---------+---------+---------+
 *
 * Offsets are derived from each other (each field starts where the previous
 * one ends) so that the layout cannot drift; test/unit/fast-codec.test.ts
 * pins the resulting literal values.  Names follow node-fast
 * (lib/fast_protocol.js) so that logs and code grep the same in both.
 */

/* "version" byte: selects the CRC flavour of the frame (docs/protocol.md) */
export const FP_VERSION_1 = 0x01;
export const FP_VERSION_2 = 0x02;
export const FP_VERSION_CURRENT = FP_VERSION_2;
export type FastVersion = typeof FP_VERSION_1 | typeof FP_VERSION_2;

/* "type" byte: only JSON payloads exist */
export const FP_TYPE_JSON = 0x01;

/* "status" byte */
export const FP_STATUS_DATA = 0x01;
export const FP_STATUS_END = 0x02;
export const FP_STATUS_ERROR = 0x03;
export type FastStatus =
    typeof FP_STATUS_DATA | typeof FP_STATUS_END | typeof FP_STATUS_ERROR;

/* msgid is a u32 on the wire but only the 31-bit range is legal */
export const FP_MSGID_MAX = 2 ** 31 - 1;

/* field sizes */
const FP_SZ_VERSION = 1;
const FP_SZ_TYPE = 1;
const FP_SZ_STATUS = 1;
const FP_SZ_MSGID = 4;
const FP_SZ_CRC = 4;
const FP_SZ_DATALEN = 4;

/* field offsets */
export const FP_OFF_VERSION = 0;
export const FP_OFF_TYPE = FP_OFF_VERSION + FP_SZ_VERSION;     /* 0x01 */
export const FP_OFF_STATUS = FP_OFF_TYPE + FP_SZ_TYPE;          /* 0x02 */
export const FP_OFF_MSGID = FP_OFF_STATUS + FP_SZ_STATUS;       /* 0x03 */
export const FP_OFF_CRC = FP_OFF_MSGID + FP_SZ_MSGID;           /* 0x07 */
export const FP_OFF_DATALEN = FP_OFF_CRC + FP_SZ_CRC;           /* 0x0B */
export const FP_OFF_DATA = FP_OFF_DATALEN + FP_SZ_DATALEN;      /* 0x0F */

/* the header is everything before the payload */
export const FP_HEADER_SZ = FP_OFF_DATA;                        /* 15 */

/*
 * Default cap on the size of one frame (header + payload), enforced by the
 * decoder as soon as a header is complete.  The reference enforces no limit
 * at all (a 15-byte header can make it buffer 4 GiB).  The spec (§8.3) warns
 * that real Moray traffic carries objects and batch requests of several MB,
 * so the cap must sit far above that: 64 MiB leaves an order of magnitude of
 * headroom for legitimate payloads while bounding what one connection can
 * make us hold.  Configurable per decoder.
 */
export const DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024;

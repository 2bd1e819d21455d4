/*
 * probes.h: the interface between the hand-written N-API glue (addon.c) and
 * the probe list generated from src/probes/table.ts (probes.gen.c, written
 * by tools/gen-usdt.ts; never edit that file by hand).
 *
 *   table.ts --gen-usdt--> probes.gen.c: semaphores + musdt_probes[] + musdt_fire()
 *                                   ^
 *   addon.c (JS <-> C) -------------+
 *
 * Probe indexes are positions in PROBE_TABLE; the JS backend matches probes
 * by provider and name, not by index, so a stale build degrades to
 * "probe missing" rather than firing the wrong site.
 */

#ifndef MORAY_USDT_PROBES_H
#define MORAY_USDT_PROBES_H

#include <stdint.h>

#define MUSDT_MAX_ARGS 6

/* One converted argument: 'i' -> .i, 's' and 'j' -> .s (NUL-terminated). */
typedef union musdt_arg {
    int64_t i;
    const char *s;
} musdt_arg_t;

struct musdt_probe {
    const char *provider;       /* "moray" */
    const char *name;           /* "getobject-start" (table spelling) */
    const char *types;          /* one letter per argument: i, s or j */
    unsigned nargs;
    volatile unsigned short *semaphore;
};

extern const struct musdt_probe musdt_probes[];
extern const unsigned musdt_nprobes;

/* Hit the probe site of probe `idx` (idx < musdt_nprobes) with `args`. */
void musdt_fire(unsigned idx, const musdt_arg_t *args);

#endif /* MORAY_USDT_PROBES_H */

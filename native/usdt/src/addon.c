/*
 * addon.c: the N-API face of the static USDT probes (moray_usdt.node).
 *
 * Why a native addon at all: Linux tracers (bpftrace, perf, bcc) find USDT
 * probes through ELF notes in a mapped file, so the probe sites must exist
 * at build time in some object; Node itself ships none for us and no npm
 * package creates them at run time.  The probe list is generated from
 * src/probes/table.ts into probes.gen.c; this file only converts JS values.
 *
 *   JS (src/probes/usdt-backend.ts)
 *     enabled():  sems[probe.semaphore] !== 0     <- a typed-array read over
 *                                                    the .probes section,
 *                                                    no call into C
 *     fire(idx, a0..a5) --> Fire() --> convert --> musdt_fire(idx) --> NOP
 *                                                    (uprobe when traced)
 *
 * Exports:
 *   abi          1 (bumped when this shape changes)
 *   probes       [{provider, name, types, semaphore}], semaphore = index in
 *                the Uint16Array over `semaphores`
 *   semaphores   external ArrayBuffer spanning every semaphore, or undefined
 *                if the runtime forbids external buffers (then use enabled())
 *   enabled(idx) boolean, reads the semaphore in C (the slow path)
 *   fire(idx, ...args)
 *
 * Argument conversion: 'i' takes a JS number and truncates it to int64
 * (anything else, NaN included, becomes 0); 's' and 'j' take a string, and
 * anything else is coerced with ToString.  The JS backend already converts
 * (String(), JSON.stringify()) so these are only a safety net.  Strings are
 * copied (UTF-8) into a stack buffer, or the heap when longer.
 *
 * Failure modes: a bad probe index is a programmer error and throws a
 * RangeError; missing arguments fire as 0 / "undefined".  Nothing here can
 * crash the process or fire the wrong probe site.
 */

#define NAPI_VERSION 8
#include <node_api.h>
#include <stdlib.h>
#include <string.h>

#include "probes.h"

#ifdef MUSDT_STUB
/* Not an ELF target (macOS, illumos): no probe sites, an empty table. */
const struct musdt_probe musdt_probes[1] = { { "", "", "", 0, NULL } };
const unsigned musdt_nprobes = 0;
void musdt_fire(unsigned idx, const musdt_arg_t *args) { }
#endif

#define MUSDT_ABI 1
#define MUSDT_INLINE_STR 256

static void
throw_napi(napi_env env, const char *what)
{
    const napi_extended_error_info *info = NULL;
    bool pending = false;

    napi_is_exception_pending(env, &pending);
    if (pending)
        return;
    napi_get_last_error_info(env, &info);
    napi_throw_error(env, "EUSDT",
        info != NULL && info->error_message != NULL ?
        info->error_message : what);
}

#define NAPI_OK(env, call)                                                   \
    do {                                                                     \
        if ((call) != napi_ok) {                                             \
            throw_napi((env), #call);                                        \
            return NULL;                                                     \
        }                                                                    \
    } while (0)

/*
 * Convert `v` to an owned C string in `inline_buf` or on the heap (*heap is
 * set when the heap was used).  Returns NULL only if N-API failed.
 */
static const char *
to_cstring(napi_env env, napi_value v, char *inline_buf, char **heap)
{
    napi_valuetype t;
    size_t len = 0, copied = 0;
    char *buf = inline_buf;

    if (napi_typeof(env, v, &t) != napi_ok)
        return NULL;
    if (t != napi_string && napi_coerce_to_string(env, v, &v) != napi_ok) {
        /* ToString threw (a Symbol, a throwing toString): fire anyway */
        napi_value ignored;
        napi_get_and_clear_last_exception(env, &ignored);
        return "[unconvertible]";
    }
    if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok)
        return NULL;
    if (len >= MUSDT_INLINE_STR) {
        if ((buf = malloc(len + 1)) == NULL)
            return NULL;
        *heap = buf;
    }
    if (napi_get_value_string_utf8(env, v, buf, len + 1, &copied) != napi_ok)
        return NULL;
    return buf;
}

static int64_t
to_int64(napi_env env, napi_value v)
{
    napi_valuetype t;
    int64_t i = 0;

    if (napi_typeof(env, v, &t) != napi_ok || t != napi_number)
        return 0;
    if (napi_get_value_int64(env, v, &i) != napi_ok)
        return 0;
    return i;
}

static napi_value
Fire(napi_env env, napi_callback_info info)
{
    size_t argc = MUSDT_MAX_ARGS + 1;
    napi_value argv[MUSDT_MAX_ARGS + 1];
    napi_value undef;
    uint32_t idx;
    const struct musdt_probe *p;
    musdt_arg_t args[MUSDT_MAX_ARGS];
    char inline_bufs[MUSDT_MAX_ARGS][MUSDT_INLINE_STR];
    char *heap[MUSDT_MAX_ARGS] = { NULL };
    unsigned i;
    int failed = 0;

    NAPI_OK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    NAPI_OK(env, napi_get_undefined(env, &undef));
    if (argc < 1 || napi_get_value_uint32(env, argv[0], &idx) != napi_ok ||
        idx >= musdt_nprobes) {
        napi_throw_range_error(env, "EUSDT", "fire: bad probe index");
        return NULL;
    }
    p = &musdt_probes[idx];

    for (i = 0; i < p->nargs; i++) {
        napi_value v = i + 1 < argc ? argv[i + 1] : undef;

        if (p->types[i] == 'i') {
            args[i].i = to_int64(env, v);
        } else {
            args[i].s = to_cstring(env, v, inline_bufs[i], &heap[i]);
            if (args[i].s == NULL) {
                failed = 1;
                break;
            }
        }
    }

    if (!failed)
        musdt_fire(idx, args);

    for (i = 0; i < MUSDT_MAX_ARGS; i++)
        free(heap[i]);
    if (failed) {
        throw_napi(env, "fire: argument conversion failed");
        return NULL;
    }
    return undef;
}

static napi_value
Enabled(napi_env env, napi_callback_info info)
{
    size_t argc = 1;
    napi_value argv[1];
    napi_value result;
    uint32_t idx;

    NAPI_OK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    if (argc < 1 || napi_get_value_uint32(env, argv[0], &idx) != napi_ok ||
        idx >= musdt_nprobes) {
        napi_throw_range_error(env, "EUSDT", "enabled: bad probe index");
        return NULL;
    }
    NAPI_OK(env, napi_get_boolean(env,
        *musdt_probes[idx].semaphore != 0, &result));
    return result;
}

static napi_value
make_string(napi_env env, const char *s)
{
    napi_value v;

    if (napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &v) != napi_ok)
        return NULL;
    return v;
}

static napi_value
Init(napi_env env, napi_value exports)
{
    napi_value probes, fn, v;
    uintptr_t lo = UINTPTR_MAX, hi = 0;
    unsigned i;

    /* The semaphores live in one section; find the span they occupy. */
    for (i = 0; i < musdt_nprobes; i++) {
        uintptr_t a = (uintptr_t)musdt_probes[i].semaphore;
        if (a < lo)
            lo = a;
        if (a > hi)
            hi = a;
    }

    NAPI_OK(env, napi_create_array_with_length(env, musdt_nprobes, &probes));
    for (i = 0; i < musdt_nprobes; i++) {
        const struct musdt_probe *p = &musdt_probes[i];
        napi_value o;

        NAPI_OK(env, napi_create_object(env, &o));
        NAPI_OK(env, napi_set_named_property(env, o, "provider",
            make_string(env, p->provider)));
        NAPI_OK(env, napi_set_named_property(env, o, "name",
            make_string(env, p->name)));
        NAPI_OK(env, napi_set_named_property(env, o, "types",
            make_string(env, p->types)));
        NAPI_OK(env, napi_create_uint32(env,
            (uint32_t)(((uintptr_t)p->semaphore - lo) /
            sizeof (unsigned short)), &v));
        NAPI_OK(env, napi_set_named_property(env, o, "semaphore", v));
        NAPI_OK(env, napi_set_element(env, probes, i, o));
    }
    NAPI_OK(env, napi_set_named_property(env, exports, "probes", probes));

    /*
     * The tracer writes the semaphores behind our back (via /proc/PID/mem),
     * so JS must see this very memory, not a copy: an external buffer with
     * no finalizer (the addon is never unloaded).  Runtimes with the V8
     * sandbox refuse external buffers; JS then falls back to enabled().
     */
    if (musdt_nprobes > 0 && napi_create_external_arraybuffer(env,
        (void *)lo, hi - lo + sizeof (unsigned short), NULL, NULL, &v) ==
        napi_ok) {
        NAPI_OK(env, napi_set_named_property(env, exports, "semaphores", v));
    } else {
        napi_value ignored;
        napi_get_and_clear_last_exception(env, &ignored);
    }

    NAPI_OK(env, napi_create_uint32(env, MUSDT_ABI, &v));
    NAPI_OK(env, napi_set_named_property(env, exports, "abi", v));
    NAPI_OK(env, napi_create_function(env, "fire", NAPI_AUTO_LENGTH, Fire,
        NULL, &fn));
    NAPI_OK(env, napi_set_named_property(env, exports, "fire", fn));
    NAPI_OK(env, napi_create_function(env, "enabled", NAPI_AUTO_LENGTH,
        Enabled, NULL, &fn));
    NAPI_OK(env, napi_set_named_property(env, exports, "enabled", fn));
    return exports;
}

NAPI_MODULE_INIT()
{
    return Init(env, exports);
}

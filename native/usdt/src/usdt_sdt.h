/*
 * usdt_sdt.h: static USDT probe sites in the SystemTap SDT format, without
 * <sys/sdt.h>.
 *
 * Why our own header: the addon must build on a bare Debian with g++,
 * python3 and make (systemtap-sdt-dev is not there).  What a tracer
 * (bpftrace, bcc, perf, gdb, SystemTap) needs is not the header but the ELF
 * layout it produces, and that layout is small and stable.  This file emits
 * exactly that layout, using the same assembler technique as sys/sdt.h
 * (SystemTap 4.x, "version 3" notes), cut down to what a generated probe
 * list needs: the generator knows every argument's type, so the argument
 * format string is written out literally instead of being derived with
 * type-introspection macros.
 *
 * One probe site = one NOP in .text plus one ELF note:
 *
 *   .text           990: nop                  <- the tracer puts a uprobe here
 *
 *   .note.stapsdt   (non-allocated; one note per site, 4-byte aligned)
 *   +---------+---------+---------+----------------------------------+
 *   | namesz  | descsz  | type=3  | "stapsdt\0" (padded to 4)        |
 *   +---------+---------+---------+----------------------------------+
 *   | pc (addr of 990)  | base (_.stapsdt.base) | semaphore address  |
 *   +-------------------+-----------------------+--------------------+
 *   | "provider\0" "name\0" "-8@%rdi 8@%rsi ...\0"  (padded to 4)    |
 *   +----------------------------------------------------------------+
 *
 *   .stapsdt.base   one byte (COMDAT, one per object) whose link-time
 *                   address is recorded in every note, so a tracer can
 *                   correct for prelinking: actual(base) - note(base).
 *   .probes         one `unsigned short` semaphore per probe.  A tracer that
 *                   attaches increments it (bpftrace does so with -p PID, by
 *                   writing /proc/PID/mem) and decrements it on detach;
 *                   non-zero means "somebody listens", which is what lets
 *                   the JavaScript side skip building arguments.
 *
 * Argument descriptors are "<size>@<operand>", negative size = signed:
 * "-8@%rax" is a signed 64-bit value in %rax (x86-64), "8@x1" an unsigned
 * 64-bit value in x1 (aarch64).  The operands come from "r" constraints, so
 * the compiler substitutes whatever register it picked; we never emit
 * memory or immediate operands, which keeps every tracer's parser happy.
 *
 * Limits: ELF targets only (Linux, FreeBSD with GNU as); LP64 or ILP32.
 * The probe NOP costs one instruction when nobody traces; with a tracer
 * attached it becomes a trap (about a microsecond).
 */

#ifndef MORAY_USDT_SDT_H
#define MORAY_USDT_SDT_H

#if __SIZEOF_POINTER__ == 8
#define MUSDT_ASM_ADDR ".8byte"
#else
#define MUSDT_ASM_ADDR ".4byte"
#endif

#define MUSDT_STR_(x) #x
#define MUSDT_STR(x) MUSDT_STR_(x)

/* The semaphore that belongs to provider:name (dashes already doubled). */
#define MUSDT_SEMAPHORE(provider, name) provider##_##name##_semaphore

/*
 * Define a semaphore.  "used" keeps it although C code may never read it by
 * name; hidden visibility keeps it out of the dynamic symbol table.
 */
#define MUSDT_DEFINE_SEMAPHORE(provider, name)                                \
    __attribute__((used, visibility("hidden"), section(".probes")))          \
    volatile unsigned short MUSDT_SEMAPHORE(provider, name) = 0

/* The assembler text of one probe site.  `argfmt` is a string literal. */
#define MUSDT_ASM(provider, name, argfmt)                                     \
    "990:\tnop\n"                                                             \
    "\t.pushsection .note.stapsdt,\"?\",\"note\"\n"                           \
    "\t.balign 4\n"                                                           \
    "\t.4byte 992f-991f, 994f-993f, 3\n"                                      \
    "991:\t.asciz \"stapsdt\"\n"                                              \
    "992:\t.balign 4\n"                                                       \
    "993:\t" MUSDT_ASM_ADDR " 990b\n"                                         \
    "\t" MUSDT_ASM_ADDR " _.stapsdt.base\n"                                   \
    "\t" MUSDT_ASM_ADDR " " MUSDT_STR(MUSDT_SEMAPHORE(provider, name)) "\n"   \
    "\t.asciz \"" #provider "\"\n"                                            \
    "\t.asciz \"" #name "\"\n"                                                \
    "\t.asciz \"" argfmt "\"\n"                                               \
    "994:\t.balign 4\n"                                                       \
    "\t.popsection\n"                                                         \
    ".ifndef _.stapsdt.base\n"                                                \
    "\t.pushsection .stapsdt.base,\"aG\",\"progbits\",.stapsdt.base,comdat\n" \
    "\t.weak _.stapsdt.base\n"                                                \
    "\t.hidden _.stapsdt.base\n"                                              \
    "_.stapsdt.base:\n"                                                       \
    "\t.space 1\n"                                                            \
    "\t.size _.stapsdt.base, 1\n"                                             \
    "\t.popsection\n"                                                         \
    ".endif\n"

/* Argument descriptors for operand N: signed 64-bit, or a pointer. */
#define MUSDT_I64(n) "-8@%" #n
#if __SIZEOF_POINTER__ == 8
#define MUSDT_PTR(n) "8@%" #n
#else
#define MUSDT_PTR(n) "4@%" #n
#endif

/* A probe site with no arguments. */
#define MUSDT_PROBE0(provider, name)                                          \
    __asm__ __volatile__(MUSDT_ASM(provider, name, ""))

/*
 * A probe site with arguments: `argfmt` is a space-separated list of
 * MUSDT_I64(k)/MUSDT_PTR(k) descriptors, one per operand, and the operands
 * are given as "r"(value) input constraints in the same order, e.g.
 *
 *   MUSDT_PROBE(moray, ping__start, MUSDT_I64(0) " " MUSDT_PTR(1),
 *               "r"(msgid), "r"(req_id));
 */
#define MUSDT_PROBE(provider, name, argfmt, ...)                              \
    __asm__ __volatile__(MUSDT_ASM(provider, name, argfmt) : : __VA_ARGS__)

#endif /* MORAY_USDT_SDT_H */

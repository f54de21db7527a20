// CPUID / XGETBV probe for `daft_cpu_has_avx512` (see include/ccpuid.h). Compiled for baseline x86-64:
// it runs before anything decides to use wider instructions.
#include "ccpuid.h"

#if defined(__x86_64__)
#include <cpuid.h>
#include <stdint.h>

static uint64_t xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

int daft_cpu_has_avx512(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    const unsigned fma = 1u << 12, osxsave = 1u << 27, avx = 1u << 28;
    if ((c & (fma | osxsave | avx)) != (fma | osxsave | avx)) return 0;
    // XMM (1), YMM (2), opmask (5), ZMM0-15 upper halves (6), ZMM16-31 (7) enabled by the OS
    const uint64_t state = (1u << 1) | (1u << 2) | (1u << 5) | (1u << 6) | (1u << 7);
    if ((xgetbv0() & state) != state) return 0;
    if (__get_cpuid_max(0, 0) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    const unsigned bmi1 = 1u << 3, avx2 = 1u << 5, bmi2 = 1u << 8, f = 1u << 16, dq = 1u << 17,
                   cd = 1u << 28, bw = 1u << 30, vl = 1u << 31;
    const unsigned need = bmi1 | avx2 | bmi2 | f | dq | cd | bw | vl;
    return (b & need) == need;
}
#else
int daft_cpu_has_avx512(void) { return 0; }
#endif

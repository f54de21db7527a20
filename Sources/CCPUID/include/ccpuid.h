#ifndef DAFT_CCPUID_H
#define DAFT_CCPUID_H
// Run-time CPU feature detection for the kernels' instruction-set dispatch.

/// 1 when the CPU implements the AVX-512 subsets a `-target-cpu skylake-avx512` build may emit
/// (AVX512F, AVX512CD, AVX512BW, AVX512DQ, AVX512VL; the x86-64-v4 level) together with AVX2, FMA and
/// BMI1/2, and the operating system saves the zmm / opmask register state (XCR0 bits 1, 2, 5, 6, 7).
/// 0 otherwise, and always 0 on non-x86_64 hosts.
int daft_cpu_has_avx512(void);

#endif

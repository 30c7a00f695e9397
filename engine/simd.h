/*
 * simd.h (engine-internal): per-CPU code paths for the hot loops.
 *
 * The release build targets baseline x86-64 (SSE2) so one binary runs
 * everywhere. SMELT_HOT asks gcc to compile a function three times, for
 * AVX-512 (x86-64-v4), AVX2+FMA (x86-64-v3) and the baseline, and to pick
 * one at load time from the CPU's features. The loops are plain C, so every
 * copy computes the same bits: ISO C mode keeps floating-point contraction
 * off (no fused multiply-add is introduced) and the vectoriser never
 * reorders a floating-point sum without -ffast-math.
 *
 * Use it on the outermost function of a hot loop nest: a clone cannot be
 * inlined into its caller, but the static inline helpers it calls are
 * compiled into each clone. Sanitizer and clang builds get one copy.
 */
#ifndef SMELT_SIMD_H
#define SMELT_SIMD_H

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) &&                             \
    !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_UNDEFINED__)
#define SMELT_HOT __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define SMELT_HOT
#endif

#endif

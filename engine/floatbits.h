/*
 * floatbits.h (engine-internal): the scalar float conversions as inline
 * bit manipulations, shared by dtype.c's bulk loops and by methods with a
 * fused bfloat16 kernel, so both round exactly alike. Branch-free, so loops
 * over them vectorise.
 */
#ifndef SMELT_FLOATBITS_H
#define SMELT_FLOATBITS_H

#include <stdint.h>
#include <string.h>

static inline uint32_t smelt_f32_bits(float f)
{
	uint32_t u;

	memcpy(&u, &f, sizeof(u));
	return u;
}

static inline float smelt_bits_f32(uint32_t u)
{
	float f;

	memcpy(&f, &u, sizeof(f));
	return f;
}

/* mask is all ones or all zeros. */
static inline uint32_t smelt_select_u32(uint32_t mask, uint32_t a, uint32_t b)
{
	return (a & mask) | (b & ~mask);
}

static inline float smelt_bf16_f32_inline(uint16_t h)
{
	return smelt_bits_f32((uint32_t)h << 16);
}

static inline uint16_t smelt_f32_bf16_inline(float f)
{
	uint32_t u = smelt_f32_bits(f);
	/* Round to nearest even: add 0x7fff plus the lowest kept bit. */
	uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
	/* NaN: keep sign and top payload bits, force the quiet bit. */
	uint32_t nan = (u >> 16) | 0x0040u;
	uint32_t nan_mask = 0u - (uint32_t)((u & 0x7fffffffu) > 0x7f800000u);

	return (uint16_t)smelt_select_u32(nan_mask, nan, rounded);
}

#endif

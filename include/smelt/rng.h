/*
 * rng.h: a counter-based random generator.
 *
 * A draw is a pure function of (key, counter): no state, so any thread can
 * draw element i of any tensor in any order and get the same value. Random
 * merge methods key it by (engine seed, tensor name, model index) and use the
 * flat element index as the counter, which makes their output independent of
 * thread count and processing order.
 */
#ifndef SMELT_RNG_H
#define SMELT_RNG_H

#include <stdint.h>

/* Key for one (seed, tensor name, model index) stream. */
uint64_t smelt_rng_key(uint64_t seed, const char *tensor_name, uint64_t model_index);

/* splitmix64's finaliser: a bijection with full avalanche. */
static inline uint64_t smelt_rng_mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* 64 random bits for counter c of stream key: two rounds keyed differently
 * so nearby counters and nearby keys both decorrelate. Inline, so loops
 * drawing one number per element vectorise. */
static inline uint64_t smelt_rng_u64(uint64_t key, uint64_t c)
{
	uint64_t z = smelt_rng_mix64(key + c * 0x9e3779b97f4a7c15ull);

	return smelt_rng_mix64(z ^ (key >> 17 | key << 47));
}

/* Uniform double in [0, 1) with 53 random bits. */
static inline double smelt_rng_uniform(uint64_t key, uint64_t c)
{
	return (double)(smelt_rng_u64(key, c) >> 11) * 0x1.0p-53;
}

/* Bernoulli(p): 1 with probability p (p <= 0 never, p >= 1 always). */
static inline int smelt_rng_bernoulli(uint64_t key, uint64_t c, double p)
{
	return smelt_rng_uniform(key, c) < p;
}

/* 64-bit FNV-1a of a string, the name part of keys. */
uint64_t smelt_hash_str(const char *s);

#endif

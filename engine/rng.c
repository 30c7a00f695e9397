/* rng.c: stateless counter-based generator (two rounds of a 64-bit mixer). */
#include "smelt/rng.h"

static uint64_t mix64(uint64_t z)
{
	/* splitmix64's finaliser: a bijection with full avalanche. */
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

uint64_t smelt_hash_str(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull;

	while (*s) {
		h ^= (unsigned char)*s++;
		h *= 0x100000001b3ull;
	}
	return h;
}

uint64_t smelt_rng_key(uint64_t seed, const char *tensor_name, uint64_t model_index)
{
	uint64_t k = mix64(seed ^ 0x5bd1e9955bd1e995ull);

	k = mix64(k ^ smelt_hash_str(tensor_name));
	return mix64(k + 0x9e3779b97f4a7c15ull * (model_index + 1));
}

uint64_t smelt_rng_u64(uint64_t key, uint64_t c)
{
	/* Two rounds keyed differently so nearby counters and nearby keys both
	 * decorrelate. */
	uint64_t z = mix64(key + c * 0x9e3779b97f4a7c15ull);

	return mix64(z ^ (key >> 17 | key << 47));
}

/* rng.c: keys of the counter-based generator (the draws are inline in rng.h). */
#include "smelt/rng.h"

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
	uint64_t k = smelt_rng_mix64(seed ^ 0x5bd1e9955bd1e995ull);

	k = smelt_rng_mix64(k ^ smelt_hash_str(tensor_name));
	return smelt_rng_mix64(k + 0x9e3779b97f4a7c15ull * (model_index + 1));
}

/* nameidx.c: name -> index hash table (linear probing, FNV-1a hashes). */
#include "nameidx.h"

#include <stdlib.h>
#include <string.h>

#include "smelt/rng.h"

int smelt_nameidx_init(struct smelt_nameidx *t, size_t max_names)
{
	size_t cap = 16;

	while (cap < max_names * 2 + 1) {
		if (cap > SIZE_MAX / 4)
			return -1;
		cap *= 2;
	}
	t->slots = calloc(cap, sizeof(*t->slots));
	if (!t->slots)
		return -1;
	t->mask = cap - 1;
	t->count = 0;
	return 0;
}

void smelt_nameidx_free(struct smelt_nameidx *t)
{
	free(t->slots);
	t->slots = NULL;
	t->mask = 0;
	t->count = 0;
}

int smelt_nameidx_put(struct smelt_nameidx *t, const char *name, size_t index, size_t *existing)
{
	uint64_t h = smelt_hash_str(name);
	size_t i = (size_t)h & t->mask;

	if (!t->slots || t->count + 1 > t->mask)
		return -1;
	for (;; i = (i + 1) & t->mask) {
		struct smelt_nameidx_slot *s = &t->slots[i];

		if (!s->name) {
			s->name = name;
			s->hash = h;
			s->index = index;
			t->count++;
			return 0;
		}
		if (s->hash == h && strcmp(s->name, name) == 0) {
			if (existing)
				*existing = s->index;
			return 1;
		}
	}
}

long long smelt_nameidx_get(const struct smelt_nameidx *t, const char *name)
{
	uint64_t h;
	size_t i;

	if (!t->slots)
		return -1;
	h = smelt_hash_str(name);
	for (i = (size_t)h & t->mask;; i = (i + 1) & t->mask) {
		const struct smelt_nameidx_slot *s = &t->slots[i];

		if (!s->name)
			return -1;
		if (s->hash == h && strcmp(s->name, name) == 0)
			return (long long)s->index;
	}
}

/*
 * nameidx.h: an open-addressing hash table from NUL-terminated names to
 * indices, used by the safetensors reader (duplicate keys, tensor lookup)
 * and the checkpoint table. Internal to the engine.
 *
 * The table borrows the name pointers: they must outlive it. Capacity is
 * fixed at init (twice the expected count, rounded to a power of two), so
 * inserts never rehash and lookups stay O(1).
 */
#ifndef SMELT_NAMEIDX_H
#define SMELT_NAMEIDX_H

#include <stddef.h>
#include <stdint.h>

struct smelt_nameidx_slot {
	const char *name; /* NULL = empty */
	uint64_t hash;
	size_t index;
};

struct smelt_nameidx {
	size_t mask; /* capacity - 1 */
	size_t count;
	struct smelt_nameidx_slot *slots;
};

/* Room for up to max_names names. Returns 0, or -1 on allocation failure. */
int smelt_nameidx_init(struct smelt_nameidx *t, size_t max_names);
void smelt_nameidx_free(struct smelt_nameidx *t);

/* Insert name -> index. Returns -1 when full, 0 when inserted, or 1 when the
 * name was already present (*existing receives its index; nothing changes). */
int smelt_nameidx_put(struct smelt_nameidx *t, const char *name, size_t index, size_t *existing);

/* Index of name, or -1 when absent. */
long long smelt_nameidx_get(const struct smelt_nameidx *t, const char *name);

#endif

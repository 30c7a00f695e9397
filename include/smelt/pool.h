/*
 * pool.h: a fixed pthread pool running parallel-for loops.
 *
 * smelt_pool_for() runs fn(ctx, i, worker) for every i in [0, n) on the
 * pool's workers and the calling thread, and returns when all are done.
 * Items are handed out in increasing order through an atomic counter, so
 * work is balanced; worker is in [0, threads) and identifies per-thread
 * scratch. One loop at a time per pool.
 */
#ifndef SMELT_POOL_H
#define SMELT_POOL_H

#include <stddef.h>

struct smelt_pool;

/* threads <= 0 means "all online CPUs". Returns NULL on allocation failure. */
struct smelt_pool *smelt_pool_new(int threads);
void smelt_pool_free(struct smelt_pool *p);
int smelt_pool_threads(const struct smelt_pool *p);

typedef void (*smelt_pool_fn)(void *ctx, size_t i, int worker);
void smelt_pool_for(struct smelt_pool *p, size_t n, smelt_pool_fn fn, void *ctx);

/* Number of online CPUs (>= 1). */
int smelt_cpu_count(void);

#endif

/*
 * job.h (engine-internal): the block/chunk/pass machinery that runs one
 * method job, shared by the in-memory runner and the file executor.
 *
 * A job_io supplies blocks and takes results. load() makes block->base and
 * block->x point at nrows*cols f32 values (inside the caller's arrays or in
 * per-worker buffers); store() consumes the merged block. Both are called
 * on pool workers; `worker` selects per-thread scratch.
 */
#ifndef SMELT_JOB_H
#define SMELT_JOB_H

#include <stdatomic.h>

#include "smelt/method.h"
#include "smelt/pool.h"

struct job_io {
	int (*load)(void *ctx, int worker, struct smelt_block *b, struct smelt_err *err);
	float *(*out_buf)(void *ctx, int worker, const struct smelt_block *b);
	int (*store)(void *ctx, int worker, const struct smelt_block *b, float *out,
		     struct smelt_err *err);
	/* Called once per block and pass after load, for progress accounting. */
	void (*consumed)(void *ctx, const struct smelt_block *b);
	void *ctx;
	const atomic_int *cancel; /* may be NULL */
	double *weights;          /* [n_models] receives method->weights(), may be NULL */
};

/* Per-input block budgets in bytes of f32 (smelt_method_block_bytes). */
#define SMELT_BLOCK_BYTES_DEFAULT (256u * 1024u)
#define SMELT_BLOCK_BYTES_STREAM  (1024u * 1024u)
/* Chunks per tensor for statistics passes: a fixed number, so the fold order
 * never depends on the thread count. */
#define SMELT_MAX_CHUNKS 16

/* Run setup, the statistics passes and the merge pass of one job (layout
 * must already be computed). Calls release() before returning whenever
 * setup succeeded. */
int smelt_job_execute(const struct smelt_method *m, struct smelt_tensor_job *job,
		      struct smelt_pool *pool, const struct job_io *io, struct smelt_err *err);

/* Rows [row0, row0+nrows) of block i. */
void smelt_job_block_rows(const struct smelt_tensor_job *job, size_t i, uint64_t *row0,
			  uint64_t *nrows);

#endif

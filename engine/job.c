/*
 * job.c: runs one method job: setup, statistics passes over fixed chunks,
 * the merge pass over blocks, release.
 *
 * Determinism: blocks and chunks depend only on the tensor's shape and the
 * block budget, never on the thread count. A statistics pass gives each
 * chunk its own accumulator and folds them in chunk order, so floating-point
 * sums come out bit-identical whether one thread or many ran the pass.
 */
#include "job.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

uint64_t smelt_method_block_bytes(const struct smelt_method *m)
{
	const char *env = getenv("SMELT_BLOCK_BYTES");

	if (env && *env) {
		char *end;
		unsigned long long v = strtoull(env, &end, 10);

		if (*end == '\0' && v >= 4)
			return v;
	}
	return m && !m->stats ? SMELT_BLOCK_BYTES_STREAM : SMELT_BLOCK_BYTES_DEFAULT;
}

void smelt_job_layout(struct smelt_tensor_job *job, const struct smelt_method *m)
{
	uint64_t budget = smelt_method_block_bytes(m);
	uint64_t row_bytes;

	smelt_tensor_rows_cols(job->ndim, job->shape, &job->rows, &job->cols);
	job->numel = job->rows * job->cols;
	row_bytes = job->cols * sizeof(float);
	job->block_rows = row_bytes ? budget / row_bytes : job->rows;
	if (job->block_rows < 1)
		job->block_rows = 1;
	if (job->block_rows > job->rows)
		job->block_rows = job->rows ? job->rows : 1;
	job->n_blocks = job->rows ? (size_t)((job->rows + job->block_rows - 1) / job->block_rows) : 0;
	job->n_chunks = job->n_blocks < SMELT_MAX_CHUNKS ? job->n_blocks : SMELT_MAX_CHUNKS;
}

void smelt_job_block_rows(const struct smelt_tensor_job *job, size_t i, uint64_t *row0,
			  uint64_t *nrows)
{
	*row0 = (uint64_t)i * job->block_rows;
	*nrows = job->rows - *row0 < job->block_rows ? job->rows - *row0 : job->block_rows;
}

/* Chunk c covers blocks [first, last). */
static void chunk_blocks(const struct smelt_tensor_job *job, size_t c, size_t *first, size_t *last)
{
	size_t per = job->n_blocks / job->n_chunks, extra = job->n_blocks % job->n_chunks;

	*first = c * per + (c < extra ? c : extra);
	*last = *first + per + (c < extra ? 1 : 0);
}

struct run_state {
	const struct smelt_method *m;
	struct smelt_tensor_job *job;
	const struct job_io *io;
	int pass;
	uint8_t *accs;             /* n_chunks accumulators of acc_bytes[pass] */
	pthread_mutex_t lock;
	atomic_int failed;
	struct smelt_err err;      /* first failure, under lock */
};

static void record_failure(struct run_state *st, const struct smelt_err *e)
{
	pthread_mutex_lock(&st->lock);
	if (!atomic_load(&st->failed)) {
		st->err = *e;
		atomic_store(&st->failed, 1);
	}
	pthread_mutex_unlock(&st->lock);
}

static bool should_stop(struct run_state *st)
{
	if (atomic_load(&st->failed))
		return true;
	if (st->io->cancel && atomic_load(st->io->cancel)) {
		struct smelt_err e;

		smelt_fail(&e, SMELT_ECANCELED, "cancelled");
		record_failure(st, &e);
		return true;
	}
	return false;
}

static bool load_block(struct run_state *st, size_t i, int worker, struct smelt_block *b)
{
	struct smelt_err e;

	memset(b, 0, sizeof(*b));
	b->index = i;
	smelt_job_block_rows(st->job, i, &b->row0, &b->nrows);
	b->elem0 = b->row0 * st->job->cols;
	if (st->io->load(st->io->ctx, worker, b, &e) != 0) {
		record_failure(st, &e);
		return false;
	}
	if (st->io->consumed)
		st->io->consumed(st->io->ctx, b);
	return true;
}

/*
 * Passes over a tensor alternate direction: pass k walks its blocks
 * backwards when k is odd, the merge counting as pass n_passes. A pass then
 * starts on the rows the previous one touched last, which are still in the
 * CPU's caches when the tensor is not much larger than them. Which block a
 * chunk covers, and the order of the chunk accumulators' fold, stay fixed.
 */
static bool backwards(const struct run_state *st)
{
	return st->pass & 1;
}

static void stats_chunk(void *ctx, size_t k, int worker)
{
	struct run_state *st = ctx;
	size_t c = backwards(st) ? st->job->n_chunks - 1 - k : k;
	size_t first, last;
	void *acc = st->accs + c * st->job->acc_bytes[st->pass];

	chunk_blocks(st->job, c, &first, &last);
	for (size_t n = first; n < last; n++) {
		size_t i = backwards(st) ? first + last - 1 - n : n;
		struct smelt_block b;

		if (should_stop(st) || !load_block(st, i, worker, &b))
			return;
		st->m->stats(st->job, st->pass, &b, acc);
	}
}

static void merge_block(void *ctx, size_t k, int worker)
{
	struct run_state *st = ctx;
	size_t i = backwards(st) ? st->job->n_blocks - 1 - k : k;
	struct smelt_block b;
	struct smelt_err e;
	float *out;

	if (should_stop(st) || !load_block(st, i, worker, &b))
		return;
	out = st->io->out_buf(st->io->ctx, worker, &b);
	st->m->merge(st->job, &b, out);
	if (st->io->store(st->io->ctx, worker, &b, out, &e) != 0)
		record_failure(st, &e);
}

static void sum_doubles(void *dst, const void *src, size_t bytes)
{
	double *d = dst;
	const double *s = src;

	for (size_t i = 0; i < bytes / sizeof(double); i++)
		d[i] += s[i];
}

static int run_pass(struct run_state *st, struct smelt_pool *pool, int pass)
{
	struct smelt_tensor_job *job = st->job;
	size_t bytes = job->acc_bytes[pass];
	int rc;

	st->pass = pass;
	st->accs = NULL;
	if (job->n_chunks && bytes) {
		st->accs = calloc(job->n_chunks, bytes);
		if (!st->accs)
			return smelt_fail(&st->err, SMELT_ENOMEM,
					  "%s: out of memory for statistics (%zu bytes)", job->name,
					  job->n_chunks * bytes);
	}
	if (job->n_chunks)
		smelt_pool_for(pool, job->n_chunks, stats_chunk, st);
	if (atomic_load(&st->failed)) {
		free(st->accs);
		return st->err.code;
	}
	for (size_t c = 1; c < job->n_chunks && bytes; c++) {
		void *dst = st->accs, *src = st->accs + c * bytes;

		if (st->m->combine)
			st->m->combine(job, pass, dst, src);
		else
			sum_doubles(dst, src, bytes);
	}
	rc = st->m->finish ? st->m->finish(job, pass, st->accs, &st->err) : 0;
	free(st->accs);
	st->accs = NULL;
	return rc;
}

int smelt_job_execute(const struct smelt_method *m, struct smelt_tensor_job *job,
		      struct smelt_pool *pool, const struct job_io *io, struct smelt_err *err)
{
	struct run_state st = {.m = m, .job = job, .io = io};
	int rc = 0;

	pthread_mutex_init(&st.lock, NULL);
	atomic_init(&st.failed, 0);
	smelt_err_clear(&st.err);
	job->n_passes = 0;
	memset(job->acc_bytes, 0, sizeof(job->acc_bytes));
	job->state = NULL;
	if (m->setup && (rc = m->setup(job, &st.err)) != 0)
		goto out;
	if (job->n_passes < 0 || job->n_passes > SMELT_MAX_PASSES || (job->n_passes && !m->stats)) {
		rc = smelt_fail(&st.err, SMELT_EINVAL, "%s: method %s declared %d statistics passes",
				job->name, m->name, job->n_passes);
		goto release;
	}
	for (int pass = 0; pass < job->n_passes; pass++)
		if ((rc = run_pass(&st, pool, pass)) != 0)
			goto release;
	st.pass = job->n_passes;
	smelt_pool_for(pool, job->n_blocks, merge_block, &st);
	if (atomic_load(&st.failed))
		rc = st.err.code ? st.err.code : SMELT_EIO;
	else if (m->weights && io->weights)
		m->weights(job, io->weights);
release:
	if (m->release)
		m->release(job);
out:
	if (rc && err)
		*err = st.err;
	pthread_mutex_destroy(&st.lock);
	return rc;
}

/* ---- in-memory runner ---- */

struct mem_io {
	const struct smelt_tensor_job *job;
	const float *base;
	const float *const *x;
	float *out;
	const float **ptrs;        /* per worker: n_models pointers */
};

static int mem_load(void *ctx, int worker, struct smelt_block *b, struct smelt_err *err)
{
	struct mem_io *mi = ctx;
	const float **ptrs = mi->ptrs + (size_t)worker * (size_t)mi->job->n_models;

	(void)err;
	b->base = mi->base ? mi->base + b->elem0 : NULL;
	for (int i = 0; i < mi->job->n_models; i++)
		ptrs[i] = mi->x[i] + b->elem0;
	b->x = ptrs;
	return 0;
}

static float *mem_out(void *ctx, int worker, const struct smelt_block *b)
{
	struct mem_io *mi = ctx;

	(void)worker;
	return mi->out + b->elem0;
}

static int mem_store(void *ctx, int worker, const struct smelt_block *b, float *out,
		     struct smelt_err *err)
{
	(void)ctx, (void)worker, (void)b, (void)out, (void)err;
	return 0;
}

int smelt_run_job_mem(const struct smelt_method *m, struct smelt_tensor_job *job,
		      const float *base, const float *const *x, float *out, int threads,
		      struct smelt_err *err)
{
	struct smelt_pool *pool;
	struct mem_io mi = {.job = job, .base = base, .x = x, .out = out};
	struct job_io io = {.load = mem_load, .out_buf = mem_out, .store = mem_store, .ctx = &mi};
	int rc;

	smelt_job_layout(job, m);
	job->has_base = base != NULL;
	if (m->check && (rc = m->check(job, err)) != 0)
		return rc;
	pool = smelt_pool_new(threads);
	if (!pool)
		return smelt_fail(err, SMELT_ENOMEM, "out of memory starting threads");
	mi.ptrs = calloc((size_t)smelt_pool_threads(pool) * (size_t)(job->n_models ? job->n_models : 1),
			 sizeof(*mi.ptrs));
	if (!mi.ptrs) {
		smelt_pool_free(pool);
		return smelt_fail(err, SMELT_ENOMEM, "out of memory");
	}
	rc = smelt_job_execute(m, job, pool, &io, err);
	free(mi.ptrs);
	smelt_pool_free(pool);
	return rc;
}

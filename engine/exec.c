/*
 * exec.c: the fused streaming executor. Runs a plan tensor by tensor; each
 * tensor's rows are split into blocks that pool workers read (converting
 * to f32 straight from the mapped inputs), merge, convert to the output
 * dtype and pwrite to their final place in a preallocated shard. Anonymous
 * memory is a few block buffers per worker plus the method's per-tensor
 * statistics, whatever the model size.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "exec.h"
#include "job.h"
#include "smelt/pool.h"

/* ---- per-worker buffers ---- */

struct worker_bufs {
	float *in;                 /* (max inputs + 1) x cap floats */
	float *out;                /* cap floats */
	uint8_t *bytes;            /* cap x 8 bytes (widest output element) */
	const float **ptrs;        /* max inputs pointers */
	const uint16_t **raw;      /* the fused path's bf16 input pointers */
};

struct exec {
	struct smelt_plan *p;
	struct smelt_progress *prog;
	struct smelt_pool *pool;
	struct out_shards *shards;
	struct worker_bufs *w;
	int threads;
	size_t cap;                /* floats per input buffer */
	int max_inputs;

	/* the tensor being run */
	const struct smelt_plan_tensor *t;
	const struct smelt_plan_input *ins; /* inputs of the current job */
	int n_ins;                 /* inputs incl. the base (base first when present) */
	bool job_has_base;
	uint64_t row_offset;       /* first output row of the current job */
	uint64_t cols;
	float *const *mean_rows;   /* per input: its mean row, or NULL (embed_policy mean) */
	double scale;
	uint64_t out_offset;       /* file offset of the tensor's first byte */
	double *weights;           /* where the method reports mean weights, or NULL */
	const struct smelt_tensor_job *job; /* the job being run */
	bool durable;              /* --fsync: start writeback early */
	uint64_t last_writeback;   /* bytes_written when writeback was last started */
	struct smelt_st_writer *writer;
};

static int grow_buffers(struct exec *ex, size_t floats, int inputs)
{
	if (floats <= ex->cap && inputs <= ex->max_inputs)
		return 0;
	if (floats < ex->cap)
		floats = ex->cap;
	if (inputs < ex->max_inputs)
		inputs = ex->max_inputs;
	for (int i = 0; i < ex->threads; i++) {
		struct worker_bufs *w = &ex->w[i];
		float *in = realloc(w->in, floats * (size_t)(inputs + 1) * sizeof(float));
		float *out = in ? realloc(w->out, floats * sizeof(float)) : NULL;
		uint8_t *bytes = out ? realloc(w->bytes, floats * 8) : NULL;
		const float **ptrs = bytes ? realloc(w->ptrs, (size_t)(inputs + 1) * sizeof(*ptrs)) : NULL;
		const uint16_t **raw = ptrs ? realloc(w->raw, (size_t)(inputs + 1) * sizeof(*raw)) : NULL;

		if (in)
			w->in = in;
		if (out)
			w->out = out;
		if (bytes)
			w->bytes = bytes;
		if (ptrs)
			w->ptrs = ptrs;
		if (!raw)
			return SMELT_ENOMEM;
		w->raw = raw;
	}
	ex->cap = floats;
	ex->max_inputs = inputs;
	return 0;
}

/* ---- block I/O ---- */

static int read_input(struct exec *ex, int k, const struct smelt_block *b, float *dst,
		      struct smelt_err *err)
{
	const struct smelt_plan_input *in = &ex->ins[k];
	const struct smelt_ckpt *c = &ex->p->models[in->model];
	uint64_t rows_avail, cols, row0 = ex->row_offset + b->row0, n = b->nrows;

	smelt_tensor_rows_cols(in->t->st->ndim, in->t->st->shape, &rows_avail, &cols);
	if (row0 < rows_avail) {
		uint64_t take = rows_avail - row0 < n ? rows_avail - row0 : n;
		/* A tensor read once is read with pread; one the method reads in
		 * statistics passes and again to merge goes through the mapping,
		 * faulted in once (setup fixed n_passes before the first load). */
		int rc = ex->job->n_passes > 0
				 ? smelt_ckpt_read_rows_mapped(c, in->t, row0, take, dst, err)
				 : smelt_ckpt_read_rows(c, in->t, row0, take, dst, err);

		if (rc)
			return rc;
		dst += take * cols;
		n -= take;
	}
	/* Rows past this input's table (embed_policy mean): its mean row. */
	for (uint64_t r = 0; r < n; r++)
		memcpy(dst + r * cols, ex->mean_rows[k], cols * sizeof(float));
	return 0;
}

static int exec_load(void *ctx, int worker, struct smelt_block *b, struct smelt_err *err)
{
	struct exec *ex = ctx;
	struct worker_bufs *w = &ex->w[worker];
	size_t stride = ex->cap;
	int first = 0;

	if (ex->job_has_base) {
		int rc = read_input(ex, 0, b, w->in, err);

		if (rc)
			return rc;
		b->base = w->in;
		first = 1;
	}
	for (int k = first; k < ex->n_ins; k++) {
		float *dst = w->in + (size_t)k * stride;
		int rc = read_input(ex, k, b, dst, err);

		if (rc)
			return rc;
		w->ptrs[k - first] = dst;
	}
	b->x = w->ptrs;
	return 0;
}

static void exec_consumed(void *ctx, const struct smelt_block *b)
{
	struct exec *ex = ctx;
	uint64_t bytes = 0;

	for (int k = 0; k < ex->n_ins; k++) {
		const struct smelt_st_tensor *st = ex->ins[k].t->st;

		bytes += b->nrows * ex->cols * smelt_dtype_bits(st->dtype) / 8;
	}
	atomic_fetch_add(&ex->prog->bytes_read, bytes);
}

static float *exec_out_buf(void *ctx, int worker, const struct smelt_block *b)
{
	struct exec *ex = ctx;

	(void)b;
	return ex->w[worker].out;
}

static int exec_store(void *ctx, int worker, const struct smelt_block *b, float *out,
		      struct smelt_err *err)
{
	struct exec *ex = ctx;
	struct worker_bufs *w = &ex->w[worker];
	enum smelt_dtype dt = ex->t->out_dtype;
	size_t esize = smelt_dtype_bits(dt) / 8;
	size_t n = (size_t)(b->nrows * ex->cols);
	uint64_t off = ex->out_offset + (ex->row_offset + b->row0) * ex->cols * esize;
	int rc;

	smelt_from_f32(dt, out, w->bytes, n);
	rc = smelt_st_writer_pwrite(ex->writer, off, w->bytes, n * esize, err);
	if (rc == 0)
		atomic_fetch_add(&ex->prog->bytes_written, n * esize);
	return rc;
}

/* ---- the copy "method": one input, optionally scaled ---- */

/* The scale travels as the job's one global parameter: smelt_job_execute()
 * owns job->state (it clears it before setup), so it cannot carry it. */
static void copy_merge(const struct smelt_tensor_job *job, const struct smelt_block *b, float *out)
{
	double scale = job->pg[0];
	size_t n = (size_t)(b->nrows * job->cols);

	if (scale == 1.0) {
		memcpy(out, b->x[0], n * sizeof(float));
		return;
	}
	for (size_t i = 0; i < n; i++)
		out[i] = (float)(b->x[0][i] * scale);
}

static const struct smelt_method copy_method = {
	.name = "copy",
	.min_models = 1,
	.max_models = 1,
	.merge = copy_merge,
};

/* ---- running one tensor ---- */

static void fill_job(struct exec *ex, struct smelt_tensor_job *job, const struct smelt_method *m,
		     uint64_t rows, int n_models, bool has_base, const uint64_t *keys)
{
	const struct smelt_plan_tensor *t = ex->t;

	memset(job, 0, sizeof(*job));
	job->name = t->name;
	job->ndim = t->ndim ? t->ndim : 1;
	if (t->ndim)
		memcpy(job->shape, t->shape, sizeof(job->shape));
	else
		job->shape[0] = 1;
	job->shape[0] = rows;
	job->layer = t->layer;
	job->kind = t->kind;
	job->n_models = n_models;
	job->has_base = has_base;
	job->rng_key = keys;
	smelt_job_layout(job, m);
}

static int run_job(struct exec *ex, const struct smelt_method *m, struct smelt_tensor_job *job,
		   struct smelt_err *err)
{
	struct job_io io = {
		.load = exec_load,
		.out_buf = exec_out_buf,
		.store = exec_store,
		.consumed = exec_consumed,
		.ctx = ex,
		.cancel = &ex->prog->cancel,
		.weights = ex->weights,
	};
	int rc = grow_buffers(ex, (size_t)(job->block_rows * job->cols), ex->n_ins);

	if (rc)
		return smelt_fail(err, rc, "%s: out of memory for block buffers", job->name);
	ex->cols = job->cols;
	ex->job = job;
	return smelt_job_execute(m, job, ex->pool, &io, err);
}

/* ---- the fused bf16 path ---- */

/* Element-wise methods on bf16 inputs into a bf16 output skip the f32
 * round trip: each block's rows are read as stored and merged by the
 * method's merge_bf16 straight into the output bytes (task_arithmetic on
 * the bench family: about a third less user time). Same bits as run_job. */
struct fused_run {
	struct exec *ex;
	const struct smelt_method *m;
	const struct smelt_tensor_job *job;
	atomic_int failed;
	struct smelt_err err;
};

static bool fused_applies(const struct exec *ex, const struct smelt_method *m)
{
	if (!m->merge_bf16 || m->setup || m->stats || ex->t->out_dtype != SMELT_BF16)
		return false;
	for (int k = 0; k < ex->n_ins; k++)
		if (ex->ins[k].t->st->dtype != SMELT_BF16 || ex->mean_rows[k])
			return false;
	return true;
}

static void fused_fail(struct fused_run *f, const struct smelt_err *e)
{
	if (!atomic_exchange(&f->failed, 1))
		f->err = *e;
}

static void fused_block(void *ctx, size_t i, int worker)
{
	struct fused_run *f = ctx;
	struct exec *ex = f->ex;
	struct worker_bufs *w = &ex->w[worker];
	const uint16_t **raw = w->raw;
	uint16_t *out = (uint16_t *)(void *)w->bytes;
	uint64_t row0, nrows;
	size_t n;
	struct smelt_err e;

	if (atomic_load(&f->failed) || atomic_load(&ex->prog->cancel))
		return;
	smelt_job_block_rows(f->job, i, &row0, &nrows);
	n = (size_t)(nrows * ex->cols);
	for (int k = 0; k < ex->n_ins; k++) {
		uint16_t *dst = (uint16_t *)(void *)(w->in + (size_t)k * ex->cap);

		if (smelt_ckpt_read_raw(&ex->p->models[ex->ins[k].model], ex->ins[k].t, row0, nrows,
					dst, &e) != 0) {
			fused_fail(f, &e);
			return;
		}
		raw[k] = dst;
	}
	atomic_fetch_add(&ex->prog->bytes_read, (uint64_t)n * 2 * (uint64_t)ex->n_ins);
	f->m->merge_bf16(f->job, ex->job_has_base ? raw[0] : NULL, raw + (ex->job_has_base ? 1 : 0),
			 out, n);
	if (smelt_st_writer_pwrite(ex->writer, ex->out_offset + row0 * ex->cols * 2, out, n * 2,
				   &e) != 0) {
		fused_fail(f, &e);
		return;
	}
	atomic_fetch_add(&ex->prog->bytes_written, (uint64_t)n * 2);
}

static int run_fused(struct exec *ex, const struct smelt_method *m, struct smelt_tensor_job *job,
		     struct smelt_err *err)
{
	struct fused_run f = {.ex = ex, .m = m, .job = job};
	int rc = grow_buffers(ex, (size_t)(job->block_rows * job->cols), ex->n_ins);

	if (rc)
		return smelt_fail(err, rc, "%s: out of memory for block buffers", job->name);
	ex->cols = job->cols;
	atomic_init(&f.failed, 0);
	smelt_pool_for(ex->pool, job->n_blocks, fused_block, &f);
	if (atomic_load(&f.failed)) {
		*err = f.err;
		return f.err.code ? f.err.code : SMELT_EIO;
	}
	if (atomic_load(&ex->prog->cancel))
		return smelt_fail(err, SMELT_ECANCELED, "cancelled");
	return 0;
}

/* Copy rows [row0, rows) of input `in` into the output, converting dtype
 * and applying scale. */
static int copy_rows(struct exec *ex, const struct smelt_plan_input *in, uint64_t row0,
		     uint64_t rows, double scale, struct smelt_err *err)
{
	struct smelt_tensor_job job;
	uint64_t key = 0;
	float *no_mean = NULL;

	ex->ins = in;
	ex->n_ins = 1;
	ex->job_has_base = false;
	ex->row_offset = row0;
	ex->mean_rows = &no_mean;
	fill_job(ex, &job, &copy_method, rows - row0, 1, false, &key);
	job.n_params = 1;
	job.pg = &scale;
	return run_job(ex, &copy_method, &job, err);
}

/* Same dtype, no scaling: the bytes go straight from the input mapping to
 * the output file. */
struct raw_copy {
	struct exec *ex;
	const uint8_t *src;
	uint64_t bytes, dst;
	atomic_int failed;
	struct smelt_err err;
};

#define RAW_PIECE (8u << 20)

static void raw_piece(void *ctx, size_t i, int worker)
{
	struct raw_copy *rc = ctx;
	uint64_t off = (uint64_t)i * RAW_PIECE;
	uint64_t len = rc->bytes - off < RAW_PIECE ? rc->bytes - off : RAW_PIECE;
	struct smelt_err err;

	(void)worker;
	if (atomic_load(&rc->failed) || atomic_load(&rc->ex->prog->cancel))
		return;
	if (smelt_st_writer_pwrite(rc->ex->writer, rc->dst + off, rc->src + off, len, &err) != 0) {
		if (!atomic_exchange(&rc->failed, 1))
			rc->err = err;
		return;
	}
	atomic_fetch_add(&rc->ex->prog->bytes_read, len);
	atomic_fetch_add(&rc->ex->prog->bytes_written, len);
}

static int copy_raw(struct exec *ex, const struct smelt_plan_input *in, struct smelt_err *err)
{
	const struct smelt_ckpt *c = &ex->p->models[in->model];
	struct raw_copy rc = {.ex = ex, .src = smelt_ckpt_bytes(c, in->t),
			      .bytes = in->t->st->end - in->t->st->begin, .dst = ex->out_offset};

	atomic_init(&rc.failed, 0);
	smelt_pool_for(ex->pool, (size_t)((rc.bytes + RAW_PIECE - 1) / RAW_PIECE), raw_piece, &rc);
	if (atomic_load(&rc.failed)) {
		*err = rc.err;
		return rc.err.code;
	}
	if (atomic_load(&ex->prog->cancel))
		return smelt_fail(err, SMELT_ECANCELED, "cancelled");
	return 0;
}

/* Mean row of an input table (embed_policy mean), malloc'd. */
static float *mean_row(struct exec *ex, const struct smelt_plan_input *in, struct smelt_err *err)
{
	const struct smelt_ckpt *c = &ex->p->models[in->model];
	uint64_t rows, cols, step;
	double *acc;
	float *buf, *row;

	smelt_tensor_rows_cols(in->t->st->ndim, in->t->st->shape, &rows, &cols);
	step = cols ? (1u << 18) / cols + 1 : 1;
	acc = calloc(cols ? cols : 1, sizeof(double));
	buf = malloc((size_t)(step * cols + 1) * sizeof(float));
	row = malloc((size_t)(cols + 1) * sizeof(float));
	if (!acc || !buf || !row)
		goto nomem;
	for (uint64_t r = 0; r < rows; r += step) {
		uint64_t n = rows - r < step ? rows - r : step;

		if (smelt_ckpt_read_rows(c, in->t, r, n, buf, err) != 0)
			goto fail;
		for (uint64_t i = 0; i < n; i++)
			for (uint64_t j = 0; j < cols; j++)
				acc[j] += buf[i * cols + j];
	}
	for (uint64_t j = 0; j < cols; j++)
		row[j] = (float)(acc[j] / (double)(rows ? rows : 1));
	free(acc);
	free(buf);
	return row;
nomem:
	smelt_fail(err, SMELT_ENOMEM, "out of memory");
fail:
	free(acc);
	free(buf);
	free(row);
	return NULL;
}

static int merge_tensor(struct exec *ex, struct smelt_err *err)
{
	const struct smelt_plan_tensor *t = ex->t;
	struct smelt_plan *p = ex->p;
	int n = t->n_inputs + (t->has_base ? 1 : 0);
	struct smelt_plan_input *ins = calloc((size_t)n, sizeof(*ins));
	float **means = calloc((size_t)n, sizeof(*means));
	uint64_t *keys = calloc((size_t)(t->n_inputs ? t->n_inputs : 1), sizeof(*keys));
	struct smelt_tensor_job job;
	int rc = 0;

	if (!ins || !means || !keys) {
		rc = smelt_fail(err, SMELT_ENOMEM, "out of memory");
		goto out;
	}
	if (t->has_base)
		ins[0] = t->base;
	for (int i = 0; i < t->n_inputs; i++) {
		ins[i + (t->has_base ? 1 : 0)] = t->inputs[i];
		keys[i] = smelt_rng_key(p->seed, t->name, (uint64_t)i);
	}
	for (int k = 0; k < n; k++) {
		uint64_t rows, cols;

		smelt_tensor_rows_cols(ins[k].t->st->ndim, ins[k].t->st->shape, &rows, &cols);
		if (rows < t->merge_rows && !(means[k] = mean_row(ex, &ins[k], err))) {
			rc = err->code;
			goto out;
		}
	}
	ex->ins = ins;
	ex->n_ins = n;
	ex->job_has_base = t->has_base;
	ex->row_offset = 0;
	ex->mean_rows = means;
	fill_job(ex, &job, p->method, t->ndim ? t->merge_rows : 1, t->n_inputs, t->has_base, keys);
	job.n_params = p->method->n_params;
	job.pg = t->pg;
	job.pm = t->pm;
	if (p->method->weights && !ex->t->weights)
		((struct smelt_plan_tensor *)ex->t)->weights =
			calloc((size_t)t->n_inputs, sizeof(double));
	ex->weights = t->weights;
	rc = fused_applies(ex, p->method) ? run_fused(ex, p->method, &job, err)
					 : run_job(ex, p->method, &job, err);
	ex->weights = NULL;
	if (rc == 0 && t->ndim && t->merge_rows < t->shape[0])
		rc = copy_rows(ex, &t->base, t->merge_rows, t->shape[0], 1.0, err);
out:
	for (int k = 0; k < n; k++)
		free(means[k]);
	free(means);
	free(ins);
	free(keys);
	return rc;
}

/* Let the kernel drop the mapped input pages we are done with, so a merge
 * larger than RAM does not keep them resident. */
static void drop_input_pages(struct exec *ex, const struct smelt_plan_input *in)
{
	const struct smelt_ckpt *c = &ex->p->models[in->model];
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
	uintptr_t start = (uintptr_t)smelt_ckpt_bytes(c, in->t);
	uintptr_t end = start + (in->t->st->end - in->t->st->begin);

	start = (start + page - 1) & ~(page - 1);
	end &= ~(page - 1);
	if (end > start)
		madvise((void *)start, end - start, MADV_DONTNEED);
}

/* Pool item k: drop input k of the current tensor (the base last). Unmapping
 * takes the mapping lock only for reading, so the inputs are dropped in
 * parallel instead of by the main thread while the workers wait. */
static void drop_one(void *ctx, size_t k, int worker)
{
	struct exec *ex = ctx;
	const struct smelt_plan_tensor *t = ex->t;

	(void)worker;
	drop_input_pages(ex, (int)k < t->n_inputs ? &t->inputs[k] : &t->base);
}

/* With --fsync, start writing dirty output pages back every WRITEBACK_STEP
 * bytes, without waiting, so the disk works while the merge computes and
 * the final fsync has little left to do. Without it the kernel's flusher
 * writes them back on its own schedule, off the merge's critical path. */
#define WRITEBACK_STEP (64ull << 20)

static void start_writeback(struct exec *ex)
{
	uint64_t written = atomic_load(&ex->prog->bytes_written);

	if (!ex->durable || written - ex->last_writeback < WRITEBACK_STEP)
		return;
	ex->last_writeback = written;
	sync_file_range(ex->writer->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
}

static int run_tensor(struct exec *ex, size_t i, struct smelt_err *err)
{
	const struct smelt_plan_tensor *t = &ex->p->tensors[i];
	int rc;

	ex->t = t;
	ex->writer = out_shards_writer(ex->shards, t->shard);
	ex->out_offset = out_shards_offset(ex->shards, i);
	smelt_progress_set_current(ex->prog, t->name);
	if (t->action == SMELT_ACT_COPY) {
		const struct smelt_plan_input *in = &t->inputs[0];

		if (in->t->st->dtype == t->out_dtype && t->scale == 1.0)
			rc = copy_raw(ex, in, err);
		else
			rc = copy_rows(ex, in, 0, t->ndim ? t->shape[0] : 1, t->scale, err);
	} else {
		rc = merge_tensor(ex, err);
	}
	if (rc)
		return rc;
	smelt_pool_for(ex->pool, (size_t)t->n_inputs + (t->has_base ? 1 : 0), drop_one, ex);
	start_writeback(ex);
	atomic_fetch_add(&ex->prog->tensors_done, 1);
	if (t->layer >= 0 && t->layer < SMELT_PROGRESS_MAX_LAYERS)
		atomic_fetch_add(&ex->prog->layer_done[t->layer], 1);
	smelt_progress_sample_rss(ex->prog);
	return 0;
}

static void free_workers(struct exec *ex)
{
	for (int i = 0; ex->w && i < ex->threads; i++) {
		free(ex->w[i].in);
		free(ex->w[i].out);
		free(ex->w[i].bytes);
		free(ex->w[i].ptrs);
		free(ex->w[i].raw);
	}
	free(ex->w);
}

int smelt_exec_tensors(struct smelt_plan *p, struct out_shards *shards, bool durable,
		       struct smelt_progress *prog, struct smelt_err *err)
{
	struct exec ex = {.p = p, .prog = prog, .shards = shards, .durable = durable};
	int rc = 0;

	ex.pool = smelt_pool_new(p->threads);
	if (!ex.pool)
		return smelt_fail(err, SMELT_ENOMEM, "out of memory starting threads");
	ex.threads = smelt_pool_threads(ex.pool);
	ex.w = calloc((size_t)ex.threads, sizeof(*ex.w));
	if (!ex.w) {
		rc = smelt_fail(err, SMELT_ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < p->n_tensors; i++) {
		if (atomic_load(&prog->cancel)) {
			rc = smelt_fail(err, SMELT_ECANCELED, "cancelled");
			break;
		}
		if ((rc = run_tensor(&ex, i, err)) != 0)
			break;
	}
out:
	free_workers(&ex);
	smelt_pool_free(ex.pool);
	return rc;
}

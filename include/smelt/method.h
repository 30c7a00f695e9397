/*
 * method.h: the one small interface every merge method implements.
 *
 * A method sees one output tensor at a time (a "job") as a 2-D view of rows:
 * shape [d0, d1, ...] is d0 rows of d1*d2*... columns, a 1-D tensor is one
 * row, a scalar one row of one element. The executor owns everything else:
 * reading and converting inputs to f32, threading, writing, progress.
 *
 * Life of a job:
 *   check()   at planning time, before any tensor byte is read: validate the
 *             resolved parameters for this tensor (ranges that depend on
 *             several parameters, model counts). No data.
 *   setup()   allocate per-tensor state; declare n_passes statistics passes
 *             and the per-chunk accumulator size of each.
 *   for each pass p < n_passes:
 *     stats() is called once per block with that block's chunk accumulator
 *             (zeroed before first use). The rows are split into a fixed
 *             number of chunks (a function of the shape only, never of the
 *             thread count); blocks of one chunk are visited in row order by
 *             one thread. Then the chunks' accumulators are folded in chunk
 *             order with combine() (default: element-wise sum of doubles),
 *             and finish() sees the total. So statistics are bit-identical
 *             for any thread count.
 *             finish() may lower job->n_passes to skip passes it no longer
 *             needs (the executor re-reads it before each pass).
 *   merge()   called once per block, in any order, on any thread, must write
 *             nrows*cols f32 values to out. Must not modify job state.
 *   weights() optional: the mean weight each model received (model card).
 *   release() free state (always called after a successful setup).
 *
 * Blocks are fixed too: job->block_rows rows each (the last may be shorter),
 * n_blocks of them, numbered by block->index in row order, the same in every
 * pass; setup() may size per-block arrays with job->n_blocks.
 *
 * Parameters: each method lists its parameters in a table; resolved values
 * for this tensor arrive as doubles (bools as 0/1) indexed like that table:
 * smelt_pg(job, P) for global parameters, smelt_pm(job, i, P) for per-model
 * ones (model i, 0-based, base excluded). Random methods draw with
 * smelt_rng_*(job->rng_key[i], flat element index).
 */
#ifndef SMELT_METHOD_H
#define SMELT_METHOD_H

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "smelt/ckpt.h"
#include "smelt/err.h"
#include "smelt/st.h"

#define SMELT_MAX_PASSES 4
#define SMELT_MAX_PARAMS 16

enum smelt_param_type {
	SMELT_PARAM_FLOAT,
	SMELT_PARAM_BOOL,
	SMELT_PARAM_INT,
	SMELT_PARAM_REGEX_LIST     /* list of regexes matched at the start of tensor
				      names; matching tensors keep the base value */
};

enum smelt_param_scope {
	SMELT_SCOPE_GLOBAL,        /* one value per tensor */
	SMELT_SCOPE_MODEL          /* one value per model per tensor */
};

struct smelt_param_def {
	const char *name;
	enum smelt_param_type type;
	enum smelt_param_scope scope;
	bool required;             /* no default: the recipe must set it */
	double def;                /* default when not required */
	double min, max;           /* accepted range (inclusive); -INFINITY/INFINITY for none */
	const char *aliases;       /* comma-separated other accepted names, or NULL */
	const char *help;          /* one line */
	bool unused;               /* accepted for compatibility, has no effect */
};

enum smelt_base_rule {
	SMELT_BASE_REQUIRED,       /* task-vector methods */
	SMELT_BASE_OPTIONAL,       /* used when given (nuslerp, multislerp) */
	SMELT_BASE_AS_MODEL,       /* a listed base is one more merged input (karcher, linear) */
	SMELT_BASE_NONE            /* passthrough */
};

enum smelt_method_flags {
	SMELT_M_RANDOM = 1 << 0,   /* draws random numbers: output depends on seed */
	SMELT_M_PASSTHROUGH = 1 << 1 /* copies one input per tensor (slices) */
};

struct smelt_block {
	size_t index;              /* block number within the tensor, row order */
	uint64_t row0, nrows;      /* rows [row0, row0 + nrows) */
	uint64_t elem0;            /* flat index of the first element = row0 * cols */
	const float *base;         /* nrows*cols values, NULL when the job has no base */
	const float *const *x;     /* x[i]: nrows*cols values of model i */
};

struct smelt_tensor_job {
	/* set by the planner / executor, read-only for the method */
	const char *name;          /* output tensor name */
	int ndim;
	uint64_t shape[SMELT_MAX_DIMS];
	uint64_t rows, cols, numel;
	int layer;                 /* output layer index, -1 for none */
	enum smelt_kind kind;
	int n_models;              /* merged inputs, base excluded */
	bool has_base;
	int n_params;              /* = method->n_params */
	const double *pg;          /* [n_params] global values */
	const double *pm;          /* [n_models * n_params] per-model values */
	const uint64_t *rng_key;   /* [n_models] per-model stream keys */
	uint64_t block_rows;
	size_t n_blocks;
	size_t n_chunks;

	/* set by setup() */
	int n_passes;                        /* 0..SMELT_MAX_PASSES */
	size_t acc_bytes[SMELT_MAX_PASSES];  /* per-chunk accumulator size per pass */
	void *state;                         /* method-owned */
};

static inline double smelt_pg(const struct smelt_tensor_job *j, int p)
{
	return j->pg[p];
}

static inline double smelt_pm(const struct smelt_tensor_job *j, int model, int p)
{
	return j->pm[(size_t)model * (size_t)j->n_params + (size_t)p];
}

struct smelt_method {
	const char *name;
	const char *summary;       /* one line for `smelt methods` */
	const char *help;          /* the formula in words, several lines */
	const char *paper;         /* citation / link, or NULL */
	enum smelt_base_rule base;
	int min_models, max_models; /* merged inputs (base excluded); max 0 = no limit */
	unsigned flags;
	const struct smelt_param_def *params;
	int n_params;

	int (*check)(const struct smelt_tensor_job *job, struct smelt_err *err);
	int (*setup)(struct smelt_tensor_job *job, struct smelt_err *err);
	void (*stats)(struct smelt_tensor_job *job, int pass, const struct smelt_block *b,
		      void *acc);
	void (*combine)(const struct smelt_tensor_job *job, int pass, void *dst, const void *src);
	int (*finish)(struct smelt_tensor_job *job, int pass, const void *acc,
		      struct smelt_err *err);
	void (*merge)(const struct smelt_tensor_job *job, const struct smelt_block *b, float *out);
	void (*release)(struct smelt_tensor_job *job);

	/* Optional, for element-wise methods without setup or statistics: the
	 * merge of n elements when every input and the output are bfloat16
	 * (most LLM checkpoints), giving exactly the bits that converting to
	 * f32, merge() and rounding to bf16 give, without the f32 round trip.
	 * base is NULL when the job has none. The executor uses it when it
	 * applies; tests pin it to merge(). */
	void (*merge_bf16)(const struct smelt_tensor_job *job, const uint16_t *base,
			   const uint16_t *const *x, uint16_t *out, size_t n);

	/* Optional, for the model card's provenance: after the merge pass (and
	 * before release), the mean weight each model received in this tensor,
	 * written to mean_weight[0..n_models). */
	void (*weights)(const struct smelt_tensor_job *job, double *mean_weight);
};

/* The registry: every method, in display order (widen first). */
size_t smelt_method_count(void);
const struct smelt_method *smelt_method_at(size_t i);

/* Find a method by name, NULL if unknown. */
const struct smelt_method *smelt_method_find(const char *name);

/* Index of a parameter (by name or alias) in m->params, -1 if unknown. */
int smelt_method_param(const struct smelt_method *m, const char *name);

/* Run one job entirely in memory: inputs are f32 arrays of job->numel values
 * (base may be NULL when the method runs without one), out receives numel
 * values. The job's name/shape/params/n_models/has_base/rng_key must be
 * filled; the rest is computed here exactly as the file executor does
 * (same blocks, chunks and passes). threads <= 0 = all CPUs. For tests,
 * the TUI preview and small tensors. */
int smelt_run_job_mem(const struct smelt_method *m, struct smelt_tensor_job *job,
		      const float *base, const float *const *x, float *out, int threads,
		      struct smelt_err *err);

/* Fill job->rows/cols/numel, block_rows, n_blocks and n_chunks from
 * job->shape and m's block budget (smelt_method_block_bytes). */
void smelt_job_layout(struct smelt_tensor_job *job, const struct smelt_method *m);

/* Bytes of f32 per input in one block for method m: 1 MiB for methods
 * that read each element once (no statistics callback), where bigger
 * blocks mean fewer reads and writes; 256 KiB for methods with statistics
 * passes, whose per-block working set should stay in cache. The
 * SMELT_BLOCK_BYTES environment variable overrides both (tests). */
uint64_t smelt_method_block_bytes(const struct smelt_method *m);

#endif

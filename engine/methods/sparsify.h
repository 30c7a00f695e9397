/*
 * sparsify.h (engine-internal): the machinery shared by the sparsifying
 * task-vector methods (ties, dare_*, breadcrumbs*, della*, sce, ram*).
 *
 * Owned by the sparse-methods area. Three parts:
 *
 *   1. Exact top-k selection by radix select over float bit patterns. Keys
 *      are the 31 low bits of an f32 (|x| for a signed value, so -0 == +0 and
 *      NaN ranks above +inf). Elements are ranked by key descending; equal
 *      keys rank by flat index ascending (the earlier element ranks higher).
 *      A "cut" c is the set of the c best-ranked elements, found with one
 *      histogram pass per radix level, then per-block counts of
 *      threshold-equal keys, so membership is a pure function of (cut,
 *      block). The GTA engine runs two levels (16 + 15 bits) and usually
 *      gets the tie counts from its second pass (see sparsify.c).
 *
 *   2. The generalized task-arithmetic engine (mergekit's GTA): per-model
 *      trimming (magnitude top-k, Bernoulli, breadcrumbs band, DELLA
 *      rank-scaled Bernoulli), optional L1 rescale, weights, optional TIES
 *      sign election with disjoint merge, normalize, lambda. Each method file
 *      supplies a struct sp_gta_cfg and its parameter table.
 *
 *   3. A test hook that replaces random keep draws (dare, della) with given
 *      masks, to reproduce mergekit's recorded draws exactly.
 *
 * Invariants: memory stays bounded by O(models * histogram) per thread plus
 * O(n_blocks) per selection; no whole-tensor copies; results do not depend
 * on the thread count. Selections and random draws do not depend on the
 * block size either; only the double L1 sums behind a rescale factor could
 * round differently in their last bits under another block size.
 */
#ifndef SMELT_SPARSIFY_H
#define SMELT_SPARSIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "smelt/method.h"

/* ---- 1. radix selection ---- */

#define SP_MAX_LEVELS 3

/* A radix schedule: widths of the levels, most significant first, summing
 * to 31 bits. */
struct sp_radix {
	int n_levels;
	int width[SP_MAX_LEVELS];
	int shift[SP_MAX_LEVELS];
};

extern const struct sp_radix sp_radix2; /* 16 + 15 bits, 65536 buckets */

enum sp_cut_kind {
	SP_CUT_NONE,  /* keeps nothing (cut == 0) */
	SP_CUT_ALL,   /* keeps everything (cut >= n) */
	SP_CUT_SELECT /* threshold being found / found */
};

struct sp_cut {
	enum sp_cut_kind kind;
	uint64_t cut;         /* number of elements to keep */
	int level;            /* radix levels resolved so far */
	uint32_t prefix;      /* resolved high bits of the threshold key */
	uint64_t above;       /* elements ranked above the resolved prefix range */
	uint32_t key;         /* the threshold key, once level == n_levels */
	uint64_t need;        /* threshold-equal elements kept (the earliest ones) */
	uint64_t *tie_before; /* [n_blocks + 1]: threshold-equal elements in earlier blocks */
};

/* Key of a float: its bit pattern without the sign bit. */
static inline uint32_t sp_key(float v)
{
	union {
		float f;
		uint32_t u;
	} c = {.f = v};

	return c.u & 0x7fffffffu;
}

static inline float sp_key_value(uint32_t key)
{
	union {
		uint32_t u;
		float f;
	} c = {.u = key};

	return c.f;
}

/* Start a cut keeping `cut` of n elements; allocates tie_before when a
 * threshold has to be found. Returns 0 or SMELT_ENOMEM. */
int sp_cut_init(struct sp_cut *c, uint64_t cut, uint64_t n, size_t n_blocks);
void sp_cut_release(struct sp_cut *c);

/* True while the cut still needs histogram passes. */
static inline bool sp_cut_pending(const struct sp_cut *c, const struct sp_radix *r)
{
	return c->kind == SP_CUT_SELECT && c->level < r->n_levels;
}

/* Add key to the histogram of the cut's current level (if it falls inside
 * the resolved prefix). hist has 1 << width[level] doubles. */
static inline void sp_cut_hist(const struct sp_cut *c, const struct sp_radix *r, uint32_t key,
                               double *hist)
{
	int l = c->level;
	int top = r->shift[l] + r->width[l];

	if (top < 31 && (key >> top) != c->prefix)
		return;
	hist[(key >> r->shift[l]) & ((1u << r->width[l]) - 1)] += 1.0;
}

/* Resolve the current level from the folded histogram. */
void sp_cut_level_done(struct sp_cut *c, const struct sp_radix *r, const double *hist);

/* Tie pass: count threshold-equal keys of one block (call per block, store
 * with sp_cut_set_ties), then sp_cut_ties_done() turns counts into
 * prefixes. */
static inline void sp_cut_set_ties(struct sp_cut *c, size_t block, uint64_t count)
{
	if (c->kind == SP_CUT_SELECT)
		c->tie_before[block] = count;
}
void sp_cut_ties_done(struct sp_cut *c, size_t n_blocks);

/* Membership walk over one block in flat order: init with the block index,
 * then call sp_cut_take() for every element in order. */
struct sp_walk {
	uint64_t rank; /* threshold-equal elements seen so far */
};

static inline void sp_walk_init(struct sp_walk *w, const struct sp_cut *c, size_t block)
{
	w->rank = c->kind == SP_CUT_SELECT ? c->tie_before[block] : 0;
}

static inline bool sp_cut_take(const struct sp_cut *c, struct sp_walk *w, uint32_t key)
{
	if (c->kind != SP_CUT_SELECT)
		return c->kind == SP_CUT_ALL;
	/* equal keys are rare: branch on them, compare the rest branch-free */
	if (key == c->key)
		return w->rank++ < c->need;
	return key > c->key;
}

/* Sum of the values (keys read as floats) of the kept elements, given the
 * sum over keys strictly above the threshold. */
static inline double sp_cut_kept_sum(const struct sp_cut *c, double sum_above)
{
	if (c->kind != SP_CUT_SELECT)
		return sum_above;
	return sum_above + (double)sp_key_value(c->key) * (double)c->need;
}

/* ---- 2. generalized task arithmetic ---- */

enum sp_trim {
	SP_TRIM_NONE,      /* plain deltas */
	SP_TRIM_MAGNITUDE, /* ties: top floor(density*n) by |d| */
	SP_TRIM_RANDOM,    /* dare: Bernoulli(density) */
	SP_TRIM_OUTLIERS,  /* breadcrumbs: drop the gamma top and the small tail */
	SP_TRIM_DELLA      /* della: Bernoulli with per-row rank-scaled p */
};

struct sp_gta_cfg {
	const char *method;
	enum sp_trim trim;
	bool consensus; /* TIES sign election + disjoint merge */
	int p_weight;   /* per-model parameter indices, -1 when absent */
	int p_density;
	int p_gamma;
	int p_epsilon;
	int p_lambda; /* global parameter indices */
	int p_normalize;
	int p_rescale;
};

int sp_gta_check(const struct sp_gta_cfg *cfg, const struct smelt_tensor_job *job,
                 struct smelt_err *err);
int sp_gta_setup(const struct sp_gta_cfg *cfg, struct smelt_tensor_job *job, struct smelt_err *err);
void sp_gta_stats(struct smelt_tensor_job *job, int pass, const struct smelt_block *b, void *acc);
int sp_gta_finish(struct smelt_tensor_job *job, int pass, const void *acc, struct smelt_err *err);
void sp_gta_merge(const struct smelt_tensor_job *job, const struct smelt_block *b, float *out);
void sp_gta_release(struct smelt_tensor_job *job);

/* Declares the method's callbacks around its cfg. */
#define SP_GTA_CALLBACKS(cfgvar)                                                                   \
	static int gta_check(const struct smelt_tensor_job *job, struct smelt_err *err)            \
	{                                                                                          \
		return sp_gta_check(&cfgvar, job, err);                                            \
	}                                                                                          \
	static int gta_setup(struct smelt_tensor_job *job, struct smelt_err *err)                  \
	{                                                                                          \
		return sp_gta_setup(&cfgvar, job, err);                                            \
	}

/* Number of elements of the job's tensor, from its shape (check() may run
 * before the layout is filled). */
uint64_t sp_job_numel(const struct smelt_tensor_job *job);

/* floor(x) as an element count, clamped to [0, n]. */
uint64_t sp_count(double x, uint64_t n);

/* DELLA keep probabilities of one row of |d|: rank ascending by magnitude
 * (equal magnitudes by column), r = rank / (cols - 1), p = (density - eps) +
 * r * 2 * eps in float32 as mergekit computes it. A row of one element gets
 * p = density. scratch holds 2 * cols uint64. */
void sp_della_row_probs(const float *d, size_t cols, double density, double eps, float *p,
                        uint64_t *scratch);

/* ---- RAM ---- */

#define SP_RAM_MAX_MODELS 128

/* The merged RAM delta of element j: active models (|d_i| > eps) with one
 * active take d_i (times lambda[i] when lambda is non-NULL, RAM+), several
 * take d_i / count. Summed over models in order, in f32 like mergekit. */
static inline float sp_ram_element(const struct smelt_block *b, int n, size_t j, float eps,
                                   const float *lambda)
{
	float d[SP_RAM_MAX_MODELS], sum = 0.0f;
	int cnt = 0;

	for (int i = 0; i < n; i++) {
		d[i] = b->x[i][j] - b->base[j];
		if (fabsf(d[i]) > eps)
			cnt++;
		else
			d[i] = 0.0f;
	}
	for (int i = 0; i < n && cnt; i++) {
		if (cnt == 1)
			sum += lambda ? d[i] * lambda[i] : d[i];
		else
			sum += d[i] / (float)cnt;
	}
	return sum;
}

/* ---- 3. test hook ---- */

/* Replaces the random keep draw of dare/della: returns 1 to keep element
 * `flat` of model `model` in tensor job->name, 0 to drop it. Set to NULL to
 * restore the RNG. Not thread-safe to change while a job runs. */
typedef int (*sp_keep_fn)(void *ctx, const struct smelt_tensor_job *job, int model, uint64_t flat);
void sp_set_keep_hook(sp_keep_fn fn, void *ctx);

#endif

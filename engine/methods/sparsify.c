/*
 * sparsify.c: exact radix top-k selection and the generalized
 * task-arithmetic engine behind ties, dare_*, breadcrumbs* and della*.
 *
 * Pass plan of a GTA job (see sparsify.h for the selection rule):
 *   magnitude / outliers: one histogram pass per radix level, then a pass
 *     that counts threshold-equal keys per block and sums |d| (for rescale);
 *   random / della with rescale: one pass summing |d| and |kept d| per model.
 * merge() then recomputes every keep decision from (state, block): the
 * thresholds and tie prefixes, or the counter-based RNG.
 */
#include "sparsify.h"

#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "smelt/rng.h"

const struct sp_radix sp_radix3 = {3, {11, 10, 10}, {20, 10, 0}};
const struct sp_radix sp_radix2 = {2, {16, 15}, {15, 0}};

/* ---- radix selection ---- */

int sp_cut_init(struct sp_cut *c, uint64_t cut, uint64_t n, size_t n_blocks)
{
	memset(c, 0, sizeof(*c));
	c->cut = cut;
	if (cut == 0) {
		c->kind = SP_CUT_NONE;
		return 0;
	}
	if (cut >= n) {
		c->kind = SP_CUT_ALL;
		return 0;
	}
	c->kind = SP_CUT_SELECT;
	c->tie_before = calloc(n_blocks ? n_blocks : 1, sizeof(*c->tie_before));
	return c->tie_before ? 0 : SMELT_ENOMEM;
}

void sp_cut_release(struct sp_cut *c)
{
	free(c->tie_before);
	c->tie_before = NULL;
}

void sp_cut_level_done(struct sp_cut *c, const struct sp_radix *r, const double *hist)
{
	int l = c->level;
	uint32_t nb = 1u << r->width[l];
	uint64_t cum = c->above;
	uint32_t b = 0;

	/* Walk buckets from the largest keys down until the cut is reached;
	 * the bucket holding the cut-th element becomes the new prefix. */
	for (uint32_t k = nb; k-- > 0;) {
		uint64_t cnt = (uint64_t)hist[k];

		if (cum + cnt >= c->cut) {
			b = k;
			break;
		}
		cum += cnt;
	}
	c->above = cum;
	c->prefix = (c->prefix << r->width[l]) | b;
	c->level++;
	if (c->level == r->n_levels) {
		c->key = c->prefix;
		c->need = c->cut - c->above;
	}
}

void sp_cut_ties_done(struct sp_cut *c, size_t n_blocks)
{
	uint64_t sum = 0;

	if (c->kind != SP_CUT_SELECT)
		return;
	for (size_t i = 0; i < n_blocks; i++) {
		uint64_t t = c->tie_before[i];

		c->tie_before[i] = sum;
		sum += t;
	}
}

/* ---- small helpers ---- */

uint64_t sp_job_numel(const struct smelt_tensor_job *job)
{
	uint64_t n = 1;

	for (int i = 0; i < job->ndim; i++)
		n *= job->shape[i];
	return n;
}

uint64_t sp_count(double x, uint64_t n)
{
	if (!(x > 0))
		return 0;
	if (x >= (double)n)
		return n;
	return (uint64_t)x;
}

static sp_keep_fn keep_hook;
static void *keep_hook_ctx;

void sp_set_keep_hook(sp_keep_fn fn, void *ctx)
{
	keep_hook = fn;
	keep_hook_ctx = ctx;
}

static inline bool draw_keep(const struct smelt_tensor_job *job, int model, uint64_t flat, double p)
{
	if (keep_hook)
		return keep_hook(keep_hook_ctx, job, model, flat) != 0;
	return smelt_rng_bernoulli(job->rng_key[model], flat, p);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

/* Sort (key << 32 | index) words ascending, i.e. by key and equal keys by
 * index: qsort for short rows, else a stable LSD radix sort on the 31-bit
 * key in three 11-bit digits. tmp holds n words. */
static void sort_keyed(uint64_t *v, uint64_t *tmp, size_t n)
{
	size_t count[2048];

	if (n < 512) {
		qsort(v, n, sizeof(*v), cmp_u64);
		return;
	}

	for (int shift = 32; shift < 63; shift += 11) {
		size_t sum = 0;

		memset(count, 0, sizeof(count));
		for (size_t j = 0; j < n; j++)
			count[(v[j] >> shift) & 2047]++;
		if (count[(v[0] >> shift) & 2047] == n)
			continue; /* one digit value: order unchanged */
		for (size_t b = 0; b < 2048; b++) {
			size_t c = count[b];

			count[b] = sum;
			sum += c;
		}
		for (size_t j = 0; j < n; j++)
			tmp[count[(v[j] >> shift) & 2047]++] = v[j];
		memcpy(v, tmp, n * sizeof(*v));
	}
}

void sp_della_row_probs(const float *d, size_t cols, double density, double eps, float *p,
                        uint64_t *scratch)
{
	float lo = (float)(density - eps), eps_f = (float)eps;
	float span = (float)(cols - 1);

	if (cols == 1) {
		/* mergekit divides 0 by 0 here; smelt keeps with the mean p. */
		p[0] = (float)density;
		return;
	}
	for (size_t j = 0; j < cols; j++)
		scratch[j] = ((uint64_t)sp_key(d[j]) << 32) | (uint64_t)j;
	sort_keyed(scratch, scratch + cols, cols);
	for (size_t q = 0; q < cols; q++) {
		float r = (float)q / span;

		p[scratch[q] & 0xffffffffu] = lo + (r * 2.0f) * eps_f;
	}
}

/* Per-thread scratch for DELLA's per-row sort: merge() and stats() cannot
 * fail, so slot 0 is allocated in setup and the others on demand; a caller
 * that finds no free slot it can allocate waits for one. */
#define SP_SLOTS 64

struct sp_slots {
	size_t bytes;
	atomic_int busy[SP_SLOTS];
	void *buf[SP_SLOTS];
};

static int slots_init(struct sp_slots *s, size_t bytes)
{
	s->bytes = bytes;
	for (int k = 0; k < SP_SLOTS; k++) {
		atomic_init(&s->busy[k], 0);
		s->buf[k] = NULL;
	}
	s->buf[0] = malloc(bytes);
	return s->buf[0] ? 0 : SMELT_ENOMEM;
}

static int slot_get(struct sp_slots *s)
{
	for (;;) {
		for (int k = 0; k < SP_SLOTS; k++) {
			int expect = 0;

			if (!atomic_compare_exchange_strong(&s->busy[k], &expect, 1))
				continue;
			if (!s->buf[k])
				s->buf[k] = malloc(s->bytes);
			if (s->buf[k])
				return k;
			atomic_store(&s->busy[k], 0);
		}
		sched_yield();
	}
}

static void slot_put(struct sp_slots *s, int k)
{
	atomic_store(&s->busy[k], 0);
}

static void slots_free(struct sp_slots *s)
{
	for (int k = 0; k < SP_SLOTS; k++)
		free(s->buf[k]);
}

/* ---- generalized task arithmetic ---- */

#define SP_MAX_MODELS 128
#define HIST_STRIDE   2048 /* widest level of sp_radix3 */

struct gta_model {
	float w;
	double density, eps;
	bool untouched;    /* density >= 1: the delta as is */
	bool zeroed;       /* della density <= 0: no delta */
	struct sp_cut hi;  /* magnitude: top k; outliers: top n - n_bot */
	struct sp_cut top; /* outliers: the n_top dropped at the top */
	float scale;       /* L1 rescale factor, 1 when off */
};

struct gta_state {
	const struct sp_gta_cfg *cfg;
	int n;
	struct gta_model *m;
	float lambda;
	bool normalize, rescale;
	int hist_passes; /* radix levels run as passes */
	int sum_pass;    /* pass summing |d| (ties counted there too), -1 none */
	bool have_slots;
	struct sp_slots slots;
};

static const struct sp_radix *const radix = &sp_radix3;

static double pm(const struct smelt_tensor_job *job, int i, int p, double def)
{
	return p >= 0 ? smelt_pm(job, i, p) : def;
}

static double pg(const struct smelt_tensor_job *job, int p, double def)
{
	return p >= 0 ? smelt_pg(job, p) : def;
}

int sp_gta_check(const struct sp_gta_cfg *cfg, const struct smelt_tensor_job *job,
                 struct smelt_err *err)
{
	uint64_t n = sp_job_numel(job);

	if (!job->has_base)
		return smelt_fail(err, SMELT_EINVAL, "%s: tensor %s: needs a base model",
		                  cfg->method, job->name);
	if (job->n_models > SP_MAX_MODELS)
		return smelt_fail(err, SMELT_EINVAL,
		                  "%s: tensor %s: %d models, at most %d supported", cfg->method,
		                  job->name, job->n_models, SP_MAX_MODELS);
	for (int i = 0; i < job->n_models; i++) {
		double density = pm(job, i, cfg->p_density, 1.0);

		if (density >= 1.0)
			continue;
		if (cfg->trim == SP_TRIM_MAGNITUDE && n > 0 &&
		    sp_count(density * (double)n, n) == 0)
			return smelt_fail(err, SMELT_EINVAL,
			                  "%s: tensor %s: model %d: density %g keeps 0 of %llu "
			                  "elements (floor(density*n) = 0); raise density",
			                  cfg->method, job->name, i + 1, density,
			                  (unsigned long long)n);
		if (cfg->trim == SP_TRIM_DELLA && density > 0) {
			double eps = pm(job, i, cfg->p_epsilon, 0.15);

			if (!(density - eps > 0) || !(density + eps < 1))
				return smelt_fail(
				    err, SMELT_EINVAL,
				    "%s: tensor %s: model %d: epsilon %g with density %g puts keep "
				    "probabilities outside (0,1): need density-epsilon > 0 and "
				    "density+epsilon < 1",
				    cfg->method, job->name, i + 1, eps, density);
		}
	}
	return 0;
}

/* Set up the cuts of one model for magnitude or outlier trimming. */
static int setup_cuts(const struct sp_gta_cfg *cfg, const struct smelt_tensor_job *job,
                      struct gta_model *m, int i)
{
	uint64_t n = job->numel;
	int rc;

	if (cfg->trim == SP_TRIM_MAGNITUDE) {
		rc = sp_cut_init(&m->hi, sp_count(m->density * (double)n, n), n, job->n_blocks);
	} else {
		uint64_t keep = sp_count(m->density * (double)n, n);
		uint64_t n_top = sp_count(pm(job, i, cfg->p_gamma, 0.01) * (double)n, n);
		int64_t n_bot = (int64_t)n - (int64_t)keep - (int64_t)n_top;

		if (n_bot < 0) {
			n_top = (uint64_t)((int64_t)n_top + n_bot);
			n_bot = 0;
		}
		/* Ascending positions [n_bot, n - n_top) = the n - n_bot largest
		 * minus the n_top largest. With n_top == 0 this keeps [n_bot, n)
		 * (mergekit's slice [n_bot:-0] would keep nothing). */
		rc = sp_cut_init(&m->hi, n - (uint64_t)n_bot, n, job->n_blocks);
		if (!rc)
			rc = sp_cut_init(&m->top, n_top, n, job->n_blocks);
	}
	return rc;
}

int sp_gta_setup(const struct sp_gta_cfg *cfg, struct smelt_tensor_job *job, struct smelt_err *err)
{
	struct gta_state *s = calloc(1, sizeof(*s));
	bool any_select = false, any_random = false;
	int n = job->n_models, rc = 0;

	if (!s)
		return smelt_fail(err, SMELT_ENOMEM, "%s: out of memory", job->name);
	s->cfg = cfg;
	s->n = n;
	s->sum_pass = -1;
	s->lambda = (float)pg(job, cfg->p_lambda, 1.0);
	s->normalize = pg(job, cfg->p_normalize, 0) != 0;
	s->rescale = pg(job, cfg->p_rescale, 0) != 0;
	s->m = calloc(n ? (size_t)n : 1, sizeof(*s->m));
	job->state = s;
	if (!s->m)
		goto nomem;
	for (int i = 0; i < n; i++) {
		struct gta_model *m = &s->m[i];

		m->w = (float)pm(job, i, cfg->p_weight, 1.0);
		m->density = pm(job, i, cfg->p_density, 1.0);
		m->eps = pm(job, i, cfg->p_epsilon, 0.15);
		m->scale = 1.0f;
		m->untouched = cfg->trim == SP_TRIM_NONE || m->density >= 1.0;
		m->zeroed = cfg->trim == SP_TRIM_DELLA && !m->untouched && m->density <= 0;
		if (m->untouched || m->zeroed)
			continue;
		if (cfg->trim == SP_TRIM_MAGNITUDE || cfg->trim == SP_TRIM_OUTLIERS) {
			if ((rc = setup_cuts(cfg, job, m, i)) != 0)
				goto nomem;
			any_select |= m->hi.kind == SP_CUT_SELECT || m->top.kind == SP_CUT_SELECT;
		} else {
			any_random = true;
		}
	}
	if (any_select) {
		s->hist_passes = radix->n_levels;
		s->sum_pass = radix->n_levels;
		for (int p = 0; p < radix->n_levels; p++)
			job->acc_bytes[p] = (size_t)n * 2 * HIST_STRIDE * sizeof(double);
		job->acc_bytes[s->sum_pass] = (size_t)n * 3 * sizeof(double);
		job->n_passes = s->sum_pass + 1;
	} else if (any_random && s->rescale) {
		s->sum_pass = 0;
		job->acc_bytes[0] = (size_t)n * 3 * sizeof(double);
		job->n_passes = 1;
	}
	if (cfg->trim == SP_TRIM_DELLA && any_random) {
		/* per row: sort keys, deltas, probabilities, one keep byte per model */
		size_t bytes = (size_t)job->cols *
		               (2 * sizeof(uint64_t) + 2 * sizeof(float) + (size_t)(n ? n : 1));

		if (bytes == 0)
			bytes = 1; /* an empty tensor */

		if (slots_init(&s->slots, bytes) != 0) {
			slots_free(&s->slots);
			goto nomem;
		}
		s->have_slots = true;
	}
	return 0;
nomem:
	sp_gta_release(job);
	return smelt_fail(err, SMELT_ENOMEM, "%s: out of memory for %s selection state", job->name,
	                  cfg->method);
}

void sp_gta_release(struct smelt_tensor_job *job)
{
	struct gta_state *s = job->state;

	if (!s)
		return;
	for (int i = 0; s->m && i < s->n; i++) {
		sp_cut_release(&s->m[i].hi);
		sp_cut_release(&s->m[i].top);
	}
	if (s->have_slots)
		slots_free(&s->slots);
	free(s->m);
	free(s);
	job->state = NULL;
}

/* Histogram one model's block for cut c's current level. Four interleaved
 * u32 sub-histograms break the dependency between neighbours that land in
 * the same bucket; they are folded into the chunk's doubles at the end. */
static void hist_block(const struct sp_cut *c, const float *x, const float *base, size_t len,
                       double *hist)
{
	uint32_t h[4][HIST_STRIDE];
	int l = c->level, shift = radix->shift[l], top = shift + radix->width[l];
	uint32_t mask = (1u << radix->width[l]) - 1;
	size_t j = 0;

	memset(h, 0, sizeof(h));
	if (top >= 31) {
		for (; j + 4 <= len; j += 4)
			for (int u = 0; u < 4; u++)
				h[u][(sp_key(x[j + u] - base[j + u]) >> shift) & mask]++;
		for (; j < len; j++)
			h[0][(sp_key(x[j] - base[j]) >> shift) & mask]++;
	} else {
		for (; j < len; j++) {
			uint32_t key = sp_key(x[j] - base[j]);

			if ((key >> top) == c->prefix)
				h[j & 3][(key >> shift) & mask]++;
		}
	}
	for (uint32_t k = 0; k <= mask; k++)
		hist[k] += (double)h[0][k] + (double)h[1][k] + (double)h[2][k] + (double)h[3][k];
}

/* Tie pass for one model's block: L1 sums (all, above each threshold) and
 * the number of threshold-equal keys per cut. */
static void sums_block(struct gta_model *m, const float *x, const float *base, size_t len,
                       size_t block, double *sum)
{
	double all = 0, above_hi = 0, above_top = 0;
	uint64_t ties_hi = 0, ties_top = 0;
	bool sel_hi = m->hi.kind == SP_CUT_SELECT, sel_top = m->top.kind == SP_CUT_SELECT;
	bool all_hi = m->hi.kind == SP_CUT_ALL, all_top = m->top.kind == SP_CUT_ALL;
	uint32_t key_hi = sel_hi ? m->hi.key : 0, key_top = sel_top ? m->top.key : 0;

	for (size_t j = 0; j < len; j++) {
		float d = x[j] - base[j];
		uint32_t key = sp_key(d);
		double a = fabs((double)d);

		all += a;
		/* branch-free: about half the keys pass a density-0.5 threshold */
		above_hi += (all_hi | (sel_hi & (key > key_hi))) ? a : 0.0;
		above_top += (all_top | (sel_top & (key > key_top))) ? a : 0.0;
		ties_hi += sel_hi && key == key_hi;
		ties_top += sel_top && key == key_top;
	}
	sum[0] += all;
	sum[1] += above_hi;
	sum[2] += above_top;
	sp_cut_set_ties(&m->hi, block, ties_hi);
	sp_cut_set_ties(&m->top, block, ties_top);
}

static void stats_select(struct gta_state *s, const struct smelt_tensor_job *job, int pass,
                         const struct smelt_block *b, double *acc)
{
	size_t len = (size_t)(b->nrows * job->cols);

	for (int i = 0; i < s->n; i++) {
		struct gta_model *m = &s->m[i];
		double *hh = acc + ((size_t)i * 2) * HIST_STRIDE;

		if (m->untouched || m->zeroed)
			continue;
		if (pass >= s->hist_passes) {
			sums_block(m, b->x[i], b->base, len, b->index, acc + (size_t)i * 3);
			continue;
		}
		if (sp_cut_pending(&m->hi, radix))
			hist_block(&m->hi, b->x[i], b->base, len, hh);
		if (sp_cut_pending(&m->top, radix))
			hist_block(&m->top, b->x[i], b->base, len, hh + HIST_STRIDE);
	}
}

/* Keep decisions of one DELLA row for model i into keep[0..cols). */
static void della_row_keep(const struct smelt_tensor_job *job, const struct gta_model *m, int i,
                           const float *x, const float *base, uint64_t elem0, float *d, float *p,
                           uint64_t *sortbuf, unsigned char *keep)
{
	size_t cols = (size_t)job->cols;

	for (size_t j = 0; j < cols; j++)
		d[j] = x[j] - base[j];
	sp_della_row_probs(d, cols, m->density, m->eps, p, sortbuf);
	for (size_t j = 0; j < cols; j++)
		keep[j] = d[j] == 0.0f || draw_keep(job, i, elem0 + j, (double)p[j]);
}

static void stats_random(struct gta_state *s, const struct smelt_tensor_job *job,
                         const struct smelt_block *b, double *acc)
{
	size_t cols = (size_t)job->cols;
	int slot = -1;
	uint64_t *sortbuf = NULL;
	float *d = NULL, *p = NULL;
	unsigned char *keep = NULL;

	if (s->cfg->trim == SP_TRIM_DELLA) {
		slot = slot_get(&s->slots);
		sortbuf = s->slots.buf[slot];
		d = (float *)(sortbuf + 2 * cols);
		p = d + cols;
		keep = (unsigned char *)(p + cols);
	}
	for (int i = 0; i < s->n; i++) {
		const struct gta_model *m = &s->m[i];
		double *sum = acc + (size_t)i * 3;

		if (m->untouched || m->zeroed)
			continue;
		for (uint64_t r = 0; r < b->nrows; r++) {
			size_t off = (size_t)r * cols;
			uint64_t elem0 = b->elem0 + off;

			if (keep)
				della_row_keep(job, m, i, b->x[i] + off, b->base + off, elem0, d, p,
				               sortbuf, keep);
			for (size_t j = 0; j < cols; j++) {
				float dv = b->x[i][off + j] - b->base[off + j];
				double a = fabs((double)dv);

				/* a zero delta adds nothing whether kept or not: skip its draw */
				if (dv == 0.0f)
					continue;
				sum[0] += a;
				if (keep ? keep[j] : draw_keep(job, i, elem0 + j, m->density))
					sum[1] += a;
			}
		}
	}
	if (slot >= 0)
		slot_put(&s->slots, slot);
}

void sp_gta_stats(struct smelt_tensor_job *job, int pass, const struct smelt_block *b, void *acc)
{
	struct gta_state *s = job->state;

	if (s->cfg->trim == SP_TRIM_MAGNITUDE || s->cfg->trim == SP_TRIM_OUTLIERS)
		stats_select(s, job, pass, b, acc);
	else
		stats_random(s, job, b, acc);
}

static float rescale_factor(double before, double after)
{
	/* mergekit: skip when either L1 norm is below 1e-7; the ratio is an
	 * f32 division of f32 sums. */
	if (before < 1e-7 || after < 1e-7)
		return 1.0f;
	return (float)before / (float)after;
}

int sp_gta_finish(struct smelt_tensor_job *job, int pass, const void *acc, struct smelt_err *err)
{
	struct gta_state *s = job->state;
	const double *a = acc;

	(void)err;
	for (int i = 0; i < s->n; i++) {
		struct gta_model *m = &s->m[i];

		if (m->untouched || m->zeroed)
			continue;
		if (pass < s->hist_passes) {
			const double *hh = a + ((size_t)i * 2) * HIST_STRIDE;

			if (sp_cut_pending(&m->hi, radix))
				sp_cut_level_done(&m->hi, radix, hh);
			if (sp_cut_pending(&m->top, radix))
				sp_cut_level_done(&m->top, radix, hh + HIST_STRIDE);
			continue;
		}
		if (pass != s->sum_pass)
			continue;
		const double *sum = a + (size_t)i * 3;
		double kept;

		if (s->hist_passes) {
			sp_cut_ties_done(&m->hi, job->n_blocks);
			sp_cut_ties_done(&m->top, job->n_blocks);
			kept = sp_cut_kept_sum(&m->hi, sum[1]) - sp_cut_kept_sum(&m->top, sum[2]);
		} else {
			kept = sum[1];
		}
		if (s->rescale)
			m->scale = rescale_factor(sum[0], kept);
	}
	return 0;
}

/* Combine the per-model trimmed deltas e[i] (already weighted) of one
 * element into the merged delta. */
static inline float combine_element(const struct gta_state *s, const float *e)
{
	float mixed = 0.0f, div = 0.0f;

	if (s->cfg->consensus) {
		float vote = 0.0f;

		for (int i = 0; i < s->n; i++)
			vote += e[i];
		/* sum rule, a zero sum elects '+'; zeros never agree */
		for (int i = 0; i < s->n; i++) {
			bool agree = vote >= 0.0f ? e[i] > 0.0f : e[i] < 0.0f;

			if (agree) {
				mixed += e[i];
				div += s->m[i].w;
			}
		}
		if (div == 0.0f)
			div = 1.0f;
	} else {
		for (int i = 0; i < s->n; i++) {
			mixed += e[i];
			div += s->m[i].w;
		}
		if (fabsf(div) < 1e-8f)
			div = 1.0f;
	}
	if (s->normalize)
		mixed /= div;
	return mixed * s->lambda;
}

static void merge_select(const struct gta_state *s, const struct smelt_tensor_job *job,
                         const struct smelt_block *b, float *out)
{
	size_t len = (size_t)(b->nrows * job->cols);
	struct sp_walk wh[SP_MAX_MODELS], wt[SP_MAX_MODELS];
	float e[SP_MAX_MODELS];

	for (int i = 0; i < s->n; i++) {
		sp_walk_init(&wh[i], &s->m[i].hi, b->index);
		sp_walk_init(&wt[i], &s->m[i].top, b->index);
	}
	for (size_t j = 0; j < len; j++) {
		for (int i = 0; i < s->n; i++) {
			const struct gta_model *m = &s->m[i];
			float d = b->x[i][j] - b->base[j];
			bool keep = true;

			if (!m->untouched) {
				uint32_t key = sp_key(d);
				bool in_hi = sp_cut_take(&m->hi, &wh[i], key);
				bool in_top = sp_cut_take(&m->top, &wt[i], key);

				keep = in_hi & !in_top;
			}
			e[i] = ((keep ? d : 0.0f) * m->scale) * m->w;
		}
		out[j] = b->base[j] + combine_element(s, e);
	}
}

static void merge_random(const struct gta_state *s, const struct smelt_tensor_job *job,
                         const struct smelt_block *b, float *out)
{
	size_t cols = (size_t)job->cols;
	struct gta_state *ms = (struct gta_state *)s; /* slot pool only */
	int slot = -1;
	uint64_t *sortbuf = NULL;
	float *d = NULL, *p = NULL;
	unsigned char *keep = NULL;
	float e[SP_MAX_MODELS];

	if (s->have_slots) {
		slot = slot_get(&ms->slots);
		sortbuf = ms->slots.buf[slot];
		d = (float *)(sortbuf + 2 * cols);
		p = d + cols;
		keep = (unsigned char *)(p + cols);
	}
	for (uint64_t r = 0; r < b->nrows; r++) {
		size_t off = (size_t)r * cols;
		uint64_t elem0 = b->elem0 + off;

		for (int i = 0; keep && i < s->n; i++) {
			const struct gta_model *m = &s->m[i];

			if (!m->untouched && !m->zeroed)
				della_row_keep(job, m, i, b->x[i] + off, b->base + off, elem0, d, p,
				               sortbuf, keep + (size_t)i * cols);
		}
		for (size_t j = 0; j < cols; j++) {
			for (int i = 0; i < s->n; i++) {
				const struct gta_model *m = &s->m[i];
				float dv = b->x[i][off + j] - b->base[off + j];
				bool k;

				if (m->untouched || dv == 0.0f)
					k = true;
				else if (m->zeroed)
					k = false;
				else if (keep)
					k = keep[(size_t)i * cols + j];
				else
					k = draw_keep(job, i, elem0 + j, m->density);
				e[i] = ((k ? dv : 0.0f) * m->scale) * m->w;
			}
			out[off + j] = b->base[off + j] + combine_element(s, e);
		}
	}
	if (slot >= 0)
		slot_put(&ms->slots, slot);
}

void sp_gta_merge(const struct smelt_tensor_job *job, const struct smelt_block *b, float *out)
{
	const struct gta_state *s = job->state;

	if (s->cfg->trim == SP_TRIM_RANDOM || s->cfg->trim == SP_TRIM_DELLA)
		merge_random(s, job, b, out);
	else
		merge_select(s, job, b, out);
}

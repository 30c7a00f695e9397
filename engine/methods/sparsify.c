/*
 * sparsify.c: exact radix top-k selection and the generalized
 * task-arithmetic engine behind ties, dare_*, breadcrumbs* and della*.
 *
 * Pass plan of a GTA job (see sparsify.h for the selection rule):
 *   magnitude / outliers: a 16-bit and a 15-bit radix histogram pass (the
 *     second also records per-block low-bit tables and the rescale sums),
 *     then, only when some threshold's ties are not resolved by those
 *     tables, a pass counting threshold-equal keys per block (finish()
 *     lowers n_passes to skip it);
 *   random / della with rescale: one pass summing |d| and |kept d| per model.
 * merge() then recomputes every keep decision from (state, block): the
 * thresholds and tie prefixes, or the counter-based RNG. The hot loops work
 * on tiles of 256 elements so that the compiler vectorises them.
 */
#include "sparsify.h"
#include "../simd.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "smelt/rng.h"

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
	c->tie_before = calloc(n_blocks + 1, sizeof(*c->tie_before));
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
	c->tie_before[n_blocks] = sum;
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

/* smelt_rng_bernoulli(key, c, p) == (smelt_rng_u64(key, c) >> 11) <
 * keep_below(p): the uniform is U * 2^-53 with an integer U < 2^53, and
 * U * 2^-53 < p exactly when U < ceil(p * 2^53). */
static uint64_t keep_below(double p)
{
	if (!(p > 0))
		return 0;
	if (p >= 1)
		return 1ull << 53;
	return (uint64_t)ceil(p * 0x1p53);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

/* Sort (key << 32 | index) words ascending, i.e. by key and equal keys by
 * index: qsort for short rows, else a stable LSD radix sort on the 31-bit
 * key in four 8-bit digits. The four digit histograms come from one pass
 * over the row, and a digit that is the same for every element (the
 * exponent bits of a row's deltas often are) costs no pass. Rows are a
 * few thousand elements, where 256 buckets beat 2048 (whose counts took
 * longer to clear and sum than the row to scatter). tmp holds n words. */
static void sort_keyed(uint64_t *v, uint64_t *tmp, size_t n)
{
	uint32_t count[4][256];
	uint64_t *src = v, *dst = tmp;

	if (n < 64) {
		qsort(v, n, sizeof(*v), cmp_u64);
		return;
	}
	memset(count, 0, sizeof(count));
	for (size_t j = 0; j < n; j++) {
		uint32_t k = (uint32_t)(v[j] >> 32);

		count[0][k & 255]++;
		count[1][(k >> 8) & 255]++;
		count[2][(k >> 16) & 255]++;
		count[3][k >> 24]++;
	}
	for (int d = 0; d < 4; d++) {
		int shift = 32 + 8 * d;
		uint32_t sum = 0, *c = count[d];
		uint64_t *t;

		if (c[(src[0] >> shift) & 255] == n)
			continue; /* one digit value: order unchanged */
		for (int b = 0; b < 256; b++) {
			uint32_t x = c[b];

			c[b] = sum;
			sum += x;
		}
		for (size_t j = 0; j < n; j++)
			dst[c[(src[j] >> shift) & 255]++] = src[j];
		t = src;
		src = dst;
		dst = t;
	}
	if (src != v)
		memcpy(v, src, n * sizeof(*v));
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
	bool zeroed;               /* buffers start zeroed and are handed back zeroed */
	atomic_int busy[SP_SLOTS];
	void *buf[SP_SLOTS];
};

/* Histogram slots are megabytes that every tensor needs zeroed. Handed back
 * zeroed (their users clear what they dirtied), they wait here for the next
 * tensor instead of being freed and calloc'ed again: clearing them whole
 * each time was a few percent of ties' time, all on the main thread. */
#define ZCACHE_MAX 8

static struct {
	pthread_mutex_t lock;
	void *buf[ZCACHE_MAX];
	size_t bytes[ZCACHE_MAX];
} zcache = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void *zeroed_alloc(size_t bytes)
{
	void *p = NULL;

	pthread_mutex_lock(&zcache.lock);
	for (int k = 0; k < ZCACHE_MAX && !p; k++)
		if (zcache.buf[k] && zcache.bytes[k] == bytes) {
			p = zcache.buf[k];
			zcache.buf[k] = NULL;
		}
	pthread_mutex_unlock(&zcache.lock);
	return p ? p : calloc(1, bytes);
}

static void zeroed_free(void *p, size_t bytes)
{
	if (!p)
		return;
	pthread_mutex_lock(&zcache.lock);
	for (int k = 0; k < ZCACHE_MAX && p; k++)
		if (!zcache.buf[k]) {
			zcache.buf[k] = p;
			zcache.bytes[k] = bytes;
			p = NULL;
		}
	pthread_mutex_unlock(&zcache.lock);
	free(p);
}

static void *slot_alloc(const struct sp_slots *s)
{
	return s->zeroed ? zeroed_alloc(s->bytes) : calloc(1, s->bytes);
}

static int slots_init(struct sp_slots *s, size_t bytes, bool zeroed)
{
	s->bytes = bytes;
	s->zeroed = zeroed;
	for (int k = 0; k < SP_SLOTS; k++) {
		atomic_init(&s->busy[k], 0);
		s->buf[k] = NULL;
	}
	s->buf[0] = slot_alloc(s);
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
				s->buf[k] = slot_alloc(s);
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
	for (int k = 0; k < SP_SLOTS; k++) {
		if (s->zeroed)
			zeroed_free(s->buf[k], s->bytes);
		else
			free(s->buf[k]);
	}
}

/* ---- generalized task arithmetic ---- */

#define SP_MAX_MODELS 128

/* Per-block record of pass 1 for one cut: the distinct low-bit values of
 * the block's keys inside the chosen bucket and their counts, up to
 * TIE_CAP of them (TIE_OVER when a block has more). When every block fits,
 * the per-block counts of the threshold key are read from here and the
 * tie pass is skipped; quantised deltas (bf16 inputs) nearly always fit. */
#define TIE_CAP  8
#define TIE_OVER 255

struct tie_tab {
	uint8_t *n;    /* [n_blocks] entries, or TIE_OVER */
	uint16_t *low; /* [n_blocks * TIE_CAP] */
	uint64_t *cnt; /* [n_blocks * TIE_CAP] */
};

struct gta_model {
	float w;
	double density, eps;
	bool untouched;    /* density >= 1: the delta as is */
	bool zeroed;       /* della density <= 0: no delta */
	struct sp_cut hi;  /* magnitude: top k; outliers: top n - n_bot */
	struct sp_cut top; /* outliers: the n_top dropped at the top */
	float scale;       /* L1 rescale factor, 1 when off */
	bool hi_ties;      /* hi keeps only part of its threshold-equal keys */
	bool top_ties;     /* the same for top */
	bool count[2];     /* hi, top: the tie pass must count per block */
	struct tie_tab tab[2]; /* hi, top: per-block low-bit tables of pass 1 */
	double l1_all;     /* rescale: L1 norm of the untrimmed delta */
};

struct gta_state {
	const struct sp_gta_cfg *cfg;
	int n;
	struct gta_model *m;
	float lambda;
	bool normalize, rescale;
	int sum_pass;    /* random trims: pass summing |d|, -1 none */
	bool have_slots;
	struct sp_slots slots;
	bool have_hist;
	struct sp_slots hist; /* selection histograms, one set per concurrent block */
};

/* Words of one model's histograms in a slot: the high-bit level, or the
 * low-bit level of both cuts. */
#define HSLOT_WORDS (1u << 16)
/* level1_block's four uint32 sub-histograms, after the models' histograms
 * in each slot. */
#define SUB_HIST_BYTES (4 * sizeof(uint32_t) * HSLOT_WORDS)
/* Then one bit per chunk of CHUNK_WORDS histogram words, per model: set
 * when the chunk may hold a nonzero count. Folding, scanning and clearing
 * visit the dirty chunks only; the counts of a tensor sit in a few. */
#define CHUNK_SHIFT 8
#define CHUNK_WORDS (1u << CHUNK_SHIFT)
#define DIRTY_WORDS (HSLOT_WORDS / CHUNK_WORDS / 64)

static size_t hist_slot_bytes(int n)
{
	return (size_t)n * HSLOT_WORDS * sizeof(uint64_t) + SUB_HIST_BYTES +
	       (size_t)n * DIRTY_WORDS * sizeof(uint64_t);
}

/* Model i's dirty bits in a histogram slot of n models. */
static uint64_t *slot_dirty(void *slot, int n, int i)
{
	return (uint64_t *)(void *)((uint8_t *)slot + (size_t)n * HSLOT_WORDS * sizeof(uint64_t) +
	                            SUB_HIST_BYTES) +
	       (size_t)i * DIRTY_WORDS;
}

/* Words [lo, hi] of a model's histogram may now be nonzero. */
static inline void mark_dirty(uint64_t *dirty, uint32_t lo, uint32_t hi)
{
	for (uint32_t c = lo >> CHUNK_SHIFT; c <= hi >> CHUNK_SHIFT; c++)
		dirty[c >> 6] |= 1ull << (c & 63);
}

static inline bool chunk_dirty(const uint64_t *dirty, uint32_t c)
{
	return (dirty[c >> 6] >> (c & 63)) & 1;
}

/* Clear the dirty chunks of a histogram slot. */
static void hist_clear(const struct gta_state *s, uint64_t *slot)
{
	for (int i = 0; i < s->n; i++) {
		uint64_t *d = slot_dirty(slot, s->n, i);

		for (uint32_t c = 0; c < DIRTY_WORDS * 64; c++)
			if (chunk_dirty(d, c))
				memset(slot + (size_t)i * HSLOT_WORDS + (size_t)c * CHUNK_WORDS, 0,
				       CHUNK_WORDS * sizeof(uint64_t));
		memset(d, 0, DIRTY_WORDS * sizeof(uint64_t));
	}
}

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
	for (int c = 0; c < 2 && !rc; c++) {
		struct tie_tab *t = &m->tab[c];
		size_t nb = job->n_blocks ? job->n_blocks : 1;

		if ((c ? m->top.kind : m->hi.kind) != SP_CUT_SELECT)
			continue;
		t->n = calloc(nb, sizeof(*t->n));
		t->low = calloc(nb * TIE_CAP, sizeof(*t->low));
		t->cnt = calloc(nb * TIE_CAP, sizeof(*t->cnt));
		if (!t->n || !t->low || !t->cnt)
			rc = SMELT_ENOMEM;
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
		for (int p = 0; p < 3; p++)
			job->acc_bytes[p] = (size_t)n * 3 * sizeof(double);
		job->n_passes = 3;
		if (slots_init(&s->hist, hist_slot_bytes(n), true) != 0) {
			slots_free(&s->hist);
			goto nomem;
		}
		s->have_hist = true;
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

		if (slots_init(&s->slots, bytes, false) != 0) {
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
		for (int c = 0; c < 2; c++) {
			free(s->m[i].tab[c].n);
			free(s->m[i].tab[c].low);
			free(s->m[i].tab[c].cnt);
		}
	}
	if (s->have_slots)
		slots_free(&s->slots);
	if (s->have_hist) {
		/* A run stopped half-way leaves counts behind: clear them, the
		 * buffers go back to the zeroed cache. */
		for (int k = 0; k < SP_SLOTS; k++)
			if (s->hist.buf[k])
				hist_clear(s, s->hist.buf[k]);
		slots_free(&s->hist);
	}
	free(s->m);
	free(s);
	job->state = NULL;
}

static float rescale_factor(double before, double after)
{
	/* mergekit: skip when either L1 norm is below 1e-7; the ratio is an
	 * f32 division of f32 sums. */
	if (before < 1e-7 || after < 1e-7)
		return 1.0f;
	return (float)before / (float)after;
}

/* ---- magnitude / outlier selection passes ----
 *
 * Two radix levels over the 31-bit key: the high 16 bits (pass 0, one
 * histogram per model shared by both cuts), then the low 15 bits inside
 * each cut's chosen bucket (pass 1). Counts are uint64 and integer sums do
 * not depend on grouping, so instead of one histogram per chunk (16 copies
 * to clear and fold) each block borrows a histogram slot, one per
 * concurrently running block, and finish() folds the few slots used. The
 * chunk accumulators hold only the three L1 doubles per model of rescale.
 * Pass 2 counts threshold-equal keys per block, and only runs when some cut
 * keeps part of its threshold-equal elements. */

/* The hot loops below are SMELT_HOT and element-wise (no float reductions
 * across lanes), so the AVX-512 and AVX2 clones give the same bits as the
 * SSE2 one. */
#define SP_INLINE inline __attribute__((always_inline))

#define L1_BITS 16
#define L2_BITS 15
#define L1_N    (1u << L1_BITS)
#define L2_N    (1u << L2_BITS)
#define TILE    256 /* elements per vector tile */

static double *sel_sums(const struct gta_state *s, void *acc, int i)
{
	(void)s;
	return (double *)acc + (size_t)i * 3;
}

/* Keys of d = x - base for one tile (vectorised). */
static SP_INLINE void tile_keys(const float *x, const float *base, size_t len, uint32_t *key)
{
	for (size_t j = 0; j < len; j++) {
		float d = x[j] - base[j];
		uint32_t u;

		memcpy(&u, &d, sizeof(u));
		key[j] = u & 0x7fffffffu;
	}
}

static double l1_sum(const float *x, const float *base, size_t len)
{
	double a = 0;

	for (size_t j = 0; j < len; j++)
		a += fabs((double)(x[j] - base[j]));
	return a;
}

/* Pass 0: high-16-bit histogram of one model's block.
 *
 * Deltas crowd into a few buckets (exact zeros and the handful of
 * magnitudes a fine-tune moves weights by), and incrementing one counter
 * right after another increment of it waits for that store to complete.
 * So element j counts into sub-histogram j % 4: increments of the same
 * bucket are four apart and overlap. The sub-histograms (uint32, zero
 * between blocks) are folded into h over the range of buckets the block
 * touched, with bucket 0 (zero and subnormal deltas) on its own so that
 * zeros do not widen the range. */
static SMELT_HOT void level1_block(const float *x, const float *base, size_t len, uint64_t *h,
                                   uint32_t (*sub)[L1_N], uint64_t *dirty)
{
	uint32_t key[TILE];
	uint32_t lo = L1_N, hi = 0;

	for (size_t o = 0; o < len; o += TILE) {
		size_t t = len - o < TILE ? len - o : TILE;
		size_t j = 0;

		tile_keys(x + o, base + o, t, key);
		for (size_t k = 0; k < t; k++) { /* vectorised min/max */
			uint32_t bk = key[k] >> L2_BITS;
			uint32_t nz = bk ? bk : L1_N;

			lo = nz < lo ? nz : lo;
			hi = bk > hi ? bk : hi;
		}
		for (; j + 4 <= t; j += 4) {
			sub[0][key[j] >> L2_BITS]++;
			sub[1][key[j + 1] >> L2_BITS]++;
			sub[2][key[j + 2] >> L2_BITS]++;
			sub[3][key[j + 3] >> L2_BITS]++;
		}
		for (; j < t; j++)
			sub[0][key[j] >> L2_BITS]++;
	}
	for (uint32_t k = 0; k <= hi; k = k ? k + 1 : lo) {
		h[k] += (uint64_t)sub[0][k] + sub[1][k] + sub[2][k] + sub[3][k];
		sub[0][k] = sub[1][k] = sub[2][k] = sub[3][k] = 0;
	}
	mark_dirty(dirty, 0, 0);
	if (lo <= hi)
		mark_dirty(dirty, lo, hi);
}

/* One cut's low-bit table while pass 1 walks a block. Keys inside the
 * bucket come in runs of equal values (quantised deltas), so a run is
 * counted in a register and added once; a full table spills into the
 * histogram directly. */
struct tab_acc {
	uint32_t n;
	bool over;
	uint32_t cur;
	uint64_t run;
	uint16_t low[TIE_CAP];
	uint64_t cnt[TIE_CAP];
	uint64_t *dirty; /* the model's dirty bits */
	uint32_t base;   /* word offset of this cut's histogram in the model's */
};

static inline void hist_add(struct tab_acc *a, uint64_t *hc, uint32_t k, uint64_t v)
{
	hc[k] += v;
	mark_dirty(a->dirty, a->base + k, a->base + k);
}

static void tab_flush(struct tab_acc *a, uint64_t *hc)
{
	if (!a->run)
		return;
	if (!a->over) {
		for (uint32_t k = 0; k < a->n; k++) {
			if (a->low[k] == a->cur) {
				a->cnt[k] += a->run;
				a->run = 0;
				return;
			}
		}
		if (a->n < TIE_CAP) {
			a->low[a->n] = (uint16_t)a->cur;
			a->cnt[a->n++] = a->run;
			a->run = 0;
			return;
		}
		for (uint32_t k = 0; k < a->n; k++)
			hist_add(a, hc, a->low[k], a->cnt[k]);
		a->over = true;
	}
	hist_add(a, hc, a->cur, a->run);
	a->run = 0;
}

static void tab_add(struct tab_acc *a, const uint32_t *low, size_t nm, uint64_t *hc)
{
	if (a->over) {
		uint32_t lo = L2_N, hi = 0;

		for (size_t j = 0; j < nm; j++) { /* vectorised min/max */
			lo = low[j] < lo ? low[j] : lo;
			hi = low[j] > hi ? low[j] : hi;
		}
		for (size_t j = 0; j < nm; j++)
			hc[low[j]]++;
		if (nm)
			mark_dirty(a->dirty, a->base + lo, a->base + hi);
		return;
	}
	for (size_t j = 0; j < nm; j++) {
		if (low[j] != a->cur) {
			tab_flush(a, hc);
			a->cur = low[j];
		}
		a->run++;
	}
}

/* End of a block: counts into the histogram, the table into the record. */
static void tab_done(struct tab_acc *a, uint64_t *hc, struct tie_tab *t, size_t block)
{
	tab_flush(a, hc);
	if (a->over) {
		t->n[block] = TIE_OVER;
		return;
	}
	t->n[block] = (uint8_t)a->n;
	for (uint32_t k = 0; k < a->n; k++) {
		hist_add(a, hc, a->low[k], a->cnt[k]);
		t->low[block * TIE_CAP + k] = a->low[k];
		t->cnt[block * TIE_CAP + k] = a->cnt[k];
	}
}

/* Pass 1: low-15-bit histogram inside the chosen bucket of each pending cut
 * with the block's low-bit table, and for rescale the L1 sum of the buckets
 * above it. */
static SMELT_HOT void level2_block(struct gta_model *m, const float *x, const float *base, size_t len,
                         size_t block, uint64_t *h, uint64_t *dirty, double *sum, bool rescale)
{
	const struct sp_cut *cut[2] = {&m->hi, &m->top};
	struct tab_acc acc[2];
	uint32_t key[TILE], low[TILE];

	memset(acc, 0, sizeof(acc));
	for (int c = 0; c < 2; c++) {
		acc[c].dirty = dirty;
		acc[c].base = (uint32_t)c * L2_N;
	}
	for (size_t o = 0; o < len; o += TILE) {
		size_t t = len - o < TILE ? len - o : TILE;

		tile_keys(x + o, base + o, t, key);
		for (int c = 0; c < 2; c++) {
			uint32_t p = cut[c]->prefix;
			double above = 0;
			size_t nm = 0;

			uint32_t run_key = (p << L2_BITS) | acc[c].cur;
			uint32_t n_in = 0, n_run = 0;

			if (cut[c]->kind != SP_CUT_SELECT)
				continue;
			/* vectorised: do all keys of the tile inside the bucket
			 * continue the current run? (the usual case) */
			for (size_t j = 0; j < t; j++) {
				n_in += (key[j] >> L2_BITS) == p;
				n_run += key[j] == run_key;
			}
			if (n_in == n_run && !acc[c].over) {
				acc[c].run += n_run;
			} else {
				/* compact the low bits of the keys inside the
				 * bucket (branch-free), then count those */
				for (size_t j = 0; j < t; j++) {
					low[nm] = key[j] & (L2_N - 1);
					nm += (key[j] >> L2_BITS) == p;
				}
				tab_add(&acc[c], low, nm, h + (size_t)c * L2_N);
			}
			if (!rescale)
				continue;
			for (size_t j = 0; j < t; j++)
				above += (key[j] >> L2_BITS) > p ? fabs((double)(x[o + j] - base[o + j]))
				                                 : 0.0;
			sum[1 + c] += above;
		}
	}
	for (int c = 0; c < 2; c++)
		if (cut[c]->kind == SP_CUT_SELECT)
			tab_done(&acc[c], h + (size_t)c * L2_N, &m->tab[c], block);
}

/* The per-block counts of the threshold key from the pass-1 tables, when
 * no block overflowed its table. */
static bool ties_from_tabs(struct sp_cut *c, const struct tie_tab *t, size_t n_blocks)
{
	uint32_t low = c->key & (L2_N - 1);

	for (size_t b = 0; b < n_blocks; b++)
		if (t->n[b] == TIE_OVER)
			return false;
	for (size_t b = 0; b < n_blocks; b++) {
		uint64_t cnt = 0;

		for (uint32_t k = 0; k < t->n[b]; k++)
			if (t->low[b * TIE_CAP + k] == low)
				cnt = t->cnt[b * TIE_CAP + k];
		c->tie_before[b] = cnt;
	}
	sp_cut_ties_done(c, n_blocks);
	return true;
}

/* Pass 2: threshold-equal keys of one block, for the cuts that need them. */
static SMELT_HOT void ties_block(struct gta_model *m, const float *x, const float *base, size_t len,
                       size_t block)
{
	struct sp_cut *cut[2] = {&m->hi, &m->top};
	const bool *want = m->count;
	uint32_t key[TILE];
	uint64_t cnt[2] = {0, 0};

	for (size_t o = 0; o < len; o += TILE) {
		size_t t = len - o < TILE ? len - o : TILE;

		tile_keys(x + o, base + o, t, key);
		for (int c = 0; c < 2; c++) {
			uint32_t k = cut[c]->key, n = 0;

			if (!want[c])
				continue;
			for (size_t j = 0; j < t; j++)
				n += key[j] == k;
			cnt[c] += n;
		}
	}
	for (int c = 0; c < 2; c++)
		if (want[c])
			cut[c]->tie_before[block] = cnt[c];
}

static void stats_select(struct gta_state *s, const struct smelt_tensor_job *job, int pass,
                         const struct smelt_block *b, void *acc)
{
	size_t len = (size_t)(b->nrows * job->cols);
	int slot = pass < 2 ? slot_get(&s->hist) : -1;
	uint64_t *hist = slot >= 0 ? s->hist.buf[slot] : NULL;

	for (int i = 0; i < s->n; i++) {
		struct gta_model *m = &s->m[i];
		bool sel = m->hi.kind == SP_CUT_SELECT || m->top.kind == SP_CUT_SELECT;
		uint64_t *h = hist ? hist + (size_t)i * HSLOT_WORDS : NULL;

		if (m->untouched)
			continue;
		if (pass == 0) {
			if (s->rescale)
				sel_sums(s, acc, i)[0] += l1_sum(b->x[i], b->base, len);
			if (sel)
				level1_block(b->x[i], b->base, len, h,
				             (uint32_t(*)[L1_N])(hist + (size_t)s->n * HSLOT_WORDS),
				             slot_dirty(hist, s->n, i));
		} else if (pass == 1 && sel) {
			level2_block(m, b->x[i], b->base, len, b->index, h, slot_dirty(hist, s->n, i),
			             sel_sums(s, acc, i), s->rescale);
		} else if (pass == 2 && (m->count[0] || m->count[1])) {
			ties_block(m, b->x[i], b->base, len, b->index);
		}
	}
	if (slot >= 0)
		slot_put(&s->hist, slot);
}

/* Fold the dirty chunks of every histogram slot into slot 0 and clear
 * them. */
static uint64_t *hist_fold(struct gta_state *s)
{
	uint64_t *dst = s->hist.buf[0];

	for (int k = 1; k < SP_SLOTS; k++) {
		uint64_t *src = s->hist.buf[k];

		if (!src)
			continue;
		for (int i = 0; i < s->n; i++) {
			uint64_t *sd = slot_dirty(src, s->n, i), *dd = slot_dirty(dst, s->n, i);

			for (uint32_t c = 0; c < DIRTY_WORDS * 64; c++) {
				uint64_t *from = src + (size_t)i * HSLOT_WORDS + (size_t)c * CHUNK_WORDS;
				uint64_t *to = dst + (size_t)i * HSLOT_WORDS + (size_t)c * CHUNK_WORDS;

				if (!chunk_dirty(sd, c))
					continue;
				for (uint32_t w = 0; w < CHUNK_WORDS; w++)
					to[w] += from[w];
				memset(from, 0, CHUNK_WORDS * sizeof(uint64_t));
				dd[c >> 6] |= 1ull << (c & 63);
			}
			memset(sd, 0, DIRTY_WORDS * sizeof(uint64_t));
		}
	}
	return dst;
}

/* Level 1 from the shared high-bit histogram: the bucket holding the
 * cut-th largest key becomes the prefix. */
static void level1_done(struct sp_cut *c, const uint64_t *h, const uint64_t *dirty)
{
	uint64_t cum = 0;
	uint32_t b = 0;

	if (c->kind != SP_CUT_SELECT)
		return;
	/* Clean chunks hold zeros, which neither add to cum nor can be the
	 * answer: 0 < cut, so the walk stops on a nonzero count. */
	for (uint32_t k = L1_N; k-- > 0;) {
		if (!chunk_dirty(dirty, k >> CHUNK_SHIFT)) {
			k &= ~(CHUNK_WORDS - 1);
			continue;
		}
		if (cum + h[k] >= c->cut) {
			b = k;
			break;
		}
		cum += h[k];
	}
	c->above = cum;
	c->prefix = b;
	c->level = 1;
}

/* Level 2: the threshold key and how many of its equal elements are kept.
 * Returns the L1 sum of the kept elements inside the bucket. Sets *ties
 * when only part of the threshold-equal elements are kept (then a pass
 * counting them per block is needed). */
static double level2_done(struct sp_cut *c, const uint64_t *h, const uint64_t *dirty,
                          uint32_t base, bool *ties)
{
	uint64_t cum = c->above;
	double kept = 0;
	uint32_t t = 0;

	*ties = false;
	if (c->kind != SP_CUT_SELECT)
		return 0;
	for (uint32_t k = L2_N; k-- > 0;) {
		double v;

		if (!chunk_dirty(dirty, (base + k) >> CHUNK_SHIFT)) { /* zeros: see level1_done */
			k &= ~(CHUNK_WORDS - 1);
			continue;
		}
		v = (double)sp_key_value((c->prefix << L2_BITS) | k);

		if (cum + h[k] >= c->cut) {
			t = k;
			break;
		}
		cum += h[k];
		kept += (double)h[k] * v;
	}
	c->key = (c->prefix << L2_BITS) | t;
	c->need = c->cut - cum;
	c->level = 2;
	*ties = c->need < h[t];
	return kept + (double)c->need * (double)sp_key_value(c->key);
}

/* L1 sum of a cut's kept elements given all and the in-bucket part. */
static double cut_kept(const struct sp_cut *c, double all, double above_bucket, double in_bucket)
{
	if (c->kind == SP_CUT_ALL)
		return all;
	if (c->kind == SP_CUT_NONE)
		return 0;
	return above_bucket + in_bucket;
}

static int finish_select(struct smelt_tensor_job *job, struct gta_state *s, int pass, void *acc)
{
	uint64_t *hist = pass < 2 ? hist_fold(s) : NULL;
	bool any_ties = false;

	for (int i = 0; i < s->n; i++) {
		struct gta_model *m = &s->m[i];
		uint64_t *h = hist ? hist + (size_t)i * HSLOT_WORDS : NULL;
		const uint64_t *dirty = hist ? slot_dirty(hist, s->n, i) : NULL;

		if (m->untouched)
			continue;
		if (pass == 0) {
			level1_done(&m->hi, h, dirty);
			level1_done(&m->top, h, dirty);
			m->l1_all = sel_sums(s, acc, i)[0];
		} else if (pass == 1) {
			const double *sum = sel_sums(s, acc, i);
			double in_hi = level2_done(&m->hi, h, dirty, 0, &m->hi_ties);
			double in_top = level2_done(&m->top, h + L2_N, dirty, L2_N, &m->top_ties);

			m->count[0] = m->hi_ties && !ties_from_tabs(&m->hi, &m->tab[0], job->n_blocks);
			m->count[1] = m->top_ties && !ties_from_tabs(&m->top, &m->tab[1], job->n_blocks);
			any_ties |= m->count[0] || m->count[1];
			if (s->rescale)
				m->scale = rescale_factor(
				    m->l1_all, cut_kept(&m->hi, m->l1_all, sum[1], in_hi) -
				                   cut_kept(&m->top, m->l1_all, sum[2], in_top));
		} else {
			if (m->count[0])
				sp_cut_ties_done(&m->hi, job->n_blocks);
			if (m->count[1])
				sp_cut_ties_done(&m->top, job->n_blocks);
		}
	}
	if (hist)
		hist_clear(s, hist);
	/* Every cut's threshold-equal elements are resolved (all kept, or
	 * counted from the tables): skip reading the inputs once more. */
	if (pass == 1 && !any_ties)
		job->n_passes = 2;
	return 0;
}

/* Keep decisions of one DELLA row for model i into keep[0..cols). */
static SMELT_HOT void della_row_keep(const struct smelt_tensor_job *job, const struct gta_model *m,
                                     int i, const float *x, const float *base, uint64_t elem0,
                                     float *d, float *p, uint64_t *sortbuf, unsigned char *keep)
{
	size_t cols = (size_t)job->cols;

	for (size_t j = 0; j < cols; j++)
		d[j] = x[j] - base[j];
	sp_della_row_probs(d, cols, m->density, m->eps, p, sortbuf);
	if (keep_hook) {
		for (size_t j = 0; j < cols; j++)
			keep[j] = d[j] == 0.0f || draw_keep(job, i, elem0 + j, (double)p[j]);
		return;
	}
	/* the same draws without branches: drawing for a zero delta too
	 * does not change its keep (always 1) */
	for (size_t j = 0; j < cols; j++)
		keep[j] = (unsigned char)((d[j] == 0.0f) |
		                          ((smelt_rng_u64(job->rng_key[i], elem0 + j) >> 11) <
		                           keep_below((double)p[j])));
}

/* DARE's L1 sums without a test hook: every element drawn, no branches.
 * Zero deltas add +0 to both sums, as skipping them would. */
static SMELT_HOT void stats_dare(struct gta_state *s, const struct smelt_tensor_job *job,
                                 const struct smelt_block *b, double *acc)
{
	size_t len = (size_t)(b->nrows * job->cols);

	for (int i = 0; i < s->n; i++) {
		const struct gta_model *m = &s->m[i];
		const float *x = b->x[i], *base = b->base;
		uint64_t key = job->rng_key[i], below = keep_below(m->density);
		double *sum = acc + (size_t)i * 3;

		if (m->untouched || m->zeroed)
			continue;
		for (size_t j = 0; j < len; j++) {
			double a = fabs((double)(x[j] - base[j])), ka;
			uint64_t u, keep = (smelt_rng_u64(key, b->elem0 + j) >> 11) < below;

			memcpy(&u, &a, sizeof(u));
			u &= -keep;
			memcpy(&ka, &u, sizeof(ka));
			sum[0] += a;
			sum[1] += ka;
		}
	}
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

			if (keep) {
				della_row_keep(job, m, i, b->x[i] + off, b->base + off, elem0, d, p,
				               sortbuf, keep);
				/* zero deltas add +0 to both sums, as skipping does */
				for (size_t j = 0; j < cols; j++) {
					double a = fabs((double)d[j]), ka;
					uint64_t u;

					memcpy(&u, &a, sizeof(u));
					u &= -(uint64_t)keep[j];
					memcpy(&ka, &u, sizeof(ka));
					sum[0] += a;
					sum[1] += ka;
				}
				continue;
			}
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
	else if (s->cfg->trim == SP_TRIM_RANDOM && !keep_hook)
		stats_dare(s, job, b, acc);
	else
		stats_random(s, job, b, acc);
}

int sp_gta_finish(struct smelt_tensor_job *job, int pass, const void *acc, struct smelt_err *err)
{
	struct gta_state *s = job->state;
	const double *a = acc;

	(void)err;
	if (s->cfg->trim == SP_TRIM_MAGNITUDE || s->cfg->trim == SP_TRIM_OUTLIERS)
		return finish_select(job, s, pass, (void *)acc);
	for (int i = 0; i < s->n; i++) {
		struct gta_model *m = &s->m[i];

		if (m->untouched || m->zeroed || pass != s->sum_pass)
			continue;
		if (s->rescale)
			m->scale = rescale_factor(a[(size_t)i * 3], a[(size_t)i * 3 + 1]);
	}
	return 0;
}

/* How one cut decides membership inside one block: keys above gt are
 * kept; in a "walk" block part of the threshold-equal keys are kept, the
 * earliest ones, and a scalar walk counts them. */
struct cut_view {
	int32_t gt;     /* keep key > gt (gt = -1 keeps all, INT32_MAX none) */
	bool walk;      /* threshold-equal keys straddle the cut in this block */
	uint32_t key;   /* walk: the threshold key */
	uint64_t rank;  /* walk: threshold-equal elements before this point */
	uint64_t need;  /* walk: threshold-equal elements kept in the tensor */
};

static void cut_view_init(struct cut_view *v, const struct sp_cut *c, bool ties, size_t block)
{
	memset(v, 0, sizeof(*v));
	if (c->kind == SP_CUT_NONE) {
		v->gt = INT32_MAX;
		return;
	}
	if (c->kind == SP_CUT_ALL) {
		v->gt = -1;
		return;
	}
	v->gt = (int32_t)c->key - 1; /* every threshold-equal key kept */
	if (!ties)
		return;
	if (c->tie_before[block] >= c->need) {
		v->gt = (int32_t)c->key; /* none of this block's */
	} else if (c->tie_before[block + 1] > c->need) {
		v->walk = true;
		v->key = c->key;
		v->rank = c->tie_before[block];
		v->need = c->need;
	}
}

static inline bool cut_view_take(struct cut_view *v, uint32_t key)
{
	if (v->walk && key == v->key)
		return v->rank++ < v->need;
	return (int32_t)key > v->gt;
}

/* e[j] = weight * scale * (kept ? d : 0) for one model over one tile. */
static SP_INLINE void model_tile(const struct gta_model *m, struct cut_view *hi, struct cut_view *top,
                       const float *x, const float *base, size_t len, float *e)
{
	float scale = m->scale, w = m->w;

	if (hi->walk || top->walk) {
		for (size_t j = 0; j < len; j++) {
			float d = x[j] - base[j];
			uint32_t key = sp_key(d);
			bool in_hi = cut_view_take(hi, key);
			bool in_top = cut_view_take(top, key);

			e[j] = (((in_hi & !in_top) ? d : 0.0f) * scale) * w;
		}
		return;
	}
	int32_t ghi = hi->gt, gtop = top->gt;

	for (size_t j = 0; j < len; j++) {
		float d = x[j] - base[j];
		uint32_t u;
		int32_t key;

		memcpy(&u, &d, sizeof(u));
		key = (int32_t)(u & 0x7fffffffu);
		e[j] = ((((key > ghi) & !(key > gtop)) ? d : 0.0f) * scale) * w;
	}
}

/* Sign election and disjoint mean (or the plain sum) of one tile, in the
 * same f32 operation order as a per-element loop over the models. */
static SP_INLINE void combine_tile(const struct gta_state *s, float (*e)[TILE], const float *base,
                         size_t len, float *out)
{
	float mixed[TILE], div[TILE];
	float lambda = s->lambda;

	for (size_t j = 0; j < len; j++)
		mixed[j] = div[j] = 0.0f;
	if (s->cfg->consensus) {
		float vote[TILE];

		for (size_t j = 0; j < len; j++)
			vote[j] = 0.0f;
		for (int i = 0; i < s->n; i++)
			for (size_t j = 0; j < len; j++)
				vote[j] += e[i][j];
		/* sum rule, a zero sum elects '+'; zeros never agree. Adding
		 * +0 for a disagreeing model leaves a sum that started at +0
		 * unchanged, so this matches adding only the agreeing ones. */
		for (int i = 0; i < s->n; i++) {
			float w = s->m[i].w;

			uint32_t wb;

			memcpy(&wb, &w, sizeof(wb));
			for (size_t j = 0; j < len; j++) {
				/* agreement as a bit mask over v and w (a select
				 * of floats does not vectorise here) */
				float v = e[i][j], mv, mw;
				uint32_t vb, plus, agree, mb;

				memcpy(&vb, &v, sizeof(vb));
				plus = -(uint32_t)(vote[j] >= 0.0f);
				agree = (plus & -(uint32_t)(v > 0.0f)) | (~plus & -(uint32_t)(v < 0.0f));
				vb &= agree;
				mb = wb & agree;
				memcpy(&mv, &vb, sizeof(mv));
				memcpy(&mw, &mb, sizeof(mw));
				mixed[j] += mv;
				div[j] += mw;
			}
		}
		for (size_t j = 0; j < len; j++)
			if (div[j] == 0.0f)
				div[j] = 1.0f;
	} else {
		float dsum = 0.0f;

		for (int i = 0; i < s->n; i++) {
			for (size_t j = 0; j < len; j++)
				mixed[j] += e[i][j];
			dsum += s->m[i].w;
		}
		if (fabsf(dsum) < 1e-8f)
			dsum = 1.0f;
		for (size_t j = 0; j < len; j++)
			div[j] = dsum;
	}
	if (s->normalize)
		for (size_t j = 0; j < len; j++)
			mixed[j] /= div[j];
	for (size_t j = 0; j < len; j++)
		out[j] = base[j] + mixed[j] * lambda;
}

static SMELT_HOT void merge_select(const struct gta_state *s, const struct smelt_tensor_job *job,
                         const struct smelt_block *b, float *out)
{
	size_t len = (size_t)(b->nrows * job->cols);
	struct cut_view hi[SP_MAX_MODELS], top[SP_MAX_MODELS];
	float e[SP_MAX_MODELS][TILE];

	for (int i = 0; i < s->n; i++) {
		const struct gta_model *m = &s->m[i];

		if (m->untouched) {
			memset(&hi[i], 0, sizeof(hi[i]));
			hi[i].gt = -1;
			top[i] = hi[i];
			top[i].gt = INT32_MAX;
			continue;
		}
		cut_view_init(&hi[i], &m->hi, m->hi_ties, b->index);
		cut_view_init(&top[i], &m->top, m->top_ties, b->index);
	}
	for (size_t o = 0; o < len; o += TILE) {
		size_t t = len - o < TILE ? len - o : TILE;

		for (int i = 0; i < s->n; i++)
			model_tile(&s->m[i], &hi[i], &top[i], b->x[i] + o, b->base + o, t, e[i]);
		combine_tile(s, e, b->base + o, t, out + o);
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
	float e[SP_MAX_MODELS][TILE];

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
		for (size_t o = 0; o < cols; o += TILE) {
			size_t t = cols - o < TILE ? cols - o : TILE;
			const float *base = b->base + off + o;

			for (int i = 0; i < s->n; i++) {
				const struct gta_model *m = &s->m[i];
				const float *x = b->x[i] + off + o;
				const unsigned char *kr = keep ? keep + (size_t)i * cols + o : NULL;
				uint32_t all = m->untouched ? 1 : 0, some = m->zeroed ? 0 : 1;

				for (size_t j = 0; j < t; j++) {
					float dv = x[j] - base[j], kd;
					uint32_t u, k;

					if (kr || all || !some)
						k = all | (dv == 0.0f) | (some & (kr ? kr[j] : 0));
					else
						k = dv == 0.0f ||
						    draw_keep(job, i, elem0 + o + j, m->density);
					memcpy(&u, &dv, sizeof(u));
					u &= -k;
					memcpy(&kd, &u, sizeof(kd));
					e[i][j] = (kd * m->scale) * m->w;
				}
			}
			combine_tile(s, e, base, t, out + off + o);
		}
	}
	if (slot >= 0)
		slot_put(&ms->slots, slot);
}

/* DARE without a test hook: the keep rule of merge_random, drawn for every
 * element without branches (a zero delta gives a zero term whether kept or
 * not, so drawing for it too changes nothing), then the vectorised combine
 * of merge_select. */
static SMELT_HOT void merge_dare(const struct gta_state *s, const struct smelt_tensor_job *job,
                                 const struct smelt_block *b, float *out)
{
	size_t len = (size_t)(b->nrows * job->cols);
	float e[SP_MAX_MODELS][TILE];

	for (size_t o = 0; o < len; o += TILE) {
		size_t t = len - o < TILE ? len - o : TILE;

		for (int i = 0; i < s->n; i++) {
			const struct gta_model *m = &s->m[i];
			const float *x = b->x[i] + o, *base = b->base + o;
			uint64_t key = job->rng_key[i], c0 = b->elem0 + o;
			uint64_t below = m->untouched ? UINT64_MAX : keep_below(m->density);
			float scale = m->scale, w = m->w;

			for (size_t j = 0; j < t; j++) {
				float d = x[j] - base[j], kd;
				uint32_t u, keep;

				/* a select on the draw would be an unpredictable
				 * branch: mask the bits instead */
				keep = (uint32_t)((smelt_rng_u64(key, c0 + j) >> 11) < below);
				memcpy(&u, &d, sizeof(u));
				u &= -keep;
				memcpy(&kd, &u, sizeof(kd));
				e[i][j] = (kd * scale) * w;
			}
		}
		combine_tile(s, e, b->base + o, t, out + o);
	}
}

void sp_gta_merge(const struct smelt_tensor_job *job, const struct smelt_block *b, float *out)
{
	const struct gta_state *s = job->state;

	if (s->cfg->trim == SP_TRIM_RANDOM && !keep_hook)
		merge_dare(s, job, b, out);
	else if (s->cfg->trim == SP_TRIM_RANDOM || s->cfg->trim == SP_TRIM_DELLA)
		merge_random(s, job, b, out);
	else
		merge_select(s, job, b, out);
}

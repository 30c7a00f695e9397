/*
 * stats.c: the divergence analysis behind `smelt diverge` and the TUI
 * heatmaps (include/smelt/stats.h).
 *
 * One streaming pass per tensor, split over a fixed number of row groups
 * (a function of the shape only, folded in group order, so every number is
 * identical for any thread count):
 *   - Linear matrices: per group accumulators of sum b^2, sum w^2, sum w*b
 *     per column and model (double), folded, then divergences;
 *   - token embeddings (transposed): each storage row is one column, its
 *     sums go straight to its own slot;
 *   - vectors: |delta| per element and its per-model sum.
 * Then positions (stable sort, NaN last) are computed once per model and
 * component; summaries (quantiles) read them, and WIDEN weights for any
 * knobs come from them through widen_core.c, the merge's own code.
 */
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smelt/pool.h"
#include "stats_int.h"

#define STATS_BLOCK_BYTES (1u << 18) /* f32 bytes per input per block */
#define STATS_MAX_GROUPS  16

void smelt_stats_opts_default(struct smelt_stats_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->threshold = SMELT_WIDEN_DEFAULT_THRESHOLD;
	o->calibration = SMELT_WIDEN_DEFAULT_CALIBRATION;
	o->temperature = SMELT_WIDEN_DEFAULT_TEMPERATURE;
}

static size_t cell_index(const struct smelt_stats *s, int layer, enum smelt_kind kind)
{
	(void)s;
	return (size_t)(layer + 1) * SMELT_KIND_COUNT + (size_t)kind;
}

static void lock(const struct smelt_stats *s)
{
	pthread_mutex_lock((pthread_mutex_t *)&s->lock);
}

static void unlock(const struct smelt_stats *s)
{
	pthread_mutex_unlock((pthread_mutex_t *)&s->lock);
}

static int check_knobs(double t, double sc, double T, struct smelt_err *err)
{
	if (isnan(t))
		return smelt_fail(err, SMELT_EINVAL, "widen threshold must be a number");
	if (!isfinite(sc))
		return smelt_fail(err, SMELT_EINVAL, "widen calibration %g must be finite", sc);
	if (!(T > 0.0) || isinf(T))
		return smelt_fail(err, SMELT_EINVAL, "widen temperature %g must be finite and > 0",
		                  T);
	return 0;
}

/* ---- planning ---- */

static bool same_shape(const struct smelt_st_tensor *a, const struct smelt_st_tensor *b)
{
	if (a->ndim != b->ndim)
		return false;
	for (int d = 0; d < a->ndim; d++)
		if (a->shape[d] != b->shape[d])
			return false;
	return true;
}

static bool is_vocab_tensor(const char *name, enum smelt_kind kind)
{
	return kind == SMELT_KIND_EMBED || kind == SMELT_KIND_HEAD ||
	       smelt_is_token_embedding(name);
}

static int compile_excludes(const struct smelt_stats_opts *o, regex_t *re, struct smelt_err *err)
{
	for (size_t i = 0; i < o->n_exclude; i++) {
		size_t len = strlen(o->exclude[i]);
		char *pat = malloc(len + 4);
		int rc;

		if (!pat)
			goto nomem;
		/* re.match semantics: anchored at the start only. */
		snprintf(pat, len + 4, "^(%s)", o->exclude[i]);
		rc = regcomp(&re[i], pat, REG_EXTENDED | REG_NOSUB);
		free(pat);
		if (rc) {
			char buf[128];

			regerror(rc, &re[i], buf, sizeof(buf));
			for (size_t j = 0; j < i; j++)
				regfree(&re[j]);
			return smelt_fail(err, SMELT_EINVAL, "exclude regex '%s': %s",
			                  o->exclude[i], buf);
		}
		continue;
	nomem:
		for (size_t j = 0; j < i; j++)
			regfree(&re[j]);
		return smelt_fail(err, SMELT_ENOMEM, "out of memory");
	}
	return 0;
}

/* The WIDEN orientation of a tensor read as rows x cols (spec widen.md §2). */
static void orient(struct stats_tensor *t, int ndim, uint64_t rows, uint64_t cols)
{
	struct smelt_stats_tensor_info *in = &t->info;

	t->rows = rows;
	t->cols = cols;
	t->numel = rows * cols;
	if (ndim == 2 && smelt_is_token_embedding(in->name)) {
		in->branch = SMELT_BRANCH_MATRIX_T;
		in->d = cols;
		in->k = rows;
	} else if (ndim == 2) {
		in->branch = SMELT_BRANCH_MATRIX;
		in->d = rows;
		in->k = cols;
	} else {
		in->branch = SMELT_BRANCH_VECTOR;
		in->d = 1;
		in->k = t->numel;
	}
	if (in->k > UINT32_MAX) {
		in->branch = SMELT_BRANCH_SKIPPED;
		snprintf(t->note, sizeof(t->note), "more than 2^32 columns");
	}
}

/* Decide how tensor t (base tensor bt) is compared; fills note when skipped. */
static void plan_tensor(struct smelt_stats *s, struct stats_tensor *t,
                        const struct smelt_ckpt_tensor *bt)
{
	const struct smelt_st_tensor *b = bt->st;
	struct smelt_stats_tensor_info *in = &t->info;
	uint64_t rows, cols;

	in->name = bt->name;
	in->layer = bt->layer;
	in->kind = smelt_tensor_kind(bt->name);
	in->branch = SMELT_BRANCH_SKIPPED;
	t->bt = bt;
	smelt_tensor_rows_cols(b->ndim, b->shape, &rows, &cols);
	if (!smelt_dtype_is_float(b->dtype)) {
		snprintf(t->note, sizeof(t->note), "not a float tensor (%s)",
		         smelt_dtype_name(b->dtype));
		goto skipped;
	}
	for (int i = 0; i < s->n; i++) {
		const struct smelt_ckpt_tensor *m = smelt_ckpt_find(s->models[i], bt->name);
		const char *who =
		    s->models[i]->display ? s->models[i]->display : s->models[i]->path;

		t->mt[i] = m;
		if (!m) {
			snprintf(t->note, sizeof(t->note), "missing in %s", who);
			goto skipped;
		}
		if (!smelt_dtype_is_float(m->st->dtype)) {
			snprintf(t->note, sizeof(t->note), "not a float tensor in %s", who);
			goto skipped;
		}
		if (same_shape(b, m->st))
			continue;
		if (b->ndim == 2 && m->st->ndim == 2 && b->shape[1] == m->st->shape[1] &&
		    is_vocab_tensor(bt->name, in->kind)) {
			if (m->st->shape[0] < rows)
				rows = m->st->shape[0];
			snprintf(t->note, sizeof(t->note),
			         "vocabularies differ: compared over the first %llu rows",
			         (unsigned long long)rows);
			continue;
		}
		snprintf(t->note, sizeof(t->note), "shape differs in %s", who);
		goto skipped;
	}
	if (rows == 0 || cols == 0) {
		snprintf(t->note, sizeof(t->note), "empty tensor");
		goto skipped;
	}
	orient(t, b->ndim, rows, cols);
	in->note = t->note[0] ? t->note : NULL;
	return;
skipped:
	in->note = t->note;
}

static int plan_cells(struct smelt_stats *s)
{
	size_t nc = (size_t)(s->n_layers + 1) * SMELT_KIND_COUNT;

	s->cells = calloc(nc, sizeof(*s->cells));
	if (!s->cells)
		return -1;
	for (size_t i = 0; i < s->n_tensors; i++) {
		struct stats_tensor *t = &s->t[i];
		struct stats_cell *c;

		if (t->info.branch == SMELT_BRANCH_SKIPPED)
			continue;
		c = &s->cells[cell_index(s, t->info.layer, t->info.kind)];
		if (!c->tensors && !(c->res = calloc((size_t)s->n, sizeof(*c->res))))
			return -1;
		size_t *nt = realloc(c->tensors, (size_t)(c->n_tensors + 1) * sizeof(size_t));

		if (!nt)
			return -1;
		c->tensors = nt;
		c->tensors[c->n_tensors++] = i;
	}
	return 0;
}

int smelt_stats_open(struct smelt_stats **out, const struct smelt_ckpt *base,
                     const struct smelt_ckpt *const *models, int n_models,
                     const struct smelt_stats_opts *opts, struct smelt_err *err)
{
	struct smelt_stats *s;
	struct smelt_stats_opts def;
	regex_t *re = NULL;
	size_t n_ok = 0;
	int rc;

	*out = NULL;
	if (!opts) {
		smelt_stats_opts_default(&def);
		opts = &def;
	}
	if (n_models < 1 || n_models > WIDEN_MAX_MODELS)
		return smelt_fail(err, SMELT_EINVAL,
		                  "divergence analysis needs 1 to %d models, got %d",
		                  WIDEN_MAX_MODELS, n_models);
	if ((rc = check_knobs(opts->threshold, opts->calibration, opts->temperature, err)))
		return rc;
	s = calloc(1, sizeof(*s));
	if (!s)
		return smelt_fail(err, SMELT_ENOMEM, "out of memory");
	pthread_mutex_init(&s->lock, NULL);
	s->base = base;
	s->n = n_models;
	s->opts = *opts;
	s->opts.exclude = NULL;
	s->opts.n_exclude = 0;
	s->kn = (struct widen_knobs){opts->threshold, opts->calibration, opts->temperature};
	s->models = calloc((size_t)n_models, sizeof(*s->models));
	s->n_tensors = base->n_tensors;
	s->t = calloc(s->n_tensors ? s->n_tensors : 1, sizeof(*s->t));
	s->n_layers = base->num_layers;
	if (opts->n_exclude)
		re = calloc(opts->n_exclude, sizeof(*re));
	if (!s->models || !s->t || (opts->n_exclude && !re)) {
		rc = smelt_fail(err, SMELT_ENOMEM, "out of memory");
		goto fail;
	}
	memcpy((void *)s->models, models, (size_t)n_models * sizeof(*models));
	if ((rc = compile_excludes(opts, re, err)))
		goto fail;
	for (size_t i = 0; i < s->n_tensors; i++) {
		struct stats_tensor *t = &s->t[i];

		t->mt = calloc((size_t)n_models, sizeof(*t->mt));
		t->res = calloc((size_t)n_models, sizeof(*t->res));
		if (!t->mt || !t->res) {
			rc = smelt_fail(err, SMELT_ENOMEM, "out of memory");
			goto fail_re;
		}
		plan_tensor(s, t, &base->tensors[i]);
		if (t->info.layer >= s->n_layers)
			s->n_layers = t->info.layer + 1;
		for (size_t r = 0; r < opts->n_exclude; r++)
			if (regexec(&re[r], t->info.name, 0, NULL, 0) == 0)
				t->info.excluded = true;
		if (t->info.branch == SMELT_BRANCH_SKIPPED)
			continue;
		n_ok++;
		s->bytes_total += t->numel * smelt_dtype_bits(t->bt->st->dtype) / 8;
		for (int m = 0; m < n_models; m++)
			s->bytes_total += t->numel * smelt_dtype_bits(t->mt[m]->st->dtype) / 8;
	}
	if (!n_ok) {
		rc = smelt_fail(err, SMELT_ENOTFOUND, "%s: no tensor is shared with the models",
		                base->display ? base->display : base->path);
		goto fail_re;
	}
	if (plan_cells(s)) {
		rc = smelt_fail(err, SMELT_ENOMEM, "out of memory");
		goto fail_re;
	}
	if (!opts->no_cache && (rc = stats_cache_key(s, err)))
		goto fail_re;
	for (size_t r = 0; r < opts->n_exclude; r++)
		regfree(&re[r]);
	free(re);
	atomic_init(&s->state, SMELT_STATS_IDLE);
	*out = s;
	return 0;
fail_re:
	for (size_t r = 0; r < opts->n_exclude; r++)
		regfree(&re[r]);
fail:
	free(re);
	smelt_stats_free(s);
	return rc;
}

int stats_open_shapes(struct smelt_stats **out, int n_models, const struct stats_shape *sh,
                      size_t n_tensors, const struct smelt_stats_opts *opts, struct smelt_err *err)
{
	struct smelt_stats *s;
	int rc;

	*out = NULL;
	if (n_models < 1 || n_models > WIDEN_MAX_MODELS)
		return smelt_fail(err, SMELT_EINVAL, "need 1 to %d models", WIDEN_MAX_MODELS);
	if ((rc = check_knobs(opts->threshold, opts->calibration, opts->temperature, err)))
		return rc;
	s = calloc(1, sizeof(*s));
	if (!s)
		return smelt_fail(err, SMELT_ENOMEM, "out of memory");
	pthread_mutex_init(&s->lock, NULL);
	s->n = n_models;
	s->opts = *opts;
	s->opts.no_cache = true;
	s->opts.exclude = NULL;
	s->opts.n_exclude = 0;
	s->kn = (struct widen_knobs){opts->threshold, opts->calibration, opts->temperature};
	s->n_tensors = n_tensors;
	s->t = calloc(n_tensors ? n_tensors : 1, sizeof(*s->t));
	if (!s->t)
		goto nomem;
	for (size_t i = 0; i < n_tensors; i++) {
		struct stats_tensor *t = &s->t[i];
		uint64_t rows, cols;

		t->res = calloc((size_t)n_models, sizeof(*t->res));
		if (!t->res)
			goto nomem;
		t->info.name = sh[i].name;
		t->info.layer = smelt_layer_index(sh[i].name, NULL, NULL);
		t->info.kind = smelt_tensor_kind(sh[i].name);
		smelt_tensor_rows_cols(sh[i].ndim, sh[i].shape, &rows, &cols);
		orient(t, sh[i].ndim, rows, cols);
		t->info.note = t->note[0] ? t->note : NULL;
		if (t->info.layer >= s->n_layers)
			s->n_layers = t->info.layer + 1;
	}
	if (plan_cells(s))
		goto nomem;
	atomic_init(&s->state, SMELT_STATS_IDLE);
	*out = s;
	return 0;
nomem:
	smelt_stats_free(s);
	return smelt_fail(err, SMELT_ENOMEM, "out of memory");
}

/* ---- summaries ---- */

/* Summary of v[0..k) using its sort positions (NaN last): no sorting. */
static void summarize_sorted(const double *v, const uint32_t *pos, uint64_t k, uint32_t *inv,
                             struct smelt_summary *o)
{
	uint64_t nf = 0;
	double sum = 0.0;
	const double q[3] = {0.5, 0.9, 0.99};
	double *qo[3] = {&o->p50, &o->p90, &o->p99};

	memset(o, 0, sizeof(*o));
	for (uint64_t j = 0; j < k; j++) {
		inv[pos[j]] = (uint32_t)j;
		if (!isnan(v[j])) {
			nf++;
			sum += v[j];
		}
	}
	o->n = nf;
	o->n_nan = k - nf;
	if (!nf) {
		o->mean = o->min = o->max = o->p50 = o->p90 = o->p99 = NAN;
		return;
	}
	o->mean = sum / (double)nf;
	o->min = v[inv[0]];
	o->max = v[inv[nf - 1]];
	for (int i = 0; i < 3; i++) {
		uint64_t r = (uint64_t)ceil(q[i] * (double)nf);

		*qo[i] = v[inv[r ? r - 1 : 0]];
	}
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Summary of an unsorted list (cells gathering several tensors). */
static int summarize_values(double *v, uint64_t cnt, uint64_t n_nan, struct smelt_summary *o)
{
	const double q[3] = {0.5, 0.9, 0.99};
	double *qo[3] = {&o->p50, &o->p90, &o->p99};
	double sum = 0.0;

	memset(o, 0, sizeof(*o));
	o->n = cnt;
	o->n_nan = n_nan;
	if (!cnt) {
		o->mean = o->min = o->max = o->p50 = o->p90 = o->p99 = NAN;
		return 0;
	}
	for (uint64_t i = 0; i < cnt; i++)
		sum += v[i];
	qsort(v, cnt, sizeof(double), cmp_double);
	o->mean = sum / (double)cnt;
	o->min = v[0];
	o->max = v[cnt - 1];
	for (int i = 0; i < 3; i++) {
		uint64_t r = (uint64_t)ceil(q[i] * (double)cnt);

		*qo[i] = v[r ? r - 1 : 0];
	}
	return 0;
}

static void empty_summary(struct smelt_summary *o)
{
	memset(o, 0, sizeof(*o));
	o->mean = o->min = o->max = o->p50 = o->p90 = o->p99 = NAN;
}

/* WIDEN weight summaries of a done tensor for the current knobs. scratch
 * holds at least n * k doubles. */
static int score_tensor(struct smelt_stats *s, struct stats_tensor *t, double *scratch)
{
	uint64_t k = t->info.k;
	int n = s->n;

	if (t->info.excluded) {
		for (int i = 0; i < n; i++)
			memset(&t->res[i].w, 0, sizeof(t->res[i].w));
		return 0;
	}
	if (t->info.branch == SMELT_BRANCH_VECTOR) {
		double a[WIDEN_MAX_MODELS], thr[WIDEN_MAX_MODELS], om[WIDEN_MAX_MODELS];
		double sum[WIDEN_MAX_MODELS], mn[WIDEN_MAX_MODELS], mx[WIDEN_MAX_MODELS];
		uint64_t nc[WIDEN_MAX_MODELS];
		bool cal[WIDEN_MAX_MODELS];

		for (int i = 0; i < n; i++) {
			thr[i] = s->kn.t * t->mean_a[i];
			sum[i] = 0.0;
			mn[i] = INFINITY;
			mx[i] = -INFINITY;
			nc[i] = 0;
		}
		for (uint64_t e = 0; e < k; e++) {
			for (int i = 0; i < n; i++)
				a[i] = t->mag[(size_t)i * k + e];
			widen_vector_element(n, a, thr, &s->kn, om, cal);
			for (int i = 0; i < n; i++) {
				sum[i] += om[i];
				mn[i] = fmin(mn[i], om[i]);
				mx[i] = fmax(mx[i], om[i]);
				nc[i] += cal[i];
			}
		}
		for (int i = 0; i < n; i++) {
			struct smelt_weight_summary *w = &t->res[i].w;

			w->mean_omega = sum[i] / (double)k;
			w->min_omega = mn[i];
			w->max_omega = mx[i];
			w->frac_cal_mag = w->frac_cal_dir = (double)nc[i] / (double)k;
		}
		return 0;
	}
	{
		double sum[WIDEN_MAX_MODELS];
		uint64_t cm[WIDEN_MAX_MODELS], cq[WIDEN_MAX_MODELS];

		if (widen_matrix_weights(n, k, t->pos_m, t->pos_q, &s->kn, NULL, scratch, sum, cm,
		                         cq))
			return -1;
		for (int i = 0; i < n; i++) {
			struct smelt_weight_summary *w = &t->res[i].w;
			const double *om = scratch + (size_t)i * k;

			w->mean_omega = sum[i] / (double)k;
			w->min_omega = INFINITY;
			w->max_omega = -INFINITY;
			for (uint64_t j = 0; j < k; j++) {
				w->min_omega = fmin(w->min_omega, om[j]);
				w->max_omega = fmax(w->max_omega, om[j]);
			}
			w->frac_cal_mag = (double)cm[i] / (double)k;
			w->frac_cal_dir = (double)cq[i] / (double)k;
		}
	}
	return 0;
}

/* Weight part of a cell from its done tensors (element-weighted mean,
 * column-weighted calibration fractions). */
static void score_cell(struct smelt_stats *s, struct stats_cell *c)
{
	for (int i = 0; i < s->n; i++) {
		struct smelt_weight_summary *w = &c->res[i].w;
		double num = 0.0, den = 0.0, cm = 0.0, cq = 0.0, cols = 0.0;

		w->min_omega = INFINITY;
		w->max_omega = -INFINITY;
		for (int x = 0; x < c->n_tensors; x++) {
			const struct stats_tensor *t = &s->t[c->tensors[x]];
			const struct smelt_weight_summary *tw = &t->res[i].w;

			if (!t->done)
				continue;
			num += tw->mean_omega * (double)t->numel;
			den += (double)t->numel;
			cm += tw->frac_cal_mag * (double)t->info.k;
			cq += tw->frac_cal_dir * (double)t->info.k;
			cols += (double)t->info.k;
			w->min_omega = fmin(w->min_omega, tw->min_omega);
			w->max_omega = fmax(w->max_omega, tw->max_omega);
		}
		w->mean_omega = den > 0 ? num / den : NAN;
		w->frac_cal_mag = cols > 0 ? cm / cols : NAN;
		w->frac_cal_dir = cols > 0 ? cq / cols : NAN;
		if (den == 0)
			w->min_omega = w->max_omega = NAN;
	}
}

/* Divergence part of a cell: matrix tensors when it has any, else vectors. */
static int summarize_cell(struct smelt_stats *s, struct stats_cell *c)
{
	bool has_matrix = false;
	int n_contrib = 0, done = 0, last = -1;
	uint64_t total = 0, cols = 0, params = 0;

	for (int x = 0; x < c->n_tensors; x++) {
		const struct stats_tensor *t = &s->t[c->tensors[x]];

		if (t->info.branch != SMELT_BRANCH_VECTOR)
			has_matrix = true;
	}
	for (int x = 0; x < c->n_tensors; x++) {
		const struct stats_tensor *t = &s->t[c->tensors[x]];
		bool matrix = t->info.branch != SMELT_BRANCH_VECTOR;

		if (!t->done)
			continue;
		done++;
		cols += t->info.k;
		params += t->numel;
		if (matrix == has_matrix) {
			n_contrib++;
			last = x;
			total += t->info.k;
		}
	}
	for (int i = 0; i < s->n; i++) {
		struct smelt_stats_result *r = &c->res[i];

		r->ready = done == c->n_tensors;
		r->n_tensors = c->n_tensors;
		r->n_columns = cols;
		r->n_params = params;
		if (n_contrib == 0) {
			empty_summary(&r->mag);
			empty_summary(&r->dir);
		} else if (n_contrib == 1) {
			const struct stats_tensor *t = &s->t[c->tensors[last]];

			r->mag = t->res[i].mag;
			r->dir = t->res[i].dir;
		} else {
			double *v = malloc((size_t)total * sizeof(double));

			if (!v)
				return -1;
			for (int comp = 0; comp < (has_matrix ? 2 : 1); comp++) {
				uint64_t cnt = 0, nn = 0;

				for (int x = 0; x < c->n_tensors; x++) {
					const struct stats_tensor *t = &s->t[c->tensors[x]];
					bool matrix = t->info.branch != SMELT_BRANCH_VECTOR;
					const double *src;

					if (!t->done || matrix != has_matrix)
						continue;
					src = (comp ? t->dir : t->mag) + (size_t)i * t->info.k;
					for (uint64_t j = 0; j < t->info.k; j++) {
						if (isnan(src[j]))
							nn++;
						else
							v[cnt++] = src[j];
					}
				}
				summarize_values(v, cnt, nn, comp ? &r->dir : &r->mag);
			}
			if (!has_matrix)
				empty_summary(&r->dir);
			free(v);
		}
	}
	score_cell(s, c);
	return 0;
}

int stats_install(struct smelt_stats *s, size_t ti, double *mag, double *dir, uint32_t *pos_m,
                  uint32_t *pos_q, double *mean_a, struct smelt_err *err)
{
	struct stats_tensor *t = &s->t[ti];
	uint64_t k = t->info.k;
	uint32_t *inv = malloc((k ? k : 1) * sizeof(uint32_t));
	double *scratch = malloc((k ? k : 1) * (size_t)s->n * sizeof(double));
	int rc = 0;

	if (!inv || !scratch) {
		free(inv);
		free(scratch);
		free(mag);
		free(dir);
		free(pos_m);
		free(pos_q);
		free(mean_a);
		return smelt_fail(err, SMELT_ENOMEM, "%s: out of memory", t->info.name);
	}
	lock(s);
	t->mag = mag;
	t->dir = dir;
	t->pos_m = pos_m;
	t->pos_q = pos_q;
	t->mean_a = mean_a;
	for (int i = 0; i < s->n; i++) {
		struct smelt_stats_result *r = &t->res[i];

		r->n_tensors = 1;
		r->n_columns = k;
		r->n_params = t->numel;
		summarize_sorted(mag + (size_t)i * k, pos_m + (size_t)i * k, k, inv, &r->mag);
		if (dir)
			summarize_sorted(dir + (size_t)i * k, pos_q + (size_t)i * k, k, inv,
			                 &r->dir);
		else
			empty_summary(&r->dir);
	}
	if (score_tensor(s, t, scratch)) {
		rc = smelt_fail(err, SMELT_ENOMEM, "%s: out of memory", t->info.name);
		goto out;
	}
	t->done = true;
	for (int i = 0; i < s->n; i++)
		t->res[i].ready = true;
	if (summarize_cell(s, &s->cells[cell_index(s, t->info.layer, t->info.kind)]))
		rc = smelt_fail(err, SMELT_ENOMEM, "%s: out of memory", t->info.name);
	atomic_fetch_add(&s->tensors_done, 1);
	atomic_fetch_add(&s->generation, 1);
out:
	unlock(s);
	free(inv);
	free(scratch);
	return rc;
}

/* ---- streaming ---- */

struct tensor_run {
	struct smelt_stats *s;
	struct stats_tensor *t;
	size_t ti;
	uint64_t block_rows;
	size_t n_blocks, n_groups;
	size_t acc_len;   /* doubles per group accumulator */
	double *acc;      /* matrix: [groups][1 + 2n][cols]; vector: [groups][n] */
	double *row_sums; /* matrix_t: [k][1 + 2n] */
	double *absd;     /* vector: [n][numel] */
	float **wbuf;     /* per worker: (n + 1) * block_rows * cols */
	pthread_mutex_t elock;
	atomic_int failed;
	struct smelt_err err;
};

static void run_fail(struct tensor_run *r, const struct smelt_err *e)
{
	pthread_mutex_lock(&r->elock);
	if (!atomic_load(&r->failed)) {
		r->err = *e;
		atomic_store(&r->failed, 1);
	}
	pthread_mutex_unlock(&r->elock);
}

static void process_block(struct tensor_run *r, size_t g, uint64_t row0, uint64_t nrows,
                          const float *b, const float *const *x)
{
	struct stats_tensor *t = r->t;
	int n = r->s->n;
	size_t cols = (size_t)t->cols;

	switch (t->info.branch) {
	case SMELT_BRANCH_MATRIX:
		widen_accumulate_columns(b, x, n, cols, (size_t)nrows, r->acc + g * r->acc_len);
		break;
	case SMELT_BRANCH_MATRIX_T:
		for (uint64_t i = 0; i < nrows; i++)
			widen_row_sums(b + i * cols, x, (size_t)i * cols, n, cols,
			               r->row_sums + (size_t)(row0 + i) * (1 + 2 * (size_t)n));
		break;
	case SMELT_BRANCH_VECTOR: {
		size_t len = (size_t)nrows * cols, off = (size_t)row0 * cols;

		for (int m = 0; m < n; m++) {
			double *dst = r->absd + (size_t)m * t->numel + off, sum = 0.0;

			for (size_t e = 0; e < len; e++) {
				dst[e] = fabs((double)x[m][e] - (double)b[e]);
				sum += dst[e];
			}
			r->acc[g * r->acc_len + (size_t)m] += sum;
		}
		break;
	}
	case SMELT_BRANCH_SKIPPED: break;
	}
}

/* Matrix tensors whose inputs are all bfloat16 are read as stored and
 * summed by the bf16 kernels, which convert in registers: the same sums
 * without writing and rereading f32 copies of the rows. */
static bool raw_bf16(const struct tensor_run *r)
{
	const struct stats_tensor *t = r->t;

	if (t->info.branch != SMELT_BRANCH_MATRIX && t->info.branch != SMELT_BRANCH_MATRIX_T)
		return false;
	if (t->bt->st->dtype != SMELT_BF16)
		return false;
	for (int m = 0; m < r->s->n; m++)
		if (t->mt[m]->st->dtype != SMELT_BF16)
			return false;
	return true;
}

static void process_block_bf16(struct tensor_run *r, size_t g, uint64_t row0, uint64_t nrows,
                               const uint16_t *b, const uint16_t *const *x)
{
	int n = r->s->n;
	size_t cols = (size_t)r->t->cols;

	if (r->t->info.branch == SMELT_BRANCH_MATRIX) {
		widen_accumulate_columns_bf16(b, x, n, cols, (size_t)nrows, r->acc + g * r->acc_len);
		return;
	}
	for (uint64_t i = 0; i < nrows; i++)
		widen_row_sums_bf16(b + i * cols, x, (size_t)i * cols, n, cols,
		                    r->row_sums + (size_t)(row0 + i) * (1 + 2 * (size_t)n));
}

/* Rows [row0, row0 + nrows) of the base into buf and of model m into x[m],
 * as f32 or (raw) as stored. */
static int read_block(struct tensor_run *r, bool raw, uint64_t row0, uint64_t nrows, float *buf,
                      const float *const *x, struct smelt_err *e)
{
	struct smelt_stats *s = r->s;
	struct stats_tensor *t = r->t;

	if (raw ? smelt_ckpt_read_raw(s->base, t->bt, row0, nrows, buf, e)
	        : smelt_ckpt_read_rows(s->base, t->bt, row0, nrows, buf, e))
		return e->code;
	for (int m = 0; m < s->n; m++)
		if (raw ? smelt_ckpt_read_raw(s->models[m], t->mt[m], row0, nrows, (void *)x[m], e)
		        : smelt_ckpt_read_rows(s->models[m], t->mt[m], row0, nrows, (float *)x[m],
		                               e))
			return e->code;
	return 0;
}

static void run_group(void *ctx, size_t g, int worker)
{
	struct tensor_run *r = ctx;
	struct smelt_stats *s = r->s;
	struct stats_tensor *t = r->t;
	size_t per = r->n_blocks / r->n_groups, extra = r->n_blocks % r->n_groups;
	size_t first = g * per + (g < extra ? g : extra), last = first + per + (g < extra ? 1 : 0);
	size_t blk = (size_t)r->block_rows * (size_t)t->cols;
	float *buf = r->wbuf[worker];
	const float *x[WIDEN_MAX_MODELS];
	bool raw = raw_bf16(r);
	struct smelt_err e;

	for (int m = 0; m < s->n; m++)
		x[m] = buf + (size_t)(1 + m) * blk;
	for (size_t bi = first; bi < last; bi++) {
		uint64_t row0 = (uint64_t)bi * r->block_rows;
		uint64_t nrows = t->rows - row0 < r->block_rows ? t->rows - row0 : r->block_rows;
		uint64_t bytes;

		if (atomic_load(&r->failed))
			return;
		if (atomic_load(&s->cancel)) {
			smelt_fail(&e, SMELT_ECANCELED, "divergence analysis cancelled");
			run_fail(r, &e);
			return;
		}
		if (read_block(r, raw, row0, nrows, buf, x, &e) != 0) {
			run_fail(r, &e);
			return;
		}
		bytes = nrows * t->cols * smelt_dtype_bits(t->bt->st->dtype) / 8;
		for (int m = 0; m < s->n; m++)
			bytes += nrows * t->cols * smelt_dtype_bits(t->mt[m]->st->dtype) / 8;
		if (raw)
			process_block_bf16(r, g, row0, nrows, (const uint16_t *)(void *)buf,
			                   (const uint16_t *const *)(const void *)x);
		else
			process_block(r, g, row0, nrows, buf, x);
		atomic_fetch_add(&s->bytes_read, bytes);
	}
}

/* Divergences and positions from the folded sums; hands everything to
 * stats_install. */
static int finish_tensor(struct tensor_run *r, struct smelt_err *err)
{
	struct smelt_stats *s = r->s;
	struct stats_tensor *t = r->t;
	size_t n = (size_t)s->n, k = (size_t)t->info.k;
	double *mag = NULL, *dir = NULL, *mean_a = NULL;
	uint32_t *pos_m = malloc(n * k * sizeof(uint32_t)), *pos_q = NULL;

	if (!pos_m)
		goto nomem;
	if (t->info.branch == SMELT_BRANCH_VECTOR) {
		mag = r->absd;
		r->absd = NULL;
		mean_a = calloc(n, sizeof(double));
		if (!mean_a)
			goto nomem;
		for (size_t g = 0; g < r->n_groups; g++)
			for (size_t i = 0; i < n; i++)
				mean_a[i] += r->acc[g * r->acc_len + i];
		for (size_t i = 0; i < n; i++)
			mean_a[i] /= (double)t->numel;
	} else {
		const double *sums;
		size_t cs, ms;

		mag = malloc(n * k * sizeof(double));
		dir = malloc(n * k * sizeof(double));
		pos_q = malloc(n * k * sizeof(uint32_t));
		if (!mag || !dir || !pos_q)
			goto nomem;
		if (t->info.branch == SMELT_BRANCH_MATRIX) {
			for (size_t g = 1; g < r->n_groups; g++)
				for (size_t e = 0; e < r->acc_len; e++)
					r->acc[e] += r->acc[g * r->acc_len + e];
			sums = r->acc;
			cs = 1;
			ms = k;
		} else {
			sums = r->row_sums;
			cs = 1 + 2 * n;
			ms = 1;
		}
		for (size_t i = 0; i < n; i++)
			for (size_t j = 0; j < k; j++) {
				const double *c = sums + j * cs;

				widen_divergence(c[0], c[(1 + 2 * i) * ms], c[(2 + 2 * i) * ms],
				                 &mag[i * k + j], &dir[i * k + j]);
			}
	}
	/* The rank positions of each model's magnitudes and directions. This
	 * runs as a pool item (see stream_all), so the sorts run in turn. */
	for (size_t i = 0; i < n; i++)
		if (widen_positions(mag + i * k, k, pos_m + i * k) != 0 ||
		    (dir && widen_positions(dir + i * k, k, pos_q + i * k) != 0))
			goto nomem;
	return stats_install(s, r->ti, mag, dir, pos_m, pos_q, mean_a, err);
nomem:
	free(mag);
	free(dir);
	free(mean_a);
	free(pos_m);
	free(pos_q);
	return smelt_fail(err, SMELT_ENOMEM, "%s: out of memory for column statistics",
	                  t->info.name);
}

/*
 * The pass over the tensors is a pipeline of two: while the workers stream
 * tensor i, one of them finishes tensor i-1 (divergences, ranks, WIDEN
 * scores and summaries), which is serial work per tensor that otherwise
 * left all but one thread waiting (about 15% of the pass on the bench
 * family). Consecutive tensors therefore use alternate sets of sum buffers.
 * The column and row sums are reused from tensor to tensor: allocating
 * them per tensor got fresh pages from the kernel each time (above
 * malloc's mmap threshold), and the page faults and TLB shootdowns of
 * mapping and unmapping them cost about a tenth of the pass.
 */
struct sum_bufs {
	double *acc;
	size_t acc_cap;   /* doubles */
	double *row_sums;
	size_t rows_cap;  /* doubles */
};

/* buf holding at least n doubles (contents undefined), NULL when out of
 * memory. */
static double *reserve(double **buf, size_t *cap, size_t n)
{
	if (n > *cap) {
		double *p = realloc(*buf, n * sizeof(double));

		if (!p)
			return NULL;
		*buf = p;
		*cap = n;
	}
	return *buf;
}

/* Prepare the run of tensor ti (r is zeroed here) with sum buffers sb. */
static int run_begin(struct smelt_stats *s, float **wbuf, struct sum_bufs *sb, size_t ti,
                     struct tensor_run *r, struct smelt_err *err)
{
	struct stats_tensor *t = &s->t[ti];
	size_t n = (size_t)s->n;

	memset(r, 0, sizeof(*r));
	r->s = s;
	r->t = t;
	r->ti = ti;
	r->wbuf = wbuf;
	r->block_rows = STATS_BLOCK_BYTES / (t->cols * sizeof(float));
	if (r->block_rows < 1)
		r->block_rows = 1;
	if (r->block_rows > t->rows)
		r->block_rows = t->rows;
	r->n_blocks = (size_t)((t->rows + r->block_rows - 1) / r->block_rows);
	r->n_groups = r->n_blocks < STATS_MAX_GROUPS ? r->n_blocks : STATS_MAX_GROUPS;
	switch (t->info.branch) {
	case SMELT_BRANCH_MATRIX: r->acc_len = (1 + 2 * n) * (size_t)t->cols; break;
	case SMELT_BRANCH_MATRIX_T:
		r->row_sums = reserve(&sb->row_sums, &sb->rows_cap, (size_t)t->rows * (1 + 2 * n));
		if (!r->row_sums)
			goto nomem;
		break;
	case SMELT_BRANCH_VECTOR:
		r->acc_len = n;
		r->absd = malloc((size_t)t->numel * n * sizeof(double));
		if (!r->absd)
			goto nomem;
		break;
	case SMELT_BRANCH_SKIPPED: break;
	}
	if (r->acc_len) {
		if (!(r->acc = reserve(&sb->acc, &sb->acc_cap, r->n_groups * r->acc_len)))
			goto nomem;
		memset(r->acc, 0, r->n_groups * r->acc_len * sizeof(double));
	}
	pthread_mutex_init(&r->elock, NULL);
	atomic_init(&r->failed, 0);
	return 0;
nomem:
	free(r->absd);
	r->absd = NULL;
	return smelt_fail(err, SMELT_ENOMEM, "%s: out of memory for column statistics",
	                  t->info.name);
}

/* After the streaming of r: its result (finish_tensor) or its failure. */
static int run_end(struct tensor_run *r, struct smelt_err *err)
{
	int rc;

	if (atomic_load(&r->failed)) {
		*err = r->err;
		rc = r->err.code ? r->err.code : SMELT_EIO;
	} else {
		rc = finish_tensor(r, err);
	}
	pthread_mutex_destroy(&r->elock);
	free(r->absd);
	r->absd = NULL;
	return rc;
}

/* One pool round: item 0 finishes the previous tensor (when there is one),
 * the other items stream the groups of the current one (when there is
 * one). The finish is item 0 so that it starts at once, beside the
 * streaming, instead of after it. */
struct step {
	struct tensor_run *cur, *prev;
	int prev_rc;
	struct smelt_err prev_err;
};

static void step_item(void *ctx, size_t i, int worker)
{
	struct step *st = ctx;

	if (st->prev && i == 0) {
		st->prev_rc = run_end(st->prev, &st->prev_err);
		return;
	}
	run_group(st->cur, i - (st->prev ? 1 : 0), worker);
}

/* Run one step; the previous tensor, finished, goes to on_tensor. Returns
 * the first error in tensor order. */
static int run_step(struct smelt_stats *s, struct smelt_pool *pool, struct tensor_run *cur,
                    struct tensor_run *prev, struct smelt_err *err)
{
	struct step st = {.cur = cur, .prev = prev};
	size_t items = (cur ? cur->n_groups : 0) + (prev ? 1 : 0);

	if (cur) {
		lock(s);
		snprintf(s->current, sizeof(s->current), "%s", cur->t->info.name);
		unlock(s);
	}
	smelt_pool_for(pool, items, step_item, &st);
	if (prev) {
		if (st.prev_rc) {
			*err = st.prev_err;
			return st.prev_rc;
		}
		if (s->opts.on_tensor)
			s->opts.on_tensor(s->opts.ctx, prev->ti);
	}
	return 0;
}

static int stream_all(struct smelt_stats *s, struct smelt_err *err)
{
	struct smelt_pool *pool = smelt_pool_new(s->opts.threads);
	struct sum_bufs sb[2] = {{0}, {0}};
	struct tensor_run runs[2];
	struct tensor_run *prev = NULL;
	float **wbuf = NULL;
	size_t maxblk = 0, started = 0;
	int nw, rc = 0;

	if (!pool)
		return smelt_fail(err, SMELT_ENOMEM, "out of memory starting threads");
	nw = smelt_pool_threads(pool);
	for (size_t i = 0; i < s->n_tensors; i++) {
		const struct stats_tensor *t = &s->t[i];
		uint64_t br;

		if (t->info.branch == SMELT_BRANCH_SKIPPED)
			continue;
		br = STATS_BLOCK_BYTES / (t->cols * sizeof(float));
		br = br < 1 ? 1 : br > t->rows ? t->rows : br;
		if (br * t->cols > maxblk)
			maxblk = (size_t)(br * t->cols);
	}
	wbuf = calloc((size_t)nw, sizeof(*wbuf));
	if (!wbuf)
		goto nomem;
	for (int w = 0; w < nw; w++)
		if (!(wbuf[w] = malloc(maxblk * (size_t)(1 + s->n) * sizeof(float))))
			goto nomem;
	for (size_t i = 0; i < s->n_tensors && rc == 0; i++) {
		struct tensor_run *cur = &runs[started % 2];

		if (s->t[i].info.branch == SMELT_BRANCH_SKIPPED)
			continue;
		if (atomic_load(&s->cancel)) {
			rc = smelt_fail(err, SMELT_ECANCELED, "divergence analysis cancelled");
			break;
		}
		if ((rc = run_begin(s, wbuf, &sb[started % 2], i, cur, err)) != 0)
			break;
		started++;
		rc = run_step(s, pool, cur, prev, err);
		prev = cur;
		if (rc == 0 && atomic_load(&cur->failed)) {
			/* stop at the tensor that failed: its own error */
			rc = run_end(cur, err);
			prev = NULL;
		}
	}
	if (prev) {
		if (rc == 0)
			rc = run_step(s, pool, NULL, prev, err);
		else { /* an earlier failure: release the pending run */
			struct smelt_err ignored;

			atomic_store(&prev->failed, 1);
			run_end(prev, &ignored);
		}
	}
	goto out;
nomem:
	rc = smelt_fail(err, SMELT_ENOMEM, "out of memory for read buffers");
out:
	for (int w = 0; wbuf && w < nw; w++)
		free(wbuf[w]);
	free(wbuf);
	for (int k = 0; k < 2; k++) {
		free(sb[k].acc);
		free(sb[k].row_sums);
	}
	smelt_pool_free(pool);
	return rc;
}

int smelt_stats_run(struct smelt_stats *s, struct smelt_err *err)
{
	int rc;

	atomic_store(&s->state, SMELT_STATS_RUNNING);
	if (!s->opts.no_cache) {
		rc = stats_cache_load(s, err);
		if (rc == 1) {
			atomic_store(&s->from_cache, true);
			atomic_store(&s->bytes_read, s->bytes_total);
			if (s->opts.on_tensor)
				for (size_t i = 0; i < s->n_tensors; i++)
					if (s->t[i].done)
						s->opts.on_tensor(s->opts.ctx, i);
			rc = 0;
			goto out;
		}
		if (rc < 0)
			goto out;
	}
	rc = stream_all(s, err);
	if (rc == 0 && !s->opts.no_cache) {
		struct smelt_err cerr;

		/* A cache that cannot be written only costs the next open. */
		stats_cache_save(s, &cerr);
	}
out:
	lock(s);
	s->current[0] = '\0';
	unlock(s);
	atomic_store(&s->state, rc == 0                 ? SMELT_STATS_DONE
	                        : rc == SMELT_ECANCELED ? SMELT_STATS_CANCELED
	                                                : SMELT_STATS_FAILED);
	atomic_fetch_add(&s->generation, 1);
	return rc;
}

static void *stats_thread(void *arg)
{
	struct smelt_stats *s = arg;

	s->thread_rc = smelt_stats_run(s, &s->thread_err);
	return NULL;
}

int smelt_stats_start(struct smelt_stats *s, struct smelt_err *err)
{
	if (s->thread_started)
		return smelt_fail(err, SMELT_EINVAL, "divergence analysis already started");
	smelt_err_clear(&s->thread_err);
	atomic_store(&s->state, SMELT_STATS_RUNNING);
	if (pthread_create(&s->thread, NULL, stats_thread, s)) {
		atomic_store(&s->state, SMELT_STATS_FAILED);
		return smelt_fail(err, SMELT_ENOMEM, "cannot start the analysis thread");
	}
	s->thread_started = true;
	return 0;
}

int smelt_stats_wait(struct smelt_stats *s, struct smelt_err *err)
{
	if (!s->thread_started)
		return smelt_fail(err, SMELT_EINVAL, "divergence analysis was not started");
	pthread_join(s->thread, NULL);
	s->thread_started = false;
	if (s->thread_rc && err)
		*err = s->thread_err;
	return s->thread_rc;
}

void smelt_stats_cancel(struct smelt_stats *s)
{
	atomic_store(&s->cancel, 1);
}

void smelt_stats_free(struct smelt_stats *s)
{
	if (!s)
		return;
	if (s->thread_started)
		smelt_stats_wait(s, NULL);
	for (size_t i = 0; s->t && i < s->n_tensors; i++) {
		struct stats_tensor *t = &s->t[i];

		free(t->mt);
		free(t->res);
		free(t->mag);
		free(t->dir);
		free(t->pos_m);
		free(t->pos_q);
		free(t->mean_a);
	}
	free(s->t);
	if (s->cells)
		for (size_t c = 0; c < (size_t)(s->n_layers + 1) * SMELT_KIND_COUNT; c++) {
			free(s->cells[c].tensors);
			free(s->cells[c].res);
		}
	free(s->cells);
	free((void *)s->models);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

/* ---- re-scoring and getters ---- */

int smelt_stats_rescore(struct smelt_stats *s, double threshold, double calibration,
                        double temperature, struct smelt_err *err)
{
	uint64_t maxk = 1;
	double *scratch;
	int rc;

	if ((rc = check_knobs(threshold, calibration, temperature, err)))
		return rc;
	for (size_t i = 0; i < s->n_tensors; i++)
		if (s->t[i].info.branch != SMELT_BRANCH_SKIPPED && s->t[i].info.k > maxk)
			maxk = s->t[i].info.k;
	scratch = malloc((size_t)maxk * (size_t)s->n * sizeof(double));
	if (!scratch)
		return smelt_fail(err, SMELT_ENOMEM, "out of memory re-scoring");
	lock(s);
	s->kn = (struct widen_knobs){threshold, calibration, temperature};
	for (size_t i = 0; i < s->n_tensors && rc == 0; i++)
		if (s->t[i].done && score_tensor(s, &s->t[i], scratch))
			rc = smelt_fail(err, SMELT_ENOMEM, "out of memory re-scoring");
	for (size_t c = 0; c < (size_t)(s->n_layers + 1) * SMELT_KIND_COUNT; c++)
		if (s->cells[c].n_tensors)
			score_cell(s, &s->cells[c]);
	atomic_fetch_add(&s->generation, 1);
	unlock(s);
	free(scratch);
	return rc;
}

void smelt_stats_knobs(const struct smelt_stats *s, double *threshold, double *calibration,
                       double *temperature)
{
	lock(s);
	if (threshold)
		*threshold = s->kn.t;
	if (calibration)
		*calibration = s->kn.s;
	if (temperature)
		*temperature = s->kn.T;
	unlock(s);
}

void smelt_stats_progress(const struct smelt_stats *s, struct smelt_stats_progress *p)
{
	p->state = (enum smelt_stats_state)atomic_load(&s->state);
	p->from_cache = atomic_load(&s->from_cache);
	p->bytes_read = atomic_load(&s->bytes_read);
	p->bytes_total = s->bytes_total;
	p->tensors_done = atomic_load(&s->tensors_done);
	p->tensors_total = 0;
	for (size_t i = 0; i < s->n_tensors; i++)
		p->tensors_total += s->t[i].info.branch != SMELT_BRANCH_SKIPPED;
	p->generation = atomic_load(&s->generation);
	lock(s);
	snprintf(p->current, sizeof(p->current), "%s", s->current);
	unlock(s);
}

size_t smelt_stats_n_tensors(const struct smelt_stats *s)
{
	return s->n_tensors;
}

int smelt_stats_n_models(const struct smelt_stats *s)
{
	return s->n;
}

int smelt_stats_n_layers(const struct smelt_stats *s)
{
	return s->n_layers;
}

const struct smelt_stats_tensor_info *smelt_stats_tensor_info(const struct smelt_stats *s, size_t i)
{
	return i < s->n_tensors ? &s->t[i].info : NULL;
}

bool smelt_stats_tensor_result(const struct smelt_stats *s, size_t i, int model,
                               struct smelt_stats_result *out)
{
	bool ok;

	memset(out, 0, sizeof(*out));
	if (i >= s->n_tensors || model < 0 || model >= s->n)
		return false;
	lock(s);
	ok = s->t[i].done;
	if (ok)
		*out = s->t[i].res[model];
	unlock(s);
	return ok;
}

bool smelt_stats_cell(const struct smelt_stats *s, int model, int layer, enum smelt_kind kind,
                      struct smelt_stats_result *out)
{
	const struct stats_cell *c;

	memset(out, 0, sizeof(*out));
	if (model < 0 || model >= s->n || layer < -1 || layer >= s->n_layers || kind < 0 ||
	    kind >= SMELT_KIND_COUNT)
		return false;
	c = &s->cells[cell_index(s, layer, kind)];
	if (!c->n_tensors)
		return false;
	lock(s);
	*out = c->res[model];
	out->n_tensors = c->n_tensors;
	unlock(s);
	return true;
}

double smelt_stats_layer_weight(const struct smelt_stats *s, int model, int layer)
{
	double num = 0.0, den = 0.0;

	if (model < 0 || model >= s->n)
		return NAN;
	lock(s);
	for (size_t i = 0; i < s->n_tensors; i++) {
		const struct stats_tensor *t = &s->t[i];

		if (!t->done || t->info.layer != layer)
			continue;
		num += t->res[model].w.mean_omega * (double)t->numel;
		den += (double)t->numel;
	}
	unlock(s);
	return den > 0 ? num / den : NAN;
}

const char *smelt_stats_cache_path(const struct smelt_stats *s)
{
	return s->cache_path;
}

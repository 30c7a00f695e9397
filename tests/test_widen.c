/*
 * test_widen.c: the widen method against the authors' test vectors
 * (testdata/widen, spec widen.md §13) through smelt_run_job_mem, the shared
 * scoring core against the recorded intermediates, and properties: the
 * integer threshold rule, t < 0 = task arithmetic, t >= 2 = no calibration,
 * a single model, thread/block independence, provenance weights.
 */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "methods/widen_core.h"
#include "smelt/method.h"
#include "smelt/stats.h"

extern const struct smelt_method smelt_method_widen;
#define M (&smelt_method_widen)

enum { P_T, P_S, P_TEMP, P_EXCL };

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long n;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
		buf = malloc((size_t)n + 1);
		if (buf && fread(buf, 1, (size_t)n, f) == (size_t)n)
			buf[n] = '\0';
		else {
			free(buf);
			buf = NULL;
		}
	}
	fclose(f);
	return buf;
}

static cJSON *load_json(const char *rel)
{
	char path[1024];
	char *text = slurp(check_shared(rel, path, sizeof(path)));
	cJSON *j = text ? cJSON_Parse(text) : NULL;

	free(text);
	if (!j)
		check_fail(__FILE__, __LINE__, "cannot load %s", path);
	return j;
}

/* Flatten a nested JSON list of numbers (or "NaN") into dst; returns count. */
static size_t flatten(const cJSON *v, double *dst, size_t cap)
{
	size_t n = 0;
	const cJSON *e;

	if (cJSON_IsArray(v)) {
		cJSON_ArrayForEach(e, v) n +=
		    flatten(e, dst ? dst + n : NULL, cap > n ? cap - n : 0);
		return n;
	}
	if (dst && cap)
		dst[0] = cJSON_IsNumber(v) ? v->valuedouble : NAN;
	return 1;
}

static float *flat_f32(const cJSON *v, size_t numel)
{
	double *d = calloc(numel, sizeof(double));
	float *f = calloc(numel, sizeof(float));

	CHECK_EQ_INT(flatten(v, d, numel), numel);
	for (size_t i = 0; i < numel; i++)
		f[i] = (float)d[i];
	free(d);
	return f;
}

struct tjob {
	struct smelt_tensor_job job;
	double pg[SMELT_MAX_PARAMS];
	double pm[WIDEN_MAX_MODELS * SMELT_MAX_PARAMS];
	uint64_t keys[WIDEN_MAX_MODELS];
};

static void tjob_init(struct tjob *t, const char *name, int ndim, const uint64_t *shape,
                      int n_models, double th, double s, double T)
{
	memset(t, 0, sizeof(*t));
	t->job.name = name;
	t->job.ndim = ndim;
	for (int d = 0; d < ndim; d++)
		t->job.shape[d] = shape[d];
	t->job.n_models = n_models;
	t->job.has_base = true;
	t->job.n_params = M->n_params;
	t->pg[P_T] = th;
	t->pg[P_S] = s;
	t->pg[P_TEMP] = T;
	t->job.pg = t->pg;
	t->job.pm = t->pm;
	t->job.rng_key = t->keys;
	t->job.layer = -1;
}

static uint64_t numel_of(int ndim, const uint64_t *shape)
{
	uint64_t n = 1;

	for (int d = 0; d < ndim; d++)
		n *= shape[d];
	return n;
}

/* Run one case file; returns the largest absolute error seen. */
static double run_case(const char *file, int threads, const char *block_bytes)
{
	char rel[256];
	cJSON *cs, *in, *params, *models, *mlist, *exp;
	double th, s, T, tol, maxerr = 0.0;
	bool f64;
	const cJSON *p;

	snprintf(rel, sizeof(rel), "testdata/widen/%s", file);
	cs = load_json(rel);
	if (!cs)
		return INFINITY;
	snprintf(rel, sizeof(rel), "testdata/widen/%s",
	         cJSON_GetObjectItem(cs, "inputs_file")->valuestring);
	in = load_json(rel);
	if (!in) {
		cJSON_Delete(cs);
		return INFINITY;
	}
	if (block_bytes)
		setenv("SMELT_BLOCK_BYTES", block_bytes, 1);
	else
		unsetenv("SMELT_BLOCK_BYTES");
	th = cJSON_GetObjectItem(cs, "above_average_value_ratio")->valuedouble;
	s = cJSON_GetObjectItem(cs, "score_calibration_value")->valuedouble;
	T = cJSON_GetObjectItem(cs, "temperature")->valuedouble;
	f64 = strcmp(cJSON_GetObjectItem(cs, "rank_and_score_dtype")->valuestring, "float64") == 0;
	tol = f64 ? 1e-6 : 2e-6;
	params = cJSON_GetObjectItem(in, "params");
	models = cJSON_GetObjectItem(in, "models");
	mlist = cJSON_GetObjectItem(cs, "models_to_merge");
	exp = cJSON_GetObjectItem(cs, "expected_merged");
	cJSON_ArrayForEach(p, params)
	{
		const char *name = cJSON_GetObjectItem(p, "name")->valuestring;
		const cJSON *shp = cJSON_GetObjectItem(p, "shape"), *d;
		uint64_t shape[SMELT_MAX_DIMS];
		int ndim = 0, n = cJSON_GetArraySize(mlist);
		size_t numel;
		float *base, *x[8], *out;
		double *want;
		struct tjob t;
		struct smelt_err err;
		int rc;

		cJSON_ArrayForEach(d, shp) shape[ndim++] = (uint64_t)d->valuedouble;
		numel = (size_t)numel_of(ndim, shape);
		base =
		    flat_f32(cJSON_GetObjectItem(cJSON_GetObjectItem(models, "base"), name), numel);
		for (int i = 0; i < n; i++)
			x[i] = flat_f32(cJSON_GetObjectItem(
			                    cJSON_GetObjectItem(
			                        models, cJSON_GetArrayItem(mlist, i)->valuestring),
			                    name),
			                numel);
		out = calloc(numel, sizeof(float));
		want = calloc(numel, sizeof(double));
		flatten(cJSON_GetObjectItem(exp, name), want, numel);
		tjob_init(&t, name, ndim, shape, n, th, s, T);
		rc =
		    smelt_run_job_mem(M, &t.job, base, (const float *const *)x, out, threads, &err);
		CHECK_MSG(rc == 0, "%s %s: %s", file, name, err.msg);
		for (size_t e = 0; rc == 0 && e < numel; e++) {
			double diff = fabs((double)out[e] - want[e]);

			if (diff > maxerr)
				maxerr = diff;
			CHECK_MSG(diff <= tol, "%s %s[%zu]: got %.9g want %.9g (tol %g)", file,
			          name, e, out[e], want[e], tol);
		}
		free(base);
		for (int i = 0; i < n; i++)
			free(x[i]);
		free(out);
		free(want);
	}
	cJSON_Delete(cs);
	cJSON_Delete(in);
	unsetenv("SMELT_BLOCK_BYTES");
	return maxerr;
}

static const char *const cases[] = {
    "case_ft_pt_default.json",
    "case_ft_pt_default_f64scores.json",
    "case_ft_pt_ratio1.3_calib1.0.json",
    "case_ft_pt_ratio2.5_calib1.0.json",
    "case_three_default.json",
    "case_three_ratio0.9_calib0.5.json",
    "case_three_ratio0.9_calib0.5_f64scores.json",
    "case_single_pt_calib0.5.json",
    "case_ext_temperature0.25_ft_pt.json",
    "case_edge_zero_columns.json",
};

TEST(known_answers)
{
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		double e1 = run_case(cases[c], 1, NULL);
		double e2 = run_case(cases[c], 2, "16");

		printf("  %-45s max |err| %.3g (1 thread), %.3g (2 threads, 16-byte blocks)\n",
		       cases[c], e1, e2);
	}
}

/* Vector branch: the recorded calibration mask and weights per element. */
static void vector_core(const cJSON *it, const cJSON *models, const cJSON *mlist, const char *name,
                        size_t d, const struct widen_knobs *kn)
{
	int n = cJSON_GetArraySize(mlist);
	float *b = flat_f32(cJSON_GetObjectItem(cJSON_GetObjectItem(models, "base"), name), d);
	float *x[8];
	double thr[8], want[64 * 8];
	const cJSON *mask = cJSON_GetObjectItem(it, "calibrated_mask");

	flatten(cJSON_GetObjectItem(it, "weight_score"), want, 64 * 8);
	for (int i = 0; i < n; i++) {
		double sum = 0;

		x[i] = flat_f32(
		    cJSON_GetObjectItem(
		        cJSON_GetObjectItem(models, cJSON_GetArrayItem(mlist, i)->valuestring),
		        name),
		    d);
		for (size_t e = 0; e < d; e++)
			sum += fabs((double)x[i][e] - b[e]);
		thr[i] = kn->t * sum / (double)d;
	}
	for (size_t e = 0; e < d; e++) {
		double a[8], om[8];
		bool cal[8];

		for (int i = 0; i < n; i++)
			a[i] = fabs((double)x[i][e] - b[e]);
		widen_vector_element(n, a, thr, kn, om, cal);
		for (int i = 0; i < n; i++) {
			const cJSON *mrow = cJSON_GetArrayItem(mask, i);

			CHECK_MSG(fabs(om[i] - want[(size_t)i * d + e]) <= 1e-6,
			          "%s[%zu] model %d omega %.9g vs %.9g", name, e, i, om[i],
			          want[(size_t)i * d + e]);
			CHECK_MSG(cal[i] == cJSON_IsTrue(cJSON_GetArrayItem(mrow, (int)e)),
			          "%s[%zu] model %d calibration", name, e, i);
		}
	}
	free(b);
	for (int i = 0; i < n; i++)
		free(x[i]);
}

/* The shared core reproduces the recorded ranks and weights from the
 * inputs (sums in double from f32 inputs, as the merge computes them). */
static void core_case(const char *file)
{
	char rel[256];
	cJSON *cs, *in, *inter, *models, *mlist, *params;
	const cJSON *p;
	struct widen_knobs kn;
	bool f64;

	snprintf(rel, sizeof(rel), "testdata/widen/%s", file);
	cs = load_json(rel);
	snprintf(rel, sizeof(rel), "testdata/widen/%s",
	         cJSON_GetObjectItem(cs, "inputs_file")->valuestring);
	in = load_json(rel);
	kn.t = cJSON_GetObjectItem(cs, "above_average_value_ratio")->valuedouble;
	kn.s = cJSON_GetObjectItem(cs, "score_calibration_value")->valuedouble;
	kn.T = cJSON_GetObjectItem(cs, "temperature")->valuedouble;
	f64 = strcmp(cJSON_GetObjectItem(cs, "rank_and_score_dtype")->valuestring, "float64") == 0;
	inter = cJSON_GetObjectItem(cs, "intermediates");
	models = cJSON_GetObjectItem(in, "models");
	mlist = cJSON_GetObjectItem(cs, "models_to_merge");
	params = cJSON_GetObjectItem(in, "params");
	cJSON_ArrayForEach(p, params)
	{
		const char *name = cJSON_GetObjectItem(p, "name")->valuestring;
		const cJSON *it = cJSON_GetObjectItem(inter, name),
		            *shp = cJSON_GetObjectItem(p, "shape");
		int n = cJSON_GetArraySize(mlist);
		uint64_t rows, cols, k;
		bool tr = smelt_is_token_embedding(name);
		float *b, *x[8];
		double *sums, *mag, *dir, *want, *omega;
		uint32_t *pos;

		if (cJSON_GetArraySize(shp) == 1) {
			vector_core(it, models, mlist, name,
			            (size_t)cJSON_GetArrayItem(shp, 0)->valuedouble, &kn);
			continue;
		}
		rows = (uint64_t)cJSON_GetArrayItem(shp, 0)->valuedouble;
		cols = (uint64_t)cJSON_GetArrayItem(shp, 1)->valuedouble;
		k = tr ? rows : cols;
		b = flat_f32(cJSON_GetObjectItem(cJSON_GetObjectItem(models, "base"), name),
		             rows * cols);
		for (int i = 0; i < n; i++)
			x[i] = flat_f32(cJSON_GetObjectItem(
			                    cJSON_GetObjectItem(
			                        models, cJSON_GetArrayItem(mlist, i)->valuestring),
			                    name),
			                rows * cols);
		sums = calloc(k * (1 + 2 * (size_t)n), sizeof(double));
		mag = calloc(2 * k, sizeof(double));
		dir = mag + k;
		pos = calloc(2 * k * (size_t)n, sizeof(uint32_t));
		want = calloc((size_t)n * k, sizeof(double));
		omega = calloc((size_t)n * k, sizeof(double));
		/* sums laid out [1 + 2n][k] */
		if (tr) {
			double *row = calloc(1 + 2 * (size_t)n, sizeof(double));

			for (uint64_t r = 0; r < rows; r++) {
				widen_row_sums(b + r * cols, (const float *const *)x, r * cols, n,
				               cols, row);
				for (int c = 0; c < 1 + 2 * n; c++)
					sums[(size_t)c * k + r] = row[c];
			}
			free(row);
		} else {
			widen_accumulate_columns(b, (const float *const *)x, n, cols, rows, sums);
		}
		for (int i = 0; i < n; i++) {
			double rm[64], rq[64];

			for (uint64_t j = 0; j < k; j++)
				widen_divergence(sums[j], sums[(1 + 2 * i) * k + j],
				                 sums[(2 + 2 * i) * k + j], &mag[j], &dir[j]);
			CHECK(widen_positions(mag, k, pos + i * k) == 0);
			CHECK(widen_positions(dir, k, pos + (n + i) * k) == 0);
			flatten(cJSON_GetArrayItem(cJSON_GetObjectItem(it, "magnitude_rank"), i),
			        rm, 64);
			flatten(cJSON_GetArrayItem(cJSON_GetObjectItem(it, "direction_rank"), i),
			        rq, 64);
			for (uint64_t j = 0; j < k; j++) {
				CHECK_NEAR((double)pos[i * k + j] / (double)k, rm[j], 1e-7);
				CHECK_NEAR((double)pos[(n + i) * k + j] / (double)k, rq[j], 1e-7);
			}
		}
		CHECK(widen_matrix_weights(n, k, pos, pos + (size_t)n * k, &kn, NULL, omega, NULL,
		                           NULL, NULL) == 0);
		flatten(cJSON_GetObjectItem(it, "weight_score"), want, (size_t)n * k);
		for (size_t e = 0; e < (size_t)n * k; e++)
			CHECK_MSG(fabs(omega[e] - want[e]) <= (f64 ? 1e-12 : 1e-7),
			          "%s %s omega[%zu] %.17g vs %.17g", file, name, e, omega[e],
			          want[e]);
		free(b);
		for (int i = 0; i < n; i++)
			free(x[i]);
		free(sums);
		free(mag);
		free(pos);
		free(want);
		free(omega);
	}
	cJSON_Delete(cs);
	cJSON_Delete(in);
}

TEST(core_ranks_and_weights)
{
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++)
		core_case(cases[c]);
}

TEST(integer_threshold_rule)
{
	/* q calibrated iff q > t (k-1) / 2 */
	CHECK_EQ_INT(widen_n_calibrated(5, 1.0), 2); /* median (q = 2) not calibrated */
	CHECK_EQ_INT(widen_n_calibrated(3, 1.0), 1);
	CHECK_EQ_INT(widen_n_calibrated(39, 1.0), 19);
	CHECK_EQ_INT(widen_n_calibrated(32001, 1.0), 16000);
	CHECK_EQ_INT(widen_n_calibrated(4, 1.0), 2); /* ⌊k/2⌋ for even k */
	CHECK_EQ_INT(widen_n_calibrated(6, 1.0), 3);
	CHECK_EQ_INT(widen_n_calibrated(7, 1.3), 3); /* x = 3.9 */
	CHECK_EQ_INT(widen_n_calibrated(6, 2.0), 0); /* x = 5 = k-1: top column sits on it */
	CHECK_EQ_INT(widen_n_calibrated(6, 2.5), 0);
	CHECK_EQ_INT(widen_n_calibrated(6, 1e300), 0);
	CHECK_EQ_INT(widen_n_calibrated(6, 0.0), 5);  /* all but rank 0 */
	CHECK_EQ_INT(widen_n_calibrated(6, -0.1), 6); /* t < 0: all */
	CHECK_EQ_INT(widen_n_calibrated(6, -1e300), 6);
	CHECK_EQ_INT(widen_n_calibrated(1, 1.0), 0);
	/* k = 1: the rank and its mean are both 0, and 0 > t * 0 never holds */
	CHECK_EQ_INT(widen_n_calibrated(1, -1.0), 0);
	CHECK_EQ_INT(widen_n_calibrated(0, 1.0), 0);
	/* odd k with t = 1: exactly the top (k-1)/2 */
	for (uint64_t k = 1; k < 200; k += 2)
		CHECK_EQ_INT(widen_n_calibrated(k, 1.0), (k - 1) / 2);
}

TEST(positions_stable_nan_last)
{
	double v[7] = {0.5, NAN, 0.1, 0.5, NAN, -1.0, 0.1};
	uint32_t pos[7];
	const uint32_t want[7] = {3, 5, 1, 4, 6, 0, 2};

	CHECK(widen_positions(v, 7, pos) == 0);
	for (int j = 0; j < 7; j++)
		CHECK_EQ_INT(pos[j], want[j]);
}

struct ref_pair {
	double v;
	uint32_t j;
};

static int ref_cmp(const void *pa, const void *pb)
{
	const struct ref_pair *a = pa, *b = pb;

	if (isnan(a->v) != isnan(b->v))
		return isnan(a->v) ? 1 : -1;
	if (!isnan(a->v) && a->v != b->v)
		return a->v < b->v ? -1 : 1;
	return a->j < b->j ? -1 : 1;
}

/* Long vectors take the radix path: same positions as a comparison sort
 * with the stable, NaN-last, index-tie rule, including -0 == +0 and Inf. */
TEST(positions_radix_matches_comparison)
{
	const size_t sizes[] = {256, 257, 1000, 5000};

	for (size_t si = 0; si < 4; si++) {
		size_t k = sizes[si];
		double *v = malloc(k * sizeof(double));
		uint32_t *pos = malloc(k * sizeof(uint32_t));
		struct ref_pair *ref = malloc(k * sizeof(*ref));
		uint32_t s = 12345 + (uint32_t)k;

		for (size_t j = 0; j < k; j++) {
			s = s * 1664525u + 1013904223u;
			switch (s >> 29) {
			case 0: v[j] = NAN; break;
			case 1: v[j] = (s & 1) ? -0.0 : 0.0; break;
			case 2: v[j] = (s & 1) ? INFINITY : -INFINITY; break;
			case 3: v[j] = (double)((s >> 8) % 7); break; /* many ties */
			default: v[j] = ((double)(s >> 8) / 16777216.0 - 0.5) * 1e-3; break;
			}
			ref[j].v = v[j];
			ref[j].j = (uint32_t)j;
		}
		qsort(ref, k, sizeof(*ref), ref_cmp);
		CHECK(widen_positions(v, k, pos) == 0);
		for (size_t q = 0; q < k; q++)
			CHECK_MSG(pos[ref[q].j] == q, "k %zu: column %u at %u, want %zu", k,
			          ref[q].j, pos[ref[q].j], q);
		free(v);
		free(pos);
		free(ref);
	}
}

/* Pseudo-random inputs for property tests. */
static void fill(float *v, size_t n, uint32_t seed, float scale)
{
	uint32_t s = seed * 2654435761u + 1;

	for (size_t i = 0; i < n; i++) {
		s = s * 1664525u + 1013904223u;
		v[i] = scale * ((float)(s >> 8) / (float)(1u << 24) - 0.5f);
	}
}

static const char *const names[] = {
    "model.layers.3.self_attn.q_proj.weight", "model.embed_tokens.weight", "lm_head.weight",
    "model.layers.3.input_layernorm.weight", "model.layers.0.block_sparse_moe.experts"};
static const int ndims[] = {2, 2, 2, 1, 3};
static const uint64_t shapes[][3] = {{7, 9}, {11, 5}, {11, 5}, {13, 1}, {3, 4, 5}};

static bool props_matrices_only;

static void run_props(double th, double s, int n,
                      void (*verify)(size_t numel, const float *b, float *const *x,
                                     const float *out, double s, int n))
{
	for (size_t c = 0; c < sizeof(names) / sizeof(names[0]); c++) {
		size_t numel = (size_t)numel_of(ndims[c], shapes[c]);
		float *b = malloc(numel * sizeof(float)), *x[4],
		      *out = malloc(numel * sizeof(float));
		struct tjob t;
		struct smelt_err err;

		if (props_matrices_only && ndims[c] != 2) {
			free(b);
			free(out);
			continue;
		}
		fill(b, numel, 99 + (uint32_t)c, 1.0f);
		for (int i = 0; i < n; i++) {
			x[i] = malloc(numel * sizeof(float));
			fill(x[i], numel, 7 * (uint32_t)i + (uint32_t)c, 0.2f * (float)(i + 1));
			for (size_t e = 0; e < numel; e++)
				x[i][e] += b[e];
		}
		tjob_init(&t, names[c], ndims[c], shapes[c], n, th, s, 1.0);
		CHECK_MSG(smelt_run_job_mem(M, &t.job, b, (const float *const *)x, out, 2, &err) ==
		              0,
		          "%s", err.msg);
		verify(numel, b, x, out, s, n);
		for (int i = 0; i < n; i++)
			free(x[i]);
		free(b);
		free(out);
	}
}

static void verify_task_arithmetic(size_t numel, const float *b, float *const *x, const float *out,
                                   double s, int n)
{
	for (size_t e = 0; e < numel; e++) {
		double want = b[e];

		for (int i = 0; i < n; i++)
			want += s * ((double)x[i][e] - b[e]);
		CHECK_NEAR(out[e], want, 1e-5);
	}
}

TEST(negative_threshold_is_task_arithmetic)
{
	run_props(-0.5, 0.7, 3, verify_task_arithmetic);
	run_props(-1e9, 1.0, 2, verify_task_arithmetic);
}

static void verify_identity(size_t numel, const float *b, float *const *x, const float *out,
                            double s, int n)
{
	(void)b, (void)s, (void)n;
	for (size_t e = 0; e < numel; e++)
		CHECK_NEAR(out[e], x[0][e], 1e-6);
}

TEST(single_model_s1_is_identity)
{
	run_props(1.0, 1.0, 1, verify_identity);
	run_props(2.5, 1.0, 1, verify_identity);
}

/* t >= 2: no matrix column calibrated, so per column the weights are a
 * softmax (sum to 1) and the output stays in the convex hull per element. */
static void verify_convex(size_t numel, const float *b, float *const *x, const float *out, double s,
                          int n)
{
	(void)b, (void)s;
	for (size_t e = 0; e < numel; e++) {
		double lo = INFINITY, hi = -INFINITY;

		for (int i = 0; i < n; i++) {
			lo = fmin(lo, x[i][e]);
			hi = fmax(hi, x[i][e]);
		}
		CHECK_MSG(out[e] >= lo - 1e-5 && out[e] <= hi + 1e-5, "%zu: %g not in [%g, %g]", e,
		          out[e], lo, hi);
	}
}

TEST(large_threshold_is_convex)
{
	/* the vector branch needs a larger t: only A > t mean calibrates */
	run_props(1e6, 5.0, 3, verify_convex);
	/* t = 2 is already enough for matrices (q > k - 1 never holds) */
	props_matrices_only = true;
	run_props(2.0, 5.0, 2, verify_convex);
	props_matrices_only = false;
}

TEST(softmax_weights_t_ge_2)
{
	/* t = 2 on k = 6: positions never exceed 5 = t (k-1)/2 */
	uint32_t pm[12] = {0, 1, 2, 3, 4, 5, 5, 4, 3, 2, 1, 0};
	uint32_t pq[12] = {5, 4, 3, 2, 1, 0, 0, 1, 2, 3, 4, 5};
	struct widen_knobs kn = {2.0, 9.0, 1.0};
	double om[12];
	uint64_t cm[2], cq[2];

	CHECK(widen_matrix_weights(2, 6, pm, pq, &kn, NULL, om, NULL, cm, cq) == 0);
	for (int j = 0; j < 6; j++)
		CHECK_NEAR(om[j] + om[6 + j], 1.0, 1e-15);
	CHECK_EQ_INT(cm[0] + cm[1] + cq[0] + cq[1], 0);
}

TEST(thread_and_block_independence)
{
	for (size_t c = 0; c < sizeof(names) / sizeof(names[0]); c++) {
		size_t numel = (size_t)numel_of(ndims[c], shapes[c]);
		float *b = malloc(numel * sizeof(float)), *x[3],
		      *ref = malloc(numel * sizeof(float));
		float *out = malloc(numel * sizeof(float));
		const char *budgets[] = {NULL, "4", "20", "64", "100000"};

		fill(b, numel, 5, 1.0f);
		for (int i = 0; i < 3; i++) {
			x[i] = malloc(numel * sizeof(float));
			fill(x[i], numel, 11 + (uint32_t)i, 1.0f);
		}
		for (size_t v = 0; v < sizeof(budgets) / sizeof(budgets[0]); v++) {
			for (int threads = 1; threads <= 2; threads++) {
				struct tjob t;
				struct smelt_err err;

				if (budgets[v])
					setenv("SMELT_BLOCK_BYTES", budgets[v], 1);
				else
					unsetenv("SMELT_BLOCK_BYTES");
				tjob_init(&t, names[c], ndims[c], shapes[c], 3, 1.0, 1.0, 0.5);
				CHECK(smelt_run_job_mem(M, &t.job, b, (const float *const *)x,
				                        v || threads > 1 ? out : ref, threads,
				                        &err) == 0);
				if (v || threads > 1)
					CHECK_MSG(memcmp(out, ref, numel * sizeof(float)) == 0,
					          "%s: budget %s threads %d differs", names[c],
					          budgets[v] ? budgets[v] : "default", threads);
			}
		}
		unsetenv("SMELT_BLOCK_BYTES");
		for (int i = 0; i < 3; i++)
			free(x[i]);
		free(b);
		free(ref);
		free(out);
	}
}

TEST(check_rejects_bad_params)
{
	uint64_t shape[2] = {2, 2};
	float b[4] = {0}, x0[4] = {0}, out[4];
	const float *x[1] = {x0};
	struct tjob t;
	struct smelt_err err;

	tjob_init(&t, "w", 2, shape, 1, 1.0, 1.0, 0.0);
	CHECK(smelt_run_job_mem(M, &t.job, b, x, out, 1, &err) == SMELT_EINVAL);
	CHECK_STR_CONTAINS(err.msg, "temperature");
	tjob_init(&t, "w", 2, shape, 1, 1.0, 1.0, 1.0);
	CHECK(smelt_run_job_mem(M, &t.job, NULL, x, out, 1, &err) == SMELT_EINVAL);
	CHECK_STR_CONTAINS(err.msg, "base");
	CHECK(smelt_method_param(M, "above_average_value_ratio") == P_T);
	CHECK(smelt_method_param(M, "score_calibration_value") == P_S);
	CHECK(smelt_method_param(M, "exclude_param_names_regex") == P_EXCL);
	CHECK(M->params[P_EXCL].type == SMELT_PARAM_REGEX_LIST);
}

TEST(nan_inputs_propagate)
{
	uint64_t shape[2] = {3, 2};
	float b[6] = {1, 2, 3, 4, 5, 6}, x0[6] = {1, 2, NAN, 4, 5, 6.5f}, out[6];
	const float *x[1] = {x0};
	struct tjob t;
	struct smelt_err err;

	tjob_init(&t, "model.layers.0.mlp.up_proj.weight", 2, shape, 1, 1.0, 1.0, 1.0);
	CHECK(smelt_run_job_mem(M, &t.job, b, x, out, 1, &err) == 0);
	CHECK(isnan(out[2]));
	CHECK(isfinite(out[1]));
}

/* Drive the method by hand to stop before release and read provenance. */
static void provenance_case(const char *name, int ndim, const uint64_t *shape)
{
	size_t numel = (size_t)numel_of(ndim, shape);
	float *b = malloc(numel * sizeof(float)), *x[2], *out = malloc(numel * sizeof(float));
	struct tjob t;
	struct smelt_err err;
	double mean[2];
	struct smelt_block blk = {0};
	void *acc;

	fill(b, numel, 1, 1.0f);
	for (int i = 0; i < 2; i++) {
		x[i] = malloc(numel * sizeof(float));
		fill(x[i], numel, 2 + (uint32_t)i, 1.0f);
	}
	tjob_init(&t, name, ndim, shape, 2, 1.0, 1.0, 1.0);
	smelt_job_layout(&t.job, &smelt_method_widen);
	t.job.block_rows = t.job.rows;
	t.job.n_blocks = 1;
	t.job.n_chunks = 1;
	CHECK(smelt_widen_job_weights(M, &t.job, mean) == SMELT_ENOTFOUND);
	CHECK(M->setup(&t.job, &err) == 0);
	blk.nrows = t.job.rows;
	blk.base = b;
	blk.x = (const float *const *)x;
	for (int p = 0; p < t.job.n_passes; p++) {
		acc = calloc(1, t.job.acc_bytes[p]);
		M->stats(&t.job, p, &blk, acc);
		CHECK(M->finish(&t.job, p, acc, &err) == 0);
		free(acc);
	}
	CHECK(smelt_widen_job_weights(M, &t.job, mean) == 0);
	CHECK(smelt_widen_job_weights(NULL, &t.job, mean) == SMELT_ENOTFOUND);
	M->merge(&t.job, &blk, out);
	M->release(&t.job);
	for (int i = 0; i < 2; i++)
		CHECK_MSG(mean[i] > 0.25 && mean[i] <= 1.0, "%s: mean omega %g", name, mean[i]);
	for (int i = 0; i < 2; i++)
		free(x[i]);
	free(b);
	free(out);
}

TEST(provenance_weights)
{
	uint64_t s2[2] = {6, 4}, s1[1] = {8};

	provenance_case("model.layers.0.self_attn.q_proj.weight", 2, s2);
	provenance_case("model.embed_tokens.weight", 2, s2);
	provenance_case("model.layers.0.input_layernorm.weight", 1, s1);
}

/* Provenance against the recorded weight_score of ft_pt_default. */
TEST(provenance_matches_vectors)
{
	cJSON *cs = load_json("testdata/widen/case_ft_pt_default.json");
	cJSON *in = load_json("testdata/widen/inputs.json");
	const cJSON *p;

	cJSON_ArrayForEach(p, cJSON_GetObjectItem(in, "params"))
	{
		const char *name = cJSON_GetObjectItem(p, "name")->valuestring;
		const cJSON *shp = cJSON_GetObjectItem(p, "shape"), *d;
		const cJSON *ws = cJSON_GetObjectItem(
		    cJSON_GetObjectItem(cJSON_GetObjectItem(cs, "intermediates"), name),
		    "weight_score");
		uint64_t shape[2];
		int ndim = 0;
		size_t numel;
		float *b, *x[2];
		struct tjob t;
		struct smelt_err err;
		struct smelt_block blk = {0};
		double mean[2];

		cJSON_ArrayForEach(d, shp) shape[ndim++] = (uint64_t)d->valuedouble;
		numel = (size_t)numel_of(ndim, shape);
		b = flat_f32(
		    cJSON_GetObjectItem(
		        cJSON_GetObjectItem(cJSON_GetObjectItem(in, "models"), "base"), name),
		    numel);
		x[0] = flat_f32(
		    cJSON_GetObjectItem(
		        cJSON_GetObjectItem(cJSON_GetObjectItem(in, "models"), "ft_small"), name),
		    numel);
		x[1] = flat_f32(
		    cJSON_GetObjectItem(
		        cJSON_GetObjectItem(cJSON_GetObjectItem(in, "models"), "pt_large"), name),
		    numel);
		tjob_init(&t, name, ndim, shape, 2, 1.0, 1.0, 1.0);
		smelt_job_layout(&t.job, &smelt_method_widen);
		t.job.block_rows = t.job.rows;
		t.job.n_blocks = t.job.n_chunks = 1;
		CHECK(M->setup(&t.job, &err) == 0);
		blk.nrows = t.job.rows;
		blk.base = b;
		blk.x = (const float *const *)x;
		for (int ps = 0; ps < t.job.n_passes; ps++) {
			void *acc = calloc(1, t.job.acc_bytes[ps]);

			M->stats(&t.job, ps, &blk, acc);
			CHECK(M->finish(&t.job, ps, acc, &err) == 0);
			free(acc);
		}
		CHECK(smelt_widen_job_weights(M, &t.job, mean) == 0);
		M->release(&t.job);
		for (int i = 0; i < 2; i++) {
			const cJSON *row = cJSON_GetArrayItem(ws, i), *v;
			double s = 0;
			int cnt = 0;

			cJSON_ArrayForEach(v, row)
			{
				s += v->valuedouble;
				cnt++;
			}
			CHECK_NEAR(mean[i], s / cnt, 1e-6);
		}
		free(b);
		free(x[0]);
		free(x[1]);
	}
	cJSON_Delete(cs);
	cJSON_Delete(in);
}

int main(void)
{
	RUN(known_answers);
	RUN(core_ranks_and_weights);
	RUN(integer_threshold_rule);
	RUN(positions_stable_nan_last);
	RUN(positions_radix_matches_comparison);
	RUN(negative_threshold_is_task_arithmetic);
	RUN(single_model_s1_is_identity);
	RUN(large_threshold_is_convex);
	RUN(softmax_weights_t_ge_2);
	RUN(thread_and_block_independence);
	RUN(check_rejects_bad_params);
	RUN(nan_inputs_propagate);
	RUN(provenance_weights);
	RUN(provenance_matches_vectors);
	return check_summary();
}

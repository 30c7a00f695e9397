/*
 * test_methods_sparse.c: the sparsifying task-vector methods (ties, dare_*,
 * breadcrumbs*, della*, sce, ram, ramplus_tl) against mergekit's
 * known-answer vectors in $SMELT_SHARED/testdata/methods, plus edge cases,
 * the selection tie rule, RNG statistics and determinism across threads and
 * block sizes.
 */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "methods/sparsify.h"
#include "smelt/method.h"
#include "smelt/rng.h"

#define N_MODELS 3
#define MAX_T    8

/* ---- case files ---- */

static cJSON *load_json(const char *rel)
{
	char path[1024];
	FILE *f;
	long len;
	char *buf;
	cJSON *j;

	check_shared(rel, path, sizeof(path));
	f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)len + 1);
	if (!buf || fread(buf, 1, (size_t)len, f) != (size_t)len) {
		free(buf);
		fclose(f);
		return NULL;
	}
	buf[len] = 0;
	fclose(f);
	j = cJSON_Parse(buf);
	free(buf);
	return j;
}

static cJSON *inputs;

static float *json_floats(const cJSON *arr, size_t *n)
{
	size_t len = (size_t)cJSON_GetArraySize(arr), i = 0;
	float *v = malloc(len * sizeof(float) + 1);
	const cJSON *e;

	cJSON_ArrayForEach(e, arr) v[i++] = (float)e->valuedouble;
	*n = len;
	return v;
}

/* One tensor of the inputs: base + the case's models in order. */
struct tensor_in {
	const char *name;
	int ndim;
	uint64_t shape[4];
	size_t n;
	float *base;
	float *x[N_MODELS];
};

static void tensor_load(struct tensor_in *t, const char *name, const cJSON *models)
{
	const cJSON *all = cJSON_GetObjectItem(inputs, "models");
	const cJSON *b = cJSON_GetObjectItem(cJSON_GetObjectItem(all, "base"), name);
	const cJSON *sh = cJSON_GetObjectItem(b, "shape"), *e;
	size_t n;
	int i = 0;

	memset(t, 0, sizeof(*t));
	t->name = name;
	cJSON_ArrayForEach(e, sh) t->shape[t->ndim++] = (uint64_t)e->valuedouble;
	t->base = json_floats(cJSON_GetObjectItem(b, "data"), &t->n);
	cJSON_ArrayForEach(e, models)
	{
		const cJSON *m = cJSON_GetObjectItem(all, e->valuestring);

		t->x[i++] =
		    json_floats(cJSON_GetObjectItem(cJSON_GetObjectItem(m, name), "data"), &n);
	}
}

static void tensor_free(struct tensor_in *t)
{
	free(t->base);
	for (int i = 0; i < N_MODELS; i++)
		free(t->x[i]);
}

/* A job for method m on tensor t, parameters at their defaults. */
struct job_buf {
	struct smelt_tensor_job job;
	double pg[SMELT_MAX_PARAMS];
	double pm[N_MODELS * SMELT_MAX_PARAMS];
	uint64_t keys[N_MODELS];
};

static void job_init(struct job_buf *jb, const struct smelt_method *m, const struct tensor_in *t,
                     int n_models, uint64_t seed)
{
	memset(jb, 0, sizeof(*jb));
	jb->job.name = t->name;
	jb->job.ndim = t->ndim;
	for (int d = 0; d < t->ndim; d++)
		jb->job.shape[d] = t->shape[d];
	jb->job.layer = -1;
	jb->job.n_models = n_models;
	jb->job.has_base = true;
	jb->job.n_params = m->n_params;
	jb->job.pg = jb->pg;
	jb->job.pm = jb->pm;
	jb->job.rng_key = jb->keys;
	for (int p = 0; p < m->n_params; p++) {
		jb->pg[p] = m->params[p].def;
		for (int i = 0; i < n_models; i++)
			jb->pm[i * m->n_params + p] = m->params[p].def;
	}
	for (int i = 0; i < n_models; i++)
		jb->keys[i] = smelt_rng_key(seed, t->name, (uint64_t)i);
}

static void set_global(struct job_buf *jb, const struct smelt_method *m, const char *name, double v)
{
	int p = smelt_method_param(m, name);

	CHECK_MSG(p >= 0, "%s: no parameter %s", m->name, name);
	if (p >= 0)
		jb->pg[p] = v;
}

static void set_model(struct job_buf *jb, const struct smelt_method *m, int i, const char *name,
                      double v)
{
	int p = smelt_method_param(m, name);

	CHECK_MSG(p >= 0, "%s: no parameter %s", m->name, name);
	if (p >= 0)
		jb->pm[i * m->n_params + p] = v;
}

static double json_num(const cJSON *v)
{
	if (cJSON_IsBool(v))
		return cJSON_IsTrue(v) ? 1.0 : 0.0;
	return v->valuedouble;
}

static void job_params_from_case(struct job_buf *jb, const struct smelt_method *m, const cJSON *cs)
{
	const cJSON *g = cJSON_GetObjectItem(cs, "resolved_parameters");
	const cJSON *tp = cJSON_GetObjectItem(cs, "resolved_tensor_parameters");
	const cJSON *models = cJSON_GetObjectItem(cs, "models"), *e, *p;
	int i = 0;

	cJSON_ArrayForEach(p, g) set_global(jb, m, p->string, json_num(p));
	cJSON_ArrayForEach(e, models)
	{
		cJSON_ArrayForEach(p, cJSON_GetObjectItem(tp, e->valuestring))
		    set_model(jb, m, i, p->string, json_num(p));
		i++;
	}
}

static int run(const struct smelt_method *m, struct job_buf *jb, const struct tensor_in *t,
               float *out, int threads, struct smelt_err *err)
{
	const float *xs[N_MODELS];

	for (int i = 0; i < jb->job.n_models; i++)
		xs[i] = t->x[i];
	return smelt_run_job_mem(m, &jb->job, t->base, xs, out, threads, err);
}

/* ---- mask injection for dare / della ---- */

struct mask_ctx {
	const char *mask[N_MODELS];
	size_t n;
};

static int mask_keep(void *ctx, const struct smelt_tensor_job *job, int model, uint64_t flat)
{
	const struct mask_ctx *mc = ctx;

	(void)job;
	return flat < mc->n && mc->mask[model][flat] == '1';
}

/* ---- the known-answer runner ---- */

/* Strong references: the registry only holds weak ones, which would not
 * pull the method objects out of the engine library. */
extern const struct smelt_method smelt_method_ties, smelt_method_dare_linear,
    smelt_method_dare_ties, smelt_method_breadcrumbs, smelt_method_breadcrumbs_ties,
    smelt_method_della, smelt_method_della_linear, smelt_method_sce, smelt_method_ram,
    smelt_method_ramplus_tl;

static const struct smelt_method *const my_method_list[] = {&smelt_method_ties,
                                                            &smelt_method_dare_linear,
                                                            &smelt_method_dare_ties,
                                                            &smelt_method_breadcrumbs,
                                                            &smelt_method_breadcrumbs_ties,
                                                            &smelt_method_della,
                                                            &smelt_method_della_linear,
                                                            &smelt_method_sce,
                                                            &smelt_method_ram,
                                                            &smelt_method_ramplus_tl};

static const char *const my_methods[] = {
    "ties",  "dare_linear",  "dare_ties", "breadcrumbs", "breadcrumbs_ties",
    "della", "della_linear", "sce",       "ram",         "ramplus_tl"};

static const struct smelt_method *method_by_name(const char *name)
{
	for (size_t i = 0; i < sizeof(my_method_list) / sizeof(my_method_list[0]); i++)
		if (strcmp(my_method_list[i]->name, name) == 0)
			return my_method_list[i];
	return NULL;
}

static bool is_mine(const char *method)
{
	for (size_t i = 0; i < sizeof(my_methods) / sizeof(my_methods[0]); i++)
		if (strcmp(my_methods[i], method) == 0)
			return true;
	return false;
}

/* Runs one case file; returns the number of tensors compared. */
static int run_case(const char *file, const char *block_bytes, int threads, double *worst)
{
	char rel[256];
	cJSON *cs;
	const cJSON *models, *tensors, *expected, *tol, *masks, *tn;
	const struct smelt_method *m;
	double atol, rtol;
	int compared = 0;

	snprintf(rel, sizeof(rel), "testdata/methods/%s", file);
	cs = load_json(rel);
	CHECK_MSG(cs != NULL, "cannot read %s", rel);
	if (!cs)
		return 0;
	m = method_by_name(cJSON_GetObjectItem(cs, "method")->valuestring);
	CHECK_MSG(m != NULL, "%s: method not registered", file);
	if (!m) {
		cJSON_Delete(cs);
		return 0;
	}
	models = cJSON_GetObjectItem(cs, "models");
	tensors = cJSON_GetObjectItem(cs, "tensors");
	expected = cJSON_GetObjectItem(cs, "expected");
	tol = cJSON_GetObjectItem(cs, "tolerance");
	atol = cJSON_GetObjectItem(tol, "atol")->valuedouble;
	rtol = cJSON_GetObjectItem(tol, "rtol")->valuedouble;
	masks = cJSON_GetObjectItem(cJSON_GetObjectItem(cs, "random"), "masks");
	if (block_bytes)
		setenv("SMELT_BLOCK_BYTES", block_bytes, 1);
	else
		unsetenv("SMELT_BLOCK_BYTES");
	cJSON_ArrayForEach(tn, tensors)
	{
		struct tensor_in t;
		struct job_buf jb;
		struct smelt_err err = {0};
		struct mask_ctx mc = {{0}, 0};
		const cJSON *exp = cJSON_GetObjectItem(expected, tn->valuestring);
		size_t ne;
		float *want, *got;
		int rc;

		tensor_load(&t, tn->valuestring, models);
		job_init(&jb, m, &t, N_MODELS, 1234);
		job_params_from_case(&jb, m, cs);
		if (masks) {
			const cJSON *mt = cJSON_GetObjectItem(masks, tn->valuestring), *e;
			int i = 0;

			cJSON_ArrayForEach(e, models)
			{
				mc.mask[i++] = cJSON_GetObjectItem(mt, e->valuestring)->valuestring;
			}
			mc.n = t.n;
			sp_set_keep_hook(mask_keep, &mc);
		}
		want = json_floats(cJSON_GetObjectItem(exp, "data"), &ne);
		got = calloc(t.n, sizeof(float));
		rc = run(m, &jb, &t, got, threads, &err);
		sp_set_keep_hook(NULL, NULL);
		CHECK_MSG(rc == 0, "%s %s: %s", file, t.name, err.msg);
		CHECK_EQ_INT(ne, t.n);
		for (size_t j = 0; rc == 0 && j < t.n && j < ne; j++) {
			double diff = fabs((double)got[j] - (double)want[j]);
			double lim = atol + rtol * fabs((double)want[j]);

			if (diff > *worst)
				*worst = diff;
			if (diff > lim || diff > 1e-5) {
				check_fail(__FILE__, __LINE__, "%s %s[%zu]: got %.9g want %.9g",
				           file, t.name, j, got[j], want[j]);
				break;
			}
		}
		compared++;
		free(want);
		free(got);
		tensor_free(&t);
	}
	unsetenv("SMELT_BLOCK_BYTES");
	cJSON_Delete(cs);
	return compared;
}

static void run_all_cases(const char *block_bytes, int threads)
{
	cJSON *index = load_json("testdata/methods/index.json");
	const cJSON *e, *list;
	int files = 0, tensors = 0;
	double worst = 0;

	CHECK(index != NULL);
	if (!index)
		return;
	list = cJSON_IsArray(index) ? index : cJSON_GetObjectItem(index, "cases");
	cJSON_ArrayForEach(e, list)
	{
		const char *file = cJSON_IsString(e) ? e->valuestring
		                                     : cJSON_GetObjectItem(e, "file")->valuestring;
		const char *method =
		    cJSON_IsString(e) ? NULL : cJSON_GetObjectItem(e, "method")->valuestring;
		char rel[256];
		cJSON *cs = NULL;

		if (!method) {
			snprintf(rel, sizeof(rel), "testdata/methods/%s", file);
			cs = load_json(rel);
			method = cs ? cJSON_GetObjectItem(cs, "method")->valuestring : "";
		}
		if (is_mine(method)) {
			tensors += run_case(file, block_bytes, threads, &worst);
			files++;
		}
		cJSON_Delete(cs);
	}
	printf("  %d case files, %d tensors, block %s, %d threads: worst |diff| %.3g\n", files,
	       tensors, block_bytes ? block_bytes : "default", threads, worst);
	CHECK_EQ_INT(files, 19);
	cJSON_Delete(index);
}

TEST(known_answers_default_layout)
{
	run_all_cases(NULL, 2);
}

TEST(known_answers_tiny_blocks)
{
	/* 64-byte blocks: many blocks and all 16 chunks on these tensors */
	run_all_cases("64", 2);
	run_all_cases("4", 1);
}

/* ---- DELLA keep probabilities ---- */

static void check_della_probs(const char *file)
{
	char rel[256];
	cJSON *cs;
	const cJSON *models, *kp, *tn;
	int checked = 0;

	snprintf(rel, sizeof(rel), "testdata/methods/%s", file);
	cs = load_json(rel);
	CHECK(cs != NULL);
	if (!cs)
		return;
	models = cJSON_GetObjectItem(cs, "models");
	kp = cJSON_GetObjectItem(cJSON_GetObjectItem(cs, "random"), "keep_probabilities");
	cJSON_ArrayForEach(tn, cJSON_GetObjectItem(cs, "tensors"))
	{
		struct tensor_in t;
		const cJSON *e;
		int i = 0;

		tensor_load(&t, tn->valuestring, models);
		cJSON_ArrayForEach(e, models)
		{
			const cJSON *tp = cJSON_GetObjectItem(
			    cJSON_GetObjectItem(cs, "resolved_tensor_parameters"), e->valuestring);
			double density = cJSON_GetObjectItem(tp, "density")->valuedouble;
			double eps = cJSON_GetObjectItem(tp, "epsilon")->valuedouble;
			size_t np;
			float *want = json_floats(
			    cJSON_GetObjectItem(cJSON_GetObjectItem(kp, tn->valuestring),
			                        e->valuestring),
			    &np);
			size_t cols = t.ndim == 2 ? (size_t)t.shape[1] : t.n;
			float *d = malloc(t.n * sizeof(float)), *p = malloc(t.n * sizeof(float));
			uint64_t *scratch = malloc(2 * cols * sizeof(uint64_t));

			CHECK_EQ_INT(np, t.n);
			for (size_t j = 0; j < t.n; j++)
				d[j] = t.x[i][j] - t.base[j];
			for (size_t r = 0; r < t.n / cols; r++)
				sp_della_row_probs(d + r * cols, cols, density, eps, p + r * cols,
				                   scratch);
			for (size_t j = 0; j < t.n && j < np; j++) {
				/* ranks among zero deltas are arbitrary in mergekit */
				if (d[j] == 0)
					continue;
				CHECK_MSG(fabsf(p[j] - want[j]) <= 1e-6f,
				          "%s %s %s[%zu]: p %.9g want %.9g", file, t.name,
				          e->valuestring, j, p[j], want[j]);
				checked++;
			}
			free(want);
			free(d);
			free(p);
			free(scratch);
			i++;
		}
		tensor_free(&t);
	}
	CHECK(checked > 1000);
	cJSON_Delete(cs);
}

TEST(della_keep_probabilities)
{
	check_della_probs("case_della_d0.6.json");
	check_della_probs("case_della_linear_d0.6_eps0.1.json");
}

static const float *asc_keys;

static int asc_cmp(const void *a, const void *b)
{
	size_t i = *(const size_t *)a, j = *(const size_t *)b;
	float x = fabsf(asc_keys[i]), y = fabsf(asc_keys[j]);

	if (x != y)
		return x < y ? -1 : 1;
	return (i > j) - (i < j);
}

TEST(della_long_row_ranks)
{
	/* long rows take the radix-sort path: ranks must match a reference
	 * sort by (|d|, column), duplicates included */
	const size_t cols = 3000;
	float *d = malloc(cols * sizeof(float)), *p = malloc(cols * sizeof(float));
	uint64_t *scratch = malloc(2 * cols * sizeof(uint64_t));
	size_t *idx = malloc(cols * sizeof(size_t));
	size_t bad = 0;

	for (size_t j = 0; j < cols; j++) {
		uint64_t r = smelt_rng_u64(99, j);

		d[j] = (r & 1 ? -1.0f : 1.0f) * (float)(r % 7 == 0 ? 0 : (r >> 8) % 97) *
		       (r % 3 ? 1e-3f : 1.0f);
		idx[j] = j;
	}
	asc_keys = d;
	qsort(idx, cols, sizeof(size_t), asc_cmp);
	sp_della_row_probs(d, cols, 0.5, 0.2, p, scratch);
	for (size_t q = 0; q < cols; q++) {
		float r = (float)q / (float)(cols - 1);
		float want = (float)(0.5 - 0.2) + (r * 2.0f) * 0.2f;

		bad += p[idx[q]] != want;
	}
	CHECK_EQ_INT(bad, 0);
	free(d);
	free(p);
	free(scratch);
	free(idx);
}

/* ---- random methods with smelt's RNG ---- */

/* One model alone with weight 1: output - base is the sparsified delta. */
static void check_one_model_invariants(const char *method, double density, double eps)
{
	const struct smelt_method *m = method_by_name(method);
	const char *names[] = {"model.embed_tokens.weight", "model.layers.0.mlp.up_proj.weight",
	                       "model.layers.0.self_attn.q_proj.weight"};
	cJSON *list = cJSON_CreateArray();
	double kept_total = 0, p_total = 0, var_total = 0;

	cJSON_AddItemToArray(list, cJSON_CreateString("pt_large"));
	for (size_t ti = 0; ti < 3; ti++) {
		struct tensor_in t;

		tensor_load(&t, names[ti], list);
		for (uint64_t seed = 1; seed <= 20; seed++) {
			struct job_buf jb;
			struct smelt_err err = {0};
			float *out = calloc(t.n, sizeof(float));
			double l1 = 0, l1s = 0, scale = 0;
			int rc;

			job_init(&jb, m, &t, 1, seed);
			set_model(&jb, m, 0, "weight", 1.0);
			set_model(&jb, m, 0, "density", density);
			if (eps > 0)
				set_model(&jb, m, 0, "epsilon", eps);
			rc = run(m, &jb, &t, out, 1, &err);
			CHECK_MSG(rc == 0, "%s: %s", method, err.msg);
			for (size_t j = 0; j < t.n; j++) {
				float d = t.x[0][j] - t.base[j];
				float y = out[j] - t.base[j];

				l1 += fabs((double)d);
				l1s += fabs((double)y);
				if (y == 0.0f || d == 0.0f)
					continue;
				kept_total += 1;
				/* one positive scale per draw */
				if (scale == 0)
					scale = (double)y / (double)d;
				CHECK_MSG(fabs((double)y / (double)d - scale) <= 1e-5 * scale,
				          "%s: entry %zu scale %g vs %g", method, j,
				          (double)y / (double)d, scale);
			}
			CHECK(scale > 0);
			/* L1 rescale: base + s*d rounds, so compare loosely */
			CHECK_MSG(fabs(l1s - l1) <= 1e-4 * l1, "%s: L1 %g vs %g", method, l1s, l1);
			free(out);
		}
		p_total += 20.0 * (double)t.n * density;
		var_total += 20.0 * (double)t.n * density * (1 - density);
		tensor_free(&t);
	}
	/* pt_large has no zero deltas: the kept count is a sum of Bernoullis
	 * with mean probability density (DELLA's p average to density per row) */
	CHECK_MSG(fabs(kept_total - p_total) <= 5 * sqrt(var_total) + 1, "%s: kept %g expected %g",
	          method, kept_total, p_total);
	cJSON_Delete(list);
}

TEST(random_invariants)
{
	check_one_model_invariants("dare_linear", 0.3, 0);
	check_one_model_invariants("dare_ties", 0.7, 0);
	check_one_model_invariants("della_linear", 0.5, 0.2);
	check_one_model_invariants("della", 0.4, 0.1);
}

static void check_monte_carlo(const char *file, int runs)
{
	char rel[256];
	cJSON *cs;
	const cJSON *models, *mc, *tn, *tol;
	const struct smelt_method *m;
	double atol, worst = 0;

	snprintf(rel, sizeof(rel), "testdata/methods/%s", file);
	cs = load_json(rel);
	CHECK(cs != NULL);
	if (!cs)
		return;
	m = method_by_name(cJSON_GetObjectItem(cs, "method")->valuestring);
	models = cJSON_GetObjectItem(cs, "models");
	mc = cJSON_GetObjectItem(cJSON_GetObjectItem(cs, "random"), "monte_carlo");
	tol = cJSON_GetObjectItem(cs, "tolerance");
	atol = cJSON_GetObjectItem(tol, "atol")->valuedouble;
	double mk_runs = cJSON_GetObjectItem(mc, "runs")->valuedouble;

	cJSON_ArrayForEach(tn, cJSON_GetObjectItem(cs, "tensors"))
	{
		struct tensor_in t;
		size_t n1, n2;
		float *mean_mk, *std_mk, *out;
		double *sum;

		tensor_load(&t, tn->valuestring, models);
		mean_mk = json_floats(
		    cJSON_GetObjectItem(cJSON_GetObjectItem(mc, "mean"), tn->valuestring), &n1);
		std_mk = json_floats(
		    cJSON_GetObjectItem(cJSON_GetObjectItem(mc, "std"), tn->valuestring), &n2);
		out = calloc(t.n, sizeof(float));
		sum = calloc(t.n, sizeof(double));
		for (int r = 0; r < runs; r++) {
			struct job_buf jb;
			struct smelt_err err = {0};

			job_init(&jb, m, &t, N_MODELS, 9000 + (uint64_t)r);
			job_params_from_case(&jb, m, cs);
			if (run(m, &jb, &t, out, 1, &err) != 0) {
				check_fail(__FILE__, __LINE__, "%s: %s", file, err.msg);
				break;
			}
			for (size_t j = 0; j < t.n; j++)
				sum[j] += out[j];
		}
		for (size_t j = 0; j < t.n && j < n1 && j < n2; j++) {
			double mean = sum[j] / runs, sd = std_mk[j];
			double bound = 5 * sqrt(sd * sd / runs + sd * sd / mk_runs) + atol;
			double z = fabs(mean - mean_mk[j]);

			if (sd > 0 && z / (bound) > worst)
				worst = z / bound;
			CHECK_MSG(z <= bound, "%s %s[%zu]: mean %.7g mergekit %.7g (bound %.3g)",
			          file, t.name, j, mean, mean_mk[j], bound);
		}
		free(mean_mk);
		free(std_mk);
		free(out);
		free(sum);
		tensor_free(&t);
	}
	printf("  %s: %d runs, worst |mean diff| / bound %.3f\n", file, runs, worst);
	cJSON_Delete(cs);
}

TEST(monte_carlo_against_mergekit)
{
	check_monte_carlo("case_dare_linear_d0.5.json", 300);
	check_monte_carlo("case_dare_ties_d0.5.json", 300);
	check_monte_carlo("case_della_d0.6.json", 300);
	check_monte_carlo("case_della_linear_d0.6_eps0.1.json", 300);
}

/* ---- determinism ---- */

TEST(threads_and_blocks_bit_identical)
{
	const char *files[] = {"case_ties_d0.3.json",
	                       "case_dare_ties_d0.5.json",
	                       "case_dare_linear_d0.5.json",
	                       "case_breadcrumbs.json",
	                       "case_breadcrumbs_ties.json",
	                       "case_della_d0.6.json",
	                       "case_della_linear_d0.6_eps0.1.json",
	                       "case_sce_topk0.29_k_float32.json",
	                       "case_ram.json",
	                       "case_ramplus_tl.json",
	                       "case_ties_d0.5_rescale.json"};
	const char *blocks[] = {NULL, "64", "4", "200"};
	const int threads[] = {1, 2, 3, 2};

	for (size_t f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
		char rel[256];
		cJSON *cs;
		const cJSON *models, *tn;
		const struct smelt_method *m;

		snprintf(rel, sizeof(rel), "testdata/methods/%s", files[f]);
		cs = load_json(rel);
		CHECK(cs != NULL);
		if (!cs)
			continue;
		m = method_by_name(cJSON_GetObjectItem(cs, "method")->valuestring);
		models = cJSON_GetObjectItem(cs, "models");
		cJSON_ArrayForEach(tn, cJSON_GetObjectItem(cs, "tensors"))
		{
			struct tensor_in t;
			float *ref = NULL;

			tensor_load(&t, tn->valuestring, models);
			for (size_t v = 0; v < 4; v++) {
				struct job_buf jb;
				struct smelt_err err = {0};
				float *out = calloc(t.n, sizeof(float));

				if (blocks[v])
					setenv("SMELT_BLOCK_BYTES", blocks[v], 1);
				else
					unsetenv("SMELT_BLOCK_BYTES");
				job_init(&jb, m, &t, N_MODELS, 77);
				job_params_from_case(&jb, m, cs);
				CHECK_MSG(run(m, &jb, &t, out, threads[v], &err) == 0, "%s",
				          err.msg);
				if (!ref)
					ref = out;
				else {
					CHECK_MSG(memcmp(ref, out, t.n * sizeof(float)) == 0,
					          "%s %s: layout %zu differs", files[f], t.name, v);
					free(out);
				}
			}
			unsetenv("SMELT_BLOCK_BYTES");
			free(ref);
			tensor_free(&t);
		}
		cJSON_Delete(cs);
	}
}

/* ---- synthetic tensors ---- */

/* A small in-memory problem: base and n models of shape rows x cols. */
struct synth {
	struct tensor_in t;
	float data[N_MODELS + 1][4096];
};

static void synth_init(struct synth *s, const char *name, uint64_t rows, uint64_t cols)
{
	memset(s, 0, sizeof(*s));
	s->t.name = name;
	s->t.ndim = rows ? 2 : 1;
	s->t.shape[0] = rows ? rows : cols;
	s->t.shape[1] = cols;
	s->t.n = (size_t)((rows ? rows : 1) * cols);
	s->t.base = s->data[0];
	for (int i = 0; i < N_MODELS; i++)
		s->t.x[i] = s->data[i + 1];
}

/* Delta of model i at j from a small set of magnitudes, so that many
 * elements share a magnitude; base values are arbitrary. */
static void synth_fill_ties(struct synth *s, uint64_t seed)
{
	for (size_t j = 0; j < s->t.n; j++) {
		s->t.base[j] = (float)((int)(smelt_rng_u64(seed, j) % 17) - 8) * 0.125f;
		for (int i = 0; i < N_MODELS; i++) {
			uint64_t r = smelt_rng_u64(seed + 1 + (uint64_t)i, j);
			float mag = (float)(r % 5) * 0.25f; /* 0, .25, .5, .75, 1 */

			s->t.x[i][j] = s->t.base[j] + ((r >> 8) & 1 ? mag : -mag);
		}
	}
}

/* Deltas whose magnitudes mostly share one high-16-bit radix bucket
 * (1 + m * 2^-20, 40 values of m) with repeats, plus a few zeros and
 * values in other buckets: blocks see more distinct low bits than the
 * per-block tables hold, so the threshold ties are counted in a pass. */
static void synth_fill_bucket(struct synth *s, uint64_t seed)
{
	for (size_t j = 0; j < s->t.n; j++) {
		uint64_t r = smelt_rng_u64(seed, j);
		uint64_t m = r % 50;
		float mag = m < 40 ? 1.0f + (float)m * 0x1p-20f : m < 45 ? 0.5f : m < 48 ? 2.0f : 0.0f;

		s->t.base[j] = 0.25f;
		for (int i = 0; i < N_MODELS; i++)
			s->t.x[i][j] = s->t.base[j] + ((r >> (20 + i)) & 1 ? mag : -mag);
	}
}

/* Reference ranking: |d| descending, flat index ascending. */
static const float *rank_keys;

static int rank_cmp(const void *a, const void *b)
{
	size_t i = *(const size_t *)a, j = *(const size_t *)b;
	float x = fabsf(rank_keys[i]), y = fabsf(rank_keys[j]);

	if (x != y)
		return x > y ? -1 : 1;
	return (i > j) - (i < j);
}

/* kept[j] = 1 for descending ranks [lo, hi). */
static void reference_band(const float *d, size_t n, size_t lo, size_t hi, unsigned char *kept)
{
	size_t *idx = malloc(n * sizeof(size_t));

	for (size_t j = 0; j < n; j++)
		idx[j] = j;
	rank_keys = d;
	qsort(idx, n, sizeof(size_t), rank_cmp);
	memset(kept, 0, n);
	for (size_t q = lo; q < hi && q < n; q++)
		kept[idx[q]] = 1;
	free(idx);
}

static void check_band_fill(const char *method, double density, double gamma, uint64_t rows,
                            uint64_t cols, void (*fill)(struct synth *, uint64_t))
{
	const struct smelt_method *m = method_by_name(method);
	static struct synth s;
	const char *blocks[] = {NULL, "4", "64", "100"};
	unsigned char kept[4096];
	float d[4096], out[4096];
	size_t n, k, lo, hi;

	synth_init(&s, "synthetic.weight", rows, cols);
	fill(&s, 5 + rows);
	n = s.t.n;
	for (size_t j = 0; j < n; j++)
		d[j] = s.t.x[0][j] - s.t.base[j];
	k = (size_t)floor(density * (double)n);
	if (gamma < 0) {
		lo = 0;
		hi = k;
	} else {
		long n_top = (long)floor(gamma * (double)n);
		long n_bot = (long)n - (long)k - n_top;

		if (n_bot < 0) {
			n_top += n_bot;
			n_bot = 0;
		}
		lo = (size_t)n_top;
		hi = n - (size_t)n_bot;
	}
	reference_band(d, n, lo, hi, kept);
	for (size_t v = 0; v < 4; v++) {
		struct job_buf jb;
		struct smelt_err err = {0};
		size_t bad = 0;

		if (blocks[v])
			setenv("SMELT_BLOCK_BYTES", blocks[v], 1);
		else
			unsetenv("SMELT_BLOCK_BYTES");
		job_init(&jb, m, &s.t, 1, 1);
		set_model(&jb, m, 0, "weight", 1.0);
		set_model(&jb, m, 0, "density", density);
		if (gamma >= 0)
			set_model(&jb, m, 0, "gamma", gamma);
		CHECK_MSG(run(m, &jb, &s.t, out, 1 + (int)(v & 1), &err) == 0, "%s", err.msg);
		for (size_t j = 0; j < n; j++) {
			float want = s.t.base[j] + (kept[j] ? d[j] : 0.0f);

			bad += out[j] != want;
		}
		CHECK_MSG(bad == 0,
		          "%s density %g gamma %g %llux%llu block %s: %zu elements differ", method,
		          density, gamma, (unsigned long long)rows, (unsigned long long)cols,
		          blocks[v] ? blocks[v] : "default", bad);
	}
	unsetenv("SMELT_BLOCK_BYTES");
}

static void check_band(const char *method, double density, double gamma, uint64_t rows,
                       uint64_t cols)
{
	check_band_fill(method, density, gamma, rows, cols, synth_fill_ties);
}

TEST(selection_ties_inside_one_bucket)
{
	/* ties in a crowded bucket: tables overflow, the tie pass counts;
	 * one-row blocks put the cut inside a block (the walk) */
	check_band_fill("ties", 0.3, -1, 40, 24, synth_fill_bucket);
	check_band_fill("ties", 0.5, -1, 64, 64, synth_fill_bucket);
	check_band_fill("ties", 0.77, -1, 0, 1000, synth_fill_bucket);
	check_band_fill("breadcrumbs", 0.6, 0.2, 40, 24, synth_fill_bucket);
	check_band_fill("breadcrumbs_ties", 0.4, 0.3, 50, 8, synth_fill_bucket);
}

TEST(selection_tie_rule)
{
	/* ties: exactly k kept, equal magnitudes by flat index */
	check_band("ties", 0.3, -1, 40, 24);
	check_band("ties", 0.55, -1, 0, 999);
	check_band("ties", 0.01, -1, 64, 64);
	check_band("ties", 0.999, -1, 13, 7);
	/* breadcrumbs bands */
	check_band("breadcrumbs", 0.6, 0.05, 40, 24);
	check_band("breadcrumbs", 0.9, 0.2, 50, 8);
	check_band("breadcrumbs", 0.3, 0.0, 16, 60);
	check_band("breadcrumbs", 0.5, 0.1, 0, 7); /* floor(gamma*n) = 0 */
}

TEST(selection_random_magnitudes)
{
	/* distinct magnitudes spread over many exponents: exercises all radix levels */
	static struct synth s;
	const struct smelt_method *m = method_by_name("ties");
	unsigned char kept[4096];
	float d[4096], out[4096];

	synth_init(&s, "wide.weight", 64, 64);
	for (size_t j = 0; j < s.t.n; j++) {
		double u = smelt_rng_uniform(42, j);

		s.t.base[j] = 0.5f;
		s.t.x[0][j] = 0.5f + (float)((u - 0.5) * pow(10.0, (double)(j % 9) - 6.0));
		d[j] = s.t.x[0][j] - s.t.base[j];
	}
	for (int step = 1; step < 20; step++) {
		double density = step / 20.0;
		size_t k = (size_t)floor(density * (double)s.t.n);
		struct job_buf jb;
		struct smelt_err err = {0};
		size_t bad = 0;

		reference_band(d, s.t.n, 0, k, kept);
		setenv("SMELT_BLOCK_BYTES", step & 1 ? "256" : "1000", 1);
		job_init(&jb, m, &s.t, 1, 1);
		set_model(&jb, m, 0, "weight", 1.0);
		set_model(&jb, m, 0, "density", density);
		CHECK(run(m, &jb, &s.t, out, 2, &err) == 0);
		for (size_t j = 0; j < s.t.n; j++)
			bad += out[j] != s.t.base[j] + (kept[j] ? d[j] : 0.0f);
		CHECK_MSG(bad == 0, "density %g: %zu differ", density, bad);
	}
	unsetenv("SMELT_BLOCK_BYTES");
}

/* Reference GTA for the deterministic sparsifiers on a synthetic problem:
 * trimmed deltas from reference_band(), L1 rescale, the TIES election or
 * the plain sum, in f32 and model order like mergekit. */
struct ref_params {
	double w[N_MODELS], density[N_MODELS], gamma[N_MODELS];
	double lambda;
	bool normalize, rescale, consensus, outliers;
};

static void reference_gta(const struct synth *s, const struct ref_params *rp, float *out)
{
	size_t n = s->t.n;
	static float e[N_MODELS][4096], d[4096];
	static unsigned char kept[4096];

	for (int i = 0; i < N_MODELS; i++) {
		double l1 = 0, l1k = 0;
		float scale = 1.0f;
		size_t k = (size_t)floor(rp->density[i] * (double)n), lo = 0, hi = k;

		for (size_t j = 0; j < n; j++)
			d[j] = s->t.x[i][j] - s->t.base[j];
		if (rp->outliers) {
			long n_top = (long)floor(rp->gamma[i] * (double)n);
			long n_bot = (long)n - (long)k - n_top;

			if (n_bot < 0) {
				n_top += n_bot;
				n_bot = 0;
			}
			lo = (size_t)n_top;
			hi = n - (size_t)n_bot;
		}
		if (rp->density[i] >= 1) {
			lo = 0;
			hi = n;
		}
		reference_band(d, n, lo, hi, kept);
		for (size_t j = 0; j < n; j++) {
			l1 += fabs((double)d[j]);
			l1k += kept[j] ? fabs((double)d[j]) : 0;
		}
		if (rp->rescale && rp->density[i] < 1 && l1 >= 1e-7 && l1k >= 1e-7)
			scale = (float)l1 / (float)l1k;
		for (size_t j = 0; j < n; j++)
			e[i][j] = ((kept[j] ? d[j] : 0.0f) * scale) * (float)rp->w[i];
	}
	for (size_t j = 0; j < n; j++) {
		float vote = 0, mixed = 0, div = 0;

		for (int i = 0; i < N_MODELS; i++)
			vote += e[i][j];
		for (int i = 0; i < N_MODELS; i++) {
			bool agree = !rp->consensus || (vote >= 0 ? e[i][j] > 0 : e[i][j] < 0);

			if (agree) {
				mixed += e[i][j];
				div += (float)rp->w[i];
			}
		}
		if (rp->consensus ? div == 0 : fabsf(div) < 1e-8f)
			div = 1;
		if (rp->normalize)
			mixed /= div;
		out[j] = s->t.base[j] + mixed * (float)rp->lambda;
	}
}

TEST(deterministic_methods_match_reference)
{
	/* random parameters (mixed densities incl. >= 1, negative weights,
	 * rescale and normalize on and off) on tensors full of equal magnitudes */
	static struct synth s;
	const char *methods[] = {"ties", "breadcrumbs", "breadcrumbs_ties"};
	const char *blocks[] = {NULL, "4", "96", "1000"};
	float want[4096], got[4096];
	int runs = 0;

	for (uint64_t trial = 0; trial < 36; trial++) {
		const char *method = methods[trial % 3];
		const struct smelt_method *m = method_by_name(method);
		struct ref_params rp = {0};
		struct job_buf jb;
		struct smelt_err err = {0};
		uint64_t rows = 1 + smelt_rng_u64(500, trial) % 40;
		uint64_t cols = 1 + smelt_rng_u64(501, trial) % 60;
		size_t bad = 0;

		synth_init(&s, "ref.weight", rows, cols);
		synth_fill_ties(&s, 600 + trial);
		rp.consensus = strcmp(method, "breadcrumbs") != 0;
		rp.outliers = strcmp(method, "ties") != 0;
		rp.lambda = 0.5 + smelt_rng_uniform(502, trial);
		rp.normalize = trial & 4;
		rp.rescale = trial & 8;
		job_init(&jb, m, &s.t, N_MODELS, 1);
		for (int i = 0; i < N_MODELS; i++) {
			uint64_t c = trial * 8 + (uint64_t)i;

			rp.w[i] = smelt_rng_uniform(503, c) * 1.5 - 0.25;
			rp.density[i] = smelt_rng_u64(504, c) % 6 == 0
			                    ? 1.0
			                    : 0.1 + 0.85 * smelt_rng_uniform(505, c);
			rp.gamma[i] = smelt_rng_uniform(506, c) * 0.2;
			if (!rp.outliers && floor(rp.density[i] * (double)s.t.n) < 1)
				rp.density[i] = 1.0;
			set_model(&jb, m, i, "weight", rp.w[i]);
			set_model(&jb, m, i, "density", rp.density[i]);
			if (rp.outliers)
				set_model(&jb, m, i, "gamma", rp.gamma[i]);
		}
		set_global(&jb, m, "lambda", rp.lambda);
		set_global(&jb, m, "normalize", rp.normalize);
		set_global(&jb, m, "rescale", rp.rescale);
		reference_gta(&s, &rp, want);
		if (blocks[trial % 4])
			setenv("SMELT_BLOCK_BYTES", blocks[trial % 4], 1);
		else
			unsetenv("SMELT_BLOCK_BYTES");
		CHECK_MSG(run(m, &jb, &s.t, got, 1 + (int)(trial % 2), &err) == 0, "%s", err.msg);
		for (size_t j = 0; j < s.t.n; j++)
			bad += fabsf(got[j] - want[j]) > 1e-6f + 1e-6f * fabsf(want[j]);
		CHECK_MSG(bad == 0, "trial %llu %s %llux%llu: %zu elements differ",
		          (unsigned long long)trial, method, (unsigned long long)rows,
		          (unsigned long long)cols, bad);
		runs++;
	}
	unsetenv("SMELT_BLOCK_BYTES");
	CHECK_EQ_INT(runs, 36);
}

/* ---- edge cases and errors ---- */

TEST(ties_density_keeping_nothing_is_an_error)
{
	const struct smelt_method *m = method_by_name("ties");
	static struct synth s;
	struct job_buf jb;
	struct smelt_err err = {0};
	float out[12];

	synth_init(&s, "model.layers.0.input_layernorm.weight", 0, 12);
	synth_fill_ties(&s, 3);
	job_init(&jb, m, &s.t, 2, 1);
	set_model(&jb, m, 0, "weight", 1.0);
	set_model(&jb, m, 1, "weight", 1.0);
	set_model(&jb, m, 1, "density", 0.001);
	CHECK_EQ_INT(run(m, &jb, &s.t, out, 1, &err), SMELT_EINVAL);
	CHECK_STR_CONTAINS(err.msg, "model.layers.0.input_layernorm.weight");
	CHECK_STR_CONTAINS(err.msg, "model 2");
	CHECK_STR_CONTAINS(err.msg, "density 0.001 keeps 0 of 12 elements");
	/* one element kept is fine */
	set_model(&jb, m, 1, "density", 1.0 / 12.0);
	CHECK_EQ_INT(run(m, &jb, &s.t, out, 1, &err), 0);
}

TEST(della_checks_and_edges)
{
	const struct smelt_method *m = method_by_name("della_linear");
	static struct synth s;
	struct job_buf jb;
	struct smelt_err err = {0};
	float out[4096];

	synth_init(&s, "model.layers.3.mlp.down_proj.weight", 20, 30);
	synth_fill_ties(&s, 11);
	job_init(&jb, m, &s.t, 1, 1);
	set_model(&jb, m, 0, "weight", 1.0);
	set_model(&jb, m, 0, "density", 0.2);
	set_model(&jb, m, 0, "epsilon", 0.3);
	CHECK_EQ_INT(run(m, &jb, &s.t, out, 1, &err), SMELT_EINVAL);
	CHECK_STR_CONTAINS(err.msg, "epsilon 0.3 with density 0.2 puts keep probabilities outside "
	                            "(0,1): need density-epsilon > 0 and density+epsilon < 1");
	CHECK_STR_CONTAINS(err.msg, "model.layers.3.mlp.down_proj.weight");
	set_model(&jb, m, 0, "density", 0.9);
	set_model(&jb, m, 0, "epsilon", 0.1);
	CHECK_EQ_INT(run(m, &jb, &s.t, out, 1, &err), SMELT_EINVAL);

	/* density >= 1: delta untouched (whatever epsilon) */
	set_model(&jb, m, 0, "density", 1.0);
	set_model(&jb, m, 0, "epsilon", 0.5);
	CHECK_EQ_INT(run(m, &jb, &s.t, out, 1, &err), 0);
	for (size_t j = 0; j < s.t.n; j++)
		CHECK(out[j] == s.t.base[j] + (s.t.x[0][j] - s.t.base[j]));
	/* density <= 0: the delta is dropped */
	set_model(&jb, m, 0, "density", 0.0);
	CHECK_EQ_INT(run(m, &jb, &s.t, out, 1, &err), 0);
	for (size_t j = 0; j < s.t.n; j++)
		CHECK(out[j] == s.t.base[j]);
}

TEST(della_single_column_rows)
{
	/* rows of one element: mergekit gets 0/0 probabilities; smelt uses
	 * p = density, so about density of the entries survive */
	const struct smelt_method *m = method_by_name("della_linear");
	static struct synth s;
	float out[4096], p;
	uint64_t scratch[2];
	size_t kept = 0;

	synth_init(&s, "score.weight", 4000, 1);
	for (size_t j = 0; j < s.t.n; j++) {
		s.t.base[j] = 1.0f;
		s.t.x[0][j] = 1.5f;
	}
	sp_della_row_probs(&(float){0.5f}, 1, 0.4, 0.1, &p, scratch);
	CHECK(p == 0.4f);
	for (uint64_t seed = 1; seed <= 3; seed++) {
		struct job_buf jb;
		struct smelt_err err = {0};

		job_init(&jb, m, &s.t, 1, seed);
		set_model(&jb, m, 0, "weight", 1.0);
		set_model(&jb, m, 0, "density", 0.4);
		set_model(&jb, m, 0, "epsilon", 0.1);
		set_global(&jb, m, "rescale", 0);
		CHECK_EQ_INT(run(m, &jb, &s.t, out, 2, &err), 0);
		for (size_t j = 0; j < s.t.n; j++) {
			CHECK(out[j] == 1.0f || out[j] == 1.5f);
			kept += out[j] == 1.5f;
		}
	}
	CHECK_MSG(fabs((double)kept - 0.4 * 12000) < 5 * sqrt(12000 * 0.24), "kept %zu", kept);
}

TEST(breadcrumbs_small_gamma_keeps_the_delta)
{
	/* mergekit drops the whole delta when floor(gamma*n) = 0; smelt keeps
	 * the floor(density*n) largest entries */
	const struct smelt_method *m = method_by_name("breadcrumbs");
	static struct synth s;
	struct job_buf jb;
	struct smelt_err err = {0};
	float out[4096];
	size_t nz = 0;

	synth_init(&s, "model.norm.weight", 0, 7);
	for (size_t j = 0; j < 7; j++) {
		s.t.base[j] = 1.0f;
		s.t.x[0][j] = 1.0f + 0.125f * (float)(j + 1);
	}
	job_init(&jb, m, &s.t, 1, 1);
	set_model(&jb, m, 0, "weight", 1.0);
	set_model(&jb, m, 0, "density", 0.5);
	set_model(&jb, m, 0, "gamma", 0.1);
	CHECK_EQ_INT(run(m, &jb, &s.t, out, 1, &err), 0);
	for (size_t j = 0; j < 7; j++) {
		nz += out[j] != 1.0f;
		CHECK(j < 4 ? out[j] == 1.0f : out[j] == s.t.x[0][j]);
	}
	CHECK_EQ_INT(nz, 3);
	/* gamma 0 on a 960-element tensor: floor(0.4 * 960) = 384 kept */
	synth_init(&s, "model.layers.0.mlp.up_proj.weight", 40, 24);
	synth_fill_ties(&s, 8);
	for (size_t j = 0; j < s.t.n; j++)
		s.t.x[0][j] = s.t.base[j] + 0.001f * (float)(j + 1);
	set_model(&jb, m, 0, "density", 0.4);
	set_model(&jb, m, 0, "gamma", 0.0);
	job_init(&jb, m, &s.t, 1, 1);
	set_model(&jb, m, 0, "weight", 1.0);
	set_model(&jb, m, 0, "density", 0.4);
	set_model(&jb, m, 0, "gamma", 0.0);
	CHECK_EQ_INT(run(m, &jb, &s.t, out, 1, &err), 0);
	nz = 0;
	for (size_t j = 0; j < s.t.n; j++)
		nz += out[j] != s.t.base[j];
	CHECK_EQ_INT(nz, 384);
}

/* ---- properties ---- */

static void run_synth(const char *method, struct synth *s, int n_models, const double *w,
                      double density, double lambda, float *out)
{
	const struct smelt_method *m = method_by_name(method);
	struct job_buf jb;
	struct smelt_err err = {0};

	job_init(&jb, m, &s->t, n_models, 3);
	for (int i = 0; i < n_models; i++) {
		if (smelt_method_param(m, "weight") >= 0)
			set_model(&jb, m, i, "weight", w[i]);
		if (smelt_method_param(m, "density") >= 0)
			set_model(&jb, m, i, "density", density);
	}
	if (smelt_method_param(m, "lambda") >= 0)
		set_global(&jb, m, "lambda", lambda);
	CHECK_MSG(run(m, &jb, &s->t, out, 2, &err) == 0, "%s: %s", method, err.msg);
}

TEST(self_merge_is_identity)
{
	static struct synth s;
	const char *methods[] = {
	    "ties",  "dare_ties",    "dare_linear", "breadcrumbs", "breadcrumbs_ties",
	    "della", "della_linear", "sce",         "ram",         "ramplus_tl"};
	const double w[N_MODELS] = {0.2, 0.3, 0.5};
	float out[4096];

	synth_init(&s, "same.weight", 30, 40);
	synth_fill_ties(&s, 21);
	for (int i = 1; i < N_MODELS; i++)
		memcpy(s.t.x[i], s.t.x[0], s.t.n * sizeof(float));
	for (size_t k = 0; k < sizeof(methods) / sizeof(methods[0]); k++) {
		size_t bad = 0;

		run_synth(methods[k], &s, N_MODELS, w, 1.0, 1.0, out);
		for (size_t j = 0; j < s.t.n; j++) {
			/* non-normalizing variants give b + (sum w) d = x as sum w = 1 */
			float want = s.t.x[0][j];

			bad += fabsf(out[j] - want) > 1e-6f;
		}
		CHECK_MSG(bad == 0, "%s: %zu elements differ from the model", methods[k], bad);
	}
}

TEST(lambda_zero_gives_base)
{
	static struct synth s;
	const char *methods[] = {"ties", "dare_ties", "dare_linear", "breadcrumbs", "della_linear"};
	const double w[N_MODELS] = {0.7, -0.4, 1.3};
	float out[4096];

	synth_init(&s, "l0.weight", 20, 20);
	synth_fill_ties(&s, 4);
	for (size_t k = 0; k < sizeof(methods) / sizeof(methods[0]); k++) {
		run_synth(methods[k], &s, N_MODELS, w, 0.5, 0.0, out);
		for (size_t j = 0; j < s.t.n; j++)
			CHECK_MSG(out[j] == s.t.base[j], "%s[%zu]", methods[k], j);
	}
}

TEST(ties_without_conflicts_is_task_arithmetic)
{
	static struct synth s;
	const double w[N_MODELS] = {0.5, 0.25, 1.0};
	float out[4096];

	synth_init(&s, "agree.weight", 10, 30);
	for (size_t j = 0; j < s.t.n; j++) {
		float sign = j % 3 ? 1.0f : -1.0f;

		s.t.base[j] = 0.25f * (float)(j % 7);
		for (int i = 0; i < N_MODELS; i++)
			s.t.x[i][j] =
			    s.t.base[j] + sign * 0.125f * (float)(1 + (j + (size_t)i) % 5);
	}
	run_synth("ties", &s, N_MODELS, w, 1.0, 1.0, out);
	for (size_t j = 0; j < s.t.n; j++) {
		double sum = 0;

		for (int i = 0; i < N_MODELS; i++)
			sum += w[i] * (double)(s.t.x[i][j] - s.t.base[j]);
		CHECK_NEAR(out[j], s.t.base[j] + sum / 1.75, 1e-6);
	}
}

TEST(sce_identical_models)
{
	/* no variance anywhere: select_topk < 1 keeps no position -> base */
	const struct smelt_method *m = method_by_name("sce");
	static struct synth s;
	struct job_buf jb;
	struct smelt_err err = {0};
	float out[4096];

	synth_init(&s, "sce.weight", 12, 12);
	synth_fill_ties(&s, 9);
	for (int i = 1; i < N_MODELS; i++)
		memcpy(s.t.x[i], s.t.x[0], s.t.n * sizeof(float));
	job_init(&jb, m, &s.t, N_MODELS, 1);
	set_global(&jb, m, "select_topk", 0.5);
	CHECK_EQ_INT(run(m, &jb, &s.t, out, 2, &err), 0);
	for (size_t j = 0; j < s.t.n; j++)
		CHECK(out[j] == s.t.base[j]);
}

TEST(sce_small_deltas_use_uniform_weights)
{
	/* mean squares ~1e-8: mergekit 0.1.4 falls back to equal weights, so
	 * where all models agree the result is the plain mean of the deltas */
	const struct smelt_method *m = method_by_name("sce");
	static struct synth s;
	struct job_buf jb;
	struct smelt_err err = {0};
	float out[4096];
	const float scale[N_MODELS] = {1e-4f, 3e-4f, 2e-4f};

	synth_init(&s, "small.weight", 8, 16);
	for (size_t j = 0; j < s.t.n; j++) {
		s.t.base[j] = 0.0f;
		for (int i = 0; i < N_MODELS; i++)
			s.t.x[i][j] = scale[i] * (float)(1 + j % 3);
	}
	job_init(&jb, m, &s.t, N_MODELS, 1);
	CHECK_EQ_INT(run(m, &jb, &s.t, out, 2, &err), 0);
	for (size_t j = 0; j < s.t.n; j++) {
		double mean = 0;

		for (int i = 0; i < N_MODELS; i++)
			mean += (double)s.t.x[i][j] / N_MODELS;
		CHECK_NEAR(out[j], mean, 1e-9);
	}
	/* select_topk <= 0 keeps no position: the base */
	set_global(&jb, m, "select_topk", -0.5);
	CHECK_EQ_INT(run(m, &jb, &s.t, out, 2, &err), 0);
	for (size_t j = 0; j < s.t.n; j++)
		CHECK(out[j] == s.t.base[j]);
}

TEST(empty_tensors)
{
	static struct synth s;
	float out[1];

	for (size_t k = 0; k < sizeof(my_methods) / sizeof(my_methods[0]); k++) {
		const struct smelt_method *m = method_by_name(my_methods[k]);
		struct job_buf jb;
		struct smelt_err err = {0};

		synth_init(&s, "empty.weight", 0, 8);
		s.t.shape[0] = 0;
		s.t.n = 0;
		job_init(&jb, m, &s.t, N_MODELS, 1);
		for (int i = 0; i < N_MODELS; i++) {
			if (smelt_method_param(m, "weight") >= 0)
				set_model(&jb, m, i, "weight", 1.0);
			if (smelt_method_param(m, "density") >= 0)
				set_model(&jb, m, i, "density", 0.5);
		}
		if (smelt_method_param(m, "select_topk") >= 0)
			set_global(&jb, m, "select_topk", 0.5);
		CHECK_MSG(run(m, &jb, &s.t, out, 2, &err) == 0, "%s: %s", m->name, err.msg);
	}
}

TEST(metadata)
{
	for (size_t i = 0; i < sizeof(my_method_list) / sizeof(my_method_list[0]); i++) {
		const struct smelt_method *m = my_method_list[i];

		CHECK_STR_CONTAINS(my_methods[i], m->name);
		CHECK(m->summary && m->help && m->paper);
		CHECK(m->base == SMELT_BASE_REQUIRED);
		CHECK(strchr(m->summary, '\n') == NULL);
		for (int p = 0; p < m->n_params; p++) {
			CHECK(m->params[p].help != NULL);
			if (strcmp(m->params[p].name, "int8_mask") == 0)
				CHECK(m->params[p].unused);
		}
	}
	CHECK(smelt_method_find("ties") == &smelt_method_ties);
	CHECK(smelt_method_param(&smelt_method_dare_ties, "normalize") >= 0);
	CHECK(smelt_method_ties.params[smelt_method_param(&smelt_method_ties, "normalize")].def ==
	      1);
	CHECK(
	    smelt_method_dare_ties.params[smelt_method_param(&smelt_method_dare_ties, "normalize")]
	        .def == 0);
	CHECK(smelt_method_della.params[smelt_method_param(&smelt_method_della, "epsilon")].def ==
	      0.15);
	CHECK(smelt_method_param(&smelt_method_sce, "weight") < 0);
	CHECK(smelt_method_param(&smelt_method_sce, "lambda") < 0);
}

int main(void)
{
	inputs = load_json("testdata/methods/inputs.json");
	if (!inputs) {
		fprintf(stderr, "cannot read testdata/methods/inputs.json\n");
		return 1;
	}
	RUN(known_answers_default_layout);
	RUN(known_answers_tiny_blocks);
	RUN(della_keep_probabilities);
	RUN(della_long_row_ranks);
	RUN(random_invariants);
	RUN(monte_carlo_against_mergekit);
	RUN(threads_and_blocks_bit_identical);
	RUN(selection_tie_rule);
	RUN(selection_ties_inside_one_bucket);
	RUN(selection_random_magnitudes);
	RUN(deterministic_methods_match_reference);
	RUN(ties_density_keeping_nothing_is_an_error);
	RUN(della_checks_and_edges);
	RUN(della_single_column_rows);
	RUN(breadcrumbs_small_gamma_keeps_the_delta);
	RUN(self_merge_is_identity);
	RUN(lambda_zero_gives_base);
	RUN(ties_without_conflicts_is_task_arithmetic);
	RUN(sce_identical_models);
	RUN(sce_small_deltas_use_uniform_weights);
	RUN(empty_tensors);
	RUN(metadata);
	cJSON_Delete(inputs);
	return check_summary();
}

/*
 * test_methods_geom.c: the weighted and geometric methods (linear,
 * task_arithmetic, passthrough, slerp, nuslerp, multislerp, karcher,
 * model_stock, nearswap, arcee_fusion).
 *
 * Known answers: every case of these methods in
 * $SMELT_SHARED/testdata/methods (mergekit's own outputs) must be matched
 * within the case tolerance and 1e-5 absolute, and bit-identically for 1 and
 * 2 threads and several block sizes (SMELT_BLOCK_BYTES). Then properties:
 * identities, endpoints, model-count and parameter checks, and arcee_fusion's
 * threshold rule and determinism.
 */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "methods/geom.h"
#include "smelt/method.h"
#include "smelt/rng.h"

#define MAXM 8

/* Direct references: they also make sure the linker takes these methods'
 * objects from the engine archive (the registry only refers to them weakly). */
extern const struct smelt_method smelt_method_linear, smelt_method_task_arithmetic,
    smelt_method_passthrough, smelt_method_slerp, smelt_method_nuslerp, smelt_method_multislerp,
    smelt_method_karcher, smelt_method_model_stock, smelt_method_nearswap,
    smelt_method_arcee_fusion;

static const struct smelt_method *const my_tables[] = {
    &smelt_method_linear,      &smelt_method_task_arithmetic, &smelt_method_passthrough,
    &smelt_method_slerp,       &smelt_method_nuslerp,         &smelt_method_multislerp,
    &smelt_method_karcher,     &smelt_method_model_stock,     &smelt_method_nearswap,
    &smelt_method_arcee_fusion};

static const char *const my_methods[] = {
    "linear",     "task_arithmetic", "passthrough", "slerp",    "nuslerp",
    "multislerp", "karcher",         "model_stock", "nearswap", "arcee_fusion"};

/* ---- small helpers ---- */

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long n;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
		buf = malloc((size_t)n + 1);
		if (buf && fread(buf, 1, (size_t)n, f) == (size_t)n) {
			buf[n] = '\0';
		} else {
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
	cJSON *j;

	if (!text) {
		check_fail(__FILE__, __LINE__, "cannot read %s", path);
		return NULL;
	}
	j = cJSON_Parse(text);
	free(text);
	if (!j)
		check_fail(__FILE__, __LINE__, "cannot parse %s", path);
	return j;
}

/* A flat f32 array from a JSON list (values are float32 in shortest form). */
static float *floats_of(const cJSON *list, size_t *n)
{
	size_t len = (size_t)cJSON_GetArraySize(list), i = 0;
	float *v = malloc((len ? len : 1) * sizeof(float));
	const cJSON *it;

	cJSON_ArrayForEach(it, list) v[i++] = (float)it->valuedouble;
	*n = len;
	return v;
}

static void set_block_bytes(const char *v)
{
	if (v)
		setenv("SMELT_BLOCK_BYTES", v, 1);
	else
		unsetenv("SMELT_BLOCK_BYTES");
}

/* Defaults from the method's table, for global and per-model values. */
static void default_params(const struct smelt_method *m, int n_models, double *pg, double *pm)
{
	for (int p = 0; p < m->n_params; p++) {
		pg[p] = m->params[p].def;
		for (int i = 0; i < n_models; i++)
			pm[i * m->n_params + p] = m->params[p].def;
	}
}

static void init_job(struct smelt_tensor_job *job, const struct smelt_method *m, const char *name,
                     int ndim, const uint64_t *shape, int n_models, const double *pg,
                     const double *pm, const uint64_t *keys)
{
	memset(job, 0, sizeof(*job));
	job->name = name;
	job->ndim = ndim;
	for (int d = 0; d < ndim; d++)
		job->shape[d] = shape[d];
	job->layer = -1;
	job->n_models = n_models;
	job->n_params = m->n_params;
	job->pg = pg;
	job->pm = pm;
	job->rng_key = keys;
}

/* Run and require success. */
static int run(const struct smelt_method *m, struct smelt_tensor_job *job, const float *base,
               const float *const *x, float *out, int threads, struct smelt_err *err)
{
	smelt_err_clear(err);
	return smelt_run_job_mem(m, job, base, x, out, threads, err);
}

/* ---- known-answer cases ---- */

struct kat_inputs {
	cJSON *root;
	cJSON *models; /* name -> {tensor -> {shape, data}} */
};

static bool is_mine(const char *method)
{
	for (size_t i = 0; i < sizeof(my_methods) / sizeof(my_methods[0]); i++)
		if (strcmp(method, my_methods[i]) == 0)
			return true;
	return false;
}

static void fill_params(const struct smelt_method *m, const cJSON *cs, const cJSON *models,
                        double *pg, double *pm)
{
	const cJSON *rp = cJSON_GetObjectItem(cs, "resolved_parameters");
	const cJSON *rtp = cJSON_GetObjectItem(cs, "resolved_tensor_parameters");
	const cJSON *it;
	int i = 0;

	cJSON_ArrayForEach(it, rp)
	{
		int p = smelt_method_param(m, it->string);

		CHECK_MSG(p >= 0, "%s: unknown parameter %s", m->name, it->string);
		if (p >= 0)
			pg[p] = cJSON_IsBool(it) ? cJSON_IsTrue(it) : it->valuedouble;
	}
	cJSON_ArrayForEach(it, models)
	{
		const cJSON *mp = cJSON_GetObjectItem(rtp, it->valuestring), *q;

		cJSON_ArrayForEach(q, mp)
		{
			int p = smelt_method_param(m, q->string);

			CHECK_MSG(p >= 0, "%s: unknown parameter %s", m->name, q->string);
			if (p >= 0)
				pm[i * m->n_params + p] =
				    cJSON_IsBool(q) ? cJSON_IsTrue(q) : q->valuedouble;
		}
		i++;
	}
}

struct layout {
	const char *block_bytes;
	int threads;
};

static const struct layout layouts[] = {
    {NULL, 1}, {NULL, 2}, {"64", 2}, {"100", 1}, {"36", 2}, {"4", 2},
};

/* One tensor of one case: every layout must give the same bits, the first
 * must match mergekit's expected values. Returns the worst error. */
static double kat_tensor(const struct smelt_method *m, const cJSON *cs, const cJSON *inputs,
                         const char *tname, double atol, double rtol)
{
	const cJSON *exp_t = cJSON_GetObjectItem(cJSON_GetObjectItem(cs, "expected"), tname);
	const cJSON *models = cJSON_GetObjectItem(cs, "models");
	const cJSON *bm = cJSON_GetObjectItem(cs, "base_model");
	const cJSON *shape_j = cJSON_GetObjectItem(exp_t, "shape"), *it;
	int n_models = cJSON_GetArraySize(models), ndim = 0;
	uint64_t shape[SMELT_MAX_DIMS], keys[MAXM] = {0};
	double pg[SMELT_MAX_PARAMS], pm[MAXM * SMELT_MAX_PARAMS], worst = 0;
	float *x[MAXM] = {0}, *base = NULL, *expected, *ref = NULL, *out;
	size_t n, k;
	struct smelt_tensor_job job;
	struct smelt_err err;
	int i = 0;

	cJSON_ArrayForEach(it, shape_j) shape[ndim++] = (uint64_t)it->valuedouble;
	expected = floats_of(cJSON_GetObjectItem(exp_t, "data"), &n);
	cJSON_ArrayForEach(it, models)
	{
		const cJSON *t =
		    cJSON_GetObjectItem(cJSON_GetObjectItem(inputs, it->valuestring), tname);

		x[i++] = floats_of(cJSON_GetObjectItem(t, "data"), &k);
		CHECK_EQ_INT(k, n);
	}
	if (cJSON_IsString(bm)) {
		const cJSON *t =
		    cJSON_GetObjectItem(cJSON_GetObjectItem(inputs, bm->valuestring), tname);

		base = floats_of(cJSON_GetObjectItem(t, "data"), &k);
		CHECK_EQ_INT(k, n);
	}
	default_params(m, n_models, pg, pm);
	fill_params(m, cs, models, pg, pm);
	out = malloc(n * sizeof(float));
	for (size_t l = 0; l < sizeof(layouts) / sizeof(layouts[0]); l++) {
		set_block_bytes(layouts[l].block_bytes);
		init_job(&job, m, tname, ndim, shape, n_models, pg, pm, keys);
		memset(out, 0xff, n * sizeof(float));
		if (run(m, &job, base, (const float *const *)x, out, layouts[l].threads, &err)) {
			check_fail(__FILE__, __LINE__, "%s %s: %s", m->name, tname, err.msg);
			break;
		}
		if (!ref) {
			ref = malloc(n * sizeof(float));
			memcpy(ref, out, n * sizeof(float));
			for (size_t e = 0; e < n; e++) {
				double d = fabs((double)out[e] - (double)expected[e]);

				if (d > worst)
					worst = d;
				if (!(d <= atol + rtol * fabs(expected[e]) && d <= 1e-5)) {
					check_fail(__FILE__, __LINE__,
					           "%s %s[%zu]: got %.9g expected %.9g", m->name,
					           tname, e, out[e], expected[e]);
					break;
				}
			}
		} else {
			CHECK_MSG(memcmp(ref, out, n * sizeof(float)) == 0,
			          "%s %s: block bytes %s threads %d differ from the first run",
			          m->name, tname,
			          layouts[l].block_bytes ? layouts[l].block_bytes : "-",
			          layouts[l].threads);
		}
	}
	set_block_bytes(NULL);
	for (i = 0; i < n_models; i++)
		free(x[i]);
	free(base);
	free(expected);
	free(ref);
	free(out);
	return worst;
}

TEST(known_answers)
{
	cJSON *index = load_json("testdata/methods/index.json");
	cJSON *in = load_json("testdata/methods/inputs.json");
	const cJSON *c;
	int cases = 0;

	if (!index || !in)
		goto out;
	cJSON_ArrayForEach(c, cJSON_GetObjectItem(index, "cases"))
	{
		const char *method = cJSON_GetObjectItem(c, "method")->valuestring;
		const struct smelt_method *m;
		char rel[512];
		cJSON *cs;
		const cJSON *t, *tol;
		double worst = 0;

		if (!is_mine(method))
			continue;
		m = smelt_method_find(method);
		CHECK_MSG(m != NULL, "method %s is not registered", method);
		if (!m)
			continue;
		snprintf(rel, sizeof(rel), "testdata/methods/%s",
		         cJSON_GetObjectItem(c, "file")->valuestring);
		cs = load_json(rel);
		if (!cs)
			continue;
		tol = cJSON_GetObjectItem(cs, "tolerance");
		cJSON_ArrayForEach(t, cJSON_GetObjectItem(cs, "tensors"))
		{
			double w =
			    kat_tensor(m, cs, cJSON_GetObjectItem(in, "models"), t->valuestring,
			               cJSON_GetObjectItem(tol, "atol")->valuedouble,
			               cJSON_GetObjectItem(tol, "rtol")->valuedouble);

			if (w > worst)
				worst = w;
		}
		printf("  %-40s max |err| %.3g\n", cJSON_GetObjectItem(c, "name")->valuestring,
		       worst);
		cases++;
		cJSON_Delete(cs);
	}
	/* slerp x3, nuslerp x4, multislerp x2, linear x3, task_arithmetic x2,
	 * karcher, model_stock x2, nearswap */
	CHECK_MSG(cases >= 18, "only %d known-answer cases ran", cases);
out:
	cJSON_Delete(index);
	cJSON_Delete(in);
}

/* ---- properties on synthetic tensors ---- */

/* Deterministic pseudo-random f32 values in [-1, 1). */
static void fill(float *v, size_t n, uint64_t key)
{
	for (size_t e = 0; e < n; e++)
		v[e] = (float)(2 * smelt_rng_uniform(key, e) - 1);
}

struct fixture {
	uint64_t shape[2];
	size_t n;
	float *b, *x[MAXM], *out;
	double pg[SMELT_MAX_PARAMS], pm[MAXM * SMELT_MAX_PARAMS];
	uint64_t keys[MAXM];
};

static void fx_init(struct fixture *f, uint64_t rows, uint64_t cols, int n_models)
{
	memset(f, 0, sizeof(*f));
	f->shape[0] = rows;
	f->shape[1] = cols;
	f->n = (size_t)(rows * cols);
	f->b = malloc(f->n * sizeof(float));
	f->out = malloc(f->n * sizeof(float));
	fill(f->b, f->n, 99);
	for (int i = 0; i < n_models; i++) {
		f->x[i] = malloc(f->n * sizeof(float));
		fill(f->x[i], f->n, 100 + (uint64_t)i);
		f->keys[i] = smelt_rng_key(7, "t", (uint64_t)i);
	}
}

static void fx_free(struct fixture *f)
{
	free(f->b);
	free(f->out);
	for (int i = 0; i < MAXM; i++)
		free(f->x[i]);
}

/* Run m on the fixture (base may be NULL); returns the return code. */
static int fx_run(struct fixture *f, const struct smelt_method *m, int n_models, bool with_base,
                  struct smelt_err *err)
{
	struct smelt_tensor_job job;

	init_job(&job, m, "model.layers.0.mlp.up_proj.weight", 2, f->shape, n_models, f->pg, f->pm,
	         f->keys);
	return run(m, &job, with_base ? f->b : NULL, (const float *const *)f->x, f->out, 2, err);
}

static double max_diff(const float *a, const float *b, size_t n)
{
	double w = 0;

	for (size_t e = 0; e < n; e++)
		w = fmax(w, fabs((double)a[e] - (double)b[e]));
	return w;
}

static const struct smelt_method *need(const char *name)
{
	const struct smelt_method *m = smelt_method_find(name);

	CHECK_MSG(m != NULL, "method %s is not registered", name);
	return m;
}

/* The Gram helper: tiled (k <= 16) and per-pair (k > 16) paths agree bit
 * for bit, with and without an origin, and match a direct double sum. */
TEST(gram_helper)
{
	enum { K = 17, N = 1000 };
	float *v[K], o[N];
	double big[K * (K + 1) / 2], small[6], direct;

	fill(o, N, 3);
	for (int i = 0; i < K; i++) {
		v[i] = malloc(N * sizeof(float));
		fill(v[i], N, 40 + (uint64_t)i);
	}
	for (int with_o = 0; with_o < 2; with_o++) {
		const float *org = with_o ? o : NULL;

		memset(big, 0, sizeof(big));
		memset(small, 0, sizeof(small));
		smelt_geom_gram_add((const float *const *)v, K, org, N, big);
		smelt_geom_gram_add((const float *const *)v, 3, org, N, small);
		for (int i = 0; i < 3; i++)
			for (int j = i; j < 3; j++)
				CHECK(big[smelt_geom_tri_index(K, i, j)] ==
				      small[smelt_geom_tri_index(3, i, j)]);
		direct = 0;
		for (int e = 0; e < N; e++)
			direct += (double)(float)(v[1][e] - (org ? org[e] : 0)) *
			          (double)(float)(v[2][e] - (org ? org[e] : 0));
		CHECK_NEAR(small[smelt_geom_tri_index(3, 2, 1)], direct, 1e-9);
	}
	CHECK_EQ_INT(smelt_geom_tri_index(4, 0, 0), 0);
	CHECK_EQ_INT(smelt_geom_tri_index(4, 1, 1), 4);
	CHECK_EQ_INT(smelt_geom_tri_index(4, 3, 2), 8);
	CHECK_EQ_INT(smelt_geom_tri_index(4, 3, 3), 9);
	for (int i = 0; i < K; i++)
		free(v[i]);
}

TEST(registry_metadata)
{
	for (size_t i = 0; i < sizeof(my_methods) / sizeof(my_methods[0]); i++) {
		const struct smelt_method *m = need(my_methods[i]);

		CHECK(m == my_tables[i]);
		if (!m)
			continue;
		CHECK(m->summary && *m->summary && !strchr(m->summary, '\n'));
		CHECK(m->help && strchr(m->help, '\n'));
		CHECK(m->merge != NULL);
		CHECK(m->n_params <= SMELT_MAX_PARAMS);
		for (int p = 0; p < m->n_params; p++) {
			CHECK(m->params[p].help && *m->params[p].help);
			CHECK(m->params[p].required || (m->params[p].def >= m->params[p].min &&
			                                m->params[p].def <= m->params[p].max));
		}
	}
	CHECK_EQ_INT(smelt_method_param(need("task_arithmetic"), "int8_mask") >= 0, 1);
	CHECK(need("task_arithmetic")
	          ->params[smelt_method_param(need("task_arithmetic"), "int8_mask")]
	          .unused);
}

TEST(linear_properties)
{
	const struct smelt_method *m = need("linear");
	struct fixture f;
	struct smelt_err err;

	if (!m)
		return;
	fx_init(&f, 13, 7, 3);
	default_params(m, 3, f.pg, f.pm);
	f.pm[0 * m->n_params] = 0;
	f.pm[1 * m->n_params] = 1;
	f.pm[2 * m->n_params] = 0;
	CHECK_EQ_INT(fx_run(&f, m, 3, false, &err), 0);
	CHECK(memcmp(f.out, f.x[1], f.n * sizeof(float)) == 0);
	/* normalize: weights 2,2,2 equal the plain mean */
	for (int i = 0; i < 3; i++)
		f.pm[i * m->n_params] = 2;
	CHECK_EQ_INT(fx_run(&f, m, 3, false, &err), 0);
	CHECK_NEAR(f.out[5], (f.x[0][5] + f.x[1][5] + f.x[2][5]) / 3.0, 1e-6);
	/* weights summing to zero cannot be normalised */
	f.pm[0] = 1;
	f.pm[m->n_params] = -1;
	f.pm[2 * m->n_params] = 0;
	CHECK(fx_run(&f, m, 3, false, &err) == SMELT_EINVAL);
	CHECK_STR_CONTAINS(err.msg, "sum to 0");
	/* a base is one more model, never a separate input */
	CHECK(fx_run(&f, m, 3, true, &err) == SMELT_EINVAL);
	fx_free(&f);
}

TEST(task_arithmetic_properties)
{
	const struct smelt_method *m = need("task_arithmetic");
	int lam = m ? smelt_method_param(m, "lambda") : -1;
	struct fixture f;
	struct smelt_err err;

	if (!m)
		return;
	fx_init(&f, 9, 11, 2);
	default_params(m, 2, f.pg, f.pm);
	f.pm[0] = 0.7;
	f.pm[m->n_params] = 0.4;
	f.pg[lam] = 0;
	CHECK_EQ_INT(fx_run(&f, m, 2, true, &err), 0);
	CHECK(memcmp(f.out, f.b, f.n * sizeof(float)) == 0);
	f.pg[lam] = 1;
	f.pm[0] = 1;
	f.pm[m->n_params] = 0;
	CHECK_EQ_INT(fx_run(&f, m, 2, true, &err), 0);
	CHECK(max_diff(f.out, f.x[0], f.n) < 1e-6);
	fx_free(&f);
}

TEST(passthrough_properties)
{
	const struct smelt_method *m = need("passthrough");
	struct fixture f;
	struct smelt_err err;

	if (!m)
		return;
	fx_init(&f, 5, 6, 2);
	default_params(m, 2, f.pg, f.pm);
	CHECK_EQ_INT(fx_run(&f, m, 1, false, &err), 0);
	CHECK(memcmp(f.out, f.x[0], f.n * sizeof(float)) == 0);
	f.pm[0] = 0;
	CHECK_EQ_INT(fx_run(&f, m, 1, false, &err), 0);
	for (size_t e = 0; e < f.n; e++)
		CHECK(f.out[e] == 0);
	f.pm[0] = -2;
	CHECK_EQ_INT(fx_run(&f, m, 1, false, &err), 0);
	CHECK(f.out[3] == f.x[0][3] * -2.0f);
	CHECK(fx_run(&f, m, 2, false, &err) == SMELT_EINVAL);
	CHECK_STR_CONTAINS(err.msg, "exactly one model");
	fx_free(&f);
}

TEST(slerp_properties)
{
	const struct smelt_method *m = need("slerp");
	float ortho_b[2] = {1, 0}, ortho_x[2] = {0, 1}, out[2];
	const float *xs[1] = {ortho_x};
	uint64_t shape[1] = {2}, keys[1] = {0};
	double pg[1] = {0.5}, c[2];
	struct smelt_tensor_job job;
	struct fixture f;
	struct smelt_err err;

	if (!m)
		return;
	/* orthogonal unit vectors at t = 0.5: (1/sqrt2, 1/sqrt2) */
	init_job(&job, m, "v", 1, shape, 1, pg, pg, keys);
	CHECK_EQ_INT(run(m, &job, ortho_b, xs, out, 1, &err), 0);
	CHECK_NEAR(out[0], sqrt(0.5), 1e-6);
	CHECK_NEAR(out[1], sqrt(0.5), 1e-6);
	/* endpoints */
	fx_init(&f, 8, 8, 1);
	f.pg[0] = 0;
	CHECK_EQ_INT(fx_run(&f, m, 1, true, &err), 0);
	CHECK(memcmp(f.out, f.b, f.n * sizeof(float)) == 0);
	f.pg[0] = 1;
	CHECK_EQ_INT(fx_run(&f, m, 1, true, &err), 0);
	CHECK(max_diff(f.out, f.x[0], f.n) < 1e-6);
	/* colinear: lerp; anti-parallel too */
	smelt_geom_slerp_coef(4, 16, 8, 0.25, c);
	CHECK(c[0] == 0.75 && c[1] == 0.25);
	smelt_geom_slerp_coef(4, 16, -8, 0.25, c);
	CHECK(c[0] == 0.75 && c[1] == 0.25);
	/* zero vectors are not normalised: cos 0, theta pi/2 */
	smelt_geom_slerp_coef(0, 16, 0, 0.5, c);
	CHECK_NEAR(c[0], sqrt(0.5), 1e-6);
	fx_free(&f);
}

TEST(nuslerp_properties)
{
	const struct smelt_method *m = need("nuslerp");
	int w, fl, rw;
	struct fixture f;
	struct smelt_err err;
	double c[2];

	if (!m)
		return;
	w = smelt_method_param(m, "weight");
	fl = smelt_method_param(m, "nuslerp_flatten");
	rw = smelt_method_param(m, "nuslerp_row_wise");
	fx_init(&f, 10, 6, 2);
	default_params(m, 2, f.pg, f.pm);
	for (int mode = 0; mode < 3; mode++) {
		f.pg[fl] = mode == 0;
		f.pg[rw] = mode == 2;
		/* weight (1, 0): t = 0 gives the first model; (0, 1) the second */
		f.pm[w] = 1;
		f.pm[m->n_params + w] = 0;
		CHECK_EQ_INT(fx_run(&f, m, 2, false, &err), 0);
		CHECK_MSG(max_diff(f.out, f.x[0], f.n) < 1e-6, "mode %d t=0", mode);
		f.pm[w] = 0;
		f.pm[m->n_params + w] = 3;
		CHECK_EQ_INT(fx_run(&f, m, 2, true, &err), 0);
		CHECK_MSG(max_diff(f.out, f.x[1], f.n) < 1e-6, "mode %d t=1", mode);
	}
	/* a model with itself is the identity */
	memcpy(f.x[1], f.x[0], f.n * sizeof(float));
	f.pm[w] = 0.3;
	f.pm[m->n_params + w] = 0.5;
	CHECK_EQ_INT(fx_run(&f, m, 2, false, &err), 0);
	CHECK(max_diff(f.out, f.x[0], f.n) < 1e-6);
	/* the zero-vector rule: cos 0, not colinear */
	smelt_geom_nuslerp_coef(0, 4, 0, 0.5, c);
	CHECK_NEAR(c[0], sqrt(0.5), 1e-12);
	CHECK_NEAR(c[1], sqrt(0.5), 1e-12);
	CHECK(fx_run(&f, m, 1, false, &err) == SMELT_EINVAL);
	fx_free(&f);
}

TEST(multislerp_properties)
{
	const struct smelt_method *m = need("multislerp");
	float a[4] = {1, 2, -1, 0.5f}, na[4] = {-1, -2, 1, -0.5f}, z[4] = {0}, out[4];
	const float *two[2] = {a, na}, *three[3] = {a, na, z};
	uint64_t shape[1] = {4}, keys[3] = {0};
	double pg[SMELT_MAX_PARAMS], pm[3 * SMELT_MAX_PARAMS];
	struct smelt_tensor_job job;
	struct fixture f;
	struct smelt_err err;

	if (!m)
		return;
	fx_init(&f, 7, 9, 3);
	default_params(m, 3, f.pg, f.pm);
	for (int i = 0; i < 3; i++) {
		memcpy(f.x[i], f.x[0], f.n * sizeof(float));
		f.pm[i * m->n_params] = 1.0 + i;
	}
	CHECK_EQ_INT(fx_run(&f, m, 3, false, &err), 0);
	CHECK(max_diff(f.out, f.x[0], f.n) < 1e-6);
	CHECK_EQ_INT(fx_run(&f, m, 3, true, &err), 0);
	CHECK(max_diff(f.out, f.x[0], f.n) < 1e-6);
	/* antipodal pair with equal weights: mergekit's lerp fallback (zeros) */
	default_params(m, 3, pg, pm);
	pm[0] = pm[m->n_params] = pm[2 * m->n_params] = 1;
	init_job(&job, m, "v", 1, shape, 2, pg, pm, keys);
	CHECK_EQ_INT(run(m, &job, NULL, two, out, 1, &err), 0);
	for (int e = 0; e < 4; e++)
		CHECK_NEAR(out[e], 0, 1e-7);
	/* ... and an error for three inputs */
	init_job(&job, m, "v", 1, shape, 3, pg, pm, keys);
	CHECK(run(m, &job, NULL, three, out, 1, &err) == SMELT_EINVAL);
	CHECK_STR_CONTAINS(err.msg, "multislerp: tensor v");
	fx_free(&f);
}

TEST(karcher_properties)
{
	const struct smelt_method *m = need("karcher");
	struct fixture f;
	struct smelt_err err;

	if (!m)
		return;
	fx_init(&f, 6, 10, 3);
	default_params(m, 3, f.pg, f.pm);
	memcpy(f.x[1], f.x[0], f.n * sizeof(float));
	memcpy(f.x[2], f.x[0], f.n * sizeof(float));
	CHECK_EQ_INT(fx_run(&f, m, 3, false, &err), 0);
	CHECK(max_diff(f.out, f.x[0], f.n) < 1e-6);
	/* two orthogonal inputs of equal norm: the bisector times the norm */
	for (size_t e = 0; e < f.n; e++) {
		f.x[0][e] = e == 0 ? 2.0f : 0.0f;
		f.x[1][e] = e == 1 ? 2.0f : 0.0f;
	}
	CHECK_EQ_INT(fx_run(&f, m, 2, false, &err), 0);
	CHECK_NEAR(f.out[0], sqrt(2.0), 1e-5);
	CHECK_NEAR(f.out[1], sqrt(2.0), 1e-5);
	CHECK_NEAR(f.out[2], 0, 1e-9);
	/* a base is one more equally weighted input */
	for (size_t e = 0; e < f.n; e++)
		f.b[e] = f.x[0][e];
	CHECK_EQ_INT(fx_run(&f, m, 1, true, &err), 0);
	CHECK(max_diff(f.out, f.x[0], f.n) < 1e-6);
	fx_free(&f);
}

TEST(model_stock_properties)
{
	const struct smelt_method *m = need("model_stock");
	struct fixture f;
	struct smelt_err err;
	int fw;

	if (!m)
		return;
	fw = smelt_method_param(m, "filter_wise");
	fx_init(&f, 12, 5, 3);
	default_params(m, 3, f.pg, f.pm);
	memcpy(f.x[1], f.x[0], f.n * sizeof(float));
	memcpy(f.x[2], f.x[0], f.n * sizeof(float));
	for (int mode = 0; mode < 2; mode++) {
		f.pg[fw] = mode;
		/* identical models: cos 1, t 1, y = the models */
		CHECK_EQ_INT(fx_run(&f, m, 3, true, &err), 0);
		CHECK(max_diff(f.out, f.x[0], f.n) < 1e-6);
	}
	/* known cosine: orthogonal deltas, N = 2 -> c = 0, t = 0 -> base */
	for (size_t e = 0; e < f.n; e++) {
		f.x[0][e] = f.b[e] + (e % 2 ? 0.5f : 0.0f);
		f.x[1][e] = f.b[e] + (e % 2 ? 0.0f : 0.25f);
	}
	f.pg[fw] = 0;
	CHECK_EQ_INT(fx_run(&f, m, 2, true, &err), 0);
	CHECK(max_diff(f.out, f.b, f.n) < 1e-7);
	CHECK_NEAR(smelt_geom_stock_ratio(3, 0.5), 1.5 / 2.0, 1e-15);
	/* anti-parallel deltas, N = 2: 1 + (N-1) c = 0 is an error, not inf */
	for (size_t e = 0; e < f.n; e++) {
		float d = e < 16 ? 1.0f : 0.0f; /* |d|^2 = 16: exact norms, c = -1 exactly */

		f.b[e] = (float)(e % 4) * 0.25f;
		f.x[0][e] = f.b[e] + d;
		f.x[1][e] = f.b[e] - d;
	}
	CHECK(fx_run(&f, m, 2, true, &err) == SMELT_EINVAL);
	CHECK_STR_CONTAINS(err.msg, "not finite");
	CHECK(fx_run(&f, m, 1, true, &err) == SMELT_EINVAL);
	CHECK_STR_CONTAINS(err.msg, "at least 2 models");
	fx_free(&f);
}

TEST(nearswap_properties)
{
	const struct smelt_method *m = need("nearswap");
	struct fixture f;
	struct smelt_err err;

	if (!m)
		return;
	fx_init(&f, 4, 4, 1);
	default_params(m, 1, f.pg, f.pm);
	f.pg[0] = 1e-4;
	memcpy(f.x[0], f.b, f.n * sizeof(float));
	f.x[0][3] = f.b[3] + 0.5e-4f;
	f.x[0][4] = f.b[4] + 0.5f;
	CHECK_EQ_INT(fx_run(&f, m, 1, true, &err), 0);
	CHECK(f.out[0] == f.b[0]);
	CHECK(f.out[3] == f.x[0][3]);              /* closer than t: swapped in */
	CHECK_NEAR(f.out[4], f.b[4] + 1e-4, 1e-6); /* moved by t toward x */
	f.pg[0] = 0;
	CHECK(fx_run(&f, m, 1, true, &err) == SMELT_EINVAL);
	CHECK_STR_CONTAINS(err.msg, "t must be > 0");
	f.pg[0] = 1;
	CHECK(fx_run(&f, m, 2, true, &err) == SMELT_EINVAL);
	fx_free(&f);
}

/* Every method runs on empty tensors without touching data. */
/* Methods that need a base refuse to run without one, before any data. */
TEST(base_required)
{
	static const char *const need_base[] = {"task_arithmetic", "slerp", "model_stock",
	                                        "nearswap", "arcee_fusion"};
	struct fixture f;

	fx_init(&f, 3, 4, 2);
	for (size_t k = 0; k < sizeof(need_base) / sizeof(need_base[0]); k++) {
		const struct smelt_method *m = need(need_base[k]);
		int n = m && m->max_models ? m->max_models : 2;
		struct smelt_err err;

		if (!m)
			continue;
		default_params(m, 2, f.pg, f.pm);
		for (int p = 0; p < m->n_params; p++)
			if (m->params[p].required) {
				f.pg[p] = 0.5;
				f.pm[p] = f.pm[m->n_params + p] = 0.5;
			}
		CHECK_MSG(fx_run(&f, m, n, false, &err) == SMELT_EINVAL, "%s ran without a base",
		          m->name);
		CHECK_STR_CONTAINS(err.msg, "needs a base model");
		CHECK_EQ_INT(fx_run(&f, m, n, true, &err), 0);
	}
	fx_free(&f);
}

TEST(empty_tensors)
{
	uint64_t shapes[3][2] = {{0, 4}, {4, 0}, {0, 0}};
	float dummy[1] = {0};
	const float *xs[3] = {dummy, dummy, dummy};
	uint64_t keys[3] = {1, 2, 3};

	for (size_t k = 0; k < sizeof(my_methods) / sizeof(my_methods[0]); k++) {
		const struct smelt_method *m = need(my_methods[k]);
		int n = m && m->max_models ? m->max_models : 2;
		double pg[SMELT_MAX_PARAMS], pm[3 * SMELT_MAX_PARAMS];
		bool base = m && m->base != SMELT_BASE_NONE && m->base != SMELT_BASE_AS_MODEL;

		if (!m)
			continue;
		default_params(m, 3, pg, pm);
		for (int p = 0; p < m->n_params; p++)
			if (m->params[p].required) {
				pg[p] = 0.5;
				for (int i = 0; i < 3; i++)
					pm[i * m->n_params + p] = 0.5;
			}
		for (int s = 0; s < 3; s++) {
			struct smelt_tensor_job job;
			struct smelt_err err;

			init_job(&job, m, "empty", 2, shapes[s], n, pg, pm, keys);
			CHECK_MSG(run(m, &job, base ? dummy : NULL, xs, dummy, 2, &err) == 0,
			          "%s on an empty tensor: %s", m->name, err.msg);
		}
	}
}

/* Run m on (b, x0, x1) viewed with the given shape. */
static void run_shaped(const struct smelt_method *m, const double *pg, const double *pm, int ndim,
                       const uint64_t *shape, const float *b, float *const *x, int n_models,
                       float *out)
{
	struct smelt_tensor_job job;
	struct smelt_err err;
	uint64_t keys[3] = {0};

	init_job(&job, m, "shaped", ndim, shape, n_models, pg, pm, keys);
	CHECK_MSG(run(m, &job, b, (const float *const *)x, out, 2, &err) == 0, "%s: %s", m->name,
	          err.msg);
}

/* The per-row modes take vectors along the last axis, the per-column mode
 * along axis 0, for any number of dimensions; 1-D tensors are one vector. */
TEST(vector_axes)
{
	const struct smelt_method *nu = need("nuslerp"), *ms = need("model_stock");
	uint64_t s3[3] = {2, 3, 4}, rows2[2] = {6, 4}, cols2[2] = {2, 12}, s1[1] = {24};
	double pg[SMELT_MAX_PARAMS], pm[3 * SMELT_MAX_PARAMS];
	float *out_a = malloc(24 * sizeof(float)), *out_b = malloc(24 * sizeof(float));
	struct fixture f;
	int fl, rw;

	if (!nu || !ms)
		goto out;
	fx_init(&f, 4, 6, 3);
	fl = smelt_method_param(nu, "nuslerp_flatten");
	rw = smelt_method_param(nu, "nuslerp_row_wise");
	default_params(nu, 2, pg, pm);
	pm[0] = 0.3;
	pm[nu->n_params] = 0.9;
	pg[fl] = 0;
	pg[rw] = 0;
	run_shaped(nu, pg, pm, 3, s3, f.b, f.x, 2, out_a);
	run_shaped(nu, pg, pm, 2, rows2, f.b, f.x, 2, out_b);
	CHECK(memcmp(out_a, out_b, 24 * sizeof(float)) == 0);
	pg[rw] = 1;
	run_shaped(nu, pg, pm, 3, s3, f.b, f.x, 2, out_a);
	run_shaped(nu, pg, pm, 2, cols2, f.b, f.x, 2, out_b);
	CHECK(memcmp(out_a, out_b, 24 * sizeof(float)) == 0);
	/* 1-D: per row, per column and flattened are the same single vector */
	run_shaped(nu, pg, pm, 1, s1, NULL, f.x, 2, out_a);
	pg[fl] = 1;
	run_shaped(nu, pg, pm, 1, s1, NULL, f.x, 2, out_b);
	CHECK(max_diff(out_a, out_b, 24) < 1e-6);
	pg[fl] = 0;
	pg[rw] = 0;
	run_shaped(nu, pg, pm, 1, s1, NULL, f.x, 2, out_b);
	CHECK(max_diff(out_a, out_b, 24) < 1e-6);

	default_params(ms, 3, pg, pm);
	pg[smelt_method_param(ms, "filter_wise")] = 1;
	run_shaped(ms, pg, pm, 3, s3, f.b, f.x, 3, out_a);
	run_shaped(ms, pg, pm, 2, rows2, f.b, f.x, 3, out_b);
	CHECK(memcmp(out_a, out_b, 24 * sizeof(float)) == 0);
	/* filter_wise on a 1-D tensor is the whole-tensor ratio */
	run_shaped(ms, pg, pm, 1, s1, f.b, f.x, 3, out_a);
	pg[smelt_method_param(ms, "filter_wise")] = 0;
	run_shaped(ms, pg, pm, 1, s1, f.b, f.x, 3, out_b);
	CHECK(max_diff(out_a, out_b, 24) < 1e-6);
	fx_free(&f);
out:
	free(out_a);
	free(out_b);
}

/* ---- arcee_fusion ---- */

/* Reference: importance of every element, all sorted, floor quantiles. */
static int cmp_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;

	return (x > y) - (x < y);
}

static float ref_kl(const float *x, const float *b, size_t len)
{
	double mx = -INFINITY, mb = -INFINITY, zx = 0, zb = 0, kl = 0;

	for (size_t e = 0; e < len; e++) {
		mx = fmax(mx, x[e]);
		mb = fmax(mb, b[e]);
	}
	for (size_t e = 0; e < len; e++) {
		zx += exp(x[e] - mx);
		zb += exp(b[e] - mb);
	}
	for (size_t e = 0; e < len; e++) {
		double p = exp(x[e] - mx) / zx + 1e-8, q = exp(b[e] - mb) / zb + 1e-8;

		kl += p * log(p / q);
	}
	return (float)kl;
}

static void ref_fusion(const float *b, const float *x, size_t rows, size_t cols, float *out)
{
	size_t n = rows * cols;
	float *imp = malloc(n * sizeof(float)), *s = malloc(n * sizeof(float)), tau;

	for (size_t r = 0; r < rows; r++) {
		float kl = ref_kl(x + r * cols, b + r * cols, cols);

		for (size_t c = 0; c < cols; c++)
			imp[r * cols + c] = fabsf(x[r * cols + c] - b[r * cols + c]) * kl;
	}
	memcpy(s, imp, n * sizeof(float));
	qsort(s, n, sizeof(float), cmp_float);
	tau = s[(size_t)(0.5f * (float)(n - 1))] +
	      1.5f * (s[(size_t)(0.75f * (float)(n - 1))] - s[(size_t)(0.25f * (float)(n - 1))]);
	for (size_t e = 0; e < n; e++)
		out[e] = imp[e] >= tau ? b[e] + (x[e] - b[e]) : b[e];
	free(imp);
	free(s);
}

TEST(arcee_fusion_threshold)
{
	const struct smelt_method *m = need("arcee_fusion");
	float b[8] = {0}, x[8] = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f, 0.7f, 5.0f}, out[8];
	const float *xs[1] = {x};
	uint64_t shape[2] = {1, 8}, keys[1] = {1};
	struct smelt_tensor_job job;
	struct fixture f;
	struct smelt_err err;
	float *ref;

	if (!m)
		return;
	/* one row: quartiles of |d| are 0.2, 0.4, 0.6 -> tau = KL * 1.0:
	 * only the 5.0 change survives */
	init_job(&job, m, "w", 2, shape, 1, NULL, NULL, keys);
	CHECK_EQ_INT(run(m, &job, b, xs, out, 1, &err), 0);
	for (int e = 0; e < 7; e++)
		CHECK(out[e] == 0);
	CHECK(out[7] == 5.0f);
	/* x = b: nothing changes */
	CHECK_EQ_INT(run(m, &job, b, (const float *const[]){b}, out, 1, &err), 0);
	for (int e = 0; e < 8; e++)
		CHECK(out[e] == 0);
	/* random tensor against the straightforward reference, any layout */
	fx_init(&f, 40, 33, 1);
	for (size_t e = 0; e < f.n; e += 7)
		f.x[0][e] = f.b[e]; /* some unchanged entries */
	for (size_t c = 0; c < 33; c++)
		f.x[0][5 * 33 + c] = f.b[5 * 33 + c] + 2.0f; /* row 5: shift, KL 0 */
	ref = malloc(f.n * sizeof(float));
	ref_fusion(f.b, f.x[0], 40, 33, ref);
	for (size_t l = 0; l < sizeof(layouts) / sizeof(layouts[0]); l++) {
		set_block_bytes(layouts[l].block_bytes);
		init_job(&job, m, "w", 2, f.shape, 1, NULL, NULL, f.keys);
		CHECK_EQ_INT(
		    run(m, &job, f.b, (const float *const *)f.x, f.out, layouts[l].threads, &err),
		    0);
		CHECK_MSG(memcmp(f.out, ref, f.n * sizeof(float)) == 0, "layout %zu", l);
	}
	set_block_bytes(NULL);
	for (size_t c = 0; c < 33; c++)
		CHECK(f.out[5 * 33 + c] == f.b[5 * 33 + c]);
	free(ref);
	fx_free(&f);
}

/* arcee_fusion against PyTorch on the shared inputs with mergekit's
 * algorithm (tests/fixtures/geom_arcee_fusion.json, written by
 * gen_geom_arcee_fusion.py; below 1e6 elements nothing is sampled). smelt
 * takes the row KL in double: it must match the float64-KL reference
 * exactly, and mergekit's float32 one except for elements at the threshold
 * (at most 1 in 500). */
static size_t fusion_mismatches(const float *out, const cJSON *t, size_t n)
{
	size_t k, bad = 0;
	float *want = floats_of(cJSON_GetObjectItem(t, "data"), &k);

	CHECK_EQ_INT(k, n);
	for (size_t e = 0; e < n && e < k; e++)
		bad += out[e] != want[e];
	free(want);
	return bad;
}

TEST(arcee_fusion_known_answers)
{
	const struct smelt_method *m = need("arcee_fusion");
	const char *src = getenv("SMELT_SOURCE");
	char path[1024];
	char *text;
	cJSON *fx = NULL, *in = load_json("testdata/methods/inputs.json");
	const cJSON *c, *models;
	size_t total = 0, off32 = 0;
	int tensors = 0;

	snprintf(path, sizeof(path), "%s/tests/fixtures/geom_arcee_fusion.json", src ? src : ".");
	text = slurp(path);
	CHECK_MSG(text != NULL, "cannot read %s", path);
	if (!m || !text || !in)
		goto out;
	fx = cJSON_Parse(text);
	models = cJSON_GetObjectItem(in, "models");
	cJSON_ArrayForEach(c, cJSON_GetObjectItem(fx, "cases"))
	{
		const char *other = cJSON_GetObjectItem(c, "model")->valuestring;
		const cJSON *t;

		cJSON_ArrayForEach(t, cJSON_GetObjectItem(c, "expected_kl64"))
		{
			const cJSON *bt =
			    cJSON_GetObjectItem(cJSON_GetObjectItem(models, "base"), t->string);
			const cJSON *xt =
			    cJSON_GetObjectItem(cJSON_GetObjectItem(models, other), t->string);
			const cJSON *t32 =
			    cJSON_GetObjectItem(cJSON_GetObjectItem(c, "expected"), t->string);
			const cJSON *it;
			uint64_t shape[SMELT_MAX_DIMS], keys[1] = {3};
			int ndim = 0;
			size_t n, k, kept = 0;
			float *b = floats_of(cJSON_GetObjectItem(bt, "data"), &n);
			float *x = floats_of(cJSON_GetObjectItem(xt, "data"), &k);
			float *out = malloc(n * sizeof(float));
			const float *xs[1] = {x};
			struct smelt_tensor_job job;
			struct smelt_err err;

			cJSON_ArrayForEach(it, cJSON_GetObjectItem(t, "shape")) shape[ndim++] =
			    (uint64_t)it->valuedouble;
			init_job(&job, m, t->string, ndim, shape, 1, NULL, NULL, keys);
			CHECK_EQ_INT(run(m, &job, b, xs, out, 2, &err), 0);
			for (size_t e = 0; e < n; e++)
				kept += out[e] != b[e];
			CHECK_MSG(kept < n, "%s %s: every change kept", other, t->string);
			CHECK_MSG(fusion_mismatches(out, t, n) == 0,
			          "%s %s differs from the float64-KL "
			          "reference",
			          other, t->string);
			off32 += fusion_mismatches(out, t32, n);
			total += n;
			tensors++;
			free(b);
			free(x);
			free(out);
		}
	}
	CHECK_EQ_INT(tensors, 18);
	printf("  %zu of %zu elements differ from mergekit's float32 KL (threshold ties)\n", off32,
	       total);
	CHECK(off32 * 500 <= total);
out:
	free(text);
	cJSON_Delete(fx);
	cJSON_Delete(in);
}

TEST(arcee_fusion_sampled_determinism)
{
	const struct smelt_method *m = need("arcee_fusion");
	static const struct layout big[] = {{NULL, 1}, {NULL, 2}, {"20000", 2}, {"7000", 1}};
	struct smelt_tensor_job job;
	struct fixture f;
	struct smelt_err err;
	float *first;
	size_t kept = 0;

	if (!m)
		return;
	/* 1.1e6 elements: the quartiles come from 1e6 sampled entries */
	fx_init(&f, 1100, 1000, 1);
	first = malloc(f.n * sizeof(float));
	for (size_t l = 0; l < sizeof(big) / sizeof(big[0]); l++) {
		set_block_bytes(big[l].block_bytes);
		init_job(&job, m, "big", 2, f.shape, 1, NULL, NULL, f.keys);
		CHECK_EQ_INT(
		    run(m, &job, f.b, (const float *const *)f.x, f.out, big[l].threads, &err), 0);
		if (l == 0)
			memcpy(first, f.out, f.n * sizeof(float));
		else
			CHECK_MSG(memcmp(first, f.out, f.n * sizeof(float)) == 0, "layout %zu", l);
	}
	set_block_bytes(NULL);
	for (size_t e = 0; e < f.n; e++)
		kept += first[e] != f.b[e];
	/* uniform data: above median + 1.5 IQR lies a small tail, never nothing */
	CHECK_MSG(kept > 0 && kept < f.n / 4, "kept %zu of %zu", kept, f.n);
	free(first);
	fx_free(&f);
}

/* Over 4M rows the row KL is recomputed in merge() instead of cached; rows
 * of one element have KL 0, so tau = 0 and every change is kept. */
TEST(arcee_fusion_many_rows)
{
	const struct smelt_method *m = need("arcee_fusion");
	uint64_t shape[2] = {(1u << 22) + 100, 1}, keys[1] = {5};
	size_t n = (size_t)shape[0];
	float *b = malloc(n * sizeof(float)), *x = malloc(n * sizeof(float));
	float *out = malloc(n * sizeof(float));
	const float *xs[1] = {x};
	struct smelt_tensor_job job;
	struct smelt_err err;
	size_t bad = 0;

	if (!m)
		goto out;
	fill(b, n, 11);
	fill(x, n, 12);
	for (int threads = 1; threads <= 2; threads++) {
		init_job(&job, m, "rows", 2, shape, 1, NULL, NULL, keys);
		CHECK_EQ_INT(run(m, &job, b, xs, out, threads, &err), 0);
		for (size_t e = 0; e < n; e++)
			bad += out[e] != b[e] + (x[e] - b[e]);
	}
	CHECK_EQ_INT(bad, 0);
out:
	free(b);
	free(x);
	free(out);
}

TEST(arcee_fusion_checks)
{
	const struct smelt_method *m = need("arcee_fusion");
	struct fixture f;
	struct smelt_err err;

	if (!m)
		return;
	fx_init(&f, 3, 3, 2);
	CHECK(fx_run(&f, m, 2, true, &err) == SMELT_EINVAL);
	CHECK_STR_CONTAINS(err.msg, "exactly 1 model");
	fx_free(&f);
}

int main(void)
{
	RUN(gram_helper);
	RUN(registry_metadata);
	RUN(known_answers);
	RUN(linear_properties);
	RUN(task_arithmetic_properties);
	RUN(passthrough_properties);
	RUN(slerp_properties);
	RUN(nuslerp_properties);
	RUN(multislerp_properties);
	RUN(karcher_properties);
	RUN(model_stock_properties);
	RUN(nearswap_properties);
	RUN(base_required);
	RUN(empty_tensors);
	RUN(vector_axes);
	RUN(arcee_fusion_threshold);
	RUN(arcee_fusion_known_answers);
	RUN(arcee_fusion_sampled_determinism);
	RUN(arcee_fusion_many_rows);
	RUN(arcee_fusion_checks);
	return check_summary();
}

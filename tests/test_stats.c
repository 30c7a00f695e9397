/*
 * test_stats.c: the divergence analysis (engine/stats.c): divergences
 * against a direct computation, weights against the widen merge method's
 * own provenance (one implementation), thread independence, the grid,
 * progress, cancellation, the disk cache and its invalidation, re-scoring,
 * and the re-scoring time on a 7B-shaped tensor list.
 */
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "smelt/ckpt.h"
#include "smelt/st.h"
#include "smelt/stats.h"
#include "stats_int.h"

extern const struct smelt_method smelt_method_widen;

struct tdef {
	const char *name;
	int ndim;
	uint64_t shape[2];
};

static const struct tdef family[] = {
    {"model.embed_tokens.weight", 2, {20, 8}},
    {"model.layers.0.self_attn.q_proj.weight", 2, {8, 8}},
    {"model.layers.0.self_attn.q_proj.bias", 1, {8, 0}},
    {"model.layers.0.mlp.down_proj.weight", 2, {8, 12}},
    {"model.layers.0.input_layernorm.weight", 1, {8, 0}},
    {"model.layers.1.self_attn.q_proj.weight", 2, {8, 8}},
    {"model.layers.1.mlp.down_proj.weight", 2, {8, 12}},
    {"model.layers.1.input_layernorm.weight", 1, {8, 0}},
    {"model.layers.1.post_attention_layernorm.weight", 1, {8, 0}},
    {"model.norm.weight", 1, {8, 0}},
    {"lm_head.weight", 2, {20, 8}},
};
#define N_FAMILY (sizeof(family) / sizeof(family[0]))

static float value(uint32_t seed, size_t i)
{
	uint32_t s = seed * 2654435761u ^ (uint32_t)(i * 40503u + 17u);

	s ^= s >> 13;
	s *= 0x5bd1e995u;
	s ^= s >> 15;
	return (float)(s & 0xffffff) / (float)0x1000000 - 0.5f;
}

static size_t numel(const struct tdef *d)
{
	return d->ndim == 1 ? (size_t)d->shape[0] : (size_t)(d->shape[0] * d->shape[1]);
}

/* Tensor data: base values, plus scale x noise for a model (seed != 0).
 * Column 3 of down_proj is zero in every model of seed 99 (zero columns). */
static float *tensor_data(size_t ti, uint32_t seed, float scale)
{
	size_t n = numel(&family[ti]);
	float *v = malloc(n * sizeof(float));

	for (size_t i = 0; i < n; i++) {
		v[i] = value((uint32_t)ti + 1, i) + (family[ti].ndim == 1 ? 1.0f : 0.0f);
		if (seed)
			v[i] += scale * value(seed * 977u + (uint32_t)ti, i);
		if (seed == 99 && strstr(family[ti].name, "down_proj") && i % 12 == 3)
			v[i] = 0.0f;
	}
	return v;
}

static void write_model(const char *dir, uint32_t seed, float scale)
{
	struct smelt_st_out_tensor ts[N_FAMILY];
	const void *data[N_FAMILY];
	char path[1024];
	struct smelt_err err;

	mkdir(dir, 0755);
	for (size_t i = 0; i < N_FAMILY; i++) {
		memset(&ts[i], 0, sizeof(ts[i]));
		ts[i].name = family[i].name;
		ts[i].dtype = SMELT_F32;
		ts[i].ndim = family[i].ndim;
		ts[i].shape[0] = family[i].shape[0];
		ts[i].shape[1] = family[i].shape[1];
		data[i] = tensor_data(i, seed, scale);
	}
	snprintf(path, sizeof(path), "%s/model.safetensors", dir);
	CHECK_MSG(smelt_st_write_file(path, ts, data, N_FAMILY, &err) == 0, "%s", err.msg);
	for (size_t i = 0; i < N_FAMILY; i++)
		free((void *)data[i]);
}

static char dirs[3][1024];
static const uint32_t seeds[3] = {0, 5, 99};
static const float scales[3] = {0, 0.02f, 0.4f};

static void make_family(void)
{
	const char *tmp = check_tmpdir();

	for (int i = 0; i < 3; i++) {
		snprintf(dirs[i], sizeof(dirs[i]), "%s/m%d", tmp, i);
		write_model(dirs[i], seeds[i], scales[i]);
	}
}

struct opened {
	struct smelt_ckpt c[3];
	const struct smelt_ckpt *models[2];
};

static int open_family(struct opened *o)
{
	struct smelt_err err;

	memset(o, 0, sizeof(*o));
	for (int i = 0; i < 3; i++)
		if (smelt_ckpt_open(&o->c[i], dirs[i], &err)) {
			check_fail(__FILE__, __LINE__, "%s", err.msg);
			return -1;
		}
	o->models[0] = &o->c[1];
	o->models[1] = &o->c[2];
	return 0;
}

static void close_family(struct opened *o)
{
	for (int i = 0; i < 3; i++)
		smelt_ckpt_close(&o->c[i]);
}

static struct smelt_stats *analyse(struct opened *o, int threads, const char *cache)
{
	struct smelt_stats_opts opts;
	struct smelt_stats *s = NULL;
	struct smelt_err err;

	smelt_stats_opts_default(&opts);
	opts.threads = threads;
	opts.no_cache = cache == NULL;
	opts.cache_dir = cache;
	CHECK_MSG(smelt_stats_open(&s, &o->c[0], o->models, 2, &opts, &err) == 0, "%s", err.msg);
	if (s)
		CHECK_MSG(smelt_stats_run(s, &err) == 0, "%s", err.msg);
	return s;
}

static size_t find_tensor(const struct smelt_stats *s, const char *name)
{
	for (size_t i = 0; i < smelt_stats_n_tensors(s); i++)
		if (strcmp(smelt_stats_tensor_info(s, i)->name, name) == 0)
			return i;
	return (size_t)-1;
}

/* Mean omega per model of one tensor through the widen method itself. */
static void method_weights(size_t ti, double t, double sc, double T, double *mean)
{
	const struct smelt_method *m = &smelt_method_widen;
	size_t n = numel(&family[ti]);
	float *b = tensor_data(ti, 0, 0),
	      *x[2] = {tensor_data(ti, seeds[1], scales[1]), tensor_data(ti, seeds[2], scales[2])};
	double pg[SMELT_MAX_PARAMS] = {t, sc, T, 0}, pm[2 * SMELT_MAX_PARAMS] = {0};
	uint64_t keys[2] = {0, 0};
	struct smelt_tensor_job job = {0};
	struct smelt_block blk = {0};
	struct smelt_err err;

	(void)n;
	job.name = family[ti].name;
	job.ndim = family[ti].ndim;
	job.shape[0] = family[ti].shape[0];
	job.shape[1] = family[ti].shape[1];
	job.n_models = 2;
	job.has_base = true;
	job.n_params = m->n_params;
	job.pg = pg;
	job.pm = pm;
	job.rng_key = keys;
	smelt_job_layout(&job, m);
	job.block_rows = job.rows;
	job.n_blocks = job.n_chunks = 1;
	CHECK(m->setup(&job, &err) == 0);
	blk.nrows = job.rows;
	blk.base = b;
	blk.x = (const float *const *)x;
	for (int p = 0; p < job.n_passes; p++) {
		void *acc = calloc(1, job.acc_bytes[p]);

		m->stats(&job, p, &blk, acc);
		CHECK(m->finish(&job, p, acc, &err) == 0);
		free(acc);
	}
	CHECK(smelt_widen_job_weights(m, &job, mean) == 0);
	m->release(&job);
	free(b);
	free(x[0]);
	free(x[1]);
}

TEST(divergences_match_direct_computation)
{
	struct opened o;
	struct smelt_stats *s;
	size_t ti = 1; /* layer 0 q_proj [8, 8]: columns = input features */

	if (open_family(&o))
		return;
	s = analyse(&o, 2, NULL);
	for (int m = 0; s && m < 2; m++) {
		float *b = tensor_data(ti, 0, 0), *w = tensor_data(ti, seeds[1 + m], scales[1 + m]);
		double mag = 0, dir = 0, mx = 0;
		struct smelt_stats_result r;

		for (int j = 0; j < 8; j++) {
			double bb = 0, ww = 0, wb = 0, md, dd;

			for (int i = 0; i < 8; i++) {
				bb += (double)b[i * 8 + j] * b[i * 8 + j];
				ww += (double)w[i * 8 + j] * w[i * 8 + j];
				wb += (double)w[i * 8 + j] * b[i * 8 + j];
			}
			md = fabs(sqrt(ww) - sqrt(bb));
			dd = 1 - wb / (sqrt(ww) * sqrt(bb));
			mag += md / 8;
			dir += dd / 8;
			mx = fmax(mx, md);
		}
		CHECK(smelt_stats_tensor_result(s, find_tensor(s, family[ti].name), m, &r));
		CHECK_NEAR(r.mag.mean, mag, 1e-12);
		CHECK_NEAR(r.mag.max, mx, 1e-12);
		CHECK_NEAR(r.dir.mean, dir, 1e-9);
		CHECK(r.mag.min <= r.mag.p50 && r.mag.p50 <= r.mag.p90 && r.mag.p90 <= r.mag.p99 &&
		      r.mag.p99 <= r.mag.max);
		free(b);
		free(w);
	}
	smelt_stats_free(s);
	close_family(&o);
}

TEST(weights_match_the_merge_method)
{
	struct opened o;
	struct smelt_stats *s;
	struct smelt_err err;
	const double knobs[3][3] = {{1, 1, 1}, {0.7, 0.5, 0.25}, {-1, 0.8, 2}};

	if (open_family(&o))
		return;
	s = analyse(&o, 1, NULL);
	for (int kv = 0; s && kv < 3; kv++) {
		CHECK(smelt_stats_rescore(s, knobs[kv][0], knobs[kv][1], knobs[kv][2], &err) == 0);
		for (size_t ti = 0; ti < N_FAMILY; ti++) {
			double mean[2];

			method_weights(ti, knobs[kv][0], knobs[kv][1], knobs[kv][2], mean);
			for (int m = 0; m < 2; m++) {
				struct smelt_stats_result r;

				CHECK(smelt_stats_tensor_result(s, find_tensor(s, family[ti].name),
				                                m, &r));
				CHECK_MSG(fabs(r.w.mean_omega - mean[m]) < 1e-6,
				          "%s model %d knobs %d: stats %.9g method %.9g",
				          family[ti].name, m, kv, r.w.mean_omega, mean[m]);
			}
		}
	}
	smelt_stats_free(s);
	close_family(&o);
}

static bool same_results(const struct smelt_stats *a, const struct smelt_stats *b)
{
	for (size_t i = 0; i < smelt_stats_n_tensors(a); i++)
		for (int m = 0; m < 2; m++) {
			struct smelt_stats_result ra, rb;

			smelt_stats_tensor_result(a, i, m, &ra);
			smelt_stats_tensor_result(b, i, m, &rb);
			if (memcmp(&ra, &rb, sizeof(ra)))
				return false;
		}
	for (int l = -1; l < smelt_stats_n_layers(a); l++)
		for (int k = 0; k < SMELT_KIND_COUNT; k++)
			for (int m = 0; m < 2; m++) {
				struct smelt_stats_result ra, rb;

				smelt_stats_cell(a, m, l, (enum smelt_kind)k, &ra);
				smelt_stats_cell(b, m, l, (enum smelt_kind)k, &rb);
				if (memcmp(&ra, &rb, sizeof(ra)))
					return false;
			}
	return true;
}

TEST(thread_count_independent)
{
	struct opened o;
	struct smelt_stats *a, *b;

	if (open_family(&o))
		return;
	a = analyse(&o, 1, NULL);
	b = analyse(&o, 2, NULL);
	CHECK(a && b && same_results(a, b));
	smelt_stats_free(a);
	smelt_stats_free(b);
	close_family(&o);
}

TEST(grid_progress_and_zero_columns)
{
	struct opened o;
	struct smelt_stats *s;
	struct smelt_stats_progress p;
	struct smelt_stats_result r, r0, r1;

	if (open_family(&o))
		return;
	s = analyse(&o, 2, NULL);
	if (!s) {
		close_family(&o);
		return;
	}
	smelt_stats_progress(s, &p);
	CHECK_EQ_INT(p.state, SMELT_STATS_DONE);
	CHECK_EQ_INT(p.tensors_done, N_FAMILY);
	CHECK_EQ_INT(p.tensors_total, N_FAMILY);
	CHECK_EQ_INT(p.bytes_read, p.bytes_total);
	CHECK(p.bytes_total == 3 * 4 * (20 * 8 * 2 + 2 * (64 + 96) + 8 * 5));
	CHECK(!p.from_cache);
	CHECK_EQ_INT(smelt_stats_n_layers(s), 2);
	CHECK(smelt_stats_cell(s, 0, 0, SMELT_KIND_Q, &r));
	CHECK_EQ_INT(r.n_tensors, 2); /* weight + bias */
	CHECK(r.ready && r.n_columns == 16);
	CHECK_EQ_INT(r.mag.n, 8); /* the matrix tensor's columns only */
	CHECK(smelt_stats_cell(s, 0, -1, SMELT_KIND_EMBED, &r));
	CHECK_EQ_INT(r.mag.n, 20); /* transposed: one column per token */
	CHECK(smelt_stats_cell(s, 0, -1, SMELT_KIND_HEAD, &r));
	CHECK_EQ_INT(r.mag.n, 8); /* lm_head is not transposed */
	CHECK(smelt_stats_cell(s, 1, 1, SMELT_KIND_NORM, &r));
	CHECK_EQ_INT(r.n_tensors, 2);
	CHECK_EQ_INT(r.mag.n, 16);
	CHECK_EQ_INT(r.dir.n, 0);
	CHECK(!smelt_stats_cell(s, 0, 0, SMELT_KIND_K, &r));
	/* model 2 zeroes column 3 of down_proj: a NaN direction, counted apart */
	CHECK(smelt_stats_cell(s, 1, 0, SMELT_KIND_DOWN, &r));
	CHECK_EQ_INT(r.dir.n_nan, 1);
	CHECK_EQ_INT(r.dir.n, 11);
	CHECK(isfinite(r.dir.mean) && isfinite(r.w.mean_omega));
	/* the large-shift model diverges more, everywhere */
	for (int l = -1; l < 2; l++)
		for (int k = 0; k < SMELT_KIND_COUNT; k++)
			if (smelt_stats_cell(s, 0, l, (enum smelt_kind)k, &r0) &&
			    smelt_stats_cell(s, 1, l, (enum smelt_kind)k, &r1))
				CHECK_MSG(r1.mag.mean > r0.mag.mean, "layer %d kind %d", l, k);
	CHECK(isfinite(smelt_stats_layer_weight(s, 0, 0)));
	CHECK(isnan(smelt_stats_layer_weight(s, 0, 7)));
	smelt_stats_free(s);
	close_family(&o);
}

TEST(rescore_round_trip)
{
	struct opened o;
	struct smelt_stats *a, *b;
	struct smelt_err err;
	struct smelt_stats_result r;
	double t, sc, T;

	if (open_family(&o))
		return;
	a = analyse(&o, 2, NULL);
	b = analyse(&o, 2, NULL);
	if (!a || !b)
		goto out;
	CHECK(smelt_stats_rescore(a, -1, 0.5, 1, &err) == 0);
	smelt_stats_knobs(a, &t, &sc, &T);
	CHECK(t == -1 && sc == 0.5 && T == 1);
	/* t < 0: everything calibrated, omega = s everywhere */
	CHECK(smelt_stats_cell(a, 1, 0, SMELT_KIND_DOWN, &r));
	CHECK_NEAR(r.w.mean_omega, 0.5, 1e-15);
	CHECK_NEAR(r.w.frac_cal_mag, 1.0, 0);
	CHECK(!same_results(a, b));
	CHECK(smelt_stats_rescore(a, 1, 1, 1, &err) == 0);
	CHECK(same_results(a, b));
	CHECK(smelt_stats_rescore(a, 1, 1, 0, &err) == SMELT_EINVAL);
	CHECK_STR_CONTAINS(err.msg, "temperature");
out:
	smelt_stats_free(a);
	smelt_stats_free(b);
	close_family(&o);
}

TEST(cache_reuse_and_invalidation)
{
	struct opened o;
	char cache[1100], path[1100];
	struct smelt_stats *a, *b, *c;
	struct smelt_stats_progress p;
	struct timespec ts[2] = {{0, UTIME_OMIT}, {1000000000, 0}};

	snprintf(cache, sizeof(cache), "%s/cache", check_tmpdir());
	if (open_family(&o))
		return;
	a = analyse(&o, 2, cache);
	b = analyse(&o, 1, cache);
	if (!a || !b)
		goto out;
	smelt_stats_progress(a, &p);
	CHECK(!p.from_cache);
	smelt_stats_progress(b, &p);
	CHECK(p.from_cache);
	CHECK_EQ_INT(p.tensors_done, N_FAMILY);
	CHECK(same_results(a, b));
	CHECK_STR_CONTAINS(smelt_stats_cache_path(a), cache);
	CHECK(access(smelt_stats_cache_path(a), R_OK) == 0);
	close_family(&o);
	/* a touched model file is a different input */
	snprintf(path, sizeof(path), "%s/model.safetensors", dirs[2]);
	CHECK(utimensat(AT_FDCWD, path, ts, 0) == 0);
	if (open_family(&o))
		goto out;
	c = analyse(&o, 2, cache);
	if (c) {
		smelt_stats_progress(c, &p);
		CHECK(!p.from_cache);
		CHECK(same_results(a, c));
		CHECK(strcmp(smelt_stats_cache_path(a), smelt_stats_cache_path(c)) != 0);
	}
	smelt_stats_free(c);
out:
	smelt_stats_free(a);
	smelt_stats_free(b);
	close_family(&o);
}

static struct smelt_stats *cancel_target;

static void cancel_on_first(void *ctx, size_t i)
{
	(void)ctx, (void)i;
	smelt_stats_cancel(cancel_target);
}

TEST(cancel_and_thread_api)
{
	struct opened o;
	struct smelt_stats_opts opts;
	struct smelt_stats *s = NULL;
	struct smelt_err err;
	struct smelt_stats_progress p;

	if (open_family(&o))
		return;
	smelt_stats_opts_default(&opts);
	opts.no_cache = true;
	opts.on_tensor = cancel_on_first;
	CHECK(smelt_stats_open(&s, &o.c[0], o.models, 2, &opts, &err) == 0);
	if (s) {
		/* the callback cancels after the first tensor */
		cancel_target = s;
		CHECK(smelt_stats_start(s, &err) == 0);
		CHECK(smelt_stats_wait(s, &err) == SMELT_ECANCELED);
		smelt_stats_progress(s, &p);
		CHECK_EQ_INT(p.state, SMELT_STATS_CANCELED);
		CHECK_EQ_INT(p.tensors_done, 1);
		smelt_stats_free(s);
	}
	close_family(&o);
}

/* A reader polling cells, progress and re-scoring while the analysis runs
 * on its own thread always sees consistent results. */
TEST(poll_while_running)
{
	struct opened o;
	struct smelt_stats_opts opts;
	struct smelt_stats *s = NULL;
	struct smelt_err err;
	struct smelt_stats_progress p;
	int polls = 0;

	if (open_family(&o))
		return;
	smelt_stats_opts_default(&opts);
	opts.no_cache = true;
	opts.threads = 2;
	CHECK(smelt_stats_open(&s, &o.c[0], o.models, 2, &opts, &err) == 0);
	if (!s) {
		close_family(&o);
		return;
	}
	CHECK(smelt_stats_start(s, &err) == 0);
	do {
		smelt_stats_progress(s, &p);
		for (int l = -1; l < smelt_stats_n_layers(s); l++)
			for (int k = 0; k < SMELT_KIND_COUNT; k++) {
				struct smelt_stats_result r;

				if (smelt_stats_cell(s, 1, l, (enum smelt_kind)k, &r) && r.ready)
					CHECK(r.n_columns > 0 && r.mag.n + r.mag.n_nan > 0);
			}
		if (polls++ % 7 == 3)
			CHECK(smelt_stats_rescore(s, 1.0 + 0.01 * polls, 1, 1, &err) == 0);
		CHECK(p.tensors_done <= p.tensors_total && p.bytes_read <= p.bytes_total);
	} while (p.state == SMELT_STATS_RUNNING);
	CHECK(smelt_stats_wait(s, &err) == 0);
	smelt_stats_progress(s, &p);
	CHECK_EQ_INT(p.state, SMELT_STATS_DONE);
	CHECK_EQ_INT(p.tensors_done, N_FAMILY);
	smelt_stats_free(s);
	close_family(&o);
}

TEST(exclusions_and_open_errors)
{
	struct opened o;
	struct smelt_stats_opts opts;
	struct smelt_stats *s = NULL;
	struct smelt_err err;
	const char *ex[] = {"model\\.layers\\.1\\.", "norm"};
	struct smelt_stats_result r;

	if (open_family(&o))
		return;
	smelt_stats_opts_default(&opts);
	opts.no_cache = true;
	opts.exclude = ex;
	opts.n_exclude = 2;
	CHECK(smelt_stats_open(&s, &o.c[0], o.models, 2, &opts, &err) == 0);
	if (s) {
		CHECK(smelt_stats_run(s, &err) == 0);
		CHECK(smelt_stats_tensor_info(s, find_tensor(s, family[5].name))->excluded);
		/* re.match: "norm" must match at the start, so model.norm is kept */
		CHECK(!smelt_stats_tensor_info(s, find_tensor(s, "model.norm.weight"))->excluded);
		CHECK(smelt_stats_cell(s, 1, 1, SMELT_KIND_DOWN, &r));
		CHECK(r.w.mean_omega == 0 && r.mag.mean > 0);
		CHECK_NEAR(smelt_stats_layer_weight(s, 0, 1), 0, 0);
		smelt_stats_free(s);
		s = NULL;
	}
	ex[0] = "(";
	CHECK(smelt_stats_open(&s, &o.c[0], o.models, 2, &opts, &err) == SMELT_EINVAL);
	CHECK_STR_CONTAINS(err.msg, "exclude regex");
	opts.n_exclude = 0;
	opts.temperature = -1;
	CHECK(smelt_stats_open(&s, &o.c[0], o.models, 2, &opts, &err) == SMELT_EINVAL);
	opts.temperature = 1;
	CHECK(smelt_stats_open(&s, &o.c[0], o.models, 0, &opts, &err) == SMELT_EINVAL);
	close_family(&o);
}

/* A model with a larger vocabulary, an extra tensor, a tensor of another
 * shape and one missing: vocab tensors compare over the common rows, the
 * others are skipped with a note. */
TEST(mismatched_models)
{
	char dir[1100];
	struct smelt_st_out_tensor ts[N_FAMILY];
	const void *data[N_FAMILY];
	struct smelt_ckpt base, odd;
	const struct smelt_ckpt *models[1];
	struct smelt_stats_opts opts;
	struct smelt_stats *s = NULL;
	struct smelt_err err;
	size_t n = 0;

	snprintf(dir, sizeof(dir), "%s/odd", check_tmpdir());
	mkdir(dir, 0755);
	for (size_t i = 0; i < N_FAMILY; i++) {
		size_t cnt;
		float *v;

		if (strcmp(family[i].name, "model.norm.weight") == 0)
			continue; /* missing */
		memset(&ts[n], 0, sizeof(ts[n]));
		ts[n].name = family[i].name;
		ts[n].dtype = SMELT_BF16;
		ts[n].ndim = family[i].ndim;
		ts[n].shape[0] = family[i].shape[0];
		ts[n].shape[1] = family[i].shape[1];
		if (strstr(family[i].name, "embed_tokens"))
			ts[n].shape[0] = 24; /* 4 added tokens */
		if (strcmp(family[i].name, "model.layers.0.mlp.down_proj.weight") == 0)
			ts[n].shape[1] = 10; /* not comparable */
		cnt = ts[n].ndim == 1 ? (size_t)ts[n].shape[0]
		                      : (size_t)(ts[n].shape[0] * ts[n].shape[1]);
		v = malloc(cnt * sizeof(uint16_t));
		for (size_t e = 0; e < cnt; e++)
			((uint16_t *)v)[e] = smelt_f32_to_bf16(value(3 + (uint32_t)i, e));
		data[n++] = v;
	}
	snprintf(dir + strlen(dir), sizeof(dir) - strlen(dir), "/model.safetensors");
	CHECK_MSG(smelt_st_write_file(dir, ts, data, n, &err) == 0, "%s", err.msg);
	for (size_t i = 0; i < n; i++)
		free((void *)data[i]);
	*strrchr(dir, '/') = '\0';
	if (smelt_ckpt_open(&base, dirs[0], &err)) {
		check_fail(__FILE__, __LINE__, "%s", err.msg);
		return;
	}
	if (smelt_ckpt_open(&odd, dir, &err)) {
		check_fail(__FILE__, __LINE__, "%s", err.msg);
		smelt_ckpt_close(&base);
		return;
	}
	models[0] = &odd;
	smelt_stats_opts_default(&opts);
	opts.no_cache = true;
	CHECK(smelt_stats_open(&s, &base, models, 1, &opts, &err) == 0);
	if (s) {
		const struct smelt_stats_tensor_info *in;
		struct smelt_stats_progress p;

		CHECK(smelt_stats_run(s, &err) == 0);
		in = smelt_stats_tensor_info(s, find_tensor(s, "model.embed_tokens.weight"));
		CHECK(in->branch == SMELT_BRANCH_MATRIX_T && in->k == 20);
		CHECK_STR_CONTAINS(in->note, "first 20 rows");
		in = smelt_stats_tensor_info(s,
		                             find_tensor(s, "model.layers.0.mlp.down_proj.weight"));
		CHECK(in->branch == SMELT_BRANCH_SKIPPED);
		CHECK_STR_CONTAINS(in->note, "shape differs");
		in = smelt_stats_tensor_info(s, find_tensor(s, "model.norm.weight"));
		CHECK(in->branch == SMELT_BRANCH_SKIPPED);
		CHECK_STR_CONTAINS(in->note, "missing");
		CHECK(!smelt_stats_tensor_result(s, find_tensor(s, "model.norm.weight"), 0,
		                                 &(struct smelt_stats_result){0}));
		smelt_stats_progress(s, &p);
		CHECK_EQ_INT(p.tensors_total, N_FAMILY - 2);
		CHECK_EQ_INT(p.tensors_done, N_FAMILY - 2);
		CHECK_EQ_INT(p.bytes_read, p.bytes_total);
		smelt_stats_free(s);
	}
	smelt_ckpt_close(&odd);
	smelt_ckpt_close(&base);
}

/* A damaged cache file is ignored and rewritten. */
TEST(damaged_cache_is_recomputed)
{
	struct opened o;
	char cache[1100];
	struct smelt_stats *a, *b, *c;
	struct smelt_stats_progress p;
	FILE *f;

	snprintf(cache, sizeof(cache), "%s/cache2", check_tmpdir());
	if (open_family(&o))
		return;
	a = analyse(&o, 2, cache);
	if (!a)
		goto out;
	CHECK(truncate(smelt_stats_cache_path(a), 100) == 0);
	b = analyse(&o, 2, cache);
	if (b) {
		smelt_stats_progress(b, &p);
		CHECK(!p.from_cache);
		CHECK(same_results(a, b));
	}
	f = fopen(smelt_stats_cache_path(a), "r+b");
	if (f) {
		fseek(f, 300, SEEK_SET);
		fputs("garbage!", f);
		fclose(f);
	}
	c = analyse(&o, 2, cache);
	if (c) {
		smelt_stats_progress(c, &p);
		CHECK(!p.from_cache); /* the digest no longer matches */
		CHECK(same_results(a, c));
	}
	smelt_stats_free(b);
	smelt_stats_free(c);
out:
	smelt_stats_free(a);
	close_family(&o);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Re-scoring cost on the tensor list of a Llama-2-7B (32 layers, hidden
 * 4096, MLP 11008, vocab 32000), two models, with synthetic per-column
 * divergences: only softmax and calibration are redone. */
TEST(rescore_time_7b_shape)
{
	static const struct {
		const char *fmt;
		int ndim;
		uint64_t r, c;
	} per_layer[] = {
	    {"model.layers.%d.self_attn.q_proj.weight", 2, 4096, 4096},
	    {"model.layers.%d.self_attn.k_proj.weight", 2, 4096, 4096},
	    {"model.layers.%d.self_attn.v_proj.weight", 2, 4096, 4096},
	    {"model.layers.%d.self_attn.o_proj.weight", 2, 4096, 4096},
	    {"model.layers.%d.mlp.gate_proj.weight", 2, 11008, 4096},
	    {"model.layers.%d.mlp.up_proj.weight", 2, 11008, 4096},
	    {"model.layers.%d.mlp.down_proj.weight", 2, 4096, 11008},
	    {"model.layers.%d.input_layernorm.weight", 1, 4096, 0},
	    {"model.layers.%d.post_attention_layernorm.weight", 1, 4096, 0},
	};
	const int L = getenv("SMELT_BENCH_RESCORE") ? 32 : 4, n = 2;
	size_t nt = (size_t)L * 9 + 3, i = 0;
	struct stats_shape *sh = calloc(nt, sizeof(*sh));
	char(*names)[96] = calloc(nt, 96);
	struct smelt_stats_opts opts;
	struct smelt_stats *s = NULL;
	struct smelt_err err;
	double t0, dt, cols = 0;

	smelt_stats_opts_default(&opts);
	sh[i++] = (struct stats_shape){"model.embed_tokens.weight", 2, {32000, 4096}};
	for (int l = 0; l < L; l++)
		for (size_t p = 0; p < 9; p++, i++) {
			snprintf(names[i], 96, per_layer[p].fmt, l);
			sh[i].name = names[i];
			sh[i].ndim = per_layer[p].ndim;
			sh[i].shape[0] = per_layer[p].r;
			sh[i].shape[1] = per_layer[p].c;
		}
	sh[i++] = (struct stats_shape){"model.norm.weight", 1, {4096}};
	sh[i++] = (struct stats_shape){"lm_head.weight", 2, {32000, 4096}};
	CHECK(stats_open_shapes(&s, n, sh, nt, &opts, &err) == 0);
	for (i = 0; s && i < nt; i++) {
		const struct smelt_stats_tensor_info *in = smelt_stats_tensor_info(s, i);
		size_t k = (size_t)in->k;
		bool vec = in->branch == SMELT_BRANCH_VECTOR;
		double *mag = malloc((size_t)n * k * 8),
		       *dir = vec ? NULL : malloc((size_t)n * k * 8);
		uint32_t *pm = malloc((size_t)n * k * 4),
		         *pq = vec ? NULL : malloc((size_t)n * k * 4);
		double *mean_a = vec ? calloc((size_t)n, 8) : NULL;

		for (size_t e = 0; e < (size_t)n * k; e++) {
			mag[e] = value((uint32_t)i, e) + 0.5;
			if (dir)
				dir[e] = value((uint32_t)i + 7, e) + 0.5;
			if (vec)
				mean_a[e / k] += mag[e] / (double)k;
		}
		for (int m = 0; m < n; m++) {
			CHECK(widen_positions(mag + (size_t)m * k, k, pm + (size_t)m * k) == 0);
			if (dir)
				CHECK(widen_positions(dir + (size_t)m * k, k, pq + (size_t)m * k) ==
				      0);
		}
		cols += (double)k;
		CHECK(stats_install(s, i, mag, dir, pm, pq, mean_a, &err) == 0);
	}
	t0 = now_s();
	CHECK(s && smelt_stats_rescore(s, 0.8, 0.9, 0.5, &err) == 0);
	dt = now_s() - t0;
	printf("  re-score of %d layers (%.0f columns x %d models): %.3f s\n", L, cols, n, dt);
	CHECK_MSG(dt < (L == 32 ? 1.0 : 0.5) * 4, "re-score took %.3f s", dt);
	smelt_stats_free(s);
	free(sh);
	free(names);
}

int main(void)
{
	make_family();
	RUN(divergences_match_direct_computation);
	RUN(weights_match_the_merge_method);
	RUN(thread_count_independent);
	RUN(grid_progress_and_zero_columns);
	RUN(rescore_round_trip);
	RUN(cache_reuse_and_invalidation);
	RUN(cancel_and_thread_api);
	RUN(poll_while_running);
	RUN(exclusions_and_open_errors);
	RUN(mismatched_models);
	RUN(damaged_cache_is_recomputed);
	RUN(rescore_time_7b_shape);
	return check_summary();
}

/*
 * test_methods_fused.c: every method's fused bfloat16 kernel (merge_bf16)
 * gives exactly the bits of the f32 path it stands in for: inputs converted
 * to f32, merge() through smelt_run_job_mem, the result rounded to bf16.
 * Inputs mix ordinary values with the awkward ones (signed zeros,
 * subnormals, infinities, NaNs, values that round at the half-way point)
 * under several parameter settings, for 1, 2 and 5 models.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "smelt/dtype.h"
#include "smelt/method.h"

#define N 4099 /* not a multiple of any tile or vector width */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t next_u32(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state >> 16);
}

/* Mostly weight-like values near a shared base value, some specials. */
static uint16_t sample_bf16(uint16_t near)
{
	static const uint16_t specials[] = {0x0000, 0x8000, 0x0001, 0x8001, 0x007f, 0x7f80,
					    0xff80, 0x7fc0, 0xffc1, 0x7f7f, 0xff7f, 0x3f80};
	uint32_t r = next_u32();

	if (r % 50 == 0)
		return specials[(r / 50) % (sizeof(specials) / sizeof(specials[0]))];
	return (uint16_t)(near + (int)(r % 64) - 32);
}

struct setting {
	const char *method;
	int n_models;
	bool with_base;
	double lambda;    /* task_arithmetic */
	double normalize; /* task_arithmetic, linear */
};

static void run_setting(const struct setting *s)
{
	const struct smelt_method *m = smelt_method_find(s->method);
	int n = s->n_models, np;
	uint16_t *in16[8], *out16 = malloc(N * sizeof(uint16_t)), *ref16 = malloc(N * sizeof(uint16_t));
	float *in32[8], *out32 = malloc(N * sizeof(float));
	double pg[16], pm[8 * 16];
	uint64_t keys[8] = {0};
	struct smelt_tensor_job job;
	struct smelt_err err;
	int total = n + (s->with_base ? 1 : 0);
	int w = m ? smelt_method_param(m, "weight") : -1;

	CHECK(m && m->merge_bf16 && w >= 0);
	if (!m || !m->merge_bf16 || w < 0)
		goto out;
	np = m->n_params;
	for (int p = 0; p < np; p++) {
		pg[p] = m->params[p].def;
		for (int i = 0; i < n; i++)
			pm[i * np + p] = m->params[p].def;
	}
	if (smelt_method_param(m, "lambda") >= 0)
		pg[smelt_method_param(m, "lambda")] = s->lambda;
	pg[smelt_method_param(m, "normalize")] = s->normalize;
	for (int i = 0; i < n; i++)
		pm[i * np + w] = 0.1 + 0.37 * i - (i == 2 ? 0.9 : 0.0);
	for (int k = 0; k < total; k++) {
		in16[k] = malloc(N * sizeof(uint16_t));
		in32[k] = malloc(N * sizeof(float));
		for (size_t e = 0; e < N; e++)
			in16[k][e] = sample_bf16((uint16_t)(0x3c00 + (e % 7) * 0x80));
		smelt_to_f32(SMELT_BF16, in16[k], in32[k], N);
	}
	memset(&job, 0, sizeof(job));
	job.name = "t";
	job.ndim = 2;
	job.shape[0] = 1;
	job.shape[1] = N;
	job.layer = -1;
	job.n_models = n;
	job.has_base = s->with_base;
	job.n_params = np;
	job.pg = pg;
	job.pm = pm;
	job.rng_key = keys;
	CHECK_EQ_INT(smelt_run_job_mem(m, &job, s->with_base ? in32[0] : NULL,
				       (const float *const *)(in32 + (s->with_base ? 1 : 0)), out32,
				       1, &err),
		     0);
	smelt_from_f32(SMELT_BF16, out32, ref16, N);
	m->merge_bf16(&job, s->with_base ? in16[0] : NULL,
		      (const uint16_t *const *)(in16 + (s->with_base ? 1 : 0)), out16, N);
	for (size_t e = 0; e < N; e++)
		if (out16[e] != ref16[e]) {
			CHECK_MSG(0, "%s, %d models, lambda %g, normalize %g: element %zu: fused 0x%04x, "
				     "f32 path 0x%04x",
				  s->method, n, s->lambda, s->normalize, e, out16[e], ref16[e]);
			break;
		}
	for (int k = 0; k < total; k++) {
		free(in16[k]);
		free(in32[k]);
	}
out:
	free(out16);
	free(ref16);
	free(out32);
}

static const struct setting settings[] = {
	{"task_arithmetic", 1, true, 1.0, 0},
	{"task_arithmetic", 2, true, 1.0, 0},
	{"task_arithmetic", 2, true, 0.7, 1},
	{"task_arithmetic", 5, true, 1.3, 0},
	{"linear", 1, false, 1.0, 1},
	{"linear", 2, false, 1.0, 1},
	{"linear", 2, false, 1.0, 0},
	{"linear", 5, false, 1.0, 1},
};

TEST(fused_bf16_matches_f32_path)
{
	for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++)
		run_setting(&settings[i]);
}

/* Every method that has a fused kernel is covered by the table above. */
TEST(every_fused_method_is_tested)
{
	for (size_t i = 0; i < smelt_method_count(); i++) {
		const struct smelt_method *m = smelt_method_at(i);
		bool listed = false;

		if (!m->merge_bf16)
			continue;
		for (size_t k = 0; k < sizeof(settings) / sizeof(settings[0]); k++)
			listed |= strcmp(settings[k].method, m->name) == 0;
		CHECK_MSG(listed, "%s has merge_bf16 but no setting in this test", m->name);
		CHECK_MSG(!m->setup && !m->stats, "%s: merge_bf16 needs a method without setup",
			  m->name);
	}
}

int main(void)
{
	RUN(fused_bf16_matches_f32_path);
	RUN(every_fused_method_is_tested);
	return check_summary();
}

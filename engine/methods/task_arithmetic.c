/* task_arithmetic.c: base plus a weighted sum of task vectors (mergekit
 * "task_arithmetic", the generalized task arithmetic without sparsification
 * or sign consensus). */
#include <math.h>

#include "geom.h"
#include "smelt/method.h"
#include "../floatbits.h"
#include "../simd.h"

enum { P_WEIGHT, P_DENSITY, P_LAMBDA, P_NORMALIZE, P_RESCALE, P_INT8_MASK, N_PARAMS };

static const struct smelt_param_def params[N_PARAMS] = {
    [P_WEIGHT] = {"weight", SMELT_PARAM_FLOAT, SMELT_SCOPE_MODEL, true, 0, -INFINITY, INFINITY,
                  NULL, "weight of this model's task vector (model - base)", false},
    [P_DENSITY] = {"density", SMELT_PARAM_FLOAT, SMELT_SCOPE_MODEL, false, 1, -INFINITY, INFINITY,
                   NULL, "accepted for mergekit compatibility; task_arithmetic does not sparsify",
                   true},
    [P_LAMBDA] = {"lambda", SMELT_PARAM_FLOAT, SMELT_SCOPE_GLOBAL, false, 1, -INFINITY, INFINITY,
                  NULL, "scale of the merged task vector", false},
    [P_NORMALIZE] = {"normalize", SMELT_PARAM_BOOL, SMELT_SCOPE_GLOBAL, false, 0, 0, 1, NULL,
                     "divide the weighted sum by the sum of the weights", false},
    [P_RESCALE] = {"rescale", SMELT_PARAM_BOOL, SMELT_SCOPE_GLOBAL, false, 0, 0, 1, NULL,
                   "accepted for mergekit compatibility; without sparsification there is "
                   "nothing to rescale",
                   true},
    [P_INT8_MASK] = {"int8_mask", SMELT_PARAM_BOOL, SMELT_SCOPE_GLOBAL, false, 0, 0, 1, NULL,
                     "accepted for mergekit compatibility; no effect on results", true},
};

static double weight_of(const struct smelt_tensor_job *job, int i)
{
	return (double)(float)smelt_pm(job, i, P_WEIGHT);
}

/* mergekit's divisor: the weight sum, replaced by 1 when |sum| < 1e-8. */
static double divisor(const struct smelt_tensor_job *job)
{
	double s = 0;

	if (smelt_pg(job, P_NORMALIZE) == 0)
		return 1.0;
	for (int i = 0; i < job->n_models; i++)
		s += weight_of(job, i);
	return fabs(s) < 1e-8 ? 1.0 : s;
}

static int ta_check(const struct smelt_tensor_job *job, struct smelt_err *err)
{
	return smelt_geom_check_base(job, "task_arithmetic", err) ? SMELT_EINVAL : 0;
}

/* Tiles of TA_TILE elements: per model, acc += w_i * (x_i - b) in f32 as
 * torch does ((deltas * weights).sum(0)), a loop the compiler vectorises;
 * then y = b + lambda * acc / divisor. */
#define TA_TILE 1024

static SMELT_HOT void ta_merge(const struct smelt_tensor_job *job, const struct smelt_block *b, float *out)
{
	size_t n = (size_t)(b->nrows * job->cols);
	float scale = (float)(smelt_pg(job, P_LAMBDA) / divisor(job));
	float acc[TA_TILE];

	for (size_t t0 = 0; t0 < n; t0 += TA_TILE) {
		size_t len = n - t0 < TA_TILE ? n - t0 : TA_TILE;
		const float *base = b->base + t0;

		for (size_t e = 0; e < len; e++)
			acc[e] = 0.0f;
		for (int i = 0; i < job->n_models; i++) {
			const float *x = b->x[i] + t0;
			float w = (float)weight_of(job, i);

			for (size_t e = 0; e < len; e++)
				acc[e] += w * (x[e] - base[e]);
		}
		for (size_t e = 0; e < len; e++)
			out[t0 + e] = base[e] + acc[e] * scale;
	}
}

/* ta_merge on bf16 inputs and output: the same f32 operations in the same
 * order, converting on the way in and rounding on the way out. */
static SMELT_HOT void ta_merge_bf16(const struct smelt_tensor_job *job, const uint16_t *base,
                                   const uint16_t *const *x, uint16_t *out, size_t n)
{
	float scale = (float)(smelt_pg(job, P_LAMBDA) / divisor(job));
	float acc[TA_TILE], b[TA_TILE];

	for (size_t t0 = 0; t0 < n; t0 += TA_TILE) {
		size_t len = n - t0 < TA_TILE ? n - t0 : TA_TILE;

		for (size_t e = 0; e < len; e++) {
			b[e] = smelt_bf16_f32_inline(base[t0 + e]);
			acc[e] = 0.0f;
		}
		for (int i = 0; i < job->n_models; i++) {
			const uint16_t *xi = x[i] + t0;
			float w = (float)weight_of(job, i);

			for (size_t e = 0; e < len; e++)
				acc[e] += w * (smelt_bf16_f32_inline(xi[e]) - b[e]);
		}
		for (size_t e = 0; e < len; e++)
			out[t0 + e] = smelt_f32_bf16_inline(b[e] + acc[e] * scale);
	}
}

const struct smelt_method smelt_method_task_arithmetic = {
    .name = "task_arithmetic",
    .summary = "base + lambda * weighted sum of task vectors",
    .help = "y = b + lambda * sum_i weight_i * (x_i - b), divided by sum_i weight_i when\n"
            "normalize is true (default false; a weight sum below 1e-8 in magnitude\n"
            "divides by 1). weight is per model and required; lambda (default 1) and\n"
            "normalize are global. A base is required. density (per model), rescale\n"
            "and int8_mask are accepted like mergekit does but change nothing here.",
    .paper = "Ilharco et al. 2023, Editing Models with Task Arithmetic, "
             "https://arxiv.org/abs/2212.04089",
    .base = SMELT_BASE_REQUIRED,
    .min_models = 1,
    .max_models = 0,
    .params = params,
    .n_params = N_PARAMS,
    .check = ta_check,
    .merge = ta_merge,
    .merge_bf16 = ta_merge_bf16,
};

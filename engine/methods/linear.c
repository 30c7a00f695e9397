/* linear.c: weighted average of the models (mergekit "linear"). */
#include <math.h>

#include "smelt/method.h"
#include "../floatbits.h"
#include "../simd.h"

enum { P_WEIGHT, P_NORMALIZE, N_PARAMS };

static const struct smelt_param_def params[N_PARAMS] = {
    [P_WEIGHT] = {"weight", SMELT_PARAM_FLOAT, SMELT_SCOPE_MODEL, true, 0, -INFINITY, INFINITY,
                  NULL, "this model's weight in the sum", false},
    [P_NORMALIZE] = {"normalize", SMELT_PARAM_BOOL, SMELT_SCOPE_GLOBAL, false, 1, 0, 1, NULL,
                     "divide by the sum of the weights", false},
};

/* mergekit casts the weights to the compute dtype (f32) before summing. */
static double weight_of(const struct smelt_tensor_job *job, int i)
{
	return (double)(float)smelt_pm(job, i, P_WEIGHT);
}

static double weight_sum(const struct smelt_tensor_job *job)
{
	double s = 0;

	for (int i = 0; i < job->n_models; i++)
		s += weight_of(job, i);
	return s;
}

static int linear_check(const struct smelt_tensor_job *job, struct smelt_err *err)
{
	if (job->has_base)
		return smelt_fail(err, SMELT_EINVAL,
		                  "linear: tensor %s: a base model is merged as one more model "
		                  "with its own weight, not as a base",
		                  job->name);
	if (smelt_pg(job, P_NORMALIZE) != 0 && weight_sum(job) == 0)
		return smelt_fail(
		    err, SMELT_EINVAL,
		    "linear: tensor %s: the weights sum to 0, so normalize=true would "
		    "divide by zero (set normalize: false or change a weight)",
		    job->name);
	return 0;
}

static void linear_merge(const struct smelt_tensor_job *job, const struct smelt_block *b,
                         float *out)
{
	size_t n = (size_t)(b->nrows * job->cols);
	double div = smelt_pg(job, P_NORMALIZE) != 0 ? weight_sum(job) : 1.0;

	for (size_t e = 0; e < n; e++) {
		double s = 0;

		for (int i = 0; i < job->n_models; i++)
			s += weight_of(job, i) * (double)b->x[i][e];
		out[e] = (float)(s / div);
	}
}

/* linear_merge on bf16 inputs and output (no base: linear has none), in
 * tiles: each element's sum still adds the models in order, in double. */
#define LINEAR_TILE 512

static SMELT_HOT void linear_merge_bf16(const struct smelt_tensor_job *job, const uint16_t *base,
                                        const uint16_t *const *x, uint16_t *out, size_t n)
{
	double div = smelt_pg(job, P_NORMALIZE) != 0 ? weight_sum(job) : 1.0;
	double acc[LINEAR_TILE];

	(void)base;
	for (size_t t0 = 0; t0 < n; t0 += LINEAR_TILE) {
		size_t len = n - t0 < LINEAR_TILE ? n - t0 : LINEAR_TILE;

		for (size_t e = 0; e < len; e++)
			acc[e] = 0;
		for (int i = 0; i < job->n_models; i++) {
			const uint16_t *xi = x[i] + t0;
			double w = weight_of(job, i);

			for (size_t e = 0; e < len; e++)
				acc[e] += w * (double)smelt_bf16_f32_inline(xi[e]);
		}
		for (size_t e = 0; e < len; e++)
			out[t0 + e] = smelt_f32_bf16_inline((float)(acc[e] / div));
	}
}

const struct smelt_method smelt_method_linear = {
    .name = "linear",
    .summary = "weighted average of the models",
    .help = "y = sum_i weight_i * x_i, divided by sum_i weight_i when normalize is true\n"
            "(the default). weight is per model and required. No base is needed: a\n"
            "base_model, if given, is merged as one more model and needs a weight like\n"
            "the others (e.g. from the top-level parameters), as in mergekit.\n"
            "With normalize=true the weights may not sum to 0.",
    .paper = "Wortsman et al. 2022, Model soups, https://arxiv.org/abs/2203.05482",
    .base = SMELT_BASE_AS_MODEL,
    .min_models = 1,
    .max_models = 0,
    .params = params,
    .n_params = N_PARAMS,
    .check = linear_check,
    .merge = linear_merge,
    .merge_bf16 = linear_merge_bf16,
};

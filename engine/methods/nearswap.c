/* nearswap.c: take the other model's value where it is close to the base
 * (mergekit "nearswap"). */
#include <math.h>

#include "geom.h"
#include "smelt/method.h"

enum { P_T, N_PARAMS };

static const struct smelt_param_def params[N_PARAMS] = {
    [P_T] = {"t", SMELT_PARAM_FLOAT, SMELT_SCOPE_GLOBAL, true, 0, -INFINITY, INFINITY, NULL,
             "sameness threshold (> 0, e.g. 1e-4): differences below it swap fully", false},
};

static int nearswap_check(const struct smelt_tensor_job *job, struct smelt_err *err)
{
	double t = smelt_pg(job, P_T);

	if (smelt_geom_check_base(job, "nearswap", err))
		return SMELT_EINVAL;
	if (job->n_models != 1)
		return smelt_fail(err, SMELT_EINVAL,
		                  "nearswap: tensor %s: needs exactly 1 model besides the base, "
		                  "got %d",
		                  job->name, job->n_models);
	if (!(t > 0))
		return smelt_fail(err, SMELT_EINVAL, "nearswap: tensor %s: t must be > 0, got %g",
		                  job->name, t);
	return 0;
}

/* a = clamp(t / |b - x|, 0, 1) with t/0 (and NaN) taken as 1, all in f32. */
static void nearswap_merge(const struct smelt_tensor_job *job, const struct smelt_block *b,
                           float *out)
{
	size_t n = (size_t)(b->nrows * job->cols);
	float t = (float)smelt_pg(job, P_T);

	for (size_t e = 0; e < n; e++) {
		float base = b->base[e], x = b->x[0][e];
		float a = t / fabsf(base - x);

		if (!isfinite(a))
			a = 1.0f;
		a = fminf(fmaxf(a, 0.0f), 1.0f);
		out[e] = a * x + (1.0f - a) * base;
	}
}

const struct smelt_method smelt_method_nearswap = {
    .name = "nearswap",
    .summary = "swap in the other model's weights where they are near the base",
    .help = "a = clamp(t / |b - x|, 0, 1) element by element (a = 1 where b = x),\n"
            "y = a x + (1 - a) b: entries closer than t to the base take the model's\n"
            "value, farther ones move toward it by t. t is global, required and > 0\n"
            "(the reference merge used 1e-4). Needs a base and exactly 1 other model.",
    .paper = "alchemonaut, QuartetAnemoi-70B-t0.0001, "
             "https://huggingface.co/alchemonaut/QuartetAnemoi-70B-t0.0001",
    .base = SMELT_BASE_REQUIRED,
    .min_models = 1,
    .max_models = 1,
    .params = params,
    .n_params = N_PARAMS,
    .check = nearswap_check,
    .merge = nearswap_merge,
};

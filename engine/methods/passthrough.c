/* passthrough.c: copy the single input, optionally scaled (mergekit
 * "passthrough"; the layer mapping of slices is the planner's job). */
#include <math.h>
#include <string.h>

#include "smelt/method.h"

enum { P_SCALE, N_PARAMS };

static const struct smelt_param_def params[N_PARAMS] = {
    [P_SCALE] = {"scale", SMELT_PARAM_FLOAT, SMELT_SCOPE_MODEL, false, 1, -INFINITY, INFINITY, NULL,
                 "multiply the tensor by this factor (e.g. 0 to zero a projection)", false},
};

static int pt_check(const struct smelt_tensor_job *job, struct smelt_err *err)
{
	if (job->n_models != 1)
		return smelt_fail(err, SMELT_EINVAL,
		                  "passthrough: tensor %s: exactly one model per tensor, got %d "
		                  "(use slices with one source each)",
		                  job->name, job->n_models);
	return 0;
}

static void pt_merge(const struct smelt_tensor_job *job, const struct smelt_block *b, float *out)
{
	size_t n = (size_t)(b->nrows * job->cols);
	float s = (float)smelt_pm(job, 0, P_SCALE);

	if (s == 1.0f) {
		memcpy(out, b->x[0], n * sizeof(*out));
		return;
	}
	/* like torch: f32 tensor times the scalar rounded to f32 */
	for (size_t e = 0; e < n; e++)
		out[e] = b->x[0][e] * s;
}

const struct smelt_method smelt_method_passthrough = {
    .name = "passthrough",
    .summary = "copy one model's tensor unchanged (frankenmerge slices)",
    .help = "y = x, times scale when scale is given (per model, default 1).\n"
            "Exactly one model per tensor, no base. With slices, each output layer\n"
            "comes from the one source listed for it; stacking layer ranges of\n"
            "several models builds a deeper model (a \"frankenmerge\").",
    .paper = NULL,
    .base = SMELT_BASE_NONE,
    .min_models = 1,
    .max_models = 1,
    .flags = SMELT_M_PASSTHROUGH,
    .params = params,
    .n_params = N_PARAMS,
    .check = pt_check,
    .merge = pt_merge,
};

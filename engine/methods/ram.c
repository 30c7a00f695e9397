/*
 * ram.c: RAM (Reinforced Agent Merging), mergekit's `ram` semantics.
 * Per element, the models whose |delta| exceeds epsilon are "active": a
 * single active model contributes its delta as is, several contribute their
 * mean, none leaves the base. No statistics passes.
 */
#include "sparsify.h"

enum { P_EPSILON, N_PARAMS };

static const struct smelt_param_def params[N_PARAMS] = {
    [P_EPSILON] = {"epsilon", SMELT_PARAM_FLOAT, SMELT_SCOPE_GLOBAL, false, 1e-5, 0, INFINITY, NULL,
                   "a delta entry counts as a contribution when |delta| > epsilon", false},
};

static int ram_check(const struct smelt_tensor_job *job, struct smelt_err *err)
{
	if (!job->has_base)
		return smelt_fail(err, SMELT_EINVAL, "ram: tensor %s: needs a base model",
		                  job->name);
	if (job->n_models > SP_RAM_MAX_MODELS)
		return smelt_fail(err, SMELT_EINVAL,
		                  "ram: tensor %s: %d models, at most %d supported", job->name,
		                  job->n_models, SP_RAM_MAX_MODELS);
	return 0;
}

static void ram_merge(const struct smelt_tensor_job *job, const struct smelt_block *b, float *out)
{
	float eps = (float)smelt_pg(job, P_EPSILON);
	size_t len = (size_t)(b->nrows * job->cols);

	for (size_t j = 0; j < len; j++)
		out[j] = b->base[j] + sp_ram_element(b, job->n_models, j, eps, NULL);
}

const struct smelt_method smelt_method_ram = {
    .name = "ram",
    .summary = "RAM: keep unique deltas as is, average deltas where several models overlap",
    .help = "d_i = x_i - base; model i is active at an element when |d_i| > epsilon (global).\n"
            "Elements with one active model take its delta unchanged, elements with several\n"
            "take the mean of the active deltas, elements with none keep the base:\n"
            "y = base + sum_active d_i / max(#active, 1). Needs a base; no weights.",
    .paper = "Reinforced Agent Merging, arXiv:2601.13572",
    .base = SMELT_BASE_REQUIRED,
    .min_models = 1,
    .max_models = 0,
    .flags = 0,
    .params = params,
    .n_params = N_PARAMS,
    .check = ram_check,
    .merge = ram_merge,
};

/*
 * ramplus_tl.c: RAM+ tensor-local, mergekit's `ramplus_tl` semantics. As
 * ram, but each model's unique contributions are scaled by
 * lambda_i = 1 + r * clamp(rho_i, 0, alpha), rho_i = (model i's active
 * entries shared with another model) / (its unique active entries), counted
 * over the whole tensor in one statistics pass.
 */
#include <stdlib.h>

#include "sparsify.h"

enum { P_R, P_ALPHA, P_EPSILON, N_PARAMS };

static const struct smelt_param_def params[N_PARAMS] = {
    [P_R] = {"r", SMELT_PARAM_FLOAT, SMELT_SCOPE_GLOBAL, false, 0.1, -INFINITY, INFINITY, NULL,
             "strength of the boost of unique contributions", false},
    [P_ALPHA] = {"alpha", SMELT_PARAM_FLOAT, SMELT_SCOPE_GLOBAL, false, 0.2, 0, INFINITY, NULL,
                 "cap on the shared/unique ratio rho", false},
    [P_EPSILON] = {"epsilon", SMELT_PARAM_FLOAT, SMELT_SCOPE_GLOBAL, false, 1e-5, 0, INFINITY, NULL,
                   "a delta entry counts as a contribution when |delta| > epsilon", false},
};

static int rampl_check(const struct smelt_tensor_job *job, struct smelt_err *err)
{
	if (!job->has_base)
		return smelt_fail(err, SMELT_EINVAL, "ramplus_tl: tensor %s: needs a base model",
		                  job->name);
	if (job->n_models > SP_RAM_MAX_MODELS)
		return smelt_fail(err, SMELT_EINVAL,
		                  "ramplus_tl: tensor %s: %d models, at most %d supported",
		                  job->name, job->n_models, SP_RAM_MAX_MODELS);
	return 0;
}

static int rampl_setup(struct smelt_tensor_job *job, struct smelt_err *err)
{
	float *lambda = calloc(job->n_models ? (size_t)job->n_models : 1, sizeof(float));

	if (!lambda)
		return smelt_fail(err, SMELT_ENOMEM, "%s: out of memory", job->name);
	job->state = lambda;
	job->n_passes = 1;
	/* per model: shared count, unique count */
	job->acc_bytes[0] = (size_t)job->n_models * 2 * sizeof(double);
	return 0;
}

static void rampl_stats(struct smelt_tensor_job *job, int pass, const struct smelt_block *b,
                        void *accv)
{
	float eps = (float)smelt_pg(job, P_EPSILON);
	size_t len = (size_t)(b->nrows * job->cols);
	double *acc = accv;

	(void)pass;
	for (size_t j = 0; j < len; j++) {
		int cnt = 0;

		for (int i = 0; i < job->n_models; i++)
			cnt += fabsf(b->x[i][j] - b->base[j]) > eps;
		if (cnt == 0)
			continue;
		for (int i = 0; i < job->n_models; i++)
			if (fabsf(b->x[i][j] - b->base[j]) > eps)
				acc[2 * i + (cnt == 1)] += 1.0;
	}
}

static int rampl_finish(struct smelt_tensor_job *job, int pass, const void *accv,
                        struct smelt_err *err)
{
	float *lambda = job->state;
	const double *acc = accv;
	float r = (float)smelt_pg(job, P_R), alpha = (float)smelt_pg(job, P_ALPHA);
	float eps = (float)smelt_pg(job, P_EPSILON);

	(void)pass, (void)err;
	for (int i = 0; i < job->n_models; i++) {
		/* f32 as mergekit: shared / max(unique, epsilon), clamped to [0, alpha] */
		float unique = fmaxf((float)acc[2 * i + 1], eps);
		float rho = (float)acc[2 * i] / unique;

		rho = fminf(fmaxf(rho, 0.0f), alpha);
		lambda[i] = 1.0f + r * rho;
	}
	return 0;
}

static void rampl_merge(const struct smelt_tensor_job *job, const struct smelt_block *b, float *out)
{
	const float *lambda = job->state;
	float eps = (float)smelt_pg(job, P_EPSILON);
	size_t len = (size_t)(b->nrows * job->cols);

	for (size_t j = 0; j < len; j++)
		out[j] = b->base[j] + sp_ram_element(b, job->n_models, j, eps, lambda);
}

static void rampl_release(struct smelt_tensor_job *job)
{
	free(job->state);
	job->state = NULL;
}

const struct smelt_method smelt_method_ramplus_tl = {
    .name = "ramplus_tl",
    .summary = "RAM+ (tensor-local): RAM with unique contributions boosted by overlap ratio",
    .help = "As ram (model i active where |d_i| > epsilon; overlapping elements take the mean\n"
            "of the active deltas), but an element with a single active model i takes\n"
            "lambda_i * d_i, lambda_i = 1 + r * clamp(rho_i, 0, alpha), where rho_i = (number\n"
            "of model i's active entries shared with another model) / max(number of its\n"
            "unique active entries, epsilon), counted over this tensor. r, alpha and epsilon\n"
            "are global; needs a base.",
    .paper = "Reinforced Agent Merging, arXiv:2601.13572",
    .base = SMELT_BASE_REQUIRED,
    .min_models = 1,
    .max_models = 0,
    .flags = 0,
    .params = params,
    .n_params = N_PARAMS,
    .check = rampl_check,
    .setup = rampl_setup,
    .stats = rampl_stats,
    .finish = rampl_finish,
    .merge = rampl_merge,
    .release = rampl_release,
};

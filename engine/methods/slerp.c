/* slerp.c: spherical interpolation between the base and one model, the
 * angle taken over the whole flattened tensor (mergekit "slerp"). */
#include <math.h>
#include <stdlib.h>

#include "geom.h"
#include "smelt/method.h"

enum { P_T, N_PARAMS };

static const struct smelt_param_def params[N_PARAMS] = {
    [P_T] = {"t", SMELT_PARAM_FLOAT, SMELT_SCOPE_GLOBAL, true, 0, -INFINITY, INFINITY, NULL,
             "position on the arc: 0 gives the base, 1 the other model", false},
};

static int slerp_check(const struct smelt_tensor_job *job, struct smelt_err *err)
{
	if (smelt_geom_check_base(job, "slerp", err))
		return SMELT_EINVAL;
	if (job->n_models != 1)
		return smelt_fail(
		    err, SMELT_EINVAL,
		    "slerp: tensor %s: needs exactly 1 model besides the base, got %d", job->name,
		    job->n_models);
	return 0;
}

struct slerp_state {
	double c0, c1; /* y = c0 * base + c1 * x */
};

static int slerp_setup(struct smelt_tensor_job *job, struct smelt_err *err)
{
	struct slerp_state *s = calloc(1, sizeof(*s));

	if (!s)
		return smelt_fail(err, SMELT_ENOMEM, "slerp: tensor %s: out of memory", job->name);
	job->state = s;
	job->n_passes = job->numel ? 1 : 0; /* an empty tensor has nothing to measure */
	job->acc_bytes[0] = smelt_geom_tri_size(2) * sizeof(double);
	return 0;
}

static void slerp_stats(struct smelt_tensor_job *job, int pass, const struct smelt_block *b,
                        void *acc)
{
	const float *v[2] = {b->base, b->x[0]};

	(void)pass;
	smelt_geom_gram_add(v, 2, NULL, (size_t)(b->nrows * job->cols), acc);
}

static int slerp_finish(struct smelt_tensor_job *job, int pass, const void *acc,
                        struct smelt_err *err)
{
	const double *g = acc;
	struct slerp_state *s = job->state;
	double c[2];

	(void)pass;
	(void)err;
	/* upper triangle of {base, x}: bb, bx, xx */
	smelt_geom_slerp_coef(g[0], g[2], g[1], smelt_pg(job, P_T), c);
	s->c0 = c[0];
	s->c1 = c[1];
	return 0;
}

static void slerp_merge(const struct smelt_tensor_job *job, const struct smelt_block *b, float *out)
{
	const struct slerp_state *s = job->state;
	size_t n = (size_t)(b->nrows * job->cols);
	/* NumPy casts the float64 scalars to the float32 array's type */
	float c0 = (float)s->c0, c1 = (float)s->c1;

	for (size_t e = 0; e < n; e++)
		out[e] = c0 * b->base[e] + c1 * b->x[0][e];
}

static void slerp_release(struct smelt_tensor_job *job)
{
	free(job->state);
	job->state = NULL;
}

const struct smelt_method smelt_method_slerp = {
    .name = "slerp",
    .summary = "spherical interpolation between the base and one model",
    .help = "Treats the whole tensor as one vector. With c the cosine between base b\n"
            "and model x (each normalised unless its norm is below 1e-8):\n"
            "if |c| > 0.9995 y = (1-t) b + t x (lerp); else with theta = acos c,\n"
            "y = sin((1-t) theta)/sin(theta) * b + sin(t theta)/sin(theta) * x.\n"
            "t is global and required (0 = base, 1 = the model; usually a gradient\n"
            "over layers). Needs a base and exactly one other model.",
    .paper = "Shoemake 1985, Animating rotation with quaternion curves (SIGGRAPH)",
    .base = SMELT_BASE_REQUIRED,
    .min_models = 1,
    .max_models = 1,
    .params = params,
    .n_params = N_PARAMS,
    .check = slerp_check,
    .setup = slerp_setup,
    .stats = slerp_stats,
    .finish = slerp_finish,
    .merge = slerp_merge,
    .release = slerp_release,
};

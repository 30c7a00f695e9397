/* multislerp.c: barycentric interpolation of several models on the
 * hypersphere, optionally around a base (mergekit "multislerp").
 *
 * Every quantity of the algorithm (the weighted mean m of the unit vectors,
 * its direction, the tangent vectors and their weighted sum T) is a linear
 * combination of the input vectors v_i, so one statistics pass collecting
 * the Gram matrix G_ij = v_i.v_j is enough: finish() works on coefficient
 * vectors (|sum_j a_j v_j|^2 = a'Ga) and merge() writes sum_j c_j v_j.
 */
#include <math.h>
#include <stdlib.h>

#include "geom.h"
#include "smelt/method.h"

enum { P_WEIGHT, P_NORMALIZE_WEIGHTS, P_EPS, N_PARAMS };

static const struct smelt_param_def params[N_PARAMS] = {
    [P_WEIGHT] = {"weight", SMELT_PARAM_FLOAT, SMELT_SCOPE_MODEL, true, 0, -INFINITY, INFINITY,
                  NULL, "this model's barycentric weight", false},
    [P_NORMALIZE_WEIGHTS] = {"normalize_weights", SMELT_PARAM_BOOL, SMELT_SCOPE_GLOBAL, false, 1, 0,
                             1, NULL, "divide the weights by their sum", false},
    [P_EPS] = {"eps", SMELT_PARAM_FLOAT, SMELT_SCOPE_GLOBAL, false, 1e-8, 0, INFINITY, NULL,
               "small constant added to norms; |mean| below it is degenerate", false},
};

struct mslerp_state {
	double *c; /* y = sum_i c_i v_i (+ base) */
};

/* Weights as mergekit holds them: f32, optionally divided by their sum. */
static double weight_sum(const struct smelt_tensor_job *job)
{
	float s = 0;

	for (int i = 0; i < job->n_models; i++)
		s += (float)smelt_pm(job, i, P_WEIGHT);
	return s;
}

static void weights(const struct smelt_tensor_job *job, double *w)
{
	float s = (float)weight_sum(job);
	bool norm = smelt_pg(job, P_NORMALIZE_WEIGHTS) != 0;

	for (int i = 0; i < job->n_models; i++) {
		float wi = (float)smelt_pm(job, i, P_WEIGHT);

		w[i] = norm ? (double)(wi / s) : (double)wi;
	}
}

static int mslerp_check(const struct smelt_tensor_job *job, struct smelt_err *err)
{
	if (job->n_models > 1 && smelt_pg(job, P_NORMALIZE_WEIGHTS) != 0 && weight_sum(job) == 0)
		return smelt_fail(err, SMELT_EINVAL,
		                  "multislerp: tensor %s: the weights sum to 0, so "
		                  "normalize_weights=true would divide by zero",
		                  job->name);
	return 0;
}

static int mslerp_setup(struct smelt_tensor_job *job, struct smelt_err *err)
{
	struct mslerp_state *s = calloc(1, sizeof(*s));

	if (!s || !(s->c = calloc((size_t)job->n_models, sizeof(double)))) {
		free(s);
		return smelt_fail(err, SMELT_ENOMEM, "multislerp: tensor %s: out of memory",
		                  job->name);
	}
	job->state = s;
	/* a single model is returned as it is: nothing to measure */
	job->n_passes = job->n_models > 1 && job->numel ? 1 : 0;
	job->acc_bytes[0] = smelt_geom_tri_size(job->n_models) * sizeof(double);
	return 0;
}

static void mslerp_stats(struct smelt_tensor_job *job, int pass, const struct smelt_block *b,
                         void *acc)
{
	(void)pass;
	smelt_geom_gram_add(b->x, job->n_models, b->base, (size_t)(b->nrows * job->cols), acc);
}

/* The sphere arithmetic on coefficients; w, nrm, beta, a, tau are scratch of k. */
static int solve(const struct smelt_tensor_job *job, const double *g, double *w, double *nrm,
                 double *beta, double *a, double *tau, double *c, struct smelt_err *err)
{
	int k = job->n_models;
	double eps = smelt_pg(job, P_EPS), mn, proj = 0, tn, avg = 0;

	weights(job, w);
	for (int i = 0; i < k; i++) {
		nrm[i] = sqrt(fmax(g[(size_t)i * k + i], 0));
		beta[i] = w[i] / (nrm[i] + eps); /* m = sum beta_i v_i */
	}
	mn = sqrt(fmax(smelt_geom_quad(g, k, beta, beta), 0));
	if (mn < eps) {
		if (k != 2)
			return smelt_fail(
			    err, SMELT_EINVAL,
			    "multislerp: tensor %s: the weighted mean of the unit "
			    "vectors is zero (antipodal inputs whose weights cancel); "
			    "change the weights",
			    job->name);
		c[0] = w[0]; /* mergekit falls back to a lerp for two models */
		c[1] = w[1];
		return 0;
	}
	for (int i = 0; i < k; i++)
		a[i] = beta[i] / mn; /* the unit mean direction */
	for (int i = 0; i < k; i++) {
		double gi = 0;

		for (int j = 0; j < k; j++)
			gi += g[(size_t)i * k + j] * a[j];
		proj += w[i] * gi / (nrm[i] + eps); /* w_i (u_i . mhat) */
	}
	for (int i = 0; i < k; i++)
		tau[i] = beta[i] - proj * a[i]; /* T = sum w_i (u_i - (u_i.mhat) mhat) */
	tn = sqrt(fmax(smelt_geom_quad(g, k, tau, tau), 0)) + eps;
	for (int i = 0; i < k; i++)
		avg += w[i] * nrm[i];
	for (int i = 0; i < k; i++)
		c[i] = avg * (cos(tn) * a[i] + sin(tn) / tn * tau[i]);
	return 0;
}

static int mslerp_finish(struct smelt_tensor_job *job, int pass, const void *acc,
                         struct smelt_err *err)
{
	struct mslerp_state *s = job->state;
	int k = job->n_models;
	double *g = malloc(((size_t)k * k + 5 * (size_t)k) * sizeof(double));
	int rc;

	(void)pass;
	if (!g)
		return smelt_fail(err, SMELT_ENOMEM, "multislerp: tensor %s: out of memory",
		                  job->name);
	smelt_geom_gram_unpack(acc, k, g);
	{
		double *w = g + (size_t)k * k;

		rc = solve(job, g, w, w + k, w + 2 * k, w + 3 * k, w + 4 * k, s->c, err);
	}
	free(g);
	return rc;
}

static void mslerp_merge(const struct smelt_tensor_job *job, const struct smelt_block *b,
                         float *out)
{
	const struct mslerp_state *s = job->state;
	size_t n = (size_t)(b->nrows * job->cols);

	if (job->n_models == 1) {
		for (size_t e = 0; e < n; e++)
			out[e] = b->x[0][e];
		return;
	}
	for (size_t e = 0; e < n; e++) {
		double y = 0;

		for (int i = 0; i < job->n_models; i++) {
			float v = b->base ? b->x[i][e] - b->base[e] : b->x[i][e];

			y += s->c[i] * (double)v;
		}
		out[e] = b->base ? b->base[e] + (float)y : (float)y;
	}
}

static void mslerp_release(struct smelt_tensor_job *job)
{
	struct mslerp_state *s = job->state;

	if (s)
		free(s->c);
	free(s);
	job->state = NULL;
}

const struct smelt_method smelt_method_multislerp = {
    .name = "multislerp",
    .summary = "weighted spherical mean of any number of models",
    .help = "Vectors v_i are the whole tensors x_i, or x_i - b with a base. Weights\n"
            "(per model, required) are divided by their sum when normalize_weights\n"
            "(default true). u_i = v_i / (|v_i| + eps), m = sum w_i u_i, mhat = m/|m|;\n"
            "tangent vectors t_i = u_i - (u_i.mhat) mhat, T = sum w_i t_i;\n"
            "r = mhat cos|T| + T sin|T|/|T| (|T| + eps in both), y = r * sum w_i |v_i|\n"
            "(+ b). If |m| < eps: a lerp sum w_i v_i for two models, an error for more.\n"
            "eps (global) defaults to 1e-8. Base optional; one model is copied as is.",
    .paper = "Goddard, Multi-SLERP, https://goddard.blog/posts/multislerp-wow-what-a-cool-idea",
    .base = SMELT_BASE_OPTIONAL,
    .min_models = 1,
    .max_models = 0,
    .params = params,
    .n_params = N_PARAMS,
    .check = mslerp_check,
    .setup = mslerp_setup,
    .stats = mslerp_stats,
    .finish = mslerp_finish,
    .merge = mslerp_merge,
    .release = mslerp_release,
};

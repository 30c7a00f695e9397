/* karcher.c: the Riemannian (Karcher) mean of the models' directions on the
 * unit sphere, with equal weights (mergekit "karcher").
 *
 * The iterate u always stays in the span of the unit inputs u_i, so it is
 * kept as a coefficient vector over them and every dot product comes from
 * the Gram matrix gathered in one statistics pass: the iterations cost
 * O(k^2) each and never touch the tensor data again.
 */
#include <math.h>
#include <stdlib.h>

#include "geom.h"
#include "smelt/method.h"

enum { P_MAX_ITER, P_TOL, N_PARAMS };

static const struct smelt_param_def params[N_PARAMS] = {
    [P_MAX_ITER] = {"max_iter", SMELT_PARAM_INT, SMELT_SCOPE_GLOBAL, false, 10, 0, 100000, NULL,
                    "maximum number of mean-shift iterations", false},
    [P_TOL] = {"tol", SMELT_PARAM_FLOAT, SMELT_SCOPE_GLOBAL, false, 1e-5, 0, INFINITY, NULL,
               "convergence tolerance (also the norm below which an input is ignored)", false},
};

struct karcher_state {
	int k;     /* inputs: the models, then the base when one is given */
	double *c; /* y = sum_i c_i x_i */
};

static int n_inputs(const struct smelt_tensor_job *job)
{
	return job->n_models + (job->has_base ? 1 : 0);
}

/* The inputs of a block: models, then the base (a listed base is one more
 * model for karcher). */
static void block_inputs(const struct smelt_tensor_job *job, const struct smelt_block *b,
                         const float **v)
{
	for (int i = 0; i < job->n_models; i++)
		v[i] = b->x[i];
	if (job->has_base)
		v[job->n_models] = b->base;
}

static void karcher_release(struct smelt_tensor_job *job);

static int karcher_setup(struct smelt_tensor_job *job, struct smelt_err *err)
{
	struct karcher_state *s = calloc(1, sizeof(*s));

	if (!s)
		goto oom;
	s->k = n_inputs(job);
	job->state = s;
	s->c = calloc((size_t)s->k, sizeof(double));
	if (!s->c)
		goto oom;
	job->n_passes = s->k > 1 && job->numel ? 1 : 0;
	job->acc_bytes[0] = smelt_geom_tri_size(s->k) * sizeof(double);
	return 0;
oom:
	/* the executor calls release() only after a successful setup */
	karcher_release(job);
	return smelt_fail(err, SMELT_ENOMEM, "karcher: tensor %s: out of memory", job->name);
}

static void karcher_stats(struct smelt_tensor_job *job, int pass, const struct smelt_block *b,
                          void *acc)
{
	const struct karcher_state *s = job->state;
	const float *v[s->k];

	(void)pass;
	block_inputs(job, b, v);
	smelt_geom_gram_add(v, s->k, NULL, (size_t)(b->nrows * job->cols), acc);
}

/* (U a)_i for the unit Gram matrix U. */
static double unit_dot(const double *u, int k, const double *a, int i)
{
	double r = 0;

	for (int j = 0; j < k; j++)
		r += u[(size_t)i * k + j] * a[j];
	return r;
}

/*
 * mergekit's loop, on coefficients over the unit vectors: start from the
 * normalised mean of the valid units (norm > tol), then repeatedly move
 * along the weighted log-map sum T until |T| < tol or max_iter. Inputs with
 * norm <= tol take no part in the direction but still count (with their
 * norm) in the final scale sum_i |x_i| / k.
 */
static void karcher_solve(const struct smelt_tensor_job *job, int k, const double *g, double *u,
                          double *a, double *tg, double *nrm, double *coef)
{
	double tol = smelt_pg(job, P_TOL), alpha, mn, scale = 0;
	int max_iter = (int)smelt_pg(job, P_MAX_ITER), nvalid = 0, first = -1;

	for (int i = 0; i < k; i++) {
		nrm[i] = sqrt(fmax(g[(size_t)i * k + i], 0));
		scale += nrm[i] / k;
		if (nrm[i] > tol) {
			nvalid++;
			if (first < 0)
				first = i;
		}
	}
	for (int i = 0; i < k; i++)
		for (int j = 0; j < k; j++) {
			double d = nrm[i] * nrm[j];

			u[(size_t)i * k + j] = d > 0 ? g[(size_t)i * k + j] / d : 0;
		}
	for (int i = 0; i < k; i++)
		coef[i] = 0;
	if (!nvalid)
		return; /* every input is (nearly) zero: mergekit returns zeros */
	alpha = 1.0 / nvalid;
	for (int i = 0; i < k; i++)
		a[i] = nrm[i] > tol ? alpha : 0;
	mn = sqrt(fmax(smelt_geom_quad(u, k, a, a), 0));
	if (mn < tol) {
		for (int i = 0; i < k; i++)
			a[i] = i == first;
	} else {
		for (int i = 0; i < k; i++)
			a[i] /= mn;
	}
	for (int it = 0; it < max_iter; it++) {
		double tn, un, ct, st;

		for (int i = 0; i < k; i++)
			tg[i] = 0;
		for (int i = 0; i < k; i++) {
			double dot, theta, f;

			if (!(nrm[i] > tol))
				continue;
			dot = fmin(fmax(unit_dot(u, k, a, i), -1.0), 1.0);
			theta = acos(dot);
			if (theta < tol)
				continue;
			f = alpha * theta / sin(theta);
			for (int j = 0; j < k; j++)
				tg[j] -= f * dot * a[j];
			tg[i] += f;
		}
		tn = sqrt(fmax(smelt_geom_quad(u, k, tg, tg), 0));
		if (tn < tol)
			break;
		ct = cos(tn);
		st = sin(tn) / tn;
		for (int j = 0; j < k; j++)
			a[j] = ct * a[j] + st * tg[j];
		un = sqrt(fmax(smelt_geom_quad(u, k, a, a), 0));
		if (un > tol)
			for (int j = 0; j < k; j++)
				a[j] /= un;
	}
	/* back from unit vectors to the inputs: u_i = x_i / |x_i| */
	for (int i = 0; i < k; i++)
		coef[i] = nrm[i] > 0 ? scale * a[i] / nrm[i] : 0;
}

static int karcher_finish(struct smelt_tensor_job *job, int pass, const void *acc,
                          struct smelt_err *err)
{
	struct karcher_state *s = job->state;
	int k = s->k;
	double *g = malloc((2 * (size_t)k * k + 3 * (size_t)k) * sizeof(double));

	(void)pass;
	if (!g)
		return smelt_fail(err, SMELT_ENOMEM, "karcher: tensor %s: out of memory",
		                  job->name);
	smelt_geom_gram_unpack(acc, k, g);
	{
		double *u = g + (size_t)k * k, *w = u + (size_t)k * k;

		karcher_solve(job, k, g, u, w, w + k, w + 2 * k, s->c);
	}
	free(g);
	return 0;
}

static void karcher_merge(const struct smelt_tensor_job *job, const struct smelt_block *b,
                          float *out)
{
	const struct karcher_state *s = job->state;
	size_t n = (size_t)(b->nrows * job->cols);
	const float *v[s->k];

	block_inputs(job, b, v);
	if (s->k == 1) {
		for (size_t e = 0; e < n; e++)
			out[e] = v[0][e];
		return;
	}
	for (size_t e = 0; e < n; e++) {
		double y = 0;

		for (int i = 0; i < s->k; i++)
			y += s->c[i] * (double)v[i][e];
		out[e] = (float)y;
	}
}

static void karcher_release(struct smelt_tensor_job *job)
{
	struct karcher_state *s = job->state;

	if (s)
		free(s->c);
	free(s);
	job->state = NULL;
}

const struct smelt_method smelt_method_karcher = {
    .name = "karcher",
    .summary = "Riemannian (Karcher) mean of the models' directions",
    .help = "Equal weights a = 1/k over the k inputs (the models, plus the base when\n"
            "one is given: it is averaged like any other model). u_i = x_i/|x_i|;\n"
            "inputs with |x_i| <= tol are left out of the direction. Start from the\n"
            "normalised mean of the u_i, then up to max_iter times: theta_i =\n"
            "acos(u.u_i) (skipped if < tol), T = sum a (theta_i/sin theta_i)\n"
            "(u_i - cos theta_i u); stop if |T| < tol, else u <- cos|T| u +\n"
            "sin|T| T/|T|, renormalised. y = (sum_i |x_i| / k) u.\n"
            "Globals: max_iter (default 10), tol (default 1e-5). No per-model weight.",
    .paper = "Karcher 1977, Riemannian center of mass and mollifier smoothing, "
             "https://en.wikipedia.org/wiki/Karcher_mean",
    .base = SMELT_BASE_AS_MODEL,
    .min_models = 1,
    .max_models = 0,
    .params = params,
    .n_params = N_PARAMS,
    .setup = karcher_setup,
    .stats = karcher_stats,
    .finish = karcher_finish,
    .merge = karcher_merge,
    .release = karcher_release,
};

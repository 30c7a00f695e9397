/* model_stock.c: interpolate between the base and the models' average by a
 * ratio taken from the angles between their task vectors (mergekit
 * "model_stock"). */
#include <math.h>
#include <stdlib.h>

#include "geom.h"
#include "smelt/method.h"

enum { P_FILTER_WISE, N_PARAMS };

static const struct smelt_param_def params[N_PARAMS] = {
    [P_FILTER_WISE] = {"filter_wise", SMELT_PARAM_BOOL, SMELT_SCOPE_GLOBAL, false, 0, 0, 1, NULL,
                       "one ratio per row W[i,:] instead of one per tensor", false},
};

struct stock_state {
	bool rows; /* filter_wise: ratio per slice along the last axis */
	uint64_t seg;
	double t; /* whole-tensor ratio */
};

static int stock_check(const struct smelt_tensor_job *job, struct smelt_err *err)
{
	if (smelt_geom_check_base(job, "model_stock", err))
		return SMELT_EINVAL;
	if (job->n_models < 2)
		return smelt_fail(err, SMELT_EINVAL,
		                  "model_stock: tensor %s: needs at least 2 models besides the "
		                  "base, got %d",
		                  job->name, job->n_models);
	return 0;
}

static int stock_setup(struct smelt_tensor_job *job, struct smelt_err *err)
{
	struct stock_state *s = calloc(1, sizeof(*s));

	if (!s)
		return smelt_fail(err, SMELT_ENOMEM, "model_stock: tensor %s: out of memory",
		                  job->name);
	s->rows = smelt_pg(job, P_FILTER_WISE) != 0;
	s->seg = smelt_geom_seg_len(job);
	job->state = s;
	job->n_passes = s->rows || !job->numel ? 0 : 1;
	job->acc_bytes[0] = smelt_geom_tri_size(job->n_models) * sizeof(double);
	return 0;
}

static void stock_stats(struct smelt_tensor_job *job, int pass, const struct smelt_block *b,
                        void *acc)
{
	(void)pass;
	smelt_geom_gram_add(b->x, job->n_models, b->base, (size_t)(b->nrows * job->cols), acc);
}

/* Mean pairwise cosine from a Gram upper triangle. */
static double mean_cos_from_tri(const double *tri, int k)
{
	double sum = 0;
	int pairs = 0;

	for (int i = 0; i < k; i++)
		for (int j = i + 1; j < k; j++) {
			sum += smelt_geom_stock_cos(tri[smelt_geom_tri_index(k, i, j)],
			                            tri[smelt_geom_tri_index(k, i, i)],
			                            tri[smelt_geom_tri_index(k, j, j)]);
			pairs++;
		}
	return sum / pairs;
}

static int stock_finish(struct smelt_tensor_job *job, int pass, const void *acc,
                        struct smelt_err *err)
{
	struct stock_state *s = job->state;
	double c = mean_cos_from_tri(acc, job->n_models);

	(void)pass;
	s->t = smelt_geom_stock_ratio(job->n_models, c);
	if (!isfinite(s->t))
		return smelt_fail(
		    err, SMELT_EINVAL,
		    "model_stock: tensor %s: the ratio N c / (1 + (N-1) c) is not finite "
		    "(N = %d, c = %g: anti-parallel task vectors, or non-finite weights)",
		    job->name, job->n_models, c);
	return 0;
}

static void write_range(const struct smelt_tensor_job *job, const struct smelt_block *b, double t,
                        size_t from, size_t to, float *out)
{
	for (size_t e = from; e < to; e++) {
		double m = 0;

		for (int i = 0; i < job->n_models; i++)
			m += b->x[i][e];
		m /= job->n_models;
		out[e] = (float)(t * m + (1.0 - t) * (double)b->base[e]);
	}
}

/* filter_wise: the cosines of one slice, pair by pair (no scratch needed). */
static double segment_ratio(const struct smelt_tensor_job *job, const struct smelt_block *b,
                            size_t off, size_t len)
{
	int k = job->n_models, pairs = 0;
	double sum = 0;

	for (int i = 0; i < k; i++)
		for (int j = i + 1; j < k; j++) {
			double aa = 0, bb = 0, ab = 0;

			for (size_t e = off; e < off + len; e++) {
				double di = b->x[i][e] - b->base[e];
				double dj = b->x[j][e] - b->base[e];

				di = (float)di;
				dj = (float)dj;
				aa += di * di;
				bb += dj * dj;
				ab += di * dj;
			}
			sum += smelt_geom_stock_cos(ab, aa, bb);
			pairs++;
		}
	return smelt_geom_stock_ratio(k, sum / pairs);
}

static void stock_merge(const struct smelt_tensor_job *job, const struct smelt_block *b, float *out)
{
	const struct stock_state *s = job->state;
	size_t n = (size_t)(b->nrows * job->cols);

	if (!s->rows) {
		write_range(job, b, s->t, 0, n, out);
		return;
	}
	for (size_t o = 0; o < n; o += s->seg)
		write_range(job, b, segment_ratio(job, b, o, s->seg), o, o + s->seg, out);
}

static void stock_release(struct smelt_tensor_job *job)
{
	free(job->state);
	job->state = NULL;
}

const struct smelt_method smelt_method_model_stock = {
    .name = "model_stock",
    .summary = "move from the base toward the models' average by their agreement",
    .help = "Task vectors d_i = x_i - b. c = mean over pairs i<j of\n"
            "cos(d_i, d_j) (norm product clamped at >= 1e-6); t = N c / (1 + (N-1) c);\n"
            "y = t * mean_i(x_i) + (1 - t) * b. One ratio for the whole tensor, or one\n"
            "per row W[i,:] (per slice along the last axis) with filter_wise=true.\n"
            "Needs a base and at least 2 other models. A whole-tensor ratio with\n"
            "1 + (N-1) c = 0 is an error (mergekit would write inf/NaN).",
    .paper = "Jang et al. 2024, Model Stock: All we need is just a few fine-tuned models, "
             "https://arxiv.org/abs/2403.19522",
    .base = SMELT_BASE_REQUIRED,
    .min_models = 2,
    .max_models = 0,
    .params = params,
    .n_params = N_PARAMS,
    .check = stock_check,
    .setup = stock_setup,
    .stats = stock_stats,
    .finish = stock_finish,
    .merge = stock_merge,
    .release = stock_release,
};

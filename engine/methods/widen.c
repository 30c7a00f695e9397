/*
 * widen.c: WIDEN (Yu et al. 2024, "Extend Model Merging from Fine-Tuned to
 * Pre-Trained Large Language Models via Weight Disentanglement"), as the
 * authors' code computes it (spec widen.md).
 *
 * Orientation per tensor:
 *   - token embedding [V, h] (smelt_is_token_embedding): transposed, one
 *     column per token = one contiguous storage row;
 *   - every other 2-D tensor [out, in] (lm_head included): one column per
 *     input feature = one storage column;
 *   - 1-D, 0-D and >= 3-D tensors (flattened, our choice where the
 *     authors' code refuses): the vector branch, element-wise on |delta|.
 *
 * Streaming: matrices take one statistics pass (per column sum b^2 and per
 * model sum w^2, sum w*b in double; chunk accumulators for Linear columns,
 * disjoint per-row slots for the transposed embedding), then finish()
 * ranks 2N vectors of k values and computes omega (widen_core.c), and the
 * merge pass writes out = b + sum_n omega_n[col] (w_n - b). Vectors take a
 * pass summing |delta| per model (the calibration mean) and a second one
 * summing omega for provenance; their merge is element-wise.
 * Memory per tensor: O(N k) plus the executor's blocks.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "smelt/ckpt.h"
#include "smelt/method.h"
#include "smelt/stats.h"
#include "widen_core.h"
#include "../simd.h"

enum { P_THRESHOLD, P_CALIBRATION, P_TEMPERATURE, P_EXCLUDE, N_PARAMS };

enum widen_branch { BR_MATRIX, BR_MATRIX_T, BR_VECTOR };

struct widen_state {
	enum widen_branch branch;
	int n;
	uint64_t k; /* columns (matrix) */
	struct widen_knobs kn;
	double *row_sums;   /* BR_MATRIX_T: [k][1 + 2n] filled during pass 0 */
	float *omega;       /* matrix: [n][k] */
	double *thr;        /* vector: [n] t * mean |delta| */
	double *mean_omega; /* [n], valid when have_weights */
	bool have_weights;
};

static const struct smelt_param_def widen_params[N_PARAMS] = {
    [P_THRESHOLD] = {"threshold", SMELT_PARAM_FLOAT, SMELT_SCOPE_GLOBAL, false, 1.0, -INFINITY,
                     INFINITY, "above_average_value_ratio",
                     "t: a column is calibrated when its rank exceeds t x the mean rank "
                     "(t < 0: all, t >= 2: none)",
                     false},
    [P_CALIBRATION] = {"calibration", SMELT_PARAM_FLOAT, SMELT_SCOPE_GLOBAL, false, 1.0, -INFINITY,
                       INFINITY, "score_calibration_value",
                       "s: the score given to calibrated columns (replaces the softmax score)",
                       false},
    [P_TEMPERATURE] = {"temperature", SMELT_PARAM_FLOAT, SMELT_SCOPE_GLOBAL, false, 1.0, 0.0,
                       INFINITY, NULL,
                       "T > 0: softmax over models of rank / T (smelt extension; 1 = the authors)",
                       false},
    [P_EXCLUDE] = {"exclude", SMELT_PARAM_REGEX_LIST, SMELT_SCOPE_GLOBAL, false, 0.0, -INFINITY,
                   INFINITY, "exclude_param_names_regex",
                   "regexes matched at the start of tensor names; matching tensors keep the "
                   "base",
                   false},
};

static enum widen_branch branch_of(const struct smelt_tensor_job *job)
{
	if (job->ndim == 2 && smelt_is_token_embedding(job->name))
		return BR_MATRIX_T;
	if (job->ndim == 2)
		return BR_MATRIX;
	return BR_VECTOR;
}

static int widen_check(const struct smelt_tensor_job *job, struct smelt_err *err)
{
	double t = smelt_pg(job, P_THRESHOLD), s = smelt_pg(job, P_CALIBRATION);
	double T = smelt_pg(job, P_TEMPERATURE);

	if (!job->has_base)
		return smelt_fail(err, SMELT_EINVAL, "widen: %s: a base model is required",
		                  job->name);
	if (job->n_models < 1 || job->n_models > WIDEN_MAX_MODELS)
		return smelt_fail(err, SMELT_EINVAL, "widen: %s: needs 1 to %d models, got %d",
		                  job->name, WIDEN_MAX_MODELS, job->n_models);
	if (!(T > 0.0) || isinf(T))
		return smelt_fail(err, SMELT_EINVAL,
		                  "widen: %s: temperature %g must be a finite number > 0",
		                  job->name, T);
	if (isnan(t) || isnan(s) || isinf(s))
		return smelt_fail(err, SMELT_EINVAL,
		                  "widen: %s: threshold %g and calibration %g must be numbers "
		                  "(calibration finite)",
		                  job->name, t, s);
	if (branch_of(job) == BR_MATRIX_T && job->rows > UINT32_MAX)
		return smelt_fail(err, SMELT_EINVAL, "widen: %s: %llu tokens exceed the 2^32 limit",
		                  job->name, (unsigned long long)job->rows);
	if (branch_of(job) == BR_MATRIX && job->cols > UINT32_MAX)
		return smelt_fail(err, SMELT_EINVAL,
		                  "widen: %s: %llu columns exceed the 2^32 limit", job->name,
		                  (unsigned long long)job->cols);
	return 0;
}

static void widen_release(struct smelt_tensor_job *job)
{
	struct widen_state *st = job->state;

	if (!st)
		return;
	free(st->row_sums);
	free(st->omega);
	free(st->thr);
	free(st->mean_omega);
	free(st);
	job->state = NULL;
}

static int widen_setup(struct smelt_tensor_job *job, struct smelt_err *err)
{
	struct widen_state *st = calloc(1, sizeof(*st));
	size_t n;

	if (!st)
		goto nomem;
	job->state = st;
	n = (size_t)job->n_models;
	st->n = job->n_models;
	st->branch = branch_of(job);
	st->kn.t = smelt_pg(job, P_THRESHOLD);
	st->kn.s = smelt_pg(job, P_CALIBRATION);
	st->kn.T = smelt_pg(job, P_TEMPERATURE);
	st->mean_omega = calloc(n, sizeof(double));
	if (!st->mean_omega)
		goto nomem;
	switch (st->branch) {
	case BR_MATRIX:
		st->k = job->cols;
		job->n_passes = 1;
		job->acc_bytes[0] = (size_t)job->cols * (1 + 2 * n) * sizeof(double);
		break;
	case BR_MATRIX_T:
		st->k = job->rows;
		job->n_passes = 1;
		/* Each row is one whole column, summed inside one block: the
		 * sums go to disjoint slots, no chunk accumulator needed. */
		job->acc_bytes[0] = sizeof(double);
		st->row_sums = calloc((size_t)st->k * (1 + 2 * n) + 1, sizeof(double));
		if (!st->row_sums)
			goto nomem;
		break;
	case BR_VECTOR:
		job->n_passes = 2;
		job->acc_bytes[0] = n * sizeof(double);
		job->acc_bytes[1] = n * sizeof(double);
		st->thr = calloc(n, sizeof(double));
		if (!st->thr)
			goto nomem;
		break;
	}
	if (st->branch != BR_VECTOR) {
		st->omega = calloc((size_t)st->k * n + 1, sizeof(float));
		if (!st->omega)
			goto nomem;
	}
	return 0;
nomem:
	widen_release(job);
	return smelt_fail(err, SMELT_ENOMEM, "widen: %s: out of memory for column statistics",
	                  job->name);
}

/* Per-element vector weights into omega[0..n) for flat element e. */
static void vector_omega(const struct widen_state *st, const struct smelt_block *b, size_t e,
                         double *a, double *omega)
{
	for (int i = 0; i < st->n; i++)
		a[i] = fabs((double)b->x[i][e] - (double)b->base[e]);
	widen_vector_element(st->n, a, st->thr, &st->kn, omega, NULL);
}

static void widen_stats(struct smelt_tensor_job *job, int pass, const struct smelt_block *b,
                        void *acc)
{
	struct widen_state *st = job->state;
	size_t cols = (size_t)job->cols, len = (size_t)b->nrows * cols;
	double *sum = acc;

	switch (st->branch) {
	case BR_MATRIX:
		widen_accumulate_columns(b->base, b->x, st->n, cols, (size_t)b->nrows, sum);
		break;
	case BR_MATRIX_T:
		for (uint64_t r = 0; r < b->nrows; r++)
			widen_row_sums(b->base + r * cols, b->x, (size_t)r * cols, st->n, cols,
			               st->row_sums +
			                   (size_t)(b->row0 + r) * (1 + 2 * (size_t)st->n));
		break;
	case BR_VECTOR:
		if (pass == 0) {
			for (int i = 0; i < st->n; i++) {
				double s = 0.0;

				for (size_t e = 0; e < len; e++)
					s += fabs((double)b->x[i][e] - (double)b->base[e]);
				sum[i] += s;
			}
		} else {
			double a[WIDEN_MAX_MODELS], om[WIDEN_MAX_MODELS];

			for (size_t e = 0; e < len; e++) {
				vector_omega(st, b, e, a, om);
				for (int i = 0; i < st->n; i++)
					sum[i] += om[i];
			}
		}
		break;
	}
}

/* Ranks and weights of a matrix tensor from its per-column sums, laid out
 * with column stride cs and model stride ms (bb at sums[j * cs], model i's
 * ww at + (1 + 2i) * ms, wb at + (2 + 2i) * ms). */
static int matrix_finish(struct smelt_tensor_job *job, const double *sums, size_t cs, size_t ms,
                         struct smelt_err *err)
{
	struct widen_state *st = job->state;
	size_t k = (size_t)st->k, n = (size_t)st->n;
	double *mag = NULL, *dir, *osum = NULL;
	uint32_t *pos = NULL;
	int rc = 0;

	mag = malloc((k ? k : 1) * 2 * sizeof(double));
	pos = calloc((k ? k : 1) * 2 * n, sizeof(uint32_t));
	osum = malloc(n * sizeof(double));
	if (!mag || !pos || !osum)
		goto nomem;
	dir = mag + k;
	for (size_t i = 0; i < n; i++) {
		for (size_t j = 0; j < k; j++) {
			const double *c = sums + j * cs;

			widen_divergence(c[0], c[(1 + 2 * i) * ms], c[(2 + 2 * i) * ms], &mag[j],
			                 &dir[j]);
		}
		if (widen_positions(mag, k, pos + i * k) ||
		    widen_positions(dir, k, pos + (n + i) * k))
			goto nomem;
	}
	if (widen_matrix_weights(st->n, k, pos, pos + n * k, &st->kn, st->omega, NULL, osum, NULL,
	                         NULL))
		goto nomem;
	for (size_t i = 0; i < n; i++)
		st->mean_omega[i] = k ? osum[i] / (double)k : 0.0;
	st->have_weights = true;
	goto out;
nomem:
	rc = smelt_fail(err, SMELT_ENOMEM, "widen: %s: out of memory ranking %zu columns",
	                job->name, k);
out:
	free(mag);
	free(pos);
	free(osum);
	return rc;
}

static int widen_finish(struct smelt_tensor_job *job, int pass, const void *acc,
                        struct smelt_err *err)
{
	struct widen_state *st = job->state;
	const double *sum = acc;
	int rc;

	switch (st->branch) {
	case BR_MATRIX:
		if (!acc) /* no rows: nothing to merge, weights stay 0 */
			return 0;
		return matrix_finish(job, sum, 1, (size_t)st->k, err);
	case BR_MATRIX_T:
		rc = matrix_finish(job, st->row_sums, 1 + 2 * (size_t)st->n, 1, err);
		free(st->row_sums);
		st->row_sums = NULL;
		return rc;
	case BR_VECTOR:
		for (int i = 0; i < st->n; i++) {
			double s = acc ? sum[i] : 0.0;

			if (pass == 0)
				st->thr[i] = st->kn.t * (job->numel ? s / (double)job->numel : 0.0);
			else
				st->mean_omega[i] = job->numel ? s / (double)job->numel : 0.0;
		}
		st->have_weights = pass == 1;
		return 0;
	}
	return 0;
}

static SMELT_HOT void widen_merge(const struct smelt_tensor_job *job, const struct smelt_block *b,
				  float *out)
{
	const struct widen_state *st = job->state;
	size_t cols = (size_t)job->cols, k = (size_t)st->k;

	if (st->branch == BR_VECTOR) {
		double a[WIDEN_MAX_MODELS], om[WIDEN_MAX_MODELS];

		for (size_t e = 0; e < (size_t)b->nrows * cols; e++) {
			double base = b->base[e], v = base;

			vector_omega(st, b, e, a, om);
			for (int i = 0; i < st->n; i++)
				v += om[i] * ((double)b->x[i][e] - base);
			out[e] = (float)v;
		}
		return;
	}
	memcpy(out, b->base, (size_t)b->nrows * cols * sizeof(float));
	for (uint64_t r = 0; r < b->nrows; r++) {
		const float *br = b->base + r * cols;
		float *o = out + r * cols;

		for (int i = 0; i < st->n; i++) {
			const float *wr = b->x[i] + r * cols;
			const float *om = st->omega + (size_t)i * k;

			if (st->branch == BR_MATRIX_T) {
				float w = om[b->row0 + r];

				for (size_t j = 0; j < cols; j++)
					o[j] += w * (wr[j] - br[j]);
			} else {
				for (size_t j = 0; j < cols; j++)
					o[j] += om[j] * (wr[j] - br[j]);
			}
		}
	}
}

/* Model card: the element-weighted mean omega each model received. */
static void widen_weights(const struct smelt_tensor_job *job, double *mean_weight)
{
	const struct widen_state *st = job->state;

	for (int i = 0; i < job->n_models; i++)
		mean_weight[i] = st && st->have_weights ? st->mean_omega[i] : 0.0;
}

const struct smelt_method smelt_method_widen = {
    .name = "widen",
    .summary = "weight disentanglement: per-column magnitude/direction ranks decide each "
               "model's weight",
    .help = "Needs a base. For every 2-D weight, each column (input feature; for the token\n"
            "embedding each token, for lm_head each hidden feature) is split into a magnitude\n"
            "and a direction, for the base and every model. Per model, the magnitude change\n"
            "|norm(w)-norm(b)| and the direction change 1-cos(w,b) of every column are ranked\n"
            "among that model's columns (rank/k in [0,1)). A softmax over the models of rank/T\n"
            "gives each model a score per column; a column whose rank exceeds threshold x the\n"
            "mean rank (exactly: position q > t(k-1)/2) gets score `calibration` instead. The\n"
            "weight is the mean of the magnitude and direction scores, and the output is\n"
            "base + sum_n weight_n[col] * (model_n - base). 1-D tensors (norms, biases) use\n"
            "|model-base| per element directly (softmax and threshold against its mean).\n"
            "All parameters are global. threshold < 0 gives task arithmetic with lambda =\n"
            "calibration; threshold >= 2 turns calibration off for matrices. Tensors matching\n"
            "an `exclude` regex keep the base.",
    .paper = "Yu et al., Extend Model Merging from Fine-Tuned to Pre-Trained Large Language "
             "Models via Weight Disentanglement, arXiv:2408.03092 (code: yule-BUAA/MergeLLM)",
    .base = SMELT_BASE_REQUIRED,
    .min_models = 1,
    .max_models = WIDEN_MAX_MODELS,
    .flags = 0,
    .params = widen_params,
    .n_params = N_PARAMS,
    .check = widen_check,
    .setup = widen_setup,
    .stats = widen_stats,
    .combine = NULL,
    .finish = widen_finish,
    .merge = widen_merge,
    .weights = widen_weights,
    .release = widen_release,
};

int smelt_widen_job_weights(const struct smelt_method *m, const struct smelt_tensor_job *job,
                            double *mean_omega)
{
	const struct widen_state *st;

	if (m != &smelt_method_widen || !job || !job->state)
		return SMELT_ENOTFOUND;
	st = job->state;
	if (!st->have_weights)
		return SMELT_ENOTFOUND;
	memcpy(mean_omega, st->mean_omega, (size_t)st->n * sizeof(double));
	return 0;
}

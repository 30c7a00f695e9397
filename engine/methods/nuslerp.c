/* nuslerp.c: slerp between two models by weight, over the whole tensor, per
 * row or per column, optionally around a base (mergekit "nuslerp"). */
#include <math.h>
#include <stdlib.h>

#include "geom.h"
#include "smelt/method.h"

enum { P_WEIGHT, P_FLATTEN, P_ROW_WISE, N_PARAMS };

static const struct smelt_param_def params[N_PARAMS] = {
    [P_WEIGHT] = {"weight", SMELT_PARAM_FLOAT, SMELT_SCOPE_MODEL, true, 0, -INFINITY, INFINITY,
                  NULL, "relative weight; t = weight_2 / (weight_1 + weight_2)", false},
    [P_FLATTEN] = {"nuslerp_flatten", SMELT_PARAM_BOOL, SMELT_SCOPE_GLOBAL, false, 1, 0, 1, NULL,
                   "one slerp over the whole tensor (else one per row or column)", false},
    [P_ROW_WISE] = {"nuslerp_row_wise", SMELT_PARAM_BOOL, SMELT_SCOPE_GLOBAL, false, 0, 0, 1, NULL,
                    "when not flattened: one slerp per column W[:,j] instead of per row "
                    "W[i,:]",
                    false},
};

enum nuslerp_mode {
	MODE_FLAT,    /* one vector: the whole tensor (stats pass) */
	MODE_SEGMENT, /* one vector per slice along the last axis (in merge) */
	MODE_COLUMN   /* one vector per column across rows (per-column stats pass) */
};

struct nuslerp_state {
	enum nuslerp_mode mode;
	double t;
	uint64_t seg; /* MODE_SEGMENT vector length */
	double c[2];  /* MODE_FLAT coefficients */
	double *ccol; /* MODE_COLUMN: 2 coefficients per column */
};

/* mergekit: t = w2 / (w1 + w2), or 0.5 when |w1 + w2| < 1e-6. */
static double nuslerp_t(const struct smelt_tensor_job *job)
{
	double w1 = smelt_pm(job, 0, P_WEIGHT), w2 = smelt_pm(job, 1, P_WEIGHT);

	return fabs(w1 + w2) < 1e-6 ? 0.5 : w2 / (w1 + w2);
}

static int nuslerp_check(const struct smelt_tensor_job *job, struct smelt_err *err)
{
	if (job->n_models != 2)
		return smelt_fail(err, SMELT_EINVAL,
		                  "nuslerp: tensor %s: needs exactly 2 models besides the base, "
		                  "got %d",
		                  job->name, job->n_models);
	return 0;
}

static void nuslerp_release(struct smelt_tensor_job *job);

static int nuslerp_setup(struct smelt_tensor_job *job, struct smelt_err *err)
{
	struct nuslerp_state *s = calloc(1, sizeof(*s));

	if (!s)
		goto oom;
	s->t = nuslerp_t(job);
	job->state = s;
	if (smelt_pg(job, P_FLATTEN) != 0) {
		s->mode = MODE_FLAT;
		job->n_passes = 1;
		job->acc_bytes[0] = smelt_geom_tri_size(2) * sizeof(double);
	} else if (smelt_pg(job, P_ROW_WISE) != 0 && job->ndim >= 2) {
		s->mode = MODE_COLUMN;
		s->ccol = malloc(2 * (size_t)(job->cols ? job->cols : 1) * sizeof(double));
		if (!s->ccol)
			goto oom;
		job->n_passes = 1;
		job->acc_bytes[0] = 3 * (size_t)job->cols * sizeof(double);
	} else {
		/* a 1-D tensor has one vector in both unflattened modes */
		s->mode = MODE_SEGMENT;
		s->seg = smelt_geom_seg_len(job);
		job->n_passes = 0;
	}
	if (!job->numel)
		job->n_passes = 0; /* an empty tensor has nothing to measure */
	return 0;
oom:
	/* the executor calls release() only after a successful setup */
	nuslerp_release(job);
	return smelt_fail(err, SMELT_ENOMEM, "nuslerp: tensor %s: out of memory", job->name);
}

/* v = x - base (rounded to f32 like mergekit's delta), or x without base. */
static inline float rel(const float *x, const float *base, size_t e)
{
	return base ? x[e] - base[e] : x[e];
}

static void nuslerp_stats(struct smelt_tensor_job *job, int pass, const struct smelt_block *b,
                          void *acc)
{
	const struct nuslerp_state *s = job->state;
	double *a = acc;

	(void)pass;
	if (s->mode == MODE_FLAT) {
		smelt_geom_gram_add(b->x, 2, b->base, (size_t)(b->nrows * job->cols), a);
		return;
	}
	for (uint64_t r = 0; r < b->nrows; r++) {
		size_t off = (size_t)(r * job->cols);

		for (size_t j = 0; j < job->cols; j++) {
			double v0 = rel(b->x[0], b->base, off + j);
			double v1 = rel(b->x[1], b->base, off + j);

			a[3 * j] += v0 * v0;
			a[3 * j + 1] += v0 * v1;
			a[3 * j + 2] += v1 * v1;
		}
	}
}

static int nuslerp_finish(struct smelt_tensor_job *job, int pass, const void *acc,
                          struct smelt_err *err)
{
	struct nuslerp_state *s = job->state;
	const double *a = acc;

	(void)pass;
	(void)err;
	if (s->mode == MODE_FLAT) {
		/* upper triangle of {v0, v1}: v0v0, v0v1, v1v1 */
		smelt_geom_nuslerp_coef(a[0], a[2], a[1], s->t, s->c);
		return 0;
	}
	for (size_t j = 0; j < job->cols; j++)
		smelt_geom_nuslerp_coef(a[3 * j], a[3 * j + 2], a[3 * j + 1], s->t,
		                        &s->ccol[2 * j]);
	return 0;
}

static inline float combine(const struct smelt_block *b, size_t e, const double *c)
{
	double y = c[0] * rel(b->x[0], b->base, e) + c[1] * rel(b->x[1], b->base, e);

	return b->base ? b->base[e] + (float)y : (float)y;
}

static void merge_segments(const struct nuslerp_state *s, const struct smelt_tensor_job *job,
                           const struct smelt_block *b, float *out)
{
	size_t n = (size_t)(b->nrows * job->cols);

	for (size_t o = 0; o < n; o += s->seg) {
		double n0 = 0, n1 = 0, d = 0, c[2];

		for (size_t e = o; e < o + s->seg; e++) {
			double v0 = rel(b->x[0], b->base, e), v1 = rel(b->x[1], b->base, e);

			n0 += v0 * v0;
			n1 += v1 * v1;
			d += v0 * v1;
		}
		smelt_geom_nuslerp_coef(n0, n1, d, s->t, c);
		for (size_t e = o; e < o + s->seg; e++)
			out[e] = combine(b, e, c);
	}
}

static void nuslerp_merge(const struct smelt_tensor_job *job, const struct smelt_block *b,
                          float *out)
{
	const struct nuslerp_state *s = job->state;
	size_t n = (size_t)(b->nrows * job->cols);

	switch (s->mode) {
	case MODE_FLAT:
		for (size_t e = 0; e < n; e++)
			out[e] = combine(b, e, s->c);
		break;
	case MODE_COLUMN:
		for (size_t e = 0; e < n; e++)
			out[e] = combine(b, e, &s->ccol[2 * (e % job->cols)]);
		break;
	case MODE_SEGMENT: merge_segments(s, job, b, out); break;
	}
}

static void nuslerp_release(struct smelt_tensor_job *job)
{
	struct nuslerp_state *s = job->state;

	if (s)
		free(s->ccol);
	free(s);
	job->state = NULL;
}

const struct smelt_method smelt_method_nuslerp = {
    .name = "nuslerp",
    .summary = "slerp between two models by weight, per tensor, row or column",
    .help = "t = weight_2 / (weight_1 + weight_2) (0.5 if that sum is below 1e-6 in\n"
            "magnitude); weight is per model and required. Vectors v1, v2 are the two\n"
            "models, or their task vectors x_i - b when a base is given (then\n"
            "y = b + slerp). slerp: cos = v1.v2 / (|v1| |v2|) (norms clamped at 1e-7,\n"
            "cos clamped to [-1,1]), theta = acos cos; if |sin theta| < 1e-8 lerp, else\n"
            "y = (sin((1-t) theta) v1 + sin(t theta) v2) / sin theta. A zero vector is\n"
            "not colinear: it gives theta = pi/2.\n"
            "nuslerp_flatten (default true): one slerp over the whole tensor. Otherwise\n"
            "one slerp per row W[i,:] (per slice along the last axis), or per column\n"
            "W[:,j] with nuslerp_row_wise=true. Exactly 2 models; base optional.",
    .paper = "mergekit (Arcee AI), NuSLERP, https://github.com/arcee-ai/mergekit",
    .base = SMELT_BASE_OPTIONAL,
    .min_models = 2,
    .max_models = 2,
    .params = params,
    .n_params = N_PARAMS,
    .check = nuslerp_check,
    .setup = nuslerp_setup,
    .stats = nuslerp_stats,
    .finish = nuslerp_finish,
    .merge = nuslerp_merge,
    .release = nuslerp_release,
};

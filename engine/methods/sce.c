/*
 * sce.c: SCE merging (Select by variance, Calculate matrix weights, Erase
 * minority signs), mergekit's `sce` semantics.
 *
 * Passes when select_topk < 1 (radix select over the f32 variance with the
 * two-level schedule, so one pass is left for the matrix weights):
 *   0: histogram of the variance's high 16 bits + count of nonzero variances
 *   1: histogram of the low 15 bits inside the chosen bucket
 *   2: per-block counts of positions whose variance equals the threshold
 *   3: per model sum of squared masked deltas (the matrix weights)
 * With select_topk >= 1 only pass 3's sums run (as pass 0).
 */
#include <stdlib.h>
#include <string.h>

#include "sparsify.h"

enum { P_SELECT_TOPK, P_INT8_MASK, N_PARAMS };

static const struct smelt_param_def params[N_PARAMS] = {
    [P_SELECT_TOPK] = {"select_topk", SMELT_PARAM_FLOAT, SMELT_SCOPE_GLOBAL, false, 1.0, -INFINITY,
                       INFINITY, NULL,
                       "fraction of the positions with nonzero variance across models kept "
                       "(>= 1 keeps all)",
                       false},
    [P_INT8_MASK] = {"int8_mask", SMELT_PARAM_BOOL, SMELT_SCOPE_GLOBAL, false, 0, 0, 1, NULL,
                     "accepted for mergekit compatibility; no effect on results", true},
};

#define SCE_MAX_MODELS 128

struct sce_state {
	int n;
	bool select;
	float topk;
	int weight_pass;   /* pass summing squared deltas */
	struct sp_cut cut; /* the top-k positions by variance */
	float *omega;      /* [n] matrix weights */
};

static const struct sp_radix *const radix = &sp_radix2;

static int sce_check(const struct smelt_tensor_job *job, struct smelt_err *err)
{
	if (!job->has_base)
		return smelt_fail(err, SMELT_EINVAL, "sce: tensor %s: needs a base model",
		                  job->name);
	if (job->n_models > SCE_MAX_MODELS)
		return smelt_fail(err, SMELT_EINVAL,
		                  "sce: tensor %s: %d models, at most %d supported", job->name,
		                  job->n_models, SCE_MAX_MODELS);
	return 0;
}

static void sce_release(struct smelt_tensor_job *job)
{
	struct sce_state *s = job->state;

	if (!s)
		return;
	sp_cut_release(&s->cut);
	free(s->omega);
	free(s);
	job->state = NULL;
}

static int sce_setup(struct smelt_tensor_job *job, struct smelt_err *err)
{
	struct sce_state *s = calloc(1, sizeof(*s));
	double topk = smelt_pg(job, P_SELECT_TOPK);

	if (!s)
		return smelt_fail(err, SMELT_ENOMEM, "%s: out of memory", job->name);
	job->state = s;
	s->n = job->n_models;
	s->omega = calloc(s->n ? (size_t)s->n : 1, sizeof(float));
	if (!s->omega) {
		sce_release(job);
		return smelt_fail(err, SMELT_ENOMEM, "%s: out of memory", job->name);
	}
	s->select = topk < 1.0;
	/* mergekit: k = int(count_nonzero(var) * topk); the count is an int64
	 * tensor, so the product is an f32 tensor before the floor. A topk
	 * <= 0 selects nothing. */
	s->topk = topk > 0 ? (float)topk : 0.0f;
	if (s->select) {
		job->acc_bytes[0] = ((1u << radix->width[0]) + 1) * sizeof(double);
		job->acc_bytes[1] = (1u << radix->width[1]) * sizeof(double);
		job->acc_bytes[2] = sizeof(double);
		s->weight_pass = 3;
	}
	job->acc_bytes[s->weight_pass] = (size_t)s->n * sizeof(double);
	job->n_passes = s->weight_pass + 1;
	return 0;
}

/* Population variance of the deltas at position j, rounded to f32 (torch
 * accumulates in double on the CPU). */
static float position_variance(const struct smelt_block *b, int n, size_t j)
{
	double mean = 0, var = 0;

	for (int i = 0; i < n; i++)
		mean += (double)(b->x[i][j] - b->base[j]);
	mean /= n;
	for (int i = 0; i < n; i++) {
		double d = (double)(b->x[i][j] - b->base[j]) - mean;

		var += d * d;
	}
	return (float)(var / n);
}

static void sce_stats(struct smelt_tensor_job *job, int pass, const struct smelt_block *b,
                      void *accv)
{
	struct sce_state *s = job->state;
	size_t len = (size_t)(b->nrows * job->cols);
	double *acc = accv;

	if (pass == s->weight_pass) {
		struct sp_walk w = {0};

		if (s->select)
			sp_walk_init(&w, &s->cut, b->index);
		for (size_t j = 0; j < len; j++) {
			bool keep = !s->select ||
			            sp_cut_take(&s->cut, &w, sp_key(position_variance(b, s->n, j)));

			if (!keep)
				continue;
			for (int i = 0; i < s->n; i++) {
				double d = (double)(b->x[i][j] - b->base[j]);

				acc[i] += d * d;
			}
		}
		return;
	}
	if (pass == 0) {
		double *count = acc + (1u << radix->width[0]);

		for (size_t j = 0; j < len; j++) {
			uint32_t key = sp_key(position_variance(b, s->n, j));

			acc[key >> radix->shift[0]] += 1.0;
			*count += key != 0;
		}
	} else if (pass == 1) {
		if (!sp_cut_pending(&s->cut, radix))
			return;
		for (size_t j = 0; j < len; j++)
			sp_cut_hist(&s->cut, radix, sp_key(position_variance(b, s->n, j)), acc);
	} else {
		uint64_t ties = 0;

		if (s->cut.kind != SP_CUT_SELECT)
			return;
		for (size_t j = 0; j < len; j++)
			ties += sp_key(position_variance(b, s->n, j)) == s->cut.key;
		sp_cut_set_ties(&s->cut, b->index, ties);
	}
}

static void matrix_weights(struct sce_state *s, const double *sq, uint64_t numel)
{
	double total = 0;

	if (numel == 0)
		numel = 1; /* an empty tensor: all sums are 0 */

	/* mergekit: w_i = mean(d_i^2), normalised by their sum; uniform when
	 * |sum| < 1e-6 (all deltas small, not only all zero) */
	for (int i = 0; i < s->n; i++)
		total += sq[i] / (double)numel;
	for (int i = 0; i < s->n; i++)
		s->omega[i] = fabs(total) < 1e-6 ? (float)(1.0 / s->n)
		                                 : (float)(sq[i] / (double)numel / total);
}

static int sce_finish(struct smelt_tensor_job *job, int pass, const void *accv,
                      struct smelt_err *err)
{
	struct sce_state *s = job->state;
	const double *acc = accv;

	if (pass == s->weight_pass) {
		matrix_weights(s, acc, job->numel);
		return 0;
	}
	if (pass == 0) {
		double count = acc[1u << radix->width[0]];
		uint64_t k = (uint64_t)floorf((float)count * s->topk);

		if (sp_cut_init(&s->cut, k, job->numel, job->n_blocks) != 0)
			return smelt_fail(err, SMELT_ENOMEM, "%s: out of memory", job->name);
		if (s->cut.kind == SP_CUT_SELECT)
			sp_cut_level_done(&s->cut, radix, acc);
	} else if (pass == 1) {
		if (sp_cut_pending(&s->cut, radix))
			sp_cut_level_done(&s->cut, radix, acc);
	} else {
		sp_cut_ties_done(&s->cut, job->n_blocks);
	}
	return 0;
}

#define SCE_TILE 256

/* One tile: the trimmed deltas per model, then the election over models in
 * the same f32 order as a per-element loop. Agreement is a bit mask (a
 * float select does not vectorise); adding +0 for a disagreeing model
 * leaves sums that started at +0 unchanged. */
static void sce_tile(const struct sce_state *s, const struct smelt_block *b, size_t o, size_t t,
                     const unsigned char *keep, float *out)
{
	float d[SCE_MAX_MODELS][SCE_TILE];
	float vote[SCE_TILE], mixed[SCE_TILE], div[SCE_TILE];
	const float *base = b->base + o;

	for (int i = 0; i < s->n; i++) {
		const float *x = b->x[i] + o;

		for (size_t j = 0; j < t; j++) {
			float v = x[j] - base[j];
			uint32_t u;

			memcpy(&u, &v, sizeof(u));
			u &= -(uint32_t)keep[j];
			memcpy(&d[i][j], &u, sizeof(u));
		}
	}
	for (size_t j = 0; j < t; j++)
		vote[j] = mixed[j] = div[j] = 0.0f;
	for (int i = 0; i < s->n; i++)
		for (size_t j = 0; j < t; j++)
			vote[j] += d[i][j];
	for (int i = 0; i < s->n; i++) {
		float om = s->omega[i];
		uint32_t ob;

		memcpy(&ob, &om, sizeof(ob));
		for (size_t j = 0; j < t; j++) {
			float v = d[i][j], mv, mw, prod = v * om;
			uint32_t plus = -(uint32_t)(vote[j] >= 0.0f), agree, pb, wb;

			agree = (plus & -(uint32_t)(v > 0.0f)) | (~plus & -(uint32_t)(v < 0.0f));
			memcpy(&pb, &prod, sizeof(pb));
			pb &= agree;
			wb = ob & agree;
			memcpy(&mv, &pb, sizeof(mv));
			memcpy(&mw, &wb, sizeof(mw));
			mixed[j] += mv;
			div[j] += mw;
		}
	}
	/* mergekit clamps the divisor at 1e-6 (no agreeing model: 0 / 1e-6);
	 * the comparison form equals fmaxf(div, 1e-6f), NaN included */
	for (size_t j = 0; j < t; j++)
		out[o + j] = base[j] + mixed[j] / (div[j] > 1e-6f ? div[j] : 1e-6f);
}

static void sce_merge(const struct smelt_tensor_job *job, const struct smelt_block *b, float *out)
{
	const struct sce_state *s = job->state;
	size_t len = (size_t)(b->nrows * job->cols);
	unsigned char keep[SCE_TILE];
	struct sp_walk w = {0};

	if (s->select)
		sp_walk_init(&w, &s->cut, b->index);
	for (size_t o = 0; o < len; o += SCE_TILE) {
		size_t t = len - o < SCE_TILE ? len - o : SCE_TILE;

		for (size_t j = 0; j < t; j++)
			keep[j] = !s->select || sp_cut_take(&s->cut, &w,
			                                    sp_key(position_variance(b, s->n, o + j)));
		sce_tile(s, b, o, t, keep, out);
	}
}

const struct smelt_method smelt_method_sce = {
    .name = "sce",
    .summary = "SCE: keep high-variance positions, weight models by delta energy, erase minority "
               "signs",
    .help = "d_i = x_i - base. If select_topk < 1: per position the population variance of the\n"
            "d_i across models; keep the k = floor(f32(#nonzero variances * select_topk))\n"
            "positions of largest variance (equal variances: the earlier position first) and\n"
            "zero the rest in every d_i. Matrix weights w_i = mean(d_i^2) / sum_j mean(d_j^2)\n"
            "(uniform when that sum is below 1e-6). Per element the sign s = + if\n"
            "sum_i d_i >= 0 else - (unweighted); y = base + sum_agree w_i d_i /\n"
            "max(sum_agree w_i, 1e-6). Needs a base; no weight or lambda parameters.",
    .paper = "FuseChat-3.0 / SCE: Wan et al., FuseChat: Knowledge Fusion of Chat Models, "
             "arXiv:2408.07990",
    .base = SMELT_BASE_REQUIRED,
    .min_models = 1,
    .max_models = 0,
    .flags = 0,
    .params = params,
    .n_params = N_PARAMS,
    .check = sce_check,
    .setup = sce_setup,
    .stats = sce_stats,
    .finish = sce_finish,
    .merge = sce_merge,
    .release = sce_release,
};

/* arcee_fusion.c: keep the model's change only where it is important: large
 * and in a row whose softmax moved (mergekit "arcee_fusion").
 *
 * The threshold needs quantiles of the importance over the whole tensor.
 * Like mergekit, they come from at most 1e6 elements: all of them for
 * smaller tensors, otherwise 1e6 indices drawn uniformly with replacement
 * with smelt's counter RNG (draw k = smelt_rng_uniform(rng_key[0], k) *
 * numel), so the threshold is a pure function of (seed, tensor name, data)
 * whatever the thread count or block size. The statistics pass stores each
 * sampled importance in its slot (blocks own disjoint slots: the indices
 * are sorted), finish() sorts the <= 1e6 samples and reads the quartiles.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "geom.h"
#include "smelt/method.h"
#include "smelt/rng.h"

#define FUSION_SAMPLES 1000000u

struct fusion_state {
	uint64_t seg;     /* softmax axis length */
	size_t n_samples;
	uint64_t *idx;    /* sorted flat indices of the samples, NULL = every element */
	float *samples;   /* importance of each sample */
	float tau;        /* threshold */
};

static int fusion_check(const struct smelt_tensor_job *job, struct smelt_err *err)
{
	if (job->n_models != 1)
		return smelt_fail(err, SMELT_EINVAL,
				  "arcee_fusion: tensor %s: needs exactly 1 model besides the "
				  "base, got %d",
				  job->name, job->n_models);
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

/* Ascending, NaN last (torch.sort's order). */
static int cmp_f32(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;

	if (isnan(x) || isnan(y))
		return isnan(x) - isnan(y);
	return (x > y) - (x < y);
}

static void fusion_release(struct smelt_tensor_job *job);

static int fusion_setup(struct smelt_tensor_job *job, struct smelt_err *err)
{
	struct fusion_state *s = calloc(1, sizeof(*s));

	if (!s)
		goto oom;
	job->state = s;
	s->seg = smelt_geom_seg_len(job);
	s->n_samples = job->numel > FUSION_SAMPLES ? FUSION_SAMPLES : (size_t)job->numel;
	if (job->numel > FUSION_SAMPLES) {
		s->idx = malloc(s->n_samples * sizeof(*s->idx));
		if (!s->idx)
			goto oom;
		for (size_t k = 0; k < s->n_samples; k++) {
			uint64_t e = (uint64_t)(smelt_rng_uniform(job->rng_key[0], k) *
						(double)job->numel);

			s->idx[k] = e < job->numel ? e : job->numel - 1;
		}
		qsort(s->idx, s->n_samples, sizeof(*s->idx), cmp_u64);
	}
	s->samples = malloc((s->n_samples ? s->n_samples : 1) * sizeof(*s->samples));
	if (!s->samples)
		goto oom;
	job->n_passes = s->n_samples ? 1 : 0;
	job->acc_bytes[0] = sizeof(double); /* samples written, checked in finish */
	return 0;
oom:
	/* the executor calls release() only after a successful setup */
	fusion_release(job);
	return smelt_fail(err, SMELT_ENOMEM, "arcee_fusion: tensor %s: out of memory", job->name);
}

/* KL(softmax(x) + 1e-8 || softmax(b) + 1e-8) of one slice, in double. */
static double slice_kl(const float *x, const float *b, size_t len)
{
	double mx = -INFINITY, mb = -INFINITY, zx = 0, zb = 0, kl = 0;

	for (size_t e = 0; e < len; e++) {
		mx = fmax(mx, x[e]);
		mb = fmax(mb, b[e]);
	}
	for (size_t e = 0; e < len; e++) {
		zx += exp(x[e] - mx);
		zb += exp(b[e] - mb);
	}
	for (size_t e = 0; e < len; e++) {
		double p = exp(x[e] - mx) / zx + 1e-8, q = exp(b[e] - mb) / zb + 1e-8;

		kl += p * log(p / q);
	}
	return kl;
}

/* The importance of one element, in f32 like mergekit: |x - b| * KL_row. */
static float importance(float x, float b, float kl)
{
	return fabsf(x - b) * kl;
}

/* First position in the sorted idx[0..n) holding a value >= v. */
static size_t lower_bound(const uint64_t *idx, size_t n, uint64_t v)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (idx[mid] < v)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static void fusion_stats(struct smelt_tensor_job *job, int pass, const struct smelt_block *b,
			 void *acc)
{
	struct fusion_state *s = job->state;
	uint64_t e0 = b->elem0, e1 = b->elem0 + b->nrows * job->cols;
	size_t lo = s->idx ? lower_bound(s->idx, s->n_samples, e0) : (size_t)e0;
	size_t hi = s->idx ? lower_bound(s->idx, s->n_samples, e1) : (size_t)e1;
	uint64_t cached = UINT64_MAX;
	float kl = 0;

	(void)pass;
	for (size_t p = lo; p < hi; p++) {
		uint64_t local = (s->idx ? s->idx[p] : (uint64_t)p) - e0;
		uint64_t seg = local / s->seg;

		if (seg != cached) {
			size_t off = (size_t)(seg * s->seg);

			kl = (float)slice_kl(b->x[0] + off, b->base + off, (size_t)s->seg);
			cached = seg;
		}
		s->samples[p] = importance(b->x[0][local], b->base[local], kl);
	}
	*(double *)acc += (double)(hi - lo);
}

/* mergekit's quantile: sorted[(long)(q * (n - 1))], q and the product f32. */
static float quantile(const float *sorted, size_t n, float q)
{
	size_t i = (size_t)(q * (float)(n - 1));

	return sorted[i < n ? i : n - 1];
}

static int fusion_finish(struct smelt_tensor_job *job, int pass, const void *acc,
			 struct smelt_err *err)
{
	struct fusion_state *s = job->state;
	float q1, med, q3;

	(void)pass;
	if (*(const double *)acc != (double)s->n_samples)
		return smelt_fail(err, SMELT_EINVAL,
				  "arcee_fusion: tensor %s: collected %.0f of %zu samples",
				  job->name, *(const double *)acc, s->n_samples);
	qsort(s->samples, s->n_samples, sizeof(*s->samples), cmp_f32);
	q1 = quantile(s->samples, s->n_samples, 0.25f);
	med = quantile(s->samples, s->n_samples, 0.5f);
	q3 = quantile(s->samples, s->n_samples, 0.75f);
	s->tau = med + 1.5f * (q3 - q1);
	/* the samples are not needed while merging */
	free(s->samples);
	free(s->idx);
	s->samples = NULL;
	s->idx = NULL;
	return 0;
}

static void fusion_merge(const struct smelt_tensor_job *job, const struct smelt_block *b,
			 float *out)
{
	const struct fusion_state *s = job->state;
	size_t n = (size_t)(b->nrows * job->cols);

	for (size_t o = 0; o < n; o += s->seg) {
		const float *x = b->x[0] + o, *base = b->base + o;
		float kl = (float)slice_kl(x, base, (size_t)s->seg);

		for (size_t e = 0; e < s->seg; e++) {
			bool keep = importance(x[e], base[e], kl) >= s->tau;

			/* b + mask * (x - b), in f32 as mergekit writes it */
			out[o + e] = keep ? base[e] + (x[e] - base[e]) : base[e];
		}
	}
}

static void fusion_release(struct smelt_tensor_job *job)
{
	struct fusion_state *s = job->state;

	if (s) {
		free(s->idx);
		free(s->samples);
	}
	free(s);
	job->state = NULL;
}

/* For tests: the threshold finish() chose (after a run of the stats pass). */
float smelt_fusion_threshold(const struct smelt_tensor_job *job)
{
	return ((const struct fusion_state *)job->state)->tau;
}

const struct smelt_method smelt_method_arcee_fusion = {
	.name = "arcee_fusion",
	.summary = "keep only the model's important changes over the base",
	.help = "Per row (slice along the last axis): KL = sum p log(p/q) with\n"
		"p = softmax(x) + 1e-8, q = softmax(b) + 1e-8. Importance I = |x - b| * KL.\n"
		"Threshold tau = median(I) + 1.5 (Q3 - Q1), the quartiles read as\n"
		"sorted[floor(q (n-1))] from all elements, or from 1e6 elements sampled\n"
		"with smelt's seeded RNG for larger tensors (reproducible for a given\n"
		"seed). y = b + [I >= tau] (x - b). No parameters. Needs a base and\n"
		"exactly 1 other model.",
	.paper = "Arcee AI, Arcee Fusion (mergekit), https://arcee.ai",
	.base = SMELT_BASE_REQUIRED,
	.min_models = 1,
	.max_models = 1,
	.flags = SMELT_M_RANDOM,
	.params = NULL,
	.n_params = 0,
	.check = fusion_check,
	.setup = fusion_setup,
	.stats = fusion_stats,
	.finish = fusion_finish,
	.merge = fusion_merge,
	.release = fusion_release,
};

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
 * are sorted) and each row's KL divergence, finish() radix-sorts the <= 1e6
 * samples and reads the quartiles, merge() compares with the threshold.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "geom.h"
#include "smelt/method.h"
#include "smelt/rng.h"

#define FUSION_SAMPLES 1000000u
/* Up to this many rows, the statistics pass keeps each row's KL divergence
 * (4 bytes a row) so merge() need not recompute the softmaxes. */
#define FUSION_KL_CACHE (1u << 22)

struct fusion_state {
	uint64_t seg;   /* softmax axis length */
	uint64_t n_seg; /* rows (slices along the softmax axis) */
	size_t n_samples;
	uint64_t *idx;  /* sorted flat indices of the samples, NULL = every element */
	float *samples; /* importance of each sample */
	float *kl;      /* per-row KL from the statistics pass, or NULL */
	float tau;      /* threshold */
};

static int fusion_check(const struct smelt_tensor_job *job, struct smelt_err *err)
{
	if (smelt_geom_check_base(job, "arcee_fusion", err))
		return SMELT_EINVAL;
	if (job->n_models != 1)
		return smelt_fail(err, SMELT_EINVAL,
		                  "arcee_fusion: tensor %s: needs exactly 1 model besides the "
		                  "base, got %d",
		                  job->name, job->n_models);
	return 0;
}

/* LSD radix sort of n keys below 2^bits, 16 bits a pass; tmp holds n. */
static void radix_u64(uint64_t *a, uint64_t *tmp, size_t n, int bits)
{
	size_t *count = calloc(1u << 16, sizeof(size_t));

	if (!count)
		return; /* the caller checks the order */
	for (int shift = 0; shift < bits; shift += 16) {
		size_t sum = 0;
		uint64_t *t;

		memset(count, 0, (1u << 16) * sizeof(size_t));
		for (size_t i = 0; i < n; i++)
			count[(a[i] >> shift) & 0xffff]++;
		for (size_t d = 0; d < (1u << 16); d++) {
			size_t c = count[d];

			count[d] = sum;
			sum += c;
		}
		for (size_t i = 0; i < n; i++)
			tmp[count[(a[i] >> shift) & 0xffff]++] = a[i];
		t = a;
		a = tmp;
		tmp = t;
	}
	if ((bits + 15) / 16 % 2) /* an odd number of passes left the result in tmp */
		memcpy(tmp, a, n * sizeof(*a));
	free(count);
}

/* An order-preserving unsigned key for a float, NaN last (torch.sort). */
static uint64_t float_key(float f)
{
	uint32_t u;

	if (isnan(f))
		return 0xffffffffu;
	memcpy(&u, &f, sizeof(u));
	return u & 0x80000000u ? ~u & 0xffffffffu : u | 0x80000000u;
}

static float key_float(uint64_t k)
{
	uint32_t u = (uint32_t)k;
	float f;

	if (u == 0xffffffffu)
		return NAN;
	u = u & 0x80000000u ? u & 0x7fffffffu : ~u;
	memcpy(&f, &u, sizeof(f));
	return f;
}

static bool sorted_u64(const uint64_t *a, size_t n)
{
	for (size_t i = 1; i < n; i++)
		if (a[i - 1] > a[i])
			return false;
	return true;
}

static int bits_for(uint64_t v)
{
	int b = 0;

	while (b < 64 && (v >> b))
		b++;
	return b ? b : 1;
}

static void fusion_release(struct smelt_tensor_job *job);

static int fusion_setup(struct smelt_tensor_job *job, struct smelt_err *err)
{
	struct fusion_state *s = calloc(1, sizeof(*s));
	uint64_t *tmp = NULL;

	if (!s)
		goto oom;
	job->state = s;
	s->seg = smelt_geom_seg_len(job);
	s->n_seg = job->numel / s->seg;
	s->n_samples = job->numel > FUSION_SAMPLES ? FUSION_SAMPLES : (size_t)job->numel;
	if (job->numel > FUSION_SAMPLES) {
		s->idx = malloc(s->n_samples * sizeof(*s->idx));
		tmp = malloc(s->n_samples * sizeof(*tmp));
		if (!s->idx || !tmp)
			goto oom;
		for (size_t k = 0; k < s->n_samples; k++) {
			uint64_t e =
			    (uint64_t)(smelt_rng_uniform(job->rng_key[0], k) * (double)job->numel);

			s->idx[k] = e < job->numel ? e : job->numel - 1;
		}
		radix_u64(s->idx, tmp, s->n_samples, bits_for(job->numel - 1));
		free(tmp);
		tmp = NULL;
		if (!sorted_u64(s->idx, s->n_samples))
			goto oom; /* the sort could not get its counters */
	}
	s->samples = malloc((s->n_samples ? s->n_samples : 1) * sizeof(*s->samples));
	if (!s->samples)
		goto oom;
	if (s->n_seg && s->n_seg <= FUSION_KL_CACHE)
		s->kl = malloc(s->n_seg * sizeof(*s->kl)); /* optional: NULL recomputes */
	job->n_passes = s->n_samples ? 1 : 0;
	job->acc_bytes[0] = sizeof(double); /* samples written, checked in finish */
	return 0;
oom:
	free(tmp);
	/* the executor calls release() only after a successful setup */
	fusion_release(job);
	return smelt_fail(err, SMELT_ENOMEM, "arcee_fusion: tensor %s: out of memory", job->name);
}

/* Rows up to this long keep their exponentials on the stack (2 x 32 KiB)
 * instead of computing them twice; the values are the same either way. */
#define KL_STACK_ROW 4096

/* KL(softmax(x) + 1e-8 || softmax(b) + 1e-8) of one slice, in double. */
static double slice_kl(const float *x, const float *b, size_t len)
{
	double ex[KL_STACK_ROW], eb[KL_STACK_ROW];
	double mx = -INFINITY, mb = -INFINITY, zx = 0, zb = 0, kl = 0;
	bool keep = len <= KL_STACK_ROW;

	for (size_t e = 0; e < len; e++) {
		mx = x[e] > mx ? x[e] : mx;
		mb = b[e] > mb ? b[e] : mb;
	}
	for (size_t e = 0; e < len; e++) {
		double px = exp(x[e] - mx), pb = exp(b[e] - mb);

		zx += px;
		zb += pb;
		if (keep) {
			ex[e] = px;
			eb[e] = pb;
		}
	}
	for (size_t e = 0; e < len; e++) {
		double px = keep ? ex[e] : exp(x[e] - mx), pb = keep ? eb[e] : exp(b[e] - mb);
		double p = px / zx + 1e-8, q = pb / zb + 1e-8;

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

/* The row KL of row `seg` of block b (row numbers local to the block). */
static float block_kl(const struct fusion_state *s, const struct smelt_block *b, uint64_t seg)
{
	size_t off = (size_t)(seg * s->seg);

	return (float)slice_kl(b->x[0] + off, b->base + off, (size_t)s->seg);
}

static void fusion_stats(struct smelt_tensor_job *job, int pass, const struct smelt_block *b,
                         void *acc)
{
	struct fusion_state *s = job->state;
	uint64_t e0 = b->elem0, e1 = b->elem0 + b->nrows * job->cols;
	size_t lo = s->idx ? lower_bound(s->idx, s->n_samples, e0) : (size_t)e0;
	size_t hi = s->idx ? lower_bound(s->idx, s->n_samples, e1) : (size_t)e1;
	uint64_t seg0 = e0 / s->seg, cached = UINT64_MAX;
	float kl = 0;

	(void)pass;
	/* each block owns its rows' KL slots and its samples' slots */
	if (s->kl)
		for (uint64_t r = 0; r < (e1 - e0) / s->seg; r++)
			s->kl[seg0 + r] = block_kl(s, b, r);
	for (size_t p = lo; p < hi; p++) {
		uint64_t local = (s->idx ? s->idx[p] : (uint64_t)p) - e0;
		uint64_t seg = local / s->seg;

		if (s->kl) {
			kl = s->kl[seg0 + seg];
		} else if (seg != cached) {
			kl = block_kl(s, b, seg);
			cached = seg;
		}
		s->samples[p] = importance(b->x[0][local], b->base[local], kl);
	}
	*(double *)acc += (double)(hi - lo);
}

/* Sort the samples ascending, NaN last, by their order-preserving keys. */
static int sort_samples(float *v, size_t n)
{
	uint64_t *k = malloc(2 * (n ? n : 1) * sizeof(*k));

	if (!k)
		return -1;
	for (size_t i = 0; i < n; i++)
		k[i] = float_key(v[i]);
	radix_u64(k, k + n, n, 32);
	if (!sorted_u64(k, n)) {
		free(k);
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		v[i] = key_float(k[i]);
	free(k);
	return 0;
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
	free(s->idx); /* the indices are not needed any more */
	s->idx = NULL;
	if (sort_samples(s->samples, s->n_samples))
		return smelt_fail(err, SMELT_ENOMEM, "arcee_fusion: tensor %s: out of memory",
		                  job->name);
	q1 = quantile(s->samples, s->n_samples, 0.25f);
	med = quantile(s->samples, s->n_samples, 0.5f);
	q3 = quantile(s->samples, s->n_samples, 0.75f);
	s->tau = med + 1.5f * (q3 - q1);
	/* the samples are not needed while merging */
	free(s->samples);
	s->samples = NULL;
	return 0;
}

static void fusion_merge(const struct smelt_tensor_job *job, const struct smelt_block *b,
                         float *out)
{
	const struct fusion_state *s = job->state;
	size_t n = (size_t)(b->nrows * job->cols);

	for (size_t o = 0; o < n; o += s->seg) {
		const float *x = b->x[0] + o, *base = b->base + o;
		float kl = s->kl ? s->kl[(b->elem0 + o) / s->seg] : block_kl(s, b, o / s->seg);

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
		free(s->kl);
	}
	free(s);
	job->state = NULL;
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

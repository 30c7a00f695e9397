/*
 * widen_core.c: WIDEN's ranks, integer threshold rule, softmax with
 * temperature and calibrated scores (spec widen.md §3-§4, §7). One
 * implementation for the merge method and the analysis re-scoring.
 */
#include "widen_core.h"
#include "../floatbits.h"
#include "../simd.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void widen_divergence(double bb, double ww, double wb, double *mag, double *dir)
{
	double nb = sqrt(bb), nw = sqrt(ww), den = sqrt(ww * bb);

	*mag = fabs(nw - nb);
	/* sqrt(ww * bb) rather than nw * nb: for a column equal to the base
	 * sqrt(fl(x * x)) == x exactly, so its divergence is exactly 0 (ties
	 * then fall back to index order) instead of rounding noise. */
	if (isinf(den))
		den = nw * nb;
	/* A zero column has a 0/0 direction in the authors' code: NaN, which
	 * then ranks after every number. */
	if (nb == 0.0 || nw == 0.0 || isnan(den))
		*dir = NAN;
	else
		*dir = 1.0 - wb / den;
}

struct keyed {
	double v;
	uint32_t j;
};

/* Total order: numbers ascending, NaN after every number, ties by index;
 * with the index tie-break qsort yields exactly the stable sort. */
static int keyed_cmp(const void *pa, const void *pb)
{
	const struct keyed *a = pa, *b = pb;
	bool na = isnan(a->v), nb = isnan(b->v);

	if (na != nb)
		return na ? 1 : -1;
	if (!na && a->v != b->v)
		return a->v < b->v ? -1 : 1;
	return a->j < b->j ? -1 : a->j > b->j;
}

/* Order-preserving key of a double: numbers ascending (-0 as +0), NaN after
 * everything (all NaNs equal, so a stable sort keeps them in index order). */
static uint64_t order_key(double x)
{
	uint64_t u;

	if (isnan(x))
		return UINT64_MAX;
	if (x == 0.0)
		x = 0.0;
	memcpy(&u, &x, sizeof(u));
	return u >> 63 ? ~u : u | (1ull << 63);
}

/* Stable LSD radix sort of (key, index) pairs, 8 bits per pass; passes where
 * every key has the same digit are skipped. Equal keys keep index order,
 * which is exactly the comparison sort below. */
static int radix_positions(const double *v, uint64_t k, uint32_t *pos)
{
	uint64_t *key = malloc(2 * k * sizeof(uint64_t)), *key2;
	uint32_t *idx = malloc(2 * k * sizeof(uint32_t)), *idx2;
	size_t cnt[256];

	if (!key || !idx) {
		free(key);
		free(idx);
		return -1;
	}
	key2 = key + k;
	idx2 = idx + k;
	for (uint64_t j = 0; j < k; j++) {
		key[j] = order_key(v[j]);
		idx[j] = (uint32_t)j;
	}
	for (int shift = 0; shift < 64; shift += 8) {
		size_t sum = 0;
		uint64_t *tk;
		uint32_t *ti;

		memset(cnt, 0, sizeof(cnt));
		for (uint64_t j = 0; j < k; j++)
			cnt[(key[j] >> shift) & 0xff]++;
		if (cnt[(key[0] >> shift) & 0xff] == k)
			continue;
		for (int d = 0; d < 256; d++) {
			size_t c = cnt[d];

			cnt[d] = sum;
			sum += c;
		}
		for (uint64_t j = 0; j < k; j++) {
			size_t at = cnt[(key[j] >> shift) & 0xff]++;

			key2[at] = key[j];
			idx2[at] = idx[j];
		}
		tk = key, key = key2, key2 = tk;
		ti = idx, idx = idx2, idx2 = ti;
	}
	for (uint64_t q = 0; q < k; q++)
		pos[idx[q]] = (uint32_t)q;
	free(key < key2 ? key : key2);
	free(idx < idx2 ? idx : idx2);
	return 0;
}

int widen_positions(const double *v, uint64_t k, uint32_t *pos)
{
	struct keyed *tmp;

	if (k == 0)
		return 0;
	if (k >= 256)
		return radix_positions(v, k, pos);
	tmp = malloc(k * sizeof(*tmp));
	if (!tmp)
		return -1;
	for (uint64_t j = 0; j < k; j++) {
		tmp[j].v = v[j];
		tmp[j].j = (uint32_t)j;
	}
	qsort(tmp, k, sizeof(*tmp), keyed_cmp);
	for (uint64_t q = 0; q < k; q++)
		pos[tmp[q].j] = (uint32_t)q;
	free(tmp);
	return 0;
}

uint64_t widen_n_calibrated(uint64_t k, double t)
{
	double x;

	if (k == 0)
		return 0;
	/* q calibrated iff q > x = t (k - 1) / 2, q in [0, k). */
	x = t * (double)(k - 1) / 2.0;
	if (x < 0.0)
		return k;
	if (x >= (double)(k - 1))
		return 0;
	return k - 1 - (uint64_t)floor(x);
}

/* Softmax over the model axis of v[0..n) / T, max-subtracted, into p. */
static void softmax_models(int n, const double *v, double T, double *p)
{
	double mx = -INFINITY, sum = 0.0;

	for (int i = 0; i < n; i++)
		if (v[i] > mx)
			mx = v[i];
	for (int i = 0; i < n; i++) {
		p[i] = exp((v[i] - mx) / T);
		sum += p[i];
	}
	for (int i = 0; i < n; i++)
		p[i] /= sum;
}

int widen_matrix_weights(int n, uint64_t k, const uint32_t *pos_m, const uint32_t *pos_q,
                         const struct widen_knobs *kn, float *omega_f, double *omega_d,
                         double *omega_sum, uint64_t *n_cal_m, uint64_t *n_cal_q)
{
	uint64_t first_cal = k - widen_n_calibrated(k, kn->t);
	double *buf = malloc(4 * (size_t)n * sizeof(double));
	double *rm = buf, *rq = buf + n, *pm = buf + 2 * n, *pq = buf + 3 * n;

	if (!buf)
		return -1;
	for (int i = 0; i < n; i++) {
		if (omega_sum)
			omega_sum[i] = 0.0;
		if (n_cal_m)
			n_cal_m[i] = 0;
		if (n_cal_q)
			n_cal_q[i] = 0;
	}
	for (uint64_t j = 0; j < k; j++) {
		for (int i = 0; i < n; i++) {
			rm[i] = (double)pos_m[(size_t)i * k + j] / (double)k;
			rq[i] = (double)pos_q[(size_t)i * k + j] / (double)k;
		}
		/* Both softmaxes see every model; calibration overwrites after. */
		softmax_models(n, rm, kn->T, pm);
		softmax_models(n, rq, kn->T, pq);
		for (int i = 0; i < n; i++) {
			bool cm = pos_m[(size_t)i * k + j] >= first_cal;
			bool cq = pos_q[(size_t)i * k + j] >= first_cal;
			double w = 0.5 * ((cm ? kn->s : pm[i]) + (cq ? kn->s : pq[i]));

			if (omega_f)
				omega_f[(size_t)i * k + j] = (float)w;
			if (omega_d)
				omega_d[(size_t)i * k + j] = w;
			if (omega_sum)
				omega_sum[i] += w;
			if (n_cal_m)
				n_cal_m[i] += cm;
			if (n_cal_q)
				n_cal_q[i] += cq;
		}
	}
	free(buf);
	return 0;
}

void widen_vector_element(int n, const double *a, const double *thr, const struct widen_knobs *kn,
                          double *omega, bool *calibrated)
{
	softmax_models(n, a, kn->T, omega);
	for (int i = 0; i < n; i++) {
		bool c = a[i] > thr[i];

		if (c)
			omega[i] = kn->s;
		if (calibrated)
			calibrated[i] = c;
	}
}

/* The loops below are the hot path of every column statistic; -O2's very
 * cheap vector cost model leaves them scalar, so they ask for O3, and the
 * entry points are also compiled for AVX-512 and AVX2 (SMELT_HOT, picked at
 * load time). Vector width never changes the summation order (columns are
 * independent, lanes are explicit), so every clone gives the same bits. */
#define WIDEN_INLINE inline __attribute__((always_inline))
#if defined(__GNUC__) && !defined(__clang__)
#define WIDEN_HOT __attribute__((optimize("O3")))
#else
#define WIDEN_HOT /* clang vectorizes these loops at -O2 already */
#endif

/*
 * The column kernels exist for f32 rows and for rows of raw bfloat16 (read
 * as stored, converted in registers): one template, instantiated twice, so
 * both compute exactly the same sums. LOAD(p, j) is element j of p as a
 * double; every float and bfloat16 value converts to double exactly.
 */
#define LOAD_F32(p, j)  ((double)(p)[j])
#define LOAD_BF16(p, j) ((double)smelt_bf16_f32_inline((p)[j]))

/* A contiguous column's dot products run in DOT_LANES interleaved partial
 * sums (independent chains the compiler keeps in two vector registers),
 * folded pairwise in a fixed order. */
#define DOT_LANES 16

static WIDEN_INLINE double fold_lanes(double *v)
{
	for (int w = DOT_LANES / 2; w >= 1; w /= 2)
		for (int l = 0; l < w; l++)
			v[l] = v[2 * l] + v[2 * l + 1];
	return v[0];
}

/* rows4: four rows into the column sums (one read-modify-write of the sums
 * per four rows); restrict lets the compiler vectorize. Summation order per
 * column: ((r0 + r1) + (r2 + r3)) added to the running sum.
 * dots: a contiguous column's dot products (DOT_LANES partial sums, then
 * the tail). */
#define DEFINE_COLUMN_KERNELS(SUF, T, LOAD, ACCUMULATE_COLUMNS, ROW_SUMS)                         \
	static WIDEN_HOT WIDEN_INLINE void rows4_##SUF(const T *restrict b, const T *restrict w,  \
	                                               size_t cols, double *restrict ww,          \
	                                               double *restrict wb)                       \
	{                                                                                         \
		const T *b1 = b + cols, *b2 = b1 + cols, *b3 = b2 + cols;                         \
		const T *w1 = w + cols, *w2 = w1 + cols, *w3 = w2 + cols;                         \
                                                                                                  \
		for (size_t j = 0; j < cols; j++) {                                               \
			double x0 = LOAD(w, j), x1 = LOAD(w1, j), x2 = LOAD(w2, j),               \
			       x3 = LOAD(w3, j);                                                  \
                                                                                                  \
			ww[j] += (x0 * x0 + x1 * x1) + (x2 * x2 + x3 * x3);                       \
			wb[j] += (x0 * LOAD(b, j) + x1 * LOAD(b1, j)) +                           \
			         (x2 * LOAD(b2, j) + x3 * LOAD(b3, j));                           \
		}                                                                                 \
	}                                                                                         \
                                                                                                  \
	static WIDEN_HOT WIDEN_INLINE void sq4_##SUF(const T *restrict b, size_t cols,            \
	                                             double *restrict bb)                         \
	{                                                                                         \
		const T *b1 = b + cols, *b2 = b1 + cols, *b3 = b2 + cols;                         \
                                                                                                  \
		for (size_t j = 0; j < cols; j++) {                                               \
			double x0 = LOAD(b, j), x1 = LOAD(b1, j), x2 = LOAD(b2, j),               \
			       x3 = LOAD(b3, j);                                                  \
                                                                                                  \
			bb[j] += (x0 * x0 + x1 * x1) + (x2 * x2 + x3 * x3);                       \
		}                                                                                 \
	}                                                                                         \
                                                                                                  \
	/* Two models at once (the usual WIDEN merge): the base rows are       \
	 * loaded and converted once for both; each sum gets exactly the same  \
	 * operations as sq4 and rows4 give it. */                             \
	static WIDEN_HOT WIDEN_INLINE void rows4x2_##SUF(const T *restrict b, const T *restrict w, \
	                                                 const T *restrict v, size_t cols,        \
	                                                 double *restrict bb, double *restrict ww, \
	                                                 double *restrict wb, double *restrict vv, \
	                                                 double *restrict vb)                     \
	{                                                                                         \
		const T *b1 = b + cols, *b2 = b1 + cols, *b3 = b2 + cols;                         \
		const T *w1 = w + cols, *w2 = w1 + cols, *w3 = w2 + cols;                         \
		const T *v1 = v + cols, *v2 = v1 + cols, *v3 = v2 + cols;                         \
                                                                                                  \
		for (size_t j = 0; j < cols; j++) {                                               \
			double c0 = LOAD(b, j), c1 = LOAD(b1, j), c2 = LOAD(b2, j),               \
			       c3 = LOAD(b3, j);                                                  \
			double x0 = LOAD(w, j), x1 = LOAD(w1, j), x2 = LOAD(w2, j),               \
			       x3 = LOAD(w3, j);                                                  \
			double y0 = LOAD(v, j), y1 = LOAD(v1, j), y2 = LOAD(v2, j),               \
			       y3 = LOAD(v3, j);                                                  \
                                                                                                  \
			bb[j] += (c0 * c0 + c1 * c1) + (c2 * c2 + c3 * c3);                       \
			ww[j] += (x0 * x0 + x1 * x1) + (x2 * x2 + x3 * x3);                       \
			wb[j] += (x0 * c0 + x1 * c1) + (x2 * c2 + x3 * c3);                       \
			vv[j] += (y0 * y0 + y1 * y1) + (y2 * y2 + y3 * y3);                       \
			vb[j] += (y0 * c0 + y1 * c1) + (y2 * c2 + y3 * c3);                       \
		}                                                                                 \
	}                                                                                         \
                                                                                                  \
	static WIDEN_HOT WIDEN_INLINE void row1_##SUF(const T *restrict br, const T *restrict wr, \
	                                              size_t cols, double *restrict ww,           \
	                                              double *restrict wb)                        \
	{                                                                                         \
		for (size_t j = 0; j < cols; j++) {                                               \
			double w = LOAD(wr, j);                                                   \
                                                                                                  \
			ww[j] += w * w;                                                           \
			wb[j] += w * LOAD(br, j);                                                 \
		}                                                                                 \
	}                                                                                         \
                                                                                                  \
	static WIDEN_HOT WIDEN_INLINE void sq1_##SUF(const T *restrict br, size_t cols,           \
	                                             double *restrict bb)                         \
	{                                                                                         \
		for (size_t j = 0; j < cols; j++)                                                 \
			bb[j] += LOAD(br, j) * LOAD(br, j);                                       \
	}                                                                                         \
                                                                                                  \
	WIDEN_HOT SMELT_HOT void ACCUMULATE_COLUMNS(const T *b, const T *const *x, int n,         \
	                                            size_t cols, size_t nrows, double *acc)       \
	{                                                                                         \
		size_t r = 0;                                                                     \
                                                                                                  \
		for (; r + 4 <= nrows && n == 2; r += 4)                                          \
			rows4x2_##SUF(b + r * cols, x[0] + r * cols, x[1] + r * cols, cols, acc,  \
			              acc + cols, acc + 2 * cols, acc + 3 * cols, acc + 4 * cols); \
		for (; r + 4 <= nrows; r += 4) {                                                  \
			const T *br = b + r * cols;                                               \
                                                                                                  \
			sq4_##SUF(br, cols, acc);                                                 \
			for (int i = 0; i < n; i++)                                               \
				rows4_##SUF(br, x[i] + r * cols, cols,                            \
				            acc + (size_t)(1 + 2 * i) * cols,                     \
				            acc + (size_t)(2 + 2 * i) * cols);                    \
		}                                                                                 \
		for (; r < nrows; r++) {                                                          \
			const T *br = b + r * cols;                                               \
                                                                                                  \
			sq1_##SUF(br, cols, acc);                                                 \
			for (int i = 0; i < n; i++)                                               \
				row1_##SUF(br, x[i] + r * cols, cols,                             \
				           acc + (size_t)(1 + 2 * i) * cols,                      \
				           acc + (size_t)(2 + 2 * i) * cols);                     \
		}                                                                                 \
	}                                                                                         \
                                                                                                  \
	static WIDEN_HOT WIDEN_INLINE void dots_##SUF(const T *restrict b, const T *restrict w,   \
	                                              size_t len, double *ww_out, double *wb_out) \
	{                                                                                         \
		double ww[DOT_LANES] = {0}, wb[DOT_LANES] = {0}, tw = 0, tb = 0;                  \
		size_t j = 0;                                                                     \
                                                                                                  \
		for (; j + DOT_LANES <= len; j += DOT_LANES)                                      \
			for (int l = 0; l < DOT_LANES; l++) {                                     \
				double x = LOAD(w, j + l);                                        \
                                                                                                  \
				ww[l] += x * x;                                                   \
				wb[l] += x * LOAD(b, j + l);                                      \
			}                                                                         \
		for (; j < len; j++) {                                                            \
			tw += LOAD(w, j) * LOAD(w, j);                                            \
			tb += LOAD(w, j) * LOAD(b, j);                                            \
		}                                                                                 \
		*ww_out = fold_lanes(ww) + tw;                                                    \
		*wb_out = fold_lanes(wb) + tb;                                                    \
	}                                                                                         \
                                                                                                  \
	/* dots of the base with itself and with two models in one loop (the   \
	 * base converted once); each sum gets dots' operations exactly. */     \
	static WIDEN_HOT WIDEN_INLINE void dots2_##SUF(const T *restrict b, const T *restrict w,  \
	                                               const T *restrict v, size_t len,           \
	                                               double *out)                               \
	{                                                                                         \
		double bb[DOT_LANES] = {0}, ww[DOT_LANES] = {0}, wb[DOT_LANES] = {0};             \
		double vv[DOT_LANES] = {0}, vb[DOT_LANES] = {0};                                  \
		double tbb = 0, tww = 0, twb = 0, tvv = 0, tvb = 0;                               \
		size_t j = 0;                                                                     \
                                                                                                  \
		for (; j + DOT_LANES <= len; j += DOT_LANES)                                      \
			for (int l = 0; l < DOT_LANES; l++) {                                     \
				double c = LOAD(b, j + l), x = LOAD(w, j + l),                    \
				       y = LOAD(v, j + l);                                        \
                                                                                                  \
				bb[l] += c * c;                                                   \
				ww[l] += x * x;                                                   \
				wb[l] += x * c;                                                   \
				vv[l] += y * y;                                                   \
				vb[l] += y * c;                                                   \
			}                                                                         \
		for (; j < len; j++) {                                                            \
			tbb += LOAD(b, j) * LOAD(b, j);                                           \
			tww += LOAD(w, j) * LOAD(w, j);                                           \
			twb += LOAD(w, j) * LOAD(b, j);                                           \
			tvv += LOAD(v, j) * LOAD(v, j);                                           \
			tvb += LOAD(v, j) * LOAD(b, j);                                           \
		}                                                                                 \
		out[0] = fold_lanes(bb) + tbb;                                                    \
		out[1] = fold_lanes(ww) + tww;                                                    \
		out[2] = fold_lanes(wb) + twb;                                                    \
		out[3] = fold_lanes(vv) + tvv;                                                    \
		out[4] = fold_lanes(vb) + tvb;                                                    \
	}                                                                                         \
                                                                                                  \
	WIDEN_HOT SMELT_HOT void ROW_SUMS(const T *b, const T *const *x, size_t off, int n,       \
	                                  size_t len, double *out)                                \
	{                                                                                         \
		double unused;                                                                    \
                                                                                                  \
		if (n == 2) {                                                                     \
			dots2_##SUF(b, x[0] + off, x[1] + off, len, out);                         \
			return;                                                                   \
		}                                                                                 \
		dots_##SUF(b, b, len, &out[0], &unused);                                          \
		for (int i = 0; i < n; i++)                                                       \
			dots_##SUF(b, x[i] + off, len, &out[1 + 2 * i], &out[2 + 2 * i]);         \
	}

DEFINE_COLUMN_KERNELS(f32, float, LOAD_F32, widen_accumulate_columns, widen_row_sums)
DEFINE_COLUMN_KERNELS(bf16, uint16_t, LOAD_BF16, widen_accumulate_columns_bf16,
                      widen_row_sums_bf16)

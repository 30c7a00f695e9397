/*
 * widen_core.h (engine-internal): the WIDEN scoring math, shared by the
 * widen merge method (widen.c) and the divergence analysis re-scoring
 * (stats.c), so both compute exactly the same weights.
 *
 * Conventions (spec widen.md §3-§4):
 *   - a "position" q in [0, k) is a column's 0-based place in a stable
 *     ascending sort of its model's divergences (NaN after every number,
 *     ties and NaNs by column index); the normalised rank is q / k;
 *   - calibration uses the exact integer form of the authors' test
 *     R > t * mean(R): column calibrated iff q > t * (k - 1) / 2;
 *   - softmax runs over the model axis, max-subtracted, on rank / T
 *     (matrices) or |delta| / T (vectors); T = 1 is the authors' method.
 */
#ifndef SMELT_WIDEN_CORE_H
#define SMELT_WIDEN_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Most models one WIDEN merge or analysis takes (per-element scratch lives
 * on the stack). */
#define WIDEN_MAX_MODELS 256

/* Pass-1 accumulation, Linear orientation (columns = storage columns):
 * for nrows rows of cols values, acc[j] += b^2 and, for model i,
 * acc[(1 + 2i) * cols + j] += w^2, acc[(2 + 2i) * cols + j] += w*b, in
 * double, rows in order. */
void widen_accumulate_columns(const float *b, const float *const *x, int n, size_t cols,
                              size_t nrows, double *acc);

/* Pass-1 sums of one contiguous column (transposed embedding: a storage
 * row): b and x[i] + off hold len values; out[0] = sum b^2,
 * out[1 + 2i] = sum w_i^2, out[2 + 2i] = sum w_i*b. */
void widen_row_sums(const float *b, const float *const *x, size_t off, int n, size_t len,
                    double *out);

/* The same two on rows of raw bfloat16, converted in registers: exactly
 * the sums the f32 forms give for the converted values. */
void widen_accumulate_columns_bf16(const uint16_t *b, const uint16_t *const *x, int n,
                                   size_t cols, size_t nrows, double *acc);
void widen_row_sums_bf16(const uint16_t *b, const uint16_t *const *x, size_t off, int n,
                         size_t len, double *out);

/* Column divergences from the streamed sums of one column: bb = sum b^2,
 * ww = sum w^2, wb = sum w*b. mag = | |w| - |b| |, dir = 1 - cos(w, b),
 * NaN when either norm is zero (the authors' 0/0 direction). */
void widen_divergence(double bb, double ww, double wb, double *mag, double *dir);

/* Positions of v[0..k) in a stable ascending sort with NaN last:
 * pos[j] = q. Returns -1 when scratch memory cannot be allocated. */
int widen_positions(const double *v, uint64_t k, uint32_t *pos);

/* How many of k positions are calibrated for threshold t:
 * clamp(k - 1 - floor(t * (k - 1) / 2), 0, k). Position q is calibrated
 * iff q >= k - widen_n_calibrated(k, t). A one-column tensor (k = 1) is
 * never calibrated: its rank and mean rank are both 0. */
uint64_t widen_n_calibrated(uint64_t k, double t);

/* Knobs: threshold t, calibration value s, temperature T (> 0). */
struct widen_knobs {
	double t, s, T;
};

/* Matrix branch weights of one tensor: pos_m / pos_q hold n rows of k
 * positions (model-major). Writes omega as floats (omega_f, the merge) or
 * doubles (omega_d, the analysis) at [i * k + j] (either may be NULL) and,
 * per model, the sum of omega over columns and the calibrated-column
 * counts of each component (any of them may be NULL). Returns -1 when
 * scratch memory cannot be allocated. */
int widen_matrix_weights(int n, uint64_t k, const uint32_t *pos_m, const uint32_t *pos_q,
                         const struct widen_knobs *kn, float *omega_f, double *omega_d,
                         double *omega_sum, uint64_t *n_cal_m, uint64_t *n_cal_q);

/* Vector branch for one element: a[i] = |w_i - b|, thr[i] = t * mean_i
 * (mean of model i's |delta| over the tensor). Writes omega[i] and
 * calibrated[i] (may be NULL). */
void widen_vector_element(int n, const double *a, const double *thr, const struct widen_knobs *kn,
                          double *omega, bool *calibrated);

#endif

/*
 * geom.h: helpers shared by the weighted and geometric merge methods
 * (linear, task_arithmetic, slerp, nuslerp, multislerp, karcher,
 * model_stock, nearswap, arcee_fusion, passthrough). Internal to
 * engine/methods; owned by the geometric-methods module.
 *
 * Whole-tensor geometry is reduced to Gram matrices: the methods that need
 * norms, angles or projections over a full tensor accumulate the pairwise
 * dot products of their input vectors in one statistics pass (doubles, in
 * the executor's fixed chunk order), then do all the sphere arithmetic on
 * the k x k matrix in finish() and express the result as a linear
 * combination of the inputs. Gram matrices are stored as the upper triangle
 * (diagonal included), row by row: (0,0) (0,1) .. (0,k-1) (1,1) ...
 */
#ifndef SMELT_METHODS_GEOM_H
#define SMELT_METHODS_GEOM_H

#include <stddef.h>
#include <stdint.h>

#include "smelt/method.h"

/* Doubles in the upper triangle of a k x k Gram matrix. */
size_t smelt_geom_tri_size(int k);

/* Position of entry (i, j) in the upper triangle (either order). */
size_t smelt_geom_tri_index(int k, int i, int j);

/* tri += the pairwise dot products of k vectors of n floats each, every
 * vector taken relative to origin (NULL = none): the difference is rounded
 * to float first (as mergekit forms its deltas), the products are summed in
 * double. */
void smelt_geom_gram_add(const float *const *v, int k, const float *origin, size_t n, double *tri);

/* Expand an upper triangle into a full symmetric k x k matrix. */
void smelt_geom_gram_unpack(const double *tri, int k, double *full);

/* x' G y for a full k x k matrix G. */
double smelt_geom_quad(const double *g, int k, const double *x, const double *y);

/* Length of the vectors of the "one vector per slice along the last axis"
 * methods (nuslerp unflattened, model_stock filter_wise, arcee_fusion's
 * row softmax): the last dimension for tensors of 2 or more dimensions,
 * the whole tensor for 1-D tensors and scalars. Always divides job->cols. */
uint64_t smelt_geom_seg_len(const struct smelt_tensor_job *job);

/* slerp's coefficients from |b|^2, |x|^2 and b.x: y = c[0] b + c[1] x.
 * The cosine and angle are rounded to float32 and the coefficients formed
 * in double, as mergekit's NumPy code does; |cos| > 0.9995 gives the lerp
 * coefficients (1-t, t). */
void smelt_geom_slerp_coef(double bb, double xx, double bx, double t, double c[2]);

/* The coefficients of nuslerp's interpolation between v0 and v1 given
 * |v0|^2, |v1|^2 and v0.v1: norms clamped at 1e-7, cos clamped to [-1, 1],
 * lerp when |sin theta| < 1e-8. y = c[0] v0 + c[1] v1. */
void smelt_geom_nuslerp_coef(double n0sq, double n1sq, double dot, double t, double c[2]);

/* model_stock's cosine of one pair of deltas: clamp(dot / max(|a| |b|,
 * 1e-6), -1, 1), the norms being sqrt of the given squares. */
double smelt_geom_stock_cos(double dot, double asq, double bsq);

/* model_stock's ratio t = k c / (1 + (k - 1) c). */
double smelt_geom_stock_ratio(int k, double c);

/* check() helper for methods that need a base: SMELT_EINVAL naming the
 * method and tensor when the job has none, else 0. */
int smelt_geom_check_base(const struct smelt_tensor_job *job, const char *method,
                          struct smelt_err *err);

#endif

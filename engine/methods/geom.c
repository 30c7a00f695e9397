/* geom.c: Gram matrices and sphere arithmetic shared by the geometric methods. */
#include "geom.h"

#include <math.h>

size_t smelt_geom_tri_size(int k)
{
	return (size_t)k * (size_t)(k + 1) / 2;
}

size_t smelt_geom_tri_index(int k, int i, int j)
{
	if (i > j) {
		int s = i;

		i = j;
		j = s;
	}
	/* rows 0..i-1 hold k, k-1, ..., k-i+1 entries */
	return (size_t)i * (size_t)k - (size_t)i * (size_t)(i - 1) / 2 + (size_t)(j - i);
}

/* Elements per tile: each vector's tile is converted to double once and
 * shared by all its pairs. */
#define GRAM_TILE 64
/* Up to this many vectors use tiles (k * 512 bytes of stack); more fall
 * back to one pass per pair. */
#define GRAM_TILE_MAX_K 16

/* Sum of a[e] * b[e] over n doubles, four independent chains in a fixed
 * order (deterministic, and fast without reassociation). */
static double dot4(const double *a, const double *b, size_t n)
{
	double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
	size_t e = 0;

	for (; e + 4 <= n; e += 4) {
		s0 += a[e] * b[e];
		s1 += a[e + 1] * b[e + 1];
		s2 += a[e + 2] * b[e + 2];
		s3 += a[e + 3] * b[e + 3];
	}
	for (; e < n; e++)
		s0 += a[e] * b[e];
	return (s0 + s1) + (s2 + s3);
}

/* v - o rounded to float (mergekit's f32 delta), as double. */
static void load_tile(const float *v, const float *o, size_t n, double *t)
{
	if (o)
		for (size_t e = 0; e < n; e++)
			t[e] = (double)(v[e] - o[e]);
	else
		for (size_t e = 0; e < n; e++)
			t[e] = (double)v[e];
}

static double dot_rel(const float *a, const float *b, const float *o, size_t n)
{
	double ta[GRAM_TILE], tb[GRAM_TILE], s = 0;

	for (size_t e0 = 0; e0 < n; e0 += GRAM_TILE) {
		size_t len = n - e0 < GRAM_TILE ? n - e0 : GRAM_TILE;

		load_tile(a + e0, o ? o + e0 : NULL, len, ta);
		load_tile(b + e0, o ? o + e0 : NULL, len, tb);
		s += dot4(ta, tb, len);
	}
	return s;
}

void smelt_geom_gram_add(const float *const *v, int k, const float *origin, size_t n, double *tri)
{
	double tile[GRAM_TILE_MAX_K][GRAM_TILE];

	if (k > GRAM_TILE_MAX_K) {
		size_t p = 0;

		for (int i = 0; i < k; i++)
			for (int j = i; j < k; j++)
				tri[p++] += dot_rel(v[i], v[j], origin, n);
		return;
	}
	/* tile by tile, every pair of the tile added to its accumulator */
	for (size_t e0 = 0; e0 < n; e0 += GRAM_TILE) {
		size_t len = n - e0 < GRAM_TILE ? n - e0 : GRAM_TILE, p = 0;

		for (int i = 0; i < k; i++)
			load_tile(v[i] + e0, origin ? origin + e0 : NULL, len, tile[i]);
		for (int i = 0; i < k; i++)
			for (int j = i; j < k; j++)
				tri[p++] += dot4(tile[i], tile[j], len);
	}
}

void smelt_geom_gram_unpack(const double *tri, int k, double *full)
{
	size_t p = 0;

	for (int i = 0; i < k; i++)
		for (int j = i; j < k; j++) {
			full[(size_t)i * k + j] = tri[p];
			full[(size_t)j * k + i] = tri[p];
			p++;
		}
}

double smelt_geom_quad(const double *g, int k, const double *x, const double *y)
{
	double s = 0;

	for (int i = 0; i < k; i++) {
		double r = 0;

		for (int j = 0; j < k; j++)
			r += g[(size_t)i * k + j] * y[j];
		s += x[i] * r;
	}
	return s;
}

uint64_t smelt_geom_seg_len(const struct smelt_tensor_job *job)
{
	if (job->ndim >= 2 && job->shape[job->ndim - 1] > 0)
		return job->shape[job->ndim - 1];
	return job->cols ? job->cols : 1;
}

void smelt_geom_nuslerp_coef(double n0sq, double n1sq, double dot, double t, double c[2])
{
	double n0 = fmax(sqrt(fmax(n0sq, 0)), 1e-7);
	double n1 = fmax(sqrt(fmax(n1sq, 0)), 1e-7);
	double cs = fmin(fmax(dot / (n0 * n1), -1.0), 1.0);
	double theta = acos(cs);
	double s = sin(theta);

	if (fabs(s) < 1e-8) {
		c[0] = 1.0 - t;
		c[1] = t;
		return;
	}
	c[0] = sin((1.0 - t) * theta) / s;
	c[1] = sin(t * theta) / s;
}

double smelt_geom_stock_cos(double dot, double asq, double bsq)
{
	double np = sqrt(fmax(asq, 0)) * sqrt(fmax(bsq, 0));

	return fmin(fmax(dot / fmax(np, 1e-6), -1.0), 1.0);
}

double smelt_geom_stock_ratio(int k, double c)
{
	return (double)k * c / (1.0 + (double)(k - 1) * c);
}

/*
 * mergekit normalises each vector unless its norm is <= 1e-8, takes the dot
 * product and the angle in float32 NumPy, and forms the two coefficients in
 * float64 from that float32 angle. Near-colinear (|cos| > 0.9995, either
 * sign) falls back to a plain lerp.
 */
void smelt_geom_slerp_coef(double bb, double xx, double bx, double t, double c[2])
{
	double nb = sqrt(bb), nx = sqrt(xx);
	float dot = (float)(bx / ((nb > 1e-8 ? nb : 1.0) * (nx > 1e-8 ? nx : 1.0)));
	float theta0, sin0;
	double theta_t;

	if (fabsf(dot) > 0.9995f) {
		c[0] = 1.0 - t;
		c[1] = t;
		return;
	}
	theta0 = acosf(dot);
	sin0 = sinf(theta0);
	theta_t = (double)theta0 * t;
	c[0] = sin((double)theta0 - theta_t) / (double)sin0;
	c[1] = sin(theta_t) / (double)sin0;
}

int smelt_geom_check_base(const struct smelt_tensor_job *job, const char *method,
                          struct smelt_err *err)
{
	if (!job->has_base)
		return smelt_fail(err, SMELT_EINVAL,
		                  "%s: tensor %s: needs a base model (set base_model)", method,
		                  job->name);
	return 0;
}

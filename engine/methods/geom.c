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

static double dot_rel(const float *a, const float *b, const float *o, size_t n)
{
	double s = 0;

	if (!o) {
		for (size_t e = 0; e < n; e++)
			s += (double)a[e] * (double)b[e];
		return s;
	}
	for (size_t e = 0; e < n; e++) {
		float da = a[e] - o[e], db = b[e] - o[e];

		s += (double)da * (double)db;
	}
	return s;
}

void smelt_geom_gram_add(const float *const *v, int k, const float *origin, size_t n, double *tri)
{
	size_t p = 0;

	for (int i = 0; i < k; i++)
		for (int j = i; j < k; j++)
			tri[p++] += dot_rel(v[i], v[j], origin, n);
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


/*
 * geom_kernels.c: throughput of the weighted and geometric methods' kernels
 * on one in-memory f32 tensor (rows x cols, N models, plus a base), through
 * the same block/chunk/pass machinery as a file merge (smelt_run_job_mem).
 * Build and run: see bench/methods-geom.md.
 *
 * usage: geom_kernels METHOD ROWS COLS MODELS THREADS [REPEATS]
 * Environment: BENCH_ROWS_MODE / BENCH_ROW_WISE select nuslerp's per-row /
 * per-column modes, BENCH_FILTER_WISE model_stock's per-row ratio.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "smelt/method.h"
#include "smelt/rng.h"

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Set a parameter for the tensor or every model, if the method has it. */
static void set(const struct smelt_method *m, double *pg, double *pm, int n, const char *name,
                double v)
{
	int p = smelt_method_param(m, name);

	if (p < 0)
		return;
	pg[p] = v;
	for (int i = 0; i < n; i++)
		pm[i * m->n_params + p] = v;
}

int main(int argc, char **argv)
{
	const struct smelt_method *m;
	uint64_t rows, cols, numel;
	int n, threads, reps;
	float *base, **x, *out;
	double *pg, *pm, best = 1e30;
	uint64_t *keys;
	bool with_base;

	if (argc < 6) {
		fprintf(stderr, "usage: %s METHOD ROWS COLS MODELS THREADS [REPEATS]\n", argv[0]);
		return 2;
	}
	m = smelt_method_find(argv[1]);
	if (!m) {
		fprintf(stderr, "unknown method %s\n", argv[1]);
		return 2;
	}
	rows = strtoull(argv[2], NULL, 10);
	cols = strtoull(argv[3], NULL, 10);
	n = atoi(argv[4]);
	threads = atoi(argv[5]);
	reps = argc > 6 ? atoi(argv[6]) : 3;
	numel = rows * cols;
	with_base = m->base == SMELT_BASE_REQUIRED || m->base == SMELT_BASE_OPTIONAL;
	base = malloc(numel * sizeof(float));
	out = malloc(numel * sizeof(float));
	x = malloc((size_t)n * sizeof(*x));
	keys = malloc((size_t)n * sizeof(*keys));
	pg = calloc(SMELT_MAX_PARAMS, sizeof(double));
	pm = calloc((size_t)n * SMELT_MAX_PARAMS, sizeof(double));
	for (uint64_t j = 0; j < numel; j++)
		base[j] = (float)(smelt_rng_uniform(1, j) - 0.5);
	for (int i = 0; i < n; i++) {
		x[i] = malloc(numel * sizeof(float));
		for (uint64_t j = 0; j < numel; j++)
			x[i][j] =
			    base[j] + 0.05f * (float)(smelt_rng_uniform(2 + (uint64_t)i, j) - 0.5);
		keys[i] = smelt_rng_key(7, "bench", (uint64_t)i);
	}
	for (int p = 0; p < m->n_params; p++) {
		pg[p] = m->params[p].def;
		for (int i = 0; i < n; i++)
			pm[i * m->n_params + p] = m->params[p].def;
	}
	set(m, pg, pm, n, "weight", 1.0 / n);
	set(m, pg, pm, n, "t", strcmp(m->name, "nearswap") == 0 ? 1e-3 : 0.4);
	if (getenv("BENCH_ROWS_MODE") || getenv("BENCH_ROW_WISE"))
		set(m, pg, pm, n, "nuslerp_flatten", 0);
	if (getenv("BENCH_ROW_WISE"))
		set(m, pg, pm, n, "nuslerp_row_wise", 1);
	if (getenv("BENCH_FILTER_WISE"))
		set(m, pg, pm, n, "filter_wise", 1);
	for (int r = 0; r < reps; r++) {
		struct smelt_tensor_job job = {0};
		struct smelt_err err = {0};
		double t0, dt;

		job.name = "bench";
		job.ndim = 2;
		job.shape[0] = rows;
		job.shape[1] = cols;
		job.layer = -1;
		job.n_models = n;
		job.n_params = m->n_params;
		job.pg = pg;
		job.pm = pm;
		job.rng_key = keys;
		t0 = now();
		if (smelt_run_job_mem(m, &job, with_base ? base : NULL, (const float *const *)x,
		                      out, threads, &err)) {
			fprintf(stderr, "%s\n", err.msg);
			return 1;
		}
		dt = now() - t0;
		if (dt < best)
			best = dt;
	}
	printf("%s %llux%llu x%d threads %d: %.3f s, %.1f M elements/s\n", m->name,
	       (unsigned long long)rows, (unsigned long long)cols, n, threads, best,
	       (double)numel / best / 1e6);
	for (int i = 0; i < n; i++)
		free(x[i]);
	free(x);
	free(keys);
	free(base);
	free(out);
	free(pg);
	free(pm);
	return 0;
}

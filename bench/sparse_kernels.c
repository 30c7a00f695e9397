/*
 * sparse_kernels.c: throughput of the sparsifying methods' kernels on one
 * in-memory f32 tensor (rows x cols, N models), through the same
 * block/chunk/pass machinery as a file merge. Build and run: see
 * bench/sparse.md.
 *
 * usage: sparse_kernels METHOD ROWS COLS MODELS THREADS [REPEATS]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "smelt/method.h"
#include "smelt/rng.h"

extern const struct smelt_method smelt_method_ties, smelt_method_dare_ties,
	smelt_method_dare_linear, smelt_method_breadcrumbs_ties, smelt_method_breadcrumbs,
	smelt_method_della, smelt_method_della_linear, smelt_method_sce, smelt_method_ram,
	smelt_method_ramplus_tl;

static const struct smelt_method *const methods[] = {
	&smelt_method_ties,	    &smelt_method_dare_ties, &smelt_method_dare_linear,
	&smelt_method_breadcrumbs_ties, &smelt_method_breadcrumbs, &smelt_method_della,
	&smelt_method_della_linear, &smelt_method_sce,	     &smelt_method_ram,
	&smelt_method_ramplus_tl};

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void set(const struct smelt_method *m, double *pg, double *pm, int n, const char *name,
		double v)
{
	int p = smelt_method_param(m, name);

	if (p < 0)
		return;
	if (m->params[p].scope == SMELT_SCOPE_GLOBAL)
		pg[p] = v;
	else
		for (int i = 0; i < n; i++)
			pm[i * m->n_params + p] = v;
}

int main(int argc, char **argv)
{
	const struct smelt_method *m = NULL;
	uint64_t rows, cols, numel;
	int n, threads, reps;
	float *base, **x, *out;
	double *pg, *pm, best = 1e30, best_cpu = 1e30;
	uint64_t *keys;

	if (argc < 6) {
		fprintf(stderr, "usage: %s METHOD ROWS COLS MODELS THREADS [REPEATS]\n", argv[0]);
		return 2;
	}
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
		if (strcmp(methods[i]->name, argv[1]) == 0)
			m = methods[i];
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
			x[i][j] = base[j] + 0.01f * (float)(smelt_rng_uniform(2 + (uint64_t)i, j) - 0.5);
		keys[i] = smelt_rng_key(7, "bench", (uint64_t)i);
	}
	for (int p = 0; p < m->n_params; p++) {
		pg[p] = m->params[p].def;
		for (int i = 0; i < n; i++)
			pm[i * m->n_params + p] = m->params[p].def;
	}
	set(m, pg, pm, n, "weight", 1.0 / n);
	set(m, pg, pm, n, "density", 0.5);
	set(m, pg, pm, n, "gamma", 0.01);
	set(m, pg, pm, n, "epsilon", 0.1);
	set(m, pg, pm, n, "select_topk", 0.5);
	for (int r = 0; r < reps; r++) {
		struct smelt_tensor_job job = {0};
		struct smelt_err err = {0};
		double t0, c0;

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
		c0 = (double)clock() / CLOCKS_PER_SEC;
		if (smelt_run_job_mem(m, &job, base, (const float *const *)x, out, threads, &err)) {
			fprintf(stderr, "%s\n", err.msg);
			return 1;
		}
		if (now() - t0 < best)
			best = now() - t0;
		if ((double)clock() / CLOCKS_PER_SEC - c0 < best_cpu)
			best_cpu = (double)clock() / CLOCKS_PER_SEC - c0;
	}
	printf("%s %llux%llu x%d threads %d: wall %.3f s (%.1f M elements/s), cpu %.3f s\n",
	       m->name, (unsigned long long)rows, (unsigned long long)cols, n, threads, best,
	       (double)numel / best / 1e6, best_cpu);
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

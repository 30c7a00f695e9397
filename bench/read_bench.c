/*
 * read_bench.c: convert every float tensor of one or more checkpoints to
 * f32 through smelt_ckpt_read_rows, on a thread pool, and report the rate
 * of source bytes read. Built by bench/read_bench.sh against the engine
 * library.
 *
 *   read_bench [-t THREADS] MODEL_DIR...
 *
 * Prints "<seconds> <source bytes> <GB/s>" on one line.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "smelt/ckpt.h"
#include "smelt/pool.h"

#define BLOCK_ELEMS (1u << 20) /* f32 elements per work item: 4 MB */

struct item {
	const struct smelt_ckpt *c;
	const struct smelt_ckpt_tensor *t;
	uint64_t row0, nrows;
};

struct bench {
	struct item *items;
	size_t n_items;
	float **scratch;   /* one BLOCK_ELEMS buffer per worker */
	double *checksum;  /* per worker, keeps the conversion observable */
	int failed;
};

static void run_item(void *ctx, size_t i, int worker)
{
	struct bench *b = ctx;
	struct item *it = &b->items[i];
	struct smelt_err err;
	uint64_t rows, cols;

	smelt_tensor_rows_cols(it->t->st->ndim, it->t->st->shape, &rows, &cols);
	if (smelt_ckpt_read_rows(it->c, it->t, it->row0, it->nrows, b->scratch[worker], &err)) {
		fprintf(stderr, "read_bench: %s\n", err.msg);
		b->failed = 1;
		return;
	}
	b->checksum[worker] += b->scratch[worker][0] + b->scratch[worker][it->nrows * cols - 1];
}

static int add_items(struct bench *b, size_t *cap, const struct smelt_ckpt *c, uint64_t *bytes)
{
	for (size_t i = 0; i < c->n_tensors; i++) {
		const struct smelt_ckpt_tensor *t = &c->tensors[i];
		uint64_t rows, cols, per;

		if (!smelt_dtype_is_float(t->st->dtype) || t->st->end == t->st->begin)
			continue;
		smelt_tensor_rows_cols(t->st->ndim, t->st->shape, &rows, &cols);
		if (cols > BLOCK_ELEMS) {
			fprintf(stderr, "read_bench: rows of %s are too long\n", t->name);
			return -1;
		}
		per = BLOCK_ELEMS / cols;
		for (uint64_t r = 0; r < rows; r += per) {
			if (b->n_items == *cap) {
				*cap = *cap ? *cap * 2 : 1024;
				b->items = realloc(b->items, *cap * sizeof(*b->items));
				if (!b->items)
					return -1;
			}
			b->items[b->n_items++] = (struct item){c, t, r, rows - r < per ? rows - r : per};
		}
		*bytes += t->st->end - t->st->begin;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct bench b = {0};
	struct smelt_ckpt *cks;
	struct smelt_pool *pool;
	struct timespec t0, t1;
	uint64_t bytes = 0;
	size_t cap = 0;
	int threads = 2, first = 1, n;
	double secs, sum = 0;

	if (argc > 2 && strcmp(argv[1], "-t") == 0) {
		threads = atoi(argv[2]);
		first = 3;
	}
	n = argc - first;
	if (n < 1) {
		fprintf(stderr, "usage: read_bench [-t THREADS] MODEL_DIR...\n");
		return 2;
	}
	cks = calloc((size_t)n, sizeof(*cks));
	for (int i = 0; i < n; i++) {
		struct smelt_err err;

		if (smelt_ckpt_open(&cks[i], argv[first + i], &err)) {
			fprintf(stderr, "read_bench: %s\n", err.msg);
			return 1;
		}
		if (add_items(&b, &cap, &cks[i], &bytes))
			return 1;
	}
	pool = smelt_pool_new(threads);
	b.scratch = calloc((size_t)threads, sizeof(*b.scratch));
	b.checksum = calloc((size_t)threads, sizeof(*b.checksum));
	for (int w = 0; w < threads; w++)
		b.scratch[w] = malloc(BLOCK_ELEMS * sizeof(float));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	smelt_pool_for(pool, b.n_items, run_item, &b);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
	for (int w = 0; w < threads; w++) {
		sum += b.checksum[w];
		free(b.scratch[w]);
	}
	printf("%.4f %llu %.3f\n", secs, (unsigned long long)bytes, (double)bytes / secs / 1e9);
	fprintf(stderr, "read_bench: %zu blocks, checksum %g\n", b.n_items, sum);
	smelt_pool_free(pool);
	for (int i = 0; i < n; i++)
		smelt_ckpt_close(&cks[i]);
	free(cks);
	free(b.items);
	free(b.scratch);
	free(b.checksum);
	return b.failed;
}

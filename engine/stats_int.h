/*
 * stats_int.h (engine-internal): the analysis object shared by stats.c
 * (planning, streaming, summaries, re-scoring) and stats_cache.c (the disk
 * cache of per-column divergences).
 */
#ifndef SMELT_STATS_INT_H
#define SMELT_STATS_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "methods/widen_core.h"
#include "smelt/stats.h"

struct stats_tensor {
	struct smelt_stats_tensor_info info;
	const struct smelt_ckpt_tensor *bt;  /* base */
	const struct smelt_ckpt_tensor **mt; /* [n] models */
	uint64_t rows, cols;                 /* storage view read (rows may be common rows) */
	uint64_t numel;                      /* rows * cols */
	char note[160];
	bool done;
	/* Per-column data, model-major [n][k]; owned once done. */
	double *mag;                    /* matrix: M_n[j]; vector: |delta| */
	double *dir;                    /* matrix: Q_n[j]; NULL for vectors */
	uint32_t *pos_m, *pos_q;        /* sort positions of mag / dir */
	double *mean_a;                 /* vector: [n] mean |delta| */
	struct smelt_stats_result *res; /* [n] */
};

struct stats_cell {
	int n_tensors;
	size_t *tensors;                /* indices, in tensor order */
	struct smelt_stats_result *res; /* [n] */
};

struct smelt_stats {
	const struct smelt_ckpt *base;
	const struct smelt_ckpt *const *models; /* copy of the caller's array */
	int n;
	struct smelt_stats_opts opts;
	size_t n_tensors;
	struct stats_tensor *t;
	int n_layers;
	struct stats_cell *cells; /* [(n_layers + 1) * SMELT_KIND_COUNT] */
	struct widen_knobs kn;
	uint64_t key[4]; /* SHA-256 of the inputs' identity */
	char cache_path[4096];

	pthread_mutex_t lock; /* results, knobs, current name */
	atomic_int cancel;
	atomic_int state;
	atomic_bool from_cache;
	atomic_uint_least64_t bytes_read, generation;
	uint64_t bytes_total;
	atomic_size_t tensors_done;
	char current[256];

	bool thread_started;
	pthread_t thread;
	int thread_rc;
	struct smelt_err thread_err;
};

/* An analysis planned from tensor shapes alone, without checkpoints: the
 * tests and the re-scoring benchmark fill it with stats_install() (never
 * smelt_stats_run). Layer and kind come from the names; the cache is off;
 * names must outlive the object. */
struct stats_shape {
	const char *name;
	int ndim;
	uint64_t shape[SMELT_MAX_DIMS];
};
int stats_open_shapes(struct smelt_stats **out, int n_models, const struct stats_shape *sh,
                      size_t n_tensors, const struct smelt_stats_opts *opts, struct smelt_err *err);

/* Install tensor i's per-column arrays (ownership moves to s) and publish
 * its results with the current knobs. Takes the lock. */
int stats_install(struct smelt_stats *s, size_t i, double *mag, double *dir, uint32_t *pos_m,
                  uint32_t *pos_q, double *mean_a, struct smelt_err *err);

/* Cache: load every tensor from s->cache_path when the file matches this
 * analysis (returns 1), 0 when there is no usable file, < 0 on error while
 * installing. Save writes it atomically (errors are reported, the caller
 * may ignore them). */
int stats_cache_load(struct smelt_stats *s, struct smelt_err *err);
int stats_cache_save(struct smelt_stats *s, struct smelt_err *err);
/* Compute s->key and s->cache_path. */
int stats_cache_key(struct smelt_stats *s, struct smelt_err *err);

#endif

/*
 * stats.h: divergence analysis of N models against a base, the data behind
 * the TUI heatmaps and `smelt diverge`, and WIDEN provenance helpers.
 *
 * Owned by the WIDEN module (engine/stats.c, engine/stats_cache.c,
 * engine/methods/widen*.c).
 *
 * What is measured (docs/widen.md has the details). Every tensor the base
 * and all models share (same name, same float dtype class, same shape, or a
 * vocabulary tensor differing only in its first dimension, compared over the
 * common rows) is oriented exactly as the WIDEN merge orients it:
 *   - 2-D weights [out, in]: one "column" per input feature;
 *   - token embeddings [V, h]: transposed, one column per token;
 *   - lm_head [V, h]: NOT transposed (columns are the h hidden features);
 *   - 1-D tensors and >= 3-D tensors (flattened): the vector branch, one
 *     "column" per element.
 * For matrix tensors and every model n, per column j:
 *   magnitude divergence  M_n[j] = | ||w_nj|| - ||b_j|| |
 *   direction divergence  Q_n[j] = 1 - cos(w_nj, b_j)  (NaN for a zero column)
 * For vector tensors the per-element |w_n - b| is reported as the magnitude
 * divergence and the direction divergence is absent (n = 0 in its summary).
 * From these the WIDEN weights omega_n[j] for a knob setting (threshold t,
 * calibration s, temperature T) are computed by the very code the merge
 * uses (engine/methods/widen_core.c), so the heatmap shows what a merge
 * with those knobs would do.
 *
 * Results come per tensor and per cell of a layers x kinds grid: a cell
 * (layer, kind) gathers every tensor of that layer and kind (e.g. q_proj
 * weight and bias). Tensors without a layer index (embedding, head, final
 * norm, anything else) live in the extra row layer = -1.
 *
 * Threads and ownership. A struct smelt_stats borrows the checkpoints given
 * to smelt_stats_open(); they must stay open until smelt_stats_free(). The
 * analysis runs either synchronously (smelt_stats_run) or on its own
 * thread (smelt_stats_start / smelt_stats_wait). While it runs, any other
 * thread may call the getters (smelt_stats_progress, smelt_stats_cell,
 * smelt_stats_tensor_result, ...): they copy results out under an internal
 * mutex, so a UI always sees a consistent cell. smelt_stats_rescore() may
 * be called at any time from any thread (it takes the same mutex); tensors
 * finishing later use the new knobs. smelt_stats_free() only after the
 * analysis has finished (wait first; cancel to make that quick).
 *
 * Caching. Per-column divergences (float64, enough to reproduce the ranks
 * exactly) are written to $XDG_CACHE_HOME/smelt/stats/ (default
 * ~/.cache/smelt/stats/) under a key hashing (path, size, mtime, header
 * bytes) of every shard of the base and of each model, in order. Reopening
 * the same inputs loads the file instead of reading weights. Ranks never
 * depend on the knobs, so re-scoring only redoes softmax and calibration:
 * O(N x columns), well under a second for a 7B-shaped model.
 */
#ifndef SMELT_STATS_H
#define SMELT_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "smelt/ckpt.h"
#include "smelt/err.h"
#include "smelt/method.h"

/* WIDEN knob defaults (the authors' settings). */
#define SMELT_WIDEN_DEFAULT_THRESHOLD   1.0
#define SMELT_WIDEN_DEFAULT_CALIBRATION 1.0
#define SMELT_WIDEN_DEFAULT_TEMPERATURE 1.0

struct smelt_stats;

struct smelt_stats_opts {
	int threads;                /* <= 0: all CPUs */
	bool no_cache;              /* neither read nor write the disk cache */
	const char *cache_dir;      /* NULL: $XDG_CACHE_HOME/smelt/stats or ~/.cache/... */
	double threshold;           /* WIDEN t (above_average_value_ratio) */
	double calibration;         /* WIDEN s (score_calibration_value) */
	double temperature;         /* WIDEN T (> 0) */
	const char *const *exclude; /* regexes (POSIX extended, matched at the start of
	                               the name); matching tensors get omega = 0 */
	size_t n_exclude;
	/* Called on the analysis thread after each tensor's results are in
	 * (outside the lock; keep it short, e.g. wake the UI). May be NULL. */
	void (*on_tensor)(void *ctx, size_t tensor_index);
	void *ctx;
};

/* Fill opts with defaults: all CPUs, cache on, t = s = T = 1, no exclusions. */
void smelt_stats_opts_default(struct smelt_stats_opts *opts);

/* Plan an analysis of models[0..n_models) against base: match tensors,
 * decide orientation, compute the cache key. Reads headers only. Fails when
 * no tensor is shared or n_models < 1. */
int smelt_stats_open(struct smelt_stats **out, const struct smelt_ckpt *base,
                     const struct smelt_ckpt *const *models, int n_models,
                     const struct smelt_stats_opts *opts, struct smelt_err *err);

/* Run the analysis on the calling thread: load the cache if valid, else
 * stream every tensor once and write the cache. Returns SMELT_ECANCELED
 * after smelt_stats_cancel(). Results of tensors done so far stay readable. */
int smelt_stats_run(struct smelt_stats *s, struct smelt_err *err);

/* The same on a new thread; smelt_stats_wait() joins it and returns what
 * smelt_stats_run returned (and its message). */
int smelt_stats_start(struct smelt_stats *s, struct smelt_err *err);
int smelt_stats_wait(struct smelt_stats *s, struct smelt_err *err);

/* Ask a running analysis to stop soon (async-signal-safe: one atomic store). */
void smelt_stats_cancel(struct smelt_stats *s);

/* Release everything (the analysis must not be running). NULL is a no-op. */
void smelt_stats_free(struct smelt_stats *s);

enum smelt_stats_state {
	SMELT_STATS_IDLE, /* opened, not started */
	SMELT_STATS_RUNNING,
	SMELT_STATS_DONE,
	SMELT_STATS_FAILED,
	SMELT_STATS_CANCELED
};

struct smelt_stats_progress {
	enum smelt_stats_state state;
	bool from_cache;     /* results were loaded from the disk cache */
	uint64_t bytes_read; /* input bytes consumed so far (all checkpoints) */
	uint64_t bytes_total;
	size_t tensors_done;
	size_t tensors_total;
	uint64_t generation; /* bumps whenever any result changes (poll for redraw) */
	char current[256];   /* tensor being read, "" when none */
};

/* Snapshot of the progress counters (thread-safe). */
void smelt_stats_progress(const struct smelt_stats *s, struct smelt_stats_progress *p);

/* ---- results ---- */

/* Summary of one quantity over the columns (or elements) of a tensor/cell.
 * NaN values (zero columns) are counted in n_nan and left out of the rest. */
struct smelt_summary {
	uint64_t n; /* finite values summarised */
	uint64_t n_nan;
	double mean, min, max;
	double p50, p90, p99; /* nearest-rank quantiles */
};

/* WIDEN weights of one model over a tensor/cell for the current knobs. */
struct smelt_weight_summary {
	double mean_omega; /* element-weighted mean omega (the weight the model's
	                      delta receives; 0 for excluded tensors) */
	double min_omega, max_omega;
	double frac_cal_mag; /* fraction of columns whose magnitude score was set to s */
	double frac_cal_dir; /* same for direction; vector tensors count their one
	                        calibration mask in both */
};

/* One model's results for one tensor or one grid cell. */
struct smelt_stats_result {
	bool ready;               /* false until the tensor (all tensors of the cell) is done */
	int n_tensors;            /* tensors behind this result */
	uint64_t n_columns;       /* columns (vector tensors: elements) */
	uint64_t n_params;        /* elements */
	struct smelt_summary mag; /* magnitude divergence (vector tensors: |delta|) */
	struct smelt_summary dir; /* direction divergence (matrix tensors only) */
	struct smelt_weight_summary w;
};

enum smelt_stats_branch {
	SMELT_BRANCH_MATRIX,   /* Linear-style [out, in], per input column */
	SMELT_BRANCH_MATRIX_T, /* token embedding, transposed: per token */
	SMELT_BRANCH_VECTOR,   /* 1-D, 0-D, or >= 3-D flattened: per element */
	SMELT_BRANCH_SKIPPED   /* not comparable (shape/dtype mismatch, not float) */
};

struct smelt_stats_tensor_info {
	const char *name; /* owned by the base checkpoint */
	int layer;        /* -1 for none */
	enum smelt_kind kind;
	enum smelt_stats_branch branch;
	bool excluded;    /* matched an exclusion regex */
	uint64_t d, k;    /* oriented shape: column length, column count */
	const char *note; /* why skipped / "common rows only", or NULL */
};

size_t smelt_stats_n_tensors(const struct smelt_stats *s);
int smelt_stats_n_models(const struct smelt_stats *s);
/* Grid rows are layers 0..n_layers-1 plus layer -1 (tensors without a layer). */
int smelt_stats_n_layers(const struct smelt_stats *s);

/* Static description of tensor i (valid until smelt_stats_free). */
const struct smelt_stats_tensor_info *smelt_stats_tensor_info(const struct smelt_stats *s,
                                                              size_t i);

/* Copy model's result for tensor i into out. Returns false (out->ready =
 * false) while the tensor is pending or when it was skipped. */
bool smelt_stats_tensor_result(const struct smelt_stats *s, size_t i, int model,
                               struct smelt_stats_result *out);

/* Copy model's result for grid cell (layer, kind), layer = -1 for the row
 * without a layer. Returns false when the cell holds no tensor; out->ready
 * tells whether all its tensors are done (partial cells are summarised
 * over the tensors done so far). */
bool smelt_stats_cell(const struct smelt_stats *s, int model, int layer, enum smelt_kind kind,
                      struct smelt_stats_result *out);

/* Element-weighted mean omega of model over every analysed tensor of a
 * layer (-1: the tensors without a layer), for the current knobs: what the
 * merge's model card records per layer. NaN when the layer has no tensor. */
double smelt_stats_layer_weight(const struct smelt_stats *s, int model, int layer);

/* Recompute every WIDEN weight summary from the cached per-column
 * statistics for new knobs (t any real, s any real, T > 0). No weights are
 * read. Thread-safe (see the top of this file). */
int smelt_stats_rescore(struct smelt_stats *s, double threshold, double calibration,
                        double temperature, struct smelt_err *err);

/* The knobs the current weight summaries were computed with. */
void smelt_stats_knobs(const struct smelt_stats *s, double *threshold, double *calibration,
                       double *temperature);

/* ---- cache ---- */

/* The cache folder this analysis uses and its file (for `smelt diverge
 * --json` and for tests). */
const char *smelt_stats_cache_path(const struct smelt_stats *s);

/* ---- provenance for WIDEN merges ---- */

/* For a job run by method m, between the finish() of its last pass and
 * release(): when m is the widen method, the element-weighted mean omega
 * each model received, into mean_omega[0..job->n_models), and 0. Returns
 * SMELT_ENOTFOUND when m is not widen or the job holds no weights (before
 * setup, or the job never ran its statistics pass). The output writer sums
 * these per layer (weighted by job->numel) for the model card. */
int smelt_widen_job_weights(const struct smelt_method *m, const struct smelt_tensor_job *job,
                            double *mean_omega);

#endif

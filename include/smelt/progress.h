/*
 * progress.h: live progress of long engine operations (merges, divergence
 * analysis), published through atomics so a UI thread can read it at any
 * time without locks while a worker writes it.
 *
 * Ownership: the caller allocates a struct smelt_progress, zeroes it with
 * smelt_progress_init(), passes it to the operation and reads it while the
 * operation runs; the operation only writes it. `cancel` goes the other way:
 * any thread may set it (smelt_progress_cancel()); the operation checks it
 * between blocks and stops with SMELT_ECANCELED, leaving nothing partial.
 */
#ifndef SMELT_PROGRESS_H
#define SMELT_PROGRESS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SMELT_PROGRESS_MAX_LAYERS 512
#define SMELT_PROGRESS_NAME_MAX 160

enum smelt_phase {
	SMELT_PHASE_IDLE,
	SMELT_PHASE_PLANNING,
	SMELT_PHASE_STATS,         /* statistics passes (reading) */
	SMELT_PHASE_MERGING,       /* fused merge pass */
	SMELT_PHASE_FINALIZING,    /* index, config, card, rename */
	SMELT_PHASE_DONE,
	SMELT_PHASE_FAILED,
	SMELT_PHASE_CANCELED
};

struct smelt_progress {
	atomic_int phase;
	atomic_int cancel;                 /* set non-zero to request cancellation */
	atomic_uint_fast64_t bytes_read;   /* input bytes consumed (all passes) */
	atomic_uint_fast64_t bytes_read_total;
	atomic_uint_fast64_t bytes_written;
	atomic_uint_fast64_t bytes_written_total;
	atomic_uint_fast64_t tensors_done;
	atomic_uint_fast64_t tensors_total;
	atomic_uint_fast64_t start_ns;     /* CLOCK_MONOTONIC at start */
	atomic_uint_fast64_t end_ns;       /* 0 while running */
	atomic_uint_fast64_t peak_rss_anon_kb; /* sampled RssAnon of this process */
	atomic_int n_layers;               /* layers in the output (<= MAX_LAYERS) */
	atomic_uint_fast32_t layer_done[SMELT_PROGRESS_MAX_LAYERS];  /* tensors done per layer */
	atomic_uint_fast32_t layer_total[SMELT_PROGRESS_MAX_LAYERS];
	/* Current tensor name: written under a sequence counter (odd while
	 * writing); read with smelt_progress_current(). */
	atomic_uint_fast32_t name_seq;
	char current[SMELT_PROGRESS_NAME_MAX];
};

void smelt_progress_init(struct smelt_progress *p);
void smelt_progress_cancel(struct smelt_progress *p);
bool smelt_progress_canceled(const struct smelt_progress *p);

/* Writer side: publish the current tensor name. */
void smelt_progress_set_current(struct smelt_progress *p, const char *name);
/* Reader side: copy the current tensor name (consistent snapshot). */
void smelt_progress_current(struct smelt_progress *p, char *buf, size_t size);

/* Derived figures for display: seconds since start, bytes per second over
 * the whole run (read + written), and the ETA in seconds (-1 if unknown). */
double smelt_progress_elapsed(const struct smelt_progress *p);
double smelt_progress_rate(const struct smelt_progress *p);
double smelt_progress_eta(const struct smelt_progress *p);
/* Fraction done in [0, 1], by bytes. */
double smelt_progress_fraction(const struct smelt_progress *p);

/* Sample this process's RssAnon (from /proc/self/status) into
 * peak_rss_anon_kb; returns the current value in kB. */
uint64_t smelt_progress_sample_rss(struct smelt_progress *p);

/* A byte count for display in decimal units: "512 B", "3.48 MB",
 * "1.63 GB". Returns buf. */
const char *smelt_format_bytes(double bytes, char *buf, size_t size);

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t smelt_now_ns(void);

#endif

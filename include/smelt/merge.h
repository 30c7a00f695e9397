/*
 * merge.h: from a validated recipe to a finished model folder.
 *
 *   smelt_plan_build()  opens every checkpoint the recipe names, matches
 *                       tensors across models, checks shapes, dtypes and
 *                       vocabularies, resolves every parameter for every
 *                       tensor (gradients, filters, precedence), runs each
 *                       method's check(), and estimates bytes, memory and
 *                       disk. No tensor data is read. Every problem found is
 *                       added to the diagnostics; the plan is only returned
 *                       when there is none.
 *   smelt_merge_run()   executes a plan into OUT: writes OUT.partial-XXXXXX
 *                       beside it (preallocated shards written block by block
 *                       by a thread pool, index, config.json, tokenizer
 *                       files, smelt-recipe.json, README.md card) and renames
 *                       it onto OUT at the end. On failure or cancellation
 *                       the partial folder is removed, so OUT either does not
 *                       exist or is complete.
 *
 * The plan owns its opened checkpoints and every string in it; the recipe
 * passed to smelt_plan_build() must outlive the plan.
 */
#ifndef SMELT_MERGE_H
#define SMELT_MERGE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "smelt/ckpt.h"
#include "smelt/err.h"
#include "smelt/method.h"
#include "smelt/progress.h"
#include "smelt/recipe.h"

struct smelt_plan_input {
	int model;                        /* index into plan->models */
	const struct smelt_ckpt_tensor *t;
};

enum smelt_plan_action {
	SMELT_ACT_MERGE,                  /* run the method */
	SMELT_ACT_COPY                    /* copy inputs[0] (converted to out dtype) */
};

struct smelt_plan_tensor {
	char *name;                       /* output tensor name */
	enum smelt_plan_action action;
	enum smelt_dtype out_dtype;
	int ndim;
	uint64_t shape[SMELT_MAX_DIMS];   /* output shape */
	uint64_t merge_rows;              /* rows merged; rows beyond come from the base
					     (embed_policy common/mean) */
	int layer;                        /* output layer, -1 if none */
	enum smelt_kind kind;
	bool has_base;
	struct smelt_plan_input base;
	int n_inputs;
	struct smelt_plan_input *inputs;  /* merged models (or the copy source) */
	double *pg;                       /* [n_params] resolved global values */
	double *pm;                       /* [n_inputs * n_params] per-model values */
	double scale;                     /* passthrough scale, 1 if none */
	size_t shard;                     /* output shard index */
	uint64_t nbytes;                  /* output bytes */
	uint64_t read_bytes;              /* input bytes this tensor reads per pass */
	double *weights;                  /* [n_inputs] mean weight per model, filled by the
					     run when the method reports weights, else NULL */
};

struct smelt_plan {
	const struct smelt_recipe *recipe;
	const struct smelt_method *method;
	size_t n_models;
	struct smelt_ckpt *models;        /* opened checkpoints, recipe order, base included */
	char **model_refs;                /* as written in the recipe */
	int base;                         /* index of the base in models, -1 if none */
	size_t n_tensors;
	struct smelt_plan_tensor *tensors; /* output order (layer, then name) */
	int out_layers;                   /* layer count of the output */
	enum smelt_dtype out_dtype;
	int tokenizer_donor;              /* model index whose tokenizer files are copied */
	uint64_t seed;
	size_t n_shards;
	uint64_t shard_bytes;
	uint64_t bytes_read;              /* estimate over all passes */
	uint64_t bytes_written;
	uint64_t peak_memory;             /* estimated anonymous memory */
	int threads;
};

struct smelt_merge_options {
	int threads;                      /* <= 0: all CPUs */
	uint64_t shard_bytes;             /* 0: 5 GB */
	bool force;                       /* replace a non-empty OUT */
	bool strict;                      /* warnings become errors */
	bool offline;                     /* never download missing Hub models */
	bool fsync;                       /* flush OUT to disk before it appears under its
					     name, so it survives a power cut (waits for
					     the disk); without it OUT is renamed into
					     place once written, like cp or mergekit */
};

int smelt_plan_build(const struct smelt_recipe *r, const struct smelt_merge_options *o,
		     struct smelt_plan **out, struct smelt_diag *diag);
void smelt_plan_free(struct smelt_plan *p);

/* The resolved plan for --dry-run: per tensor (or grouped by layer) the
 * method and resolved parameter values, bytes to read and write, estimated
 * peak memory and disk. */
void smelt_plan_print(const struct smelt_plan *p, FILE *f, bool by_layer);

/* Check that OUT can be written (parent exists and is writable, OUT absent
 * or empty or force, enough free disk) without touching it. */
int smelt_merge_check_output(const struct smelt_plan *p, const char *out_dir, bool force,
			     struct smelt_err *err);

int smelt_merge_run(struct smelt_plan *p, const char *out_dir, const struct smelt_merge_options *o,
		    struct smelt_progress *prog, struct smelt_err *err);

#endif

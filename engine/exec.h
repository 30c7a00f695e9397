/*
 * exec.h (engine-internal): the pieces of a merge run.
 *
 * out_shards owns the preallocated output shard files of one run (inside
 * the partial folder): their writers and where each plan tensor's bytes go.
 * smelt_exec_tensors() fills them; out.c creates, commits or aborts them.
 */
#ifndef SMELT_EXEC_H
#define SMELT_EXEC_H

#include "smelt/merge.h"
#include "smelt/rng.h"

struct out_shards;

struct smelt_st_writer *out_shards_writer(struct out_shards *s, size_t shard);
/* Absolute file offset of plan tensor i in its shard. */
uint64_t out_shards_offset(const struct out_shards *s, size_t i);

/* durable: the run will fsync its output at the end (--fsync), so start
 * writing it back to disk as it goes. */
int smelt_exec_tensors(struct smelt_plan *p, struct out_shards *shards, bool durable,
		       struct smelt_progress *prog, struct smelt_err *err);

/* Files written next to the weights (out_files.c). dir is the partial
 * folder. */
int smelt_write_config(const struct smelt_plan *p, const char *dir, struct smelt_err *err);
int smelt_copy_tokenizer(const struct smelt_plan *p, const char *dir, struct smelt_err *err);
int smelt_write_recipe_json(const struct smelt_plan *p, const char *dir, struct smelt_err *err);
int smelt_write_card(const struct smelt_plan *p, const char *dir, struct smelt_err *err);

/* Small file helpers shared by the output code. */
int smelt_write_text_file(const char *path, const char *text, size_t len, struct smelt_err *err);
int smelt_copy_file(const char *src, const char *dst, struct smelt_err *err);
int smelt_rm_rf(const char *path);

#endif

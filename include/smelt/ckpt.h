/*
 * ckpt.h: a checkpoint = one model folder (or Hugging Face cache snapshot
 * folder) holding model.safetensors, or model.safetensors.index.json and its
 * shards, plus config.json.
 *
 * smelt_ckpt_open() opens and validates every shard, checks the index
 * (weight_map names only plain relative shard files that exist and actually
 * hold the tensor; no tensor in two shards), reads config.json when present,
 * and builds one name -> tensor table across shards. The struct owns its
 * shards, strings and table until smelt_ckpt_close(). Tensors are listed in
 * a stable order: by layer index, then by name, so layer 2 comes before
 * layer 10 (names without a layer first, final norm and head last).
 *
 * Also here: the tensor naming conventions every module shares (layer index
 * from a name, tensor kind for the heatmap grid), reading rows of a tensor
 * as f32, and the sharded-output helpers (size parsing, shard split, index).
 */
#ifndef SMELT_CKPT_H
#define SMELT_CKPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "smelt/err.h"
#include "smelt/st.h"

struct smelt_ckpt_config {
	bool present;              /* config.json was found and parsed */
	char architecture[128];    /* architectures[0], "" if absent */
	char model_type[64];
	int num_layers;            /* num_hidden_layers / n_layer / ..., -1 if absent */
	int hidden_size;           /* -1 if absent */
	int intermediate_size;     /* -1 if absent */
	int vocab_size;            /* -1 if absent */
	bool tie_word_embeddings;  /* default false */
	char torch_dtype[32];      /* "" if absent */
	char layers_key[64];       /* which key held the layer count */
	char *json;                /* raw config.json text (owned), NULL if absent */
};

struct smelt_ckpt_tensor {
	const char *name;          /* owned by the shard */
	int shard;                 /* index into shards[] */
	const struct smelt_st_tensor *st;
	int layer;                 /* parsed layer index, -1 if none */
};

struct smelt_ckpt {
	char *path;                /* the folder (resolved) */
	char *display;             /* how the user named it */
	size_t n_shards;
	struct smelt_st_file *shards;
	char **shard_names;        /* file names relative to path */
	bool sharded;              /* came from an index file */
	size_t n_tensors;
	struct smelt_ckpt_tensor *tensors; /* sorted as described above */
	struct smelt_ckpt_config config;
	uint64_t total_bytes;      /* sum of tensor byte sizes */
	int num_layers;            /* 1 + max layer index seen in names, 0 if none */
	enum smelt_dtype main_dtype; /* dtype holding most bytes */
	void *priv;                /* name index */
};

/* Open a checkpoint folder. path may also be a single .safetensors file. */
int smelt_ckpt_open(struct smelt_ckpt *c, const char *path, struct smelt_err *err);
void smelt_ckpt_close(struct smelt_ckpt *c);

/* Lookup by exact name, NULL if absent. */
const struct smelt_ckpt_tensor *smelt_ckpt_find(const struct smelt_ckpt *c, const char *name);

/* Raw bytes of a tensor inside its shard's mapping (possibly misaligned). */
const uint8_t *smelt_ckpt_bytes(const struct smelt_ckpt *c, const struct smelt_ckpt_tensor *t);

/* Convert rows [row0, row0+nrows) of a float tensor to f32. A tensor of
 * shape [d0, d1, ...] is read as d0 rows of (d1*d2*...) elements; a 1-D
 * tensor is one row; a scalar is one row of one element. Reads with pread
 * (not through the mapping); thread-safe; fails with a message naming the
 * file and tensor when the file is shorter than its header says. */
int smelt_ckpt_read_rows(const struct smelt_ckpt *c, const struct smelt_ckpt_tensor *t,
			 uint64_t row0, uint64_t nrows, float *dst, struct smelt_err *err);

/* Rows [row0, row0+nrows) as stored (the tensor's own dtype, no
 * conversion), with pread. */
int smelt_ckpt_read_raw(const struct smelt_ckpt *c, const struct smelt_ckpt_tensor *t,
			uint64_t row0, uint64_t nrows, void *dst, struct smelt_err *err);

/* The same through the shard's mapping: the first read of a page faults it
 * in (slower than pread's copy), later reads cost nothing but the
 * conversion. For a tensor read several times (methods with statistics
 * passes); the caller drops the pages afterwards (madvise). The file must
 * not shrink while mapped. */
int smelt_ckpt_read_rows_mapped(const struct smelt_ckpt *c, const struct smelt_ckpt_tensor *t,
				uint64_t row0, uint64_t nrows, float *dst, struct smelt_err *err);

/* Rows and columns of the 2-D view described above. */
void smelt_tensor_rows_cols(int ndim, const uint64_t *shape, uint64_t *rows, uint64_t *cols);

/* ---- naming conventions ---- */

/* Layer index from names like "model.layers.12.mlp...", "transformer.h.3.",
 * "blocks.7.", "layer.4.", "decoder.layers.0."; -1 when the name has none.
 * If prefix_len is non-NULL it receives the length of the text before the
 * number and suffix_off the offset just after it (for renaming layers). */
int smelt_layer_index(const char *name, size_t *prefix_len, size_t *suffix_off);

/* Tensor kinds: the columns of the heatmap grid. */
enum smelt_kind {
	SMELT_KIND_Q,
	SMELT_KIND_K,
	SMELT_KIND_V,
	SMELT_KIND_O,
	SMELT_KIND_GATE,
	SMELT_KIND_UP,
	SMELT_KIND_DOWN,
	SMELT_KIND_NORM,           /* per-layer norms (input, post-attention, ...) */
	SMELT_KIND_EMBED,          /* token embedding */
	SMELT_KIND_HEAD,           /* lm_head / output projection */
	SMELT_KIND_FINAL_NORM,     /* the model's last norm */
	SMELT_KIND_OTHER,
	SMELT_KIND_COUNT
};

enum smelt_kind smelt_tensor_kind(const char *name);
const char *smelt_kind_name(enum smelt_kind k); /* "q", "k", ..., "embed", "head" */

/* True for token-embedding tables ("embed_tokens", "wte", "tok_embeddings",
 * "word_embeddings", "embeddings.weight" ...). */
bool smelt_is_token_embedding(const char *name);

/* ---- sharded output ---- */

/* Parse a byte size with decimal units: "5GB" = 5e9, "500MB", "1.5GB",
 * "2KB", "1TB", plain digits = bytes; mergekit's "5B"/"500M"/"2K" (x1e9,
 * x1e6, x1e3) accepted too. Case-insensitive; must be > 0. */
int smelt_parse_size(const char *text, uint64_t *out, struct smelt_err *err);

/* Greedy shard split in list order (huggingface_hub's rule): a tensor larger
 * than the budget gets its own shard; otherwise a new shard starts when the
 * tensor would overflow the current one. Writes shard_of[i] (0-based) and
 * returns the shard count (>= 1, also for n == 0). */
size_t smelt_shard_split(const uint64_t *nbytes, size_t n, uint64_t budget, size_t *shard_of);

/* "model-00001-of-00003.safetensors" (or "model.safetensors" when n == 1)
 * into buf. i is 0-based. */
void smelt_shard_name(size_t i, size_t n, char *buf, size_t bufsize);

/* Write dir/model.safetensors.index.json (2-space indent, sorted keys,
 * trailing newline) atomically: metadata.total_size and weight_map. */
int smelt_write_index(const char *dir, uint64_t total_size, const char *const *names,
		      const char *const *files, size_t n, struct smelt_err *err);

#endif

/*
 * demo.c: the synthetic demo family (see demo.h). Every value is a pure
 * function of (tensor name, model, element index) through smelt_rng, so the
 * files are identical on every run and any thread count.
 */
#include "smelt/demo.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "smelt/ckpt.h"
#include "smelt/rng.h"
#include "smelt/st.h"

#define DEMO_SEED 0x5e17d3e0ull
#define N_TENSORS (3 + 9 * SMELT_DEMO_LAYERS)

const char *const smelt_demo_models[SMELT_DEMO_MODELS] = {"base", "chat", "multilingual"};

struct demo_tensor {
	char name[96];
	int ndim;
	uint64_t shape[2];
};

static size_t demo_tensors(struct demo_tensor *t)
{
	static const char *const attn[] = {"q_proj", "k_proj", "v_proj", "o_proj"};
	const uint64_t h = SMELT_DEMO_HIDDEN, in = SMELT_DEMO_INTERMEDIATE;
	size_t n = 0;

#define ADD(nd, d0, d1, ...)                                                                       \
	do {                                                                                       \
		snprintf(t[n].name, sizeof(t[n].name), __VA_ARGS__);                               \
		t[n].ndim = (nd);                                                                  \
		t[n].shape[0] = (d0);                                                              \
		t[n].shape[1] = (d1);                                                              \
		n++;                                                                               \
	} while (0)

	ADD(2, SMELT_DEMO_VOCAB, h, "model.embed_tokens.weight");
	for (int l = 0; l < SMELT_DEMO_LAYERS; l++) {
		for (int a = 0; a < 4; a++)
			ADD(2, h, h, "model.layers.%d.self_attn.%s.weight", l, attn[a]);
		ADD(2, in, h, "model.layers.%d.mlp.gate_proj.weight", l);
		ADD(2, in, h, "model.layers.%d.mlp.up_proj.weight", l);
		ADD(2, h, in, "model.layers.%d.mlp.down_proj.weight", l);
		ADD(1, h, 0, "model.layers.%d.input_layernorm.weight", l);
		ADD(1, h, 0, "model.layers.%d.post_attention_layernorm.weight", l);
	}
	ADD(1, h, 0, "model.norm.weight");
	ADD(2, SMELT_DEMO_VOCAB, h, "lm_head.weight");
#undef ADD
	return n;
}

/* A standard normal draw (Box-Muller on two counter-based uniforms). */
static float gauss(uint64_t key, uint64_t i)
{
	double u1 = smelt_rng_uniform(key, 2 * i), u2 = smelt_rng_uniform(key, 2 * i + 1);

	return (float)(sqrt(-2.0 * log(1.0 - u1)) * cos(6.283185307179586 * u2));
}

/* Relative size of a model's delta for one tensor. */
static double delta_scale(int model, enum smelt_kind kind, int layer)
{
	double depth = layer < 0 ? 1.0 : (double)layer / (SMELT_DEMO_LAYERS - 1);

	if (model == 1) /* chat: fine-tune-like, 1-2% */
		return 0.01 + 0.01 * depth;
	switch (kind) { /* multilingual: pre-train-like, 20-45% */
	case SMELT_KIND_EMBED: return 0.45;
	case SMELT_KIND_HEAD: return 0.40;
	case SMELT_KIND_GATE:
	case SMELT_KIND_UP:
	case SMELT_KIND_DOWN: return 0.28 + 0.14 * depth;
	default: return 0.18 + 0.10 * depth;
	}
}

/* The multilingual model also rescales a few input columns in the upper
 * half of the layers: a change of magnitude WIDEN-style analyses see. */
static float column_factor(int model, enum smelt_kind kind, int layer, uint64_t col)
{
	if (model != 2 || layer < SMELT_DEMO_LAYERS / 2 || kind > SMELT_KIND_DOWN)
		return 1.0f;
	if (col % 16 == 3)
		return 1.5f;
	if (col % 16 == 11)
		return 0.5f;
	return 1.0f;
}

static void demo_values(const struct demo_tensor *t, int model, float *out)
{
	enum smelt_kind kind = smelt_tensor_kind(t->name);
	int layer = smelt_layer_index(t->name, NULL, NULL);
	uint64_t rows, cols, n;
	bool is_norm = t->ndim == 1;
	float scale = is_norm ? 1.0f : 0.02f;
	uint64_t base_key = smelt_rng_key(DEMO_SEED, t->name, 0);
	uint64_t delta_key = smelt_rng_key(DEMO_SEED, t->name, (uint64_t)model);
	float rel = model ? (float)delta_scale(model, kind, layer) : 0.0f;

	smelt_tensor_rows_cols(t->ndim, t->shape, &rows, &cols);
	n = rows * cols;
	for (uint64_t i = 0; i < n; i++) {
		float v = is_norm ? 1.0f + 0.02f * gauss(base_key, i) : 0.02f * gauss(base_key, i);

		if (model)
			v += rel * scale * gauss(delta_key, i);
		out[i] = v * column_factor(model, kind, layer, i % cols);
	}
}

static int write_weights(const char *path, int model, struct smelt_err *err)
{
	struct demo_tensor dt[N_TENSORS];
	struct smelt_st_out_tensor ot[N_TENSORS];
	struct smelt_st_writer w;
	size_t n = demo_tensors(dt), max = 0;
	float *vals = NULL;
	uint8_t *enc = NULL;
	int rc;

	for (size_t i = 0; i < n; i++) {
		memset(&ot[i], 0, sizeof(ot[i]));
		ot[i].name = dt[i].name;
		ot[i].dtype = SMELT_BF16;
		ot[i].ndim = dt[i].ndim;
		ot[i].shape[0] = dt[i].shape[0];
		ot[i].shape[1] = dt[i].shape[1];
		if (dt[i].shape[0] * (dt[i].ndim == 2 ? dt[i].shape[1] : 1) > max)
			max = (size_t)(dt[i].shape[0] * (dt[i].ndim == 2 ? dt[i].shape[1] : 1));
	}
	vals = malloc(max * sizeof(float));
	enc = malloc(max * 2);
	if (!vals || !enc) {
		rc = smelt_fail(err, SMELT_ENOMEM, "%s: out of memory", path);
		goto out;
	}
	rc = smelt_st_writer_open(&w, path, ot, n, NULL, 0, err);
	if (rc)
		goto out;
	for (size_t i = 0; i < n; i++) {
		size_t count = (size_t)ot[i].nbytes / 2;

		demo_values(&dt[i], model, vals);
		smelt_from_f32(SMELT_BF16, vals, enc, count);
		rc = smelt_st_writer_pwrite(&w, ot[i].file_offset, enc, (size_t)ot[i].nbytes, err);
		if (rc) {
			smelt_st_writer_abort(&w);
			goto out;
		}
	}
	rc = smelt_st_writer_commit(&w, err);
out:
	free(vals);
	free(enc);
	return rc;
}

/* Write a small text file atomically (temporary file + rename). */
static int write_text_file(const char *path, const char *text, struct smelt_err *err)
{
	char tmp[4200];
	size_t len = strlen(text), done = 0;
	int fd;

	snprintf(tmp, sizeof(tmp), "%s.tmp-XXXXXX", path);
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return smelt_fail(err, SMELT_EIO, "%s: cannot create a temporary file: %s", path,
				  strerror(errno));
	while (done < len) {
		ssize_t w = write(fd, text + done, len - done);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		done += (size_t)w;
	}
	if (done < len || fchmod(fd, 0644) != 0 || fsync(fd) != 0) {
		int e = errno;

		close(fd);
		unlink(tmp);
		return smelt_fail(err, SMELT_EIO, "%s: write failed: %s", path, strerror(e));
	}
	close(fd);
	if (rename(tmp, path) != 0) {
		int e = errno;

		unlink(tmp);
		return smelt_fail(err, SMELT_EIO, "%s: cannot rename into place: %s", path,
				  strerror(e));
	}
	return 0;
}

static int make_dirs(const char *dir, struct smelt_err *err)
{
	char buf[4096];
	size_t len = strlen(dir);

	if (len == 0 || len >= sizeof(buf))
		return smelt_fail(err, SMELT_EINVAL, "'%s': unusable folder name", dir);
	memcpy(buf, dir, len + 1);
	for (size_t i = 1; i <= len; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		buf[i] = '\0';
		if (mkdir(buf, 0755) != 0 && errno != EEXIST)
			return smelt_fail(err, SMELT_EIO, "%s: cannot create folder: %s", buf,
					  strerror(errno));
		buf[i] = dir[i];
	}
	{
		struct stat st;

		if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
			return smelt_fail(err, SMELT_EIO, "%s: not a folder", dir);
	}
	return 0;
}

static const char *const notes[SMELT_DEMO_MODELS] = {
	"synthetic base model: Gaussian weights (std 0.02), norms near 1",
	"synthetic fine-tune of base: small deltas (1-2% relative) everywhere",
	("synthetic continued pre-training of base: large deltas (20-45% relative, larger in "
	 "embeddings, MLPs and upper layers) and rescaled input columns in layers 4-7"),
};

static int write_side_files(const char *mdir, int model, struct smelt_err *err)
{
	char path[4200], text[4096];
	int rc;

	snprintf(text, sizeof(text),
		 "{\n"
		 "  \"architectures\": [\"LlamaForCausalLM\"],\n"
		 "  \"model_type\": \"llama\",\n"
		 "  \"hidden_size\": %d,\n"
		 "  \"intermediate_size\": %d,\n"
		 "  \"num_hidden_layers\": %d,\n"
		 "  \"num_attention_heads\": %d,\n"
		 "  \"num_key_value_heads\": %d,\n"
		 "  \"vocab_size\": %d,\n"
		 "  \"max_position_embeddings\": 2048,\n"
		 "  \"rms_norm_eps\": 1e-05,\n"
		 "  \"rope_theta\": 10000.0,\n"
		 "  \"hidden_act\": \"silu\",\n"
		 "  \"bos_token_id\": 1,\n"
		 "  \"eos_token_id\": 2,\n"
		 "  \"tie_word_embeddings\": false,\n"
		 "  \"torch_dtype\": \"bfloat16\",\n"
		 "  \"smelt_demo\": {\"synthetic\": true, \"model\": \"%s\", \"note\": \"%s\"}\n"
		 "}\n",
		 SMELT_DEMO_HIDDEN, SMELT_DEMO_INTERMEDIATE, SMELT_DEMO_LAYERS, SMELT_DEMO_HEADS,
		 SMELT_DEMO_HEADS, SMELT_DEMO_VOCAB, smelt_demo_models[model], notes[model]);
	snprintf(path, sizeof(path), "%s/config.json", mdir);
	rc = write_text_file(path, text, err);
	if (rc)
		return rc;
	snprintf(path, sizeof(path), "%s/tokenizer_config.json", mdir);
	rc = write_text_file(path,
			     "{\n  \"bos_token\": \"<s>\",\n  \"eos_token\": \"</s>\",\n"
			     "  \"model_max_length\": 2048,\n  \"smelt_demo\": true\n}\n",
			     err);
	if (rc)
		return rc;
	snprintf(path, sizeof(path), "%s/generation_config.json", mdir);
	rc = write_text_file(path,
			     "{\n  \"_from_model_config\": true,\n  \"bos_token_id\": 1,\n"
			     "  \"eos_token_id\": 2\n}\n",
			     err);
	if (rc)
		return rc;
	snprintf(text, sizeof(text),
		 "# smelt demo: %s\n\n"
		 "Synthetic weights written by `smelt demo`. This is not a trained model and\n"
		 "produces no meaningful text; it exists to try smelt's merge, inspect and\n"
		 "divergence views offline.\n\n"
		 "- %s\n"
		 "- Llama layout: hidden %d, intermediate %d, %d layers, %d heads, vocabulary %d,\n"
		 "  BF16, about 3.4 MB.\n",
		 smelt_demo_models[model], notes[model], SMELT_DEMO_HIDDEN, SMELT_DEMO_INTERMEDIATE,
		 SMELT_DEMO_LAYERS, SMELT_DEMO_HEADS, SMELT_DEMO_VOCAB);
	snprintf(path, sizeof(path), "%s/README.md", mdir);
	return write_text_file(path, text, err);
}

int smelt_demo_write(const char *dir, struct smelt_err *err)
{
	char mdir[4096], path[4200];
	int rc;

	rc = make_dirs(dir, err);
	if (rc)
		return rc;
	for (int m = 0; m < SMELT_DEMO_MODELS; m++) {
		snprintf(mdir, sizeof(mdir), "%s/%s", dir, smelt_demo_models[m]);
		rc = make_dirs(mdir, err);
		if (rc)
			return rc;
		snprintf(path, sizeof(path), "%s/model.safetensors", mdir);
		rc = write_weights(path, m, err);
		if (!rc)
			rc = write_side_files(mdir, m, err);
		if (rc)
			return rc;
	}
	return 0;
}

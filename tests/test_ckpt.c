/*
 * test_ckpt.c: checkpoints (single file, folder, sharded index, cache-style
 * symlinks), index validation, config.json, tensor order, read_rows on
 * misaligned data, naming conventions and the sharded-output helpers.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "smelt/ckpt.h"

static const char *tmp_path(const char *rel)
{
	static char buf[8][4200];
	static int k;
	char *p = buf[k++ % 8];

	snprintf(p, 4200, "%s/%s", check_tmpdir(), rel);
	return p;
}

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	CHECK(f != NULL);
	if (f) {
		fputs(text, f);
		fclose(f);
	}
}

static void make_dir(const char *rel)
{
	char cmd[4400];

	snprintf(cmd, sizeof(cmd), "mkdir -p '%s'", tmp_path(rel));
	CHECK(system(cmd) == 0);
}

/* Write a shard holding the given F32 tensors of shape [2,3] (values
 * base + i). */
static void write_shard(const char *path, const char *const *names, size_t n, float base)
{
	struct smelt_st_out_tensor t[16];
	float vals[16][6];
	const void *data[16];
	struct smelt_err err;

	for (size_t i = 0; i < n; i++) {
		memset(&t[i], 0, sizeof(t[i]));
		t[i].name = names[i];
		t[i].dtype = SMELT_F32;
		t[i].ndim = 2;
		t[i].shape[0] = 2;
		t[i].shape[1] = 3;
		for (int j = 0; j < 6; j++)
			vals[i][j] = base + (float)i * 10 + (float)j;
		data[i] = vals[i];
	}
	CHECK_EQ_INT(smelt_st_write_file(path, t, data, n, &err), 0);
}

TEST(layer_index)
{
	size_t pre = 0, suf = 0;

	CHECK_EQ_INT(smelt_layer_index("model.layers.12.mlp.up_proj.weight", &pre, &suf), 12);
	CHECK_EQ_INT(pre, strlen("model.layers."));
	CHECK_EQ_INT(suf, strlen("model.layers.12"));
	CHECK_EQ_INT(smelt_layer_index("transformer.h.3.attn.c_attn.weight", NULL, NULL), 3);
	CHECK_EQ_INT(smelt_layer_index("blocks.7.norm1.weight", NULL, NULL), 7);
	CHECK_EQ_INT(smelt_layer_index("bert.encoder.layer.4.attention.self.query.weight", NULL,
					 NULL),
		     4);
	CHECK_EQ_INT(smelt_layer_index("model.decoder.layers.0.fc1.weight", NULL, NULL), 0);
	CHECK_EQ_INT(smelt_layer_index("encoder.block.2.layer.1.DenseReluDense.wi.weight", NULL,
					 NULL),
		     2);
	CHECK_EQ_INT(smelt_layer_index("h.2.ln_1.weight", NULL, NULL), 2);
	CHECK_EQ_INT(smelt_layer_index("model.layers.5", NULL, NULL), 5);
	CHECK_EQ_INT(smelt_layer_index("model.embed_tokens.weight", NULL, NULL), -1);
	CHECK_EQ_INT(smelt_layer_index("model.layers.x.foo", NULL, NULL), -1);
	CHECK_EQ_INT(smelt_layer_index("mylayers.3.foo", NULL, NULL), -1);
	CHECK_EQ_INT(smelt_layer_index("model.layers.3x.foo", NULL, NULL), -1);
	CHECK_EQ_INT(smelt_layer_index("model.layers.99999999999.foo", NULL, NULL), -1);
	CHECK_EQ_INT(smelt_layer_index("lm_head.weight", NULL, NULL), -1);
	CHECK_EQ_INT(smelt_layer_index("", NULL, NULL), -1);
}

TEST(tensor_kinds)
{
	static const struct {
		const char *name;
		enum smelt_kind kind;
	} cases[] = {
		{"model.layers.0.self_attn.q_proj.weight", SMELT_KIND_Q},
		{"model.layers.0.self_attn.k_proj.weight", SMELT_KIND_K},
		{"model.layers.0.self_attn.v_proj.bias", SMELT_KIND_V},
		{"model.layers.0.self_attn.o_proj.weight", SMELT_KIND_O},
		{"model.layers.0.mlp.gate_proj.weight", SMELT_KIND_GATE},
		{"model.layers.0.mlp.up_proj.weight", SMELT_KIND_UP},
		{"model.layers.0.mlp.down_proj.weight", SMELT_KIND_DOWN},
		{"layers.3.attention.wq.weight", SMELT_KIND_Q},
		{"layers.3.attention.wo.weight", SMELT_KIND_O},
		{"layers.3.feed_forward.w1.weight", SMELT_KIND_GATE},
		{"layers.3.feed_forward.w3.weight", SMELT_KIND_UP},
		{"layers.3.feed_forward.w2.weight", SMELT_KIND_DOWN},
		{"model.layers.0.input_layernorm.weight", SMELT_KIND_NORM},
		{"model.layers.0.post_attention_layernorm.weight", SMELT_KIND_NORM},
		{"transformer.h.0.ln_1.weight", SMELT_KIND_NORM},
		{"transformer.h.0.attn.c_attn.weight", SMELT_KIND_OTHER},
		{"model.embed_tokens.weight", SMELT_KIND_EMBED},
		{"transformer.wte.weight", SMELT_KIND_EMBED},
		{"tok_embeddings.weight", SMELT_KIND_EMBED},
		{"bert.embeddings.word_embeddings.weight", SMELT_KIND_EMBED},
		{"bert.embeddings.position_embeddings.weight", SMELT_KIND_OTHER},
		{"lm_head.weight", SMELT_KIND_HEAD},
		{"output.weight", SMELT_KIND_HEAD},
		{"embed_out.weight", SMELT_KIND_HEAD},
		{"model.norm.weight", SMELT_KIND_FINAL_NORM},
		{"norm.weight", SMELT_KIND_FINAL_NORM},
		{"transformer.ln_f.weight", SMELT_KIND_FINAL_NORM},
		{"model.final_layernorm.weight", SMELT_KIND_FINAL_NORM},
		{"word_embeddings_layernorm.weight", SMELT_KIND_OTHER},
		{"model.rotary_emb.inv_freq", SMELT_KIND_OTHER},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		CHECK_MSG(smelt_tensor_kind(cases[i].name) == cases[i].kind, "%s: %s, want %s",
			  cases[i].name, smelt_kind_name(smelt_tensor_kind(cases[i].name)),
			  smelt_kind_name(cases[i].kind));
	CHECK(strcmp(smelt_kind_name(SMELT_KIND_GATE), "gate") == 0);
	CHECK(strcmp(smelt_kind_name(SMELT_KIND_HEAD), "head") == 0);
	CHECK(smelt_is_token_embedding("model.embed_tokens.weight"));
	CHECK(!smelt_is_token_embedding("model.layers.0.mlp.up_proj.weight"));
}

TEST(parse_size)
{
	static const struct {
		const char *text;
		uint64_t want;
	} ok[] = {
		{"5GB", 5000000000ull},	 {"500MB", 500000000ull}, {"1.5GB", 1500000000ull},
		{"2KB", 2000ull},	 {"1TB", 1000000000000ull}, {"123", 123ull},
		{"5B", 5000000000ull},	 {"500M", 500000000ull},  {"2K", 2000ull},
		{"5gb", 5000000000ull},	 {"1GiB", 1ull << 30},	  {"0.5MB", 500000ull},
		{"10 GB", 10000000000ull},
	};
	static const char *bad[] = {"", "0", "0GB", "GB", "abc", "5XB", "-1", "5GBs", "1.2.3"};
	struct smelt_err err;
	uint64_t v;

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		CHECK_MSG(smelt_parse_size(ok[i].text, &v, &err) == 0 && v == ok[i].want,
			  "'%s' -> %llu", ok[i].text, (unsigned long long)v);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK_MSG(smelt_parse_size(bad[i], &v, &err) == SMELT_EINVAL, "'%s' accepted",
			  bad[i]);
	CHECK_EQ_INT(smelt_parse_size("99999999999999TB", &v, &err), SMELT_EINVAL);
}

TEST(shard_split)
{
	size_t of[8];
	uint64_t a[] = {3, 4, 5};
	uint64_t b[] = {12, 3};
	uint64_t c[] = {3, 12, 4};
	uint64_t d[] = {10, 10};
	uint64_t e[] = {0, 0, 7, 4};

	CHECK_EQ_INT(smelt_shard_split(a, 3, 10, of), 2);
	CHECK(of[0] == 0 && of[1] == 0 && of[2] == 1);
	CHECK_EQ_INT(smelt_shard_split(b, 2, 10, of), 2);
	CHECK(of[0] == 0 && of[1] == 1);
	/* An oversized tensor closes its own shard at once; the open one
	 * (holding the first tensor) is closed later, as huggingface_hub does. */
	CHECK_EQ_INT(smelt_shard_split(c, 3, 10, of), 2);
	CHECK(of[0] == 1 && of[1] == 0 && of[2] == 1);
	CHECK_EQ_INT(smelt_shard_split(d, 2, 10, of), 2);
	CHECK(of[0] == 0 && of[1] == 1);
	CHECK_EQ_INT(smelt_shard_split(e, 4, 10, of), 2);
	CHECK(of[0] == 0 && of[1] == 0 && of[2] == 0 && of[3] == 1);
	CHECK_EQ_INT(smelt_shard_split(NULL, 0, 10, of), 1);
}

TEST(shard_names)
{
	char buf[64];

	smelt_shard_name(0, 1, buf, sizeof(buf));
	CHECK(strcmp(buf, "model.safetensors") == 0);
	smelt_shard_name(0, 3, buf, sizeof(buf));
	CHECK(strcmp(buf, "model-00001-of-00003.safetensors") == 0);
	smelt_shard_name(2, 3, buf, sizeof(buf));
	CHECK(strcmp(buf, "model-00003-of-00003.safetensors") == 0);
}

static void write_sharded(const char *dir)
{
	static const char *s1[] = {"model.embed_tokens.weight", "model.layers.0.mlp.up_proj.weight"};
	static const char *s2[] = {"model.layers.10.mlp.up_proj.weight",
				   "model.layers.2.mlp.up_proj.weight"};
	static const char *s3[] = {"lm_head.weight", "model.norm.weight"};
	const char *names[6], *files[6];
	char p[4200];
	struct smelt_err err;

	snprintf(p, sizeof(p), "%s/model-00001-of-00003.safetensors", dir);
	write_shard(p, s1, 2, 0);
	snprintf(p, sizeof(p), "%s/model-00002-of-00003.safetensors", dir);
	write_shard(p, s2, 2, 100);
	snprintf(p, sizeof(p), "%s/model-00003-of-00003.safetensors", dir);
	write_shard(p, s3, 2, 200);
	for (int i = 0; i < 2; i++) {
		names[i] = s1[i];
		files[i] = "model-00001-of-00003.safetensors";
		names[2 + i] = s2[i];
		files[2 + i] = "model-00002-of-00003.safetensors";
		names[4 + i] = s3[i];
		files[4 + i] = "model-00003-of-00003.safetensors";
	}
	CHECK_EQ_INT(smelt_write_index(dir, 6 * 24, names, files, 6, &err), 0);
}

TEST(index_file_format)
{
	const char *names[] = {"b", "a\xc3\xa9"};
	const char *files[] = {"model-00002-of-00002.safetensors", "model-00001-of-00002.safetensors"};
	struct smelt_err err;
	char buf[1024] = "";
	FILE *f;
	size_t n;

	make_dir("idx");
	CHECK_EQ_INT(smelt_write_index(tmp_path("idx"), 42, names, files, 2, &err), 0);
	f = fopen(tmp_path("idx/model.safetensors.index.json"), "r");
	CHECK(f != NULL);
	if (!f)
		return;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	CHECK(strcmp(buf, "{\n  \"metadata\": {\n    \"total_size\": 42\n  },\n  \"weight_map\": {\n"
			  "    \"a\\u00e9\": \"model-00001-of-00002.safetensors\",\n"
			  "    \"b\": \"model-00002-of-00002.safetensors\"\n  }\n}\n") == 0);
	CHECK_MSG(1, "%s", buf);
}

TEST(sharded_checkpoint)
{
	struct smelt_ckpt c;
	struct smelt_err err;
	const struct smelt_ckpt_tensor *t;
	static const char *order[] = {
		"model.embed_tokens.weight",	      "model.layers.0.mlp.up_proj.weight",
		"model.layers.2.mlp.up_proj.weight", "model.layers.10.mlp.up_proj.weight",
		"model.norm.weight",		      "lm_head.weight"};
	float rows[6];

	make_dir("sharded");
	write_sharded(tmp_path("sharded"));
	CHECK_EQ_INT(smelt_ckpt_open(&c, tmp_path("sharded"), &err), 0);
	CHECK_MSG(1, "%s", err.msg);
	CHECK(c.sharded);
	CHECK_EQ_INT(c.n_shards, 3);
	CHECK_EQ_INT(c.n_tensors, 6);
	CHECK_EQ_INT(c.num_layers, 11);
	CHECK_EQ_INT(c.total_bytes, 6 * 24);
	CHECK_EQ_INT(c.main_dtype, SMELT_F32);
	CHECK(!c.config.present);
	for (size_t i = 0; i < c.n_tensors && i < 6; i++)
		CHECK_MSG(strcmp(c.tensors[i].name, order[i]) == 0, "%zu: %s", i, c.tensors[i].name);
	t = smelt_ckpt_find(&c, "model.layers.2.mlp.up_proj.weight");
	CHECK(t && t->layer == 2 && strcmp(c.shard_names[t->shard],
					   "model-00002-of-00003.safetensors") == 0);
	if (t) {
		CHECK_EQ_INT(smelt_ckpt_read_rows(&c, t, 1, 1, rows, &err), 0);
		CHECK(rows[0] == 113 && rows[2] == 115);
		CHECK_EQ_INT(smelt_ckpt_read_rows(&c, t, 1, 2, rows, &err), SMELT_EINVAL);
	}
	CHECK(smelt_ckpt_find(&c, "nope") == NULL);
	smelt_ckpt_close(&c);
}

/* Rewrite the index of a copy of the sharded model with one change. */
static int open_with_index(const char *dirname, const char *index_json, struct smelt_err *err)
{
	struct smelt_ckpt c;
	char p[4200];
	int rc;

	make_dir(dirname);
	write_sharded(tmp_path(dirname));
	snprintf(p, sizeof(p), "%s/model.safetensors.index.json", tmp_path(dirname));
	write_text(p, index_json);
	rc = smelt_ckpt_open(&c, tmp_path(dirname), err);
	if (rc == 0)
		smelt_ckpt_close(&c);
	return rc;
}

#define S1 "\"model-00001-of-00003.safetensors\""
#define S2 "\"model-00002-of-00003.safetensors\""
#define S3 "\"model-00003-of-00003.safetensors\""
#define REST                                                                                       \
	"\"model.layers.0.mlp.up_proj.weight\":" S1 ",\"model.layers.10.mlp.up_proj.weight\":" S2 \
	",\"model.layers.2.mlp.up_proj.weight\":" S2 ",\"lm_head.weight\":" S3                    \
	",\"model.norm.weight\":" S3

TEST(index_validation)
{
	struct smelt_err err;

	CHECK_EQ_INT(open_with_index("i0", "{\"weight_map\":{\"model.embed_tokens.weight\":" S1
					   "," REST "}}",
				     &err),
		     0);
	CHECK_EQ_INT(open_with_index("i1", "{\"weight_map\":{\"model.embed_tokens.weight\":"
					   "\"../model-00001-of-00003.safetensors\"," REST "}}",
				     &err),
		     SMELT_EFORMAT);
	CHECK_STR_CONTAINS(err.msg, "not a plain file name");
	CHECK_STR_CONTAINS(err.msg, "model.embed_tokens.weight");
	CHECK_EQ_INT(open_with_index("i2", "{\"weight_map\":{\"model.embed_tokens.weight\":"
					   "\"/etc/passwd\"," REST "}}",
				     &err),
		     SMELT_EFORMAT);
	CHECK_STR_CONTAINS(err.msg, "'/etc/passwd', which is not a plain file name");
	CHECK_EQ_INT(open_with_index("i3", "{\"weight_map\":{\"model.embed_tokens.weight\":"
					   "\"model-00009-of-00003.safetensors\"," REST "}}",
				     &err),
		     SMELT_ENOTFOUND);
	CHECK_STR_CONTAINS(err.msg, "model-00009-of-00003.safetensors: No such file");
	/* Listed in the wrong shard: missing there, present (unlisted) elsewhere. */
	CHECK_EQ_INT(open_with_index("i4", "{\"weight_map\":{\"model.embed_tokens.weight\":" S2
					   "," REST "}}",
				     &err),
		     SMELT_EFORMAT);
	CHECK_STR_CONTAINS(err.msg, "puts tensor 'model.embed_tokens.weight' in "
				    "model-00002-of-00003.safetensors, which does not hold it");
	/* A tensor of a shard missing from weight_map. */
	CHECK_EQ_INT(open_with_index("i5", "{\"weight_map\":{" REST "}}", &err), SMELT_EFORMAT);
	CHECK_STR_CONTAINS(err.msg, "missing from weight_map (first: 'model.embed_tokens.weight')");
	CHECK_EQ_INT(open_with_index("i6", "{\"weight_map\":{\"model.embed_tokens.weight\":" S1
					   ",\"model.embed_tokens.weight\":" S1 "," REST "}}",
				     &err),
		     SMELT_EFORMAT);
	CHECK_STR_CONTAINS(err.msg, "lists tensor 'model.embed_tokens.weight' twice");
	CHECK_EQ_INT(open_with_index("i7", "{\"weight_map\":[]}", &err), SMELT_EFORMAT);
	CHECK_STR_CONTAINS(err.msg, "no \"weight_map\" object");
	CHECK_EQ_INT(open_with_index("i8", "{\"weight_map\":{} trailing", &err), SMELT_EFORMAT);
	CHECK_STR_CONTAINS(err.msg, "model.safetensors.index.json: invalid JSON");
	CHECK_EQ_INT(open_with_index("i9", "{\"weight_map\":{\"model.embed_tokens.weight\":7}}",
				     &err),
		     SMELT_EFORMAT);
	CHECK_STR_CONTAINS(err.msg, "is not a file name");
}

TEST(tensor_in_two_shards)
{
	static const char *dup[] = {"model.embed_tokens.weight", "extra"};
	struct smelt_err err;
	struct smelt_ckpt c;

	make_dir("two");
	write_sharded(tmp_path("two"));
	write_shard(tmp_path("two/model-00003-of-00003.safetensors"), dup, 2, 0);
	write_text(tmp_path("two/model.safetensors.index.json"),
		   "{\"weight_map\":{\"model.embed_tokens.weight\":" S1
		   ",\"model.layers.0.mlp.up_proj.weight\":" S1
		   ",\"model.layers.10.mlp.up_proj.weight\":" S2
		   ",\"model.layers.2.mlp.up_proj.weight\":" S2 ",\"extra\":" S3 "}}");
	CHECK_EQ_INT(smelt_ckpt_open(&c, tmp_path("two"), &err), SMELT_EFORMAT);
	CHECK_STR_CONTAINS(err.msg, "tensor 'model.embed_tokens.weight' is in both "
				    "model-00001-of-00003.safetensors and "
				    "model-00003-of-00003.safetensors");
}

TEST(folder_layouts_and_config)
{
	static const char *names[] = {"model.layers.0.self_attn.q_proj.weight",
				      "model.embed_tokens.weight"};
	struct smelt_ckpt c;
	struct smelt_err err;

	/* Plain folder with config.json. */
	make_dir("plain");
	write_shard(tmp_path("plain/model.safetensors"), names, 2, 0);
	write_text(tmp_path("plain/config.json"),
		   "{\"architectures\":[\"LlamaForCausalLM\"],\"model_type\":\"llama\","
		   "\"num_hidden_layers\":1,\"hidden_size\":3,\"intermediate_size\":8,"
		   "\"vocab_size\":2,\"tie_word_embeddings\":true,\"torch_dtype\":\"float32\"}\n");
	CHECK_EQ_INT(smelt_ckpt_open(&c, tmp_path("plain"), &err), 0);
	CHECK(!c.sharded && c.n_shards == 1);
	CHECK(c.config.present);
	CHECK(strcmp(c.config.architecture, "LlamaForCausalLM") == 0);
	CHECK(strcmp(c.config.model_type, "llama") == 0);
	CHECK_EQ_INT(c.config.num_layers, 1);
	CHECK(strcmp(c.config.layers_key, "num_hidden_layers") == 0);
	CHECK_EQ_INT(c.config.hidden_size, 3);
	CHECK_EQ_INT(c.config.intermediate_size, 8);
	CHECK_EQ_INT(c.config.vocab_size, 2);
	CHECK(c.config.tie_word_embeddings);
	CHECK(strcmp(c.config.torch_dtype, "float32") == 0);
	CHECK(c.config.json && strstr(c.config.json, "LlamaForCausalLM"));
	CHECK(strcmp(c.tensors[0].name, "model.embed_tokens.weight") == 0);
	smelt_ckpt_close(&c);

	/* A single file path; config.json beside it is read too. */
	CHECK_EQ_INT(smelt_ckpt_open(&c, tmp_path("plain/model.safetensors"), &err), 0);
	CHECK(c.n_tensors == 2 && c.config.present);
	smelt_ckpt_close(&c);

	/* gpt2-style keys and text_config fallback. */
	write_text(tmp_path("plain/config.json"),
		   "{\"n_layer\":4,\"n_embd\":64,\"text_config\":{\"vocab_size\":9}}");
	CHECK_EQ_INT(smelt_ckpt_open(&c, tmp_path("plain"), &err), 0);
	CHECK_EQ_INT(c.config.num_layers, 4);
	CHECK(strcmp(c.config.layers_key, "n_layer") == 0);
	CHECK_EQ_INT(c.config.hidden_size, 64);
	CHECK_EQ_INT(c.config.vocab_size, 9);
	CHECK_EQ_INT(c.config.intermediate_size, -1);
	CHECK(!c.config.tie_word_embeddings);
	smelt_ckpt_close(&c);

	/* Invalid config.json is an error naming the file. */
	write_text(tmp_path("plain/config.json"), "{\"n_layer\": 4,");
	CHECK_EQ_INT(smelt_ckpt_open(&c, tmp_path("plain"), &err), SMELT_EFORMAT);
	CHECK_STR_CONTAINS(err.msg, "plain/config.json: invalid JSON");
	write_text(tmp_path("plain/config.json"), "{\"n_layer\": 4.5}");
	CHECK_EQ_INT(smelt_ckpt_open(&c, tmp_path("plain"), &err), SMELT_EFORMAT);
	CHECK_STR_CONTAINS(err.msg, "config.json: n_layer is not a non-negative integer");

	/* One differently named .safetensors file; two are ambiguous. */
	make_dir("other");
	write_shard(tmp_path("other/weights.safetensors"), names, 2, 0);
	CHECK_EQ_INT(smelt_ckpt_open(&c, tmp_path("other"), &err), 0);
	CHECK(strcmp(c.shard_names[0], "weights.safetensors") == 0);
	smelt_ckpt_close(&c);
	write_shard(tmp_path("other/more.safetensors"), names, 1, 0);
	CHECK_EQ_INT(smelt_ckpt_open(&c, tmp_path("other"), &err), SMELT_EFORMAT);
	CHECK_STR_CONTAINS(err.msg, "2 .safetensors files but no model.safetensors.index.json");

	/* Empty folder, missing path. */
	make_dir("empty");
	CHECK_EQ_INT(smelt_ckpt_open(&c, tmp_path("empty"), &err), SMELT_ENOTFOUND);
	CHECK_STR_CONTAINS(err.msg, "empty: no model.safetensors");
	CHECK_EQ_INT(smelt_ckpt_open(&c, tmp_path("missing"), &err), SMELT_ENOTFOUND);
	CHECK_STR_CONTAINS(err.msg, "missing: No such file or directory");
}

TEST(cache_snapshot_symlinks)
{
	static const char *names[] = {"w"};
	struct smelt_ckpt c;
	struct smelt_err err;

	make_dir("hub/models--o--m/blobs");
	make_dir("hub/models--o--m/snapshots/0123abcd");
	write_shard(tmp_path("hub/models--o--m/blobs/e3b0c442"), names, 1, 5);
	CHECK(symlink("../../blobs/e3b0c442",
		      tmp_path("hub/models--o--m/snapshots/0123abcd/model.safetensors")) == 0);
	CHECK_EQ_INT(smelt_ckpt_open(&c, tmp_path("hub/models--o--m/snapshots/0123abcd"), &err), 0);
	CHECK_EQ_INT(c.n_tensors, 1);
	smelt_ckpt_close(&c);
}

/* Tensors at odd addresses, written by hand (a 1-byte tensor first). */
TEST(read_rows_misaligned)
{
	const char *json = "{\"u\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
			   "\"b\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[1,9]},"
			   "\"h\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[9,17]},"
			   "\"d\":{\"dtype\":\"F64\",\"shape\":[2,1],\"data_offsets\":[17,33]},"
			   "\"f\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[33,49]},"
			   "\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[49,53]}}";
	char hdr[1024];
	uint8_t data[53];
	float vals[4] = {1.5f, -2.0f, 3.25f, 0.5f}, out[4];
	double dv[2] = {7.0, -8.5};
	size_t hl;
	FILE *f;
	struct smelt_ckpt c;
	struct smelt_err err;
	const struct smelt_ckpt_tensor *t;
	uint64_t rows, cols;

	snprintf(hdr, sizeof(hdr), "%s", json);
	hl = strlen(hdr);
	if (hl % 2 == 1) /* data starts even, so every float tensor is at an odd address */
		hdr[hl++] = ' ';
	data[0] = 9;
	smelt_from_f32(SMELT_BF16, vals, data + 1, 4);
	smelt_from_f32(SMELT_F16, vals, data + 9, 4);
	memcpy(data + 17, dv, 16);
	memcpy(data + 33, vals, 16);
	memcpy(data + 49, &vals[2], 4);
	make_dir("odd");
	f = fopen(tmp_path("odd/model.safetensors"), "wb");
	for (int i = 0; i < 8; i++)
		fputc((int)((uint64_t)hl >> (8 * i)) & 0xff, f);
	fwrite(hdr, 1, hl, f);
	fwrite(data, 1, sizeof(data), f);
	fclose(f);
	CHECK_EQ_INT(smelt_ckpt_open(&c, tmp_path("odd"), &err), 0);
	CHECK_MSG(1, "%s", err.msg);
	if (c.n_tensors != 6)
		return;
	t = smelt_ckpt_find(&c, "b");
	CHECK(((uintptr_t)smelt_ckpt_bytes(&c, t)) % 2 == 1);
	CHECK_EQ_INT(smelt_ckpt_read_rows(&c, t, 1, 1, out, &err), 0);
	CHECK(out[0] == 3.25f && out[1] == 0.5f);
	t = smelt_ckpt_find(&c, "h");
	CHECK_EQ_INT(smelt_ckpt_read_rows(&c, t, 0, 2, out, &err), 0);
	CHECK(out[0] == 1.5f && out[3] == 0.5f);
	t = smelt_ckpt_find(&c, "d");
	CHECK_EQ_INT(smelt_ckpt_read_rows(&c, t, 1, 1, out, &err), 0);
	CHECK(out[0] == -8.5f);
	t = smelt_ckpt_find(&c, "f");
	CHECK_EQ_INT(smelt_ckpt_read_rows(&c, t, 0, 2, out, &err), 0);
	CHECK(out[1] == -2.0f && out[2] == 3.25f);
	t = smelt_ckpt_find(&c, "s");
	smelt_tensor_rows_cols(t->st->ndim, t->st->shape, &rows, &cols);
	CHECK(rows == 1 && cols == 1);
	CHECK_EQ_INT(smelt_ckpt_read_rows(&c, t, 0, 1, out, &err), 0);
	CHECK(out[0] == 3.25f);
	t = smelt_ckpt_find(&c, "u");
	CHECK_EQ_INT(smelt_ckpt_read_rows(&c, t, 0, 1, out, &err), SMELT_EMISMATCH);
	CHECK_STR_CONTAINS(err.msg, "tensor 'u' is U8, not a float dtype");
	CHECK_EQ_INT(c.main_dtype, SMELT_F32);
	smelt_ckpt_close(&c);
}

/* A shard cut short after it was opened (a download or copy still running
 * into it) gives a message naming the file and tensor, not SIGBUS. */
TEST(read_rows_file_truncated_after_open)
{
	const char *names[] = {"a", "b"};
	struct smelt_ckpt c;
	struct smelt_err err;
	const struct smelt_ckpt_tensor *t;
	float out[6];

	make_dir("cut");
	write_shard(tmp_path("cut/model.safetensors"), names, 2, 1.0f);
	CHECK_EQ_INT(smelt_ckpt_open(&c, tmp_path("cut"), &err), 0);
	t = smelt_ckpt_find(&c, "b");
	CHECK(t != NULL);
	if (!t)
		return;
	CHECK_EQ_INT(smelt_ckpt_read_rows(&c, t, 0, 2, out, &err), 0);
	CHECK(out[0] == 11.0f && out[5] == 16.0f);
	CHECK(truncate(tmp_path("cut/model.safetensors"),
		       (off_t)(8 + c.shards[0].header_len + t->st->begin + 4)) == 0);
	CHECK_EQ_INT(smelt_ckpt_read_rows(&c, t, 0, 2, out, &err), SMELT_EIO);
	CHECK_STR_CONTAINS(err.msg, "model.safetensors: tensor 'b': read failed: the file is shorter");
	smelt_ckpt_close(&c);
}

TEST(rows_cols)
{
	uint64_t shape[3] = {4, 5, 6}, r, c;

	smelt_tensor_rows_cols(3, shape, &r, &c);
	CHECK(r == 4 && c == 30);
	smelt_tensor_rows_cols(1, shape, &r, &c);
	CHECK(r == 1 && c == 4);
	smelt_tensor_rows_cols(0, shape, &r, &c);
	CHECK(r == 1 && c == 1);
}

int main(void)
{
	RUN(layer_index);
	RUN(tensor_kinds);
	RUN(parse_size);
	RUN(shard_split);
	RUN(shard_names);
	RUN(index_file_format);
	RUN(sharded_checkpoint);
	RUN(index_validation);
	RUN(tensor_in_two_shards);
	RUN(folder_layouts_and_config);
	RUN(cache_snapshot_symlinks);
	RUN(read_rows_misaligned);
	RUN(read_rows_file_truncated_after_open);
	RUN(rows_cols);
	return check_summary();
}

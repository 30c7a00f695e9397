/*
 * ckpt.c: checkpoints (a model folder, a sharded index, or one file),
 * config.json, reading rows as f32, and the tensor naming conventions.
 */
#include "smelt/ckpt.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nameidx.h"

#define INDEX_NAME "model.safetensors.index.json"
#define SINGLE_NAME "model.safetensors"
#define JSON_FILE_MAX (64u << 20) /* index.json and config.json size cap */

/* ---- naming conventions ---- */

int smelt_layer_index(const char *name, size_t *prefix_len, size_t *suffix_off)
{
	static const char *const keys[] = {"layers", "h", "blocks", "layer", "block"};
	const char *p = name;

	while (*p) {
		const char *end = strchr(p, '.');
		size_t len;

		if (!end)
			break;
		len = (size_t)(end - p);
		for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
			const char *q = end + 1;
			long v = 0;

			if (strlen(keys[k]) != len || memcmp(p, keys[k], len) != 0)
				continue;
			while (*q >= '0' && *q <= '9' && v <= INT_MAX)
				v = v * 10 + (*q++ - '0');
			if (q == end + 1 || (*q != '.' && *q != '\0') || v > INT_MAX)
				continue;
			if (prefix_len)
				*prefix_len = (size_t)(end + 1 - name);
			if (suffix_off)
				*suffix_off = (size_t)(q - name);
			return (int)v;
		}
		p = end + 1;
	}
	return -1;
}

/* The module segment: the one before a trailing weight/bias/scale, or the
 * last one. Copied into buf. */
static const char *module_segment(const char *name, char *buf, size_t size)
{
	const char *last = strrchr(name, '.'), *start, *end;

	if (last && (strcmp(last, ".weight") == 0 || strcmp(last, ".bias") == 0 ||
		     strcmp(last, ".scale") == 0)) {
		end = last;
		start = end;
		while (start > name && start[-1] != '.')
			start--;
	} else {
		start = last ? last + 1 : name;
		end = start + strlen(start);
	}
	snprintf(buf, size, "%.*s", (int)(end - start), start);
	return buf;
}

static bool in_list(const char *s, const char *const *list)
{
	for (; *list; list++)
		if (strcmp(s, *list) == 0)
			return true;
	return false;
}

bool smelt_is_token_embedding(const char *name)
{
	static const char *const mods[] = {"embed_tokens",    "wte",          "tok_embeddings",
					   "word_embeddings", "embed_in",     "embeddings",
					   "token_embedding", "tok_emb",      "token_embd",
					   "word_embedding",  "embed",        NULL};
	char mod[128];

	if (strcmp(name, "shared.weight") == 0) /* T5 */
		return true;
	return in_list(module_segment(name, mod, sizeof(mod)), mods);
}

enum smelt_kind smelt_tensor_kind(const char *name)
{
	static const char *const q[] = {"q_proj", "wq", "query", "q", NULL};
	static const char *const k[] = {"k_proj", "wk", "key", "k", NULL};
	static const char *const v[] = {"v_proj", "wv", "value", "v", NULL};
	static const char *const o[] = {"o_proj", "wo", "out_proj", NULL};
	static const char *const gate[] = {"gate_proj", "w1", NULL};
	static const char *const up[] = {"up_proj", "w3", NULL};
	static const char *const down[] = {"down_proj", "w2", NULL};
	static const char *const head[] = {"lm_head", "embed_out", NULL};
	int layer = smelt_layer_index(name, NULL, NULL);
	char mod[128];
	bool normish;

	module_segment(name, mod, sizeof(mod));
	if (in_list(mod, head) || (layer < 0 && strcmp(name, "output.weight") == 0))
		return SMELT_KIND_HEAD;
	if (smelt_is_token_embedding(name))
		return SMELT_KIND_EMBED;
	normish = strstr(mod, "norm") != NULL || strncmp(mod, "ln_", 3) == 0 ||
		  strcmp(mod, "ln") == 0;
	if (layer < 0) {
		if (normish && !strstr(mod, "embed"))
			return SMELT_KIND_FINAL_NORM;
		return SMELT_KIND_OTHER;
	}
	if (in_list(mod, q))
		return SMELT_KIND_Q;
	if (in_list(mod, k))
		return SMELT_KIND_K;
	if (in_list(mod, v))
		return SMELT_KIND_V;
	if (in_list(mod, o))
		return SMELT_KIND_O;
	if (in_list(mod, gate))
		return SMELT_KIND_GATE;
	if (in_list(mod, up))
		return SMELT_KIND_UP;
	if (in_list(mod, down))
		return SMELT_KIND_DOWN;
	if (normish)
		return SMELT_KIND_NORM;
	return SMELT_KIND_OTHER;
}

const char *smelt_kind_name(enum smelt_kind k)
{
	static const char *const names[SMELT_KIND_COUNT] = {
		"q", "k", "v", "o", "gate", "up", "down", "norm", "embed", "head", "final_norm", "other"};

	return (unsigned)k < SMELT_KIND_COUNT ? names[k] : "other";
}

void smelt_tensor_rows_cols(int ndim, const uint64_t *shape, uint64_t *rows, uint64_t *cols)
{
	uint64_t c = 1;

	if (ndim <= 0) {
		*rows = 1;
		*cols = 1;
		return;
	}
	if (ndim == 1) {
		*rows = 1;
		*cols = shape[0];
		return;
	}
	for (int i = 1; i < ndim; i++)
		c *= shape[i];
	*rows = shape[0];
	*cols = c;
}

/* ---- small file helpers ---- */

static char *join(const char *dir, const char *name)
{
	size_t l = strlen(dir) + strlen(name) + 2;
	char *p = malloc(l);

	if (p)
		snprintf(p, l, "%s/%s", dir, name);
	return p;
}

static bool is_file(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Read a whole (small) text file. */
static int read_text(const char *path, char **out, size_t *len, struct smelt_err *err)
{
	struct stat st;
	char *buf = NULL;
	size_t got = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return smelt_fail(err, errno == ENOENT ? SMELT_ENOTFOUND : SMELT_EIO, "%s: %s", path,
				  strerror(errno));
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return smelt_fail(err, SMELT_EIO, "%s: not a regular file", path);
	}
	if ((uint64_t)st.st_size > JSON_FILE_MAX) {
		close(fd);
		return smelt_fail(err, SMELT_EFORMAT, "%s: %lld bytes is too large for a JSON file",
				  path, (long long)st.st_size);
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		close(fd);
		return smelt_fail(err, SMELT_ENOMEM, "%s: out of memory", path);
	}
	while (got < (size_t)st.st_size) {
		ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	buf[got] = '\0';
	*out = buf;
	*len = got;
	return 0;
}

/* Parse JSON text strictly enough: whole document, nothing after it. */
static cJSON *parse_json_text(const char *path, const char *text, size_t len,
			      struct smelt_err *err)
{
	const char *end = NULL;
	cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
	size_t at;

	if (root) {
		while (end && (size_t)(end - text) < len &&
		       (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r'))
			end++;
		if ((size_t)(end - text) == len)
			return root;
		cJSON_Delete(root);
		smelt_fail(err, SMELT_EFORMAT, "%s: invalid JSON: trailing characters at byte %zu",
			   path, (size_t)(end - text));
		return NULL;
	}
	at = end && end >= text ? (size_t)(end - text) : 0;
	smelt_fail(err, SMELT_EFORMAT, "%s: invalid JSON near byte %zu", path, at);
	return NULL;
}

/* ---- config.json ---- */

static const cJSON *config_item(const cJSON *root, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
	const cJSON *text;

	if (v && !cJSON_IsNull(v))
		return v;
	/* Multimodal configs keep the language model in text_config. */
	text = cJSON_GetObjectItemCaseSensitive(root, "text_config");
	if (cJSON_IsObject(text)) {
		v = cJSON_GetObjectItemCaseSensitive(text, key);
		if (v && !cJSON_IsNull(v))
			return v;
	}
	return NULL;
}

/* First present key of keys as a non-negative int; -1 if none. */
static int config_int(const cJSON *root, const char *const *keys, const char **which,
		      const char *path, int *out, struct smelt_err *err)
{
	*out = -1;
	for (; *keys; keys++) {
		const cJSON *v = config_item(root, *keys);

		if (!v)
			continue;
		if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > INT_MAX ||
		    v->valuedouble != (double)(int)v->valuedouble)
			return smelt_fail(err, SMELT_EFORMAT,
					  "%s: %s is not a non-negative integer", path, *keys);
		*out = (int)v->valuedouble;
		if (which)
			*which = *keys;
		return 0;
	}
	return 0;
}

static void config_str(const cJSON *root, const char *key, char *dst, size_t size)
{
	const cJSON *v = config_item(root, key);

	if (cJSON_IsString(v))
		snprintf(dst, size, "%s", v->valuestring);
}

static int read_config(struct smelt_ckpt_config *cfg, const char *dir, struct smelt_err *err)
{
	static const char *const layer_keys[] = {"num_hidden_layers", "n_layer", "num_layers",
						 "n_layers", NULL};
	static const char *const hidden_keys[] = {"hidden_size", "n_embd", "d_model", NULL};
	static const char *const inter_keys[] = {"intermediate_size", "n_inner", "d_ff", NULL};
	static const char *const vocab_keys[] = {"vocab_size", NULL};
	char *path = join(dir, "config.json"), *text = NULL;
	const char *which = NULL;
	const cJSON *v;
	cJSON *root = NULL;
	size_t len;
	int rc;

	cfg->num_layers = cfg->hidden_size = cfg->intermediate_size = cfg->vocab_size = -1;
	if (!path)
		return smelt_fail(err, SMELT_ENOMEM, "out of memory");
	if (!is_file(path)) {
		free(path);
		return 0; /* config.json is optional */
	}
	rc = read_text(path, &text, &len, err);
	if (rc)
		goto out;
	root = parse_json_text(path, text, len, err);
	if (!root) {
		rc = SMELT_EFORMAT;
		goto out;
	}
	if (!cJSON_IsObject(root)) {
		rc = smelt_fail(err, SMELT_EFORMAT, "%s: not a JSON object", path);
		goto out;
	}
	v = cJSON_GetObjectItemCaseSensitive(root, "architectures");
	if (cJSON_IsArray(v) && cJSON_IsString(v->child))
		snprintf(cfg->architecture, sizeof(cfg->architecture), "%s", v->child->valuestring);
	config_str(root, "model_type", cfg->model_type, sizeof(cfg->model_type));
	config_str(root, "torch_dtype", cfg->torch_dtype, sizeof(cfg->torch_dtype));
	if (!cfg->torch_dtype[0])
		config_str(root, "dtype", cfg->torch_dtype, sizeof(cfg->torch_dtype));
	rc = config_int(root, layer_keys, &which, path, &cfg->num_layers, err);
	if (!rc && which)
		snprintf(cfg->layers_key, sizeof(cfg->layers_key), "%s", which);
	if (!rc)
		rc = config_int(root, hidden_keys, NULL, path, &cfg->hidden_size, err);
	if (!rc)
		rc = config_int(root, inter_keys, NULL, path, &cfg->intermediate_size, err);
	if (!rc)
		rc = config_int(root, vocab_keys, NULL, path, &cfg->vocab_size, err);
	if (rc)
		goto out;
	v = config_item(root, "tie_word_embeddings");
	cfg->tie_word_embeddings = cJSON_IsTrue(v);
	cfg->present = true;
	cfg->json = text;
	text = NULL;
out:
	cJSON_Delete(root);
	free(text);
	free(path);
	return rc;
}

/* ---- locating the weights ---- */

struct ckpt_priv {
	struct smelt_nameidx index; /* tensor name -> position in tensors[] */
};

static int add_shard_name(struct smelt_ckpt *c, const char *name)
{
	char **p = realloc(c->shard_names, (c->n_shards + 1) * sizeof(*p));

	if (!p)
		return -1;
	c->shard_names = p;
	p[c->n_shards] = strdup(name);
	if (!p[c->n_shards])
		return -1;
	c->n_shards++;
	return 0;
}

/* A shard name from weight_map must be a plain file in the model folder. */
static bool plain_file_name(const char *s)
{
	return s[0] && strcmp(s, ".") != 0 && strcmp(s, "..") != 0 && !strchr(s, '/') &&
	       !strchr(s, '\\');
}

/* Find the one *.safetensors file in dir when the standard names are absent. */
static int find_single(struct smelt_ckpt *c, const char *dir, struct smelt_err *err)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char found[NAME_MAX + 1] = "";
	int count = 0;

	if (!d)
		return smelt_fail(err, SMELT_EIO, "%s: %s", c->display, strerror(errno));
	while ((e = readdir(d))) {
		size_t l = strlen(e->d_name);
		char *p;

		if (l <= 12 || strcmp(e->d_name + l - 12, ".safetensors") != 0)
			continue;
		p = join(dir, e->d_name);
		if (p && is_file(p)) {
			if (!count)
				snprintf(found, sizeof(found), "%s", e->d_name);
			count++;
		}
		free(p);
	}
	closedir(d);
	if (count == 0)
		return smelt_fail(err, SMELT_ENOTFOUND,
				  "%s: no " SINGLE_NAME ", " INDEX_NAME
				  " or other .safetensors file in this folder",
				  c->display);
	if (count > 1)
		return smelt_fail(err, SMELT_EFORMAT,
				  "%s: %d .safetensors files but no " INDEX_NAME
				  " saying how they fit together",
				  c->display, count);
	return add_shard_name(c, found) ? smelt_fail(err, SMELT_ENOMEM, "out of memory") : 0;
}

struct index_map {
	cJSON *root;
	const cJSON *weight_map;
	size_t n;
	struct smelt_nameidx names; /* tensor -> shard index */
};

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int read_index(struct smelt_ckpt *c, const char *index_path, struct index_map *m,
		      struct smelt_err *err)
{
	char *text = NULL, nb[256];
	const cJSON *e;
	size_t len;
	int rc;

	rc = read_text(index_path, &text, &len, err);
	if (rc)
		return rc;
	m->root = parse_json_text(index_path, text, len, err);
	free(text);
	if (!m->root)
		return SMELT_EFORMAT;
	m->weight_map = cJSON_GetObjectItemCaseSensitive(m->root, "weight_map");
	if (!cJSON_IsObject(m->weight_map))
		return smelt_fail(err, SMELT_EFORMAT, "%s: no \"weight_map\" object", index_path);
	cJSON_ArrayForEach(e, m->weight_map)
		m->n++;
	if (smelt_nameidx_init(&m->names, m->n))
		return smelt_fail(err, SMELT_ENOMEM, "out of memory");
	/* Shard names: validate, collect distinct ones, in sorted order. */
	cJSON_ArrayForEach(e, m->weight_map)
	{
		smelt_st_safe_name(e->string, nb, sizeof(nb));
		if (!cJSON_IsString(e))
			return smelt_fail(err, SMELT_EFORMAT,
					  "%s: weight_map entry '%s' is not a file name",
					  index_path, nb);
		if (!plain_file_name(e->valuestring)) {
			char fb[256];

			return smelt_fail(err, SMELT_EFORMAT,
					  "%s: weight_map entry '%s' names '%s', which is not a "
					  "plain file name in the model folder",
					  index_path, nb,
					  smelt_st_safe_name(e->valuestring, fb, sizeof(fb)));
		}
		if (smelt_nameidx_put(&m->names, e->string, 0, NULL) == 1)
			return smelt_fail(err, SMELT_EFORMAT,
					  "%s: weight_map lists tensor '%s' twice", index_path, nb);
		{
			bool seen = false;

			for (size_t i = 0; i < c->n_shards && !seen; i++)
				seen = strcmp(c->shard_names[i], e->valuestring) == 0;
			if (!seen && add_shard_name(c, e->valuestring))
				return smelt_fail(err, SMELT_ENOMEM, "out of memory");
		}
	}
	if (!c->n_shards)
		return smelt_fail(err, SMELT_EFORMAT, "%s: weight_map is empty", index_path);
	qsort(c->shard_names, c->n_shards, sizeof(*c->shard_names), cmp_str);
	/* Now point each tensor at its shard index. */
	smelt_nameidx_free(&m->names);
	if (smelt_nameidx_init(&m->names, m->n))
		return smelt_fail(err, SMELT_ENOMEM, "out of memory");
	cJSON_ArrayForEach(e, m->weight_map)
	{
		char **hit = bsearch(&e->valuestring, c->shard_names, c->n_shards,
				     sizeof(*c->shard_names), cmp_str);

		smelt_nameidx_put(&m->names, e->string, (size_t)(hit - c->shard_names), NULL);
	}
	return 0;
}

/* Every weight_map entry is in its shard; every shard tensor is listed for
 * that shard (so no tensor sits in two shards). */
static int check_index(const struct smelt_ckpt *c, const char *index_path,
		       const struct index_map *m, struct smelt_err *err)
{
	const cJSON *e;
	char nb[256];

	cJSON_ArrayForEach(e, m->weight_map)
	{
		long long s = smelt_nameidx_get(&m->names, e->string);

		if (!smelt_st_find(&c->shards[s], e->string))
			return smelt_fail(err, SMELT_EFORMAT,
					  "%s: weight_map puts tensor '%s' in %s, which does not "
					  "hold it",
					  index_path, smelt_st_safe_name(e->string, nb, sizeof(nb)),
					  c->shard_names[s]);
	}
	for (size_t s = 0; s < c->n_shards; s++) {
		size_t missing = 0;
		const char *first = NULL;

		for (size_t i = 0; i < c->shards[s].n_tensors; i++) {
			const char *name = c->shards[s].tensors[i].name;
			long long where = smelt_nameidx_get(&m->names, name);

			if (where >= 0 && (size_t)where != s)
				return smelt_fail(err, SMELT_EFORMAT,
						  "%s: tensor '%s' is in both %s and %s",
						  index_path,
						  smelt_st_safe_name(name, nb, sizeof(nb)),
						  c->shard_names[where], c->shard_names[s]);
			if (where < 0 && !missing++)
				first = name;
		}
		if (missing)
			return smelt_fail(err, SMELT_EFORMAT,
					  "%s: %zu tensor(s) of %s are missing from weight_map "
					  "(first: '%s'), so the index is inconsistent",
					  index_path, missing, c->shard_names[s],
					  smelt_st_safe_name(first, nb, sizeof(nb)));
	}
	return 0;
}

/* ---- the tensor table ---- */

struct sort_item {
	struct smelt_ckpt_tensor t;
	int group; /* 0: no layer, 1: layered, 2: final norm and head */
	int sub;   /* within group 2: final norm before head */
};

static int cmp_item(const void *a, const void *b)
{
	const struct sort_item *x = a, *y = b;

	if (x->group != y->group)
		return x->group - y->group;
	if (x->t.layer != y->t.layer)
		return x->t.layer < y->t.layer ? -1 : 1;
	if (x->sub != y->sub)
		return x->sub - y->sub;
	return strcmp(x->t.name, y->t.name);
}

static int build_table(struct smelt_ckpt *c, struct smelt_err *err)
{
	struct ckpt_priv *priv = calloc(1, sizeof(*priv));
	struct sort_item *items = NULL;
	uint64_t by_dtype[SMELT_DTYPE_COUNT] = {0};
	size_t n = 0, k = 0;
	int rc = 0;

	c->priv = priv;
	for (size_t s = 0; s < c->n_shards; s++)
		n += c->shards[s].n_tensors;
	items = calloc(n ? n : 1, sizeof(*items));
	c->tensors = calloc(n ? n : 1, sizeof(*c->tensors));
	if (!priv || !items || !c->tensors || smelt_nameidx_init(&priv->index, n)) {
		rc = smelt_fail(err, SMELT_ENOMEM, "out of memory");
		goto out;
	}
	for (size_t s = 0; s < c->n_shards; s++) {
		for (size_t i = 0; i < c->shards[s].n_tensors; i++) {
			const struct smelt_st_tensor *st = &c->shards[s].tensors[i];
			struct sort_item *it = &items[k++];
			enum smelt_kind kind = smelt_tensor_kind(st->name);

			it->t.name = st->name;
			it->t.shard = (int)s;
			it->t.st = st;
			it->t.layer = smelt_layer_index(st->name, NULL, NULL);
			it->group = it->t.layer >= 0 ? 1
				    : (kind == SMELT_KIND_FINAL_NORM || kind == SMELT_KIND_HEAD) ? 2
				    : 0;
			it->sub = kind == SMELT_KIND_HEAD;
			c->total_bytes += st->end - st->begin;
			by_dtype[st->dtype] += st->end - st->begin;
			if (it->t.layer + 1 > c->num_layers)
				c->num_layers = it->t.layer + 1;
		}
	}
	qsort(items, n, sizeof(*items), cmp_item);
	for (size_t i = 0; i < n; i++) {
		char nb[256];

		c->tensors[i] = items[i].t;
		if (smelt_nameidx_put(&priv->index, c->tensors[i].name, i, NULL) == 1) {
			/* A file never holds a name twice and check_index()
			 * rules out repeats across shards; a cheap guard. */
			rc = smelt_fail(err, SMELT_EFORMAT, "%s: tensor '%s' appears twice",
					c->display,
					smelt_st_safe_name(c->tensors[i].name, nb, sizeof(nb)));
			goto out;
		}
	}
	c->n_tensors = n;
	c->main_dtype = SMELT_BF16;
	for (int d = 0, best = -1; d < SMELT_DTYPE_COUNT; d++) {
		if (by_dtype[d] && (best < 0 || by_dtype[d] > by_dtype[best])) {
			best = d;
			c->main_dtype = (enum smelt_dtype)d;
		}
	}
out:
	free(items);
	return rc;
}

static int open_shards(struct smelt_ckpt *c, const char *dir, struct smelt_err *err)
{
	c->shards = calloc(c->n_shards, sizeof(*c->shards));
	if (!c->shards)
		return smelt_fail(err, SMELT_ENOMEM, "out of memory");
	for (size_t i = 0; i < c->n_shards; i++)
		c->shards[i].fd = -1;
	for (size_t i = 0; i < c->n_shards; i++) {
		char *p = join(dir, c->shard_names[i]);
		int rc;

		if (!p)
			return smelt_fail(err, SMELT_ENOMEM, "out of memory");
		rc = smelt_st_open(&c->shards[i], p, err);
		free(p);
		if (rc)
			return rc;
	}
	return 0;
}

int smelt_ckpt_open(struct smelt_ckpt *c, const char *path, struct smelt_err *err)
{
	struct index_map m = {0};
	struct stat st;
	char *dir = NULL, *index_path = NULL, *single = NULL;
	int rc = 0;

	memset(c, 0, sizeof(*c));
	c->config.num_layers = c->config.hidden_size = -1;
	c->config.intermediate_size = c->config.vocab_size = -1;
	c->display = strdup(path);
	if (!c->display)
		return smelt_fail(err, SMELT_ENOMEM, "out of memory");
	if (stat(path, &st) != 0) {
		rc = smelt_fail(err, errno == ENOENT ? SMELT_ENOTFOUND : SMELT_EIO, "%s: %s", path,
				strerror(errno));
		goto fail;
	}
	if (S_ISDIR(st.st_mode)) {
		dir = strdup(path);
		if (!dir)
			goto nomem;
		index_path = join(dir, INDEX_NAME);
		single = join(dir, SINGLE_NAME);
		if (!index_path || !single)
			goto nomem;
		/* transformers' order: the single file first, then the index. */
		if (is_file(single)) {
			free(index_path);
			index_path = NULL;
			if (add_shard_name(c, SINGLE_NAME))
				goto nomem;
		} else if (is_file(index_path)) {
			c->sharded = true;
		} else {
			free(index_path);
			index_path = NULL;
			rc = find_single(c, dir, err);
			if (rc)
				goto fail;
		}
	} else if (S_ISREG(st.st_mode)) {
		const char *slash = strrchr(path, '/');
		const char *base = slash ? slash + 1 : path;
		size_t bl = strlen(base);

		dir = slash ? strndup(path, (size_t)(slash - path) + (slash == path)) : strdup(".");
		if (!dir)
			goto nomem;
		if (bl > 11 && strcmp(base + bl - 11, ".index.json") == 0) {
			index_path = strdup(path);
			if (!index_path)
				goto nomem;
			c->sharded = true;
		} else if (add_shard_name(c, base)) {
			goto nomem;
		}
	} else {
		rc = smelt_fail(err, SMELT_EINVAL, "%s: not a folder or a file", path);
		goto fail;
	}
	c->path = realpath(dir, NULL);
	if (!c->path) {
		rc = smelt_fail(err, SMELT_EIO, "%s: %s", dir, strerror(errno));
		goto fail;
	}
	if (c->sharded) {
		rc = read_index(c, index_path, &m, err);
		if (rc)
			goto fail;
	}
	rc = open_shards(c, dir, err);
	if (rc)
		goto fail;
	if (c->sharded) {
		rc = check_index(c, index_path, &m, err);
		if (rc)
			goto fail;
	}
	rc = build_table(c, err);
	if (rc)
		goto fail;
	rc = read_config(&c->config, dir, err);
	if (rc)
		goto fail;
	goto out;
nomem:
	rc = smelt_fail(err, SMELT_ENOMEM, "%s: out of memory", path);
fail:
	smelt_ckpt_close(c);
out:
	cJSON_Delete(m.root);
	smelt_nameidx_free(&m.names);
	free(dir);
	free(index_path);
	free(single);
	return rc;
}

void smelt_ckpt_close(struct smelt_ckpt *c)
{
	struct ckpt_priv *priv = c->priv;

	if (c->shards)
		for (size_t i = 0; i < c->n_shards; i++)
			smelt_st_close(&c->shards[i]);
	free(c->shards);
	if (c->shard_names)
		for (size_t i = 0; i < c->n_shards; i++)
			free(c->shard_names[i]);
	free(c->shard_names);
	if (priv) {
		smelt_nameidx_free(&priv->index);
		free(priv);
	}
	free(c->tensors);
	free(c->config.json);
	free(c->path);
	free(c->display);
	memset(c, 0, sizeof(*c));
}

const struct smelt_ckpt_tensor *smelt_ckpt_find(const struct smelt_ckpt *c, const char *name)
{
	const struct ckpt_priv *priv = c->priv;
	long long i;

	if (!priv)
		return NULL;
	i = smelt_nameidx_get(&priv->index, name);
	return i < 0 ? NULL : &c->tensors[i];
}

const uint8_t *smelt_ckpt_bytes(const struct smelt_ckpt *c, const struct smelt_ckpt_tensor *t)
{
	return smelt_st_bytes(&c->shards[t->shard], t->st);
}

/*
 * Tensor data is read with pread, through a small per-thread staging buffer
 * that stays in cache, rather than through the shard's mapping: copying out
 * of the page cache costs less than faulting the mapping in page by page
 * and unmapping it again (6.8 against 5.5 GB/s for bf16 to f32 on one core
 * of the bench machine), threads do not contend on the mapping, and a file
 * truncated under us is an error message instead of SIGBUS.
 */
#define STAGE_BYTES (64u << 10)

static _Thread_local uint8_t stage[STAGE_BYTES] __attribute__((aligned(64)));

static int pread_all(const struct smelt_ckpt *c, const struct smelt_ckpt_tensor *t, void *buf,
		     size_t len, uint64_t off, struct smelt_err *err)
{
	const struct smelt_st_file *f = &c->shards[t->shard];
	char nb[256];

	while (len) {
		ssize_t got = pread(f->fd, buf, len, (off_t)off);

		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			return smelt_fail(err, SMELT_EIO, "%s: tensor '%s': read failed: %s",
					  c->shard_names[t->shard],
					  smelt_st_safe_name(t->name, nb, sizeof(nb)),
					  got < 0 ? strerror(errno)
						  : "the file is shorter than its header says "
						    "(changed since it was opened?)");
		buf = (uint8_t *)buf + got;
		len -= (size_t)got;
		off += (uint64_t)got;
	}
	return 0;
}

/* n elements starting byte_off bytes into the tensor's data, as f32. */
static int read_converted(const struct smelt_ckpt *c, const struct smelt_ckpt_tensor *t,
			  uint64_t byte_off, size_t n, float *dst, struct smelt_err *err)
{
	const struct smelt_st_file *f = &c->shards[t->shard];
	uint64_t off = 8 + f->header_len + t->st->begin + byte_off;
	size_t esz = smelt_dtype_bits(t->st->dtype) / 8;
	size_t per = STAGE_BYTES / esz;

	if (t->st->dtype == SMELT_F32)
		return pread_all(c, t, dst, n * sizeof(float), off, err);
	while (n) {
		size_t m = n < per ? n : per;

		if (pread_all(c, t, stage, m * esz, off, err) != 0)
			return err->code;
		smelt_to_f32(t->st->dtype, stage, dst, m);
		dst += m;
		off += (uint64_t)(m * esz);
		n -= m;
	}
	return 0;
}

/* Check rows [row0, row0+nrows) of a float tensor; *off is their byte
 * offset in the tensor's data and *n their element count. */
static int check_rows(const struct smelt_ckpt *c, const struct smelt_ckpt_tensor *t, uint64_t row0,
		      uint64_t nrows, uint64_t *off, size_t *n, struct smelt_err *err)
{
	uint64_t rows, cols;
	char nb[256];

	if (!smelt_dtype_is_float(t->st->dtype))
		return smelt_fail(err, SMELT_EMISMATCH,
				  "%s: tensor '%s' is %s, not a float dtype smelt can compute with",
				  c->shard_names[t->shard],
				  smelt_st_safe_name(t->name, nb, sizeof(nb)),
				  smelt_dtype_name(t->st->dtype));
	smelt_tensor_rows_cols(t->st->ndim, t->st->shape, &rows, &cols);
	if (row0 > rows || nrows > rows - row0)
		return smelt_fail(err, SMELT_EINVAL,
				  "%s: tensor '%s': rows %" PRIu64 "..%" PRIu64
				  " are outside its %" PRIu64 " rows",
				  c->shard_names[t->shard],
				  smelt_st_safe_name(t->name, nb, sizeof(nb)), row0, row0 + nrows,
				  rows);
	*off = row0 * cols * (smelt_dtype_bits(t->st->dtype) / 8);
	*n = (size_t)(nrows * cols);
	return 0;
}

int smelt_ckpt_read_rows(const struct smelt_ckpt *c, const struct smelt_ckpt_tensor *t,
			 uint64_t row0, uint64_t nrows, float *dst, struct smelt_err *err)
{
	uint64_t off;
	size_t n;

	if (check_rows(c, t, row0, nrows, &off, &n, err) != 0)
		return err->code;
	return read_converted(c, t, off, n, dst, err);
}

int smelt_ckpt_read_raw(const struct smelt_ckpt *c, const struct smelt_ckpt_tensor *t,
			uint64_t row0, uint64_t nrows, void *dst, struct smelt_err *err)
{
	const struct smelt_st_file *f = &c->shards[t->shard];
	uint64_t off;
	size_t n;

	if (check_rows(c, t, row0, nrows, &off, &n, err) != 0)
		return err->code;
	return pread_all(c, t, dst, n * (smelt_dtype_bits(t->st->dtype) / 8),
			 8 + f->header_len + t->st->begin + off, err);
}

int smelt_ckpt_read_rows_mapped(const struct smelt_ckpt *c, const struct smelt_ckpt_tensor *t,
				uint64_t row0, uint64_t nrows, float *dst, struct smelt_err *err)
{
	uint64_t off;
	size_t n;

	if (check_rows(c, t, row0, nrows, &off, &n, err) != 0)
		return err->code;
	smelt_to_f32(t->st->dtype, smelt_ckpt_bytes(c, t) + off, dst, n);
	return 0;
}

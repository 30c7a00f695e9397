/*
 * out_files.c: the files a merged model folder holds besides its weights:
 * config.json (the layout model's, with layer count and dtype updated),
 * the tokenizer donor's tokenizer and generation files (with the recipe's
 * chat_template written in), smelt-recipe.json and the README.md model card.
 */
#define _XOPEN_SOURCE 700
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "exec.h"

int smelt_write_text_file(const char *path, const char *text, size_t len, struct smelt_err *err)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	size_t done = 0;

	if (fd < 0)
		return smelt_fail(err, SMELT_EIO, "%s: cannot create: %s", path, strerror(errno));
	while (done < len) {
		ssize_t w = write(fd, text + done, len - done);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			int e = errno;

			close(fd);
			unlink(path);
			return smelt_fail(err, SMELT_EIO, "%s: write failed: %s", path, strerror(e));
		}
		done += (size_t)w;
	}
	if (close(fd) != 0) {
		unlink(path);
		return smelt_fail(err, SMELT_EIO, "%s: write failed: %s", path, strerror(errno));
	}
	return 0;
}

static char *read_small_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long size;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) >= 0 && size < (256l << 20) &&
	    fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)size + 1))) {
		if (fread(buf, 1, (size_t)size, f) != (size_t)size) {
			free(buf);
			buf = NULL;
		} else {
			buf[size] = '\0';
			*len = (size_t)size;
		}
	}
	fclose(f);
	return buf;
}

int smelt_copy_file(const char *src, const char *dst, struct smelt_err *err)
{
	size_t len = 0;
	char *buf = read_small_file(src, &len);
	int rc;

	if (!buf)
		return smelt_fail(err, SMELT_EIO, "%s: cannot read: %s", src, strerror(errno));
	rc = smelt_write_text_file(dst, buf, len, err);
	free(buf);
	return rc;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	remove(path);
	return 0;
}

int smelt_rm_rf(const char *path)
{
	return nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- config.json ---- */

static int layout_model(const struct smelt_plan *p)
{
	return p->base >= 0 ? p->base : p->tensors && p->n_tensors && p->tensors[0].n_inputs
							 ? p->tensors[0].inputs[0].model
							 : 0;
}

int smelt_write_config(const struct smelt_plan *p, const char *dir, struct smelt_err *err)
{
	const struct smelt_ckpt *c = &p->models[layout_model(p)];
	const char *dtype = smelt_dtype_torch_name(p->out_dtype);
	char path[4096];
	cJSON *root;
	char *text;
	int rc;

	if (!c->config.json)
		return 0; /* nothing to carry over; the weights stand alone */
	root = cJSON_ParseWithLength(c->config.json, strlen(c->config.json));
	if (!root || !cJSON_IsObject(root)) {
		cJSON_Delete(root);
		return smelt_fail(err, SMELT_EFORMAT, "%s/config.json: not a JSON object", c->path);
	}
	if (c->config.num_layers >= 0 && p->out_layers != c->config.num_layers) {
		const char *key = c->config.layers_key[0] ? c->config.layers_key : "num_hidden_layers";

		cJSON_ReplaceItemInObjectCaseSensitive(root, key, cJSON_CreateNumber(p->out_layers));
	}
	if (dtype) {
		if (cJSON_GetObjectItemCaseSensitive(root, "torch_dtype"))
			cJSON_ReplaceItemInObjectCaseSensitive(root, "torch_dtype",
							       cJSON_CreateString(dtype));
		else
			cJSON_AddStringToObject(root, "torch_dtype", dtype);
	}
	for (size_t i = 0; i < p->n_tensors; i++)
		if (p->tensors[i].kind == SMELT_KIND_EMBED && c->config.vocab_size > 0 &&
		    p->tensors[i].ndim == 2 && p->tensors[i].shape[0] != (uint64_t)c->config.vocab_size)
			cJSON_ReplaceItemInObjectCaseSensitive(
				root, "vocab_size", cJSON_CreateNumber((double)p->tensors[i].shape[0]));
	text = cJSON_Print(root);
	cJSON_Delete(root);
	if (!text)
		return smelt_fail(err, SMELT_ENOMEM, "out of memory writing config.json");
	snprintf(path, sizeof(path), "%s/config.json", dir);
	{
		size_t len = strlen(text);
		char *withnl = malloc(len + 2);

		if (!withnl) {
			cJSON_free(text);
			return smelt_fail(err, SMELT_ENOMEM, "out of memory");
		}
		memcpy(withnl, text, len);
		withnl[len] = '\n';
		withnl[len + 1] = '\0';
		rc = smelt_write_text_file(path, withnl, len + 1, err);
		free(withnl);
	}
	cJSON_free(text);
	return rc;
}

/* ---- tokenizer ---- */

/* mergekit's list of tokenizer and tag-along files. */
static const char *const tokenizer_files[] = {
	"tokenizer_config.json", "special_tokens_map.json", "tokenizer.json",
	"tokenizer.model",       "added_tokens.json",       "merges.txt",
	"vocab.json",            "vocab.txt",               "chat_template.jinja",
	"chat_template.json",    "generation_config.json",  "preprocessor_config.json",
	"video_preprocessor_config.json",
};

/* ---- chat template ---- */

/*
 * The built-in templates a recipe can name (`chat_template: chatml`), written
 * for smelt from the published prompt formats. Each renders `messages`
 * (role/content pairs) and, with add_generation_prompt, opens the assistant
 * turn, as transformers' apply_chat_template expects.
 */
static const struct {
	const char *name;
	const char *text;
} builtin_templates[] = {
	{"alpaca",
	 "{{ bos_token }}{% for message in messages %}"
	 "{% if message['role'] == 'system' %}{{ message['content'] + '\\n\\n' }}"
	 "{% elif message['role'] == 'user' %}{{ '### Instruction:\\n' + message['content'] + '\\n\\n' }}"
	 "{% elif message['role'] == 'assistant' %}{{ '### Response:\\n' + message['content'] + eos_token + '\\n\\n' }}"
	 "{% endif %}{% endfor %}"
	 "{% if add_generation_prompt %}{{ '### Response:\\n' }}{% endif %}"},
	{"chatml",
	 "{% for message in messages %}"
	 "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
	 "{% endfor %}"
	 "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"},
	{"llama3",
	 "{{ bos_token }}{% for message in messages %}"
	 "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}"
	 "{% endfor %}"
	 "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"},
	{"mistral",
	 "{{ bos_token }}{% set system = namespace(text='') %}"
	 "{% for message in messages %}"
	 "{% if message['role'] == 'system' %}{% set system.text = message['content'] + '\\n\\n' %}"
	 "{% elif message['role'] == 'user' %}{{ '[INST] ' + system.text + message['content'] + ' [/INST]' }}"
	 "{% set system.text = '' %}"
	 "{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'] + eos_token }}"
	 "{% endif %}{% endfor %}"},
	{"exaone",
	 "{% for message in messages %}"
	 "{% if message['role'] == 'system' %}{{ '[|system|]' + message['content'] + '[|endofturn|]\\n' }}"
	 "{% elif message['role'] == 'user' %}{{ '[|user|]' + message['content'] + '\\n' }}"
	 "{% elif message['role'] == 'assistant' %}{{ '[|assistant|]' + message['content'] + '[|endofturn|]\\n' }}"
	 "{% endif %}{% endfor %}"
	 "{% if add_generation_prompt %}{{ '[|assistant|]' }}{% endif %}"},
};

/* A copy of s without leading and trailing white space (Python's str.strip). */
static char *strip_dup(const char *s)
{
	size_t len;
	char *out;

	while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r' || *s == '\f' || *s == '\v')
		s++;
	len = strlen(s);
	while (len && strchr(" \t\n\r\f\v", s[len - 1]))
		len--;
	out = malloc(len + 1);
	if (out) {
		memcpy(out, s, len);
		out[len] = '\0';
	}
	return out;
}

/*
 * The chat template a model folder declares, stripped, or NULL if none (or
 * unreadable): chat_template.jinja wins over tokenizer_config.json, as in
 * transformers; a list of named templates gives its "default" entry.
 */
static char *model_chat_template(const char *dir)
{
	char path[4096];
	size_t len = 0;
	char *text, *out = NULL;
	cJSON *root, *t;

	snprintf(path, sizeof(path), "%s/chat_template.jinja", dir);
	if ((text = read_small_file(path, &len))) {
		out = strip_dup(text);
		free(text);
		return out;
	}
	snprintf(path, sizeof(path), "%s/tokenizer_config.json", dir);
	if (!(text = read_small_file(path, &len)))
		return NULL;
	root = cJSON_ParseWithLength(text, len);
	free(text);
	t = cJSON_GetObjectItemCaseSensitive(root, "chat_template");
	if (cJSON_IsArray(t)) {
		cJSON *item;

		cJSON_ArrayForEach(item, t) {
			cJSON *name = cJSON_GetObjectItemCaseSensitive(item, "name");

			if (cJSON_IsString(name) && strcmp(name->valuestring, "default") == 0) {
				t = cJSON_GetObjectItemCaseSensitive(item, "template");
				break;
			}
		}
	}
	if (cJSON_IsString(t) && t->valuestring[0])
		out = strip_dup(t->valuestring);
	cJSON_Delete(root);
	return out;
}

/*
 * `chat_template: auto`: the template most input models declare (base
 * included), the first seen winning a tie, like mergekit's Counter; NULL if
 * no model declares one (the donor's files stay as they are).
 */
static char *auto_chat_template(const struct smelt_plan *p)
{
	char **seen = calloc(p->n_models ? p->n_models : 1, sizeof(*seen));
	size_t best = 0, best_count = 0;
	char *out = NULL;

	if (!seen)
		return NULL;
	for (size_t i = 0; i < p->n_models; i++)
		seen[i] = model_chat_template(p->models[i].path);
	for (size_t i = 0; i < p->n_models; i++) {
		size_t count = 0;

		if (!seen[i])
			continue;
		for (size_t j = 0; j < p->n_models; j++)
			count += seen[j] && strcmp(seen[i], seen[j]) == 0;
		if (count > best_count) {
			best_count = count;
			best = i;
		}
	}
	if (best_count) {
		out = seen[best];
		seen[best] = NULL;
	}
	for (size_t i = 0; i < p->n_models; i++)
		free(seen[i]);
	free(seen);
	return out;
}

/* The template the recipe asks for, or NULL for none (keep the donor's). */
static int resolve_chat_template(const struct smelt_plan *p, char **out, struct smelt_err *err)
{
	const char *want = p->recipe ? p->recipe->chat_template : NULL;

	*out = NULL;
	if (!want || !*want)
		return 0;
	if (strcmp(want, "auto") == 0) {
		*out = auto_chat_template(p);
		return 0;
	}
	for (size_t i = 0; i < sizeof(builtin_templates) / sizeof(builtin_templates[0]); i++)
		if (strcmp(want, builtin_templates[i].name) == 0)
			want = builtin_templates[i].text;
	if (!(*out = strdup(want)))
		return smelt_fail(err, SMELT_ENOMEM, "out of memory");
	return 0;
}

/*
 * Put the template into the copied tokenizer_config.json ("chat_template")
 * and, when the donor keeps its template in chat_template.jinja (which
 * transformers prefers), into that file too. A donor without a
 * tokenizer_config.json gets nothing, as in mergekit (no tokenizer to save).
 */
static int write_chat_template(const char *dir, const char *tmpl, struct smelt_err *err)
{
	char path[4096];
	size_t len = 0;
	char *text, *printed = NULL;
	cJSON *root;
	int rc;

	snprintf(path, sizeof(path), "%s/tokenizer_config.json", dir);
	if (!(text = read_small_file(path, &len)))
		return 0;
	root = cJSON_ParseWithLength(text, len);
	free(text);
	if (!cJSON_IsObject(root)) {
		cJSON_Delete(root);
		return smelt_fail(err, SMELT_EFORMAT,
				  "tokenizer_config.json of the tokenizer donor: not a JSON object, "
				  "cannot set chat_template");
	}
	cJSON_DeleteItemFromObjectCaseSensitive(root, "chat_template");
	if (!cJSON_AddStringToObject(root, "chat_template", tmpl) ||
	    !(printed = cJSON_Print(root))) {
		cJSON_Delete(root);
		return smelt_fail(err, SMELT_ENOMEM, "out of memory writing the chat template");
	}
	cJSON_Delete(root);
	rc = smelt_write_text_file(path, printed, strlen(printed), err);
	cJSON_free(printed);
	if (rc)
		return rc;
	snprintf(path, sizeof(path), "%s/chat_template.jinja", dir);
	if (access(path, F_OK) == 0)
		rc = smelt_write_text_file(path, tmpl, strlen(tmpl), err);
	return rc;
}

int smelt_copy_tokenizer(const struct smelt_plan *p, const char *dir, struct smelt_err *err)
{
	const struct smelt_ckpt *donor = &p->models[p->tokenizer_donor];
	char *tmpl = NULL;
	int rc;

	for (size_t i = 0; i < sizeof(tokenizer_files) / sizeof(tokenizer_files[0]); i++) {
		char src[4096], dst[4096];

		snprintf(src, sizeof(src), "%s/%s", donor->path, tokenizer_files[i]);
		if (access(src, R_OK) != 0)
			continue;
		snprintf(dst, sizeof(dst), "%s/%s", dir, tokenizer_files[i]);
		if ((rc = smelt_copy_file(src, dst, err)) != 0)
			return rc;
	}
	if ((rc = resolve_chat_template(p, &tmpl, err)) != 0 || !tmpl)
		return rc;
	rc = write_chat_template(dir, tmpl, err);
	free(tmpl);
	return rc;
}

/* ---- smelt-recipe.json ---- */

int smelt_write_recipe_json(const struct smelt_plan *p, const char *dir, struct smelt_err *err)
{
	char *text = smelt_recipe_to_json(p->recipe);
	char path[4096];
	int rc;

	if (!text)
		return smelt_fail(err, SMELT_ENOMEM, "out of memory writing smelt-recipe.json");
	snprintf(path, sizeof(path), "%s/smelt-recipe.json", dir);
	rc = smelt_write_text_file(path, text, strlen(text), err);
	free(text);
	return rc;
}

/* ---- README.md model card ---- */

struct buf {
	char *s;
	size_t len, cap;
	bool failed;
};

static void bprintf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void bprintf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->failed)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->failed = true;
			return;
		}
		if (b->s && b->len + (size_t)n < b->cap) {
			b->len += (size_t)n;
			return;
		}
		size_t cap = (b->cap + (size_t)n + 1) * 2;
		char *s = realloc(b->s, cap);

		if (!s) {
			b->failed = true;
			return;
		}
		b->s = s;
		b->cap = cap;
	}
}

static const char *card_paper(const struct smelt_method *m)
{
	return m->paper ? m->paper : "";
}

/* The method's settings as resolved for the first merged tensor, and when
 * the method reports them, the mean weight each model received per layer. */
static void card_method_section(const struct smelt_plan *p, struct buf *b)
{
	const struct smelt_method *m = p->method;
	const struct smelt_plan_tensor *first = NULL;
	int layers = p->out_layers;

	for (size_t i = 0; i < p->n_tensors && !first; i++)
		if (p->tensors[i].action == SMELT_ACT_MERGE)
			first = &p->tensors[i];
	if (!first)
		return;
	bprintf(b, "\n## Settings\n\n");
	for (int k = 0; k < m->n_params; k++) {
		const struct smelt_param_def *d = &m->params[k];

		if (d->scope != SMELT_SCOPE_GLOBAL || d->type == SMELT_PARAM_REGEX_LIST || d->unused)
			continue;
		bprintf(b, "- %s: %g\n", d->name, first->pg[k]);
	}
	if (p->seed)
		bprintf(b, "- seed: %llu\n", (unsigned long long)p->seed);
	if (!m->weights || !first->weights)
		return;
	bprintf(b, "\n## Mean weight per layer\n\n| layer |");
	for (int i = 0; i < first->n_inputs; i++)
		bprintf(b, " %s |", p->model_refs[first->inputs[i].model]);
	bprintf(b, "\n|---|");
	for (int i = 0; i < first->n_inputs; i++)
		bprintf(b, "---|");
	bprintf(b, "\n");
	for (int l = -1; l < layers; l++) {
		double sum[64] = {0};
		int count = 0, n = first->n_inputs < 64 ? first->n_inputs : 64;

		for (size_t i = 0; i < p->n_tensors; i++) {
			const struct smelt_plan_tensor *t = &p->tensors[i];

			if (t->layer != l || !t->weights || t->n_inputs != first->n_inputs)
				continue;
			for (int k = 0; k < n; k++)
				sum[k] += t->weights[k];
			count++;
		}
		if (!count)
			continue;
		if (l < 0)
			bprintf(b, "| other |");
		else
			bprintf(b, "| %d |", l);
		for (int k = 0; k < n; k++)
			bprintf(b, " %.4f |", sum[k] / count);
		bprintf(b, "\n");
	}
}

int smelt_write_card(const struct smelt_plan *p, const char *dir, struct smelt_err *err)
{
	const struct smelt_recipe *r = p->recipe;
	struct buf b = {0};
	char path[4096];
	int rc;

	bprintf(&b, "---\nbase_model:\n");
	for (size_t i = 0; i < p->n_models; i++)
		bprintf(&b, "- %s\n", p->model_refs[i]);
	bprintf(&b, "tags:\n- merge\n- smelt\nlibrary_name: transformers\n---\n\n");
	bprintf(&b, "# Merged model\n\nThis model was merged with smelt, a terminal workbench for model merging, "
		    "using the **%s** method.",
		p->method->name);
	if (card_paper(p->method)[0])
		bprintf(&b, " (%s)", card_paper(p->method));
	bprintf(&b, "\n\n## Models\n\n");
	if (p->base >= 0)
		bprintf(&b, "- base: `%s`\n", p->model_refs[p->base]);
	for (size_t i = 0; i < p->n_models; i++)
		if ((int)i != p->base)
			bprintf(&b, "- `%s`\n", p->model_refs[i]);
	bprintf(&b, "\nOutput: %zu tensors in %zu shard%s, %s, %d layers.\n", p->n_tensors,
		p->n_shards, p->n_shards == 1 ? "" : "s", smelt_dtype_name(p->out_dtype),
		p->out_layers);
	card_method_section(p, &b);
	bprintf(&b, "\n## Recipe\n\n```%s\n%s%s```\n", r->source_is_yaml ? "yaml" : "json",
		r->source_text ? r->source_text : "",
		r->source_text && r->source_text[0] &&
				r->source_text[strlen(r->source_text) - 1] != '\n'
			? "\n"
			: "");
	if (b.failed || !b.s) {
		free(b.s);
		return smelt_fail(err, SMELT_ENOMEM, "out of memory writing README.md");
	}
	snprintf(path, sizeof(path), "%s/README.md", dir);
	rc = smelt_write_text_file(path, b.s, b.len, err);
	free(b.s);
	return rc;
}

/*
 * cmd_inspect.c: `smelt inspect PATH [--json]` lists a checkpoint's tensors
 * (a model folder, a sharded index, a cache snapshot or one .safetensors
 * file), then totals and an architecture summary. Any invalid input ends
 * with exit 1 and one "smelt: ..." line on stderr.
 */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "smelt/progress.h"
#include "smelt/ckpt.h"

static void inspect_usage(FILE *out)
{
	fprintf(out, "usage: smelt inspect PATH [--json]\n\n"
		     "List the tensors of a checkpoint: a model folder (model.safetensors or\n"
		     "model.safetensors.index.json + shards), a Hugging Face cache snapshot\n"
		     "folder, or a single .safetensors file.\n\n"
		     "  --json   machine-readable output: path, tensors (name, dtype, shape,\n"
		     "           file, offset, nbytes), total_bytes, num_layers\n");
}

/* "3.4 MB": decimal units, as model sizes are quoted on the Hub. */
static const char *shape_text(const struct smelt_st_tensor *t, char *buf, size_t size)
{
	size_t o = (size_t)snprintf(buf, size, "[");

	for (int d = 0; d < t->ndim && o < size; d++)
		o += (size_t)snprintf(buf + o, size - o, "%s%" PRIu64, d ? ", " : "", t->shape[d]);
	if (o < size)
		snprintf(buf + o, size - o, "]");
	return buf;
}

static int inspect_layers(const struct smelt_ckpt *c)
{
	return c->config.present && c->config.num_layers >= 0 ? c->config.num_layers
							       : c->num_layers;
}

static cJSON *raw_u64(uint64_t v)
{
	char num[24];

	snprintf(num, sizeof(num), "%" PRIu64, v);
	return cJSON_CreateRaw(num);
}

static int print_json(const struct smelt_ckpt *c)
{
	cJSON *root = cJSON_CreateObject(), *list = cJSON_CreateArray();
	char *text;

	if (!root || !list)
		goto nomem;
	cJSON_AddItemToObject(root, "path", cJSON_CreateString(c->display));
	cJSON_AddItemToObject(root, "tensors", list);
	for (size_t i = 0; i < c->n_tensors; i++) {
		const struct smelt_ckpt_tensor *t = &c->tensors[i];
		const struct smelt_st_file *f = &c->shards[t->shard];
		cJSON *o = cJSON_CreateObject(), *shape = cJSON_CreateArray();

		if (!o || !shape)
			goto nomem;
		cJSON_AddItemToArray(list, o);
		cJSON_AddItemToObject(o, "name", cJSON_CreateString(t->name));
		cJSON_AddItemToObject(o, "dtype", cJSON_CreateString(smelt_dtype_name(t->st->dtype)));
		for (int d = 0; d < t->st->ndim; d++)
			cJSON_AddItemToArray(shape, raw_u64(t->st->shape[d]));
		cJSON_AddItemToObject(o, "shape", shape);
		cJSON_AddItemToObject(o, "file", cJSON_CreateString(c->shard_names[t->shard]));
		cJSON_AddItemToObject(o, "offset", raw_u64(8 + f->header_len + t->st->begin));
		cJSON_AddItemToObject(o, "nbytes", raw_u64(t->st->end - t->st->begin));
	}
	cJSON_AddItemToObject(root, "total_bytes", raw_u64(c->total_bytes));
	cJSON_AddItemToObject(root, "num_layers", cJSON_CreateNumber(inspect_layers(c)));
	text = cJSON_Print(root);
	if (!text)
		goto nomem;
	puts(text);
	cJSON_free(text);
	cJSON_Delete(root);
	return 0;
nomem:
	cJSON_Delete(root);
	cli_error("inspect: out of memory");
	return 1;
}

static void print_table(const struct smelt_ckpt *c)
{
	char nb[1024], sb[256], hb[32];
	int width = 4, swidth = 5, dwidth = 5;
	uint64_t params = 0;

	for (size_t i = 0; i < c->n_tensors; i++) {
		int l = (int)strlen(smelt_st_safe_name(c->tensors[i].name, nb, sizeof(nb)));
		int s = (int)strlen(shape_text(c->tensors[i].st, sb, sizeof(sb)));

		int d = (int)strlen(smelt_dtype_name(c->tensors[i].st->dtype));

		width = l > width ? l : width;
		swidth = s > swidth ? s : swidth;
		dwidth = d > dwidth ? d : dwidth;
		params += smelt_st_numel(c->tensors[i].st);
	}
	if (width > 72)
		width = 72;
	printf("%-*s  %-*s  %-*s  %10s  %s\n", width, "NAME", dwidth, "DTYPE", swidth, "SHAPE",
	       "SIZE", "FILE");
	for (size_t i = 0; i < c->n_tensors; i++) {
		const struct smelt_ckpt_tensor *t = &c->tensors[i];

		printf("%-*s  %-*s  %-*s  %10s  %s\n", width,
		       smelt_st_safe_name(t->name, nb, sizeof(nb)), dwidth,
		       smelt_dtype_name(t->st->dtype),
		       swidth, shape_text(t->st, sb, sizeof(sb)),
		       smelt_format_bytes((double)(t->st->end - t->st->begin), hb, sizeof(hb)),
		       c->shard_names[t->shard]);
	}
	printf("\n%zu tensors, %" PRIu64 " parameters, %s (%" PRIu64 " bytes)\n\n", c->n_tensors,
	       params, smelt_format_bytes((double)(c->total_bytes), hb, sizeof(hb)), c->total_bytes);

	if (c->config.present) {
		printf("architecture    %s%s%s%s\n",
		       c->config.architecture[0] ? c->config.architecture : "(not given)",
		       c->config.model_type[0] ? " (" : "", c->config.model_type,
		       c->config.model_type[0] ? ")" : "");
	} else {
		printf("architecture    (no config.json)\n");
	}
	if (c->config.present && c->config.num_layers >= 0)
		printf("layers          %d (config %s; %d in tensor names)\n", c->config.num_layers,
		       c->config.layers_key, c->num_layers);
	else
		printf("layers          %d (from tensor names)\n", c->num_layers);
	if (c->config.hidden_size >= 0)
		printf("hidden          %d\n", c->config.hidden_size);
	if (c->config.intermediate_size >= 0)
		printf("intermediate    %d\n", c->config.intermediate_size);
	if (c->config.vocab_size >= 0)
		printf("vocab           %d\n", c->config.vocab_size);
	if (c->config.present)
		printf("tied embeddings %s\n", c->config.tie_word_embeddings ? "yes" : "no");
	printf("main dtype      %s%s%s%s\n", c->n_tensors ? smelt_dtype_name(c->main_dtype) : "-",
	       c->config.torch_dtype[0] ? " (config: " : "", c->config.torch_dtype,
	       c->config.torch_dtype[0] ? ")" : "");
	printf("total size      %s in %zu %s%s\n", smelt_format_bytes((double)(c->total_bytes), hb, sizeof(hb)),
	       c->n_shards, c->n_shards == 1 ? "file" : "shards",
	       c->sharded ? " (model.safetensors.index.json)" : "");
}

int cmd_inspect(int argc, char **argv)
{
	const char *path = NULL;
	bool json = false;
	struct smelt_ckpt c;
	struct smelt_err err = {0};
	int rc;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			inspect_usage(stdout);
			return 0;
		}
		if (strcmp(argv[i], "--json") == 0) {
			json = true;
		} else if (argv[i][0] == '-' && argv[i][1]) {
			cli_error("inspect: unknown option '%s'", argv[i]);
			inspect_usage(stderr);
			return 2;
		} else if (path) {
			cli_error("inspect: only one path may be given");
			inspect_usage(stderr);
			return 2;
		} else {
			path = argv[i];
		}
	}
	if (!path) {
		cli_error("inspect: missing PATH");
		inspect_usage(stderr);
		return 2;
	}
	if (smelt_ckpt_open(&c, path, &err) != 0) {
		cli_error("%s", err.msg);
		return 1;
	}
	if (json) {
		rc = print_json(&c);
	} else {
		printf("%s\n\n", c.display);
		print_table(&c);
		rc = 0;
	}
	smelt_ckpt_close(&c);
	if (fflush(stdout) != 0) {
		cli_error("inspect: cannot write the output");
		return 1;
	}
	return rc;
}

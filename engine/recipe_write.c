/*
 * recipe_write.c: a recipe tree back to text, for saving from the TUI and for
 * the merged model's smelt-recipe.json and model card.
 *
 * YAML is written the way mergekit writes mergekit_config.yml: block style,
 * two-space indents, numeric lists in flow style ([0, 0.5, 1]). Every scalar
 * is written so that PyYAML (YAML 1.1) reads back the same type: floats
 * always carry a decimal point (1.0e-05, not 1e-05, which YAML 1.1 reads as
 * a string), and strings that would otherwise be read as numbers, bools or
 * null, or that hold YAML punctuation, are double-quoted.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "recipe_int.h"

/* ---- a growing string ---- */

struct sbuf {
	char *s;
	size_t len, cap;
	bool oom;
};

static void __attribute__((format(printf, 2, 3))) sb_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->oom)
		return;
	for (;;) {
		size_t room = b->cap - b->len;

		va_start(ap, fmt);
		n = vsnprintf(b->s ? b->s + b->len : NULL, room, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->oom = true;
			return;
		}
		if ((size_t)n < room) {
			b->len += (size_t)n;
			return;
		}
		size_t cap = (b->cap ? b->cap * 2 : 1024) + (size_t)n;
		char *s = realloc(b->s, cap);

		if (!s) {
			b->oom = true;
			return;
		}
		b->s = s;
		b->cap = cap;
	}
}

static char *sb_finish(struct sbuf *b)
{
	if (b->oom || !b->s) {
		free(b->s);
		return b->oom ? NULL : recipe_strdup("");
	}
	return b->s;
}

/* ---- YAML scalars ---- */

/* The shortest text that reads back as the same double, in a form that
 * YAML 1.1 types as a number. */
static void yaml_number(struct sbuf *b, double x)
{
	char buf[64], *e;

	if (isnan(x)) {
		sb_printf(b, ".nan");
		return;
	}
	if (isinf(x)) {
		sb_printf(b, x < 0 ? "-.inf" : ".inf");
		return;
	}
	if (x == 0 && signbit(x)) {
		sb_printf(b, "-0.0"); /* "-0" would read back as the integer 0 */
		return;
	}
	if (x == floor(x) && fabs(x) < 1e15) {
		sb_printf(b, "%.0f", x);
		return;
	}
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(buf, sizeof(buf), "%.*g", prec, x);
		if (strtod(buf, NULL) == x)
			break;
	}
	e = strchr(buf, 'e');
	if (e && !memchr(buf, '.', (size_t)(e - buf))) {
		/* 1e-05 -> 1.0e-05 (exponents already carry a sign in %g) */
		sb_printf(b, "%.*s.0%s", (int)(e - buf), buf, e);
		return;
	}
	sb_printf(b, "%s", buf);
}

static bool needs_quotes(const char *s, bool flow)
{
	struct rnode probe = {0};
	size_t len = strlen(s);

	if (len == 0 || strchr("-?:,[]{}#&*!|>'\"%@` \t", s[0]) || s[len - 1] == ' ' ||
	    s[len - 1] == '\t' || s[len - 1] == ':')
		return true;
	/* libyaml rejects some plain scalars with ':' inside (e.g. "a:?b" in a
	 * flow list); quoting every ':' is always safe. */
	if (strchr(s, ':') || strstr(s, " #") || strpbrk(s, "\n\r\t\\"))
		return true;
	/* inside [a, b] these end or open a collection */
	if (flow && strpbrk(s, ",[]{}"))
		return true;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p < 0x20 || *p >= 0x7f)
			return true; /* controls, and non-ASCII: escaped where needed */
	/* YAML 1.1 timestamps (2024-01-31...) would be read as dates */
	if (len >= 8 && strspn(s, "0123456789") == 4 && s[4] == '-')
		return true;
	recipe_yaml11_resolve(s, &probe);
	return probe.kind != RN_STR;
}

/* One UTF-8 sequence at p inside a double-quoted scalar: printable
 * characters as they are, the rest (C1 controls, line and paragraph
 * separators, BOM, U+FFFE/FFFF, broken bytes) escaped. Returns the bytes
 * consumed. */
static size_t yaml_utf8_char(struct sbuf *b, const unsigned char *p)
{
	size_t n = (*p & 0xe0) == 0xc0 ? 2 : (*p & 0xf0) == 0xe0 ? 3 : (*p & 0xf8) == 0xf0 ? 4 : 1;
	unsigned cp = n == 1 ? *p : *p & (0x7f >> n);

	for (size_t k = 1; k < n; k++) {
		if ((p[k] & 0xc0) != 0x80) {
			sb_printf(b, "\\x%02x", *p); /* not UTF-8: keep the byte visible */
			return 1;
		}
		cp = (cp << 6) | (p[k] & 0x3f);
	}
	if (n == 1) {
		sb_printf(b, "\\x%02x", *p);
		return 1;
	}
	if (cp < 0xa0 || cp == 0x2028 || cp == 0x2029 || cp == 0xfeff || cp == 0xfffe ||
	    cp == 0xffff || (cp >= 0xd800 && cp <= 0xdfff))
		sb_printf(b, cp > 0xffff ? "\\U%08x" : "\\u%04x", cp);
	else
		sb_printf(b, "%.*s", (int)n, (const char *)p);
	return n;
}

static void yaml_string_in(struct sbuf *b, const char *s, bool flow)
{
	if (!needs_quotes(s, flow)) {
		sb_printf(b, "%s", s);
		return;
	}
	sb_printf(b, "\"");
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		switch (*p) {
		case '"': sb_printf(b, "\\\""); break;
		case '\\': sb_printf(b, "\\\\"); break;
		case '\n': sb_printf(b, "\\n"); break;
		case '\r': sb_printf(b, "\\r"); break;
		case '\t': sb_printf(b, "\\t"); break;
		default:
			if (*p < 0x20 || *p == 0x7f)
				sb_printf(b, "\\x%02x", *p);
			else if (*p < 0x80)
				sb_printf(b, "%c", *p);
			else
				p += yaml_utf8_char(b, p) - 1;
		}
	}
	sb_printf(b, "\"");
}

static void yaml_string(struct sbuf *b, const char *s)
{
	yaml_string_in(b, s, false);
}

static void yaml_scalar(struct sbuf *b, const struct smelt_pvalue *v, bool flow)
{
	switch (v->kind) {
	case SMELT_PV_NUMBER: yaml_number(b, v->num); break;
	case SMELT_PV_BOOL: sb_printf(b, v->b ? "true" : "false"); break;
	case SMELT_PV_STRING: yaml_string_in(b, v->str ? v->str : "", flow); break;
	default: sb_printf(b, "null"); break;
	}
}

static void yaml_flow_list(struct sbuf *b, const struct smelt_pvalue *v)
{
	sb_printf(b, "[");
	for (size_t i = 0; i < v->n_items; i++) {
		if (i)
			sb_printf(b, ", ");
		yaml_scalar(b, &v->items[i], true);
	}
	sb_printf(b, "]");
}

/* "key: value" for one parameter at indent ind. */
static void yaml_param(struct sbuf *b, int ind, const char *name, const struct smelt_pvalue *v)
{
	sb_printf(b, "%*s", ind, "");
	yaml_string(b, name);
	sb_printf(b, ":");
	if (v->kind == SMELT_PV_LIST) {
		sb_printf(b, " ");
		yaml_flow_list(b, v);
	} else if (v->kind == SMELT_PV_CONDS) {
		for (size_t i = 0; i < v->n_items; i++) {
			const struct smelt_pvalue *c = &v->items[i];
			bool first = true;

			sb_printf(b, "\n%*s- ", ind + 2, "");
			if (c->filter) {
				sb_printf(b, "filter: ");
				yaml_string(b, c->filter);
				first = false;
			}
			if (!first)
				sb_printf(b, "\n%*s", ind + 4, "");
			sb_printf(b, "value: ");
			if (c->value && c->value->kind == SMELT_PV_LIST)
				yaml_flow_list(b, c->value);
			else if (c->value)
				yaml_scalar(b, c->value, false);
			else
				sb_printf(b, "null");
		}
	} else {
		sb_printf(b, " ");
		yaml_scalar(b, v, false);
	}
	sb_printf(b, "\n");
}

static void yaml_pset(struct sbuf *b, int ind, const struct smelt_pset *ps)
{
	if (!ps->n)
		return;
	sb_printf(b, "%*sparameters:\n", ind, "");
	for (size_t i = 0; i < ps->n; i++)
		yaml_param(b, ind + 2, ps->names[i], &ps->values[i]);
}

static void yaml_key_string(struct sbuf *b, int ind, const char *key, const char *value)
{
	if (!value)
		return;
	sb_printf(b, "%*s%s: ", ind, "", key);
	yaml_string(b, value);
	sb_printf(b, "\n");
}

char *smelt_recipe_to_yaml(const struct smelt_recipe *r)
{
	struct sbuf b = {0};

	yaml_key_string(&b, 0, "merge_method", r->merge_method);
	yaml_key_string(&b, 0, "base_model", r->base_model);
	if (!r->uses_slices && r->n_slices) {
		const struct smelt_slice *sl = &r->slices[0];

		sb_printf(&b, "models:\n");
		for (size_t i = 0; i < sl->n_sources; i++) {
			sb_printf(&b, "  - model: ");
			yaml_string(&b, sl->sources[i].model ? sl->sources[i].model : "");
			sb_printf(&b, "\n");
			yaml_pset(&b, 4, &sl->sources[i].params);
		}
	} else if (r->uses_slices) {
		sb_printf(&b, "slices:\n");
		for (size_t s = 0; s < r->n_slices; s++) {
			const struct smelt_slice *sl = &r->slices[s];

			sb_printf(&b, "  - sources:\n");
			for (size_t i = 0; i < sl->n_sources; i++) {
				const struct smelt_source *src = &sl->sources[i];

				sb_printf(&b, "      - model: ");
				yaml_string(&b, src->model ? src->model : "");
				sb_printf(&b, "\n");
				if (src->has_range)
					sb_printf(&b, "        layer_range: [%d, %d]\n",
					          src->layer_start, src->layer_end);
				yaml_pset(&b, 8, &src->params);
			}
			yaml_key_string(&b, 4, "base_model", sl->base_model);
			yaml_pset(&b, 4, &sl->params);
		}
	}
	yaml_pset(&b, 0, &r->params);
	if (r->has_dtype)
		sb_printf(&b, "dtype: %s\n", smelt_dtype_torch_name(r->dtype));
	if (r->has_out_dtype)
		sb_printf(&b, "out_dtype: %s\n", smelt_dtype_torch_name(r->out_dtype));
	if (r->has_tokenizer_block && r->tokenizer_source) {
		sb_printf(&b, "tokenizer:\n");
		yaml_key_string(&b, 2, "source", r->tokenizer_source);
	} else {
		yaml_key_string(&b, 0, "tokenizer_source", r->tokenizer_source);
	}
	yaml_key_string(&b, 0, "chat_template", r->chat_template);
	if (r->has_seed)
		sb_printf(&b, "seed: %llu\n", (unsigned long long)r->seed);
	yaml_key_string(&b, 0, "embed_policy", r->embed_policy);
	return sb_finish(&b);
}

/* ---- JSON ---- */

static cJSON *json_value(const struct smelt_pvalue *v);

static cJSON *json_scalar(const struct smelt_pvalue *v)
{
	switch (v->kind) {
	case SMELT_PV_NUMBER: return cJSON_CreateNumber(v->num);
	case SMELT_PV_BOOL: return cJSON_CreateBool(v->b);
	case SMELT_PV_STRING: return cJSON_CreateString(v->str ? v->str : "");
	default: return cJSON_CreateNull();
	}
}

static cJSON *json_value(const struct smelt_pvalue *v)
{
	cJSON *a;

	if (v->kind != SMELT_PV_LIST && v->kind != SMELT_PV_CONDS)
		return json_scalar(v);
	a = cJSON_CreateArray();
	for (size_t i = 0; a && i < v->n_items; i++) {
		const struct smelt_pvalue *it = &v->items[i];
		cJSON *e;

		if (v->kind == SMELT_PV_LIST) {
			e = json_scalar(it);
		} else {
			e = cJSON_CreateObject();
			if (e && it->filter && !cJSON_AddStringToObject(e, "filter", it->filter))
				goto fail_item;
			if (e) {
				cJSON *val = it->value ? json_value(it->value) : cJSON_CreateNull();

				if (!val)
					goto fail_item;
				cJSON_AddItemToObject(e, "value", val);
			}
		}
		if (!e)
			goto fail;
		cJSON_AddItemToArray(a, e);
		continue;
	fail_item:
		cJSON_Delete(e);
		goto fail;
	}
	return a;
fail:
	cJSON_Delete(a);
	return NULL;
}

static bool json_pset(cJSON *obj, const struct smelt_pset *ps)
{
	cJSON *p;

	if (!ps->n)
		return true;
	p = cJSON_AddObjectToObject(obj, "parameters");
	if (!p)
		return false;
	for (size_t i = 0; i < ps->n; i++) {
		cJSON *v = json_value(&ps->values[i]);

		if (!v)
			return false;
		cJSON_AddItemToObject(p, ps->names[i], v);
	}
	return true;
}

static bool json_str(cJSON *obj, const char *key, const char *value)
{
	return !value || cJSON_AddStringToObject(obj, key, value);
}

static bool json_source(cJSON *arr, const struct smelt_source *src)
{
	cJSON *o = cJSON_CreateObject();

	if (!o)
		return false;
	cJSON_AddItemToArray(arr, o);
	if (!json_str(o, "model", src->model ? src->model : ""))
		return false;
	if (src->has_range) {
		int range[2] = {src->layer_start, src->layer_end};
		cJSON *lr = cJSON_CreateIntArray(range, 2);

		if (!lr)
			return false;
		cJSON_AddItemToObject(o, "layer_range", lr);
	}
	return json_pset(o, &src->params);
}

static bool json_body(cJSON *root, const struct smelt_recipe *r)
{
	bool ok = json_str(root, "merge_method", r->merge_method) &&
	          json_str(root, "base_model", r->base_model);

	if (ok && !r->uses_slices && r->n_slices) {
		cJSON *models = cJSON_AddArrayToObject(root, "models");

		ok = models != NULL;
		for (size_t i = 0; ok && i < r->slices[0].n_sources; i++)
			ok = json_source(models, &r->slices[0].sources[i]);
	} else if (ok && r->uses_slices) {
		cJSON *slices = cJSON_AddArrayToObject(root, "slices");

		ok = slices != NULL;
		for (size_t s = 0; ok && s < r->n_slices; s++) {
			const struct smelt_slice *sl = &r->slices[s];
			cJSON *o = cJSON_CreateObject(), *srcs;

			if (!o)
				return false;
			cJSON_AddItemToArray(slices, o);
			srcs = cJSON_AddArrayToObject(o, "sources");
			ok = srcs != NULL;
			for (size_t i = 0; ok && i < sl->n_sources; i++)
				ok = json_source(srcs, &sl->sources[i]);
			ok = ok && json_str(o, "base_model", sl->base_model) &&
			     json_pset(o, &sl->params);
		}
	}
	ok = ok && json_pset(root, &r->params);
	if (ok && r->has_dtype)
		ok = json_str(root, "dtype", smelt_dtype_torch_name(r->dtype));
	if (ok && r->has_out_dtype)
		ok = json_str(root, "out_dtype", smelt_dtype_torch_name(r->out_dtype));
	if (ok && r->has_tokenizer_block && r->tokenizer_source) {
		cJSON *t = cJSON_AddObjectToObject(root, "tokenizer");

		ok = t && json_str(t, "source", r->tokenizer_source);
	} else if (ok) {
		ok = json_str(root, "tokenizer_source", r->tokenizer_source);
	}
	ok = ok && json_str(root, "chat_template", r->chat_template);
	if (ok && r->has_seed) {
		char seed[32];

		/* JSON readers keep numbers as doubles: a seed above 2^53 is
		 * written as a string of digits, which the parser accepts */
		snprintf(seed, sizeof(seed), "%llu", (unsigned long long)r->seed);
		if (r->seed <= (1ull << 53))
			ok = cJSON_AddRawToObject(root, "seed", seed) != NULL;
		else
			ok = cJSON_AddStringToObject(root, "seed", seed) != NULL;
	}
	return ok && json_str(root, "embed_policy", r->embed_policy);
}

char *smelt_recipe_to_json(const struct smelt_recipe *r)
{
	cJSON *root = cJSON_CreateObject();
	char *text = NULL;

	if (root && json_body(root, r))
		text = cJSON_Print(root);
	cJSON_Delete(root);
	return text;
}

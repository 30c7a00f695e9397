/*
 * recipe.c: the recipe tree. Diagnostics, the JSON front end, the document
 * tree -> struct smelt_recipe builder shared by both syntaxes, loading,
 * freeing, and the method-aware validation.
 *
 * The builder follows mergekit's pydantic schema (MergeConfiguration,
 * InputModelDefinition, InputSliceDefinition, ConditionalParameter,
 * TokenizerConfig): keys it does not define are warnings (pydantic ignores
 * them; --strict makes them errors), wrong types are errors. Every problem is
 * recorded with its key path; building goes on after a problem so one run
 * reports all of them.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "recipe_int.h"
#include "smelt/method.h"

/* ---- small helpers ---- */

char *recipe_strdup(const char *s)
{
	size_t n;
	char *d;

	if (!s)
		return NULL;
	n = strlen(s) + 1;
	d = malloc(n);
	if (d)
		memcpy(d, s, n);
	return d;
}

char *recipe_printf(const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;
	int rc;

	va_start(ap, fmt);
	rc = vasprintf(&s, fmt, ap);
	va_end(ap);
	return rc < 0 ? NULL : s;
}

size_t recipe_edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	size_t *row = malloc((lb + 1) * sizeof(*row));
	size_t d;

	if (!row)
		return (size_t)-1;
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t diag = row[0];

		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t up = row[j];
			size_t cost =
			    tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]);
			size_t best = diag + cost;

			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			diag = up;
			row[j] = best;
		}
	}
	d = row[lb];
	free(row);
	return d;
}

const char *recipe_suggest(const char *word, const char *const *cands, size_t n)
{
	size_t len = strlen(word), limit = len / 3 > 2 ? len / 3 : 2;
	size_t best = (size_t)-1;
	const char *pick = NULL;

	for (size_t i = 0; i < n; i++) {
		size_t d = recipe_edit_distance(word, cands[i]);

		if (d < best) {
			best = d;
			pick = cands[i];
		}
	}
	return best <= limit ? pick : NULL;
}

/* ---- diagnostics ---- */

static void diag_addv(struct smelt_diag *d, int severity, bool strict, const char *path,
                      const char *fmt, va_list ap)
{
	struct smelt_diag_item *items;
	char *msg = NULL, *p;

	if (!d || vasprintf(&msg, fmt, ap) < 0)
		return;
	p = recipe_strdup(path ? path : "");
	items = realloc(d->items, (d->n + 1) * sizeof(*items));
	if (!p || !items) {
		free(msg);
		free(p);
		if (items)
			d->items = items;
		return;
	}
	d->items = items;
	items[d->n].severity = severity;
	items[d->n].path = p;
	items[d->n].msg = msg;
	items[d->n].strict = strict;
	d->n++;
}

void smelt_diag_add(struct smelt_diag *d, int severity, const char *path, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	diag_addv(d, severity, false, path, fmt, ap);
	va_end(ap);
}

/* A warning that --strict turns into an error (unknown keys and parameters). */
static void __attribute__((format(printf, 3, 4)))
diag_unknown(struct smelt_diag *d, const char *path, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	diag_addv(d, SMELT_DIAG_WARNING, true, path, fmt, ap);
	va_end(ap);
}

void smelt_diag_release(struct smelt_diag *d)
{
	if (!d)
		return;
	for (size_t i = 0; i < d->n; i++) {
		free(d->items[i].path);
		free(d->items[i].msg);
	}
	free(d->items);
	free(d->file);
	d->items = NULL;
	d->n = 0;
	d->file = NULL;
}

static size_t diag_count(const struct smelt_diag *d, int severity)
{
	size_t n = 0;

	for (size_t i = 0; d && i < d->n; i++)
		n += d->items[i].severity == severity;
	return n;
}

size_t smelt_diag_errors(const struct smelt_diag *d)
{
	return diag_count(d, SMELT_DIAG_ERROR);
}

size_t smelt_diag_warnings(const struct smelt_diag *d)
{
	return diag_count(d, SMELT_DIAG_WARNING);
}

char *smelt_diag_format(const struct smelt_diag *d)
{
	char *out = recipe_strdup(""), *next;

	for (int sev = SMELT_DIAG_ERROR; out && sev >= SMELT_DIAG_WARNING; sev--) {
		for (size_t i = 0; d && i < d->n && out; i++) {
			const struct smelt_diag_item *it = &d->items[i];
			bool file = d->file && *d->file, path = it->path && *it->path;

			if (it->severity != sev)
				continue;
			next =
			    recipe_printf("%s%s%s%s%s%s%s\n", out, file ? d->file : "",
			                  file ? ": " : "", path ? it->path : "", path ? ": " : "",
			                  sev == SMELT_DIAG_WARNING ? "warning: " : "", it->msg);
			free(out);
			out = next;
		}
	}
	return out;
}

/* ---- freeing ---- */

static void pvalue_clear(struct smelt_pvalue *v)
{
	if (!v)
		return;
	for (size_t i = 0; i < v->n_items; i++)
		pvalue_clear(&v->items[i]);
	free(v->items);
	free(v->str);
	free(v->filter);
	if (v->value) {
		pvalue_clear(v->value);
		free(v->value);
	}
	free(v->path);
	memset(v, 0, sizeof(*v));
}

static void pset_clear(struct smelt_pset *ps)
{
	for (size_t i = 0; i < ps->n; i++) {
		free(ps->names[i]);
		pvalue_clear(&ps->values[i]);
	}
	free(ps->names);
	free(ps->values);
	free(ps->path);
	memset(ps, 0, sizeof(*ps));
}

void smelt_recipe_free(struct smelt_recipe *r)
{
	if (!r)
		return;
	for (size_t s = 0; s < r->n_slices; s++) {
		struct smelt_slice *sl = &r->slices[s];

		for (size_t i = 0; i < sl->n_sources; i++) {
			free(sl->sources[i].model);
			free(sl->sources[i].path);
			pset_clear(&sl->sources[i].params);
		}
		free(sl->sources);
		pset_clear(&sl->params);
		free(sl->base_model);
		free(sl->path);
	}
	free(r->slices);
	pset_clear(&r->params);
	for (size_t i = 0; i < r->n_model_refs; i++)
		free(r->model_refs[i]);
	free(r->model_refs);
	free(r->merge_method);
	free(r->base_model);
	free(r->tokenizer_source);
	free(r->chat_template);
	free(r->embed_policy);
	free(r->source_text);
	free(r->source_name);
	free(r);
}

/* ---- JSON front end ---- */

static int json_to_rnode(const cJSON *j, int line, struct rnode **out)
{
	struct rnode *n = NULL;
	char num[64];

	if (cJSON_IsNull(j)) {
		n = rnode_new(RN_NULL, line);
	} else if (cJSON_IsBool(j)) {
		n = rnode_new(RN_BOOL, line);
		if (n)
			n->b = cJSON_IsTrue(j);
	} else if (cJSON_IsNumber(j)) {
		n = rnode_new(RN_NUM, line);
		if (n) {
			n->num = j->valuedouble;
			n->is_int = n->num == floor(n->num) && fabs(n->num) < 9.007199254740992e15;
			snprintf(num, sizeof(num), "%.17g", n->num);
			n->str = recipe_strdup(num);
			if (!n->str)
				goto nomem;
		}
	} else if (cJSON_IsString(j)) {
		n = rnode_new(RN_STR, line);
		if (n && !(n->str = recipe_strdup(j->valuestring)))
			goto nomem;
	} else if (cJSON_IsArray(j) || cJSON_IsObject(j)) {
		bool obj = cJSON_IsObject(j);

		n = rnode_new(obj ? RN_MAP : RN_SEQ, line);
		if (!n)
			return SMELT_ENOMEM;
		for (const cJSON *c = j->child; c; c = c->next) {
			struct rnode *child;
			int rc = json_to_rnode(c, line, &child);

			if (rc < 0)
				goto fail;
			if (rnode_append(n, obj ? c->string : NULL, child) < 0)
				goto nomem;
		}
	}
	if (!n)
		return SMELT_ENOMEM;
	*out = n;
	return 0;
nomem:
	rnode_free(n);
	return SMELT_ENOMEM;
fail:
	rnode_free(n);
	return SMELT_ENOMEM;
}

/* Offset of the first byte that breaks UTF-8 (overlong forms, surrogates and
 * code points above U+10FFFF included), or len when the text is valid. */
static size_t utf8_invalid_at(const unsigned char *s, size_t len)
{
	size_t i = 0;

	while (i < len) {
		unsigned c = s[i];
		size_t n = c < 0x80             ? 0
		           : (c & 0xe0) == 0xc0 ? 1
		           : (c & 0xf0) == 0xe0 ? 2
		           : (c & 0xf8) == 0xf0 ? 3
		                                : 4;
		unsigned cp;

		if (n == 4 || (n > 0 && i + n >= len))
			return i;
		cp = n == 0 ? c : c & (0x3f >> n);
		for (size_t k = 1; k <= n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return i;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
		    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return i;
		i += n + 1;
	}
	return len;
}

int recipe_json_read(const char *text, size_t len, struct rnode **out, struct smelt_diag *diag)
{
	const char *end = NULL;
	size_t bad = utf8_invalid_at((const unsigned char *)text, len);
	cJSON *j;
	int rc;

	*out = NULL;
	if (bad < len) {
		size_t line = 1;

		for (size_t i = 0; i < bad; i++)
			line += text[i] == '\n';
		smelt_diag_add(diag, SMELT_DIAG_ERROR, "", "line %zu: the text is not valid UTF-8",
		               line);
		return SMELT_EFORMAT;
	}
	j = cJSON_ParseWithLengthOpts(text, len, &end, false);
	if (!j) {
		size_t off = end && end >= text ? (size_t)(end - text) : 0, line = 1;

		for (size_t i = 0; i < off && i < len; i++)
			line += text[i] == '\n';
		smelt_diag_add(diag, SMELT_DIAG_ERROR, "", "JSON syntax error at line %zu", line);
		return SMELT_EFORMAT;
	}
	for (size_t i = (size_t)(end - text); i < len; i++) {
		if (!isspace((unsigned char)text[i])) {
			smelt_diag_add(diag, SMELT_DIAG_ERROR, "",
			               "JSON: text after the end of the recipe object");
			cJSON_Delete(j);
			return SMELT_EFORMAT;
		}
	}
	rc = json_to_rnode(j, 0, out);
	cJSON_Delete(j);
	return rc;
}

/* ---- building the tree ---- */

struct bctx {
	struct smelt_diag *diag;
	struct smelt_recipe *r;
	int rc; /* first allocation failure */
};

static char *child_path(struct bctx *c, const char *parent, const char *key)
{
	char *p = parent && *parent ? recipe_printf("%s.%s", parent, key) : recipe_strdup(key);

	if (!p)
		c->rc = SMELT_ENOMEM;
	return p;
}

static char *index_path(struct bctx *c, const char *parent, size_t i)
{
	char *p = recipe_printf("%s[%zu]", parent, i);

	if (!p)
		c->rc = SMELT_ENOMEM;
	return p;
}

static char *dup_or_fail(struct bctx *c, const char *s)
{
	char *d = recipe_strdup(s);

	if (s && !d)
		c->rc = SMELT_ENOMEM;
	return d;
}

/* The value of key in mapping m (the last one when repeated), NULL if absent. */
static const struct rnode *map_get(const struct rnode *m, const char *key)
{
	for (size_t i = m->n; i-- > 0;)
		if (strcmp(m->keys[i], key) == 0)
			return m->items[i];
	return NULL;
}

static bool later_duplicate(const struct rnode *m, size_t i)
{
	for (size_t k = i + 1; k < m->n; k++)
		if (strcmp(m->keys[k], m->keys[i]) == 0)
			return true;
	return false;
}

/* Warn about repeated keys and, when known != NULL, keys not in known. */
static void check_keys(struct bctx *c, const struct rnode *m, const char *path,
                       const char *const *known, size_t n_known, const char *what)
{
	for (size_t i = 0; i < m->n; i++) {
		char *p = child_path(c, path, m->keys[i]);
		bool found = false;

		if (!p)
			return;
		if (later_duplicate(m, i)) {
			bool first = true;

			for (size_t k = 0; k < i; k++)
				first &= strcmp(m->keys[k], m->keys[i]) != 0;
			if (first)
				smelt_diag_add(c->diag, SMELT_DIAG_WARNING, p,
				               "duplicate key: only the last '%s' is used (as in "
				               "mergekit, which reads YAML with PyYAML)",
				               m->keys[i]);
		}
		for (size_t k = 0; known && k < n_known; k++)
			found |= strcmp(m->keys[i], known[k]) == 0;
		if (known && !found) {
			const char *s = recipe_suggest(m->keys[i], known, n_known);

			if (s)
				diag_unknown(c->diag, p,
				             "unknown key in %s (ignored); did you mean '%s'?",
				             what, s);
			else
				diag_unknown(c->diag, p, "unknown key in %s (ignored)", what);
		}
		free(p);
	}
}

static const char *kind_word(const struct rnode *n)
{
	switch (n->kind) {
	case RN_NULL: return "null";
	case RN_BOOL: return "a bool";
	case RN_NUM: return "a number";
	case RN_STR: return "a string";
	case RN_SEQ: return "a list";
	case RN_MAP: return "a mapping";
	}
	return "?";
}

/* A string-valued key: NULL (no diag) when absent or null; an error when it
 * is not a string. */
static char *get_string(struct bctx *c, const struct rnode *m, const char *key, const char *path)
{
	const struct rnode *v = map_get(m, key);
	char *p;

	if (!v || v->kind == RN_NULL)
		return NULL;
	if (v->kind == RN_STR)
		return dup_or_fail(c, v->str);
	p = child_path(c, path, key);
	smelt_diag_add(c->diag, SMELT_DIAG_ERROR, p, "expected a string, found %s%s%s%s",
	               kind_word(v), v->str ? " (" : "", v->str ? v->str : "", v->str ? ")" : "");
	free(p);
	return NULL;
}

static int build_pvalue(struct bctx *c, const struct rnode *n, const char *path,
                        struct smelt_pvalue *out, bool in_cond);

static int build_cond(struct bctx *c, const struct rnode *n, const char *path,
                      struct smelt_pvalue *out)
{
	static const char *const keys[] = {"filter", "value"};
	const struct rnode *f = map_get(n, "filter"), *v = map_get(n, "value");

	out->path = dup_or_fail(c, path);
	check_keys(c, n, path, keys, 2, "a conditional parameter");
	if (f && f->kind != RN_NULL) {
		if (f->kind == RN_SEQ || f->kind == RN_MAP) {
			char *p = child_path(c, path, "filter");

			smelt_diag_add(c->diag, SMELT_DIAG_ERROR, p,
			               "expected a string (a part of tensor names)");
			free(p);
		} else {
			out->filter = dup_or_fail(c, f->str ? f->str : (f->b ? "true" : "false"));
		}
	}
	out->value = calloc(1, sizeof(*out->value));
	if (!out->value)
		return c->rc = SMELT_ENOMEM;
	if (!v) {
		smelt_diag_add(c->diag, SMELT_DIAG_ERROR, path, "a conditional needs a 'value'");
		return 0;
	} else {
		char *p = child_path(c, path, "value");
		int rc = p ? build_pvalue(c, v, p, out->value, true) : SMELT_ENOMEM;

		free(p);
		return rc;
	}
}

static int build_pvalue(struct bctx *c, const struct rnode *n, const char *path,
                        struct smelt_pvalue *out, bool in_cond)
{
	bool any_map = false, any_seq = false;

	out->path = dup_or_fail(c, path);
	switch (n->kind) {
	case RN_NULL: out->kind = SMELT_PV_NULL; return 0;
	case RN_BOOL:
		out->kind = SMELT_PV_BOOL;
		out->b = n->b;
		return 0;
	case RN_NUM:
		out->kind = SMELT_PV_NUMBER;
		out->num = n->num;
		return 0;
	case RN_STR:
		out->kind = SMELT_PV_STRING;
		out->str = dup_or_fail(c, n->str);
		return 0;
	case RN_MAP:
		if (in_cond || !map_get(n, "value")) {
			smelt_diag_add(c->diag, SMELT_DIAG_ERROR, path,
			               in_cond ? "a conditional's value must be a number or a list"
			                       : "expected a number, a list, or conditionals "
			                         "({filter, value})");
			out->kind = SMELT_PV_NULL;
			return 0;
		}
		/* a single ConditionalParameter written as a mapping */
		out->kind = SMELT_PV_CONDS;
		out->items = calloc(1, sizeof(*out->items));
		if (!out->items)
			return c->rc = SMELT_ENOMEM;
		out->n_items = 1;
		return build_cond(c, n, path, &out->items[0]);
	case RN_SEQ: break;
	}
	for (size_t i = 0; i < n->n; i++) {
		any_map |= n->items[i]->kind == RN_MAP;
		any_seq |= n->items[i]->kind == RN_SEQ;
	}
	out->items = calloc(n->n ? n->n : 1, sizeof(*out->items));
	if (!out->items)
		return c->rc = SMELT_ENOMEM;
	out->n_items = n->n;
	out->kind = any_map && !in_cond ? SMELT_PV_CONDS : SMELT_PV_LIST;
	for (size_t i = 0; i < n->n; i++) {
		const struct rnode *it = n->items[i];
		char *p = index_path(c, path, i);
		int rc = 0;

		if (!p)
			return SMELT_ENOMEM;
		if (out->kind == SMELT_PV_CONDS && it->kind == RN_MAP) {
			rc = build_cond(c, it, p, &out->items[i]);
		} else if (out->kind == SMELT_PV_CONDS || any_seq || it->kind == RN_MAP) {
			smelt_diag_add(
			    c->diag, SMELT_DIAG_ERROR, p,
			    out->kind == SMELT_PV_CONDS
			        ? "a list of conditionals must hold only {filter, value} "
			          "items"
			        : "a list must hold numbers, bools or strings (no nested lists or "
			          "conditionals)");
			/* an empty list stands in for the bad item; validation does
			 * not report its path a second time */
			out->items[i].kind = SMELT_PV_LIST;
			out->items[i].path = dup_or_fail(c, p);
		} else {
			rc = build_pvalue(c, it, p, &out->items[i], true);
		}
		free(p);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int build_pset(struct bctx *c, const struct rnode *m, const char *key, const char *parent,
                      struct smelt_pset *ps)
{
	const struct rnode *v = map_get(m, key);
	char *path = child_path(c, parent, key);

	if (!path)
		return SMELT_ENOMEM;
	if (!v || v->kind == RN_NULL) {
		free(path);
		return 0;
	}
	ps->path = path;
	if (v->kind != RN_MAP) {
		smelt_diag_add(c->diag, SMELT_DIAG_ERROR, path,
		               "expected a mapping of parameter names to values, found %s",
		               kind_word(v));
		return 0;
	}
	check_keys(c, v, path, NULL, 0, NULL);
	ps->names = calloc(v->n ? v->n : 1, sizeof(*ps->names));
	ps->values = calloc(v->n ? v->n : 1, sizeof(*ps->values));
	if (!ps->names || !ps->values)
		return c->rc = SMELT_ENOMEM;
	for (size_t i = 0; i < v->n; i++) {
		char *p;
		int rc;

		if (later_duplicate(v, i))
			continue;
		p = child_path(c, path, v->keys[i]);
		if (!p)
			return SMELT_ENOMEM;
		ps->names[ps->n] = dup_or_fail(c, v->keys[i]);
		rc = build_pvalue(c, v->items[i], p, &ps->values[ps->n], false);
		ps->n++;
		free(p);
		if (rc < 0)
			return rc;
	}
	return c->rc;
}

/* A model reference value (string). Errors name the path. */
static char *get_model_ref(struct bctx *c, const struct rnode *m, const char *key, const char *path,
                           bool required)
{
	const struct rnode *v = map_get(m, key);
	char *p;

	if (v && v->kind == RN_STR && *v->str)
		return dup_or_fail(c, v->str);
	p = child_path(c, path, key);
	if (!v || v->kind == RN_NULL) {
		if (required)
			smelt_diag_add(c->diag, SMELT_DIAG_ERROR, p,
			               "missing: a model reference "
			               "(local path or org/name) is required");
	} else if (v->kind == RN_STR) {
		smelt_diag_add(c->diag, SMELT_DIAG_ERROR, p, "empty model reference");
	} else {
		smelt_diag_add(c->diag, SMELT_DIAG_ERROR, p,
		               "expected a model reference (a string), found %s", kind_word(v));
	}
	free(p);
	return NULL;
}

static void get_layer_range(struct bctx *c, const struct rnode *m, const char *path,
                            struct smelt_source *s)
{
	const struct rnode *v = map_get(m, "layer_range");
	char *p = child_path(c, path, "layer_range");
	bool ok;

	if (!p)
		return;
	if (!v || v->kind == RN_NULL) {
		smelt_diag_add(c->diag, SMELT_DIAG_ERROR, p,
		               "missing: every slice source needs layer_range: [start, end)");
		free(p);
		return;
	}
	ok = v->kind == RN_SEQ && v->n == 2;
	for (size_t i = 0; ok && i < 2; i++) {
		const struct rnode *e = v->items[i];
		double x = e->num;

		/* pydantic's int accepts an integral float or a numeric string */
		if (e->kind == RN_STR) {
			char *end;

			x = strtod(e->str, &end);
			ok = *e->str && *end == '\0';
		} else {
			ok = e->kind == RN_NUM;
		}
		ok = ok && x == floor(x) && fabs(x) < 1e9;
		if (ok) {
			if (i == 0)
				s->layer_start = (int)x;
			else
				s->layer_end = (int)x;
		}
	}
	if (!ok)
		smelt_diag_add(c->diag, SMELT_DIAG_ERROR, p,
		               "expected two integers [start, end) (end-exclusive)");
	else
		s->has_range = true;
	free(p);
}

static int build_source(struct bctx *c, const struct rnode *n, const char *path, bool in_slice,
                        struct smelt_source *s)
{
	static const char *const model_keys[] = {"model", "parameters"};
	static const char *const source_keys[] = {"model", "layer_range", "parameters"};

	s->path = dup_or_fail(c, path);
	if (n->kind == RN_STR && !in_slice) {
		smelt_diag_add(c->diag, SMELT_DIAG_ERROR, path,
		               "a models: entry must be a mapping; write '- model: %s' (mergekit "
		               "rejects a bare name here too)",
		               n->str);
		s->model = dup_or_fail(c, n->str);
		return c->rc;
	}
	if (n->kind != RN_MAP) {
		smelt_diag_add(c->diag, SMELT_DIAG_ERROR, path,
		               "expected a mapping with 'model:'%s, found %s",
		               in_slice ? " and 'layer_range:'" : "", kind_word(n));
		return 0;
	}
	if (in_slice)
		check_keys(c, n, path, source_keys, 3, "a slice source");
	else
		check_keys(c, n, path, model_keys, 2, "a models: entry");
	s->model = get_model_ref(c, n, "model", path, true);
	if (in_slice)
		get_layer_range(c, n, path, s);
	return build_pset(c, n, "parameters", path, &s->params);
}

static int build_models(struct bctx *c, const struct rnode *v)
{
	struct smelt_recipe *r = c->r;
	struct smelt_slice *sl;

	r->slices = calloc(1, sizeof(*r->slices));
	if (!r->slices)
		return c->rc = SMELT_ENOMEM;
	r->n_slices = 1;
	sl = &r->slices[0];
	sl->path = dup_or_fail(c, "models");
	if (v->kind != RN_SEQ) {
		smelt_diag_add(c->diag, SMELT_DIAG_ERROR, "models",
		               "expected a list of '- model: NAME' entries, found %s",
		               kind_word(v));
		return 0;
	}
	if (v->n == 0)
		smelt_diag_add(c->diag, SMELT_DIAG_ERROR, "models",
		               "empty: list the models to merge ('- model: NAME')");
	sl->sources = calloc(v->n ? v->n : 1, sizeof(*sl->sources));
	if (!sl->sources)
		return c->rc = SMELT_ENOMEM;
	for (size_t i = 0; i < v->n; i++) {
		char *p = index_path(c, "models", i);
		int rc = p ? build_source(c, v->items[i], p, false, &sl->sources[i]) : SMELT_ENOMEM;

		sl->n_sources++;
		free(p);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int build_slice(struct bctx *c, const struct rnode *n, const char *path,
                       struct smelt_slice *sl)
{
	static const char *const keys[] = {"sources", "base_model", "parameters",
	                                   "residual_weight"};
	const struct rnode *src, *rw;
	char *sp;

	sl->path = dup_or_fail(c, path);
	if (n->kind != RN_MAP) {
		smelt_diag_add(c->diag, SMELT_DIAG_ERROR, path,
		               "expected a mapping with 'sources:', found %s", kind_word(n));
		return 0;
	}
	check_keys(c, n, path, keys, 4, "a slice");
	rw = map_get(n, "residual_weight");
	if (rw && rw->kind != RN_NULL) {
		char *p = child_path(c, path, "residual_weight");

		/* in mergekit's slice schema, but nothing reads it */
		diag_unknown(c->diag, p, "has no effect (ignored, as in mergekit)");
		free(p);
	}
	sl->base_model = get_model_ref(c, n, "base_model", path, false);
	src = map_get(n, "sources");
	sp = child_path(c, path, "sources");
	if (!sp)
		return SMELT_ENOMEM;
	if (!src || src->kind != RN_SEQ || src->n == 0) {
		smelt_diag_add(c->diag, SMELT_DIAG_ERROR, sp,
		               "a slice needs a non-empty list of sources");
	} else {
		sl->sources = calloc(src->n, sizeof(*sl->sources));
		if (!sl->sources) {
			free(sp);
			return c->rc = SMELT_ENOMEM;
		}
		for (size_t i = 0; i < src->n; i++) {
			char *p = index_path(c, sp, i);
			int rc = p ? build_source(c, src->items[i], p, true, &sl->sources[i])
			           : SMELT_ENOMEM;

			sl->n_sources++;
			free(p);
			if (rc < 0) {
				free(sp);
				return rc;
			}
		}
	}
	free(sp);
	return build_pset(c, n, "parameters", path, &sl->params);
}

static int build_slices(struct bctx *c, const struct rnode *v)
{
	struct smelt_recipe *r = c->r;

	r->uses_slices = true;
	if (v->kind != RN_SEQ || v->n == 0) {
		smelt_diag_add(c->diag, SMELT_DIAG_ERROR, "slices",
		               "expected a non-empty list of slices");
		return 0;
	}
	r->slices = calloc(v->n, sizeof(*r->slices));
	if (!r->slices)
		return c->rc = SMELT_ENOMEM;
	for (size_t i = 0; i < v->n; i++) {
		char *p = index_path(c, "slices", i);
		int rc = p ? build_slice(c, v->items[i], p, &r->slices[i]) : SMELT_ENOMEM;

		r->n_slices++;
		free(p);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static void get_dtype(struct bctx *c, const struct rnode *m, const char *key, bool *has,
                      enum smelt_dtype *dt)
{
	static const char *const names[] = {"float32", "bfloat16", "float16", "float64"};
	char *s = get_string(c, m, key, "");
	enum smelt_dtype d;

	if (!s)
		return;
	if (smelt_dtype_parse_torch(s, &d) == 0 && smelt_dtype_is_float(d)) {
		*has = true;
		*dt = d;
	} else {
		const char *bare = strncmp(s, "torch.", 6) == 0 ? s + 6 : s;
		const char *hint = recipe_suggest(bare, names, 4);

		if (strcmp(bare, "int64") == 0 || smelt_dtype_parse_torch(s, &d) == 0)
			smelt_diag_add(c->diag, SMELT_DIAG_ERROR, key,
			               "'%s' is not a floating-point dtype; smelt merges in "
			               "float32, bfloat16, float16 or float64",
			               s);
		else if (hint)
			smelt_diag_add(c->diag, SMELT_DIAG_ERROR, key,
			               "unknown dtype '%s'; did you mean '%s'?", s, hint);
		else
			smelt_diag_add(c->diag, SMELT_DIAG_ERROR, key,
			               "unknown dtype '%s' (float32, bfloat16, float16, float64)",
			               s);
	}
	free(s);
}

static void build_tokenizer(struct bctx *c, const struct rnode *v)
{
	static const char *const keys[] = {"source", "tokens", "pad_to_multiple_of"};
	const struct rnode *t;

	c->r->has_tokenizer_block = true;
	if (v->kind != RN_MAP) {
		smelt_diag_add(c->diag, SMELT_DIAG_ERROR, "tokenizer",
		               "expected a mapping (source: base | union | MODEL)");
		return;
	}
	check_keys(c, v, "tokenizer", keys, 3, "tokenizer:");
	if (c->r->tokenizer_source)
		smelt_diag_add(c->diag, SMELT_DIAG_ERROR, "tokenizer",
		               "give either tokenizer_source or a tokenizer: block, not both");
	else
		c->r->tokenizer_source = get_string(c, v, "source", "tokenizer");
	t = map_get(v, "tokens");
	if (t && t->kind != RN_NULL)
		smelt_diag_add(c->diag, SMELT_DIAG_ERROR, "tokenizer.tokens",
		               "smelt does not build tokenizers: per-token embedding sources are "
		               "not supported (remove tokens:)");
	t = map_get(v, "pad_to_multiple_of");
	if (t && t->kind != RN_NULL)
		smelt_diag_add(c->diag, SMELT_DIAG_ERROR, "tokenizer.pad_to_multiple_of",
		               "smelt does not resize embeddings: pad_to_multiple_of is not "
		               "supported");
}

static void get_seed(struct bctx *c, const struct rnode *m)
{
	const struct rnode *v = map_get(m, "seed");
	char *end = NULL;
	unsigned long long s;

	if (!v || v->kind == RN_NULL)
		return;
	if ((v->kind == RN_NUM && v->is_int && v->num >= 0) ||
	    (v->kind == RN_STR && isdigit((unsigned char)v->str[0]))) {
		errno = 0;
		s = strtoull(v->str, &end, 0);
		if (v->kind == RN_NUM && (errno || *end))
			s = (unsigned long long)v->num; /* 1_000 or sexagesimal: use the value */
		else if (errno || *end)
			goto bad;
		c->r->has_seed = true;
		c->r->seed = s;
		return;
	}
bad:
	smelt_diag_add(c->diag, SMELT_DIAG_ERROR, "seed", "expected a non-negative integer");
}

static int add_ref(struct smelt_recipe *r, const char *ref)
{
	char **refs;

	if (!ref)
		return 0;
	for (size_t i = 0; i < r->n_model_refs; i++)
		if (strcmp(r->model_refs[i], ref) == 0)
			return 0;
	refs = realloc(r->model_refs, (r->n_model_refs + 1) * sizeof(*refs));
	if (!refs)
		return SMELT_ENOMEM;
	r->model_refs = refs;
	refs[r->n_model_refs] = recipe_strdup(ref);
	if (!refs[r->n_model_refs])
		return SMELT_ENOMEM;
	r->n_model_refs++;
	return 0;
}

/* Distinct references in order of first appearance. mergekit lists the base
 * model after the inputs only when it was not among them; the order here is
 * the textual order with the top-level base first when written first. */
static int collect_refs(struct smelt_recipe *r, bool base_first)
{
	int rc = 0;

	if (base_first)
		rc |= add_ref(r, r->base_model);
	for (size_t s = 0; s < r->n_slices; s++) {
		rc |= add_ref(r, r->slices[s].base_model);
		for (size_t i = 0; i < r->slices[s].n_sources; i++)
			rc |= add_ref(r, r->slices[s].sources[i].model);
	}
	rc |= add_ref(r, r->base_model);
	return rc ? SMELT_ENOMEM : 0;
}

static int build_recipe(struct bctx *c, const struct rnode *root)
{
	static const char *const keys[] = {
	    "merge_method",  "base_model", "models",      "slices",           "modules",
	    "parameters",    "dtype",      "out_dtype",   "tokenizer_source", "tokenizer",
	    "chat_template", "seed",       "embed_policy"};
	struct smelt_recipe *r = c->r;
	const struct rnode *models, *slices, *v;
	size_t base_pos = (size_t)-1, models_pos = (size_t)-1;
	int rc;

	if (root->kind != RN_MAP) {
		smelt_diag_add(
		    c->diag, SMELT_DIAG_ERROR, "",
		    "a recipe is a mapping of keys (merge_method:, models: ...), found %s",
		    kind_word(root));
		return SMELT_EINVAL;
	}
	check_keys(c, root, "", keys, sizeof(keys) / sizeof(keys[0]), "the recipe");
	r->merge_method = get_string(c, root, "merge_method", "");
	if (!r->merge_method && !map_get(root, "merge_method"))
		smelt_diag_add(c->diag, SMELT_DIAG_ERROR, "merge_method",
		               "missing: the recipe must name a merge_method");
	r->base_model = get_model_ref(c, root, "base_model", "", false);
	if (map_get(root, "modules"))
		smelt_diag_add(c->diag, SMELT_DIAG_ERROR, "modules",
		               "modules: (per-module merges of multi-module architectures) is not "
		               "supported; use models: or slices:");
	models = map_get(root, "models");
	slices = map_get(root, "slices");
	if (models && models->kind == RN_NULL)
		models = NULL;
	if (slices && slices->kind == RN_NULL)
		slices = NULL;
	if (models && slices) {
		smelt_diag_add(c->diag, SMELT_DIAG_ERROR, "slices",
		               "give either models: or slices:, not both");
	} else if (!models && !slices) {
		if (!map_get(root, "modules"))
			smelt_diag_add(c->diag, SMELT_DIAG_ERROR, "models",
			               "missing: the recipe needs models: or slices:");
	}
	if (slices)
		rc = build_slices(c, slices);
	else if (models)
		rc = build_models(c, models);
	else
		rc = 0;
	if (rc < 0)
		return rc;
	rc = build_pset(c, root, "parameters", "", &r->params);
	if (rc < 0)
		return rc;
	get_dtype(c, root, "dtype", &r->has_dtype, &r->dtype);
	get_dtype(c, root, "out_dtype", &r->has_out_dtype, &r->out_dtype);
	r->tokenizer_source = get_string(c, root, "tokenizer_source", "");
	if (r->tokenizer_source && strncmp(r->tokenizer_source, "model:", 6) == 0) {
		char *bare = dup_or_fail(c, r->tokenizer_source + 6);

		smelt_diag_add(
		    c->diag, SMELT_DIAG_WARNING, "tokenizer_source",
		    "the 'model:' prefix is obsolete (mergekit dropped it in July 2024); "
		    "read as '%s'",
		    r->tokenizer_source + 6);
		free(r->tokenizer_source);
		r->tokenizer_source = bare;
	}
	v = map_get(root, "tokenizer");
	if (v && v->kind != RN_NULL)
		build_tokenizer(c, v);
	r->chat_template = get_string(c, root, "chat_template", "");
	r->embed_policy = get_string(c, root, "embed_policy", "");
	get_seed(c, root);
	for (size_t i = 0; i < root->n; i++) {
		if (strcmp(root->keys[i], "base_model") == 0 && base_pos == (size_t)-1)
			base_pos = i;
		if ((strcmp(root->keys[i], "models") == 0 ||
		     strcmp(root->keys[i], "slices") == 0) &&
		    models_pos == (size_t)-1)
			models_pos = i;
	}
	if (collect_refs(r, base_pos < models_pos) < 0)
		return c->rc = SMELT_ENOMEM;
	if (!r->merge_method)
		return SMELT_EINVAL;
	return c->rc;
}

int smelt_recipe_parse(const char *text, size_t len, const char *what, struct smelt_recipe **out,
                       struct smelt_diag *diag)
{
	struct bctx c = {.diag = diag};
	struct rnode *root = NULL;
	struct smelt_recipe *r = NULL;
	size_t i = 0;
	bool json;
	int rc;

	*out = NULL;
	if (diag && what && !diag->file)
		diag->file = recipe_strdup(what);
	while (i < len && isspace((unsigned char)text[i]))
		i++;
	json = i < len && text[i] == '{';
	rc = json ? recipe_json_read(text, len, &root, diag)
	          : recipe_yaml_read(text, len, &root, diag);
	if (rc < 0)
		return rc;
	r = calloc(1, sizeof(*r));
	if (!r) {
		rc = SMELT_ENOMEM;
		goto fail;
	}
	r->dtype = r->out_dtype = SMELT_F32;
	r->source_is_yaml = !json;
	r->source_text = malloc(len + 1);
	r->source_name = what ? recipe_strdup(what) : NULL;
	if (!r->source_text || (what && !r->source_name)) {
		rc = SMELT_ENOMEM;
		goto fail;
	}
	memcpy(r->source_text, text, len);
	r->source_text[len] = '\0';
	c.r = r;
	rc = build_recipe(&c, root);
	if (rc < 0)
		goto fail;
	rnode_free(root);
	*out = r;
	return 0;
fail:
	rnode_free(root);
	smelt_recipe_free(r);
	return rc;
}

int smelt_recipe_load(const char *path, struct smelt_recipe **out, struct smelt_diag *diag)
{
	FILE *f = fopen(path, "rb");
	char *text = NULL;
	size_t len = 0, cap = 0;
	int rc;

	*out = NULL;
	if (!f) {
		smelt_diag_add(diag, SMELT_DIAG_ERROR, path, "cannot open: %s", strerror(errno));
		return errno == ENOENT ? SMELT_ENOTFOUND : SMELT_EIO;
	}
	for (;;) {
		size_t got;

		if (len + 4096 > cap) {
			char *t = realloc(text, cap = cap ? cap * 2 : 8192);

			if (!t) {
				fclose(f);
				free(text);
				return SMELT_ENOMEM;
			}
			text = t;
		}
		got = fread(text + len, 1, cap - len, f);
		len += got;
		if (got == 0)
			break;
	}
	if (ferror(f)) {
		smelt_diag_add(diag, SMELT_DIAG_ERROR, path, "read error");
		fclose(f);
		free(text);
		return SMELT_EIO;
	}
	fclose(f);
	rc = smelt_recipe_parse(text, len, path, out, diag);
	free(text);
	return rc;
}

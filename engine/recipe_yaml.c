/*
 * recipe_yaml.c: mergekit YAML -> document tree (struct rnode).
 *
 * libyaml does the syntax; the typing of plain scalars follows PyYAML's YAML
 * 1.1 implicit resolvers, because that is what mergekit reads recipes with:
 *   null  ~ null Null NULL and the empty scalar
 *   bool  yes/no/true/false/on/off in lower, Capitalised or UPPER case
 *   int   [-+]? 0b.., 0x.., 0<octal>, decimal, sexagesimal 1:30; '_' ignored
 *   float needs a dot: 1.5, 1., .5 (no sign before a bare dot), 1.0e-5 (the
 *         exponent needs its sign), sexagesimal 1:30.5, .inf, .nan
 * so `1e-5` and `1.0e5` are strings (pydantic later turns them into floats
 * where a float is expected; recipe.c warns). Quoted scalars are strings;
 * explicit !!str/!!int/!!float/!!bool/!!null tags are honoured. Anchors and
 * aliases are expanded by copying. Several documents in one file are an
 * error, as with mergekit-yaml's yaml.safe_load. Merge keys (`<<: *name`)
 * are applied as PyYAML's SafeLoader does.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "recipe_int.h"

/* ---- YAML 1.1 plain scalar typing ---- */

static bool is_one_of(const char *s, const char *const *words)
{
	for (; *words; words++)
		if (strcmp(s, *words) == 0)
			return true;
	return false;
}

static bool all_chars(const char *s, const char *set)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!strchr(set, *s))
			return false;
	return true;
}

/* Copy s without '_' into buf (size bytes); false if it does not fit. */
static bool strip_underscores(const char *s, char *buf, size_t size)
{
	size_t k = 0;

	for (; *s; s++) {
		if (*s == '_')
			continue;
		if (k + 1 >= size)
			return false;
		buf[k++] = *s;
	}
	buf[k] = '\0';
	return true;
}

/* "[1-9][0-9_]*(:[0-5]?[0-9])+" style: head digits then ':'-groups of one or
 * two digits, the two-digit ones starting with 0-5. tail_dot: the last group
 * may be followed by ".[0-9_]*" (float form). */
static bool match_sexagesimal(const char *s, bool float_form, const char **frac)
{
	const char *p = s;
	int groups = 0;

	if (float_form) {
		if (!isdigit((unsigned char)*p))
			return false;
	} else if (*p < '1' || *p > '9') {
		return false;
	}
	while (isdigit((unsigned char)*p) || *p == '_')
		p++;
	while (*p == ':') {
		p++;
		if (isdigit((unsigned char)p[0]) && isdigit((unsigned char)p[1])) {
			if (p[0] > '5')
				return false;
			p += 2;
		} else if (isdigit((unsigned char)p[0])) {
			p += 1;
		} else {
			return false;
		}
		groups++;
	}
	if (groups == 0)
		return false;
	if (float_form) {
		if (*p != '.')
			return false;
		*frac = p;
		p++;
		while (isdigit((unsigned char)*p) || *p == '_')
			p++;
	}
	return *p == '\0';
}

static double sexagesimal_value(const char *digits)
{
	/* digits: "a:b:c[.frac]" without sign and underscores */
	double value = 0;
	const char *p = digits;

	for (;;) {
		char *end;
		double part = strtod(p, &end);
		const char *colon = strchr(p, ':');

		if (!colon) {
			value = value * 60 + part;
			break;
		}
		value = value * 60 + (double)strtoll(p, NULL, 10);
		p = colon + 1;
		(void)end;
	}
	return value;
}

static bool resolve_int(const char *s, struct rnode *n)
{
	const char *p = s;
	bool neg = false;
	char buf[128];
	unsigned long long v;

	if (*p == '-' || *p == '+')
		neg = *p++ == '-';
	if (!*p)
		return false;
	if (p[0] == '0' && p[1] == 'b' && all_chars(p + 2, "01_")) {
		if (!strip_underscores(p + 2, buf, sizeof(buf)) || !*buf)
			return false;
		v = strtoull(buf, NULL, 2);
	} else if (p[0] == '0' && p[1] == 'x' && all_chars(p + 2, "0123456789abcdefABCDEF_")) {
		if (!strip_underscores(p + 2, buf, sizeof(buf)) || !*buf)
			return false;
		v = strtoull(buf, NULL, 16);
	} else if (p[0] == '0' && p[1] && all_chars(p + 1, "01234567_")) {
		if (!strip_underscores(p + 1, buf, sizeof(buf)))
			return false;
		v = *buf ? strtoull(buf, NULL, 8) : 0;
	} else if (strcmp(p, "0") == 0) {
		v = 0;
	} else if (*p >= '1' && *p <= '9' && all_chars(p, "0123456789_")) {
		if (!strip_underscores(p, buf, sizeof(buf)))
			return false;
		errno = 0;
		v = strtoull(buf, NULL, 10);
		if (errno == ERANGE) {
			n->kind = RN_NUM;
			n->is_int = true;
			n->num = neg ? -strtod(buf, NULL) : strtod(buf, NULL);
			return true;
		}
	} else if (match_sexagesimal(p, false, NULL)) {
		if (!strip_underscores(p, buf, sizeof(buf)))
			return false;
		n->kind = RN_NUM;
		n->is_int = true;
		n->num = neg ? -sexagesimal_value(buf) : sexagesimal_value(buf);
		return true;
	} else {
		return false;
	}
	n->kind = RN_NUM;
	n->is_int = true;
	n->num = neg && v ? -(double)v : (double)v;
	return true;
}

/* [0-9][0-9_]*\.[0-9_]*([eE][-+][0-9]+)? (after an optional sign) or
 * \.[0-9][0-9_]*([eE][-+][0-9]+)? (no sign allowed). */
static bool match_decimal_float(const char *p, bool had_sign)
{
	if (isdigit((unsigned char)*p)) {
		while (isdigit((unsigned char)*p) || *p == '_')
			p++;
		if (*p != '.')
			return false;
		p++;
		while (isdigit((unsigned char)*p) || *p == '_')
			p++;
	} else if (*p == '.' && !had_sign && isdigit((unsigned char)p[1])) {
		p++;
		while (isdigit((unsigned char)*p) || *p == '_')
			p++;
	} else {
		return false;
	}
	if (*p == 'e' || *p == 'E') {
		p++;
		if (*p != '-' && *p != '+')
			return false;
		p++;
		if (!isdigit((unsigned char)*p))
			return false;
		while (isdigit((unsigned char)*p))
			p++;
	}
	return *p == '\0';
}

static bool resolve_float(const char *s, struct rnode *n)
{
	static const char *const infs[] = {".inf", ".Inf", ".INF", NULL};
	static const char *const nans[] = {".nan", ".NaN", ".NAN", NULL};
	const char *p = s, *frac = NULL;
	bool neg = false, sign = false;
	char buf[128];

	if (is_one_of(s, nans)) {
		n->num = NAN;
		goto ok;
	}
	if (*p == '-' || *p == '+') {
		neg = *p++ == '-';
		sign = true;
	}
	if (is_one_of(p, infs)) {
		n->num = neg ? -INFINITY : INFINITY;
		goto ok;
	}
	if (match_decimal_float(p, sign)) {
		if (!strip_underscores(p, buf, sizeof(buf)))
			return false;
		n->num = strtod(buf, NULL);
		if (neg)
			n->num = -n->num;
		goto ok;
	}
	if (match_sexagesimal(p, true, &frac)) {
		if (!strip_underscores(p, buf, sizeof(buf)))
			return false;
		n->num = sexagesimal_value(buf);
		if (neg)
			n->num = -n->num;
		goto ok;
	}
	return false;
ok:
	n->kind = RN_NUM;
	n->is_int = false;
	return true;
}

void recipe_yaml11_resolve(const char *s, struct rnode *n)
{
	static const char *const nulls[] = {"", "~", "null", "Null", "NULL", NULL};
	static const char *const trues[] = {"yes",  "Yes", "YES", "true", "True",
	                                    "TRUE", "on",  "On",  "ON",   NULL};
	static const char *const falses[] = {"no",    "No",  "NO",  "false", "False",
	                                     "FALSE", "off", "Off", "OFF",   NULL};

	if (is_one_of(s, nulls)) {
		n->kind = RN_NULL;
	} else if (is_one_of(s, trues)) {
		n->kind = RN_BOOL;
		n->b = true;
	} else if (is_one_of(s, falses)) {
		n->kind = RN_BOOL;
		n->b = false;
	} else if (!resolve_int(s, n) && !resolve_float(s, n)) {
		n->kind = RN_STR;
	}
}

/* ---- tree helpers ---- */

struct rnode *rnode_new(enum rn_kind kind, int line)
{
	struct rnode *n = calloc(1, sizeof(*n));

	if (n) {
		n->kind = kind;
		n->line = line;
	}
	return n;
}

void rnode_free(struct rnode *n)
{
	if (!n)
		return;
	for (size_t i = 0; i < n->n; i++) {
		rnode_free(n->items[i]);
		if (n->keys)
			free(n->keys[i]);
	}
	free(n->items);
	free(n->keys);
	free(n->str);
	free(n);
}

int rnode_append(struct rnode *parent, const char *key, struct rnode *child)
{
	struct rnode **items = realloc(parent->items, (parent->n + 1) * sizeof(*items));
	char *k = NULL;

	if (!items)
		goto fail;
	parent->items = items;
	if (parent->kind == RN_MAP) {
		char **keys = realloc(parent->keys, (parent->n + 1) * sizeof(*keys));

		if (!keys)
			goto fail;
		parent->keys = keys;
		k = recipe_strdup(key ? key : "");
		if (!k)
			goto fail;
		parent->keys[parent->n] = k;
	}
	parent->items[parent->n++] = child;
	return 0;
fail:
	rnode_free(child);
	return SMELT_ENOMEM;
}

static struct rnode *rnode_copy(const struct rnode *src)
{
	struct rnode *n = rnode_new(src->kind, src->line);

	if (!n)
		return NULL;
	n->b = src->b;
	n->num = src->num;
	n->is_int = src->is_int;
	if (src->str && !(n->str = recipe_strdup(src->str)))
		goto fail;
	for (size_t i = 0; i < src->n; i++) {
		struct rnode *c = rnode_copy(src->items[i]);

		if (!c || rnode_append(n, src->keys ? src->keys[i] : NULL, c) < 0)
			goto fail;
	}
	return n;
fail:
	rnode_free(n);
	return NULL;
}

/* ---- event reader ---- */

struct anchor {
	char *name;
	const struct rnode *node;
};

struct yreader {
	yaml_parser_t parser;
	struct anchor *anchors;
	size_t n_anchors;
	struct smelt_diag *diag;
	bool failed; /* a diag error was already recorded */
};

static int syntax_error(struct yreader *y)
{
	const yaml_parser_t *p = &y->parser;

	if (!y->failed) {
		if (p->error == YAML_MEMORY_ERROR)
			return SMELT_ENOMEM;
		smelt_diag_add(y->diag, SMELT_DIAG_ERROR, "",
		               "YAML syntax error at line %zu: %s%s%s", p->problem_mark.line + 1,
		               p->problem ? p->problem : "unreadable", p->context ? " " : "",
		               p->context ? p->context : "");
		y->failed = true;
	}
	return SMELT_EFORMAT;
}

static int remember_anchor(struct yreader *y, const yaml_char_t *anchor, const struct rnode *n)
{
	struct anchor *a;

	if (!anchor)
		return 0;
	a = realloc(y->anchors, (y->n_anchors + 1) * sizeof(*a));
	if (!a)
		return SMELT_ENOMEM;
	y->anchors = a;
	a[y->n_anchors].name = recipe_strdup((const char *)anchor);
	if (!a[y->n_anchors].name)
		return SMELT_ENOMEM;
	a[y->n_anchors++].node = n;
	return 0;
}

static void type_scalar(const yaml_event_t *ev, struct rnode *n)
{
	const char *tag = (const char *)ev->data.scalar.tag;
	const char *text = n->str;
	struct rnode probe = {0};

	if (!tag) {
		if (ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE)
			recipe_yaml11_resolve(text, n);
		return;
	}
	/* An explicit tag: honour the standard ones, anything else is text. */
	if (strcmp(tag, "tag:yaml.org,2002:str") == 0)
		return;
	recipe_yaml11_resolve(text, &probe);
	if ((strcmp(tag, "tag:yaml.org,2002:int") == 0 && probe.kind == RN_NUM && probe.is_int) ||
	    (strcmp(tag, "tag:yaml.org,2002:float") == 0 && probe.kind == RN_NUM) ||
	    (strcmp(tag, "tag:yaml.org,2002:bool") == 0 && probe.kind == RN_BOOL) ||
	    (strcmp(tag, "tag:yaml.org,2002:null") == 0 && probe.kind == RN_NULL)) {
		n->kind = probe.kind;
		n->b = probe.b;
		n->num = probe.num;
		n->is_int = strcmp(tag, "tag:yaml.org,2002:int") == 0;
	} else if (strcmp(tag, "tag:yaml.org,2002:float") == 0) {
		/* !!float 1e-5: Python's float() accepts what the resolver did not */
		char *end;
		double v = strtod(text, &end);

		if (*text && *end == '\0') {
			n->kind = RN_NUM;
			n->num = v;
		}
	}
}

static int read_node(struct yreader *y, yaml_event_t *ev, struct rnode **out);

static bool map_has(const struct rnode *m, const char *key)
{
	for (size_t i = 0; i < m->n; i++)
		if (strcmp(m->keys[i], key) == 0)
			return true;
	return false;
}

/* YAML 1.1 merge keys, as PyYAML's SafeLoader applies them: `<<: *a` (or a
 * list of aliases) copies the entries of the merged mappings that the
 * mapping does not set itself; the first merged mapping wins. */
static int apply_merge_keys(struct yreader *y, struct rnode *n)
{
	struct rnode *out;

	if (!map_has(n, "<<"))
		return 0;
	out = rnode_new(RN_MAP, n->line);
	if (!out)
		return SMELT_ENOMEM;
	for (size_t i = 0; i < n->n; i++) {
		const struct rnode *v = n->items[i];
		size_t count = v->kind == RN_SEQ ? v->n : 1;

		if (strcmp(n->keys[i], "<<") != 0)
			continue;
		for (size_t k = 0; k < count; k++) {
			const struct rnode *src = v->kind == RN_SEQ ? v->items[k] : v;

			if (src->kind != RN_MAP) {
				smelt_diag_add(y->diag, SMELT_DIAG_ERROR, "",
				               "line %d: '<<' must merge a mapping", src->line);
				y->failed = true;
				rnode_free(out);
				return SMELT_EFORMAT;
			}
			for (size_t j = 0; j < src->n; j++) {
				struct rnode *c;

				if (map_has(n, src->keys[j]) || map_has(out, src->keys[j]))
					continue;
				c = rnode_copy(src->items[j]);
				if (!c || rnode_append(out, src->keys[j], c) < 0) {
					rnode_free(out);
					return SMELT_ENOMEM;
				}
			}
		}
	}
	/* then the mapping's own entries, in order */
	for (size_t i = 0; i < n->n; i++) {
		if (strcmp(n->keys[i], "<<") == 0)
			continue;
		if (rnode_append(out, n->keys[i], n->items[i]) < 0) {
			n->items[i] = NULL;
			rnode_free(out);
			return SMELT_ENOMEM;
		}
		n->items[i] = NULL;
	}
	for (size_t i = 0; i < n->n; i++) {
		rnode_free(n->items[i]);
		free(n->keys[i]);
	}
	free(n->items);
	free(n->keys);
	n->items = out->items;
	n->keys = out->keys;
	n->n = out->n;
	out->items = NULL;
	out->keys = NULL;
	out->n = 0;
	rnode_free(out);
	return 0;
}

static int read_children(struct yreader *y, struct rnode *n, yaml_event_type_t end_type)
{
	for (;;) {
		yaml_event_t ev;
		struct rnode *key = NULL, *val = NULL;
		int rc;

		if (!yaml_parser_parse(&y->parser, &ev))
			return syntax_error(y);
		if (ev.type == end_type) {
			yaml_event_delete(&ev);
			return 0;
		}
		rc = read_node(y, &ev, n->kind == RN_MAP ? &key : &val);
		yaml_event_delete(&ev);
		if (rc < 0)
			return rc;
		if (n->kind == RN_MAP) {
			if (key->kind == RN_SEQ || key->kind == RN_MAP) {
				smelt_diag_add(y->diag, SMELT_DIAG_ERROR, "",
				               "line %d: a mapping key must be a plain scalar",
				               key->line);
				y->failed = true;
				rnode_free(key);
				return SMELT_EFORMAT;
			}
			if (!yaml_parser_parse(&y->parser, &ev)) {
				rnode_free(key);
				return syntax_error(y);
			}
			rc = read_node(y, &ev, &val);
			yaml_event_delete(&ev);
			if (rc < 0) {
				rnode_free(key);
				return rc;
			}
			rc = rnode_append(n, key->str ? key->str : "", val);
			rnode_free(key);
		} else {
			rc = rnode_append(n, NULL, val);
		}
		if (rc < 0)
			return rc;
	}
}

static int read_node(struct yreader *y, yaml_event_t *ev, struct rnode **out)
{
	int line = (int)ev->start_mark.line + 1;
	struct rnode *n = NULL;
	int rc;

	switch (ev->type) {
	case YAML_ALIAS_EVENT:
		for (size_t i = y->n_anchors; i-- > 0;) {
			if (strcmp(y->anchors[i].name, (const char *)ev->data.alias.anchor) == 0) {
				n = rnode_copy(y->anchors[i].node);
				if (!n)
					return SMELT_ENOMEM;
				*out = n;
				return 0;
			}
		}
		smelt_diag_add(y->diag, SMELT_DIAG_ERROR, "", "line %d: unknown alias *%s", line,
		               (const char *)ev->data.alias.anchor);
		y->failed = true;
		return SMELT_EFORMAT;
	case YAML_SCALAR_EVENT:
		n = rnode_new(RN_STR, line);
		if (!n)
			return SMELT_ENOMEM;
		n->str = malloc(ev->data.scalar.length + 1);
		if (!n->str)
			goto nomem;
		memcpy(n->str, ev->data.scalar.value, ev->data.scalar.length);
		n->str[ev->data.scalar.length] = '\0';
		type_scalar(ev, n);
		rc = remember_anchor(y, ev->data.scalar.anchor, n);
		break;
	case YAML_SEQUENCE_START_EVENT:
	case YAML_MAPPING_START_EVENT: {
		bool map = ev->type == YAML_MAPPING_START_EVENT;

		n = rnode_new(map ? RN_MAP : RN_SEQ, line);
		if (!n)
			return SMELT_ENOMEM;
		rc = read_children(y, n, map ? YAML_MAPPING_END_EVENT : YAML_SEQUENCE_END_EVENT);
		if (rc == 0 && map)
			rc = apply_merge_keys(y, n);
		if (rc == 0)
			rc = remember_anchor(
			    y, map ? ev->data.mapping_start.anchor : ev->data.sequence_start.anchor,
			    n);
		break;
	}
	default: return syntax_error(y);
	}
	if (rc < 0) {
		rnode_free(n);
		return rc;
	}
	*out = n;
	return 0;
nomem:
	rnode_free(n);
	return SMELT_ENOMEM;
}

/* Read events until one that is not a stream/document start, or the end. */
static int next_content_event(struct yreader *y, yaml_event_t *ev)
{
	for (;;) {
		if (!yaml_parser_parse(&y->parser, ev))
			return syntax_error(y);
		if (ev->type != YAML_STREAM_START_EVENT && ev->type != YAML_DOCUMENT_START_EVENT)
			return 0;
		yaml_event_delete(ev);
	}
}

int recipe_yaml_read(const char *text, size_t len, struct rnode **out, struct smelt_diag *diag)
{
	struct yreader y = {.diag = diag};
	struct rnode *root = NULL;
	yaml_event_t ev;
	int rc;

	*out = NULL;
	if (!yaml_parser_initialize(&y.parser))
		return SMELT_ENOMEM;
	yaml_parser_set_input_string(&y.parser, (const unsigned char *)text, len);
	rc = next_content_event(&y, &ev);
	if (rc < 0)
		goto done;
	if (ev.type == YAML_STREAM_END_EVENT) {
		yaml_event_delete(&ev);
		root = rnode_new(RN_NULL, 1);
		rc = root ? 0 : SMELT_ENOMEM;
		goto done;
	}
	rc = read_node(&y, &ev, &root);
	yaml_event_delete(&ev);
	if (rc < 0)
		goto done;
	/* document end, then either the stream end or a second document */
	for (;;) {
		if (!yaml_parser_parse(&y.parser, &ev)) {
			rc = syntax_error(&y);
			goto done;
		}
		if (ev.type == YAML_DOCUMENT_START_EVENT) {
			smelt_diag_add(
			    diag, SMELT_DIAG_ERROR, "",
			    "line %zu: a second YAML document ('---'); a recipe file holds "
			    "one recipe (multi-stage files are not supported)",
			    ev.start_mark.line + 1);
			yaml_event_delete(&ev);
			rc = SMELT_EFORMAT;
			goto done;
		}
		if (ev.type == YAML_STREAM_END_EVENT) {
			yaml_event_delete(&ev);
			break;
		}
		yaml_event_delete(&ev);
	}
done:
	for (size_t i = 0; i < y.n_anchors; i++)
		free(y.anchors[i].name);
	free(y.anchors);
	yaml_parser_delete(&y.parser);
	if (rc < 0) {
		rnode_free(root);
		return rc;
	}
	*out = root;
	return 0;
}

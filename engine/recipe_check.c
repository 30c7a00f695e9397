/*
 * recipe_check.c: method-aware validation of a parsed recipe, before any
 * download or tensor read. Everything is checked against the method registry
 * as it is at run time (parameter tables, scopes, ranges, base rule, model
 * counts); nothing about individual methods is hard-coded here.
 *
 * What needs checkpoints (layer counts, shapes, vocabularies) is left to the
 * planner: a models: recipe has no layer numbers, and slice ranges can only
 * be compared with the real layer count once the model is open.
 */
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "recipe_int.h"
#include "smelt/method.h"

struct vctx {
	const struct smelt_recipe *r;
	const struct smelt_method *m;
	struct smelt_diag *diag;
};

static void __attribute__((format(printf, 3, 4)))
err_at(struct vctx *v, const char *path, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	smelt_diag_add(v->diag, SMELT_DIAG_ERROR, path, "%s", msg);
}

static void __attribute__((format(printf, 4, 5)))
warn_at(struct vctx *v, bool strict, const char *path, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	smelt_diag_add(v->diag, SMELT_DIAG_WARNING, path, "%s", msg);
	if (strict && v->diag && v->diag->n)
		v->diag->items[v->diag->n - 1].strict = true;
}

/* ---- method name ---- */

static const struct smelt_method *check_method(struct vctx *v)
{
	const struct smelt_method *m;
	const char **names;
	size_t n = smelt_method_count();
	char norm[128];

	if (!v->r->merge_method)
		return NULL;
	m = smelt_method_find(v->r->merge_method);
	if (m)
		return m;
	/* dare-ties, DARE_TIES: the spelling differs only in case or '-' */
	snprintf(norm, sizeof(norm), "%s", v->r->merge_method);
	for (char *p = norm; *p; p++)
		*p = *p == '-' || *p == ' ' ? '_' : (char)tolower((unsigned char)*p);
	names = calloc(n ? n : 1, sizeof(*names));
	if (names) {
		const char *hint;

		for (size_t i = 0; i < n; i++)
			names[i] = smelt_method_at(i)->name;
		m = smelt_method_find(norm);
		hint = m ? m->name : recipe_suggest(v->r->merge_method, names, n);
		if (hint)
			err_at(v, "merge_method", "unknown merge method '%s'; did you mean '%s'?",
			       v->r->merge_method, hint);
		else
			err_at(v, "merge_method",
			       "unknown merge method '%s' (`smelt methods` lists them)",
			       v->r->merge_method);
		free(names);
	}
	return NULL;
}

/* ---- model references ---- */

bool smelt_model_ref_is_lora(const char *ref)
{
	/* mergekit splits a reference at '+' into model and LoRA adapter */
	return ref && strchr(ref, '+') != NULL;
}

char *smelt_model_ref_expand(const char *ref)
{
	const char *home = getenv("HOME");

	if (ref && home && ref[0] == '~' && (ref[1] == '/' || ref[1] == '\0'))
		return recipe_printf("%s%s", home, ref + 1);
	return recipe_strdup(ref);
}

static bool looks_like_hub_id(const char *ref)
{
	const char *slash = strchr(ref, '/');

	if (!slash || ref[0] == '/' || ref[0] == '.' || ref[0] == '~' || strchr(ref, '\\') ||
	    strchr(slash + 1, '/') || (isalpha((unsigned char)ref[0]) && ref[1] == ':'))
		return false;
	return true;
}

static void check_ref(struct vctx *v, const char *ref, const char *path)
{
	if (!ref)
		return;
	if (smelt_model_ref_is_lora(ref)) {
		err_at(v, path,
		       "'%s' is a model+LoRA reference; LoRA adapters are not supported yet "
		       "(merge the adapter into its model first, then use that folder)",
		       ref);
		return;
	}
	if (looks_like_hub_id(ref)) {
		for (const char *p = ref; *p; p++) {
			if (isspace((unsigned char)*p)) {
				warn_at(
				    v, false, path,
				    "'%s' contains whitespace, so it is not a valid Hugging Face "
				    "repository id (mergekit keeps it verbatim too); check the "
				    "recipe",
				    ref);
				break;
			}
		}
	}
}

static void check_refs(struct vctx *v)
{
	const struct smelt_recipe *r = v->r;
	char path[512];

	check_ref(v, r->base_model, "base_model");
	for (size_t s = 0; s < r->n_slices; s++) {
		const struct smelt_slice *sl = &r->slices[s];

		snprintf(path, sizeof(path), "%s.base_model", sl->path ? sl->path : "");
		check_ref(v, sl->base_model, path);
		for (size_t i = 0; i < sl->n_sources; i++) {
			snprintf(path, sizeof(path), "%s.model",
			         sl->sources[i].path ? sl->sources[i].path : "");
			check_ref(v, sl->sources[i].model, path);
		}
	}
}

/* ---- slices ---- */

static void check_ranges(struct vctx *v)
{
	const struct smelt_recipe *r = v->r;

	for (size_t s = 0; r->uses_slices && s < r->n_slices; s++) {
		const struct smelt_slice *sl = &r->slices[s];
		int len0 = -1;
		size_t first = 0;

		for (size_t i = 0; i < sl->n_sources; i++) {
			const struct smelt_source *src = &sl->sources[i];
			char path[512];

			if (!src->has_range)
				continue;
			snprintf(path, sizeof(path), "%s.layer_range", src->path);
			if (src->layer_start < 0 || src->layer_end < 0) {
				err_at(v, path, "layer numbers must be non-negative");
				continue;
			}
			if (src->layer_start >= src->layer_end) {
				err_at(v, path,
				       "[%d, %d) is empty: the end is exclusive, so [a, b) takes "
				       "layers a .. b-1 and needs a < b",
				       src->layer_start, src->layer_end);
				continue;
			}
			if (len0 < 0) {
				len0 = src->layer_end - src->layer_start;
				first = i;
			} else if (src->layer_end - src->layer_start != len0) {
				err_at(
				    v, path,
				    "covers %d layers but %s covers %d: the sources of one slice "
				    "must have the same length",
				    src->layer_end - src->layer_start, sl->sources[first].path,
				    len0);
			}
		}
	}
}

/* ---- parameters ---- */

static void alias_list(const struct smelt_method *m, const char **out, size_t *n, size_t cap,
                       char *buf, size_t bufsize)
{
	size_t used = 0;

	*n = 0;
	for (int i = 0; i < m->n_params && *n < cap; i++) {
		const char *a = m->params[i].aliases;

		out[(*n)++] = m->params[i].name;
		while (a && *a && *n < cap) {
			size_t len = strcspn(a, ",");

			if (used + len + 1 > bufsize)
				break;
			memcpy(buf + used, a, len);
			buf[used + len] = '\0';
			out[(*n)++] = buf + used;
			used += len + 1;
			a += len;
			if (*a == ',')
				a++;
		}
	}
}

static void fmt_bound(char *buf, size_t size, double x)
{
	if (isinf(x))
		snprintf(buf, size, "%s", x < 0 ? "-inf" : "inf");
	else
		snprintf(buf, size, "%g", x);
}

/* How to write a number string so YAML 1.1 reads a float: "1e-8" ->
 * "1.0e-8", "2E5" -> "2.0e+5"; other text is quoted back unchanged. */
static void yaml11_float_spelling(const char *s, char *out, size_t size)
{
	const char *e = strpbrk(s, "eE");
	int mant = e ? (int)(e - s) : (int)strlen(s);
	bool dot = memchr(s, '.', (size_t)mant) != NULL;

	if (!e) {
		snprintf(out, size, "%s%s", s, dot ? "" : ".0");
		return;
	}
	snprintf(out, size, "%.*s%s%c%s%s", mant, s, dot ? "" : ".0", *e,
	         e[1] == '-' || e[1] == '+' ? "" : "+", e + 1);
}

/* One scalar (or list element) against the parameter's definition. */
static void check_scalar(struct vctx *v, const struct smelt_pvalue *pv,
                         const struct smelt_param_def *def)
{
	const char *path = pv->path ? pv->path : "";
	const char *mname = v->m->name;
	double x;

	switch (pv->kind) {
	case SMELT_PV_NULL: err_at(v, path, "has no value"); return;
	case SMELT_PV_BOOL:
		if (def->type == SMELT_PARAM_FLOAT || def->type == SMELT_PARAM_INT)
			err_at(v, path, "a bool (%s) where %s expects a number for %s",
			       pv->b ? "true" : "false", mname, def->name);
		else if (def->type == SMELT_PARAM_REGEX_LIST)
			err_at(v, path, "%s expects a list of regular expressions", def->name);
		return;
	case SMELT_PV_STRING:
		if (def->type == SMELT_PARAM_REGEX_LIST)
			return;
		if (!smelt_pvalue_number(pv, &x)) {
			err_at(v, path, "expected %s, found the string '%s'",
			       def->type == SMELT_PARAM_BOOL ? "true or false" : "a number",
			       pv->str);
			return;
		}
		{
			char clear[96];

			yaml11_float_spelling(pv->str, clear, sizeof(clear));
			warn_at(v, false, path,
			        "'%s' is a string in YAML 1.1 (a float needs a decimal point and "
			        "a signed exponent there); read as the number %g, as mergekit's "
			        "schema does (write %s to be clear)",
			        pv->str, x, clear);
		}
		break;
	case SMELT_PV_NUMBER: x = pv->num; break;
	default: return;
	}
	if (def->type == SMELT_PARAM_REGEX_LIST) {
		err_at(v, path, "%s expects a list of regular expressions", def->name);
		return;
	}
	if (def->type == SMELT_PARAM_BOOL)
		return;
	if (isnan(x)) {
		err_at(v, path, "is NaN");
		return;
	}
	if (def->type == SMELT_PARAM_INT && x != floor(x))
		err_at(v, path, "%s takes a whole number, found %g", def->name, x);
	if (x < def->min || x > def->max) {
		char lo[32], hi[32];

		fmt_bound(lo, sizeof(lo), def->min);
		fmt_bound(hi, sizeof(hi), def->max);
		err_at(v, path, "%g is outside the range [%s, %s] that %s accepts for %s", x, lo,
		       hi, mname, def->name);
	}
}

static void check_value(struct vctx *v, const struct smelt_pvalue *pv,
                        const struct smelt_param_def *def, bool in_cond)
{
	const char *path = pv->path ? pv->path : "";

	switch (pv->kind) {
	case SMELT_PV_LIST:
		if (pv->n_items == 0) {
			err_at(v, path, "empty list");
			return;
		}
		if (def->type == SMELT_PARAM_REGEX_LIST) {
			for (size_t i = 0; i < pv->n_items; i++)
				if (pv->items[i].kind != SMELT_PV_STRING)
					err_at(v, pv->items[i].path ? pv->items[i].path : path,
					       "%s expects regular expressions (strings)",
					       def->name);
			return;
		}
		/* a gradient (numbers) or a step list (bools, strings): each
		 * item must fit the parameter on its own */
		for (size_t i = 0; i < pv->n_items; i++)
			check_scalar(v, &pv->items[i], def);
		return;
	case SMELT_PV_CONDS:
		for (size_t i = 0; i < pv->n_items; i++)
			if (pv->items[i].value)
				check_value(v, pv->items[i].value, def, true);
		return;
	default: (void)in_cond; check_scalar(v, pv, def);
	}
}

static void check_pset(struct vctx *v, const struct smelt_pset *ps, bool source_level)
{
	const struct smelt_method *m = v->m;
	const char *cands[96];
	char buf[1024];
	size_t n_cands;

	alias_list(m, cands, &n_cands, 96, buf, sizeof(buf));
	for (size_t i = 0; i < ps->n; i++) {
		const char *name = ps->names[i];
		const char *path = ps->values[i].path ? ps->values[i].path : name;
		int k = smelt_method_param(m, name);
		const struct smelt_param_def *def;

		if (k < 0) {
			const char *hint = recipe_suggest(name, cands, n_cands);

			if (hint)
				warn_at(
				    v, true, path,
				    "'%s' is not a parameter of %s (ignored); did you mean '%s'?",
				    name, m->name, hint);
			else
				warn_at(v, true, path, "'%s' is not a parameter of %s (ignored)",
				        name, m->name);
			continue;
		}
		def = &m->params[k];
		if (source_level && def->scope == SMELT_SCOPE_GLOBAL) {
			warn_at(
			    v, true, path,
			    "%s takes one '%s' per tensor, not one per model: a per-model value "
			    "is ignored (set it under the top-level or slice parameters:)",
			    m->name, def->name);
			continue;
		}
		check_value(v, &ps->values[i], def, false);
	}
}

static void check_params(struct vctx *v)
{
	const struct smelt_recipe *r = v->r;

	check_pset(v, &r->params, false);
	for (size_t s = 0; s < r->n_slices; s++) {
		check_pset(v, &r->slices[s].params, false);
		for (size_t i = 0; i < r->slices[s].n_sources; i++)
			check_pset(v, &r->slices[s].sources[i].params, true);
	}
}

/* `t: 0.5` at the top level instead of under parameters: (an indentation
 * slip seen in published recipes): point at the right place. */
static void hint_misplaced_params(struct vctx *v)
{
	size_t n = v->diag->n;

	for (size_t i = 0; i < n; i++) {
		const struct smelt_diag_item *it = &v->diag->items[i];

		if (!it->strict || !*it->path || strpbrk(it->path, ".[") ||
		    strncmp(it->msg, "unknown key in the recipe", 25) != 0 ||
		    smelt_method_param(v->m, it->path) < 0)
			continue;
		warn_at(v, false, it->path,
		        "'%s' is a parameter of %s: it belongs under parameters: (check the "
		        "indentation); here it has no effect",
		        it->path, v->m->name);
	}
}

static const char *slice_base(const struct smelt_recipe *r, const struct smelt_slice *sl)
{
	return sl->base_model ? sl->base_model : r->base_model;
}

/* Is this source the slice's base model, taken out of the merged inputs?
 * Only for methods that use a base: for the others (linear, karcher,
 * passthrough) a listed base is one more input like any other. */
static bool is_base(const struct smelt_recipe *r, const struct smelt_slice *sl,
                    const struct smelt_source *src)
{
	const char *b = slice_base(r, sl);

	/* compared as written, like mergekit ("/a" and "//a" differ) */
	return b && src->model && strcmp(b, src->model) == 0;
}

static bool uses_base(const struct smelt_method *m)
{
	return m->base == SMELT_BASE_REQUIRED || m->base == SMELT_BASE_OPTIONAL;
}

static void check_required(struct vctx *v)
{
	const struct smelt_recipe *r = v->r;
	const struct smelt_method *m = v->m;

	for (size_t s = 0; s < r->n_slices; s++) {
		const struct smelt_slice *sl = &r->slices[s];

		for (int p = 0; p < m->n_params; p++) {
			const struct smelt_param_def *def = &m->params[p];
			bool at_slice = recipe_pset_find(&sl->params, m, def->name) >= 0 ||
			                recipe_pset_find(&r->params, m, def->name) >= 0;
			char path[512];

			if (!def->required || at_slice)
				continue;
			if (def->scope == SMELT_SCOPE_GLOBAL) {
				snprintf(path, sizeof(path), "%s%sparameters.%s",
				         r->uses_slices ? sl->path : "", r->uses_slices ? "." : "",
				         def->name);
				err_at(v, path, "required by %s but not set", m->name);
				continue;
			}
			for (size_t i = 0; i < sl->n_sources; i++) {
				const struct smelt_source *src = &sl->sources[i];

				if ((uses_base(m) && is_base(r, sl, src)) ||
				    recipe_pset_find(&src->params, m, def->name) >= 0)
					continue;
				snprintf(path, sizeof(path), "%s.parameters.%s", src->path,
				         def->name);
				err_at(v, path, "required by %s but not set (model %s)", m->name,
				       src->model ? src->model : "?");
			}
		}
	}
}

static void check_counts(struct vctx *v)
{
	const struct smelt_recipe *r = v->r;
	const struct smelt_method *m = v->m;

	for (size_t s = 0; s < r->n_slices; s++) {
		const struct smelt_slice *sl = &r->slices[s];
		const char *base = slice_base(r, sl);
		const char *path = r->uses_slices ? sl->path : "models";
		bool base_listed = false;
		int inputs = 0;

		for (size_t i = 0; i < sl->n_sources; i++) {
			if (is_base(r, sl, &sl->sources[i]))
				base_listed = true;
			else
				inputs++;
		}
		switch (m->base) {
		case SMELT_BASE_REQUIRED:
			if (!base) {
				err_at(v, r->uses_slices ? path : "base_model",
				       "%s needs a base_model", m->name);
				continue;
			}
			/* fall through */
		case SMELT_BASE_OPTIONAL:
			if (base && r->uses_slices && !base_listed) {
				err_at(
				    v, path,
				    "the base model %s is not one of this slice's sources, so its "
				    "layers are not available (mergekit: 'Base model not in input "
				    "tensors'); add it as a source with the same layer_range",
				    base);
				continue; /* the model count would only repeat it */
			}
			break;
		case SMELT_BASE_AS_MODEL:
			/* a listed base is one more input; an unlisted one is unused */
			if (base_listed)
				inputs++;
			break;
		case SMELT_BASE_NONE:
			if (base)
				warn_at(v, false,
				        r->uses_slices && sl->base_model ? path : "base_model",
				        "%s does not use a base model (ignored)", m->name);
			if (base_listed)
				inputs++;
			break;
		}
		if (inputs < m->min_models)
			err_at(v, path, "%s needs at least %d model%s%s; %s has %d", m->name,
			       m->min_models, m->min_models == 1 ? "" : "s",
			       m->base == SMELT_BASE_REQUIRED || m->base == SMELT_BASE_OPTIONAL
			           ? " besides the base"
			           : "",
			       r->uses_slices ? "this slice" : "the recipe", inputs);
		if (m->max_models > 0 && inputs > m->max_models)
			err_at(v, path, "%s takes at most %d model%s%s; %s has %d", m->name,
			       m->max_models, m->max_models == 1 ? "" : "s",
			       m->base == SMELT_BASE_REQUIRED || m->base == SMELT_BASE_OPTIONAL
			           ? " besides the base"
			           : "",
			       r->uses_slices ? "this slice" : "the recipe", inputs);
	}
}

/* ---- the rest of the top level ---- */

static void check_misc(struct vctx *v)
{
	static const char *const templates[] = {"auto",   "alpaca",  "chatml",
	                                        "llama3", "mistral", "exaone"};
	static const char *const policies[] = {"strict", "common", "mean"};
	const struct smelt_recipe *r = v->r;
	const char *tpath = r->has_tokenizer_block ? "tokenizer.source" : "tokenizer_source";

	if (r->tokenizer_source && strcmp(r->tokenizer_source, "union") == 0)
		err_at(v, tpath,
		       "smelt does not build union tokenizers; use 'base' or one model's "
		       "tokenizer (embed_policy: common|mean handles differing vocab sizes)");
	else if (r->tokenizer_source && strcmp(r->tokenizer_source, "base") != 0)
		check_ref(v, r->tokenizer_source, tpath);
	if (r->tokenizer_source && strcmp(r->tokenizer_source, "base") == 0 && !r->base_model) {
		bool any = false;

		for (size_t s = 0; s < r->n_slices; s++)
			any |= r->slices[s].base_model != NULL;
		if (!any)
			err_at(v, tpath, "'base' needs a base_model");
	}
	if (r->chat_template) {
		bool known = false;

		for (size_t i = 0; i < 6; i++)
			known |= strcmp(r->chat_template, templates[i]) == 0;
		if (!known && !(strlen(r->chat_template) >= 20 && strchr(r->chat_template, '{'))) {
			const char *hint = recipe_suggest(r->chat_template, templates, 6);

			err_at(v, "chat_template",
			       "'%s' is neither a built-in template (auto, alpaca, chatml, llama3, "
			       "mistral, exaone) nor a Jinja template%s%s%s",
			       r->chat_template, hint ? "; did you mean '" : "", hint ? hint : "",
			       hint ? "'?" : "");
		}
	}
	if (r->embed_policy) {
		bool known = false;

		for (size_t i = 0; i < 3; i++)
			known |= strcmp(r->embed_policy, policies[i]) == 0;
		if (!known)
			err_at(v, "embed_policy", "'%s' is not one of strict, common, mean",
			       r->embed_policy);
	}
}

int smelt_recipe_validate(const struct smelt_recipe *r, bool strict, struct smelt_diag *diag)
{
	struct smelt_diag local = {0};
	struct vctx v = {.r = r, .diag = diag ? diag : &local};
	size_t errors;

	diag = v.diag;
	v.m = check_method(&v);
	((struct smelt_recipe *)r)->method = v.m;
	check_refs(&v);
	check_ranges(&v);
	check_misc(&v);
	if (v.m && r->n_slices) {
		check_params(&v);
		hint_misplaced_params(&v);
		check_required(&v);
		check_counts(&v);
	}
	if (strict && diag) {
		for (size_t i = 0; i < diag->n; i++)
			if (diag->items[i].strict)
				diag->items[i].severity = SMELT_DIAG_ERROR;
	}
	errors = smelt_diag_errors(diag);
	smelt_diag_release(&local);
	return errors ? SMELT_EINVAL : 0;
}

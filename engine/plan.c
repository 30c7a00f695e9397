/*
 * plan.c: the planner. Turns a validated recipe into a list of output
 * tensors, each with its inputs, its resolved parameters and its place in
 * an output shard, without reading any tensor data.
 *
 * Layout rules (mergekit's, see docs/merging.md):
 *   - `models:` recipes are one slice covering every layer of the layout
 *     model (the base, else the first model).
 *   - A slice maps its L layers onto output layers [offset, offset+L);
 *     source s feeds layer start_s + i to output layer offset + i.
 *   - Tensors outside the layers come from the first slice (embeddings and
 *     anything before the first layer) or the last slice (final norm, head).
 *   - Parameters resolve with mergekit's precedence; gradients use the
 *     layer's position in its slice (t = 0 outside the layers).
 * Every problem is collected in the diag; nothing is returned unless the
 * whole plan is sound.
 */
#include <errno.h>
#include <limits.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "smelt/hub.h"
#include "smelt/merge.h"
#include "smelt/pool.h"

#define MAX_DIAG_PER_KIND 50
/* A method's check() usually fails the same way on every tensor (a density
 * or epsilon out of its range): the first few name tensors, a count
 * follows. */
#define MAX_CHECK_REPORTS 3
#define MAX_SOURCES 64

struct planner {
	const struct smelt_recipe *r;
	const struct smelt_merge_options *o;
	struct smelt_plan *p;
	struct smelt_diag *diag;
	int layout;                /* model index whose tensor names shape the output */
	size_t cap;                /* capacity of p->tensors */
	int mismatch_reports;
	int check_failures;        /* tensors the method's check() rejected */
	/* Missing required parameters are reported once per (parameter,
	 * source) with a count of the tensors affected. */
	int missing[SMELT_MAX_PARAMS][MAX_SOURCES + 1];
};

/* ---- model references ---- */

static int ref_index(const struct smelt_plan *p, const char *ref)
{
	for (size_t i = 0; i < p->n_models; i++)
		if (strcmp(p->model_refs[i], ref) == 0)
			return (int)i;
	return -1;
}

static const char *ref_path(const struct smelt_recipe *r, const char *ref)
{
	/* The key path where a reference first appears, for messages. */
	if (r->base_model && strcmp(r->base_model, ref) == 0)
		return "base_model";
	for (size_t s = 0; s < r->n_slices; s++)
		for (size_t i = 0; i < r->slices[s].n_sources; i++)
			if (strcmp(r->slices[s].sources[i].model, ref) == 0)
				return r->slices[s].sources[i].path;
	return "";
}

static bool is_local_path(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

/* Resolve a reference to a folder: a local path, else a Hugging Face
 * reference found in the cache or (online) pulled into it. */
static int resolve_ref(struct planner *pl, const char *ref, char **out)
{
	char *expanded = smelt_model_ref_expand(ref);
	char snapshot[4096], cache[4096];
	struct smelt_hub_ref hr;
	struct smelt_err err;
	const char *path = ref_path(pl->r, ref);

	if (!expanded) {
		smelt_diag_add(pl->diag, SMELT_DIAG_ERROR, path, "out of memory");
		return SMELT_ENOMEM;
	}
	if (is_local_path(expanded)) {
		*out = expanded;
		return 0;
	}
	free(expanded);
	if (ref[0] == '/' || ref[0] == '.' || ref[0] == '~' ||
	    smelt_hub_ref_parse(ref, &hr, &err) != 0) {
		smelt_diag_add(pl->diag, SMELT_DIAG_ERROR, path,
			       "model '%s' not found: no such local folder, and not a Hugging Face "
			       "reference (org/name[@revision])",
			       ref);
		return SMELT_ENOTFOUND;
	}
	if (smelt_hub_cache_dir(cache, sizeof(cache)) == 0 &&
	    smelt_hub_cache_lookup(cache, &hr, snapshot, sizeof(snapshot), &err) == 0) {
		*out = strdup(snapshot);
		return *out ? 0 : SMELT_ENOMEM;
	}
	if (pl->o && pl->o->offline) {
		smelt_diag_add(pl->diag, SMELT_DIAG_ERROR, path,
			       "model '%s' not found locally or in the Hugging Face cache (%s), and "
			       "downloads are off",
			       ref, cache);
		return SMELT_ENOTFOUND;
	}
	*out = NULL; /* to be pulled once the rest of the recipe is sound */
	return 0;
}

static int pull_ref(struct planner *pl, const char *ref, char **out)
{
	struct smelt_hub_pull_opts opts = {.repo = ref};
	char snapshot[4096];
	struct smelt_err err;

	fprintf(stderr, "smelt: downloading %s from the Hugging Face Hub\n", ref);
	if (smelt_hub_pull(&opts, snapshot, sizeof(snapshot), &err) != 0) {
		smelt_diag_add(pl->diag, SMELT_DIAG_ERROR, ref_path(pl->r, ref), "%s", err.msg);
		return err.code;
	}
	*out = strdup(snapshot);
	return *out ? 0 : SMELT_ENOMEM;
}

static int open_models(struct planner *pl)
{
	const struct smelt_recipe *r = pl->r;
	struct smelt_plan *p = pl->p;
	char **paths = calloc(r->n_model_refs ? r->n_model_refs : 1, sizeof(*paths));
	int rc = 0;

	p->models = calloc(r->n_model_refs ? r->n_model_refs : 1, sizeof(*p->models));
	p->model_refs = calloc(r->n_model_refs ? r->n_model_refs : 1, sizeof(*p->model_refs));
	if (!paths || !p->models || !p->model_refs) {
		free(paths);
		return SMELT_ENOMEM;
	}
	for (size_t i = 0; i < r->n_model_refs; i++)
		if (resolve_ref(pl, r->model_refs[i], &paths[i]) != 0)
			rc = SMELT_EINVAL;
	/* Downloads only start once every local problem is known to be absent. */
	for (size_t i = 0; rc == 0 && i < r->n_model_refs; i++)
		if (!paths[i] && pull_ref(pl, r->model_refs[i], &paths[i]) != 0)
			rc = SMELT_EINVAL;
	for (size_t i = 0; rc == 0 && i < r->n_model_refs; i++) {
		struct smelt_err err;

		p->model_refs[i] = strdup(r->model_refs[i]);
		if (smelt_ckpt_open(&p->models[i], paths[i], &err) != 0) {
			smelt_diag_add(pl->diag, SMELT_DIAG_ERROR, ref_path(r, r->model_refs[i]), "%s",
				       err.msg);
			rc = SMELT_EINVAL;
		}
		p->n_models = i + 1;
	}
	for (size_t i = 0; i < r->n_model_refs; i++)
		free(paths[i]);
	free(paths);
	return rc;
}

/* ---- tensor naming across layers ---- */

/* name with its layer index replaced by `layer`, malloc'd. */
static char *rename_layer(const char *name, int layer)
{
	size_t prefix, suffix;
	char num[16];
	char *out;

	if (smelt_layer_index(name, &prefix, &suffix) < 0)
		return strdup(name);
	snprintf(num, sizeof(num), "%d", layer);
	out = malloc(prefix + strlen(num) + strlen(name + suffix) + 1);
	if (out)
		sprintf(out, "%.*s%s%s", (int)prefix, name, num, name + suffix);
	return out;
}

/* ---- diagnostics helpers ---- */

static void shape_text(int ndim, const uint64_t *shape, char *buf, size_t n)
{
	size_t len = 0;

	len += (size_t)snprintf(buf + len, n - len, "[");
	for (int i = 0; i < ndim && len < n; i++)
		len += (size_t)snprintf(buf + len, n - len, "%s%llu", i ? ", " : "",
					(unsigned long long)shape[i]);
	if (len < n)
		snprintf(buf + len, n - len, "]");
}

static bool same_shape(const struct smelt_st_tensor *a, const struct smelt_st_tensor *b)
{
	if (a->ndim != b->ndim)
		return false;
	for (int i = 0; i < a->ndim; i++)
		if (a->shape[i] != b->shape[i])
			return false;
	return true;
}

/* Same shape except the first dimension (a vocabulary-sized table). */
static bool same_but_rows(const struct smelt_st_tensor *a, const struct smelt_st_tensor *b)
{
	if (a->ndim != b->ndim || a->ndim < 1)
		return false;
	for (int i = 1; i < a->ndim; i++)
		if (a->shape[i] != b->shape[i])
			return false;
	return true;
}

static bool is_vocab_tensor(const char *name)
{
	enum smelt_kind k = smelt_tensor_kind(name);

	return k == SMELT_KIND_EMBED || k == SMELT_KIND_HEAD;
}

/* ---- one output tensor ---- */

struct tensor_src {
	int model;                 /* index in plan->models */
	int source;                /* index in the slice's sources, -1 for the base */
	const char *in_name;       /* input tensor name in that model (owned by caller) */
};

static struct smelt_plan_tensor *new_tensor(struct planner *pl)
{
	struct smelt_plan *p = pl->p;

	if (p->n_tensors == pl->cap) {
		size_t cap = pl->cap ? pl->cap * 2 : 256;
		struct smelt_plan_tensor *t = realloc(p->tensors, cap * sizeof(*t));

		if (!t)
			return NULL;
		p->tensors = t;
		pl->cap = cap;
	}
	memset(&p->tensors[p->n_tensors], 0, sizeof(p->tensors[0]));
	return &p->tensors[p->n_tensors++];
}

/* Find a model's input tensor; a head missing from a model with tied
 * embeddings falls back to its embedding table (mergekit's tied names). */
static const struct smelt_ckpt_tensor *find_input(const struct smelt_ckpt *c, const char *name)
{
	const struct smelt_ckpt_tensor *t = smelt_ckpt_find(c, name);

	if (t || smelt_tensor_kind(name) != SMELT_KIND_HEAD)
		return t;
	for (size_t i = 0; i < c->n_tensors; i++)
		if (smelt_tensor_kind(c->tensors[i].name) == SMELT_KIND_EMBED)
			return &c->tensors[i];
	return NULL;
}

static bool regex_list_matches(struct planner *pl, const struct smelt_pvalue *v, const char *name,
			       const char *pname)
{
	const struct smelt_pvalue *items = v->kind == SMELT_PV_LIST ? v->items : v;
	size_t n = v->kind == SMELT_PV_LIST ? v->n_items : 1;
	bool hit = false;

	for (size_t i = 0; i < n && !hit; i++) {
		regex_t re;
		regmatch_t m;

		if (items[i].kind != SMELT_PV_STRING) {
			smelt_diag_add(pl->diag, SMELT_DIAG_ERROR, items[i].path ? items[i].path : pname,
				       "%s: expected a list of regular expressions", pname);
			return false;
		}
		if (regcomp(&re, items[i].str, REG_EXTENDED) != 0) {
			smelt_diag_add(pl->diag, SMELT_DIAG_ERROR, items[i].path ? items[i].path : pname,
				       "%s: '%s' is not a valid regular expression", pname, items[i].str);
			return false;
		}
		hit = regexec(&re, name, 1, &m, 0) == 0 && m.rm_so == 0;
		regfree(&re);
	}
	return hit;
}

/* Resolve every parameter of the method for tensor t. Returns false when
 * the tensor keeps the base (an exclusion matched) and true otherwise;
 * errors go to the diag. */
static bool resolve_params(struct planner *pl, struct smelt_plan_tensor *t, size_t slice,
			   const struct tensor_src *srcs, double pos)
{
	const struct smelt_method *m = pl->p->method;
	const struct smelt_recipe *r = pl->r;
	bool merge = true;

	t->pg = calloc((size_t)(m->n_params ? m->n_params : 1), sizeof(double));
	t->pm = calloc((size_t)(m->n_params ? m->n_params : 1) * (size_t)(t->n_inputs ? t->n_inputs : 1),
		       sizeof(double));
	if (!t->pg || !t->pm)
		return true;
	for (int k = 0; k < m->n_params; k++) {
		const struct smelt_param_def *d = &m->params[k];
		int n = d->scope == SMELT_SCOPE_GLOBAL ? 1 : t->n_inputs;

		if (d->type == SMELT_PARAM_REGEX_LIST) {
			const struct smelt_pvalue *v = smelt_recipe_find(r, slice, -1, d->name, t->name);

			if (v && regex_list_matches(pl, v, t->name, d->name))
				merge = false;
			continue;
		}
		for (int i = 0; i < n; i++) {
			int source = d->scope == SMELT_SCOPE_GLOBAL ? -1 : srcs[i].source;
			const char *tname = d->scope == SMELT_SCOPE_GLOBAL ? t->name : srcs[i].in_name;
			double v = d->def;
			bool found = false;
			struct smelt_err err;

			if (smelt_recipe_resolve(r, slice, source, d->name, tname, pos, &v, &found,
						 &err) != 0) {
				smelt_diag_add(pl->diag, SMELT_DIAG_ERROR, "", "%s", err.msg);
				continue;
			}
			if (!found && d->required &&
			    pl->missing[k][source + 1 < MAX_SOURCES ? source + 1 : MAX_SOURCES]++) {
				continue;
			} else if (!found && d->required) {
				if (d->scope == SMELT_SCOPE_GLOBAL)
					smelt_diag_add(pl->diag, SMELT_DIAG_ERROR, "parameters",
						       "%s: required parameter '%s' of %s is not set for "
						       "tensor %s",
						       d->name, d->name, m->name, t->name);
				else if (source < 0)
					smelt_diag_add(pl->diag, SMELT_DIAG_ERROR, "base_model",
						       "required parameter '%s' of %s is not set for "
						       "tensor %s of the base '%s' (%s merges the base "
						       "like any model: give it a %s)",
						       d->name, m->name, tname, r->base_model, m->name,
						       d->name);
				else
					smelt_diag_add(pl->diag, SMELT_DIAG_ERROR,
						       r->slices[slice].sources[source].path,
						       "required parameter '%s' of %s is not set for "
						       "tensor %s of '%s'",
						       d->name, m->name, tname,
						       r->slices[slice].sources[source].model);
				continue;
			}
			if (found && (v < d->min || v > d->max))
				smelt_diag_add(pl->diag, SMELT_DIAG_ERROR, "",
					       "%s = %g for tensor %s is outside [%g, %g]", d->name, v,
					       tname, d->min, d->max);
			if (d->scope == SMELT_SCOPE_GLOBAL)
				t->pg[k] = v;
			else
				t->pm[(size_t)i * (size_t)m->n_params + (size_t)k] = v;
		}
	}
	return merge;
}

/* The passthrough `scale` of one source (1 when unset). */
static double resolve_scale(struct planner *pl, size_t slice, const struct tensor_src *src,
			    double pos)
{
	double v = 1;
	bool found = false;
	struct smelt_err err;

	if (src->source >= 0 && smelt_recipe_resolve(pl->r, slice, src->source, "scale",
						     src->in_name, pos, &v, &found, &err) != 0) {
		smelt_diag_add(pl->diag, SMELT_DIAG_ERROR, "", "%s", err.msg);
		return 1;
	}
	return found ? v : 1;
}

static void report_mismatch(struct planner *pl, const char *out_name, int model,
			    const struct smelt_st_tensor *got, const struct smelt_st_tensor *want,
			    const char *what)
{
	char a[96], b[96];

	if (pl->mismatch_reports++ >= MAX_DIAG_PER_KIND)
		return;
	shape_text(got->ndim, got->shape, a, sizeof(a));
	shape_text(want->ndim, want->shape, b, sizeof(b));
	smelt_diag_add(pl->diag, SMELT_DIAG_ERROR, ref_path(pl->r, pl->p->model_refs[model]),
		       "tensor %s: '%s' has shape %s but %s has %s", out_name,
		       pl->p->model_refs[model], a, what, b);
}

/* Check vocabulary-sized tables and pick how many rows are merged. */
static bool plan_vocab(struct planner *pl, struct smelt_plan_tensor *t,
		       const struct smelt_st_tensor *ref_st, const struct smelt_st_tensor *const *in_st,
		       int n)
{
	const char *policy = pl->r->embed_policy ? pl->r->embed_policy : "strict";
	uint64_t rows_min = ref_st->shape[0], rows_max = ref_st->shape[0];
	bool differ = false;

	for (int i = 0; i < n; i++) {
		if (!same_but_rows(in_st[i], ref_st))
			return false;
		if (in_st[i]->shape[0] != ref_st->shape[0])
			differ = true;
		if (in_st[i]->shape[0] < rows_min)
			rows_min = in_st[i]->shape[0];
		if (in_st[i]->shape[0] > rows_max)
			rows_max = in_st[i]->shape[0];
	}
	t->merge_rows = ref_st->shape[0];
	if (!differ)
		return true;
	if (strcmp(policy, "common") == 0) {
		t->merge_rows = rows_min; /* rows beyond come from the base */
		return true;
	}
	if (strcmp(policy, "mean") == 0) {
		t->shape[0] = rows_max; /* shorter tables are padded with their mean row */
		t->merge_rows = rows_max;
		return true;
	}
	for (int i = 0; i < n; i++)
		if (in_st[i]->shape[0] != ref_st->shape[0]) {
			smelt_diag_add(pl->diag, SMELT_DIAG_ERROR, "embed_policy",
				       "tensor %s: vocabulary sizes differ ('%s' has %llu rows, the "
				       "base has %llu); set embed_policy: common (merge the shared "
				       "rows, keep the base's others) or mean (pad with the mean row)",
				       t->name, pl->p->model_refs[t->inputs[i].model],
				       (unsigned long long)in_st[i]->shape[0],
				       (unsigned long long)ref_st->shape[0]);
			break;
		}
	return true;
}

/* Plan output tensor `out_name` fed by srcs[0..n) (and the base, when the
 * method uses one) at slice position pos. */
static void plan_tensor(struct planner *pl, size_t slice, const char *out_name, int out_layer,
			double pos, const struct tensor_src *srcs, int n, const struct tensor_src *base)
{
	struct smelt_plan *p = pl->p;
	const struct smelt_method *m = p->method;
	const struct smelt_ckpt_tensor *in_t[64];
	const struct smelt_st_tensor *in_st[64];
	const struct smelt_ckpt_tensor *base_t = NULL;
	const struct smelt_st_tensor *ref_st;
	struct smelt_plan_tensor *t;
	bool passthrough = (m->flags & SMELT_M_PASSTHROUGH) != 0;

	if (n > 64) {
		smelt_diag_add(pl->diag, SMELT_DIAG_ERROR, "", "more than 64 models in one merge");
		return;
	}
	for (int i = 0; i < n; i++) {
		in_t[i] = find_input(&p->models[srcs[i].model], srcs[i].in_name);
		if (!in_t[i]) {
			if (pl->mismatch_reports++ < MAX_DIAG_PER_KIND)
				smelt_diag_add(pl->diag, SMELT_DIAG_ERROR,
					       ref_path(pl->r, p->model_refs[srcs[i].model]),
					       "tensor %s is missing from '%s' (needed for %s)",
					       srcs[i].in_name, p->model_refs[srcs[i].model], out_name);
			return;
		}
		in_st[i] = in_t[i]->st;
	}
	if (base) {
		base_t = find_input(&p->models[base->model], base->in_name);
		if (!base_t) {
			if (pl->mismatch_reports++ < MAX_DIAG_PER_KIND)
				smelt_diag_add(pl->diag, SMELT_DIAG_ERROR, "base_model",
					       "tensor %s is missing from the base '%s'", base->in_name,
					       p->model_refs[base->model]);
			return;
		}
	}
	ref_st = base_t ? base_t->st : in_st[0];

	t = new_tensor(pl);
	if (!t || !(t->name = strdup(out_name))) {
		smelt_diag_add(pl->diag, SMELT_DIAG_ERROR, "", "out of memory");
		return;
	}
	t->layer = out_layer;
	t->kind = smelt_tensor_kind(out_name);
	t->ndim = ref_st->ndim;
	memcpy(t->shape, ref_st->shape, sizeof(t->shape));
	t->merge_rows = t->ndim ? t->shape[0] : 1;
	t->scale = 1;
	t->out_dtype = p->out_dtype;
	t->n_inputs = n;
	t->inputs = calloc((size_t)n, sizeof(*t->inputs));
	if (!t->inputs)
		return;
	for (int i = 0; i < n; i++) {
		t->inputs[i].model = srcs[i].model;
		t->inputs[i].t = in_t[i];
	}
	if (base_t) {
		t->has_base = true;
		t->base.model = base->model;
		t->base.t = base_t;
	}

	/* Tensors that cannot be merged are carried through verbatim. */
	if (!smelt_dtype_is_float(ref_st->dtype)) {
		t->action = SMELT_ACT_COPY;
		t->out_dtype = ref_st->dtype;
		if (base_t) {
			t->n_inputs = 1;
			t->inputs[0] = t->base;
		}
		t->n_inputs = 1;
		return;
	}
	for (int i = 0; i < n; i++) {
		if (!smelt_dtype_is_float(in_st[i]->dtype)) {
			smelt_diag_add(pl->diag, SMELT_DIAG_ERROR, "",
				       "tensor %s: '%s' stores it as %s, which cannot be merged",
				       out_name, p->model_refs[srcs[i].model],
				       smelt_dtype_name(in_st[i]->dtype));
			return;
		}
		if (!same_shape(in_st[i], ref_st) &&
		    !(is_vocab_tensor(out_name) && same_but_rows(in_st[i], ref_st))) {
			report_mismatch(pl, out_name, srcs[i].model, in_st[i], ref_st,
					base_t ? "the base" : "the first model");
			return;
		}
	}
	if (is_vocab_tensor(out_name) && !passthrough)
		plan_vocab(pl, t, ref_st, in_st, n);

	if (passthrough) {
		t->action = SMELT_ACT_COPY;
		t->scale = resolve_scale(pl, slice, &srcs[0], pos);
		memcpy(t->shape, in_st[0]->shape, sizeof(t->shape));
		t->ndim = in_st[0]->ndim;
		t->merge_rows = t->ndim ? t->shape[0] : 1;
		t->has_base = false;
		return;
	}
	t->action = SMELT_ACT_MERGE;
	if (!resolve_params(pl, t, slice, srcs, pos)) {
		/* Excluded: keep the base value. */
		t->action = SMELT_ACT_COPY;
		t->n_inputs = 1;
		t->inputs[0] = t->base;
		t->has_base = false;
		return;
	}
	if (m->check) {
		struct smelt_tensor_job job = {
			.name = t->name,
			.ndim = t->ndim,
			.layer = t->layer,
			.kind = t->kind,
			.n_models = t->n_inputs,
			.has_base = t->has_base,
			.n_params = m->n_params,
			.pg = t->pg,
			.pm = t->pm,
		};
		struct smelt_err err;

		memcpy(job.shape, t->shape, sizeof(job.shape));
		if (job.ndim)
			job.shape[0] = t->merge_rows;
		smelt_job_layout(&job, m);
		if (m->check(&job, &err) != 0 && pl->check_failures++ < MAX_CHECK_REPORTS)
			smelt_diag_add(pl->diag, SMELT_DIAG_ERROR, "", "%s", err.msg);
	}
}

/* ---- slices ---- */

/* The model index of a slice's base, -1 if none. */
static int slice_base(struct planner *pl, size_t s)
{
	const char *b = pl->r->slices[s].base_model ? pl->r->slices[s].base_model : pl->r->base_model;

	return b ? ref_index(pl->p, b) : -1;
}

static bool method_uses_base(const struct smelt_method *m)
{
	return m->base == SMELT_BASE_REQUIRED || m->base == SMELT_BASE_OPTIONAL;
}

/* Does slice sl list model index `model` among its sources? */
static bool slice_lists(const struct smelt_slice *sl, int model, const struct smelt_plan *p)
{
	for (size_t k = 0; k < sl->n_sources; k++)
		if (ref_index(p, sl->sources[k].model) == model)
			return true;
	return false;
}

/* Build the sources of one output tensor for slice s at in-slice layer i
 * (i < 0 for tensors outside the layers). names[] receives malloc'd input
 * names, freed by the caller. Returns the number of merged inputs. */
static int slice_sources(struct planner *pl, size_t s, int i, const char *layout_name,
			 struct tensor_src *srcs, char **names, struct tensor_src *base,
			 bool *has_base)
{
	const struct smelt_slice *sl = &pl->r->slices[s];
	const struct smelt_method *m = pl->p->method;
	int bi = slice_base(pl, s), n = 0;
	int base_layer = -1;

	*has_base = false;
	for (size_t k = 0; k < sl->n_sources; k++) {
		const struct smelt_source *src = &sl->sources[k];
		int model = ref_index(pl->p, src->model);
		int layer = i < 0 ? -1 : (src->has_range ? src->layer_start : 0) + i;
		char *name = i < 0 ? strdup(layout_name) : rename_layer(layout_name, layer);

		if (!name || model < 0) {
			free(name);
			continue;
		}
		if (model == bi && method_uses_base(m)) {
			base_layer = layer;
			base->model = model;
			base->source = -1;
			base->in_name = name;
			names[sl->n_sources] = name;
			*has_base = true;
			continue;
		}
		srcs[n].model = model;
		srcs[n].source = (int)k;
		srcs[n].in_name = name;
		names[n] = name;
		n++;
		if (base_layer < 0)
			base_layer = layer;
	}
	if (bi >= 0 && m->base == SMELT_BASE_AS_MODEL && !slice_lists(sl, bi, pl->p)) {
		/* mergekit adds an unlisted base_model as one more input of
		 * methods that merge it like any model (linear, karcher). */
		char *name = i < 0 ? strdup(layout_name) : rename_layer(layout_name, base_layer);

		if (name) {
			srcs[n].model = bi;
			srcs[n].source = -1;
			srcs[n].in_name = name;
			names[n] = name;
			n++;
		}
	}
	if (!*has_base && bi >= 0 && method_uses_base(m)) {
		/* A base that is not among the slice's sources feeds the same layer
		 * as the first source. */
		char *name = i < 0 ? strdup(layout_name) : rename_layer(layout_name, base_layer);

		if (name) {
			base->model = bi;
			base->source = -1;
			base->in_name = name;
			names[sl->n_sources] = name;
			*has_base = true;
		}
	}
	return n;
}

static void plan_one(struct planner *pl, size_t s, int i, const char *layout_name,
		     const char *out_name, int out_layer, double pos)
{
	size_t ns = pl->r->slices[s].n_sources;
	struct tensor_src *srcs = calloc(ns + 1, sizeof(*srcs));
	char **names = calloc(ns + 1, sizeof(*names));
	struct tensor_src base = {0};
	bool has_base = false;
	int n;

	if (!srcs || !names) {
		free(srcs);
		free(names);
		return;
	}
	n = slice_sources(pl, s, i, layout_name, srcs, names, &base, &has_base);
	if (pl->p->method->base == SMELT_BASE_REQUIRED && !has_base)
		smelt_diag_add(pl->diag, SMELT_DIAG_ERROR, "base_model",
			       "%s needs a base model (set base_model)", pl->p->method->name);
	else if (n == 0)
		smelt_diag_add(pl->diag, SMELT_DIAG_ERROR, pl->r->slices[s].path,
			       "no model to merge besides the base");
	else
		plan_tensor(pl, s, out_name, out_layer, pos, srcs, n, has_base ? &base : NULL);
	for (size_t k = 0; k <= ns; k++)
		free(names[k]);
	free(srcs);
	free(names);
}

/* Length of slice s in layers. */
static int slice_length(struct planner *pl, size_t s)
{
	int L = smelt_slice_layers(&pl->r->slices[s]);

	return L >= 0 ? L : pl->p->models[pl->layout].num_layers;
}

/* Is tensor (of the layout model, outside the layers) a "post" tensor that
 * comes from the last slice? */
static bool is_post_tensor(const struct smelt_ckpt *c, size_t idx)
{
	/* The layout checkpoint lists non-layer tensors before the first layer
	 * except the final norm and head, which it lists last. */
	enum smelt_kind k = smelt_tensor_kind(c->tensors[idx].name);

	return k == SMELT_KIND_FINAL_NORM || k == SMELT_KIND_HEAD ||
	       (idx > 0 && c->tensors[idx - 1].layer >= 0);
}

/* Every layer_range must lie inside its model. */
static bool check_ranges(struct planner *pl)
{
	bool ok = true;

	for (size_t s = 0; s < pl->r->n_slices; s++) {
		const struct smelt_slice *sl = &pl->r->slices[s];

		for (size_t k = 0; k < sl->n_sources; k++) {
			const struct smelt_source *src = &sl->sources[k];
			int model = ref_index(pl->p, src->model);
			int layers = model >= 0 ? pl->p->models[model].num_layers : 0;

			if (model < 0 || !src->has_range || src->layer_end <= layers)
				continue;
			smelt_diag_add(pl->diag, SMELT_DIAG_ERROR, src->path,
				       "layer_range [%d, %d) goes past the %d layers of '%s' (ranges are "
				       "end-exclusive)",
				       src->layer_start, src->layer_end, layers, src->model);
			ok = false;
		}
	}
	return ok;
}

static void plan_layers(struct planner *pl)
{
	const struct smelt_ckpt *layout = &pl->p->models[pl->layout];
	int offset = 0;

	if (!check_ranges(pl))
		return;

	for (size_t s = 0; s < pl->r->n_slices; s++) {
		const struct smelt_source *first = &pl->r->slices[s].sources[0];
		int start = first->has_range ? first->layer_start : 0;
		int L = slice_length(pl, s);

		for (int i = 0; i < L; i++) {
			for (size_t k = 0; k < layout->n_tensors; k++) {
				const struct smelt_ckpt_tensor *lt = &layout->tensors[k];
				char *in_name, *out_name;

				if (lt->layer != 0)
					continue; /* layer 0 is the template of every layer */
				in_name = rename_layer(lt->name, start + i);
				out_name = rename_layer(lt->name, offset + i);
				if (in_name && out_name)
					plan_one(pl, s, i, in_name, out_name, offset + i,
						 smelt_recipe_layer_t(i, L));
				free(in_name);
				free(out_name);
			}
		}
		offset += L;
	}
	pl->p->out_layers = offset;
}

static void plan_outside(struct planner *pl, bool post)
{
	const struct smelt_ckpt *layout = &pl->p->models[pl->layout];
	size_t s = post ? pl->r->n_slices - 1 : 0;

	for (size_t k = 0; k < layout->n_tensors; k++) {
		const char *name = layout->tensors[k].name;

		if (layout->tensors[k].layer >= 0 || is_post_tensor(layout, k) != post)
			continue;
		/* A tied head is not stored: the writer keeps the base's names. */
		plan_one(pl, s, -1, name, name, -1, 0.0);
	}
}

/* ---- whole plan ---- */

static void report_missing_counts(struct planner *pl)
{
	const struct smelt_method *m = pl->p->method;

	for (int k = 0; k < m->n_params && k < SMELT_MAX_PARAMS; k++)
		for (int s = 0; s <= MAX_SOURCES; s++)
			if (pl->missing[k][s] > 1)
				smelt_diag_add(pl->diag, SMELT_DIAG_ERROR, "",
					       "(parameter '%s' is missing for %d more tensors of the "
					       "same model)",
					       m->params[k].name, pl->missing[k][s] - 1);
}

static void choose_dtype(struct planner *pl)
{
	const struct smelt_recipe *r = pl->r;
	struct smelt_plan *p = pl->p;

	if (r->has_out_dtype)
		p->out_dtype = r->out_dtype;
	else if (r->has_dtype)
		p->out_dtype = r->dtype;
	else
		p->out_dtype = p->models[pl->layout].main_dtype;
	if (!smelt_dtype_is_float(p->out_dtype))
		p->out_dtype = SMELT_F32;
}

static void choose_tokenizer(struct planner *pl)
{
	const struct smelt_recipe *r = pl->r;
	struct smelt_plan *p = pl->p;
	const char *src = r->tokenizer_source;

	p->tokenizer_donor = p->base >= 0 ? p->base : pl->layout;
	if (!src || strcmp(src, "base") == 0)
		return;
	if (ref_index(p, src) >= 0) {
		p->tokenizer_donor = ref_index(p, src);
		return;
	}
	smelt_diag_add(pl->diag, SMELT_DIAG_ERROR, "tokenizer_source",
		       "'%s' is not one of the recipe's models", src);
}

static void layout_shards(struct planner *pl)
{
	struct smelt_plan *p = pl->p;
	uint64_t *sizes = calloc(p->n_tensors ? p->n_tensors : 1, sizeof(*sizes));
	size_t *shard_of = calloc(p->n_tensors ? p->n_tensors : 1, sizeof(*shard_of));

	if (!sizes || !shard_of)
		goto out;
	p->bytes_read = p->bytes_written = 0;
	for (size_t i = 0; i < p->n_tensors; i++) {
		struct smelt_plan_tensor *t = &p->tensors[i];
		uint64_t numel = 1;

		for (int d = 0; d < t->ndim; d++)
			numel *= t->shape[d];
		t->nbytes = numel * smelt_dtype_bits(t->out_dtype) / 8;
		t->read_bytes = 0;
		for (int k = 0; k < t->n_inputs; k++)
			t->read_bytes += t->inputs[k].t->st->end - t->inputs[k].t->st->begin;
		if (t->has_base)
			t->read_bytes += t->base.t->st->end - t->base.t->st->begin;
		sizes[i] = t->nbytes;
		p->bytes_written += t->nbytes;
		p->bytes_read += t->read_bytes * (t->action == SMELT_ACT_MERGE && p->method->stats ? 2 : 1);
	}
	p->n_shards = smelt_shard_split(sizes, p->n_tensors, p->shard_bytes, shard_of);
	for (size_t i = 0; i < p->n_tensors; i++)
		p->tensors[i].shard = shard_of[i];
out:
	free(sizes);
	free(shard_of);
}

static void estimate_memory(struct smelt_plan *p)
{
	uint64_t widest = 0;
	int inputs = 1;

	for (size_t i = 0; i < p->n_tensors; i++) {
		uint64_t rows, cols;

		smelt_tensor_rows_cols(p->tensors[i].ndim, p->tensors[i].shape, &rows, &cols);
		if (cols > widest)
			widest = cols;
		if (p->tensors[i].n_inputs + 1 > inputs)
			inputs = p->tensors[i].n_inputs + 1;
	}
	/* Per worker: every input block, the output block and its converted
	 * bytes; plus per-tensor statistics (a few doubles per column per model
	 * per chunk) and the plan itself. */
	p->peak_memory = (uint64_t)p->threads * (uint64_t)(inputs + 2) *
				 smelt_method_block_bytes(p->method) +
			 widest * 8u * 4u * (uint64_t)inputs * 16u + p->n_tensors * 512u +
			 (16u << 20);
}

int smelt_plan_build(const struct smelt_recipe *r, const struct smelt_merge_options *o,
		     struct smelt_plan **out, struct smelt_diag *diag)
{
	struct planner pl = {.r = r, .o = o, .diag = diag};
	struct smelt_plan *p;

	*out = NULL;
	if (smelt_recipe_validate(r, o && o->strict, diag) != 0)
		return SMELT_EINVAL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return SMELT_ENOMEM;
	pl.p = p;
	p->recipe = r;
	p->method = smelt_method_find(r->merge_method);
	p->base = -1;
	p->threads = o && o->threads > 0 ? o->threads : smelt_cpu_count();
	p->shard_bytes = o && o->shard_bytes ? o->shard_bytes : 5000000000ull;
	p->seed = r->has_seed ? r->seed : 0;
	if (!p->method || r->n_slices == 0) {
		smelt_diag_add(diag, SMELT_DIAG_ERROR, "merge_method", "nothing to merge");
		goto fail;
	}
	if (open_models(&pl) != 0)
		goto fail;
	if (r->base_model)
		p->base = ref_index(p, r->base_model);
	pl.layout = p->base >= 0 ? p->base : ref_index(p, r->slices[0].sources[0].model);
	if (pl.layout < 0)
		goto fail;
	choose_dtype(&pl);
	choose_tokenizer(&pl);

	plan_outside(&pl, false);
	plan_layers(&pl);
	plan_outside(&pl, true);
	report_missing_counts(&pl);
	if (pl.mismatch_reports > MAX_DIAG_PER_KIND)
		smelt_diag_add(diag, SMELT_DIAG_ERROR, "", "... and %d more tensor problems",
			       pl.mismatch_reports - MAX_DIAG_PER_KIND);
	if (pl.check_failures > MAX_CHECK_REPORTS)
		smelt_diag_add(diag, SMELT_DIAG_ERROR, "", "... and %d more tensors that %s rejects",
			       pl.check_failures - MAX_CHECK_REPORTS, p->method->name);
	if (smelt_diag_errors(diag))
		goto fail;
	layout_shards(&pl);
	estimate_memory(p);
	*out = p;
	return 0;
fail:
	smelt_plan_free(p);
	return SMELT_EINVAL;
}

void smelt_plan_free(struct smelt_plan *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n_tensors; i++) {
		free(p->tensors[i].name);
		free(p->tensors[i].inputs);
		free(p->tensors[i].pg);
		free(p->tensors[i].pm);
		free(p->tensors[i].weights);
	}
	free(p->tensors);
	for (size_t i = 0; i < p->n_models; i++) {
		smelt_ckpt_close(&p->models[i]);
		free(p->model_refs[i]);
	}
	free(p->models);
	free(p->model_refs);
	free(p);
}

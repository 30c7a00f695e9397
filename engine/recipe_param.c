/*
 * recipe_param.c: what value a parameter takes for one tensor.
 *
 * Precedence (highest first), as in mergekit: the slice source's parameters
 * (models[i].parameters in the models: form), the slice's parameters, the
 * top-level parameters; nothing found = the method default (the caller's
 * business). A per-model value of a GLOBAL-scope parameter is ignored, as in
 * mergekit, so global lookups start at the slice level.
 *
 * Within one level a value is evaluated at the tensor's position t in its
 * slice: a number is itself; a numeric list is a gradient, interpolated
 * piecewise-linearly between evenly spread anchors; a list holding any bool
 * or non-numeric string is a step function; conditionals are tried in order
 * and the first whose filter matches the tensor name wins (no filter or "*"
 * matches everything); when none matches, the lookup falls through to the
 * next level.
 */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "recipe_int.h"
#include "smelt/method.h"

bool smelt_pvalue_number(const struct smelt_pvalue *v, double *out)
{
	char buf[128], *end;
	const char *s;
	size_t len, k = 0;
	double x;

	switch (v ? v->kind : SMELT_PV_NULL) {
	case SMELT_PV_NUMBER: *out = v->num; return true;
	case SMELT_PV_BOOL: *out = v->b ? 1.0 : 0.0; return true;
	case SMELT_PV_STRING: break;
	default: return false;
	}
	/* like Python's float(): surrounding blanks and '_' between digits */
	s = v->str;
	while (isspace((unsigned char)*s))
		s++;
	len = strlen(s);
	while (len && isspace((unsigned char)s[len - 1]))
		len--;
	if (len == 0 || len >= sizeof(buf))
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '_') {
			if (i == 0 || i + 1 == len || !isdigit((unsigned char)s[i - 1]) ||
			    !isdigit((unsigned char)s[i + 1]))
				return false;
			continue;
		}
		buf[k++] = s[i];
	}
	buf[k] = '\0';
	/* strtod also reads hex floats, which Python's float() does not */
	if (strchr(buf, 'x') || strchr(buf, 'X'))
		return false;
	x = strtod(buf, &end);
	if (*end != '\0')
		return false;
	*out = x;
	return true;
}

double smelt_recipe_layer_t(int i, int L)
{
	if (L <= 1)
		return 1.0;
	return (double)i / (double)(L - 1);
}

int smelt_slice_layers(const struct smelt_slice *s)
{
	if (!s || s->n_sources == 0 || !s->sources[0].has_range)
		return -1;
	return s->sources[0].layer_end - s->sources[0].layer_start;
}

static bool filter_matches(const char *filter, const char *tensor)
{
	if (!filter || strcmp(filter, "*") == 0)
		return true;
	return tensor && strstr(tensor, filter) != NULL;
}

/* The scalar or list a value stands for at this tensor (conditionals
 * resolved), NULL when no conditional matches. */
static const struct smelt_pvalue *pick(const struct smelt_pvalue *v, const char *tensor)
{
	if (v->kind != SMELT_PV_CONDS)
		return v;
	for (size_t i = 0; i < v->n_items; i++)
		if (filter_matches(v->items[i].filter, tensor))
			return v->items[i].value;
	return NULL;
}

static bool is_gradient(const struct smelt_pvalue *v)
{
	double x;

	for (size_t i = 0; i < v->n_items; i++)
		if (v->items[i].kind == SMELT_PV_BOOL || !smelt_pvalue_number(&v->items[i], &x))
			return false;
	return true;
}

static int scalar_value(const struct smelt_pvalue *v, double *value, struct smelt_err *err)
{
	if (smelt_pvalue_number(v, value))
		return 0;
	if (v->kind == SMELT_PV_STRING)
		return smelt_fail(err, SMELT_EINVAL, "%s: expected a number, found the string '%s'",
		                  v->path ? v->path : "parameter", v->str);
	return smelt_fail(err, SMELT_EINVAL, "%s: expected a number",
	                  v->path ? v->path : "parameter");
}

int smelt_pvalue_eval(const struct smelt_pvalue *v, const char *tensor_name, double t,
                      double *value, bool *found, struct smelt_err *err)
{
	size_t k;

	*found = false;
	v = v ? pick(v, tensor_name) : NULL;
	if (!v || v->kind == SMELT_PV_NULL)
		return 0;
	if (v->kind == SMELT_PV_CONDS)
		return smelt_fail(err, SMELT_EINVAL, "%s: nested conditionals",
		                  v->path ? v->path : "parameter");
	if (!(t >= 0))
		t = 0;
	if (t > 1)
		t = 1;
	if (v->kind != SMELT_PV_LIST) {
		int rc = scalar_value(v, value, err);

		*found = rc == 0;
		return rc;
	}
	k = v->n_items;
	if (k == 0)
		return smelt_fail(err, SMELT_EINVAL, "%s: empty list",
		                  v->path ? v->path : "parameter");
	if (is_gradient(v)) {
		double s = t * (double)(k - 1), f, a, b;
		size_t j = (size_t)floor(s);
		int rc;

		if (j > k - 1)
			j = k - 1;
		f = s - (double)j;
		rc = scalar_value(&v->items[j], &a, err);
		if (rc == 0)
			rc = scalar_value(&v->items[j + 1 < k ? j + 1 : k - 1], &b, err);
		if (rc < 0)
			return rc;
		*value = f == 0 ? a : (1 - f) * a + f * b;
		*found = true;
		return 0;
	} else {
		size_t j = (size_t)floor(t * (double)(k - 1));
		int rc;

		if (j > k - 1)
			j = k - 1;
		rc = scalar_value(&v->items[j], value, err);
		*found = rc == 0;
		return rc;
	}
}

static int param_index(const struct smelt_pset *ps, const struct smelt_method *m, const char *param,
                       int want)
{
	for (size_t i = ps->n; i-- > 0;) {
		if (strcmp(ps->names[i], param) == 0)
			return (int)i;
		if (m && want >= 0 && smelt_method_param(m, ps->names[i]) == want)
			return (int)i;
	}
	return -1;
}

int recipe_pset_find(const struct smelt_pset *ps, const struct smelt_method *m, const char *param)
{
	return param_index(ps, m, param, m ? smelt_method_param(m, param) : -1);
}

/* The parameter sets to search, highest precedence first. */
static size_t levels(const struct smelt_recipe *r, size_t slice, int source, const char *param,
                     const struct smelt_pset *out[3])
{
	const struct smelt_method *m = r->method;
	const struct smelt_slice *sl;
	size_t n = 0;
	bool per_model = source >= 0;

	if (m && per_model) {
		int k = smelt_method_param(m, param);

		per_model = k < 0 || m->params[k].scope == SMELT_SCOPE_MODEL;
	}
	if (slice < r->n_slices) {
		sl = &r->slices[slice];
		if (per_model && (size_t)source < sl->n_sources)
			out[n++] = &sl->sources[source].params;
		out[n++] = &sl->params;
	}
	out[n++] = &r->params;
	return n;
}

int smelt_recipe_resolve(const struct smelt_recipe *r, size_t slice, int source, const char *param,
                         const char *tensor_name, double t, double *value, bool *found,
                         struct smelt_err *err)
{
	const struct smelt_pset *ps[3];
	size_t n = levels(r, slice, source, param, ps);

	*found = false;
	for (size_t l = 0; l < n; l++) {
		int k = recipe_pset_find(ps[l], r->method, param);
		int rc;

		if (k < 0)
			continue;
		rc = smelt_pvalue_eval(&ps[l]->values[k], tensor_name, t, value, found, err);
		if (rc < 0 || *found)
			return rc;
	}
	return 0;
}

const struct smelt_pvalue *smelt_recipe_find(const struct smelt_recipe *r, size_t slice, int source,
                                             const char *param, const char *tensor_name)
{
	const struct smelt_pset *ps[3];
	size_t n = levels(r, slice, source, param, ps);

	for (size_t l = 0; l < n; l++) {
		int k = recipe_pset_find(ps[l], r->method, param);
		const struct smelt_pvalue *v;

		if (k < 0)
			continue;
		v = pick(&ps[l]->values[k], tensor_name);
		if (v && v->kind != SMELT_PV_NULL)
			return v;
	}
	return NULL;
}

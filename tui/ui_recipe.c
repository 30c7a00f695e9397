/* ui_recipe.c: build recipe JSON from the settings form, fill it from a recipe. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "ui_recipe.h"

static const char *const names_threshold[] = {"threshold", "above_average_value_ratio", "t", NULL};
static const char *const names_calibration[] = {"calibration", "score_calibration_value", "s",
                                                NULL};
static const char *const names_temperature[] = {"temperature", "T", NULL};

void recipe_set_method(struct ui_settings *s, const struct smelt_method *m)
{
	s->method = m;
	memset(s->global, 0, sizeof(s->global));
	memset(s->model, 0, sizeof(s->model));
}

int recipe_param_index(const struct smelt_method *m, const char *const *names)
{
	if (!m)
		return -1;
	for (; *names; names++) {
		int i = smelt_method_param(m, *names);

		if (i >= 0)
			return i;
	}
	return -1;
}

double recipe_pval_at(const struct ui_pval *v, const struct smelt_param_def *p, double t)
{
	double pos;
	int i;

	if (!v->set || v->n == 0)
		return p->def;
	if (!v->gradient || v->n == 1)
		return v->v[0];
	/* Piecewise-linear over evenly spaced anchors, as mergekit does. */
	pos = t * (v->n - 1);
	i = (int)floor(pos);
	if (i >= v->n - 1)
		return v->v[v->n - 1];
	if (i < 0)
		return v->v[0];
	return v->v[i] + (v->v[i + 1] - v->v[i]) * (pos - i);
}

static void number_text(double x, const struct smelt_param_def *p, char *buf, size_t n)
{
	if (p->type == SMELT_PARAM_BOOL)
		snprintf(buf, n, "%s", x != 0 ? "true" : "false");
	else if (p->type == SMELT_PARAM_INT)
		snprintf(buf, n, "%.0f", x);
	else
		snprintf(buf, n, "%.4g", x);
}

void recipe_pval_text(const struct ui_pval *v, const struct smelt_param_def *p, char *buf, size_t n)
{
	char num[32];
	size_t used;

	if (p->type == SMELT_PARAM_REGEX_LIST) {
		snprintf(buf, n, "%s", v->set && v->text[0] ? v->text : "(none)");
		return;
	}
	if (!v->set) {
		if (p->required) {
			snprintf(buf, n, "(required)");
		} else {
			number_text(p->def, p, num, sizeof(num));
			snprintf(buf, n, "default %s", num);
		}
		return;
	}
	if (!v->gradient) {
		number_text(v->v[0], p, buf, n);
		return;
	}
	used = (size_t)snprintf(buf, n, "[");
	for (int i = 0; i < v->n && used < n; i++) {
		number_text(v->v[i], p, num, sizeof(num));
		used += (size_t)snprintf(buf + used, n - used, "%s%s", i ? ", " : "", num);
	}
	if (used < n)
		snprintf(buf + used, n - used, "]");
}

static cJSON *pval_json(const struct ui_pval *v, const struct smelt_param_def *p)
{
	if (p->type == SMELT_PARAM_REGEX_LIST) {
		cJSON *arr = cJSON_CreateArray();
		char tmp[sizeof(v->text)];
		char *save = NULL;

		snprintf(tmp, sizeof(tmp), "%s", v->text);
		for (char *tok = strtok_r(tmp, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
			while (*tok == ' ')
				tok++;
			if (*tok)
				cJSON_AddItemToArray(arr, cJSON_CreateString(tok));
		}
		return arr;
	}
	if (v->gradient && v->n > 1) {
		cJSON *arr = cJSON_CreateArray();

		for (int i = 0; i < v->n; i++)
			cJSON_AddItemToArray(arr, cJSON_CreateNumber(v->v[i]));
		return arr;
	}
	if (p->type == SMELT_PARAM_BOOL)
		return cJSON_CreateBool(v->v[0] != 0);
	return cJSON_CreateNumber(v->v[0]);
}

static void add_params(cJSON *obj, const struct smelt_method *m, const struct ui_pval *vals,
                       enum smelt_param_scope scope)
{
	cJSON *params = NULL;

	for (int i = 0; i < m->n_params; i++) {
		if (m->params[i].scope != scope || !vals[i].set)
			continue;
		if (m->params[i].type == SMELT_PARAM_REGEX_LIST && !vals[i].text[0])
			continue;
		if (!params)
			params = cJSON_AddObjectToObject(obj, "parameters");
		cJSON_AddItemToObject(params, m->params[i].name,
		                      pval_json(&vals[i], &m->params[i]));
	}
}

char *recipe_build_json(const struct ui_app *app)
{
	const struct ui_settings *s = &app->set;
	const struct smelt_method *m = s->method;
	cJSON *root, *models;
	char *text;
	int model_no = 0;

	if (s->raw_recipe)
		return strdup(s->raw_recipe);
	if (!m)
		return NULL;
	root = cJSON_CreateObject();
	cJSON_AddStringToObject(root, "merge_method", m->name);
	if (app->slots[0].used && m->base != SMELT_BASE_NONE)
		cJSON_AddStringToObject(root, "base_model", app->slots[0].ref);
	models = cJSON_AddArrayToObject(root, "models");
	for (int i = 1; i <= UI_MAX_MODELS; i++) {
		cJSON *entry;

		if (!app->slots[i].used)
			continue;
		entry = cJSON_CreateObject();
		cJSON_AddStringToObject(entry, "model", app->slots[i].ref);
		add_params(entry, m, s->model[model_no], SMELT_SCOPE_MODEL);
		cJSON_AddItemToArray(models, entry);
		model_no++;
	}
	/* Global-scope values go top level; a per-model value set in the
	 * "all" column applies to every model through the top level too. */
	add_params(root, m, s->global, SMELT_SCOPE_GLOBAL);
	{
		cJSON *top = cJSON_GetObjectItemCaseSensitive(root, "parameters");

		for (int i = 0; i < m->n_params; i++) {
			if (m->params[i].scope != SMELT_SCOPE_MODEL || !s->global[i].set)
				continue;
			if (!top)
				top = cJSON_AddObjectToObject(root, "parameters");
			cJSON_AddItemToObject(top, m->params[i].name,
			                      pval_json(&s->global[i], &m->params[i]));
		}
	}
	if (s->out_dtype[0])
		cJSON_AddStringToObject(root, "out_dtype", s->out_dtype);
	if (s->embed_policy[0])
		cJSON_AddStringToObject(root, "embed_policy", s->embed_policy);
	text = cJSON_Print(root);
	cJSON_Delete(root);
	return text;
}

static void pval_from_recipe(struct ui_pval *dst, const struct smelt_pvalue *v,
                             const struct smelt_param_def *p)
{
	double x;

	memset(dst, 0, sizeof(*dst));
	if (p->type == SMELT_PARAM_REGEX_LIST) {
		size_t used = 0;

		if (v->kind == SMELT_PV_STRING && v->str) {
			snprintf(dst->text, sizeof(dst->text), "%s", v->str);
		} else if (v->kind == SMELT_PV_LIST) {
			for (size_t i = 0; i < v->n_items && used < sizeof(dst->text); i++)
				if (v->items[i].kind == SMELT_PV_STRING)
					used += (size_t)snprintf(dst->text + used,
					                         sizeof(dst->text) - used, "%s%s",
					                         used ? "," : "", v->items[i].str);
		}
		dst->set = true;
		return;
	}
	if (smelt_pvalue_number(v, &x)) {
		dst->set = true;
		dst->n = 1;
		dst->v[0] = x;
		return;
	}
	if (v->kind == SMELT_PV_LIST && v->n_items >= 1 && v->n_items <= UI_GRAD_MAX) {
		for (size_t i = 0; i < v->n_items; i++) {
			if (!smelt_pvalue_number(&v->items[i], &dst->v[i])) {
				memset(dst, 0, sizeof(*dst));
				return;
			}
		}
		dst->set = true;
		dst->gradient = v->n_items > 1;
		dst->n = (int)v->n_items;
	}
}

static void apply_pset(struct ui_pval *vals, const struct smelt_method *m,
                       const struct smelt_pset *ps)
{
	for (size_t i = 0; i < ps->n; i++) {
		int k = smelt_method_param(m, ps->names[i]);

		if (k >= 0)
			pval_from_recipe(&vals[k], &ps->values[i], &m->params[k]);
	}
}

int recipe_apply(struct ui_app *app, const struct smelt_recipe *r, char *msg, size_t n)
{
	const struct smelt_method *m = smelt_method_find(r->merge_method);
	struct ui_settings *s = &app->set;
	const struct smelt_slice *sl;
	int model_no = 0;

	if (!m) {
		snprintf(msg, n, "unknown merge_method '%s'", r->merge_method);
		return -1;
	}
	free(s->raw_recipe);
	s->raw_recipe = NULL;
	s->raw_note[0] = '\0';
	s->out_dtype[0] = '\0';
	s->embed_policy[0] = '\0';
	recipe_set_method(s, m);
	for (int i = 0; i <= UI_MAX_MODELS; i++)
		if (app->slots[i].used)
			ckpt_slot_set(app, i, NULL);
	if (r->base_model)
		ckpt_slot_set(app, 0, r->base_model);
	if (r->uses_slices || r->n_slices != 1) {
		/* The form edits the models: form only; keep the text as is. */
		s->raw_recipe = strdup(r->source_text ? r->source_text : "");
		snprintf(s->raw_note, sizeof(s->raw_note),
		         "recipe uses slices: shown read-only, run as written");
		for (size_t i = 0; i < r->n_model_refs && model_no < UI_MAX_MODELS; i++)
			if (!r->base_model || strcmp(r->model_refs[i], r->base_model) != 0)
				ckpt_slot_set(app, 1 + model_no++, r->model_refs[i]);
		return 0;
	}
	apply_pset(s->global, m, &r->params);
	sl = &r->slices[0];
	apply_pset(s->global, m, &sl->params);
	for (size_t i = 0; i < sl->n_sources && model_no < UI_MAX_MODELS; i++) {
		if (r->base_model && strcmp(sl->sources[i].model, r->base_model) == 0)
			continue;
		ckpt_slot_set(app, 1 + model_no, sl->sources[i].model);
		apply_pset(s->model[model_no], m, &sl->sources[i].params);
		model_no++;
	}
	if (r->embed_policy && strcmp(r->embed_policy, "strict") != 0)
		snprintf(s->embed_policy, sizeof(s->embed_policy), "%s", r->embed_policy);
	if (r->has_out_dtype)
		snprintf(s->out_dtype, sizeof(s->out_dtype), "%s",
		         smelt_dtype_torch_name(r->out_dtype));
	return 0;
}

bool recipe_is_widen(const struct ui_settings *s)
{
	return s->method && strcmp(s->method->name, "widen") == 0;
}

static double knob(const struct ui_settings *s, const char *const *names, double def)
{
	int i = recipe_param_index(s->method, names);

	if (i < 0 || !s->global[i].set)
		return def;
	return recipe_pval_at(&s->global[i], &s->method->params[i], 0.5);
}

void recipe_widen_knobs(const struct ui_settings *s, double *t, double *cal, double *temp)
{
	*t = SMELT_WIDEN_DEFAULT_THRESHOLD;
	*cal = SMELT_WIDEN_DEFAULT_CALIBRATION;
	*temp = SMELT_WIDEN_DEFAULT_TEMPERATURE;
	if (!recipe_is_widen(s))
		return;
	*t = knob(s, names_threshold, *t);
	*cal = knob(s, names_calibration, *cal);
	*temp = knob(s, names_temperature, *temp);
	if (!(*temp > 0))
		*temp = SMELT_WIDEN_DEFAULT_TEMPERATURE;
}

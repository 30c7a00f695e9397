/* view_settings.c: view 3, the method and its parameters, generated from
 * the engine's parameter tables; gradients edit as a small curve; WIDEN
 * knobs re-score the cached statistics at once; save and load recipes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curses.h>

#include "ui_app.h"
#include "ui_recipe.h"
#include "ui_term.h"
#include "ui_work.h"

enum { IN_VALUE = 201, IN_SAVE = 202, IN_LOAD = 203 };

#define METHOD_W 22

static const struct smelt_param_def *cur_param(const struct ui_app *app)
{
	const struct smelt_method *m = app->set.method;

	if (!m || app->param_cur < 0 || app->param_cur >= m->n_params)
		return NULL;
	return &m->params[app->param_cur];
}

/* The value edited at the cursor: column 0 = all models / global. */
static struct ui_pval *cur_value(struct ui_app *app)
{
	const struct smelt_param_def *p = cur_param(app);

	if (!p)
		return NULL;
	if (app->param_col == 0 || p->scope == SMELT_SCOPE_GLOBAL)
		return &app->set.global[app->param_cur];
	return &app->set.model[app->param_col - 1][app->param_cur];
}

static double param_step(const struct smelt_param_def *p)
{
	if (p->type == SMELT_PARAM_INT || p->type == SMELT_PARAM_BOOL)
		return 1;
	if (isfinite(p->min) && isfinite(p->max) && p->max - p->min <= 2)
		return (p->max - p->min) / 20;
	return 0.1;
}

static double clamp_param(const struct smelt_param_def *p, double v)
{
	if (p->type == SMELT_PARAM_BOOL)
		return v != 0;
	if (p->type == SMELT_PARAM_INT)
		v = round(v);
	if (v < p->min)
		v = p->min;
	if (v > p->max)
		v = p->max;
	/* Snap away float drift from repeated steps (0.30000000000000004). */
	return round(v * 1e6) / 1e6;
}

static void ensure_set(struct ui_pval *v, const struct smelt_param_def *p,
                       const struct ui_pval *fallback)
{
	if (v->set)
		return;
	if (fallback && fallback->set && fallback != v) {
		*v = *fallback;
		return;
	}
	v->set = true;
	v->gradient = false;
	v->n = 1;
	v->v[0] = p->def;
}

static void adjust(struct ui_app *app, double direction)
{
	const struct smelt_param_def *p = cur_param(app);
	struct ui_pval *v = cur_value(app);

	if (!p || !v || p->type == SMELT_PARAM_REGEX_LIST || app->set.raw_recipe)
		return;
	ensure_set(v, p, &app->set.global[app->param_cur]);
	if (p->type == SMELT_PARAM_BOOL) {
		v->v[0] = v->v[0] != 0 ? 0 : 1;
	} else if (app->curve_edit && v->gradient) {
		v->v[app->curve_anchor] =
		    clamp_param(p, v->v[app->curve_anchor] + direction * param_step(p));
	} else {
		for (int i = 0; i < (v->gradient ? v->n : 1); i++)
			v->v[i] = clamp_param(p, v->v[i] + direction * param_step(p));
	}
	app_settings_changed(app);
}

static void toggle_gradient(struct ui_app *app)
{
	const struct smelt_param_def *p = cur_param(app);
	struct ui_pval *v = cur_value(app);

	if (!p || !v || p->type != SMELT_PARAM_FLOAT || app->set.raw_recipe)
		return;
	ensure_set(v, p, &app->set.global[app->param_cur]);
	if (v->gradient) {
		v->gradient = false;
		v->n = 1;
		app->curve_edit = false;
	} else {
		v->gradient = true;
		v->n = 3;
		v->v[1] = v->v[2] = v->v[0];
		app->curve_edit = true;
		app->curve_anchor = 0;
	}
	app_settings_changed(app);
}

/* ---- drawing ---- */

static void draw_methods(struct ui_app *app, int y, int x, int h, int w)
{
	bool focus = app->set_pane == 0;
	size_t n = smelt_method_count();
	int rows = h - 2;

	ui_box(y, x, h, w, st_border(app, focus), "Method", focus, st_title(app));
	if (app->method_cur < app->method_top)
		app->method_top = app->method_cur;
	if (app->method_cur >= app->method_top + rows)
		app->method_top = app->method_cur - rows + 1;
	for (int r = 0; r < rows && app->method_top + r < (int)n; r++) {
		const struct smelt_method *m = smelt_method_at((size_t)(app->method_top + r));
		bool chosen = m == app->set.method;
		struct ui_style st = app->method_top + r == app->method_cur ? st_cursor(app, focus)
		                     : chosen ? st_color(app, app->theme.select_fg)
		                              : st_text(app);

		ui_fill(y + 1 + r, x + 1, 1, w - 2, st);
		ui_textf(y + 1 + r, x + 2, w - 4, st, "%s %s", chosen ? ui_g_arrow() : " ",
		         m->name);
	}
	app->pane_y[0] = y + 1;
	app->pane_x[0] = x;
	app->pane_h[0] = rows;
	app->pane_w[0] = w;
}

static void model_short(const struct ui_app *app, int m, char *buf, size_t n)
{
	int seen = 0;

	snprintf(buf, n, "model %d", m + 1);
	for (int i = 1; i <= UI_MAX_MODELS; i++) {
		if (app->slots[i].used && seen++ == m) {
			const char *name = strrchr(app->slots[i].ref, '/');

			snprintf(buf, n, "%s", name && name[1] ? name + 1 : app->slots[i].ref);
			return;
		}
	}
}

/* A gradient as bars over the layers, with the anchors marked. */
static void draw_curve(struct ui_app *app, const struct ui_pval *v, const struct smelt_param_def *p,
                       int y, int x, int h, int w)
{
	double lo = isfinite(p->min) ? p->min : 0, hi = isfinite(p->max) ? p->max : 0;
	static const char *const eighths[9] = {" ", "▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"};

	for (int i = 0; i < v->n; i++) {
		if (v->v[i] < lo)
			lo = v->v[i];
		if (v->v[i] > hi)
			hi = v->v[i];
	}
	/* Unbounded parameters: scale to the anchors with some headroom. */
	if (!isfinite(p->max) || !isfinite(p->min)) {
		if (hi - lo < 1e-9)
			hi = lo + 1;
		hi += (hi - lo) * 0.25;
	}
	ui_textf(y, x, w, st_dim(app), "curve over the layers (%.3g .. %.3g)%s", lo, hi,
	         app->curve_edit ? "  h/l k/j a d Esc" : "");
	h -= 1;
	y += 1;
	for (int c = 0; c < w; c++) {
		double t = w > 1 ? (double)c / (w - 1) : 0;
		double f = (recipe_pval_at(v, p, t) - lo) / (hi - lo);
		int units = (int)(f * h * 8 + 0.5);
		int anchor = v->n > 1 ? (int)(t * (v->n - 1) + 0.5) : 0;
		bool at_anchor = v->n > 1 && fabs(t * (v->n - 1) - anchor) * (w - 1) < (v->n - 1);
		struct ui_style st = st_color(app, app->theme.bar_on);

		if (at_anchor)
			st = st_color(app, app->curve_edit && anchor == app->curve_anchor
			                       ? app->theme.accent
			                       : app->theme.title);
		for (int r = 0; r < h; r++) {
			int cell = units - (h - 1 - r) * 8;

			if (cell <= 0)
				continue;
			if (ui_term.utf8)
				ui_glyph(y + r, x + c, eighths[cell > 8 ? 8 : cell], st);
			else
				ui_text(y + r, x + c, 1, st, cell >= 4 ? "#" : ".");
		}
	}
}

static void draw_preview(struct ui_app *app, int y, int x, int w)
{
	int n = app->stats ? smelt_stats_n_models(app->stats) : 0;
	int layers = app->stats ? smelt_stats_n_layers(app->stats) : 0;
	char line[512];
	size_t used;

	if (!recipe_is_widen(&app->set))
		return;
	if (!app->stats) {
		ui_text(y, x, w, st_dim(app),
		        "preview: pick a base and models to see the WIDEN weights");
		return;
	}
	used =
	    (size_t)snprintf(line, sizeof(line), "preview mean %s:", ui_term.utf8 ? "ω" : "omega");
	for (int m = 0; m < n && used < sizeof(line); m++) {
		double sum = 0;
		int cnt = 0;
		char name[64];

		for (int l = -1; l < layers; l++) {
			double v = smelt_stats_layer_weight(app->stats, m, l);

			if (!isnan(v)) {
				sum += v;
				cnt++;
			}
		}
		model_short(app, m, name, sizeof(name));
		used += (size_t)snprintf(line + used, sizeof(line) - used, "  %s %s", name, "");
		if (cnt)
			used +=
			    (size_t)snprintf(line + used, sizeof(line) - used, "%.4f", sum / cnt);
		else
			used += (size_t)snprintf(line + used, sizeof(line) - used, "-");
	}
	if (app->rescore_running)
		snprintf(line + strlen(line), sizeof(line) - strlen(line), "  (re-scoring)");
	ui_text(y, x, w, st_color(app, app->theme.accent), line);
}

static void draw_form(struct ui_app *app, int y, int x, int h, int w)
{
	const struct smelt_method *m = app->set.method;
	bool focus = app->set_pane == 1;
	int n_models = app_n_models(app), name_w = 26, col_w = 16, row = y + 1;
	char title[128];

	snprintf(title, sizeof(title), "%s parameters", m ? m->name : "no method");
	ui_box(y, x, h, w, st_border(app, focus), title, focus, st_title(app));
	app->pane_y[1] = y + 2;
	app->pane_x[1] = x;
	app->pane_w[1] = w;
	if (!m)
		return;
	ui_text(row, x + 2, w - 4, st_dim(app), m->summary ? m->summary : "");
	row++;
	if (app->set.raw_recipe) {
		ui_text(row++, x + 2, w - 4, st_color(app, app->theme.warn), app->set.raw_note);
	}
	/* Header: the "all" column, then one per model. */
	ui_textf(row, x + 2, name_w, st_dim(app), "%-*s", name_w, "parameter");
	ui_textf(row, x + 2 + name_w, col_w, st_dim(app), "%-*s", col_w, "all / global");
	for (int k = 0; k < n_models && 2 + name_w + (k + 2) * col_w < w; k++) {
		char name[64];

		model_short(app, k, name, sizeof(name));
		ui_textf(row, x + 2 + name_w + (k + 1) * col_w, col_w - 1, st_dim(app), "%s", name);
	}
	row++;
	app->pane_y[1] = row;
	for (int i = 0; i < m->n_params && row < y + h - 7; i++, row++) {
		const struct smelt_param_def *p = &m->params[i];
		bool cur_row = i == app->param_cur;
		char text[600];

		ui_textf(row, x + 2, name_w - 1,
		         cur_row && focus ? st_color(app, app->theme.select_fg) : st_text(app),
		         "%s%s%s", p->name, p->scope == SMELT_SCOPE_MODEL ? " *" : "",
		         p->unused ? " (no effect)" : "");
		for (int c = 0; c <= (p->scope == SMELT_SCOPE_MODEL ? n_models : 0); c++) {
			const struct ui_pval *v =
			    c == 0 ? &app->set.global[i] : &app->set.model[c - 1][i];
			int cx = x + 2 + name_w + c * col_w;
			struct ui_style st = v->set ? st_text(app) : st_dim(app);
			/* A global value may use the whole row (regex lists are long). */
			int cw = p->scope == SMELT_SCOPE_GLOBAL ? w - 3 - name_w : col_w;

			if (cx + cw > x + w - 1)
				break;
			if (c > 0 && !v->set && app->set.global[i].set)
				st = st_dim(app);
			if (cur_row &&
			    (c == app->param_col || (p->scope == SMELT_SCOPE_GLOBAL && c == 0)))
				st = st_cursor(app, focus);
			recipe_pval_text(
			    c > 0 && !v->set && app->set.global[i].set ? &app->set.global[i] : v, p,
			    text, sizeof(text));
			ui_fill(row, cx, 1, cw - 1, st);
			ui_text(row, cx, cw - 1, st, text);
		}
	}
	app->pane_h[1] = row - app->pane_y[1];
	{
		const struct smelt_param_def *p = cur_param(app);
		struct ui_pval *v = cur_value(app);
		int by = y + h - 7;

		if (p) {
			char range[64] = "";

			if (p->type != SMELT_PARAM_REGEX_LIST)
				snprintf(range, sizeof(range), "  [%g .. %g]", p->min, p->max);
			ui_textf(by, x + 2, w - 4, st_dim(app), "%s: %s%s%s", p->name,
			         p->help ? p->help : "", range,
			         p->scope == SMELT_SCOPE_MODEL ? "  (* = per model)" : "");
		}
		if (p && v && v->set && v->gradient)
			draw_curve(app, v, p, by + 1, x + 2, 4, w - 4 < 64 ? w - 4 : 64);
		draw_preview(app, by + 5, x + 2, w - 4);
	}
}

void view_settings_draw(struct ui_app *app, struct ui_rect r)
{
	draw_methods(app, r.y, r.x, r.h, METHOD_W);
	draw_form(app, r.y, r.x + METHOD_W, r.h, r.w - METHOD_W);
}

/* ---- keys ---- */

static int n_columns(const struct ui_app *app)
{
	const struct smelt_param_def *p = cur_param(app);

	return p && p->scope == SMELT_SCOPE_MODEL ? 1 + app_n_models(app) : 1;
}

static bool curve_key(struct ui_app *app, int ch)
{
	struct ui_pval *v = cur_value(app);

	if (!v || !v->gradient) {
		app->curve_edit = false;
		return false;
	}
	/* Global keys leave the editor and do their usual job. */
	if ((ch >= '1' && ch <= '4') || ch == '?' || ch == 'q' || ch == 'r' || ch == KEY_MOUSE ||
	    ch == KEY_RESIZE) {
		app->curve_edit = false;
		return false;
	}
	switch (ch) {
	case 27:
	case '\n':
	case '\r':
	case KEY_ENTER: app->curve_edit = false; return true;
	case KEY_LEFT:
	case 'h':
		if (app->curve_anchor > 0)
			app->curve_anchor--;
		return true;
	case KEY_RIGHT:
	case 'l':
		if (app->curve_anchor < v->n - 1)
			app->curve_anchor++;
		return true;
	case KEY_UP:
	case 'k':
	case '+':
	case '=': adjust(app, 1); return true;
	case KEY_DOWN:
	case 'j':
	case '-': adjust(app, -1); return true;
	case 'a':
		if (v->n < UI_GRAD_MAX) {
			v->v[v->n] = v->v[v->n - 1];
			v->n++;
			app->curve_anchor = v->n - 1;
			app_settings_changed(app);
		}
		return true;
	case 'd':
		if (v->n > 2) {
			memmove(&v->v[app->curve_anchor], &v->v[app->curve_anchor + 1],
			        (size_t)(v->n - app->curve_anchor - 1) * sizeof(double));
			v->n--;
			if (app->curve_anchor >= v->n)
				app->curve_anchor = v->n - 1;
			app_settings_changed(app);
		}
		return true;
	}
	return true; /* the curve editor keeps the keyboard until Esc */
}

static void edit_value(struct ui_app *app)
{
	const struct smelt_param_def *p = cur_param(app);
	struct ui_pval *v = cur_value(app);
	char prompt[128], text[600] = "";

	if (!p || !v || app->set.raw_recipe)
		return;
	if (p->type == SMELT_PARAM_BOOL) {
		adjust(app, 1);
		return;
	}
	if (v->set && v->gradient) {
		app->curve_edit = true;
		app->curve_anchor = 0;
		return;
	}
	if (v->set)
		recipe_pval_text(v, p, text, sizeof(text));
	if (p->type == SMELT_PARAM_REGEX_LIST)
		snprintf(prompt, sizeof(prompt), "%s (comma-separated regexes)", p->name);
	else
		snprintf(prompt, sizeof(prompt), "%s (number, or a,b,c for a gradient)", p->name);
	app_open_input(app, prompt, strcmp(text, "(none)") ? text : "", IN_VALUE);
}

static void choose_method(struct ui_app *app)
{
	const struct smelt_method *m = smelt_method_at((size_t)app->method_cur);

	if (!m || m == app->set.method)
		return;
	free(app->set.raw_recipe);
	app->set.raw_recipe = NULL;
	recipe_set_method(&app->set, m);
	app->param_cur = 0;
	app->param_col = 0;
	app->curve_edit = false;
	app_status(app, false, "method: %s", m->name);
	app_settings_changed(app);
	app->set_pane = 1;
}

bool view_settings_key(struct ui_app *app, int ch)
{
	const struct smelt_method *m = app->set.method;

	if (app->curve_edit && app->set_pane == 1 && curve_key(app, ch))
		return true;
	switch (ch) {
	case '\t':
	case KEY_BTAB: app->set_pane = !app->set_pane; return true;
	case 's':
		app_open_input(app, "Save recipe as (.json or .yml)", "recipe.yml", IN_SAVE);
		return true;
	case 'o': app_open_input(app, "Load recipe (.json or .yml)", "", IN_LOAD); return true;
	}
	if (app->set_pane == 0) {
		int n = (int)smelt_method_count();

		switch (ch) {
		case KEY_UP:
		case 'k':
			if (app->method_cur > 0)
				app->method_cur--;
			return true;
		case KEY_DOWN:
		case 'j':
			if (app->method_cur < n - 1)
				app->method_cur++;
			return true;
		case '\n':
		case '\r':
		case KEY_ENTER:
		case ' ':
		case KEY_RIGHT:
		case 'l': choose_method(app); return true;
		}
		return false;
	}
	switch (ch) {
	case KEY_UP:
	case 'k':
		if (app->param_cur > 0)
			app->param_cur--;
		if (app->param_col >= n_columns(app))
			app->param_col = 0;
		return true;
	case KEY_DOWN:
	case 'j':
		if (m && app->param_cur < m->n_params - 1)
			app->param_cur++;
		if (app->param_col >= n_columns(app))
			app->param_col = 0;
		return true;
	case KEY_LEFT:
	case 'h':
		if (app->param_col > 0)
			app->param_col--;
		else
			app->set_pane = 0;
		return true;
	case KEY_RIGHT:
	case 'l':
		if (app->param_col < n_columns(app) - 1)
			app->param_col++;
		return true;
	case '+':
	case '=': adjust(app, 1); return true;
	case '-':
	case '_': adjust(app, -1); return true;
	case 'g': toggle_gradient(app); return true;
	case 'x':
		if (cur_value(app) && !app->set.raw_recipe) {
			memset(cur_value(app), 0, sizeof(struct ui_pval));
			app->curve_edit = false;
			app_settings_changed(app);
		}
		return true;
	case '\n':
	case '\r':
	case KEY_ENTER: edit_value(app); return true;
	case 27: app->set_pane = 0; return true;
	}
	return false;
}

static int parse_value(const struct smelt_param_def *p, const char *text, struct ui_pval *out)
{
	char tmp[600], *save = NULL;
	int n = 0;

	memset(out, 0, sizeof(*out));
	out->set = true;
	if (p->type == SMELT_PARAM_REGEX_LIST) {
		snprintf(out->text, sizeof(out->text), "%s", text);
		return 0;
	}
	snprintf(tmp, sizeof(tmp), "%s", text);
	for (char *c = tmp; *c; c++)
		if (*c == '[' || *c == ']')
			*c = ' ';
	for (char *tok = strtok_r(tmp, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *end;
		double v;

		while (*tok == ' ')
			tok++;
		if (p->type == SMELT_PARAM_BOOL &&
		    (!strncmp(tok, "true", 4) || !strncmp(tok, "false", 5))) {
			v = tok[0] == 't';
		} else {
			v = strtod(tok, &end);
			while (*end == ' ')
				end++;
			if (end == tok || *end)
				return -1;
		}
		if (n == UI_GRAD_MAX || v < p->min || v > p->max)
			return -1;
		out->v[n++] = v;
	}
	if (n == 0 || (n > 1 && p->type != SMELT_PARAM_FLOAT))
		return -1;
	out->n = n;
	out->gradient = n > 1;
	return 0;
}

static void save_recipe(struct ui_app *app, const char *path)
{
	char *json = recipe_build_json(app), *text = NULL;
	struct smelt_recipe *r = NULL;
	struct smelt_diag diag = {0};
	size_t len = strlen(path);
	bool yaml = (len > 4 && !strcmp(path + len - 4, ".yml")) ||
	            (len > 5 && !strcmp(path + len - 5, ".yaml"));
	FILE *f;

	if (!json || smelt_recipe_parse(json, strlen(json), "recipe", &r, &diag) || !r) {
		app_status(app, true, "nothing to save: choose a method first");
		goto out;
	}
	text = yaml ? smelt_recipe_to_yaml(r) : smelt_recipe_to_json(r);
	f = text ? fopen(path, "w") : NULL;
	if (!f) {
		app_status(app, true, "%s: cannot write", path);
		goto out;
	}
	fputs(text, f);
	if (fclose(f) != 0)
		app_status(app, true, "%s: write failed", path);
	else
		app_status(app, false, "saved %s (%s)", path, yaml ? "mergekit YAML" : "JSON");
out:
	free(text);
	free(json);
	smelt_recipe_free(r);
	smelt_diag_release(&diag);
}

/* Load a recipe file into the form (used by cmd_tui's --recipe too). */
int settings_load_recipe(struct ui_app *app, const char *path, char *msg, size_t n)
{
	struct smelt_recipe *r = NULL;
	struct smelt_diag diag = {0};
	int rc = smelt_recipe_load(path, &r, &diag);

	if (rc || !r) {
		char *text = smelt_diag_format(&diag);

		snprintf(msg, n, "%s", text && *text ? text : "cannot load the recipe");
		free(text);
		smelt_diag_release(&diag);
		return -1;
	}
	rc = recipe_apply(app, r, msg, n);
	smelt_recipe_free(r);
	smelt_diag_release(&diag);
	if (rc == 0) {
		for (size_t i = 0; i < smelt_method_count(); i++)
			if (smelt_method_at(i) == app->set.method)
				app->method_cur = (int)i;
		app_models_changed(app);
	}
	return rc;
}

void view_settings_input_done(struct ui_app *app, int purpose, const char *text)
{
	char msg[1024];

	if (purpose == IN_SAVE) {
		save_recipe(app, text);
	} else if (purpose == IN_LOAD) {
		if (settings_load_recipe(app, text, msg, sizeof(msg)))
			app_status(app, true, "%s", msg);
		else
			app_status(app, false, "loaded %s", text);
	} else if (purpose == IN_VALUE) {
		const struct smelt_param_def *p = cur_param(app);
		struct ui_pval *v = cur_value(app);
		struct ui_pval nv;

		if (!p || !v)
			return;
		if (!*text) {
			memset(v, 0, sizeof(*v));
		} else if (parse_value(p, text, &nv)) {
			app_status(app, true, "%s: '%s' is not a valid value (range %g .. %g)",
			           p->name, text, p->min, p->max);
			return;
		} else {
			*v = nv;
		}
		app_settings_changed(app);
	}
}

bool view_settings_mouse(struct ui_app *app, int y, int x, int button)
{
	if (x < app->pane_x[0] + app->pane_w[0]) {
		int n = (int)smelt_method_count();

		app->set_pane = 0;
		if (button == 4 || button == 5) {
			app->method_cur += button == 4 ? -1 : 1;
		} else if (y >= app->pane_y[0] && y < app->pane_y[0] + app->pane_h[0]) {
			app->method_cur = app->method_top + y - app->pane_y[0];
			if (app->method_cur < n)
				choose_method(app);
		}
		if (app->method_cur >= n)
			app->method_cur = n - 1;
		if (app->method_cur < 0)
			app->method_cur = 0;
		return true;
	}
	app->set_pane = 1;
	if (button == 4 || button == 5)
		return view_settings_key(app, button == 4 ? KEY_UP : KEY_DOWN);
	if (app->set.method && y >= app->pane_y[1] && y < app->pane_y[1] + app->pane_h[1]) {
		app->param_cur = y - app->pane_y[1];
		app->param_col = x >= app->pane_x[1] + 28 ? (x - app->pane_x[1] - 28) / 16 : 0;
		if (app->param_col >= n_columns(app))
			app->param_col = n_columns(app) - 1;
	}
	return true;
}

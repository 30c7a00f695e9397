/* view_heatmap.c: view 2, layers x tensor kinds of each model's divergence
 * from the base (or the WIDEN weight it would get), two layers per text row
 * with half blocks, a legend with the value scale and the cursor cell's
 * exact numbers. Cells fill in as the analysis thread finishes tensors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curses.h>

#include "ui_app.h"
#include "ui_term.h"

#define GRID_KINDS 8 /* q k v o gate up down norm */
/* Columns per kind: 4 (three glyphs and a gap) when there is room, down
 * to 2 on narrow terminals; set by view_heat_draw for the frame. */
static int cell_w = 4;
#define CELL_W  cell_w
#define LABEL_W 6

static const char *const mode_names[3] = {"magnitude divergence", "direction divergence",
                                          "WIDEN weight"};
static const char *const kind_short[3][GRID_KINDS] = {
    {"q", "k", "v", "o", "g", "u", "d", "n"},
    {"q ", "k ", "v ", "o ", "ga", "up", "dn", "nm"},
    {" q ", " k ", " v ", " o ", "gat", "up ", "dwn", "nrm"},
};
#define GLYPHS_W (cell_w >= 3 ? cell_w - 1 : cell_w)

/* Rows of the grid: the embedding, every layer, the final norm, the head. */
struct grid_row {
	int layer;
	enum smelt_kind kind; /* for the extra rows; layers use the column's kind */
	const char *label;
};

struct grid {
	int n_models, n_layers, n_rows;
	struct grid_row rows[SMELT_PROGRESS_MAX_LAYERS + 3];
	double lo, hi; /* value range over every ready cell of every model */
	bool any;
};

static int n_extra_top(void)
{
	return 1;
}

static void grid_rows(struct grid *g)
{
	int n = 0;

	g->rows[n++] = (struct grid_row){-1, SMELT_KIND_EMBED, "embed"};
	for (int l = 0; l < g->n_layers && n < SMELT_PROGRESS_MAX_LAYERS; l++)
		g->rows[n++] = (struct grid_row){l, SMELT_KIND_Q, NULL};
	g->rows[n++] = (struct grid_row){-1, SMELT_KIND_FINAL_NORM, "norm"};
	g->rows[n++] = (struct grid_row){-1, SMELT_KIND_HEAD, "head"};
	g->n_rows = n;
}

static double result_value(const struct smelt_stats_result *r, int mode)
{
	if (!r->n_tensors)
		return NAN;
	switch (mode) {
	case 0: return r->mag.n ? r->mag.mean : NAN;
	case 1: return r->dir.n ? r->dir.mean : NAN;
	default: return r->w.mean_omega;
	}
}

/* Value of model m at grid row/column; false when the cell is empty. */
static bool cell_value(const struct ui_app *app, const struct grid *g, int m, int row, int col,
                       double *v, bool *ready)
{
	const struct grid_row *gr = &g->rows[row];
	enum smelt_kind kind = gr->layer >= 0 ? (enum smelt_kind)col : gr->kind;
	struct smelt_stats_result r;

	if (!smelt_stats_cell(app->stats, m, gr->layer, kind, &r) || r.n_tensors == 0)
		return false;
	*ready = r.ready;
	*v = result_value(&r, app->heat_mode);
	return !isnan(*v);
}

static double scaled(const struct ui_app *app, double v)
{
	if (!app->heat_log)
		return v;
	return log10(v > 1e-12 ? v : 1e-12);
}

static void grid_range(const struct ui_app *app, struct grid *g)
{
	bool layers_only = g->n_layers > 0;

	/* The scale spans the layer cells: the embedding and head usually move
	 * much more and would flatten the grid; they clamp to the ends of the
	 * ramp (the cell pane shows their exact numbers). */
	g->any = false;
	for (int m = 0; m < g->n_models; m++) {
		for (int row = 0; row < g->n_rows; row++) {
			int cols = g->rows[row].layer >= 0 ? GRID_KINDS : 1;

			if (layers_only && g->rows[row].layer < 0)
				continue;

			for (int c = 0; c < cols; c++) {
				double v;
				bool ready;

				/* Norm deltas are per element, not per column:
				 * another unit, so they clamp too. */
				if (layers_only && app->heat_mode != 2 && c == SMELT_KIND_NORM)
					continue;
				if (!cell_value(app, g, m, row, c, &v, &ready))
					continue;
				v = scaled(app, v);
				if (!g->any || v < g->lo)
					g->lo = v;
				if (!g->any || v > g->hi)
					g->hi = v;
				g->any = true;
			}
		}
	}
	/* Divergences read best against 0 (no change); weights use their own
	 * range, which is narrow around the softmax values. */
	if (!app->heat_log && app->heat_mode != 2 && g->any && g->lo > 0)
		g->lo = 0;
}

static double norm_pos(const struct grid *g, double v)
{
	double f;

	if (!(g->hi > g->lo))
		return 0.5;
	f = (v - g->lo) / (g->hi - g->lo);
	return f < 0 ? 0 : f > 1 ? 1 : f;
}

static bool half_blocks(void)
{
	return ui_term.utf8 && ui_term.tier >= UI_TIER_256;
}

/* Glyph and style of one value in the tiers without half blocks: shade
 * glyphs over a few hues (8/16 colours), shades alone (mono), or an ASCII
 * ramp when the locale is not UTF-8. */
static void low_tier_cell(const struct ui_app *app, double f, const char **glyph,
                          struct ui_style *st)
{
	static const uint32_t hues[4] = {0x0000ee, 0x00cdcd, 0xcdcd00, 0xcd0000};
	int level;

	if (ui_term.tier == UI_TIER_MONO || !ui_term.utf8) {
		int n = ui_term.utf8 ? 5 : 10;

		level = (int)(f * (n - 1) + 0.5);
		*glyph = ui_term.utf8 ? ui_g_shade(level) : ui_g_ascii_ramp(level, n);
		if (ui_term.tier == UI_TIER_MONO || ui_term.tier < UI_TIER_256) {
			*st = app_style(app,
			                ui_term.tier == UI_TIER_MONO ? UI_DEFAULT
			                                             : theme_heat(&app->theme, f),
			                app->theme.bg, A_NORMAL);
			if (ui_term.tier != UI_TIER_MONO)
				st->fg = hues[(int)(f * 3.999)];
		} else {
			*st = app_style(app, theme_heat(&app->theme, f), app->theme.bg, A_NORMAL);
		}
		return;
	}
	/* 8/16 colours: eight levels. Glyph density and hue both rise by
	 * quarter (so the order reads even without colour); bold brightens
	 * the upper half of each quarter. */
	level = (int)(f * 7.999);
	*glyph = ui_g_shade(1 + level / 2);
	*st = app_style(app, hues[level / 2], app->theme.bg, level % 2 ? A_BOLD : A_NORMAL);
}

static uint32_t pixel_color(const struct ui_app *app, const struct grid *g, int m, int row, int col,
                            bool *has)
{
	double v;
	bool ready;

	*has = cell_value(app, g, m, row, col, &v, &ready);
	if (!*has)
		return app->theme.bg == UI_DEFAULT ? 0x000000 : app->theme.bg;
	return theme_heat(&app->theme, norm_pos(g, scaled(app, v)));
}

static bool is_cursor(const struct ui_app *app, int row, int col)
{
	return row == app->heat_row && (app->heat_col == col || col < 0);
}

/* Draw one text row of half blocks: layers rows[top] and rows[top+1]. */
static void draw_half_row(struct ui_app *app, const struct grid *g, int m, int y, int x, int top,
                          int bottom, int cols)
{
	uint32_t empty = app->theme.bg == UI_DEFAULT ? 0x101010 : app->theme.bg;

	for (int c = 0; c < cols; c++) {
		bool has_t, has_b = false;
		uint32_t ct = pixel_color(app, g, m, top, c, &has_t);
		uint32_t cb = bottom >= 0 ? pixel_color(app, g, m, bottom, c, &has_b) : empty;

		if (!has_t)
			ct = empty;
		if (!has_b)
			cb = empty;
		if (is_cursor(app, top, c))
			ct = app->theme.accent;
		if (bottom >= 0 && is_cursor(app, bottom, c))
			cb = app->theme.accent;
		for (int k = 0; k < GLYPHS_W; k++)
			ui_glyph(y, x + c * CELL_W + k, ui_g_upper(),
			         app_style(app, ct, cb, A_NORMAL));
	}
}

static void draw_single_row(struct ui_app *app, const struct grid *g, int m, int y, int x, int row,
                            int cols, int width)
{
	for (int c = 0; c < cols; c++) {
		double v;
		bool ready;
		const char *glyph = ui_term.utf8 ? "·" : ".";
		struct ui_style st = st_dim(app);
		int w = cols == 1 ? width - 1 : GLYPHS_W;

		if (cell_value(app, g, m, row, c, &v, &ready)) {
			double f = norm_pos(g, scaled(app, v));

			if (half_blocks()) {
				st = app_style(app, theme_heat(&app->theme, f),
				               theme_heat(&app->theme, f), A_NORMAL);
				glyph = " ";
			} else {
				low_tier_cell(app, f, &glyph, &st);
			}
		}
		if (is_cursor(app, row, cols == 1 ? -1 : c)) {
			if (half_blocks()) {
				st.bg = app->theme.accent;
				st.fg = app->theme.accent;
			} else {
				st.attr |= A_REVERSE;
				if (glyph[0] == ' ')
					glyph = ui_term.utf8 ? "█" : "#";
			}
		}
		for (int k = 0; k < w; k++)
			ui_glyph(y, x + c * CELL_W + k, glyph, st);
	}
}

/* Text rows the grid needs: extra rows one each, layers one or two each. */
static int layer_text_rows(const struct grid *g)
{
	return half_blocks() ? (g->n_layers + 1) / 2 : g->n_layers;
}

static int text_row_of(const struct grid *g, int row)
{
	if (row < n_extra_top())
		return row;
	if (row < n_extra_top() + g->n_layers)
		return n_extra_top() + (half_blocks() ? (row - 1) / 2 : row - 1);
	return n_extra_top() + layer_text_rows(g) + (row - 1 - g->n_layers);
}

static void draw_panel(struct ui_app *app, const struct grid *g, int m, int y, int x, int h,
                       bool labels)
{
	int gx = x + (labels ? LABEL_W : 0), total = n_extra_top() + layer_text_rows(g) + 2;
	const struct ui_slot *slot = &app->slots[0];
	int seen = 0;

	for (int i = 1; i <= UI_MAX_MODELS; i++)
		if (app->slots[i].used && seen++ == m)
			slot = &app->slots[i];
	{
		const char *name = strrchr(slot->ref, '/');

		name = name && name[1] ? name + 1 : slot->ref;
		ui_textf(y, gx, GRID_KINDS * CELL_W, st_title(app), "%.*s", GRID_KINDS * CELL_W,
		         name);
	}
	for (int c = 0; c < GRID_KINDS; c++)
		ui_text(y + 1, gx + c * CELL_W, CELL_W,
		        c == app->heat_col && app->heat_row > 0 && app->heat_row <= g->n_layers
		            ? st_color(app, app->theme.accent)
		            : st_dim(app),
		        kind_short[cell_w - 2][c]);
	y += 2;
	h -= 2;
	for (int tr = app->heat_top; tr < total && tr - app->heat_top < h; tr++) {
		int yy = y + tr - app->heat_top;
		int first = -1, second = -1;

		for (int row = 0; row < g->n_rows; row++) {
			if (text_row_of(g, row) != tr)
				continue;
			if (first < 0)
				first = row;
			else
				second = row;
		}
		if (first < 0)
			continue;
		if (labels) {
			const struct grid_row *gr = &g->rows[first];
			bool cur = app->heat_row == first || app->heat_row == second;
			struct ui_style st = cur ? st_color(app, app->theme.accent) : st_dim(app);

			if (gr->label)
				ui_textf(yy, x, LABEL_W, st, "%-5s", gr->label);
			else if (second >= 0)
				ui_textf(yy, x, LABEL_W, st, "%2d-%-2d", gr->layer,
				         g->rows[second].layer);
			else
				ui_textf(yy, x, LABEL_W, st, "%4d ", gr->layer);
		}
		if (g->rows[first].layer < 0)
			draw_single_row(app, g, m, yy, gx, first, 1, GRID_KINDS * CELL_W);
		else if (half_blocks())
			draw_half_row(app, g, m, yy, gx, first, second, GRID_KINDS);
		else
			draw_single_row(app, g, m, yy, gx, first, GRID_KINDS, CELL_W);
	}
}

static void fmt_val(double v, char *buf, size_t n)
{
	if (isnan(v))
		snprintf(buf, n, "-");
	else
		snprintf(buf, n, "%.3g", v);
}

static void draw_legend(struct ui_app *app, const struct grid *g, int y, int x, int h)
{
	char hi[32], mid[32], lo[32];
	int rows = h - 4 < 16 ? h - 4 : 16;
	double vhi = g->hi, vlo = g->lo, vmid = (g->hi + g->lo) / 2;

	if (app->heat_log) {
		vhi = pow(10, vhi);
		vlo = pow(10, vlo);
		vmid = pow(10, vmid);
	}
	fmt_val(g->any ? vhi : NAN, hi, sizeof(hi));
	fmt_val(g->any ? vmid : NAN, mid, sizeof(mid));
	fmt_val(g->any ? vlo : NAN, lo, sizeof(lo));
	ui_textf(y, x, 12, st_dim(app), "%s", app->heat_log ? "log scale" : "linear");
	for (int r = 0; r < rows; r++) {
		double f = 1.0 - (double)r / (rows > 1 ? rows - 1 : 1);
		const char *glyph = " ";
		struct ui_style st;

		if (half_blocks() || ui_term.tier == UI_TIER_DIRECT) {
			st = app_style(app, theme_heat(&app->theme, f), theme_heat(&app->theme, f),
			               A_NORMAL);
		} else {
			low_tier_cell(app, f, &glyph, &st);
		}
		ui_glyph(y + 1 + r, x, glyph, st);
		ui_glyph(y + 1 + r, x + 1, glyph, st);
	}
	ui_text(y + 1, x + 3, 9, st_text(app), hi);
	ui_text(y + rows / 2, x + 3, 9, st_text(app), mid);
	ui_text(y + rows, x + 3, 9, st_text(app), lo);
}

static void model_name(const struct ui_app *app, int m, char *buf, size_t n)
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

static void draw_details(struct ui_app *app, const struct grid *g, int y, int x, int h, int w)
{
	const struct grid_row *gr = &g->rows[app->heat_row];
	enum smelt_kind kind = gr->layer >= 0 ? (enum smelt_kind)app->heat_col : gr->kind;
	struct smelt_stats_progress p;
	int r = y;
	/* Every line checks the room left: the pane may be short. */
#define LINE(...)                                                                                  \
	do {                                                                                       \
		if (r < y + h - 2)                                                                 \
			ui_textf(r++, x + 2, w - 4, __VA_ARGS__);                                  \
	} while (0)

	ui_box(y, x, h, w, st_border(app, false), "Cell", false, st_title(app));
	r++;
	if (gr->layer >= 0)
		LINE(st_title(app), "layer %d  %s", gr->layer, smelt_kind_name(kind));
	else
		LINE(st_title(app), "%s", smelt_kind_name(kind));
	for (int m = 0; m < g->n_models && r < y + h - 2; m++) {
		struct smelt_stats_result res;
		char name[64], a[24], b[24], c[24], d[24];

		model_name(app, m, name, sizeof(name));
		if (!smelt_stats_cell(app->stats, m, gr->layer, kind, &res) || !res.n_tensors) {
			LINE(st_dim(app), "%s: no tensor here", name);
			continue;
		}
		LINE(st_color(app, app->theme.accent), "%s%s", name,
		     res.ready ? "" : "  (computing)");
		fmt_val(res.mag.mean, a, sizeof(a));
		fmt_val(res.mag.max, b, sizeof(b));
		fmt_val(res.mag.p50, c, sizeof(c));
		fmt_val(res.mag.p90, d, sizeof(d));
		LINE(st_text(app), " magnitude mean %-9s max %s", a, b);
		LINE(st_text(app), "           p50  %-9s p90 %s", c, d);
		if (res.dir.n) {
			fmt_val(res.dir.mean, a, sizeof(a));
			fmt_val(res.dir.max, b, sizeof(b));
			fmt_val(res.dir.p50, c, sizeof(c));
			fmt_val(res.dir.p99, d, sizeof(d));
			LINE(st_text(app), " direction mean %-9s max %s", a, b);
			LINE(st_text(app), "           p50  %-9s p99 %s", c, d);
		}
		LINE(st_text(app), " omega     mean %.4f  [%.3f, %.3f]", res.w.mean_omega,
		     res.w.min_omega, res.w.max_omega);
		LINE(st_text(app), " calibrated mag %.0f%%  dir %.0f%%", 100 * res.w.frac_cal_mag,
		     100 * res.w.frac_cal_dir);
		LINE(st_dim(app), " %d tensor%s, %llu columns", res.n_tensors,
		     res.n_tensors == 1 ? "" : "s", (unsigned long long)res.n_columns);
	}
	smelt_stats_progress(app->stats, &p);
	if (r < y + h - 1) {
		double t, s, T;

		smelt_stats_knobs(app->stats, &t, &s, &T);
		ui_textf(y + h - 2, x + 2, w - 4, st_dim(app),
		         "knobs t=%.3g s=%.3g T=%.3g  %s%zu/%zu", t, s, T,
		         p.from_cache ? "cached " : "", p.tensors_done, p.tensors_total);
	}
}
#undef LINE

static void empty_message(struct ui_app *app, struct ui_rect r)
{
	const char *msg = "Pick a base and at least one model in view 1 (Checkpoints).";

	if (app->stats_error[0])
		msg = app->stats_error;
	else if (app->slots[0].used && app->slots[0].state == 0)
		msg = "Opening checkpoints...";
	ui_box(r.y, r.x, r.h, r.w, st_border(app, true), "Heatmap", true, st_title(app));
	ui_text(r.y + 2, r.x + 3, r.w - 6,
	        app->stats_error[0] ? st_color(app, app->theme.error) : st_dim(app), msg);
}

static void grid_init(const struct ui_app *app, struct grid *g)
{
	g->n_models = smelt_stats_n_models(app->stats);
	g->n_layers = smelt_stats_n_layers(app->stats);
	if (g->n_layers > SMELT_PROGRESS_MAX_LAYERS)
		g->n_layers = SMELT_PROGRESS_MAX_LAYERS;
	grid_rows(g);
}

void view_heat_draw(struct ui_app *app, struct ui_rect r)
{
	static struct grid g;
	int panel_w, grid_w, detail_w, body_h, detail_h = 0;
	struct smelt_stats_progress p;
	char title[160];

	if (!app->stats) {
		empty_message(app, r);
		return;
	}
	grid_init(app, &g);
	grid_range(app, &g);
	if (app->heat_row >= g.n_rows)
		app->heat_row = g.n_rows - 1;
	smelt_stats_progress(app->stats, &p);
	snprintf(title, sizeof(title), "%s%s  (m mode, s scale)", mode_names[app->heat_mode],
	         p.state == SMELT_STATS_RUNNING ? "  computing" : "");
	/* The widest cells that fit every model side by side with the legend. */
	for (cell_w = 4; cell_w > 2; cell_w--)
		if (LABEL_W + g.n_models * (GRID_KINDS * cell_w + 2) + 14 <= r.w - 2)
			break;
	panel_w = GRID_KINDS * CELL_W + 2;
	app->grid_cell_w = cell_w;
	grid_w = LABEL_W + g.n_models * panel_w + 14;
	detail_w = r.w - grid_w - 2;
	body_h = r.h - 2;
	/* Too narrow for the cell pane beside the grid: put it below, as
	 * tall as the grid leaves room for (the grid scrolls otherwise). */
	if (detail_w < 30) {
		detail_h = r.h - 2 - (n_extra_top() + layer_text_rows(&g) + 2 + 2);
		if (detail_h < 9)
			detail_h = 9;
		if (detail_h > r.h - 8)
			detail_h = r.h - 8;
		body_h = r.h - 2 - detail_h;
	}
	ui_box(r.y, r.x, r.h, r.w, st_border(app, true), title, true, st_title(app));
	/* Keep the cursor's text row visible. */
	{
		int tr = text_row_of(&g, app->heat_row), vis = body_h - 2;

		if (tr < app->heat_top)
			app->heat_top = tr;
		if (tr >= app->heat_top + vis)
			app->heat_top = tr - vis + 1;
	}
	app->grid_y = r.y + 3;
	app->grid_x = r.x + 2 + LABEL_W;
	app->grid_panel_w = panel_w;
	{
		/* Models that do not fit even with the narrowest cells are left
		 * out (the cell pane still lists them). */
		int shown = (r.w - 16 - LABEL_W) / panel_w;

		if (shown > g.n_models)
			shown = g.n_models;
		if (shown < 1)
			shown = 1;
		app->grid_n_panels = shown;
		for (int m = 0; m < shown; m++)
			draw_panel(app, &g, m, r.y + 1, r.x + 2 + (m ? LABEL_W + m * panel_w : 0),
			           body_h, m == 0);
		draw_legend(app, &g, r.y + 2, r.x + 2 + LABEL_W + shown * panel_w, body_h);
		if (shown < g.n_models)
			ui_textf(r.y + r.h - 1, r.x + 24, r.w - 26, st_dim(app),
			         " %d more model%s: widen the terminal ", g.n_models - shown,
			         g.n_models - shown == 1 ? "" : "s");
	}
	if (detail_w >= 30)
		draw_details(app, &g, r.y + 1, r.x + grid_w + 1, r.h - 2, detail_w);
	else
		draw_details(app, &g, r.y + 1 + body_h, r.x + 1, detail_h, r.w - 2);
	if (p.state == SMELT_STATS_RUNNING && p.bytes_total)
		ui_bar(r.y + r.h - 1, r.x + 2, 20, (double)p.bytes_read / (double)p.bytes_total,
		       st_color(app, app->theme.bar_on), st_color(app, app->theme.bar_off));
}

bool view_heat_key(struct ui_app *app, int ch)
{
	int rows = app->stats ? smelt_stats_n_layers(app->stats) + 3 : 0;

	switch (ch) {
	case 'm': app->heat_mode = (app->heat_mode + 1) % 3; return true;
	case 'M': app->heat_mode = (app->heat_mode + 2) % 3; return true;
	case 's':
	case 'L': app->heat_log = !app->heat_log; return true;
	case KEY_UP:
	case 'k':
		if (app->heat_row > 0)
			app->heat_row--;
		return true;
	case KEY_DOWN:
	case 'j':
		if (app->heat_row < rows - 1)
			app->heat_row++;
		return true;
	case KEY_LEFT:
	case 'h':
		if (app->heat_col > 0)
			app->heat_col--;
		return true;
	case KEY_RIGHT:
	case 'l':
		if (app->heat_col < GRID_KINDS - 1)
			app->heat_col++;
		return true;
	case KEY_PPAGE: app->heat_row = app->heat_row > 10 ? app->heat_row - 10 : 0; return true;
	case KEY_NPAGE:
		app->heat_row = app->heat_row + 10 < rows ? app->heat_row + 10 : rows - 1;
		return true;
	case KEY_HOME: app->heat_row = 0; return true;
	case KEY_END: app->heat_row = rows > 0 ? rows - 1 : 0; return true;
	}
	return false;
}

bool view_heat_mouse(struct ui_app *app, int y, int x, int button)
{
	static struct grid g;
	int tr, col, rel;

	if (!app->stats)
		return false;
	if (button == 4 || button == 5)
		return view_heat_key(app, button == 4 ? KEY_UP : KEY_DOWN);
	grid_init(app, &g);
	tr = y - app->grid_y + app->heat_top;
	rel = x - app->grid_x;
	if (tr < 0 || rel < 0 || rel >= app->grid_n_panels * app->grid_panel_w)
		return false;
	col = (rel % app->grid_panel_w) / (app->grid_cell_w > 0 ? app->grid_cell_w : 4);
	if (col >= GRID_KINDS)
		return false;
	for (int row = 0; row < g.n_rows; row++) {
		if (text_row_of(&g, row) != tr)
			continue;
		app->heat_row = row;
		app->heat_col = col;
		return true; /* the first (upper) layer of the text row */
	}
	return false;
}

/* view_run.c: view 4, output options, the validation result and the live
 * progress of a merge (bar, throughput, ETA, current tensor, per-layer
 * strip, peak memory), then the outcome. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curses.h>

#include "ui_app.h"
#include "ui_term.h"
#include "ui_work.h"

enum { IN_OUT = 301, IN_SHARD = 302, IN_THREADS = 303 };
enum { ROW_OUT, ROW_DTYPE, ROW_SHARD, ROW_THREADS, ROW_FORCE, ROW_VOCAB, N_ROWS };

static const char *const dtypes[] = {"", "bfloat16", "float16", "float32"};
/* embed_policy: what to do when vocabulary sizes differ ("" = strict). */
static const char *const vocab_policies[] = {"", "common", "mean"};
#define N_POLICIES 3
#define N_DTYPES   4

static const char *fix_where(const char *path)
{
	if (!path || !*path)
		return "recipe";
	if (!strncmp(path, "base_model", 10) ||
	    (!strncmp(path, "models[", 7) && !strstr(path, "parameters")) ||
	    !strncmp(path, "slices", 6))
		return "view 1 Checkpoints";
	if (strstr(path, "parameters") || !strncmp(path, "merge_method", 12))
		return "view 3 Settings";
	if (strstr(path, "dtype"))
		return "view 4 Run: dtype";
	if (!strncmp(path, "shard", 5))
		return "view 4 Run: shard size";
	if (!strncmp(path, "embed_policy", 12))
		return "view 4 Run: vocabulary";
	return "recipe";
}

static void draw_form(struct ui_app *app, int y, int x, int w, bool focus)
{
	const struct ui_settings *s = &app->set;
	char val[UI_PATH_MAX + 32];

	for (int row = 0; row < N_ROWS; row++) {
		static const char *const labels[N_ROWS] = {
		    "output folder", "dtype", "shard size", "threads", "overwrite", "vocabulary"};
		struct ui_style st = row == app->run_cur ? st_cursor(app, focus) : st_text(app);

		switch (row) {
		case ROW_OUT:
			snprintf(val, sizeof(val), "%s", s->out_dir[0] ? s->out_dir : "(unset)");
			break;
		case ROW_DTYPE:
			snprintf(val, sizeof(val), "%s",
			         s->out_dtype[0] ? s->out_dtype : "as base");
			break;
		case ROW_SHARD:
			snprintf(val, sizeof(val), "%s", s->shard[0] ? s->shard : "5GB");
			break;
		case ROW_THREADS:
			if (s->threads > 0)
				snprintf(val, sizeof(val), "%d", s->threads);
			else
				snprintf(val, sizeof(val), "all CPUs");
			break;
		case ROW_FORCE: snprintf(val, sizeof(val), "%s", s->force ? "yes" : "no"); break;
		case ROW_VOCAB:
			snprintf(val, sizeof(val), "%s",
			         !s->embed_policy[0] ? "strict (sizes must match)"
			         : !strcmp(s->embed_policy, "common")
			             ? "common (merge shared rows, keep the base's others)"
			             : "mean (pad with the mean row)");
			break;
		}
		ui_textf(y + row, x, 16, st_dim(app), "%-15s", labels[row]);
		ui_fill(y + row, x + 16, 1, w - 16, st);
		ui_text(y + row, x + 16, w - 16, st, val);
	}
}

static void draw_validation(struct ui_app *app, int y, int x, int h, int w)
{
	const struct ui_validation *v = app->valid;
	bool stale = !v || v->generation != app->valid_gen;
	int row = y;
	char a[32], b[32], c[32];

	if (!app->set.method) {
		ui_text(row, x, w, st_dim(app), "choose a method in view 3");
		return;
	}
	if (!v) {
		ui_text(row, x, w, st_dim(app), "validating...");
		return;
	}
	if (v->ok && !smelt_diag_errors(&v->diag) && !v->out_problem[0]) {
		ui_textf(row++, x, w, st_color(app, app->theme.ok), "%s valid%s: press r to merge",
		         ui_term.utf8 ? "✓" : "ok", stale ? " (re-checking)" : "");
	} else {
		ui_textf(row++, x, w, st_color(app, app->theme.error), "%zu problem%s%s",
		         smelt_diag_errors(&v->diag) + (v->out_problem[0] ? 1 : 0),
		         smelt_diag_errors(&v->diag) + (v->out_problem[0] ? 1 : 0) == 1 ? "" : "s",
		         stale ? " (re-checking)" : "");
	}
	if (v->ok) {
		fmt_bytes(v->bytes_read, a, sizeof(a));
		fmt_bytes(v->bytes_written, b, sizeof(b));
		fmt_bytes(v->peak_memory, c, sizeof(c));
		char line[256];

		snprintf(line, sizeof(line),
		         "%zu tensors, %zu shard%s; reads %s, writes %s, memory ~%s", v->n_tensors,
		         v->n_shards, v->n_shards == 1 ? "" : "s", a, b, c);
		row += ui_text_wrap(row, x, 2, w, st_dim(app), line);
	}
	if (v->out_problem[0] && row < y + h) {
		char line[600];

		snprintf(line, sizeof(line), "error: %s", v->out_problem);
		row += ui_text_wrap(row, x, y + h - row, w, st_color(app, app->theme.error), line);
		row += ui_text_wrap(row, x + 2, y + h - row, w - 2, st_dim(app),
		                    "fix in view 4 Run: output folder (or overwrite: yes)");
	}
	size_t shown = 0;

	for (size_t i = 0; i < v->diag.n && row < y + h - 2; i++, shown++) {
		const struct smelt_diag_item *it = &v->diag.items[i];
		bool err = it->severity == SMELT_DIAG_ERROR;

		char line[1200];

		snprintf(line, sizeof(line), "%s: %s%s%s", err ? "error" : "warning",
		         it->path && *it->path ? it->path : "", it->path && *it->path ? ": " : "",
		         it->msg);
		row += ui_text_wrap(row, x, y + h - 1 - row, w,
		                    st_color(app, err ? app->theme.error : app->theme.warn), line);
		ui_textf(row++, x + 2, w - 2, st_dim(app), "fix in %s", fix_where(it->path));
	}
	if (shown < v->diag.n)
		ui_textf(y + h - 1, x, w, st_dim(app), "... and %zu more", v->diag.n - shown);
}

static void draw_layer_strip(struct ui_app *app, int y, int x, int w)
{
	struct smelt_progress *p = app->prog;
	int n = atomic_load(&p->n_layers);

	if (n <= 0)
		return;
	if (n > SMELT_PROGRESS_MAX_LAYERS)
		n = SMELT_PROGRESS_MAX_LAYERS;
	ui_text(y, x, 8, st_dim(app), "layers");
	for (int i = 0; i < n && 8 + i < w; i++) {
		uint32_t done = (uint32_t)atomic_load(&p->layer_done[i]);
		uint32_t total = (uint32_t)atomic_load(&p->layer_total[i]);
		bool full = total && done >= total;
		const char *g = full ? ui_g_full() : done ? ui_g_shade(2) : ui_g_shade(1);

		ui_glyph(y, x + 8 + i, g,
		         st_color(app, full   ? app->theme.ok
		                       : done ? app->theme.warn
		                              : app->theme.dim));
	}
}

static const char *phase_name(int phase)
{
	switch (phase) {
	case SMELT_PHASE_PLANNING: return "planning";
	case SMELT_PHASE_STATS: return "statistics pass";
	case SMELT_PHASE_MERGING: return "merging";
	case SMELT_PHASE_FINALIZING: return "finalizing";
	case SMELT_PHASE_DONE: return "done";
	case SMELT_PHASE_FAILED: return "failed";
	case SMELT_PHASE_CANCELED: return "cancelled";
	}
	return "starting";
}

static void draw_progress(struct ui_app *app, int y, int x, int h, int w)
{
	struct smelt_progress *p = app->prog;
	char rd[32], rdt[32], wr[32], wrt[32], peak[32], eta[32], el[32],
	    cur[SMELT_PROGRESS_NAME_MAX];
	double rate, frac;
	int row = y;

	if (app->run_state == UI_RUN_IDLE || !p) {
		ui_text(row++, x, w, st_dim(app), "No merge has run yet.");
		ui_text(row++, x, w, st_dim(app),
		        "Press r (from any view) once the recipe is valid.");
		return;
	}
	frac = smelt_progress_fraction(p);
	rate = smelt_progress_rate(p);
	fmt_bytes(atomic_load(&p->bytes_read), rd, sizeof(rd));
	fmt_bytes(atomic_load(&p->bytes_read_total), rdt, sizeof(rdt));
	fmt_bytes(atomic_load(&p->bytes_written), wr, sizeof(wr));
	fmt_bytes(atomic_load(&p->bytes_written_total), wrt, sizeof(wrt));
	fmt_bytes(atomic_load(&p->peak_rss_anon_kb) * 1024, peak, sizeof(peak));
	fmt_duration(smelt_progress_eta(p), eta, sizeof(eta));
	fmt_duration(smelt_progress_elapsed(p), el, sizeof(el));
	smelt_progress_current(p, cur, sizeof(cur));
	ui_textf(row++, x, w, st_title(app), "%s  %.1f%%", phase_name(atomic_load(&p->phase)),
	         100 * frac);
	ui_bar(row++, x, w, frac, st_color(app, app->theme.bar_on),
	       st_color(app, app->theme.bar_off));
	ui_textf(row++, x, w, st_text(app), "read    %s / %s", rd, rdt);
	ui_textf(row++, x, w, st_text(app), "written %s / %s", wr, wrt);
	ui_textf(row++, x, w, st_text(app), "speed   %.2f GB/s   elapsed %s   ETA %s", rate / 1e9,
	         el, app->run_state == UI_RUN_RUNNING ? eta : "--");
	ui_textf(row++, x, w, st_text(app), "tensors %llu / %llu   peak memory %s",
	         (unsigned long long)atomic_load(&p->tensors_done),
	         (unsigned long long)atomic_load(&p->tensors_total), peak);
	ui_textf(row++, x, w, st_dim(app), "current %s",
	         app->run_state == UI_RUN_RUNNING ? cur : "");
	draw_layer_strip(app, row++, x, w);
	row++;
	if (row >= y + h)
		return;
	switch (app->run_state) {
	case UI_RUN_RUNNING: ui_text(row, x, w, st_dim(app), "c cancels (asks first)"); break;
	case UI_RUN_DONE: {
		char t[32], b[32];

		fmt_duration(app->run_seconds, t, sizeof(t));
		fmt_bytes(app->run_bytes_written, b, sizeof(b));
		ui_textf(row++, x, w, st_color(app, app->theme.ok), "%s merged in %s",
		         ui_term.utf8 ? "✓" : "ok", t);
		ui_textf(row++, x, w, st_text(app), "output  %s", app->run_result);
		ui_textf(row++, x, w, st_text(app), "wrote %s with %s", b,
		         app->set.method ? app->set.method->name : "");
		break;
	}
	case UI_RUN_CANCELED:
		ui_text(row, x, w, st_color(app, app->theme.warn),
		        "cancelled: the partial output was removed");
		break;
	case UI_RUN_FAILED:
		ui_text(row++, x, w, st_color(app, app->theme.error), "merge failed:");
		ui_text_wrap(row, x + 2, y + h - row, w - 2, st_color(app, app->theme.error),
		             app->run_result);
		break;
	case UI_RUN_IDLE: break;
	}
}

void view_run_draw(struct ui_app *app, struct ui_rect r)
{
	int lw = r.w / 2, fh = N_ROWS + 2;

	ui_box(r.y, r.x, fh, lw, st_border(app, true), "Output", true, st_title(app));
	draw_form(app, r.y + 1, r.x + 2, lw - 4, true);
	app->pane_y[0] = r.y + 1;
	app->pane_x[0] = r.x;
	app->pane_h[0] = N_ROWS;
	app->pane_w[0] = lw;
	ui_box(r.y + fh, r.x, r.h - fh, lw, st_border(app, false), "Validation", false,
	       st_title(app));
	draw_validation(app, r.y + fh + 1, r.x + 2, r.h - fh - 2, lw - 4);
	ui_box(r.y, r.x + lw, r.h, r.w - lw, st_border(app, false), "Progress", false,
	       st_title(app));
	draw_progress(app, r.y + 1, r.x + lw + 2, r.h - 2, r.w - lw - 4);
}

static void activate(struct ui_app *app, int delta)
{
	struct ui_settings *s = &app->set;
	char buf[32];

	switch (app->run_cur) {
	case ROW_OUT: app_open_input(app, "Output folder", s->out_dir, IN_OUT); return;
	case ROW_SHARD:
		app_open_input(app, "Shard size (e.g. 5GB, 500MB)", s->shard, IN_SHARD);
		return;
	case ROW_DTYPE: {
		int i = 0;

		while (i < N_DTYPES && strcmp(dtypes[i], s->out_dtype) != 0)
			i++;
		i = (i + (delta ? delta : 1) + N_DTYPES) % N_DTYPES;
		snprintf(s->out_dtype, sizeof(s->out_dtype), "%s", dtypes[i]);
		break;
	}
	case ROW_THREADS:
		if (!delta) {
			snprintf(buf, sizeof(buf), "%d", s->threads);
			app_open_input(app, "Threads (0 = all CPUs)", buf, IN_THREADS);
			return;
		}
		s->threads += delta;
		if (s->threads < 0)
			s->threads = 0;
		break;
	case ROW_FORCE: s->force = !s->force; break;
	case ROW_VOCAB: {
		int i = 0;

		while (i < N_POLICIES && strcmp(vocab_policies[i], s->embed_policy) != 0)
			i++;
		i = (i + (delta ? delta : 1) + N_POLICIES) % N_POLICIES;
		snprintf(s->embed_policy, sizeof(s->embed_policy), "%s", vocab_policies[i]);
		break;
	}
	}
	app_settings_changed(app);
}

bool view_run_key(struct ui_app *app, int ch)
{
	switch (ch) {
	case KEY_UP:
	case 'k':
		if (app->run_cur > 0)
			app->run_cur--;
		return true;
	case KEY_DOWN:
	case 'j':
		if (app->run_cur < N_ROWS - 1)
			app->run_cur++;
		return true;
	case '\n':
	case '\r':
	case KEY_ENTER: activate(app, 0); return true;
	case '+':
	case '=':
	case KEY_RIGHT:
	case 'l':
		if (app->run_cur != ROW_OUT && app->run_cur != ROW_SHARD)
			activate(app, 1);
		return true;
	case '-':
	case KEY_LEFT:
	case 'h':
		if (app->run_cur != ROW_OUT && app->run_cur != ROW_SHARD)
			activate(app, -1);
		return true;
	case 'c':
	case 27:
		if (app->run_state == UI_RUN_RUNNING)
			app->dialog = UI_DLG_CANCEL;
		return true;
	case 'v':
		app->valid_gen++;
		work_validate(app);
		app_status(app, false, "validating...");
		return true;
	}
	return false;
}

void view_run_input_done(struct ui_app *app, int purpose, const char *text)
{
	struct smelt_err err;
	uint64_t bytes;

	switch (purpose) {
	case IN_OUT: snprintf(app->set.out_dir, sizeof(app->set.out_dir), "%s", text); break;
	case IN_SHARD:
		if (*text && smelt_parse_size(text, &bytes, &err)) {
			app_status(app, true, "%s", err.msg);
			return;
		}
		snprintf(app->set.shard, sizeof(app->set.shard), "%s", text);
		break;
	case IN_THREADS: app->set.threads = atoi(text) > 0 ? atoi(text) : 0; break;
	}
	app_settings_changed(app);
}

bool view_run_mouse(struct ui_app *app, int y, int x, int button)
{
	(void)x;
	if (button != 1)
		return false;
	if (y >= app->pane_y[0] && y < app->pane_y[0] + app->pane_h[0]) {
		app->run_cur = y - app->pane_y[0];
		return true;
	}
	return false;
}

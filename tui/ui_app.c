/* ui_app.c: the event loop, the screen's frame (tabs, status line,
 * dialogs) and the glue between views and workers. */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curses.h>

#include "ui_app.h"
#include "ui_recipe.h"
#include "ui_term.h"
#include "ui_work.h"

#define MIN_COLS  72
#define MIN_LINES 18

static const char *const view_names[UI_VIEW_COUNT] = {"Checkpoints", "Heatmap", "Settings", "Run"};

/* ---- styles ---- */

struct ui_style app_style(const struct ui_app *app, uint32_t fg, uint32_t bg, unsigned attr)
{
	(void)app;
	return (struct ui_style){fg, bg, attr};
}

struct ui_style st_text(const struct ui_app *app)
{
	return app_style(app, app->theme.fg, app->theme.bg, A_NORMAL);
}

struct ui_style st_dim(const struct ui_app *app)
{
	return app_style(app, app->theme.dim, app->theme.bg,
	                 ui_term.tier == UI_TIER_MONO ? A_DIM : A_NORMAL);
}

struct ui_style st_title(const struct ui_app *app)
{
	return app_style(app, app->theme.title, app->theme.bg, A_BOLD);
}

struct ui_style st_border(const struct ui_app *app, bool focused)
{
	return app_style(app, focused ? app->theme.border_focus : app->theme.border, app->theme.bg,
	                 focused ? A_BOLD : A_NORMAL);
}

struct ui_style st_cursor(const struct ui_app *app, bool focused)
{
	if (ui_term.tier == UI_TIER_MONO)
		return app_style(app, UI_DEFAULT, UI_DEFAULT, focused ? A_REVERSE : A_UNDERLINE);
	if (!focused)
		return app_style(app, app->theme.fg, app->theme.tab_bg, A_NORMAL);
	/* 8-colour terminals cannot show a subtle cursor colour: reverse. */
	if (ui_term.tier <= UI_TIER_16)
		return app_style(app, app->theme.fg, app->theme.bg, A_REVERSE);
	return app_style(app, app->theme.cursor_fg, app->theme.cursor_bg, A_BOLD);
}

struct ui_style st_color(const struct ui_app *app, uint32_t fg)
{
	return app_style(app, fg, app->theme.bg, ui_term.tier == UI_TIER_MONO ? A_BOLD : A_NORMAL);
}

/* ---- small helpers ---- */

void fmt_bytes(uint64_t b, char *buf, size_t n)
{
	smelt_format_bytes((double)b, buf, n);
}

void fmt_duration(double s, char *buf, size_t n)
{
	if (s < 0)
		snprintf(buf, n, "--");
	else if (s < 60)
		snprintf(buf, n, "%.1fs", s);
	else if (s < 3600)
		snprintf(buf, n, "%dm%02ds", (int)s / 60, (int)s % 60);
	else
		snprintf(buf, n, "%dh%02dm", (int)s / 3600, ((int)s / 60) % 60);
}

int app_n_models(const struct ui_app *app)
{
	int n = 0;

	for (int i = 1; i <= UI_MAX_MODELS; i++)
		n += app->slots[i].used;
	return n;
}

void app_status(struct ui_app *app, bool error, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(app->status, sizeof(app->status), fmt, ap);
	va_end(ap);
	/* One line only: engine messages may hold several. */
	for (char *p = app->status; *p; p++)
		if (*p == '\n')
			*p = ' ';
	app->status_error = error;
	app->status_ns = smelt_now_ns();
	app->dirty = true;
}

void app_models_changed(struct ui_app *app)
{
	ckpt_recompute_compat(app);
	work_stats_restart(app);
	app_settings_changed(app);
}

void app_settings_changed(struct ui_app *app)
{
	char exclude[512];
	double t, s, T;

	app->valid_gen++;
	work_validate(app);
	recipe_widen_knobs(&app->set, &t, &s, &T);
	work_exclude_text(&app->set, exclude, sizeof(exclude));
	/* Exclusions decide which tensors are analysed: start again. Knobs
	 * only re-score what is already there. */
	if (app->stats && strcmp(exclude, app->stats_exclude) != 0)
		work_stats_restart(app);
	else if (app->stats && (t != app->knob_t || s != app->knob_s || T != app->knob_T))
		work_rescore(app);
	app->dirty = true;
}

void app_request_run(struct ui_app *app)
{
	const struct ui_validation *v = app->valid;

	if (app->run_state == UI_RUN_RUNNING) {
		app_status(app, false, "a merge is already running");
		return;
	}
	app->view = UI_VIEW_RUN;
	if (!v || v->generation != app->valid_gen || app->validating) {
		app->run_after_validate = true;
		app_status(app, false, "validating before the merge starts...");
		work_validate(app);
		return;
	}
	if (!v->ok || smelt_diag_errors(&v->diag) || v->out_problem[0]) {
		app_status(app, true, "cannot run: fix the problems listed in the Run view");
		return;
	}
	if (work_merge_start(app))
		app_status(app, true, "could not start the merge");
	else
		app_status(app, false, "merging into %s", app->set.out_dir);
}

void app_open_input(struct ui_app *app, const char *prompt, const char *initial, int purpose)
{
	app->dialog = UI_DLG_INPUT;
	snprintf(app->input.prompt, sizeof(app->input.prompt), "%s", prompt);
	snprintf(app->input.buf, sizeof(app->input.buf), "%s", initial ? initial : "");
	app->input.len = (int)strlen(app->input.buf);
	app->input.purpose = purpose;
	app->dirty = true;
}

static bool work_running(const struct ui_app *app)
{
	return app->run_state == UI_RUN_RUNNING || app->stats_running || app->hub_running ||
	       app->validating || app->cache_scanning || app->rescore_running;
}

/* ---- drawing the frame ---- */

static void draw_topbar(struct ui_app *app)
{
	struct ui_style bar = app_style(app, app->theme.tab_fg, app->theme.tab_bg, A_NORMAL);
	struct ui_style brand = app_style(app, app->theme.accent, app->theme.tab_bg, A_BOLD);
	char right[160] = "";
	int x;

	ui_fill(0, 0, 1, COLS, bar);
	x = ui_text(0, 0, COLS, brand, " smelt ");
	for (int v = 0; v < UI_VIEW_COUNT; v++) {
		bool on = app->view == (enum ui_view)v;
		struct ui_style st =
		    on ? app_style(app, app->theme.tab_active_fg, app->theme.tab_active_bg, A_BOLD)
		       : bar;
		char label[40];

		if (ui_term.tier == UI_TIER_MONO && on)
			st.attr = A_REVERSE | A_BOLD;
		snprintf(label, sizeof(label), " %d %s ", v + 1, view_names[v]);
		app->tab_x[v] = x + 1;
		app->tab_w[v] = (int)strlen(label);
		ui_text(0, x + 1, COLS - x - 1, st, label);
		x += 1 + (int)strlen(label);
	}
	if (app->run_state == UI_RUN_RUNNING && app->prog) {
		snprintf(right, sizeof(right), "merging %3.0f%% ",
		         100 * smelt_progress_fraction(app->prog));
	} else if (app->stats_running && app->stats) {
		struct smelt_stats_progress p;

		smelt_stats_progress(app->stats, &p);
		snprintf(right, sizeof(right), "stats %zu/%zu ", p.tensors_done, p.tensors_total);
	} else if (app->hub_running) {
		snprintf(right, sizeof(right), "downloading ");
	}
	{
		char tail[200];
		int len;

		snprintf(tail, sizeof(tail), "%s%s ", right, ui_tier_name(ui_term.tier));
		len = (int)strlen(tail);
		if (COLS - len > x + 1)
			ui_text(0, COLS - len, len, bar, tail);
	}
}

static const char *view_hints(const struct ui_app *app)
{
	switch (app->view) {
	case UI_VIEW_CKPT:
		return "Enter open  b base  a/Space add  d remove  / hub ref  Tab pane  ? keys  q "
		       "quit";
	case UI_VIEW_HEAT:
		return "m mode  s lin/log  arrows/hjkl move  click a cell  ? keys  r run  q quit";
	case UI_VIEW_SETTINGS:
		return "Enter edit  +/- adjust  g gradient  x reset  s save  o load  ? keys  q "
		       "quit";
	case UI_VIEW_RUN: return "Enter edit  r run  c cancel  v validate  ? keys  q quit";
	case UI_VIEW_COUNT: break;
	}
	return "";
}

static void draw_statusline(struct ui_app *app)
{
	struct ui_style st = app_style(app, app->theme.status_fg, app->theme.status_bg, A_NORMAL);
	bool recent = app->status[0] && smelt_now_ns() - app->status_ns < 8000000000ull;

	ui_fill(LINES - 1, 0, 1, COLS, st);
	if (recent) {
		if (app->status_error)
			st = app_style(app, app->theme.error, app->theme.status_bg, A_BOLD);
		ui_textf(LINES - 1, 1, COLS - 2, st, "%s", app->status);
	} else {
		ui_text(LINES - 1, 1, COLS - 2, st, view_hints(app));
	}
}

static void draw_dialog(struct ui_app *app)
{
	struct ui_style text = st_text(app);
	int w = COLS - 8 < 76 ? COLS - 8 : 76;
	int h = 5, y = (LINES - h) / 2, x = (COLS - w) / 2;
	const char *msg = NULL;

	if (app->dialog == UI_DLG_HELP) {
		help_draw(app);
		return;
	}
	ui_fill(y, x, h, w, text);
	ui_box(y, x, h, w, st_border(app, true),
	       app->dialog == UI_DLG_INPUT ? app->input.prompt : "Confirm", true, st_title(app));
	if (app->dialog == UI_DLG_QUIT)
		msg = app->run_state == UI_RUN_RUNNING
		          ? "A merge is running. Cancel it and quit? (y/n)"
		          : "Work is running. Stop it and quit? (y/n)";
	else if (app->dialog == UI_DLG_CANCEL)
		msg = "Cancel the merge? Nothing partial will remain. (y/n)";
	if (msg) {
		ui_text(y + 2, x + 2, w - 4, st_color(app, app->theme.warn), msg);
		return;
	}
	/* Input: show the tail of the text so the end stays visible. */
	{
		int avail = w - 6;
		const char *shown = app->input.buf;

		if (app->input.len > avail)
			shown += app->input.len - avail;
		ui_fill(y + 2, x + 2, 1, w - 4, st_cursor(app, false));
		ui_textf(y + 2, x + 2, w - 4, st_cursor(app, false), "%s_", shown);
		ui_text(y + 3, x + 2, w - 4, st_dim(app), "Enter accept  Esc cancel");
	}
}

static void draw(struct ui_app *app)
{
	struct ui_rect body = {1, 0, LINES - 2, COLS};

	erase();
	ui_fill(0, 0, LINES, COLS, st_text(app));
	if (COLS < MIN_COLS || LINES < MIN_LINES) {
		ui_textf(LINES / 2, 1, COLS - 2, st_color(app, app->theme.warn),
		         "terminal too small: %dx%d, need %dx%d", COLS, LINES, MIN_COLS, MIN_LINES);
		refresh();
		return;
	}
	draw_topbar(app);
	switch (app->view) {
	case UI_VIEW_CKPT: view_ckpt_draw(app, body); break;
	case UI_VIEW_HEAT: view_heat_draw(app, body); break;
	case UI_VIEW_SETTINGS: view_settings_draw(app, body); break;
	case UI_VIEW_RUN: view_run_draw(app, body); break;
	case UI_VIEW_COUNT: break;
	}
	draw_statusline(app);
	if (app->dialog != UI_DLG_NONE)
		draw_dialog(app);
	refresh();
}

/* ---- input ---- */

static void input_done(struct ui_app *app, bool accept)
{
	int purpose = app->input.purpose;
	char text[UI_PATH_MAX];

	snprintf(text, sizeof(text), "%s", app->input.buf);
	app->dialog = UI_DLG_NONE;
	if (!accept)
		return;
	/* Purposes are numbered per view: 100s checkpoints, 200s settings, 300s run. */
	if (purpose >= 100 && purpose < 200)
		view_ckpt_input_done(app, purpose, text);
	else if (purpose >= 200 && purpose < 300)
		view_settings_input_done(app, purpose, text);
	else if (purpose >= 300 && purpose < 400)
		view_run_input_done(app, purpose, text);
}

static void input_key(struct ui_app *app, int ch)
{
	struct ui_input *in = &app->input;

	if (ch == 27) {
		input_done(app, false);
	} else if (ch == '\n' || ch == '\r' || ch == KEY_ENTER) {
		input_done(app, true);
	} else if (ch == KEY_BACKSPACE || ch == 127 || ch == 8) {
		/* Remove one UTF-8 character. */
		while (in->len > 0 && (in->buf[in->len - 1] & 0xC0) == 0x80)
			in->len--;
		if (in->len > 0)
			in->len--;
		in->buf[in->len] = '\0';
	} else if (ch == 21) { /* ^U */
		in->len = 0;
		in->buf[0] = '\0';
	} else if (ch >= 32 && ch < 256 && ch != 127 && in->len < (int)sizeof(in->buf) - 1) {
		in->buf[in->len++] = (char)ch;
		in->buf[in->len] = '\0';
	}
}

static void request_quit(struct ui_app *app)
{
	if (work_running(app) && (app->run_state == UI_RUN_RUNNING || app->hub_running))
		app->dialog = UI_DLG_QUIT;
	else
		app->quit = true;
}

static void mouse_event(struct ui_app *app)
{
	MEVENT ev;
	int button = 0;

	if (getmouse(&ev) != OK)
		return;
	/* A press and its release read together may come as one event with
	 * both bits, or as a click: either is a press. A release alone is
	 * nothing. */
	if (ev.bstate & (BUTTON1_PRESSED | BUTTON1_CLICKED))
		button = 1;
	else if (ev.bstate & BUTTON4_PRESSED)
		button = 4;
	else if (ev.bstate & BUTTON5_PRESSED)
		button = 5;
	if (!button)
		return;
	if (app->dialog != UI_DLG_NONE) {
		if (app->dialog == UI_DLG_HELP)
			app->dialog = UI_DLG_NONE;
		return;
	}
	if (ev.y == 0 && button == 1) {
		for (int v = 0; v < UI_VIEW_COUNT; v++)
			if (ev.x >= app->tab_x[v] && ev.x < app->tab_x[v] + app->tab_w[v])
				app->view = (enum ui_view)v;
		return;
	}
	switch (app->view) {
	case UI_VIEW_CKPT: view_ckpt_mouse(app, ev.y, ev.x, button); break;
	case UI_VIEW_HEAT: view_heat_mouse(app, ev.y, ev.x, button); break;
	case UI_VIEW_SETTINGS: view_settings_mouse(app, ev.y, ev.x, button); break;
	case UI_VIEW_RUN: view_run_mouse(app, ev.y, ev.x, button); break;
	case UI_VIEW_COUNT: break;
	}
}

static bool view_key(struct ui_app *app, int ch)
{
	switch (app->view) {
	case UI_VIEW_CKPT: return view_ckpt_key(app, ch);
	case UI_VIEW_HEAT: return view_heat_key(app, ch);
	case UI_VIEW_SETTINGS: return view_settings_key(app, ch);
	case UI_VIEW_RUN: return view_run_key(app, ch);
	case UI_VIEW_COUNT: break;
	}
	return false;
}

static void handle_key(struct ui_app *app, int ch)
{
	app->dirty = true;
	if (ch == KEY_RESIZE)
		return;
	if (ch == KEY_MOUSE) {
		mouse_event(app);
		return;
	}
	switch (app->dialog) {
	case UI_DLG_INPUT: input_key(app, ch); return;
	case UI_DLG_HELP: app->dialog = UI_DLG_NONE; return;
	case UI_DLG_QUIT:
		if (ch == 'y' || ch == 'Y')
			app->quit = true;
		else if (ch == 'n' || ch == 'N' || ch == 27)
			app->dialog = UI_DLG_NONE;
		return;
	case UI_DLG_CANCEL:
		if (ch == 'y' || ch == 'Y') {
			work_merge_cancel(app);
			app_status(app, false, "cancelling the merge...");
			app->dialog = UI_DLG_NONE;
		} else if (ch == 'n' || ch == 'N' || ch == 27) {
			app->dialog = UI_DLG_NONE;
		}
		return;
	case UI_DLG_NONE: break;
	}
	/* The view first: it may be editing text that uses these keys. */
	if (view_key(app, ch))
		return;
	if (ch >= '1' && ch <= '0' + UI_VIEW_COUNT) {
		app->view = (enum ui_view)(ch - '1');
	} else if (ch == '?') {
		app->dialog = UI_DLG_HELP;
	} else if (ch == 'q' || ch == 'Q' || ch == 3 /* ^C in raw mode */) {
		request_quit(app);
	} else if (ch == 'r') {
		app_request_run(app);
	} else if (ch == 12) { /* ^L */
		clearok(curscr, TRUE);
	}
}

static void handle_msg(struct ui_app *app, struct ui_msg *m)
{
	app->dirty = true;
	switch (m->type) {
	case UI_MSG_CKPT_OPENED: work_on_opened(app, m); break;
	case UI_MSG_CACHE_SCANNED: work_on_cache(app, m); break;
	case UI_MSG_STATS_CELL: work_stats_poll(app); break;
	case UI_MSG_STATS_DONE: work_on_stats_done(app, m); break;
	case UI_MSG_VALIDATED: work_on_validated(app, m); break;
	case UI_MSG_MERGE_DONE: work_on_merged(app, m); break;
	case UI_MSG_HUB_DONE: work_on_pulled(app, m); break;
	case UI_MSG_RESCORED: work_on_rescored(app); break;
	case UI_MSG_INFO: app_status(app, false, "%s", m->text); break;
	}
}

/* Free what undelivered messages own (at exit). */
static void drop_msg(struct ui_msg *m)
{
	if (!m->ptr)
		return;
	if (m->type == UI_MSG_VALIDATED) {
		validation_free(m->ptr);
	} else if (m->type == UI_MSG_CACHE_SCANNED) {
		smelt_hub_cache_list_free(m->ptr);
		free(m->ptr);
	} else if (m->type == UI_MSG_CKPT_OPENED) {
		work_drop_opened(m->ptr);
	}
}

int app_run(struct ui_app *app)
{
	struct pollfd fds[3];
	struct ui_msg m;
	int ch;

	app->dirty = true;
	while (!app->quit) {
		bool busy = work_running(app);
		int timeout;

		if (app->dirty) {
			draw(app);
			app->dirty = false;
		}
		/* ~10 Hz while work runs (progress), otherwise only for the
		 * status message to expire. */
		timeout = busy ? 100 : (app->status[0] ? 1000 : -1);
		fds[0].fd = STDIN_FILENO;
		fds[0].events = POLLIN;
		fds[1].fd = app->queue.fd;
		fds[1].events = POLLIN;
		fds[2].fd = ui_term_resize_fd();
		fds[2].events = POLLIN;
		if (poll(fds, 3, timeout) == 0 || busy)
			app->dirty = true;
		/* Whatever curses' own SIGWINCH bookkeeping saw, end up at the
		 * terminal's real size. */
		if (ui_term_sync_size())
			app->dirty = true;
		while (ui_queue_take(&app->queue, &m))
			handle_msg(app, &m);
		while (!app->quit && (ch = getch()) != ERR)
			handle_key(app, ch);
		if (app->term_flag && *app->term_flag)
			app->quit = true;
	}
	work_shutdown(app);
	while (ui_queue_take(&app->queue, &m))
		drop_msg(&m);
	return 0;
}

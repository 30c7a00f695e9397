/* view_ckpt.c: view 1, picking the base and the models: a file browser,
 * the Hugging Face cache, a hub reference field, and what each pick is. */
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <curses.h>

#include "ui_app.h"
#include "ui_term.h"
#include "ui_work.h"

enum { IN_HUB_ADD = 101, IN_HUB_PULL = 102, IN_PATH = 103 };

/* ---- the file browser ---- */

static bool has_suffix(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);

	return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* A folder holding safetensors (or an index) is a checkpoint. */
static bool dir_is_model(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	bool found = false;

	if (!d)
		return false;
	while (!found && (e = readdir(d)))
		found = has_suffix(e->d_name, ".safetensors") ||
		        has_suffix(e->d_name, ".safetensors.index.json");
	closedir(d);
	return found;
}

static void free_entries(struct ui_app *app)
{
	for (int i = 0; i < app->n_entries; i++)
		free(app->entries[i]);
	free(app->entries);
	free(app->entry_is_model);
	app->entries = NULL;
	app->entry_is_model = NULL;
	app->n_entries = 0;
}

static int entry_cmp(const void *a, const void *b)
{
	const char *x = *(const char *const *)a, *y = *(const char *const *)b;
	bool dx = x[strlen(x) - 1] == '/', dy = y[strlen(y) - 1] == '/';

	if (dx != dy)
		return dx ? -1 : 1;
	return strcmp(x, y);
}

void view_ckpt_refresh_dir(struct ui_app *app)
{
	DIR *d = opendir(app->browse_dir);
	struct dirent *e;
	int cap = 0;

	free_entries(app);
	if (!d) {
		app_status(app, true, "%s: cannot open folder", app->browse_dir);
		return;
	}
	while ((e = readdir(d))) {
		char full[UI_PATH_MAX * 2];
		struct stat sb;
		char *name;

		if (strcmp(e->d_name, ".") == 0 ||
		    (e->d_name[0] == '.' && strcmp(e->d_name, "..") != 0))
			continue;
		snprintf(full, sizeof(full), "%s/%s", app->browse_dir, e->d_name);
		if (stat(full, &sb) != 0)
			continue;
		if (!S_ISDIR(sb.st_mode) && !has_suffix(e->d_name, ".safetensors"))
			continue;
		if (app->n_entries == cap) {
			int ncap = cap ? cap * 2 : 64;
			char **ne = realloc(app->entries, (size_t)ncap * sizeof(*ne));

			if (!ne)
				break;
			app->entries = ne;
			cap = ncap;
		}
		name = malloc(strlen(e->d_name) + 2);
		if (!name)
			break;
		sprintf(name, "%s%s", e->d_name, S_ISDIR(sb.st_mode) ? "/" : "");
		app->entries[app->n_entries++] = name;
	}
	closedir(d);
	qsort(app->entries, (size_t)app->n_entries, sizeof(*app->entries), entry_cmp);
	app->entry_is_model = calloc((size_t)app->n_entries + 1, sizeof(bool));
	for (int i = 0; app->entry_is_model && i < app->n_entries; i++) {
		char full[UI_PATH_MAX * 2];

		if (strcmp(app->entries[i], "../") == 0)
			continue;
		snprintf(full, sizeof(full), "%s/%s", app->browse_dir, app->entries[i]);
		app->entry_is_model[i] =
		    app->entries[i][strlen(app->entries[i]) - 1] != '/' || dir_is_model(full);
	}
	if (app->browse_cur >= app->n_entries)
		app->browse_cur = app->n_entries ? app->n_entries - 1 : 0;
}

void view_ckpt_free(struct ui_app *app)
{
	free_entries(app);
	smelt_hub_cache_list_free(&app->cache);
	for (int i = 0; i <= UI_MAX_MODELS; i++)
		ckpt_slot_set(app, i, NULL);
}

static void enter_dir(struct ui_app *app, const char *name)
{
	char next[UI_PATH_MAX * 2], real[PATH_MAX];

	snprintf(next, sizeof(next), "%s/%s", app->browse_dir, name);
	if (!realpath(next, real))
		return;
	snprintf(app->browse_dir, sizeof(app->browse_dir), "%s", real);
	app->browse_cur = 0;
	app->browse_top = 0;
	view_ckpt_refresh_dir(app);
}

/* Path of the highlighted browser entry, as the user sees it (symlinks
 * kept, so a cache snapshot keeps its readable name); false for "..". */
static bool browser_pick(struct ui_app *app, char *out, size_t n)
{
	const char *name;
	size_t len;

	if (app->n_entries == 0)
		return false;
	name = app->entries[app->browse_cur];
	if (strcmp(name, "../") == 0)
		return false;
	len = strlen(name);
	if (name[len - 1] == '/')
		len--;
	snprintf(out, n, "%s%s%.*s", app->browse_dir, strcmp(app->browse_dir, "/") ? "/" : "",
	         (int)len, name);
	return true;
}

/* ---- slots ---- */

void ckpt_slot_set(struct ui_app *app, int slot, const char *ref)
{
	struct ui_slot *s = &app->slots[slot];

	if (s->ckpt) {
		/* The analysis borrows the open checkpoints: stop it first. */
		work_stats_stop(app);
		smelt_ckpt_close(s->ckpt);
		free(s->ckpt);
	}
	memset(s, 0, sizeof(*s));
	if (!ref)
		return;
	s->used = true;
	snprintf(s->ref, sizeof(s->ref), "%s", ref);
	work_open_slot(app, slot);
}

static int free_model_slot(const struct ui_app *app)
{
	for (int i = 1; i <= UI_MAX_MODELS; i++)
		if (!app->slots[i].used)
			return i;
	return -1;
}

/* Two references to one model: equal, or equal but for a default "@main". */
static bool same_ref(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);

	if (la > lb)
		return same_ref(b, a);
	return strcmp(a, b) == 0 ||
	       (lb == la + 5 && strncmp(a, b, la) == 0 && strcmp(b + la, "@main") == 0);
}

static void add_model(struct ui_app *app, const char *ref)
{
	int slot = free_model_slot(app);

	for (int i = 0; i <= UI_MAX_MODELS; i++) {
		if (app->slots[i].used && same_ref(app->slots[i].ref, ref)) {
			app_status(app, true, "%s is already picked", ref);
			return;
		}
	}
	if (slot < 0) {
		app_status(app, true, "at most %d models", UI_MAX_MODELS);
		return;
	}
	ckpt_slot_set(app, slot, ref);
	app_status(app, false, "model %d: %s", slot, ref);
	app_models_changed(app);
}

/* Empty a slot; a model slot is closed up so "model N" stays meaningful,
 * and per-model parameter values move with their models. */
static void drop_slot(struct ui_app *app, int slot)
{
	struct ui_pval(*pm)[SMELT_MAX_PARAMS] = app->set.model;

	ckpt_slot_set(app, slot, NULL);
	if (slot == 0)
		return;
	for (int i = slot; i < UI_MAX_MODELS; i++) {
		memcpy(pm[i - 1], pm[i], sizeof(pm[i]));
		memset(pm[i], 0, sizeof(pm[i]));
		if (!app->slots[i + 1].used)
			continue;
		app->slots[i] = app->slots[i + 1];
		memset(&app->slots[i + 1], 0, sizeof(app->slots[i + 1]));
	}
}

static void set_base(struct ui_app *app, const char *ref)
{
	for (int i = UI_MAX_MODELS; i >= 1; i--)
		if (app->slots[i].used && same_ref(app->slots[i].ref, ref))
			drop_slot(app, i);
	ckpt_slot_set(app, 0, ref);
	app_status(app, false, "base: %s", ref);
	app_models_changed(app);
}

/* Compare every model with the base: what would stop or change a merge. */
void ckpt_recompute_compat(struct ui_app *app)
{
	const struct smelt_ckpt *base = app->slots[0].state == 1 ? app->slots[0].ckpt : NULL;

	for (int i = 1; i <= UI_MAX_MODELS; i++) {
		struct ui_slot *s = &app->slots[i];
		const struct smelt_ckpt *c = s->ckpt;
		int vb, vm;

		s->n_missing = s->n_shape = s->n_dtype = 0;
		s->vocab_mismatch = false;
		s->compat[0] = '\0';
		if (!s->used || s->state != 1 || !base)
			continue;
		for (size_t k = 0; k < c->n_tensors; k++) {
			const struct smelt_ckpt_tensor *t = &c->tensors[k];
			const struct smelt_ckpt_tensor *b = smelt_ckpt_find(base, t->name);
			enum smelt_kind kind;
			bool same = true;

			if (!b) {
				s->n_missing++;
				continue;
			}
			if (t->st->dtype != b->st->dtype)
				s->n_dtype++;
			if (t->st->ndim != b->st->ndim) {
				s->n_shape++;
				continue;
			}
			for (int d = 0; d < t->st->ndim; d++)
				same = same && t->st->shape[d] == b->st->shape[d];
			if (same)
				continue;
			kind = smelt_tensor_kind(t->name);
			if ((kind == SMELT_KIND_EMBED || kind == SMELT_KIND_HEAD) &&
			    t->st->ndim == 2 && t->st->shape[1] == b->st->shape[1])
				s->vocab_mismatch = true;
			else
				s->n_shape++;
		}
		for (size_t k = 0; k < base->n_tensors; k++)
			if (!smelt_ckpt_find(c, base->tensors[k].name))
				s->n_missing++;
		vb = base->config.vocab_size;
		vm = c->config.vocab_size;
		if (vb > 0 && vm > 0 && vb != vm)
			s->vocab_mismatch = true;
		if (!s->n_missing && !s->n_shape && !s->vocab_mismatch) {
			snprintf(s->compat, sizeof(s->compat), "compatible with the base%s",
			         s->n_dtype ? " (dtypes differ)" : "");
			continue;
		}
		snprintf(s->compat, sizeof(s->compat),
		         "%d shape mismatch%s, %d unmatched tensor%s%s", s->n_shape,
		         s->n_shape == 1 ? "" : "es", s->n_missing, s->n_missing == 1 ? "" : "s",
		         s->vocab_mismatch ? ", vocabulary differs" : "");
		if (s->vocab_mismatch && vb > 0 && vm > 0) {
			size_t len = strlen(s->compat);

			snprintf(s->compat + len, sizeof(s->compat) - len, " (%d vs %d)", vm, vb);
		}
	}
}

/* ---- drawing ---- */

static void list_scroll(int cur, int *top, int rows)
{
	if (cur < *top)
		*top = cur;
	if (cur >= *top + rows)
		*top = cur - rows + 1;
	if (*top < 0)
		*top = 0;
}

static void draw_browser(struct ui_app *app, int y, int x, int h, int w)
{
	bool focus = app->ckpt_pane == 0;
	int rows = h - 3;

	ui_box(y, x, h, w, st_border(app, focus), "Local folders", focus, st_title(app));
	ui_text(y + 1, x + 2, w - 4, st_dim(app), app->browse_dir);
	list_scroll(app->browse_cur, &app->browse_top, rows);
	for (int r = 0; r < rows; r++) {
		int i = app->browse_top + r;
		struct ui_style st;

		if (i >= app->n_entries)
			break;
		st = i == app->browse_cur ? st_cursor(app, focus) : st_text(app);
		if (i != app->browse_cur && app->entry_is_model && app->entry_is_model[i])
			st = st_color(app, app->theme.ok);
		ui_fill(y + 2 + r, x + 1, 1, w - 2, st);
		ui_textf(y + 2 + r, x + 2, w - 4, st, "%s %s",
		         app->entry_is_model && app->entry_is_model[i] ? (ui_term.utf8 ? "◆" : "*")
		                                                       : " ",
		         app->entries[i]);
	}
	app->pane_y[0] = y + 2;
	app->pane_x[0] = x;
	app->pane_h[0] = rows;
	app->pane_w[0] = w;
}

static int model_repos(const struct ui_app *app, int *idx, int max)
{
	int n = 0;

	for (size_t i = 0; i < app->cache.n && n < max; i++)
		if (strcmp(app->cache.repos[i].type, "model") == 0)
			idx[n++] = (int)i;
	return n;
}

/* A running download: what, how far, how fast, which file. */
static void draw_download(struct ui_app *app, int y, int x, int w)
{
	struct smelt_hub_progress *p = &app->hub_prog;
	uint64_t done = atomic_load(&p->bytes_done), total = atomic_load(&p->bytes_total);
	char a[32], b[32], rate[32], file[256];
	int phase = atomic_load(&p->phase);

	fmt_bytes(done, a, sizeof(a));
	fmt_bytes(total, b, sizeof(b));
	fmt_bytes(atomic_load(&p->rate), rate, sizeof(rate));
	smelt_hub_progress_current(p, file, sizeof(file));
	ui_fill(y, x, 4, w, st_text(app));
	ui_textf(y, x + 1, w - 2, st_color(app, app->theme.warn), "%s %s  (Esc stops)",
	         phase == SMELT_HUB_RESOLVING ? "resolving" : "downloading", app->hub_repo);
	ui_bar(y + 1, x + 1, w - 2, total ? (double)done / (double)total : 0,
	       st_color(app, app->theme.bar_on), st_color(app, app->theme.bar_off));
	ui_textf(y + 2, x + 1, w - 2, st_text(app), "%s / %s  %s/s  files %d/%d", a, b, rate,
	         atomic_load(&p->files_done), atomic_load(&p->files_total));
	ui_textf(y + 3, x + 1, w - 2, st_dim(app), "%s", file);
}

static void draw_cache(struct ui_app *app, int y, int x, int h, int w)
{
	bool focus = app->ckpt_pane == 1;
	int rows = h - 3, idx[1024], n = model_repos(app, idx, 1024);
	char title[64], cache_dir[UI_PATH_MAX];

	snprintf(title, sizeof(title), "Hugging Face cache (%d)", n);
	ui_box(y, x, h, w, st_border(app, focus), title, focus, st_title(app));
	if (smelt_hub_cache_dir(cache_dir, sizeof(cache_dir)) != 0)
		snprintf(cache_dir, sizeof(cache_dir), "(no cache folder)");
	ui_text(y + 1, x + 2, w - 4, st_dim(app), cache_dir);
	if (app->cache_error[0])
		ui_text(y + 2, x + 2, w - 4, st_color(app, app->theme.error), app->cache_error);
	else if (!app->cache_scanned)
		ui_text(y + 2, x + 2, w - 4, st_dim(app), "scanning...");
	else if (n == 0)
		ui_text(y + 2, x + 2, w - 4, st_dim(app), "no models cached (P downloads one)");
	if (app->cache_cur >= n)
		app->cache_cur = n ? n - 1 : 0;
	list_scroll(app->cache_cur, &app->cache_top, rows);
	for (int r = 0; r < rows && app->cache_top + r < n; r++) {
		int i = app->cache_top + r;
		const struct smelt_hub_cached_repo *repo = &app->cache.repos[idx[i]];
		struct ui_style st = i == app->cache_cur ? st_cursor(app, focus) : st_text(app);
		char size[32], refs[64] = "";

		fmt_bytes(repo->size_on_disk, size, sizeof(size));
		for (size_t k = 0; k < repo->n_refs && k < 2; k++) {
			size_t len = strlen(refs);

			snprintf(refs + len, sizeof(refs) - len, "%s%s@%.7s", k ? " " : "",
			         repo->refs[k].name, repo->refs[k].commit);
		}
		if (!repo->n_refs && repo->n_snapshots)
			snprintf(refs, sizeof(refs), "%.7s", repo->snapshots[0]);
		ui_fill(y + 2 + r, x + 1, 1, w - 2, st);
		ui_textf(y + 2 + r, x + 2, w - 4, st, "%-*.*s %9s %s", w / 2, w / 2, repo->repo,
		         size, refs);
	}
	if (app->hub_running && h >= 7)
		draw_download(app, y + h - 5, x + 1, w - 2);
	app->pane_y[1] = y + 2;
	app->pane_x[1] = x;
	app->pane_h[1] = rows;
	app->pane_w[1] = w;
}

static void slot_label(int i, char *buf, size_t n)
{
	if (i == 0)
		snprintf(buf, n, "base ");
	else
		snprintf(buf, n, "model %d", i);
}

static void draw_details(struct ui_app *app, const struct ui_slot *s, int y, int x, int h, int w)
{
	const struct smelt_ckpt *c = s->ckpt;
	char size[32];
	int r = y;

	if (!s->used)
		return;
	ui_textf(r++, x, w, st_title(app), "%s", s->ref);
	if (s->state == 0) {
		ui_text(r, x, w, st_dim(app), "opening...");
		return;
	}
	if (s->state < 0) {
		ui_text(r, x, w, st_color(app, app->theme.error), s->error);
		return;
	}
	fmt_bytes(c->total_bytes, size, sizeof(size));
	if (strcmp(s->path, s->ref) != 0)
		r += ui_text_wrap(r, x, 3, w, st_dim(app), s->path);
	ui_textf(r++, x, w, st_text(app), "architecture  %s%s%s",
	         c->config.architecture[0] ? c->config.architecture : "(no config.json)",
	         c->config.model_type[0] ? "  type " : "", c->config.model_type);
	ui_textf(r++, x, w, st_text(app), "layers        %d%s", c->num_layers,
	         c->config.num_layers >= 0 && c->config.num_layers != c->num_layers
	             ? "  (config disagrees)"
	             : "");
	ui_textf(r++, x, w, st_text(app), "dtype         %s", smelt_dtype_name(c->main_dtype));
	ui_textf(r++, x, w, st_text(app), "size          %s in %zu tensor%s, %zu shard%s", size,
	         c->n_tensors, c->n_tensors == 1 ? "" : "s", c->n_shards,
	         c->n_shards == 1 ? "" : "s");
	if (c->config.hidden_size > 0 || c->config.vocab_size > 0)
		ui_textf(r++, x, w, st_text(app), "hidden        %d   vocab %d",
		         c->config.hidden_size, c->config.vocab_size);
	if (r < y + h && s != &app->slots[0] && s->compat[0]) {
		bool bad = s->n_shape || s->n_missing || s->vocab_mismatch;

		char line[300];

		snprintf(line, sizeof(line), "%s %s", bad ? "!" : (ui_term.utf8 ? "✓" : "ok"),
		         s->compat);
		r += ui_text_wrap(r, x, y + h - r, w,
		                  st_color(app, bad ? app->theme.error : app->theme.ok), line);
	}
}

static void draw_selection(struct ui_app *app, int y, int x, int h, int w)
{
	bool focus = app->ckpt_pane == 2;
	int row = y + 1;

	ui_box(y, x, h, w, st_border(app, focus), "Selection", focus, st_title(app));
	for (int i = 0; i <= UI_MAX_MODELS; i++) {
		const struct ui_slot *s = &app->slots[i];
		struct ui_style st = i == app->sel_cur ? st_cursor(app, focus) : st_text(app);
		char label[16];
		const char *state;

		if (i > 0 && !s->used && i > app_n_models(app) + 1)
			break;
		slot_label(i, label, sizeof(label));
		state = !s->used ? "" : s->state == 0 ? "…" : s->state < 0 ? "✗" : "✓";
		if (!ui_term.utf8)
			state = !s->used ? "" : s->state == 0 ? "." : s->state < 0 ? "x" : "+";
		ui_fill(row, x + 1, 1, w - 2, st);
		ui_textf(row, x + 2, w - 4, st, "%s %s %s", label, state,
		         s->used ? s->ref
		                 : (i == 0 ? "(press b on a folder)" : "(press a to add)"));
		if (s->used && s->state == 1 && i > 0 && s->compat[0] &&
		    (s->n_shape || s->n_missing || s->vocab_mismatch) && i != app->sel_cur)
			ui_text(row, x + w - 4, 2, st_color(app, app->theme.error), "!");
		row++;
	}
	app->pane_y[2] = y + 1;
	app->pane_x[2] = x;
	app->pane_h[2] = row - y - 1;
	app->pane_w[2] = w;
	row++;
	if (row < y + h - 2)
		draw_details(app, &app->slots[app->sel_cur], row, x + 2, y + h - 1 - row, w - 4);
}

void view_ckpt_draw(struct ui_app *app, struct ui_rect r)
{
	int lw = r.w * 11 / 20, rh_top = r.h * 11 / 20;

	draw_browser(app, r.y, r.x, rh_top, lw);
	draw_cache(app, r.y + rh_top, r.x, r.h - rh_top, lw);
	draw_selection(app, r.y, r.x + lw, r.h, r.w - lw);
}

/* ---- keys ---- */

static void move_cursor(int *cur, int n, int delta)
{
	*cur += delta;
	if (*cur >= n)
		*cur = n - 1;
	if (*cur < 0)
		*cur = 0;
}

static bool cache_pick(struct ui_app *app, char *out, size_t n)
{
	int idx[1024], count = model_repos(app, idx, 1024);
	const struct smelt_hub_cached_repo *repo;
	bool has_main = false;

	if (app->cache_cur >= count)
		return false;
	repo = &app->cache.repos[idx[app->cache_cur]];
	for (size_t k = 0; k < repo->n_refs; k++)
		has_main = has_main || strcmp(repo->refs[k].name, "main") == 0;
	if (has_main || (!repo->n_refs && !repo->n_snapshots))
		snprintf(out, n, "%s", repo->repo);
	else if (repo->n_refs)
		snprintf(out, n, "%s@%s", repo->repo, repo->refs[0].name);
	else
		snprintf(out, n, "%s@%s", repo->repo, repo->snapshots[0]);
	return true;
}

static bool pick_current(struct ui_app *app, char *out, size_t n)
{
	if (app->ckpt_pane == 0)
		return browser_pick(app, out, n);
	if (app->ckpt_pane == 1)
		return cache_pick(app, out, n);
	return false;
}

static void remove_slot(struct ui_app *app, int slot)
{
	if (!app->slots[slot].used)
		return;
	drop_slot(app, slot);
	app_models_changed(app);
}

bool view_ckpt_key(struct ui_app *app, int ch)
{
	int idx[1024];
	int n_cache = model_repos(app, idx, 1024);
	int *cur = app->ckpt_pane == 0   ? &app->browse_cur
	           : app->ckpt_pane == 1 ? &app->cache_cur
	                                 : &app->sel_cur;
	int n = app->ckpt_pane == 0   ? app->n_entries
	        : app->ckpt_pane == 1 ? n_cache
	                              : 1 + UI_MAX_MODELS;
	int page = app->pane_h[app->ckpt_pane] > 1 ? app->pane_h[app->ckpt_pane] - 1 : 1;
	char ref[UI_PATH_MAX];

	switch (ch) {
	case '\t': app->ckpt_pane = (app->ckpt_pane + 1) % 3; return true;
	case KEY_BTAB: app->ckpt_pane = (app->ckpt_pane + 2) % 3; return true;
	case KEY_UP:
	case 'k': move_cursor(cur, n, -1); return true;
	case KEY_DOWN:
	case 'j': move_cursor(cur, n, 1); return true;
	case KEY_PPAGE: move_cursor(cur, n, -page); return true;
	case KEY_NPAGE: move_cursor(cur, n, page); return true;
	case KEY_HOME:
	case 'g': *cur = 0; return true;
	case KEY_END:
	case 'G': *cur = n > 0 ? n - 1 : 0; return true;
	case KEY_LEFT:
	case 'h':
	case KEY_BACKSPACE:
	case 127:
		if (app->ckpt_pane == 0)
			enter_dir(app, "..");
		return true;
	case KEY_RIGHT:
	case 'l':
	case '\n':
	case '\r':
	case KEY_ENTER:
		if (app->ckpt_pane == 0 && app->n_entries > 0) {
			const char *name = app->entries[app->browse_cur];

			if (name[strlen(name) - 1] == '/' &&
			    (!app->entry_is_model[app->browse_cur] || ch == 'l' || ch == KEY_RIGHT))
				enter_dir(app, name);
			else if (browser_pick(app, ref, sizeof(ref)))
				add_model(app, ref);
		} else if (app->ckpt_pane == 1 && cache_pick(app, ref, sizeof(ref))) {
			add_model(app, ref);
		}
		return true;
	case ' ':
	case 'a':
		if (pick_current(app, ref, sizeof(ref)))
			add_model(app, ref);
		return true;
	case 'b':
		if (app->ckpt_pane == 2 && app->sel_cur > 0 && app->slots[app->sel_cur].used) {
			snprintf(ref, sizeof(ref), "%s", app->slots[app->sel_cur].ref);
			remove_slot(app, app->sel_cur);
			set_base(app, ref);
		} else if (pick_current(app, ref, sizeof(ref))) {
			set_base(app, ref);
		}
		return true;
	case 'd':
	case KEY_DC:
		if (app->ckpt_pane == 2)
			remove_slot(app, app->sel_cur);
		return true;
	case '/': app_open_input(app, "Hub model org/name[@rev]", "", IN_HUB_ADD); return true;
	case 'P': app_open_input(app, "Download org/name[@rev]", "", IN_HUB_PULL); return true;
	case 'o': app_open_input(app, "Go to folder", app->browse_dir, IN_PATH); return true;
	case 'R':
		work_scan_cache(app);
		view_ckpt_refresh_dir(app);
		return true;
	case 27:
		if (app->hub_running) {
			atomic_store(&app->hub_cancel, true);
			app_status(app, false, "stopping the download (it can resume later)");
		}
		return true;
	}
	return false;
}

void view_ckpt_input_done(struct ui_app *app, int purpose, const char *text)
{
	struct smelt_hub_ref ref;
	struct smelt_err err;
	struct stat sb;

	if (!*text)
		return;
	if (purpose == IN_PATH) {
		if (stat(text, &sb) == 0 && S_ISDIR(sb.st_mode)) {
			snprintf(app->browse_dir, sizeof(app->browse_dir), "%s", text);
			app->browse_cur = 0;
			view_ckpt_refresh_dir(app);
		} else {
			app_status(app, true, "%s: not a folder", text);
		}
		return;
	}
	smelt_err_clear(&err);
	if (smelt_hub_ref_parse(text, &ref, &err)) {
		app_status(app, true, "%s", err.msg);
		return;
	}
	if (purpose == IN_HUB_PULL) {
		work_pull(app, text);
		return;
	}
	{
		char snap[UI_PATH_MAX];

		if (smelt_hub_cache_lookup(NULL, &ref, snap, sizeof(snap), &err)) {
			app_status(app, true, "%s is not in the cache: press P to download it",
			           text);
			return;
		}
	}
	add_model(app, text);
}

bool view_ckpt_mouse(struct ui_app *app, int y, int x, int button)
{
	for (int p = 0; p < 3; p++) {
		int *cur, *top = NULL, n;

		if (y < app->pane_y[p] - 2 || y >= app->pane_y[p] + app->pane_h[p] ||
		    x < app->pane_x[p] || x >= app->pane_x[p] + app->pane_w[p])
			continue;
		app->ckpt_pane = p;
		cur = p == 0 ? &app->browse_cur : p == 1 ? &app->cache_cur : &app->sel_cur;
		top = p == 0 ? &app->browse_top : p == 1 ? &app->cache_top : NULL;
		n = p == 0 ? app->n_entries : p == 1 ? (int)app->cache.n : 1 + UI_MAX_MODELS;
		if (button == 4 || button == 5) {
			move_cursor(cur, n, button == 4 ? -3 : 3);
			return true;
		}
		if (y >= app->pane_y[p])
			move_cursor(cur, n, (top ? *top : 0) + (y - app->pane_y[p]) - *cur);
		return true;
	}
	return false;
}

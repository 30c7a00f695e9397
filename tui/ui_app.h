/*
 * ui_app.h: the workbench's state and the views that draw and edit it.
 *
 * Owned by the TUI. One struct ui_app lives on the UI thread; only that
 * thread touches it and curses. Workers (ui_work.c) get copies of what they
 * need and answer through app->queue; the objects they hand back (opened
 * checkpoints, cache listings, validation results) belong to the UI thread
 * from then on. Long engine operations publish live progress through their
 * own atomics (struct smelt_progress, smelt_stats getters) which the UI reads
 * while drawing.
 */
#ifndef SMELT_UI_APP_H
#define SMELT_UI_APP_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "smelt/ckpt.h"
#include "smelt/hub.h"
#include "smelt/merge.h"
#include "smelt/method.h"
#include "smelt/progress.h"
#include "smelt/recipe.h"
#include "smelt/stats.h"

#include "theme.h"
#include "ui_queue.h"

#define UI_MAX_MODELS 8 /* merged models besides the base */
#define UI_GRAD_MAX   9 /* anchors of a gradient parameter */
#define UI_PATH_MAX   1024

enum ui_view { UI_VIEW_CKPT, UI_VIEW_HEAT, UI_VIEW_SETTINGS, UI_VIEW_RUN, UI_VIEW_COUNT };

/* A checkpoint the user picked: the base (slot 0) or a merged model. */
struct ui_slot {
	bool used;
	char ref[UI_PATH_MAX];  /* as the user named it: a folder or org/name[@rev] */
	char path[UI_PATH_MAX]; /* resolved folder once opened */
	int state;              /* 0 opening, 1 open, -1 failed */
	char error[512];
	struct smelt_ckpt *ckpt; /* open when state == 1 */
	int id;                  /* request id, to drop stale worker answers */
	/* Compatibility with the base, recomputed whenever either changes. */
	int n_missing, n_shape, n_dtype;
	bool vocab_mismatch;
	char compat[256];
};

/* A parameter value as the settings form edits it. */
struct ui_pval {
	bool set;      /* false: the method default applies */
	bool gradient; /* v[0..n) are anchors over the layers */
	int n;
	double v[UI_GRAD_MAX];
	char text[512]; /* REGEX_LIST: comma-separated regexes */
};

struct ui_settings {
	const struct smelt_method *method;
	struct ui_pval global[SMELT_MAX_PARAMS];
	struct ui_pval model[UI_MAX_MODELS][SMELT_MAX_PARAMS];
	char out_dir[UI_PATH_MAX];
	char out_dtype[16];    /* "" = like the base */
	char embed_policy[16]; /* "" (strict), "common" or "mean" */
	char shard[32];        /* "5GB" */
	int threads;           /* 0 = all CPUs */
	bool force;            /* replace a non-empty output folder */
	char *raw_recipe;      /* a loaded recipe the form cannot express (slices) */
	char raw_note[256];
};

/* Result of a validation worker: the diagnostics and the plan's figures. */
struct ui_validation {
	int generation;
	struct smelt_diag diag;
	bool ok;
	uint64_t bytes_read, bytes_written, peak_memory;
	size_t n_tensors, n_shards;
	char out_problem[512]; /* smelt_merge_check_output's message, "" when fine */
};

enum ui_run_state { UI_RUN_IDLE, UI_RUN_RUNNING, UI_RUN_DONE, UI_RUN_FAILED, UI_RUN_CANCELED };

enum ui_dialog { UI_DLG_NONE, UI_DLG_QUIT, UI_DLG_CANCEL, UI_DLG_INPUT, UI_DLG_HELP };

/* A one-line text input (dialog or inline field). */
struct ui_input {
	char buf[UI_PATH_MAX];
	int len;
	char prompt[128];
	int purpose; /* what Enter does, view-specific */
};

struct ui_app {
	struct theme theme;
	struct ui_queue queue;
	bool quit;
	volatile sig_atomic_t *term_flag; /* set by SIGTERM/SIGHUP: quit cleanly */
	bool dirty;                       /* redraw needed */
	enum ui_view view;
	enum ui_dialog dialog;
	struct ui_input input;
	char status[512]; /* last status message */
	bool status_error;
	uint64_t status_ns;

	/* models: slot 0 = base */
	struct ui_slot slots[1 + UI_MAX_MODELS];
	int next_id;

	/* checkpoints view */
	char browse_dir[UI_PATH_MAX];
	char **entries;       /* names in browse_dir, directories first */
	bool *entry_is_model; /* folder holds safetensors */
	int n_entries, browse_cur, browse_top;
	struct smelt_hub_cache_list cache;
	bool cache_scanned, cache_scanning;
	char cache_error[256];
	int cache_cur, cache_top;
	int sel_cur;   /* cursor in the selection pane */
	int ckpt_pane; /* 0 browser, 1 cache, 2 selection */
	atomic_bool hub_cancel;
	bool hub_running;
	struct smelt_hub_progress hub_prog;
	char hub_repo[256];
	pthread_t hub_thread;

	/* statistics */
	struct smelt_stats *stats;
	pthread_t stats_thread;
	bool stats_running; /* worker alive (join on done) */
	int stats_gen;      /* bumps when the model set changes */
	char stats_error[512];
	char stats_exclude[512]; /* the exclusions the analysis was opened with */
	pthread_t rescore_thread;
	bool rescore_running, rescore_pending;
	double knob_t, knob_s, knob_T; /* what the running rescore uses */

	/* heatmap view */
	int heat_mode; /* 0 magnitude, 1 direction, 2 WIDEN weight */
	bool heat_log;
	int heat_row, heat_col; /* cursor: grid row, kind column */
	int heat_top;

	/* settings view */
	struct ui_settings set;
	int set_pane; /* 0 method list, 1 parameters */
	int method_cur, method_top;
	int param_cur;   /* row in the form */
	int param_col;   /* 0 = global, 1.. = model column */
	bool curve_edit; /* editing a gradient as a curve */
	int curve_anchor;

	/* validation and run */
	int valid_gen; /* bumps whenever settings or models change */
	struct ui_validation *valid;
	bool validating;
	pthread_t valid_thread;
	int run_cur; /* row in the run form */
	enum ui_run_state run_state;
	struct smelt_progress *prog;
	pthread_t run_thread;
	bool run_thread_alive;
	char run_result[UI_PATH_MAX + 256];
	double run_seconds;
	uint64_t run_bytes_written;
	bool run_after_validate; /* `r` pressed: start once validation passes */

	/* screen geometry of clickable things, set while drawing */
	int tab_x[UI_VIEW_COUNT], tab_w[UI_VIEW_COUNT];
	int pane_y[4], pane_x[4], pane_h[4], pane_w[4];
	int grid_y, grid_x, grid_cell_w, grid_panel_w; /* heatmap geometry for clicks */
	int grid_n_panels;
};

/* ---- ui_app.c ---- */
/* The event loop: returns when the user quits, with every worker joined. */
int app_run(struct ui_app *app);
void app_status(struct ui_app *app, bool error, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Something the recipe depends on changed: revalidate, restart stats. */
void app_models_changed(struct ui_app *app);
void app_settings_changed(struct ui_app *app);
/* Start the merge now if the last validation passed, else validate first. */
void app_request_run(struct ui_app *app);
void app_open_input(struct ui_app *app, const char *prompt, const char *initial, int purpose);
struct ui_style app_style(const struct ui_app *app, uint32_t fg, uint32_t bg, unsigned attr);
/* Common styles. */
struct ui_style st_text(const struct ui_app *app);
struct ui_style st_dim(const struct ui_app *app);
struct ui_style st_title(const struct ui_app *app);
struct ui_style st_border(const struct ui_app *app, bool focused);
struct ui_style st_cursor(const struct ui_app *app, bool focused);
struct ui_style st_color(const struct ui_app *app, uint32_t fg);
int app_n_models(const struct ui_app *app); /* used merged-model slots */
/* Format bytes as "1.23 GB". */
void fmt_bytes(uint64_t b, char *buf, size_t n);
void fmt_duration(double s, char *buf, size_t n);

/* ---- views: draw into the rectangle, handle a key (true = consumed) ---- */
struct ui_rect {
	int y, x, h, w;
};

void view_ckpt_draw(struct ui_app *app, struct ui_rect r);
bool view_ckpt_key(struct ui_app *app, int key);
bool view_ckpt_mouse(struct ui_app *app, int y, int x, int button);
void view_ckpt_input_done(struct ui_app *app, int purpose, const char *text);
void view_ckpt_refresh_dir(struct ui_app *app);
void view_ckpt_free(struct ui_app *app);
void ckpt_slot_set(struct ui_app *app, int slot, const char *ref);
void ckpt_recompute_compat(struct ui_app *app);

void view_heat_draw(struct ui_app *app, struct ui_rect r);
bool view_heat_key(struct ui_app *app, int key);
bool view_heat_mouse(struct ui_app *app, int y, int x, int button);

void view_settings_draw(struct ui_app *app, struct ui_rect r);
bool view_settings_key(struct ui_app *app, int key);
bool view_settings_mouse(struct ui_app *app, int y, int x, int button);
void view_settings_input_done(struct ui_app *app, int purpose, const char *text);
/* Load a recipe file into the form and the selection; 0 or -1 + message. */
int settings_load_recipe(struct ui_app *app, const char *path, char *msg, size_t n);

void view_run_draw(struct ui_app *app, struct ui_rect r);
bool view_run_key(struct ui_app *app, int key);
bool view_run_mouse(struct ui_app *app, int y, int x, int button);
void view_run_input_done(struct ui_app *app, int purpose, const char *text);

/* ---- ui_help.c ---- */
void help_draw(struct ui_app *app);

#endif

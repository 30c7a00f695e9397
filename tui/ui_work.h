/*
 * ui_work.h: every piece of engine work the workbench starts, each on a
 * worker thread that reports through app->queue.
 *
 * The functions here are called on the UI thread; they copy what the worker
 * needs, start it and return at once. The matching ui_work_on_*() handlers
 * run on the UI thread when the worker's message arrives. Statistics run on
 * the engine's own analysis thread (smelt_stats_start) and are polled.
 */
#ifndef SMELT_UI_WORK_H
#define SMELT_UI_WORK_H

#include "ui_app.h"

/* Open the checkpoint named by app->slots[slot].ref (a folder, or an
 * org/name[@rev] found in the Hugging Face cache). */
void work_open_slot(struct ui_app *app, int slot);
void work_on_opened(struct ui_app *app, struct ui_msg *m);
/* Free an undelivered open result (at exit). */
void work_drop_opened(void *result);

/* List the Hugging Face cache. */
void work_scan_cache(struct ui_app *app);
void work_on_cache(struct ui_app *app, struct ui_msg *m);

/* Download org/name[@rev] into the cache (then it can be picked). */
void work_pull(struct ui_app *app, const char *repo);
void work_on_pulled(struct ui_app *app, struct ui_msg *m);

/* (Re)start the divergence analysis for the current base and models, or
 * stop it when they are not all open. */
void work_stats_restart(struct ui_app *app);
/* New statistics arrived: redraw, re-arm the wake-up. */
void work_stats_poll(struct ui_app *app);
/* The analysis thread finished: join it, keep its error. */
void work_on_stats_done(struct ui_app *app, struct ui_msg *m);
/* The form's WIDEN exclusions as one comma-separated string ("" if none). */
void work_exclude_text(const struct ui_settings *s, char *buf, size_t n);
/* Re-score WIDEN weights for the form's knobs (coalesced on a worker). */
void work_rescore(struct ui_app *app);
void work_on_rescored(struct ui_app *app);
void work_stats_stop(struct ui_app *app);

/* Validate the current recipe and plan on a worker. */
void work_validate(struct ui_app *app);
void work_on_validated(struct ui_app *app, struct ui_msg *m);
void validation_free(struct ui_validation *v);

/* Start the merge of the validated recipe into the output folder. */
int work_merge_start(struct ui_app *app);
void work_merge_cancel(struct ui_app *app);
void work_on_merged(struct ui_app *app, struct ui_msg *m);

/* Stop everything and join every worker (quit). */
void work_shutdown(struct ui_app *app);

#endif

/*
 * ui_recipe.h: the settings form <-> a merge recipe.
 *
 * The workbench keeps what the user picked (models, method, parameter
 * values, output options) in struct ui_app and turns it into recipe JSON
 * whenever it validates, runs or saves; the engine's recipe module parses,
 * validates and writes that text like any file. Loading goes the other way:
 * a parsed recipe in the `models:` form fills the form; a `slices:` recipe
 * is kept verbatim (the form shows it read-only).
 */
#ifndef SMELT_UI_RECIPE_H
#define SMELT_UI_RECIPE_H

#include <stdbool.h>

#include "ui_app.h"

/* Select a method and reset its parameters to "default". */
void recipe_set_method(struct ui_settings *s, const struct smelt_method *m);

/* Value of parameter p at layer position t in [0,1] (the default when unset). */
double recipe_pval_at(const struct ui_pval *v, const struct smelt_param_def *p, double t);
/* Short text of a value: "0.5", "[0, 0.5, 1]", "default (1)". */
void recipe_pval_text(const struct ui_pval *v, const struct smelt_param_def *p, char *buf,
                      size_t n);

/* Recipe JSON for the current form (malloc'd), or a copy of the raw recipe. */
char *recipe_build_json(const struct ui_app *app);

/* Fill the form from a parsed recipe. Returns 0, or -1 with a message. */
int recipe_apply(struct ui_app *app, const struct smelt_recipe *r, char *msg, size_t n);

/* WIDEN knobs from the form (defaults when unset or not WIDEN). */
bool recipe_is_widen(const struct ui_settings *s);
void recipe_widen_knobs(const struct ui_settings *s, double *t, double *cal, double *temp);
/* Index of a parameter by any of a few names, -1 if none. */
int recipe_param_index(const struct smelt_method *m, const char *const *names);

#endif

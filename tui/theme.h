/*
 * theme.h: colour themes for the workbench, read from JSON files.
 *
 * A theme file is one flat JSON object (cJSON): "name", then named colours
 * as "#RRGGBB" (or "" for the terminal's default colour), and the heatmap
 * ramp as three colours heat_start / heat_mid / heat_end (heat_mid may be
 * "" for a two-point ramp). Unknown keys are ignored; a missing key keeps
 * the built-in dark theme's value, so a user theme may set only a few.
 *
 * Lookup of a theme NAME: a path when it contains '/' or ends in ".json";
 * otherwise $XDG_CONFIG_HOME/smelt/themes/NAME.json (default
 * ~/.config/smelt/themes), then the installed themes folder.
 */
#ifndef SMELT_THEME_H
#define SMELT_THEME_H

#include <stddef.h>
#include <stdint.h>

#include "smelt/err.h"

#define THEME_HEAT_LEVELS 32

struct theme {
	char name[64];
	uint32_t bg, fg, dim, title, border, border_focus;
	uint32_t tab_bg, tab_fg, tab_active_bg, tab_active_fg;
	uint32_t cursor_bg, cursor_fg, select_fg;
	uint32_t ok, warn, error, accent;
	uint32_t bar_on, bar_off;
	uint32_t status_bg, status_fg;
	uint32_t heat_start, heat_mid, heat_end;
	int heat_has_mid;
	uint32_t heat[THEME_HEAT_LEVELS]; /* the ramp, expanded */
};

/* The built-in dark theme. */
void theme_default(struct theme *t);

/* Parse theme JSON text over the defaults. Fails (SMELT_EFORMAT) on bad
 * JSON or a colour that is not "#RRGGBB" / "". */
int theme_parse(struct theme *t, const char *text, const char *what, struct smelt_err *err);

/* Find and load a theme by name (see above). */
int theme_load(struct theme *t, const char *name, struct smelt_err *err);

/* Where theme_load looks; for messages and the help overlay. */
void theme_user_dir(char *buf, size_t n);

/* Colour of ramp position f in [0, 1]. */
uint32_t theme_heat(const struct theme *t, double f);

#endif

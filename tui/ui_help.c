/* ui_help.c: the `?` overlay listing every key. */
#include <curses.h>

#include "ui_app.h"
#include "ui_term.h"

static const char *const help_lines[] = {
    "Everywhere",
    "  1 2 3 4        switch view: Checkpoints, Heatmap, Settings, Run",
    "  Tab / S-Tab    next / previous pane",
    "  arrows, hjkl   move       Enter  select / edit      Esc  back out",
    "  r              start the merge (once the recipe is valid)",
    "  ?              this help  q  quit (asks first while a merge runs)",
    "  mouse          click selects cells and list items, wheel scrolls",
    "1 Checkpoints",
    "  Enter          add a checkpoint folder as a model, else open it",
    "  l / h          open the folder / go to the parent",
    "  a / Space      add as a model      b  make it the base",
    "  d / Del        remove from the selection (Selection pane)",
    "  /              add a Hugging Face model org/name[@rev] from the cache",
    "  P              download org/name[@rev] into the cache   Esc stops it",
    "  o              go to a folder      R  rescan folder and cache",
    "2 Heatmap",
    "  m / M          mode: magnitude, direction divergence, WIDEN weight",
    "  s              linear / log scale  PgUp PgDn Home End  jump",
    "3 Settings",
    "  Enter          pick method / edit value (a,b,c = gradient)",
    "  + / -          adjust      g  gradient on/off     x  reset to default",
    "  curve editor   h/l anchor  k/j value  a add  d drop  Esc done",
    "  s / o          save recipe (.json or .yml) / load a recipe",
    "4 Run",
    "  Enter, +/-     edit output folder, dtype, shard size, threads, overwrite",
    "  v              validate now        c / Esc  cancel the merge (asks)",
};

void help_draw(struct ui_app *app)
{
	int n = (int)(sizeof(help_lines) / sizeof(help_lines[0]));
	int w = COLS - 4 < 78 ? COLS - 4 : 78, h = n + 3 < LINES - 2 ? n + 3 : LINES - 2;
	int y = (LINES - h) / 2, x = (COLS - w) / 2;

	ui_fill(y, x, h, w, st_text(app));
	ui_box(y, x, h, w, st_border(app, true), "Keys (any key closes)", true, st_title(app));
	for (int i = 0; i < n && i < h - 2; i++) {
		bool heading = help_lines[i][0] != ' ';

		ui_text(y + 1 + i, x + 2, w - 4, heading ? st_title(app) : st_text(app),
		        help_lines[i]);
	}
}

/*
 * ui_term.h: the terminal as the workbench sees it: colour tier, glyph set,
 * colour pairs and the few drawing primitives every view uses.
 *
 * Owned by the TUI. Every function here calls curses and must run on the UI
 * thread only. Colours are 0xRRGGBB values (UI_DEFAULT = the terminal's own
 * colour); they are mapped once per call to what the tier can show:
 * truecolor (a `*-direct` terminfo) -> xterm-256 cube -> 16 or 8 ANSI colours
 * -> monochrome (attributes only; also when NO_COLOR is set). Pairs come from
 * ncurses' alloc_pair(), which dedupes and recycles, and are passed through
 * the `opts` pointer so more than 255 pairs work.
 */
#ifndef SMELT_UI_TERM_H
#define SMELT_UI_TERM_H

#include <stdbool.h>
#include <stdint.h>

#define UI_DEFAULT 0xFF000000u /* the terminal's default colour */

enum ui_tier { UI_TIER_MONO, UI_TIER_8, UI_TIER_16, UI_TIER_256, UI_TIER_DIRECT };

/* A drawing style: colours plus curses attributes (A_BOLD, A_REVERSE...). */
struct ui_style {
	uint32_t fg, bg;
	unsigned attr;
};

struct ui_term {
	enum ui_tier tier;
	bool utf8;  /* the locale's codeset is UTF-8: blocks and box glyphs */
	bool mouse; /* mouse reporting was enabled */
	int colors; /* COLORS as curses reported it */
};

extern struct ui_term ui_term;

/* Initialise curses (initscr, raw keys, colours, mouse). force_mono when
 * NO_COLOR is set. Returns 0, or -1 when the terminal cannot be used. */
int ui_term_open(bool force_mono);
/* Restore the terminal (endwin); safe to call twice. */
void ui_term_close(void);

/* A descriptor that becomes readable when the terminal was resized (a
 * SIGWINCH arrived on any thread, at any moment); -1 when closed. Poll it
 * with the keyboard so a resize can never be lost between getch and poll. */
int ui_term_resize_fd(void);
/* Drain the resize descriptor and bring curses to the terminal's current
 * size (TIOCGWINSZ, resizeterm). Returns true when LINES/COLS changed. */
bool ui_term_sync_size(void);

const char *ui_tier_name(enum ui_tier t);

/* Curses colour number for an RGB value in the current tier (-1 default). */
int ui_color(uint32_t rgb);
/* A pair for fg/bg (alloc_pair); 0 when the tier has no colour or the
 * terminal ran out of pairs. */
int ui_pair(uint32_t fg, uint32_t bg);

/* Set the current drawing style for the following addstr calls. */
void ui_set(struct ui_style s);
/* Print at (y, x), at most w columns, in style s. Returns columns used. */
int ui_text(int y, int x, int w, struct ui_style s, const char *text);
int ui_textf(int y, int x, int w, struct ui_style s, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* Print text word-wrapped into at most h rows of w columns (embedded
 * newlines start a new row). Returns the rows used. */
int ui_text_wrap(int y, int x, int h, int w, struct ui_style s, const char *text);
/* One glyph (a UTF-8 string of one character) at (y, x). */
void ui_glyph(int y, int x, const char *glyph, struct ui_style s);
/* Fill a rectangle with spaces in style s. */
void ui_fill(int y, int x, int h, int w, struct ui_style s);
/* A box outline (line drawing in UTF-8, +-| otherwise) with a title. */
void ui_box(int y, int x, int h, int w, struct ui_style s, const char *title, bool focused,
            struct ui_style title_style);
/* Horizontal bar of w cells, fraction in [0,1] filled. */
void ui_bar(int y, int x, int w, double fraction, struct ui_style on, struct ui_style off);

/* Glyphs that depend on the locale. */
const char *ui_g_upper(void); /* upper half block, or NULL in ASCII */
const char *ui_g_full(void);
const char *ui_g_shade(int level);             /* level 0..4: " ", light, medium, dark, full */
const char *ui_g_ascii_ramp(int level, int n); /* " .:-=+*#%@" picked for level of n */
const char *ui_g_arrow(void);                  /* a cursor marker */

#endif

/* ui_term.c: curses setup, colour tiers, pairs and drawing primitives. */
#include <errno.h>
#include <fcntl.h>
#include <langinfo.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <curses.h>

#include "ui_term.h"

struct ui_term ui_term;
static bool term_is_open;

/* SIGWINCH self-pipe. curses' own handler only sets a flag that getch()
 * looks at; a resize arriving after the last getch() and before poll(), or
 * delivered to a worker thread, would leave poll() asleep with the old size
 * on screen. The handler below also writes a byte the event loop polls, and
 * then chains to curses' handler. */
static int winch_pipe[2] = {-1, -1};
static struct sigaction winch_prev;
static bool winch_installed;

static void on_winch(int sig, siginfo_t *info, void *ctx)
{
	int saved = errno;
	char b = 1;

	if (winch_pipe[1] >= 0 && write(winch_pipe[1], &b, 1) < 0) {
		/* Full pipe: a wakeup is already pending. */
	}
	if (winch_prev.sa_flags & SA_SIGINFO) {
		if (winch_prev.sa_sigaction)
			winch_prev.sa_sigaction(sig, info, ctx);
	} else if (winch_prev.sa_handler != SIG_DFL && winch_prev.sa_handler != SIG_IGN) {
		winch_prev.sa_handler(sig);
	}
	errno = saved;
}

static void winch_install(void)
{
	struct sigaction sa;

	if (pipe(winch_pipe)) {
		winch_pipe[0] = winch_pipe[1] = -1;
		return;
	}
	for (int i = 0; i < 2; i++) {
		fcntl(winch_pipe[i], F_SETFL, fcntl(winch_pipe[i], F_GETFL) | O_NONBLOCK);
		fcntl(winch_pipe[i], F_SETFD, FD_CLOEXEC);
	}
	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_sigaction = on_winch;
	/* Keep curses' choice about restarting interrupted calls. */
	if (sigaction(SIGWINCH, NULL, &winch_prev))
		return;
	sa.sa_flags = SA_SIGINFO | (winch_prev.sa_flags & SA_RESTART);
	winch_installed = sigaction(SIGWINCH, &sa, NULL) == 0;
}

static void winch_remove(void)
{
	if (winch_installed)
		sigaction(SIGWINCH, &winch_prev, NULL);
	winch_installed = false;
	for (int i = 0; i < 2; i++) {
		if (winch_pipe[i] >= 0)
			close(winch_pipe[i]);
		winch_pipe[i] = -1;
	}
}

int ui_term_resize_fd(void)
{
	return winch_pipe[0];
}

bool ui_term_sync_size(void)
{
	struct winsize ws;
	char buf[64];

	if (winch_pipe[0] >= 0)
		while (read(winch_pipe[0], buf, sizeof(buf)) > 0)
			;
	if (!term_is_open || ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) || ws.ws_row == 0 ||
	    ws.ws_col == 0)
		return false;
	if (ws.ws_row == LINES && ws.ws_col == COLS)
		return false;
	resizeterm(ws.ws_row, ws.ws_col);
	return true;
}

/* The xterm default palette, for mapping RGB onto 8/16 colours. */
static const uint32_t ansi16[16] = {
    0x000000, 0xcd0000, 0x00cd00, 0xcdcd00, 0x0000ee, 0xcd00cd, 0x00cdcd, 0xe5e5e5,
    0x7f7f7f, 0xff0000, 0x00ff00, 0xffff00, 0x5c5cff, 0xff00ff, 0x00ffff, 0xffffff,
};

static bool locale_is_utf8(void)
{
	const char *cs = nl_langinfo(CODESET);

	return cs && (strcmp(cs, "UTF-8") == 0 || strcmp(cs, "utf8") == 0);
}

static enum ui_tier detect_tier(bool force_mono)
{
	if (force_mono || !has_colors())
		return UI_TIER_MONO;
	if (COLORS >= 0x1000000)
		return UI_TIER_DIRECT;
	if (COLORS >= 256)
		return UI_TIER_256;
	if (COLORS >= 16)
		return UI_TIER_16;
	if (COLORS >= 8)
		return UI_TIER_8;
	return UI_TIER_MONO;
}

int ui_term_open(bool force_mono)
{
	/* A lone Esc must back out quickly, not wait a second for a sequence. */
	if (!getenv("ESCDELAY"))
		setenv("ESCDELAY", "25", 1);
	if (!initscr())
		return -1;
	term_is_open = true;
	raw();
	noecho();
	keypad(stdscr, TRUE);
	nodelay(stdscr, TRUE);
	curs_set(0);
	/* Home/End as tmux, screen and the Linux console send them, in case
	 * TERM names a terminal that sends others. */
	define_key("\033[1~", KEY_HOME);
	define_key("\033[4~", KEY_END);
	define_key("\033[H", KEY_HOME);
	define_key("\033[F", KEY_END);
	define_key("\033OH", KEY_HOME);
	define_key("\033OF", KEY_END);
	ui_term.utf8 = locale_is_utf8();
	ui_term.colors = 0;
	if (!force_mono && has_colors()) {
		start_color();
		use_default_colors();
		ui_term.colors = COLORS;
	}
	ui_term.tier = detect_tier(force_mono);
	mouseinterval(0);
	ui_term.mouse =
	    mousemask(BUTTON1_PRESSED | BUTTON1_RELEASED | BUTTON1_CLICKED | BUTTON4_PRESSED |
	                  BUTTON5_PRESSED,
	              NULL) != 0;
	/* After initscr, which installs curses' handler that on_winch chains
	 * to; then catch a resize that came while curses was starting. */
	winch_install();
	ui_term_sync_size();
	return 0;
}

void ui_term_close(void)
{
	if (!term_is_open)
		return;
	term_is_open = false;
	winch_remove();
	mousemask(0, NULL);
	curs_set(1);
	endwin();
}

const char *ui_tier_name(enum ui_tier t)
{
	switch (t) {
	case UI_TIER_DIRECT: return "truecolor";
	case UI_TIER_256: return "256 colours";
	case UI_TIER_16: return "16 colours";
	case UI_TIER_8: return "8 colours";
	case UI_TIER_MONO: break;
	}
	return "mono";
}

static int nearest_ansi(uint32_t rgb, int n)
{
	int best = 0;
	long best_d = -1;

	for (int i = 0; i < n; i++) {
		long dr = (long)((rgb >> 16) & 255) - (long)((ansi16[i] >> 16) & 255);
		long dg = (long)((rgb >> 8) & 255) - (long)((ansi16[i] >> 8) & 255);
		long db = (long)(rgb & 255) - (long)(ansi16[i] & 255);
		long d = dr * dr * 3 + dg * dg * 4 + db * db * 2;

		if (best_d < 0 || d < best_d) {
			best_d = d;
			best = i;
		}
	}
	return best;
}

/* btop's rule: grey ramp 232-255 when the channels agree, else the cube. */
static int to_xterm256(uint32_t rgb)
{
	int r = (rgb >> 16) & 255, g = (rgb >> 8) & 255, b = rgb & 255;

	if (r / 11 == g / 11 && g / 11 == b / 11) {
		int grey = (r + g + b) / 3;

		if (grey < 4)
			return 16;
		if (grey > 246)
			return 231;
		return 232 + (grey - 3) * 24 / 244;
	}
	return 16 + 36 * ((r + 25) / 51) + 6 * ((g + 25) / 51) + (b + 25) / 51;
}

int ui_color(uint32_t rgb)
{
	if (rgb == UI_DEFAULT)
		return -1;
	rgb &= 0xFFFFFF;
	switch (ui_term.tier) {
	case UI_TIER_DIRECT:
		/* Values 0-7 mean the ANSI palette in direct mode. */
		return rgb < 8 ? 8 : (int)rgb;
	case UI_TIER_256: return to_xterm256(rgb);
	case UI_TIER_16: return nearest_ansi(rgb, 16);
	case UI_TIER_8: return nearest_ansi(rgb, 8);
	case UI_TIER_MONO: break;
	}
	return -1;
}

int ui_pair(uint32_t fg, uint32_t bg)
{
	int p;

	if (ui_term.tier == UI_TIER_MONO)
		return 0;
	p = alloc_pair(ui_color(fg), ui_color(bg));
	return p < 0 ? 0 : p;
}

void ui_set(struct ui_style s)
{
	int pair = ui_pair(s.fg, s.bg);

	attr_set((attr_t)s.attr, 0, &pair);
}

int ui_text(int y, int x, int w, struct ui_style s, const char *text)
{
	int len;

	if (w <= 0 || y < 0 || y >= LINES || x >= COLS)
		return 0;
	if (x + w > COLS)
		w = COLS - x;
	ui_set(s);
	/* Count display columns, not bytes, so UTF-8 names are cut right. */
	len = 0;
	const char *p = text;
	while (*p && len < w) {
		const char *start = p;

		p++;
		while ((*p & 0xC0) == 0x80)
			p++;
		mvaddnstr(y, x + len, start, (int)(p - start));
		len++;
	}
	return len;
}

int ui_textf(int y, int x, int w, struct ui_style s, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	return ui_text(y, x, w, s, buf);
}

int ui_text_wrap(int y, int x, int h, int w, struct ui_style s, const char *text)
{
	const char *p = text;
	int rows = 0;

	if (w <= 0)
		return 0;
	while (*p && rows < h) {
		int len = 0, cut = -1, cols = 0;

		/* Find how many bytes fit in w columns, preferring a space. */
		while (p[len] && p[len] != '\n' && cols < w) {
			if (p[len] == ' ')
				cut = len;
			len++;
			while ((p[len] & 0xC0) == 0x80)
				len++;
			cols++;
		}
		if (p[len] && p[len] != '\n' && cut > 0)
			len = cut;
		{
			char line[1024];

			snprintf(line, sizeof(line), "%.*s", len, p);
			ui_text(y + rows, x, w, s, line);
		}
		rows++;
		p += len;
		while (*p == ' ' || *p == '\n')
			p++;
	}
	return rows;
}

void ui_glyph(int y, int x, const char *glyph, struct ui_style s)
{
	cchar_t cc;
	wchar_t wc[2] = {0, 0};
	int pair;

	if (y < 0 || y >= LINES || x < 0 || x >= COLS)
		return;
	if (mbtowc(&wc[0], glyph, strlen(glyph)) <= 0)
		wc[0] = (wchar_t)' ';
	pair = ui_pair(s.fg, s.bg);
	setcchar(&cc, wc, (attr_t)s.attr, 0, &pair);
	mvadd_wch(y, x, &cc);
}

void ui_fill(int y, int x, int h, int w, struct ui_style s)
{
	if (w <= 0)
		return;
	ui_set(s);
	for (int r = 0; r < h; r++) {
		if (y + r < 0 || y + r >= LINES)
			continue;
		move(y + r, x);
		for (int c = 0; c < w && x + c < COLS; c++)
			addch(' ');
	}
}

void ui_box(int y, int x, int h, int w, struct ui_style s, const char *title, bool focused,
            struct ui_style title_style)
{
	const char *h_line = ui_term.utf8 ? (focused ? "━" : "─") : (focused ? "=" : "-");
	const char *v_line = ui_term.utf8 ? (focused ? "┃" : "│") : "|";
	const char *tl = ui_term.utf8 ? (focused ? "┏" : "╭") : "+";
	const char *tr = ui_term.utf8 ? (focused ? "┓" : "╮") : "+";
	const char *bl = ui_term.utf8 ? (focused ? "┗" : "╰") : "+";
	const char *br = ui_term.utf8 ? (focused ? "┛" : "╯") : "+";

	if (h < 2 || w < 2)
		return;
	for (int c = 1; c < w - 1; c++) {
		ui_glyph(y, x + c, h_line, s);
		ui_glyph(y + h - 1, x + c, h_line, s);
	}
	for (int r = 1; r < h - 1; r++) {
		ui_glyph(y + r, x, v_line, s);
		ui_glyph(y + r, x + w - 1, v_line, s);
	}
	ui_glyph(y, x, tl, s);
	ui_glyph(y, x + w - 1, tr, s);
	ui_glyph(y + h - 1, x, bl, s);
	ui_glyph(y + h - 1, x + w - 1, br, s);
	if (title && *title && w > 6) {
		ui_text(y, x + 2, 1, s, " ");
		int n = ui_text(y, x + 3, w - 6, title_style, title);
		ui_text(y, x + 3 + n, 1, s, " ");
	}
}

void ui_bar(int y, int x, int w, double fraction, struct ui_style on, struct ui_style off)
{
	int full;

	if (fraction < 0)
		fraction = 0;
	if (fraction > 1)
		fraction = 1;
	full = (int)(fraction * w + 0.5);
	for (int c = 0; c < w; c++) {
		if (ui_term.utf8)
			ui_glyph(y, x + c, c < full ? "█" : "░", c < full ? on : off);
		else
			ui_text(y, x + c, 1, c < full ? on : off, c < full ? "#" : ".");
	}
}

const char *ui_g_upper(void)
{
	return ui_term.utf8 ? "▀" : NULL;
}

const char *ui_g_full(void)
{
	return ui_term.utf8 ? "█" : "#";
}

const char *ui_g_shade(int level)
{
	static const char *const utf[5] = {" ", "░", "▒", "▓", "█"};
	static const char *const ascii[5] = {" ", ".", ":", "*", "#"};

	if (level < 0)
		level = 0;
	if (level > 4)
		level = 4;
	return ui_term.utf8 ? utf[level] : ascii[level];
}

const char *ui_g_ascii_ramp(int level, int n)
{
	static const char *const ramp[10] = {" ", ".", ":", "-", "=", "+", "*", "#", "%", "@"};
	int i = n > 1 ? level * 9 / (n - 1) : 0;

	if (i < 0)
		i = 0;
	if (i > 9)
		i = 9;
	return ramp[i];
}

const char *ui_g_arrow(void)
{
	return ui_term.utf8 ? "▶" : ">";
}

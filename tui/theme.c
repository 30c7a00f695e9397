/* theme.c: theme files (JSON) and the heatmap ramp. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "theme.h"
#include "ui_term.h"

#ifndef SMELT_THEME_DIR
#define SMELT_THEME_DIR "themes"
#endif

static void expand_ramp(struct theme *t)
{
	for (int i = 0; i < THEME_HEAT_LEVELS; i++)
		t->heat[i] = theme_heat(t, (double)i / (THEME_HEAT_LEVELS - 1));
}

void theme_default(struct theme *t)
{
	memset(t, 0, sizeof(*t));
	snprintf(t->name, sizeof(t->name), "dark");
	t->bg = UI_DEFAULT;
	t->fg = 0xd0d4dc;
	t->dim = 0x7a808c;
	t->title = 0x8ec7ff;
	t->border = 0x4a505c;
	t->border_focus = 0x6fb3ff;
	t->tab_bg = 0x2a2e36;
	t->tab_fg = 0xa0a6b2;
	t->tab_active_bg = 0x3d7bd9;
	t->tab_active_fg = 0xffffff;
	t->cursor_bg = 0x3d4a63;
	t->cursor_fg = 0xffffff;
	t->select_fg = 0xffd166;
	t->ok = 0x5fd38a;
	t->warn = 0xffb454;
	t->error = 0xff5f6d;
	t->accent = 0xc792ea;
	t->bar_on = 0x5fd38a;
	t->bar_off = 0x3a3f4b;
	t->status_bg = 0x2a2e36;
	t->status_fg = 0xc0c6d0;
	/* Dark blue -> orange -> light yellow: reads on a dark background. */
	t->heat_start = 0x16213e;
	t->heat_mid = 0xd0523b;
	t->heat_end = 0xfff3a8;
	t->heat_has_mid = 1;
	expand_ramp(t);
}

static uint32_t lerp_rgb(uint32_t a, uint32_t b, double f)
{
	uint32_t out = 0;

	for (int sh = 16; sh >= 0; sh -= 8) {
		double ca = (a >> sh) & 255, cb = (b >> sh) & 255;
		int c = (int)(ca + (cb - ca) * f + 0.5);

		out |= (uint32_t)(c < 0 ? 0 : c > 255 ? 255 : c) << sh;
	}
	return out;
}

uint32_t theme_heat(const struct theme *t, double f)
{
	if (!(f >= 0))
		f = 0;
	if (f > 1)
		f = 1;
	if (!t->heat_has_mid)
		return lerp_rgb(t->heat_start, t->heat_end, f);
	if (f < 0.5)
		return lerp_rgb(t->heat_start, t->heat_mid, f * 2);
	return lerp_rgb(t->heat_mid, t->heat_end, (f - 0.5) * 2);
}

static int parse_color(const char *s, uint32_t *out)
{
	unsigned v;
	char tail;

	if (*s == '\0') {
		*out = UI_DEFAULT;
		return 0;
	}
	if (s[0] != '#' || strlen(s) != 7 || sscanf(s + 1, "%6x%c", &v, &tail) != 1)
		return -1;
	*out = v;
	return 0;
}

struct theme_key {
	const char *name;
	size_t off;
};

#define KEY(f)                                                                                     \
	{                                                                                          \
#f, offsetof(struct theme, f)                                                      \
	}
static const struct theme_key theme_keys[] = {
    KEY(bg),
    KEY(fg),
    KEY(dim),
    KEY(title),
    KEY(border),
    KEY(border_focus),
    KEY(tab_bg),
    KEY(tab_fg),
    KEY(tab_active_bg),
    KEY(tab_active_fg),
    KEY(cursor_bg),
    KEY(cursor_fg),
    KEY(select_fg),
    KEY(ok),
    KEY(warn),
    KEY(error),
    KEY(accent),
    KEY(bar_on),
    KEY(bar_off),
    KEY(status_bg),
    KEY(status_fg),
    KEY(heat_start),
    KEY(heat_end),
};
#undef KEY

int theme_parse(struct theme *t, const char *text, const char *what, struct smelt_err *err)
{
	cJSON *root = cJSON_Parse(text);
	const cJSON *item;
	int rc = 0;

	if (!root || !cJSON_IsObject(root)) {
		cJSON_Delete(root);
		return smelt_fail(err, SMELT_EFORMAT, "%s: not a JSON object", what);
	}
	item = cJSON_GetObjectItemCaseSensitive(root, "name");
	if (cJSON_IsString(item))
		snprintf(t->name, sizeof(t->name), "%s", item->valuestring);
	for (size_t i = 0; i < sizeof(theme_keys) / sizeof(theme_keys[0]); i++) {
		item = cJSON_GetObjectItemCaseSensitive(root, theme_keys[i].name);
		if (!item)
			continue;
		if (!cJSON_IsString(item) ||
		    parse_color(item->valuestring, (uint32_t *)((char *)t + theme_keys[i].off))) {
			rc = smelt_fail(err, SMELT_EFORMAT,
			                "%s: key \"%s\": expected \"#RRGGBB\" or \"\"", what,
			                theme_keys[i].name);
			goto out;
		}
	}
	item = cJSON_GetObjectItemCaseSensitive(root, "heat_mid");
	if (item) {
		uint32_t mid;

		if (!cJSON_IsString(item) || parse_color(item->valuestring, &mid)) {
			rc = smelt_fail(err, SMELT_EFORMAT,
			                "%s: key \"heat_mid\": expected \"#RRGGBB\" or \"\"", what);
			goto out;
		}
		t->heat_has_mid = mid != UI_DEFAULT;
		t->heat_mid = mid;
	}
	if (t->heat_start == UI_DEFAULT || t->heat_end == UI_DEFAULT) {
		rc = smelt_fail(err, SMELT_EFORMAT, "%s: heat_start and heat_end need colours",
		                what);
		goto out;
	}
	expand_ramp(t);
out:
	cJSON_Delete(root);
	return rc;
}

void theme_user_dir(char *buf, size_t n)
{
	const char *xdg = getenv("XDG_CONFIG_HOME");
	const char *home = getenv("HOME");

	if (xdg && *xdg)
		snprintf(buf, n, "%s/smelt/themes", xdg);
	else
		snprintf(buf, n, "%s/.config/smelt/themes", home ? home : ".");
}

static char *read_text(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long len;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (len = ftell(f)) >= 0 && len < (1 << 20) &&
	    fseek(f, 0, SEEK_SET) == 0) {
		buf = malloc((size_t)len + 1);
		if (buf && fread(buf, 1, (size_t)len, f) == (size_t)len) {
			buf[len] = '\0';
		} else {
			free(buf);
			buf = NULL;
		}
	}
	fclose(f);
	return buf;
}

int theme_load(struct theme *t, const char *name, struct smelt_err *err)
{
	char dir[1024] = "", path[1200];
	char *text = NULL;
	size_t len = strlen(name);
	int rc;

	theme_default(t);
	if (strchr(name, '/') || (len > 5 && strcmp(name + len - 5, ".json") == 0)) {
		snprintf(path, sizeof(path), "%s", name);
		text = read_text(path);
	} else {
		theme_user_dir(dir, sizeof(dir));
		snprintf(path, sizeof(path), "%s/%s.json", dir, name);
		text = read_text(path);
		if (!text) {
			snprintf(path, sizeof(path), "%s/%s.json", SMELT_THEME_DIR, name);
			text = read_text(path);
		}
	}
	if (!text)
		return smelt_fail(err, SMELT_ENOTFOUND,
		                  "theme '%s' not found (looked in %s and %s)", name, dir,
		                  SMELT_THEME_DIR);
	rc = theme_parse(t, text, path, err);
	free(text);
	return rc;
}

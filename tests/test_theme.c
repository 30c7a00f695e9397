/* test_theme.c: theme files parse, fall back to the built-in theme, reject
 * bad colours, and expand the heatmap ramp. The TUI is not a library, so
 * its theme module is compiled into this test directly. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "check.h"

#include "../tui/theme.c"

static const char *theme_path(const char *name, char *buf, size_t n)
{
	const char *src = getenv("SMELT_SOURCE");

	snprintf(buf, n, "%s/themes/%s.json", src ? src : ".", name);
	return buf;
}

TEST(default_theme_has_ramp)
{
	struct theme t;

	theme_default(&t);
	CHECK(strcmp(t.name, "dark") == 0);
	CHECK_EQ_INT(t.heat[0], t.heat_start);
	CHECK_EQ_INT(t.heat[THEME_HEAT_LEVELS - 1], t.heat_end);
	CHECK_EQ_INT(theme_heat(&t, 0.5), t.heat_mid);
	CHECK_EQ_INT(t.bg, UI_DEFAULT);
}

TEST(shipped_themes_load)
{
	static const char *const names[] = {"dark", "light", "high-contrast", "viridis"};
	char path[1024];

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		struct theme t;
		struct smelt_err err;

		smelt_err_clear(&err);
		CHECK_MSG(theme_load(&t, theme_path(names[i], path, sizeof(path)), &err) == 0,
		          "%s: %s", names[i], err.msg);
		CHECK_MSG(strcmp(t.name, names[i]) == 0, "name %s vs %s", t.name, names[i]);
	}
}

TEST(partial_theme_keeps_defaults)
{
	struct theme t, def;
	struct smelt_err err;

	theme_default(&def);
	theme_default(&t);
	CHECK(theme_parse(&t, "{\"name\":\"mine\",\"error\":\"#112233\",\"x\":1}", "mine", &err) ==
	      0);
	CHECK_EQ_INT(t.error, 0x112233);
	CHECK_EQ_INT(t.fg, def.fg);
	CHECK(strcmp(t.name, "mine") == 0);
}

TEST(two_point_ramp)
{
	struct theme t;
	struct smelt_err err;

	theme_default(&t);
	CHECK(theme_parse(&t,
	                  "{\"heat_start\":\"#000000\",\"heat_mid\":\"\","
	                  "\"heat_end\":\"#ffffff\"}",
	                  "grey", &err) == 0);
	CHECK(!t.heat_has_mid);
	CHECK_EQ_INT(theme_heat(&t, 0.5), 0x808080);
}

TEST(bad_themes_rejected)
{
	struct theme t;
	struct smelt_err err;

	theme_default(&t);
	CHECK(theme_parse(&t, "{\"fg\":\"red\"}", "bad.json", &err) == SMELT_EFORMAT);
	CHECK_STR_CONTAINS(err.msg, "fg");
	CHECK(theme_parse(&t, "{\"fg\":\"#12345\"}", "bad.json", &err) == SMELT_EFORMAT);
	CHECK(theme_parse(&t, "[1,2]", "bad.json", &err) == SMELT_EFORMAT);
	CHECK(theme_parse(&t, "{", "bad.json", &err) == SMELT_EFORMAT);
	CHECK(theme_parse(&t, "{\"heat_end\":\"\"}", "bad.json", &err) == SMELT_EFORMAT);
	CHECK(theme_load(&t, "no-such-theme-here", &err) == SMELT_ENOTFOUND);
	CHECK_STR_CONTAINS(err.msg, "no-such-theme-here");
}

TEST(user_dir_follows_xdg)
{
	char buf[256];

	setenv("XDG_CONFIG_HOME", "/tmp/xdg-test", 1);
	theme_user_dir(buf, sizeof(buf));
	CHECK(strcmp(buf, "/tmp/xdg-test/smelt/themes") == 0);
	unsetenv("XDG_CONFIG_HOME");
}

TEST(user_theme_by_name)
{
	const char *dir = check_tmpdir();
	char path[1024];
	struct theme t;
	struct smelt_err err;
	FILE *f;

	setenv("XDG_CONFIG_HOME", dir, 1);
	snprintf(path, sizeof(path), "%s/smelt", dir);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/smelt/themes", dir);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/smelt/themes/mine.json", dir);
	f = fopen(path, "w");
	CHECK(f != NULL);
	if (!f)
		return;
	fputs("{\"name\":\"mine\",\"accent\":\"#abcdef\"}\n", f);
	fclose(f);
	CHECK(theme_load(&t, "mine", &err) == 0);
	CHECK_EQ_INT(t.accent, 0xabcdef);
	unsetenv("XDG_CONFIG_HOME");
}

int main(void)
{
	RUN(default_theme_has_ramp);
	RUN(shipped_themes_load);
	RUN(partial_theme_keeps_defaults);
	RUN(two_point_ramp);
	RUN(bad_themes_rejected);
	RUN(user_dir_follows_xdg);
	RUN(user_theme_by_name);
	return check_summary();
}

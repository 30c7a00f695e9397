/* cmd_tui.c: `smelt` / `smelt tui [--recipe FILE] [-o OUT] [--theme NAME]
 * [CHECKPOINT...]`: open the workbench. */
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "ui_app.h"
#include "ui_recipe.h"
#include "ui_term.h"
#include "ui_work.h"

static void usage(FILE *out)
{
	fprintf(out, "usage: smelt tui [--recipe FILE] [-o OUT] [--theme NAME] [CHECKPOINT...]\n"
	             "\n"
	             "Open the merge workbench. The first CHECKPOINT is the base, the others\n"
	             "are the models to merge (folders or org/name[@rev] in the HF cache).\n"
	             "\n"
	             "  --recipe FILE   load a recipe (JSON or mergekit YAML)\n"
	             "  -o, --output D  output folder of the Run view\n"
	             "  --theme NAME    colour theme (also SMELT_THEME): dark, light,\n"
	             "                  high-contrast, viridis, or a path to a .json file\n"
	             "\n"
	             "NO_COLOR=1 turns colours off. Press ? inside for every key.\n");
}

struct tui_args {
	const char *recipe, *out, *theme;
	const char **ckpts;
	int n_ckpts;
};

static int parse_args(int argc, char **argv, struct tui_args *a)
{
	a->ckpts = calloc((size_t)argc + 1, sizeof(*a->ckpts));
	if (!a->ckpts)
		return 1;
	/* argv[0] is "smelt" (no subcommand) or "tui". */
	for (int i = 1; i < argc; i++) {
		const char *s = argv[i];

		if (!strcmp(s, "-h") || !strcmp(s, "--help")) {
			usage(stdout);
			return -1;
		} else if (!strcmp(s, "--recipe") || !strcmp(s, "-o") || !strcmp(s, "--output") ||
		           !strcmp(s, "--theme")) {
			if (i + 1 >= argc) {
				cli_error("%s needs a value", s);
				return 2;
			}
			if (!strcmp(s, "--recipe"))
				a->recipe = argv[++i];
			else if (!strcmp(s, "--theme"))
				a->theme = argv[++i];
			else
				a->out = argv[++i];
		} else if (!strncmp(s, "--recipe=", 9)) {
			a->recipe = s + 9;
		} else if (!strncmp(s, "--theme=", 8)) {
			a->theme = s + 8;
		} else if (!strncmp(s, "--output=", 9)) {
			a->out = s + 9;
		} else if (s[0] == '-' && s[1]) {
			cli_error("tui: unknown option '%s'", s);
			usage(stderr);
			return 2;
		} else {
			a->ckpts[a->n_ckpts++] = s;
		}
	}
	return 0;
}

static volatile sig_atomic_t got_term;

static void on_term(int sig)
{
	(void)sig;
	got_term = 1;
}

static void app_init(struct ui_app *app, const struct tui_args *a)
{
	char cwd[PATH_MAX];

	if (!getcwd(cwd, sizeof(cwd)))
		snprintf(cwd, sizeof(cwd), ".");
	snprintf(app->browse_dir, sizeof(app->browse_dir), "%s", cwd);
	if (a->out)
		snprintf(app->set.out_dir, sizeof(app->set.out_dir), "%s", a->out);
	else
		snprintf(app->set.out_dir, sizeof(app->set.out_dir), "%s/merged", cwd);
	if (smelt_method_count() > 0)
		recipe_set_method(&app->set, smelt_method_at(0));
	app->heat_mode = 0;
	app->heat_row = 1;
	app->view = UI_VIEW_CKPT;
}

static void app_release(struct ui_app *app)
{
	view_ckpt_free(app);
	validation_free(app->valid);
	free(app->set.raw_recipe);
	free(app->prog);
	ui_queue_destroy(&app->queue);
}

int cmd_tui(int argc, char **argv)
{
	struct ui_app *app = NULL;
	struct tui_args a = {0};
	struct smelt_err err;
	struct sigaction sa;
	const char *theme_name;
	char msg[1024];
	int rc = parse_args(argc, argv, &a);

	if (rc) {
		free(a.ckpts);
		return rc < 0 ? 0 : rc;
	}
	if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) {
		cli_error("the workbench needs a terminal (use `smelt merge` in scripts)");
		free(a.ckpts);
		return 2;
	}
	app = calloc(1, sizeof(*app));
	if (!app || ui_queue_init(&app->queue)) {
		cli_error("out of memory");
		free(app);
		free(a.ckpts);
		return 1;
	}
	smelt_err_clear(&err);
	theme_name = a.theme ? a.theme : getenv("SMELT_THEME");
	if (theme_name && *theme_name) {
		if (theme_load(&app->theme, theme_name, &err)) {
			cli_error("%s", err.msg);
			rc = 2;
			goto out;
		}
	} else {
		theme_default(&app->theme);
	}
	app_init(app, &a);
	if (a.recipe && settings_load_recipe(app, a.recipe, msg, sizeof(msg))) {
		cli_error("%s: %s", a.recipe, msg);
		work_shutdown(app);
		rc = 1;
		goto out;
	}
	for (int i = 0; i < a.n_ckpts && i <= UI_MAX_MODELS; i++)
		ckpt_slot_set(app, i, a.ckpts[i]);
	if (a.n_ckpts)
		app_models_changed(app);
	if (a.recipe || a.n_ckpts > 1)
		app->view = UI_VIEW_HEAT;
	view_ckpt_refresh_dir(app);
	work_scan_cache(app);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_term;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	{
		const char *nc = getenv("NO_COLOR");

		if (ui_term_open(nc && *nc)) {
			cli_error("cannot initialise the terminal (TERM=%s)",
			          getenv("TERM") ? getenv("TERM") : "");
			work_shutdown(app);
			rc = 1;
			goto out;
		}
	}
	app->status[0] = '\0';
	app->term_flag = &got_term;
	rc = app_run(app);
	ui_term_close();
	if (app->run_state == UI_RUN_DONE)
		printf("smelt: merged into %s\n", app->run_result);
out:
	app_release(app);
	free(app);
	free(a.ckpts);
	return rc;
}

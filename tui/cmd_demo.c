/* cmd_demo.c: `smelt demo [DIR]` writes the synthetic demo family. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "smelt/demo.h"

static void demo_usage(FILE *out)
{
	fprintf(out, "usage: smelt demo [DIR]\n\n"
		     "Write three small synthetic Llama-shaped checkpoints (base, chat,\n"
		     "multilingual) under DIR (default ~/.cache/smelt/demo) and print their\n"
		     "folders. The weights are deterministic and not a trained model.\n");
}

int cmd_demo(int argc, char **argv)
{
	const char *dir = NULL;
	char def[4096];
	struct smelt_err err = {0};

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			demo_usage(stdout);
			return 0;
		}
		if (argv[i][0] == '-' && argv[i][1]) {
			cli_error("demo: unknown option '%s'", argv[i]);
			demo_usage(stderr);
			return 2;
		}
		if (dir) {
			cli_error("demo: only one folder may be given");
			demo_usage(stderr);
			return 2;
		}
		dir = argv[i];
	}
	if (!dir) {
		const char *home = getenv("HOME");

		if (!home || !*home) {
			cli_error("demo: HOME is not set; give a folder: smelt demo DIR");
			return 2;
		}
		snprintf(def, sizeof(def), "%s/.cache/smelt/demo", home);
		dir = def;
	}
	if (smelt_demo_write(dir, &err) != 0) {
		cli_error("%s", err.msg);
		return 1;
	}
	for (int m = 0; m < SMELT_DEMO_MODELS; m++)
		printf("%s/%s\n", dir, smelt_demo_models[m]);
	return 0;
}

/* main.c: `smelt` dispatches to a subcommand, or opens the workbench. */
#include <locale.h>
#include <malloc.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *summary;
};

static const struct command commands[] = {
	{"tui", cmd_tui, "open the workbench (default with no arguments)"},
	{"merge", cmd_merge, "run a merge recipe (JSON or mergekit YAML)"},
	{"inspect", cmd_inspect, "list a checkpoint's tensors"},
	{"diverge", cmd_diverge, "per-layer magnitude/direction divergence from a base"},
	{"methods", cmd_methods, "list merge methods and their parameters"},
	{"pull", cmd_pull, "download a model from the Hugging Face Hub into the cache"},
	{"demo", cmd_demo, "write the built-in synthetic demo family"},
};

void cli_error(const char *fmt, ...)
{
	va_list ap;

	fputs("smelt: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void usage(FILE *out)
{
	fprintf(out, "usage: smelt [COMMAND] [ARGS...]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(out, "  %-9s %s\n", commands[i].name, commands[i].summary);
	fprintf(out, "\nRun `smelt COMMAND --help` for a command's options.\n");
}

int main(int argc, char **argv)
{
	/* UTF-8 for ncursesw; numbers stay in the C locale (cJSON, printf). */
	setlocale(LC_CTYPE, "");
	/* A file-size limit must surface as a write error naming the file, not
	 * kill the process half-way through a merge. */
	signal(SIGXFSZ, SIG_IGN);
	/* The engine allocates its per-tensor scratch (histograms, column
	 * sums, block buffers: up to a few MB) anew for each tensor. Served
	 * from fresh mmap'd pages, as glibc does above 128 KiB, every tensor
	 * paid page faults, zeroing and TLB shootdowns on unmap; kept in the
	 * heap they are reused. Memory still goes back to the system at exit
	 * and peak use is unchanged. */
	mallopt(M_MMAP_THRESHOLD, 32 << 20);
	mallopt(M_TRIM_THRESHOLD, 64 << 20);

	if (argc < 2 || argv[1][0] == '-') {
		if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
			usage(stdout);
			return 0;
		}
		return cmd_tui(argc, argv);
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(argv[1], commands[i].name) == 0)
			return commands[i].run(argc - 1, argv + 1);
	if (strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return 0;
	}
	cli_error("unknown command '%s'", argv[1]);
	usage(stderr);
	return 2;
}

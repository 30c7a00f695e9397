/*
 * cmd_pull.c: `smelt pull REPO[@REV]` downloads a model into the Hugging
 * Face cache. Progress goes to stderr (one refreshed line on a terminal,
 * a line every few seconds and per finished file otherwise); the last
 * stdout line is the snapshot folder, so scripts can use $(smelt pull ...).
 */
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "smelt/hub.h"

#define MAX_GLOBS 64

static atomic_bool cancel_requested;

static void on_sigint(int sig)
{
	(void)sig;
	atomic_store(&cancel_requested, true);
}

struct view {
	bool tty;
	bool quiet;
	double last_line; /* when the last non-tty line was printed */
	int files_done;   /* last reported count, to print finished files */
	char last_file[SMELT_HUB_PATH_MAX];
	int line_len;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void human(uint64_t b, char *out, size_t n)
{
	static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	double v = (double)b;
	int u = 0;

	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	snprintf(out, n, u ? "%.1f %s" : "%.0f %s", v, units[u]);
}

static void eta(uint64_t left, uint64_t rate, char *out, size_t n)
{
	if (rate == 0) {
		snprintf(out, n, "--:--");
		return;
	}
	uint64_t s = left / rate;
	if (s >= 3600)
		snprintf(out, n, "%" PRIu64 ":%02" PRIu64 ":%02" PRIu64, s / 3600, s / 60 % 60,
		         s % 60);
	else
		snprintf(out, n, "%02" PRIu64 ":%02" PRIu64, s / 60, s % 60);
}

/* "file 12.0/64.0 MiB ETA 00:04 | total 40.0/200.0 MiB 3 of 7 files, 95.2 MiB/s ETA 00:02" */
static void status_line(struct smelt_hub_progress *p, char *out, size_t n)
{
	char cur[SMELT_HUB_PATH_MAX], fd[32], ft[32], td[32], tt[32], r[32], fe[32], te[32];
	uint64_t fdone = atomic_load(&p->file_bytes_done), ftot = atomic_load(&p->file_bytes_total);
	uint64_t tdone = atomic_load(&p->bytes_done), ttot = atomic_load(&p->bytes_total);
	uint64_t rate = atomic_load(&p->rate);

	smelt_hub_progress_current(p, cur, sizeof(cur));
	human(fdone, fd, sizeof(fd));
	human(ftot, ft, sizeof(ft));
	human(tdone, td, sizeof(td));
	human(ttot, tt, sizeof(tt));
	human(rate, r, sizeof(r));
	eta(ftot > fdone ? ftot - fdone : 0, rate, fe, sizeof(fe));
	eta(ttot > tdone ? ttot - tdone : 0, rate, te, sizeof(te));
	snprintf(out, n, "%s%s %s/%s ETA %s | total %s/%s, %d/%d files, %s/s ETA %s%s",
	         atomic_load(&p->phase) == SMELT_HUB_VERIFYING ? "verifying " : "", cur, fd, ft, fe,
	         td, tt, atomic_load(&p->files_done), atomic_load(&p->files_total), r, te,
	         atomic_load(&p->connections) > 1 ? " (parallel)" : "");
}

static void on_progress(void *ctx, struct smelt_hub_progress *p)
{
	struct view *v = ctx;
	char line[SMELT_HUB_PATH_MAX + 256];
	int done = atomic_load(&p->files_done);

	if (v->quiet || atomic_load(&p->phase) == SMELT_HUB_DONE)
		return;
	if (done != v->files_done && v->last_file[0]) {
		char sz[32];
		human(atomic_load(&p->file_bytes_total), sz, sizeof(sz));
		if (v->tty)
			fprintf(stderr, "\r%*s\r", v->line_len, "");
		fprintf(stderr, "  done %s (%s)\n", v->last_file, sz);
		v->line_len = 0;
		v->files_done = done;
		v->last_file[0] = '\0';
		return; /* the next file's line comes with its first progress */
	}
	v->files_done = done;
	smelt_hub_progress_current(p, v->last_file, sizeof(v->last_file));
	if (!v->last_file[0])
		return;
	status_line(p, line, sizeof(line));
	if (v->tty) {
		int len = (int)strlen(line);
		fprintf(stderr, "\r%s%*s", line, v->line_len > len ? v->line_len - len : 0, "");
		v->line_len = len;
	} else if (now_s() - v->last_line >= 2.0) {
		fprintf(stderr, "  %s\n", line);
		v->last_line = now_s();
	}
	fflush(stderr);
}

static void on_message(void *ctx, const char *msg)
{
	(void)ctx;
	cli_error("%s", msg);
}

static void usage(FILE *out)
{
	fprintf(out,
	        "usage: smelt pull REPO[@REVISION] [options]\n"
	        "\n"
	        "Download a model from the Hugging Face Hub into the shared cache\n"
	        "(huggingface_hub's layout) and print the snapshot folder.\n"
	        "\n"
	        "  --include GLOB     download files matching GLOB (repeatable); replaces the\n"
	        "                     default set (safetensors, index, config, tokenizer and\n"
	        "                     generation files)\n"
	        "  --exclude GLOB     skip files matching GLOB (repeatable)\n"
	        "  --revision REV     branch, tag, refs/pr/N or commit (same as @REV)\n"
	        "  --cache-dir DIR    cache root (default: HF_HUB_CACHE, HF_HOME/hub or\n"
	        "                     ~/.cache/huggingface/hub)\n"
	        "  --connections N    parallel ranged requests per large file (default %d)\n"
	        "  --offline          use the cache only (also HF_HUB_OFFLINE=1)\n"
	        "  --quiet            no progress output\n"
	        "\n"
	        "Environment: HF_ENDPOINT, HF_TOKEN (or the token file), HF_HOME,\n"
	        "HF_HUB_CACHE, HF_HUB_OFFLINE. An interrupted pull resumes where it stopped.\n",
	        SMELT_HUB_DEFAULT_CONNECTIONS);
}

int cmd_pull(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"include", required_argument, NULL, 'i'},
	    {"exclude", required_argument, NULL, 'x'},
	    {"revision", required_argument, NULL, 'r'},
	    {"cache-dir", required_argument, NULL, 'c'},
	    {"connections", required_argument, NULL, 'n'},
	    {"offline", no_argument, NULL, 'o'},
	    {"quiet", no_argument, NULL, 'q'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *include[MAX_GLOBS], *exclude[MAX_GLOBS];
	struct smelt_hub_pull_opts o = {0};
	struct smelt_hub_progress progress;
	struct view view = {0};
	struct smelt_err err = {0};
	char snapshot[SMELT_HUB_PATH_MAX];
	struct sigaction sa = {0}, old_int, old_term;
	int c, rc;

	optind = 1;
	while ((c = getopt_long(argc, argv, "hq", longopts, NULL)) != -1) {
		switch (c) {
		case 'i':
		case 'x':
			if ((c == 'i' ? o.n_include : o.n_exclude) >= MAX_GLOBS) {
				cli_error("at most %d --include/--exclude globs", MAX_GLOBS);
				return 2;
			}
			if (c == 'i')
				include[o.n_include++] = optarg;
			else
				exclude[o.n_exclude++] = optarg;
			break;
		case 'r': o.revision = optarg; break;
		case 'c': o.cache_dir = optarg; break;
		case 'n': {
			char *end;
			long v = strtol(optarg, &end, 10);
			if (*end || v < 1 || v > 64) {
				cli_error("--connections must be a number from 1 to 64");
				return 2;
			}
			o.connections = (int)v;
			break;
		}
		case 'o': o.offline = true; break;
		case 'q': view.quiet = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		return 2;
	}
	o.repo = argv[optind];
	o.include = include;
	o.exclude = exclude;
	o.cancel = &cancel_requested;
	o.progress = &progress;
	o.on_progress = on_progress;
	o.on_message = on_message;
	o.ctx = &view;
	view.tty = isatty(STDERR_FILENO);
	view.files_done = -1;

	if (smelt_hub_init(&err)) {
		cli_error("%s", err.msg);
		return 1;
	}
	/* Ctrl-C stops cleanly and keeps what was downloaded; a file-size
	 * limit becomes an error instead of killing the process. */
	sa.sa_handler = on_sigint;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);
	signal(SIGXFSZ, SIG_IGN);

	smelt_hub_progress_init(&progress);
	rc = smelt_hub_pull(&o, snapshot, sizeof(snapshot), &err);
	if (view.tty && view.line_len)
		fprintf(stderr, "\r%*s\r", view.line_len, "");
	if (!rc && !view.quiet) {
		char total[32];
		human(atomic_load(&progress.bytes_done), total, sizeof(total));
		fprintf(stderr, "pulled %s: %d files, %s downloaded\n", o.repo,
		        atomic_load(&progress.files_total), total);
	}
	smelt_hub_progress_destroy(&progress);
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	if (rc == SMELT_ECANCELED) {
		cli_error("pull cancelled; run the same command again to resume");
		return 1;
	}
	if (rc) {
		cli_error("%s", err.msg);
		return 1;
	}
	printf("%s\n", snapshot);
	return 0;
}

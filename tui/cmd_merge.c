/*
 * cmd_merge.c: `smelt merge RECIPE -o OUT`: validate the recipe and the
 * checkpoints up front, then run the merge on a worker thread while the
 * main thread draws progress (a bar on a terminal, plain lines otherwise)
 * and turns Ctrl-C into a clean cancellation.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "smelt/merge.h"

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: smelt merge RECIPE -o OUT [--threads N] [--out-shard-size 5GB]\n"
		   "                   [--dry-run [--by-layer]] [--force] [--strict] [--offline]"
		   " [--fsync] [--quiet]\n\n"
		   "RECIPE is a JSON or mergekit YAML recipe. The merged model is written to\n"
		   "OUT.partial-* and renamed to OUT when complete. --fsync also flushes it\n"
		   "to disk before the rename, so OUT survives a power cut.\n");
}

/* Every diagnostic on its own line, errors first:
 * "smelt: error: recipe.yml: models[1].parameters.weight: ...". */
static void print_diag(const struct smelt_diag *d)
{
	for (int sev = SMELT_DIAG_ERROR; sev >= SMELT_DIAG_WARNING; sev--)
		for (size_t i = 0; i < d->n; i++) {
			const struct smelt_diag_item *it = &d->items[i];
			bool has_path = it->path && it->path[0];

			if (it->severity != sev)
				continue;
			fprintf(stderr, "smelt: %s: %s%s%s%s%s\n",
				sev == SMELT_DIAG_ERROR ? "error" : "warning", d->file ? d->file : "",
				d->file ? ": " : "", has_path ? it->path : "", has_path ? ": " : "",
				it->msg);
		}
}

struct run {
	struct smelt_plan *plan;
	const char *out;
	struct smelt_merge_options opts;
	struct smelt_progress prog;
	struct smelt_err err;
	int rc;
	volatile int done;
	int done_pipe[2]; /* the merge thread writes one byte here when it ends */
};

static void *run_main(void *arg)
{
	struct run *r = arg;

	r->rc = smelt_merge_run(r->plan, r->out, &r->opts, &r->prog, &r->err);
	__atomic_store_n(&r->done, 1, __ATOMIC_RELEASE);
	while (write(r->done_pipe[1], "", 1) < 0 && errno == EINTR)
		;
	return NULL;
}

/* Sleep until the merge thread ends, a signal arrives or ms pass: the
 * progress loop wakes at once when the merge is done instead of finishing
 * out its tick. */
static void wait_tick(struct run *r, int ms)
{
	struct pollfd pfd = {.fd = r->done_pipe[0], .events = POLLIN};

	poll(&pfd, 1, ms);
}

static void format_eta(double s, char *buf, size_t n)
{
	if (s < 0)
		snprintf(buf, n, "--:--");
	else if (s < 3600)
		snprintf(buf, n, "%02d:%02d", (int)s / 60, (int)s % 60);
	else
		snprintf(buf, n, "%dh%02dm", (int)s / 3600, ((int)s % 3600) / 60);
}

static void draw_progress(struct smelt_progress *p, bool tty)
{
	char rd[32], wr[32], rate[32], eta[16], cur[SMELT_PROGRESS_NAME_MAX];
	double f = smelt_progress_fraction(p);
	int width = 28, filled = (int)(f * width + 0.5);

	smelt_format_bytes((double)atomic_load(&p->bytes_read), rd, sizeof(rd));
	smelt_format_bytes((double)atomic_load(&p->bytes_written), wr, sizeof(wr));
	smelt_format_bytes(smelt_progress_rate(p), rate, sizeof(rate));
	format_eta(smelt_progress_eta(p), eta, sizeof(eta));
	smelt_progress_current(p, cur, sizeof(cur));
	if (tty) {
		char bar[64];

		for (int i = 0; i < width; i++)
			bar[i] = i < filled ? '#' : '.';
		bar[width] = '\0';
		fprintf(stderr, "\r\033[K[%s] %5.1f%%  read %s  wrote %s  %s/s  ETA %s  %.40s", bar,
			f * 100, rd, wr, rate, eta, cur);
	} else {
		fprintf(stderr, "smelt: %5.1f%%  %llu/%llu tensors  read %s  wrote %s  %s/s  ETA %s\n",
			f * 100, (unsigned long long)atomic_load(&p->tensors_done),
			(unsigned long long)atomic_load(&p->tensors_total), rd, wr, rate, eta);
	}
	fflush(stderr);
}

static int run_merge(struct smelt_plan *plan, const char *out, const struct smelt_merge_options *o,
		     bool quiet)
{
	struct run *r = calloc(1, sizeof(*r));
	struct sigaction sa = {0};
	sigset_t stop_signals, old_mask;
	bool tty = isatty(STDERR_FILENO);
	uint64_t last_line = 0;
	pthread_t tid;
	int rc;

	if (!r) {
		cli_error("out of memory");
		return 1;
	}
	if (pipe(r->done_pipe) != 0) {
		cli_error("cannot create a pipe: %s", strerror(errno));
		free(r);
		return 1;
	}
	r->plan = plan;
	r->out = out;
	r->opts = *o;
	smelt_progress_init(&r->prog);
	sa.sa_handler = on_signal;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	/* The result is the folder, not the progress: when whoever reads
	 * stderr goes away (`smelt merge ... 2>&1 | head`), progress writes fail
	 * with EPIPE and the merge goes on instead of dying half-written. */
	signal(SIGPIPE, SIG_IGN);
	/* Only this thread takes the stop signals: the merge thread and its
	 * workers inherit them blocked, so no file operation of theirs is ever
	 * interrupted (posix_fallocate, for one, would fail with EINTR). */
	sigemptyset(&stop_signals);
	sigaddset(&stop_signals, SIGINT);
	sigaddset(&stop_signals, SIGTERM);
	sigaddset(&stop_signals, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &stop_signals, &old_mask);
	rc = pthread_create(&tid, NULL, run_main, r);
	pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
	if (rc != 0) {
		cli_error("cannot start the merge thread");
		close(r->done_pipe[0]);
		close(r->done_pipe[1]);
		free(r);
		return 1;
	}
	while (!__atomic_load_n(&r->done, __ATOMIC_ACQUIRE)) {
		uint64_t now = smelt_now_ns();

		wait_tick(r, 100);
		smelt_progress_sample_rss(&r->prog);
		if (interrupted && !smelt_progress_canceled(&r->prog)) {
			smelt_progress_cancel(&r->prog);
			if (!quiet)
				fprintf(stderr, "%ssmelt: cancelling...\n", tty ? "\r\033[K" : "");
		}
		if (quiet)
			continue;
		if (tty)
			draw_progress(&r->prog, true);
		else if (now - last_line > 5000000000ull) {
			draw_progress(&r->prog, false);
			last_line = now;
		}
	}
	pthread_join(tid, NULL);
	close(r->done_pipe[0]);
	close(r->done_pipe[1]);
	if (tty && !quiet)
		fprintf(stderr, "\r\033[K");
	if (r->rc) {
		cli_error("%s", r->err.msg);
		rc = r->rc == SMELT_ECANCELED ? 130 : 1;
	} else {
		char wr[32], rate[32];
		double t = smelt_progress_elapsed(&r->prog);
		double moved = (double)atomic_load(&r->prog.bytes_read) +
			       (double)atomic_load(&r->prog.bytes_written);

		smelt_format_bytes((double)atomic_load(&r->prog.bytes_written), wr, sizeof(wr));
		smelt_format_bytes(t > 0 ? moved / t : 0, rate, sizeof(rate));
		if (!quiet)
			fprintf(stderr,
				"smelt: merged %zu tensors into %s (%s) in %.2f s, %s/s read+write, "
				"peak RssAnon %.1f MB\n",
				plan->n_tensors, out, wr, t, rate,
				(double)atomic_load(&r->prog.peak_rss_anon_kb) / 1024.0);
		rc = 0;
	}
	free(r);
	return rc;
}

int cmd_merge(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"output", required_argument, NULL, 'o'},
		{"threads", required_argument, NULL, 'j'},
		{"out-shard-size", required_argument, NULL, 's'},
		{"dry-run", no_argument, NULL, 'n'},
		{"by-layer", no_argument, NULL, 'L'},
		{"force", no_argument, NULL, 'f'},
		{"strict", no_argument, NULL, 'S'},
		{"offline", no_argument, NULL, 'O'},
		{"fsync", no_argument, NULL, 'Y'},
		{"quiet", no_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct smelt_merge_options o = {0};
	const char *out = NULL;
	bool dry = false, by_layer = false, quiet = false;
	struct smelt_recipe *recipe = NULL;
	struct smelt_plan *plan = NULL;
	struct smelt_diag diag = {0};
	struct smelt_err err;
	int c, rc = 1;

	optind = 1;
	while ((c = getopt_long(argc, argv, "o:j:s:nfqh", longopts, NULL)) != -1) {
		switch (c) {
		case 'o': out = optarg; break;
		case 'j': {
			char *end;
			long n = strtol(optarg, &end, 10);

			if (*end || n < 1 || n > 1024) {
				cli_error("--threads: '%s' is not a thread count (1-1024)", optarg);
				return 2;
			}
			o.threads = (int)n;
			break;
		}
		case 's':
			if (smelt_parse_size(optarg, &o.shard_bytes, &err) != 0) {
				cli_error("--out-shard-size: %s", err.msg);
				return 2;
			}
			break;
		case 'n': dry = true; break;
		case 'L': by_layer = true; break;
		case 'f': o.force = true; break;
		case 'S': o.strict = true; break;
		case 'O': o.offline = true; break;
		case 'Y': o.fsync = true; break;
		case 'q': quiet = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		return 2;
	}
	if (!out && !dry) {
		cli_error("missing -o OUT (the folder to write the merged model to)");
		return 2;
	}
	if (getenv("HF_HUB_OFFLINE") && strchr("1yYtT", getenv("HF_HUB_OFFLINE")[0]))
		o.offline = true;
	if (smelt_recipe_load(argv[optind], &recipe, &diag) != 0 || smelt_diag_errors(&diag)) {
		print_diag(&diag);
		if (!diag.n)
			cli_error("%s: cannot read the recipe", argv[optind]);
		goto out;
	}
	if (smelt_plan_build(recipe, &o, &plan, &diag) != 0) {
		print_diag(&diag);
		goto out;
	}
	if (!quiet)
		print_diag(&diag); /* warnings */
	if (dry) {
		smelt_plan_print(plan, stdout, by_layer);
		rc = 0;
		goto out;
	}
	if (smelt_merge_check_output(plan, out, o.force, &err) != 0) {
		cli_error("%s", err.msg);
		goto out;
	}
	rc = run_merge(plan, out, &o, quiet);
out:
	smelt_plan_free(plan);
	smelt_recipe_free(recipe);
	smelt_diag_release(&diag);
	return rc;
}

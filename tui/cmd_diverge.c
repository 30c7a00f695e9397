/*
 * cmd_diverge.c: `smelt diverge --base BASE MODEL... [--json|--csv]`:
 * per-tensor and per-(layer, kind) magnitude/direction divergence of each
 * model from the base, and the WIDEN weights a merge with the given knobs
 * would give them. The analysis streams each tensor once (engine/stats.c)
 * and caches its per-column statistics, so a second run is instant.
 */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "smelt/stats.h"

enum out_format { OUT_TEXT, OUT_JSON, OUT_CSV };

static struct smelt_stats *volatile running;

static void on_sigint(int sig)
{
	(void)sig;
	if (running)
		smelt_stats_cancel(running);
}

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: smelt diverge --base BASE MODEL... [options]\n"
	        "\n"
	        "Magnitude and direction divergence of each MODEL from BASE, per tensor and per\n"
	        "layer x kind cell, with the WIDEN weights the knobs below would give.\n"
	        "\n"
	        "  --base DIR            the common ancestor (required)\n"
	        "  --json | --csv        machine-readable output (default: a text table)\n"
	        "  --threads N           reader threads (default: all CPUs)\n"
	        "  --threshold T         WIDEN threshold t (alias --above-average-value-ratio), 1\n"
	        "  --calibration S       WIDEN calibration s (alias --score-calibration-value), 1\n"
	        "  --temperature T       softmax temperature (> 0), 1\n"
	        "  --exclude REGEX       tensors keeping the base (omega 0); repeatable\n"
	        "  --no-cache            neither read nor write the statistics cache\n"
	        "  --cache-dir DIR       cache folder (default $XDG_CACHE_HOME/smelt/stats)\n"
	        "  --quiet               no progress on stderr\n");
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static const char *branch_name(enum smelt_stats_branch b)
{
	switch (b) {
	case SMELT_BRANCH_MATRIX: return "matrix";
	case SMELT_BRANCH_MATRIX_T: return "matrix_transposed";
	case SMELT_BRANCH_VECTOR: return "vector";
	case SMELT_BRANCH_SKIPPED: return "skipped";
	}
	return "?";
}

static cJSON *num(double v)
{
	return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull();
}

static cJSON *summary_json(const struct smelt_summary *s)
{
	cJSON *o = cJSON_CreateObject();

	cJSON_AddNumberToObject(o, "n", (double)s->n);
	cJSON_AddNumberToObject(o, "n_nan", (double)s->n_nan);
	cJSON_AddItemToObject(o, "mean", num(s->mean));
	cJSON_AddItemToObject(o, "min", num(s->min));
	cJSON_AddItemToObject(o, "max", num(s->max));
	cJSON_AddItemToObject(o, "p50", num(s->p50));
	cJSON_AddItemToObject(o, "p90", num(s->p90));
	cJSON_AddItemToObject(o, "p99", num(s->p99));
	return o;
}

static cJSON *result_json(const struct smelt_stats_result *r)
{
	cJSON *o = cJSON_CreateObject(), *w = cJSON_CreateObject();

	cJSON_AddBoolToObject(o, "ready", r->ready);
	cJSON_AddNumberToObject(o, "columns", (double)r->n_columns);
	cJSON_AddNumberToObject(o, "params", (double)r->n_params);
	cJSON_AddItemToObject(o, "magnitude", summary_json(&r->mag));
	cJSON_AddItemToObject(
	    o, "direction", r->dir.n || r->dir.n_nan ? summary_json(&r->dir) : cJSON_CreateNull());
	cJSON_AddItemToObject(w, "mean", num(r->w.mean_omega));
	cJSON_AddItemToObject(w, "min", num(r->w.min_omega));
	cJSON_AddItemToObject(w, "max", num(r->w.max_omega));
	cJSON_AddItemToObject(w, "frac_cal_mag", num(r->w.frac_cal_mag));
	cJSON_AddItemToObject(w, "frac_cal_dir", num(r->w.frac_cal_dir));
	cJSON_AddItemToObject(o, "weights", w);
	return o;
}

/* Column-weighted means of the matrix divergences and the element-weighted
 * mean omega over the whole model: the one-line answer per model. */
struct totals {
	double mag, dir, omega;
};

static struct totals model_totals(const struct smelt_stats *s, int m)
{
	double mag = 0, dir = 0, cols = 0, dcols = 0, om = 0, params = 0;
	struct totals t;

	for (size_t i = 0; i < smelt_stats_n_tensors(s); i++) {
		const struct smelt_stats_tensor_info *in = smelt_stats_tensor_info(s, i);
		struct smelt_stats_result r;

		if (!smelt_stats_tensor_result(s, i, m, &r))
			continue;
		om += r.w.mean_omega * (double)r.n_params;
		params += (double)r.n_params;
		if (in->branch == SMELT_BRANCH_VECTOR)
			continue;
		if (r.mag.n) {
			mag += r.mag.mean * (double)r.mag.n;
			cols += (double)r.mag.n;
		}
		if (r.dir.n) {
			dir += r.dir.mean * (double)r.dir.n;
			dcols += (double)r.dir.n;
		}
	}
	t.mag = cols ? mag / cols : NAN;
	t.dir = dcols ? dir / dcols : NAN;
	t.omega = params ? om / params : NAN;
	return t;
}

static int print_json(const struct smelt_stats *s, const char *base, char **models, int n,
                      const char *const *excl, int n_excl, double seconds)
{
	cJSON *root = cJSON_CreateObject(), *a, *w;
	struct smelt_stats_progress p;
	double t, sc, T;
	char *text;
	int L = smelt_stats_n_layers(s);

	smelt_stats_progress(s, &p);
	smelt_stats_knobs(s, &t, &sc, &T);
	cJSON_AddStringToObject(root, "format", "smelt-diverge-v1");
	cJSON_AddStringToObject(root, "base", base);
	a = cJSON_AddArrayToObject(root, "models");
	for (int m = 0; m < n; m++)
		cJSON_AddItemToArray(a, cJSON_CreateString(models[m]));
	w = cJSON_AddObjectToObject(root, "widen");
	cJSON_AddNumberToObject(w, "threshold", t);
	cJSON_AddNumberToObject(w, "calibration", sc);
	cJSON_AddNumberToObject(w, "temperature", T);
	a = cJSON_AddArrayToObject(w, "exclude");
	for (int i = 0; i < n_excl; i++)
		cJSON_AddItemToArray(a, cJSON_CreateString(excl[i]));
	cJSON_AddBoolToObject(root, "from_cache", p.from_cache);
	if (smelt_stats_cache_path(s)[0])
		cJSON_AddStringToObject(root, "cache", smelt_stats_cache_path(s));
	else
		cJSON_AddNullToObject(root, "cache");
	cJSON_AddNumberToObject(root, "seconds", seconds);
	cJSON_AddNumberToObject(root, "bytes_read", (double)p.bytes_read);
	cJSON_AddNumberToObject(root, "layers", L);
	a = cJSON_AddArrayToObject(root, "kinds");
	for (int k = 0; k < SMELT_KIND_COUNT; k++)
		cJSON_AddItemToArray(a, cJSON_CreateString(smelt_kind_name((enum smelt_kind)k)));
	a = cJSON_AddArrayToObject(root, "totals");
	for (int m = 0; m < n; m++) {
		struct totals tt = model_totals(s, m);
		cJSON *o = cJSON_CreateObject();

		cJSON_AddItemToObject(o, "magnitude_mean", num(tt.mag));
		cJSON_AddItemToObject(o, "direction_mean", num(tt.dir));
		cJSON_AddItemToObject(o, "mean_omega", num(tt.omega));
		cJSON_AddItemToArray(a, o);
	}
	a = cJSON_AddArrayToObject(root, "tensors");
	for (size_t i = 0; i < smelt_stats_n_tensors(s); i++) {
		const struct smelt_stats_tensor_info *in = smelt_stats_tensor_info(s, i);
		cJSON *o = cJSON_CreateObject(), *ms;

		cJSON_AddStringToObject(o, "name", in->name);
		cJSON_AddNumberToObject(o, "layer", in->layer);
		cJSON_AddStringToObject(o, "kind", smelt_kind_name(in->kind));
		cJSON_AddStringToObject(o, "branch", branch_name(in->branch));
		cJSON_AddNumberToObject(o, "d", (double)in->d);
		cJSON_AddNumberToObject(o, "k", (double)in->k);
		cJSON_AddBoolToObject(o, "excluded", in->excluded);
		if (in->note)
			cJSON_AddStringToObject(o, "note", in->note);
		else
			cJSON_AddNullToObject(o, "note");
		ms = cJSON_AddArrayToObject(o, "models");
		for (int m = 0; m < n; m++) {
			struct smelt_stats_result r;

			if (smelt_stats_tensor_result(s, i, m, &r))
				cJSON_AddItemToArray(ms, result_json(&r));
			else
				cJSON_AddItemToArray(ms, cJSON_CreateNull());
		}
		cJSON_AddItemToArray(a, o);
	}
	a = cJSON_AddArrayToObject(root, "grid");
	for (int l = -1; l < L; l++)
		for (int k = 0; k < SMELT_KIND_COUNT; k++) {
			struct smelt_stats_result r;
			cJSON *o, *ms;

			if (!smelt_stats_cell(s, 0, l, (enum smelt_kind)k, &r))
				continue;
			o = cJSON_CreateObject();
			cJSON_AddNumberToObject(o, "layer", l);
			cJSON_AddStringToObject(o, "kind", smelt_kind_name((enum smelt_kind)k));
			cJSON_AddNumberToObject(o, "n_tensors", r.n_tensors);
			ms = cJSON_AddArrayToObject(o, "models");
			for (int m = 0; m < n; m++) {
				smelt_stats_cell(s, m, l, (enum smelt_kind)k, &r);
				cJSON_AddItemToArray(ms, result_json(&r));
			}
			cJSON_AddItemToArray(a, o);
		}
	a = cJSON_AddArrayToObject(root, "layer_weights");
	for (int l = -1; l < L; l++) {
		cJSON *o = cJSON_CreateObject(), *ws = cJSON_CreateArray();

		cJSON_AddNumberToObject(o, "layer", l);
		for (int m = 0; m < n; m++)
			cJSON_AddItemToArray(ws, num(smelt_stats_layer_weight(s, m, l)));
		cJSON_AddItemToObject(o, "mean_omega", ws);
		cJSON_AddItemToArray(a, o);
	}
	text = cJSON_Print(root);
	cJSON_Delete(root);
	if (!text) {
		cli_error("out of memory writing JSON");
		return 1;
	}
	fputs(text, stdout);
	fputc('\n', stdout);
	free(text);
	return 0;
}

static void csv_num(double v)
{
	if (isfinite(v))
		printf(",%.9g", v);
	else
		printf(",");
}

static int print_csv(const struct smelt_stats *s, char **models, int n)
{
	printf("tensor,layer,kind,branch,model,columns,mag_mean,mag_max,mag_p50,mag_p90,mag_p99,"
	       "dir_mean,dir_max,dir_p50,dir_p90,dir_p99,dir_nan,omega_mean,omega_min,omega_max,"
	       "frac_cal_mag,frac_cal_dir\n");
	for (size_t i = 0; i < smelt_stats_n_tensors(s); i++) {
		const struct smelt_stats_tensor_info *in = smelt_stats_tensor_info(s, i);

		for (int m = 0; m < n; m++) {
			struct smelt_stats_result r;

			if (!smelt_stats_tensor_result(s, i, m, &r))
				continue;
			/* names never hold commas or quotes in safetensors practice,
			 * but quote anyway */
			printf("\"%s\",%d,%s,%s,\"%s\",%llu", in->name, in->layer,
			       smelt_kind_name(in->kind), branch_name(in->branch), models[m],
			       (unsigned long long)r.n_columns);
			csv_num(r.mag.mean);
			csv_num(r.mag.max);
			csv_num(r.mag.p50);
			csv_num(r.mag.p90);
			csv_num(r.mag.p99);
			csv_num(r.dir.n ? r.dir.mean : NAN);
			csv_num(r.dir.n ? r.dir.max : NAN);
			csv_num(r.dir.n ? r.dir.p50 : NAN);
			csv_num(r.dir.n ? r.dir.p90 : NAN);
			csv_num(r.dir.n ? r.dir.p99 : NAN);
			printf(",%llu", (unsigned long long)r.dir.n_nan);
			csv_num(r.w.mean_omega);
			csv_num(r.w.min_omega);
			csv_num(r.w.max_omega);
			csv_num(r.w.frac_cal_mag);
			csv_num(r.w.frac_cal_dir);
			putchar('\n');
		}
	}
	return 0;
}

static int print_text(const struct smelt_stats *s, char **models, int n, double seconds)
{
	struct smelt_stats_progress p;
	double t, sc, T;
	int L = smelt_stats_n_layers(s);

	smelt_stats_progress(s, &p);
	smelt_stats_knobs(s, &t, &sc, &T);
	printf("divergence from the base (%zu tensors, %.2f s%s); WIDEN t=%g s=%g T=%g\n",
	       p.tensors_done, seconds, p.from_cache ? ", from cache" : "", t, sc, T);
	for (int m = 0; m < n; m++) {
		struct totals tt = model_totals(s, m);

		printf(
		    "\nmodel %d: %s\n  overall: magnitude %.6g  direction %.6g  mean omega %.4f\n",
		    m + 1, models[m], tt.mag, tt.dir, tt.omega);
		printf("  %-6s %-10s %12s %12s %12s %12s %8s %6s %6s\n", "layer", "kind",
		       "mag mean", "mag p90", "dir mean", "dir p90", "omega", "cal m", "cal d");
		for (int l = -1; l < L; l++)
			for (int k = 0; k < SMELT_KIND_COUNT; k++) {
				struct smelt_stats_result r;
				char lb[16];

				if (!smelt_stats_cell(s, m, l, (enum smelt_kind)k, &r))
					continue;
				snprintf(lb, sizeof(lb), l < 0 ? "-" : "%d", l);
				printf("  %-6s %-10s %12.6g %12.6g", lb,
				       smelt_kind_name((enum smelt_kind)k), r.mag.mean, r.mag.p90);
				if (r.dir.n)
					printf(" %12.6g %12.6g", r.dir.mean, r.dir.p90);
				else
					printf(" %12s %12s", "-", "-");
				printf(" %8.4f %6.3f %6.3f\n", r.w.mean_omega, r.w.frac_cal_mag,
				       r.w.frac_cal_dir);
			}
	}
	for (size_t i = 0; i < smelt_stats_n_tensors(s); i++) {
		const struct smelt_stats_tensor_info *in = smelt_stats_tensor_info(s, i);

		if (in->note)
			printf("note: %s: %s\n", in->name, in->note);
	}
	return 0;
}

static void show_progress(const struct smelt_stats_progress *p)
{
	double pct = p->bytes_total ? 100.0 * (double)p->bytes_read / (double)p->bytes_total : 0;

	fprintf(stderr, "\r\033[K%5.1f%%  %zu/%zu tensors  %.60s", pct, p->tensors_done,
	        p->tensors_total, p->current);
	fflush(stderr);
}

struct args {
	const char *base;
	char **models;
	int n_models;
	enum out_format fmt;
	struct smelt_stats_opts opts;
	const char **excl;
	int n_excl;
	bool quiet;
};

static int parse_double(const char *opt, const char *v, double *out)
{
	char *end;

	*out = strtod(v, &end);
	if (end == v || *end) {
		cli_error("diverge: %s: '%s' is not a number", opt, v);
		return -1;
	}
	return 0;
}

static int parse_args(int argc, char **argv, struct args *a)
{
	static const struct option lo[] = {
	    {"base", required_argument, NULL, 'b'},
	    {"json", no_argument, NULL, 'j'},
	    {"csv", no_argument, NULL, 'c'},
	    {"threads", required_argument, NULL, 't'},
	    {"threshold", required_argument, NULL, 'T'},
	    {"above-average-value-ratio", required_argument, NULL, 'T'},
	    {"calibration", required_argument, NULL, 'S'},
	    {"score-calibration-value", required_argument, NULL, 'S'},
	    {"temperature", required_argument, NULL, 'P'},
	    {"exclude", required_argument, NULL, 'x'},
	    {"no-cache", no_argument, NULL, 'n'},
	    {"cache-dir", required_argument, NULL, 'd'},
	    {"quiet", no_argument, NULL, 'q'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int c;

	smelt_stats_opts_default(&a->opts);
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "hq", lo, NULL)) != -1) {
		switch (c) {
		case 'b': a->base = optarg; break;
		case 'j': a->fmt = OUT_JSON; break;
		case 'c': a->fmt = OUT_CSV; break;
		case 't': {
			char *end;
			long v = strtol(optarg, &end, 10);

			if (end == optarg || *end || v < 0 || v > 4096) {
				cli_error("diverge: --threads: '%s' is not a thread count", optarg);
				return 2;
			}
			a->opts.threads = (int)v;
			break;
		}
		case 'T':
			if (parse_double("--threshold", optarg, &a->opts.threshold))
				return 2;
			break;
		case 'S':
			if (parse_double("--calibration", optarg, &a->opts.calibration))
				return 2;
			break;
		case 'P':
			if (parse_double("--temperature", optarg, &a->opts.temperature))
				return 2;
			break;
		case 'x': a->excl[a->n_excl++] = optarg; break;
		case 'n': a->opts.no_cache = true; break;
		case 'd': a->opts.cache_dir = optarg; break;
		case 'q': a->quiet = true; break;
		case 'h': usage(stdout); return -1;
		default:
			cli_error("diverge: unknown or incomplete option '%s'", argv[optind - 1]);
			usage(stderr);
			return 2;
		}
	}
	a->models = argv + optind;
	a->n_models = argc - optind;
	if (!a->base || a->n_models < 1) {
		cli_error("diverge: need --base BASE and at least one MODEL");
		usage(stderr);
		return 2;
	}
	a->opts.exclude = a->excl;
	a->opts.n_exclude = (size_t)a->n_excl;
	return 0;
}

static int run(struct args *a)
{
	struct smelt_ckpt base = {0}, *ck = calloc((size_t)a->n_models, sizeof(*ck));
	const struct smelt_ckpt **mp = calloc((size_t)a->n_models, sizeof(*mp));
	struct smelt_stats *s = NULL;
	struct smelt_err err;
	int opened = 0, rc = 1, erc;
	bool base_open = false;
	double t0;
	bool progress = !a->quiet && isatty(STDERR_FILENO);

	if (!ck || !mp) {
		cli_error("out of memory");
		goto out;
	}
	if (smelt_ckpt_open(&base, a->base, &err)) {
		cli_error("%s", err.msg);
		goto out;
	}
	base_open = true;
	for (; opened < a->n_models; opened++) {
		if (smelt_ckpt_open(&ck[opened], a->models[opened], &err)) {
			cli_error("%s", err.msg);
			goto out;
		}
		mp[opened] = &ck[opened];
	}
	if (smelt_stats_open(&s, &base, mp, a->n_models, &a->opts, &err)) {
		cli_error("%s", err.msg);
		goto out;
	}
	t0 = now_s();
	running = s;
	signal(SIGINT, on_sigint);
	if (smelt_stats_start(s, &err)) {
		cli_error("%s", err.msg);
		goto out;
	}
	/* Look every 2 ms so the command returns as soon as the pass ends;
	 * redraw the progress line every 50 ms. */
	for (unsigned tick = 0;; tick++) {
		struct smelt_stats_progress p;

		smelt_stats_progress(s, &p);
		if (p.state != SMELT_STATS_RUNNING && p.state != SMELT_STATS_IDLE)
			break;
		if (progress && tick % 25 == 0)
			show_progress(&p);
		usleep(2000);
	}
	erc = smelt_stats_wait(s, &err);
	signal(SIGINT, SIG_DFL);
	running = NULL;
	if (progress)
		fprintf(stderr, "\r\033[K");
	if (erc) {
		cli_error("%s", err.msg);
		rc = erc == SMELT_ECANCELED ? 130 : 1;
		goto out;
	}
	switch (a->fmt) {
	case OUT_JSON:
		rc = print_json(s, a->base, a->models, a->n_models, a->excl, a->n_excl,
		                now_s() - t0);
		break;
	case OUT_CSV: rc = print_csv(s, a->models, a->n_models); break;
	case OUT_TEXT: rc = print_text(s, a->models, a->n_models, now_s() - t0); break;
	}
out:
	smelt_stats_free(s);
	for (int i = 0; i < opened; i++)
		smelt_ckpt_close(&ck[i]);
	if (base_open)
		smelt_ckpt_close(&base);
	free(ck);
	free(mp);
	return rc;
}

int cmd_diverge(int argc, char **argv)
{
	struct args a = {0};
	int rc;

	a.excl = calloc((size_t)argc + 1, sizeof(*a.excl));
	if (!a.excl) {
		cli_error("out of memory");
		return 1;
	}
	rc = parse_args(argc, argv, &a);
	if (rc == 0)
		rc = run(&a);
	else if (rc < 0)
		rc = 0;
	free(a.excl);
	return rc;
}

/* ui_work.c: worker threads for opening, scanning, statistics, validation,
 * merging and downloading; each reports through the UI queue. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ui_recipe.h"
#include "ui_work.h"

/* Detached short workers still running; shutdown waits for them. */
static atomic_int detached_alive;
static atomic_bool stats_wake_pending;

/* Start a thread with every signal blocked, so signals (SIGWINCH, SIGINT)
 * are delivered to the UI thread only. */
static int spawn(pthread_t *th, void *(*fn)(void *), void *arg, bool detached)
{
	sigset_t all, old;
	pthread_t local;
	int rc;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(th ? th : &local, NULL, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc == 0 && detached) {
		atomic_fetch_add(&detached_alive, 1);
		pthread_detach(th ? *th : local);
	}
	return rc;
}

/* Heavy workers run at a lower priority (Linux applies nice per thread and
 * threads they create inherit it), so on a busy machine the UI thread still
 * gets the CPU at once when a key arrives. */
static void lower_priority(void)
{
	/* A failure is not fatal: the UI is merely less snappy under load. */
	(void)setpriority(PRIO_PROCESS, (id_t)gettid(), 10);
}

/* ---- opening checkpoints ---- */

struct open_job {
	struct ui_queue *q;
	int id;
	char ref[UI_PATH_MAX];
};

struct open_result {
	int id, rc;
	char path[UI_PATH_MAX];
	char err[512];
	struct smelt_ckpt *ckpt;
};

static int resolve_ref(const char *ref, char *path, size_t n, struct smelt_err *err)
{
	char *expanded = smelt_model_ref_expand(ref);
	struct smelt_hub_ref hr;
	struct stat sb;
	int rc;

	if (!expanded)
		return smelt_fail(err, SMELT_ENOMEM, "out of memory");
	if (stat(expanded, &sb) == 0) {
		snprintf(path, n, "%s", expanded);
		free(expanded);
		return 0;
	}
	free(expanded);
	if (ref[0] == '/' || ref[0] == '.' || ref[0] == '~')
		return smelt_fail(err, SMELT_ENOTFOUND, "%s: no such folder", ref);
	rc = smelt_hub_ref_parse(ref, &hr, err);
	if (rc)
		return rc;
	return smelt_hub_cache_lookup(NULL, &hr, path, n, err);
}

static void *open_main(void *arg)
{
	struct open_job *job = arg;
	struct open_result *res = calloc(1, sizeof(*res));
	struct smelt_err err;
	struct ui_msg m;

	smelt_err_clear(&err);
	if (!res)
		goto out;
	res->id = job->id;
	res->rc = resolve_ref(job->ref, res->path, sizeof(res->path), &err);
	if (res->rc == 0) {
		res->ckpt = calloc(1, sizeof(*res->ckpt));
		res->rc = res->ckpt ? smelt_ckpt_open(res->ckpt, res->path, &err) : SMELT_ENOMEM;
		if (res->rc) {
			free(res->ckpt);
			res->ckpt = NULL;
		}
	}
	if (res->rc)
		snprintf(res->err, sizeof(res->err), "%s", err.msg);
	memset(&m, 0, sizeof(m));
	m.type = UI_MSG_CKPT_OPENED;
	m.ptr = res;
	ui_queue_post(job->q, &m);
out:
	free(job);
	atomic_fetch_sub(&detached_alive, 1);
	return NULL;
}

void work_open_slot(struct ui_app *app, int slot)
{
	struct open_job *job = calloc(1, sizeof(*job));
	struct ui_slot *s = &app->slots[slot];

	if (!job)
		return;
	s->id = ++app->next_id;
	s->state = 0;
	job->q = &app->queue;
	job->id = s->id;
	snprintf(job->ref, sizeof(job->ref), "%s", s->ref);
	if (spawn(NULL, open_main, job, true)) {
		free(job);
		s->state = -1;
		snprintf(s->error, sizeof(s->error), "cannot start a thread");
	}
}

void work_drop_opened(void *result)
{
	struct open_result *res = result;

	if (res->ckpt) {
		smelt_ckpt_close(res->ckpt);
		free(res->ckpt);
	}
	free(res);
}

void work_on_opened(struct ui_app *app, struct ui_msg *m)
{
	struct open_result *res = m->ptr;
	struct ui_slot *s = NULL;

	/* Find the slot by request id: removing a model shifts the others. */
	for (int i = 0; i <= UI_MAX_MODELS; i++)
		if (app->slots[i].used && app->slots[i].id == res->id)
			s = &app->slots[i];
	if (!s) {
		/* The user changed the slot meanwhile: drop the stale answer. */
		work_drop_opened(res);
		return;
	}
	if (res->rc == 0) {
		s->state = 1;
		s->ckpt = res->ckpt;
		snprintf(s->path, sizeof(s->path), "%s", res->path);
		s->error[0] = '\0';
	} else {
		s->state = -1;
		snprintf(s->error, sizeof(s->error), "%s", res->err);
		app_status(app, true, "%s", res->err);
	}
	free(res);
	ckpt_recompute_compat(app);
	app_models_changed(app);
}

/* ---- Hugging Face cache ---- */

static void *scan_main(void *arg)
{
	struct ui_queue *q = arg;
	struct smelt_hub_cache_list *list = calloc(1, sizeof(*list));
	struct smelt_err err;
	int rc;

	smelt_err_clear(&err);
	rc = list ? smelt_hub_cache_scan(NULL, list, &err) : SMELT_ENOMEM;
	if (rc) {
		free(list);
		ui_queue_postf(q, UI_MSG_CACHE_SCANNED, rc, 0, NULL, "%s", err.msg);
	} else {
		ui_queue_postf(q, UI_MSG_CACHE_SCANNED, 0, 0, list, "%s", "");
	}
	atomic_fetch_sub(&detached_alive, 1);
	return NULL;
}

void work_scan_cache(struct ui_app *app)
{
	if (app->cache_scanning)
		return;
	app->cache_scanning = true;
	if (spawn(NULL, scan_main, &app->queue, true))
		app->cache_scanning = false;
}

void work_on_cache(struct ui_app *app, struct ui_msg *m)
{
	app->cache_scanning = false;
	app->cache_scanned = true;
	if (m->ptr) {
		smelt_hub_cache_list_free(&app->cache);
		app->cache = *(struct smelt_hub_cache_list *)m->ptr;
		free(m->ptr);
		app->cache_error[0] = '\0';
	} else {
		snprintf(app->cache_error, sizeof(app->cache_error), "%s", m->text);
	}
	if (app->cache_cur >= (int)app->cache.n)
		app->cache_cur = app->cache.n ? (int)app->cache.n - 1 : 0;
}

/* ---- downloads ---- */

struct pull_job {
	struct ui_app *app;
	char repo[256];
};

static void *pull_main(void *arg)
{
	struct pull_job *job = arg;
	struct smelt_hub_pull_opts o;
	char snap[UI_PATH_MAX];
	struct smelt_err err;
	int rc;

	lower_priority();
	memset(&o, 0, sizeof(o));
	smelt_err_clear(&err);
	o.repo = job->repo;
	o.cancel = &job->app->hub_cancel;
	o.progress = &job->app->hub_prog;
	rc = smelt_hub_pull(&o, snap, sizeof(snap), &err);
	ui_queue_postf(&job->app->queue, UI_MSG_HUB_DONE, rc, 0, NULL, "%s", rc ? err.msg : snap);
	free(job);
	return NULL;
}

void work_pull(struct ui_app *app, const char *repo)
{
	struct pull_job *job;

	if (app->hub_running) {
		app_status(app, true, "a download is already running");
		return;
	}
	job = calloc(1, sizeof(*job));
	if (!job)
		return;
	job->app = app;
	snprintf(job->repo, sizeof(job->repo), "%s", repo);
	snprintf(app->hub_repo, sizeof(app->hub_repo), "%s", repo);
	atomic_store(&app->hub_cancel, false);
	smelt_hub_progress_init(&app->hub_prog);
	if (spawn(&app->hub_thread, pull_main, job, false)) {
		free(job);
		smelt_hub_progress_destroy(&app->hub_prog);
		return;
	}
	app->hub_running = true;
	app_status(app, false, "downloading %s", repo);
}

void work_on_pulled(struct ui_app *app, struct ui_msg *m)
{
	pthread_join(app->hub_thread, NULL);
	app->hub_running = false;
	smelt_hub_progress_destroy(&app->hub_prog);
	if (m->a) {
		app_status(app, true, "download of %s failed: %s", app->hub_repo, m->text);
		return;
	}
	app_status(app, false, "downloaded %s", app->hub_repo);
	work_scan_cache(app);
}

/* ---- statistics ---- */

static char *stats_exclude[32];
static size_t stats_n_exclude;

static void stats_on_tensor(void *ctx, size_t tensor_index)
{
	struct ui_queue *q = ctx;

	(void)tensor_index;
	/* One wake-up per batch: the UI reads every new cell when it draws. */
	if (!atomic_exchange(&stats_wake_pending, true))
		ui_queue_postf(q, UI_MSG_STATS_CELL, 0, 0, NULL, "%s", "");
}

static void free_excludes(void)
{
	for (size_t i = 0; i < stats_n_exclude; i++)
		free(stats_exclude[i]);
	stats_n_exclude = 0;
}

void work_stats_stop(struct ui_app *app)
{
	if (app->rescore_running) {
		pthread_join(app->rescore_thread, NULL);
		app->rescore_running = false;
		app->rescore_pending = false;
	}
	if (!app->stats)
		return;
	if (app->stats_running) {
		smelt_stats_cancel(app->stats);
		pthread_join(app->stats_thread, NULL);
		app->stats_running = false;
	}
	smelt_stats_free(app->stats);
	app->stats = NULL;
	free_excludes();
}

void work_exclude_text(const struct ui_settings *s, char *buf, size_t n)
{
	static const char *const names[] = {"exclude", "exclude_param_names_regex", NULL};
	int i = recipe_is_widen(s) ? recipe_param_index(s->method, names) : -1;

	snprintf(buf, n, "%s", i >= 0 && s->global[i].set ? s->global[i].text : "");
}

static void collect_excludes(const struct ui_settings *s)
{
	char tmp[512], *save = NULL;

	free_excludes();
	work_exclude_text(s, tmp, sizeof(tmp));
	for (char *tok = strtok_r(tmp, ",", &save); tok && stats_n_exclude < 32;
	     tok = strtok_r(NULL, ",", &save)) {
		while (*tok == ' ')
			tok++;
		if (*tok)
			stats_exclude[stats_n_exclude++] = strdup(tok);
	}
}

struct stats_job {
	struct smelt_stats *stats;
	struct ui_queue *q;
	int generation;
};

static void *stats_main(void *arg)
{
	struct stats_job *job = arg;
	struct smelt_err err;
	int rc;

	lower_priority();
	smelt_err_clear(&err);
	rc = smelt_stats_run(job->stats, &err);
	ui_queue_postf(job->q, UI_MSG_STATS_DONE, job->generation, rc, NULL, "%s",
	               rc ? err.msg : "");
	free(job);
	return NULL;
}

void work_stats_restart(struct ui_app *app)
{
	const struct smelt_ckpt *models[UI_MAX_MODELS];
	struct smelt_stats_opts o;
	struct stats_job *job;
	struct smelt_err err;
	int n = 0;

	work_stats_stop(app);
	app->stats_error[0] = '\0';
	app->stats_gen++;
	if (!app->slots[0].used || app->slots[0].state != 1)
		return;
	for (int i = 1; i <= UI_MAX_MODELS; i++) {
		if (!app->slots[i].used)
			continue;
		if (app->slots[i].state != 1)
			return; /* wait until every model is open */
		models[n++] = app->slots[i].ckpt;
	}
	if (n == 0)
		return;
	smelt_stats_opts_default(&o);
	smelt_err_clear(&err);
	recipe_widen_knobs(&app->set, &o.threshold, &o.calibration, &o.temperature);
	collect_excludes(&app->set);
	work_exclude_text(&app->set, app->stats_exclude, sizeof(app->stats_exclude));
	o.exclude = (const char *const *)stats_exclude;
	o.n_exclude = stats_n_exclude;
	o.on_tensor = stats_on_tensor;
	o.ctx = &app->queue;
	if (app->set.threads > 0)
		o.threads = app->set.threads;
	if (smelt_stats_open(&app->stats, app->slots[0].ckpt, models, n, &o, &err)) {
		snprintf(app->stats_error, sizeof(app->stats_error), "%s", err.msg);
		app->stats = NULL;
		return;
	}
	job = calloc(1, sizeof(*job));
	if (job) {
		job->stats = app->stats;
		job->q = &app->queue;
		job->generation = app->stats_gen;
	}
	if (!job || spawn(&app->stats_thread, stats_main, job, false)) {
		free(job);
		snprintf(app->stats_error, sizeof(app->stats_error), "cannot start the analysis");
		smelt_stats_free(app->stats);
		app->stats = NULL;
		return;
	}
	app->knob_t = o.threshold;
	app->knob_s = o.calibration;
	app->knob_T = o.temperature;
	app->stats_running = true;
}

void work_stats_poll(struct ui_app *app)
{
	/* New cells are read while drawing; re-arm the wake-up. */
	atomic_store(&stats_wake_pending, false);
	app->dirty = true;
}

void work_on_stats_done(struct ui_app *app, struct ui_msg *m)
{
	if (m->a != app->stats_gen || !app->stats_running)
		return; /* an analysis that was replaced (and joined) meanwhile */
	pthread_join(app->stats_thread, NULL);
	app->stats_running = false;
	if (m->b && m->b != SMELT_ECANCELED)
		snprintf(app->stats_error, sizeof(app->stats_error), "%s", m->text);
}

struct rescore_job {
	struct smelt_stats *stats;
	struct ui_queue *q;
	double t, s, T;
};

static void *rescore_main(void *arg)
{
	struct rescore_job *job = arg;
	struct smelt_err err;
	int rc;

	lower_priority();
	rc = smelt_stats_rescore(job->stats, job->t, job->s, job->T, &err);

	ui_queue_postf(job->q, UI_MSG_RESCORED, rc, 0, NULL, "%s", rc ? err.msg : "");
	free(job);
	return NULL;
}

void work_rescore(struct ui_app *app)
{
	struct rescore_job *job;

	if (!app->stats)
		return;
	if (app->rescore_running) {
		app->rescore_pending = true;
		return;
	}
	job = calloc(1, sizeof(*job));
	if (!job)
		return;
	job->stats = app->stats;
	job->q = &app->queue;
	recipe_widen_knobs(&app->set, &job->t, &job->s, &job->T);
	app->knob_t = job->t;
	app->knob_s = job->s;
	app->knob_T = job->T;
	app->rescore_pending = false;
	if (spawn(&app->rescore_thread, rescore_main, job, false)) {
		free(job);
		return;
	}
	app->rescore_running = true;
}

void work_on_rescored(struct ui_app *app)
{
	if (!app->rescore_running)
		return;
	pthread_join(app->rescore_thread, NULL);
	app->rescore_running = false;
	if (app->rescore_pending)
		work_rescore(app);
}

/* ---- validation ---- */

struct valid_job {
	struct ui_queue *q;
	char *json;
	char out_dir[UI_PATH_MAX];
	struct smelt_merge_options o;
	int generation;
};

void validation_free(struct ui_validation *v)
{
	if (!v)
		return;
	smelt_diag_release(&v->diag);
	free(v);
}

static void *valid_main(void *arg)
{
	struct valid_job *job = arg;
	struct ui_validation *v = calloc(1, sizeof(*v));
	struct smelt_recipe *r = NULL;
	struct smelt_plan *plan = NULL;
	struct smelt_err err;

	if (!v)
		goto out;
	v->generation = job->generation;
	smelt_err_clear(&err);
	if (smelt_recipe_parse(job->json, strlen(job->json), "recipe", &r, &v->diag) || !r)
		goto done;
	if (smelt_recipe_validate(r, job->o.strict, &v->diag))
		goto done;
	if (smelt_plan_build(r, &job->o, &plan, &v->diag) || !plan)
		goto done;
	v->ok = true;
	v->bytes_read = plan->bytes_read;
	v->bytes_written = plan->bytes_written;
	v->peak_memory = plan->peak_memory;
	v->n_tensors = plan->n_tensors;
	v->n_shards = plan->n_shards;
	if (!job->out_dir[0])
		snprintf(v->out_problem, sizeof(v->out_problem), "no output folder set");
	else if (smelt_merge_check_output(plan, job->out_dir, job->o.force, &err))
		snprintf(v->out_problem, sizeof(v->out_problem), "%s", err.msg);
done:
	smelt_plan_free(plan);
	smelt_recipe_free(r);
	ui_queue_postf(job->q, UI_MSG_VALIDATED, job->generation, 0, v, "%s", "");
out:
	free(job->json);
	free(job);
	return NULL;
}

static int merge_options(const struct ui_app *app, struct smelt_merge_options *o,
                         struct smelt_err *err)
{
	memset(o, 0, sizeof(*o));
	o->threads = app->set.threads;
	o->force = app->set.force;
	o->offline = true;
	if (app->set.shard[0])
		return smelt_parse_size(app->set.shard, &o->shard_bytes, err);
	return 0;
}

void work_validate(struct ui_app *app)
{
	struct valid_job *job;
	struct smelt_err err;

	if (app->validating)
		return; /* the finished run sees a newer generation and goes again */
	job = calloc(1, sizeof(*job));
	if (!job)
		return;
	job->q = &app->queue;
	job->generation = app->valid_gen;
	job->json = recipe_build_json(app);
	snprintf(job->out_dir, sizeof(job->out_dir), "%s", app->set.out_dir);
	smelt_err_clear(&err);
	if (!job->json || merge_options(app, &job->o, &err)) {
		struct ui_validation *v = calloc(1, sizeof(*v));

		if (v) {
			v->generation = app->valid_gen;
			smelt_diag_add(&v->diag, SMELT_DIAG_ERROR, "shard", "%s",
			               job->json ? err.msg : "choose a method first");
			validation_free(app->valid);
			app->valid = v;
		}
		free(job->json);
		free(job);
		return;
	}
	if (spawn(&app->valid_thread, valid_main, job, false)) {
		free(job->json);
		free(job);
		return;
	}
	app->validating = true;
}

void work_on_validated(struct ui_app *app, struct ui_msg *m)
{
	struct ui_validation *v = m->ptr;

	pthread_join(app->valid_thread, NULL);
	app->validating = false;
	if (v) {
		validation_free(app->valid);
		app->valid = v;
	}
	if (!v || v->generation != app->valid_gen) {
		work_validate(app);
		return;
	}
	if (app->run_after_validate) {
		app->run_after_validate = false;
		app_request_run(app);
	}
}

/* ---- the merge ---- */

struct merge_job {
	struct ui_app *app;
	char *json;
	char out_dir[UI_PATH_MAX];
	struct smelt_merge_options o;
};

static void *merge_main(void *arg)
{
	struct merge_job *job = arg;
	struct smelt_progress *prog = job->app->prog;
	struct smelt_recipe *r = NULL;
	struct smelt_plan *plan = NULL;
	struct smelt_diag diag = {0};
	struct smelt_err err;
	char *text;
	int rc;

	lower_priority();
	smelt_err_clear(&err);
	atomic_store(&prog->phase, SMELT_PHASE_PLANNING);
	rc = smelt_recipe_parse(job->json, strlen(job->json), "recipe", &r, &diag);
	if (rc == 0 && r)
		rc = smelt_recipe_validate(r, false, &diag);
	if (rc == 0)
		rc = smelt_plan_build(r, &job->o, &plan, &diag);
	if (rc) {
		text = smelt_diag_format(&diag);
		smelt_fail(&err, rc ? rc : SMELT_EINVAL, "%s", text ? text : "invalid recipe");
		free(text);
		atomic_store(&prog->phase, SMELT_PHASE_FAILED);
	} else {
		rc = smelt_merge_run(plan, job->out_dir, &job->o, prog, &err);
	}
	ui_queue_postf(&job->app->queue, UI_MSG_MERGE_DONE, rc, 0, NULL, "%s",
	               rc ? err.msg : job->out_dir);
	smelt_plan_free(plan);
	smelt_recipe_free(r);
	smelt_diag_release(&diag);
	free(job->json);
	free(job);
	return NULL;
}

int work_merge_start(struct ui_app *app)
{
	struct merge_job *job;
	struct smelt_err err;

	if (app->run_state == UI_RUN_RUNNING)
		return -1;
	job = calloc(1, sizeof(*job));
	if (!job)
		return -1;
	smelt_err_clear(&err);
	job->app = app;
	job->json = recipe_build_json(app);
	snprintf(job->out_dir, sizeof(job->out_dir), "%s", app->set.out_dir);
	if (!job->json || merge_options(app, &job->o, &err)) {
		free(job->json);
		free(job);
		return -1;
	}
	if (!app->prog)
		app->prog = malloc(sizeof(*app->prog));
	if (!app->prog) {
		free(job->json);
		free(job);
		return -1;
	}
	smelt_progress_init(app->prog);
	if (spawn(&app->run_thread, merge_main, job, false)) {
		free(job->json);
		free(job);
		return -1;
	}
	app->run_thread_alive = true;
	app->run_state = UI_RUN_RUNNING;
	app->run_result[0] = '\0';
	return 0;
}

void work_merge_cancel(struct ui_app *app)
{
	if (app->run_state == UI_RUN_RUNNING && app->prog)
		smelt_progress_cancel(app->prog);
}

void work_on_merged(struct ui_app *app, struct ui_msg *m)
{
	if (app->run_thread_alive) {
		pthread_join(app->run_thread, NULL);
		app->run_thread_alive = false;
	}
	app->run_seconds = smelt_progress_elapsed(app->prog);
	app->run_bytes_written = atomic_load(&app->prog->bytes_written);
	snprintf(app->run_result, sizeof(app->run_result), "%s", m->text);
	if (m->a == 0) {
		app->run_state = UI_RUN_DONE;
		app_status(app, false, "merge finished: %s", m->text);
	} else if (m->a == SMELT_ECANCELED) {
		app->run_state = UI_RUN_CANCELED;
		app_status(app, false, "merge cancelled; nothing was left behind");
	} else {
		app->run_state = UI_RUN_FAILED;
		app_status(app, true, "merge failed");
	}
	/* The output folder now exists: validation must look again. */
	app_settings_changed(app);
}

/* ---- shutdown ---- */

void work_shutdown(struct ui_app *app)
{
	work_merge_cancel(app);
	if (app->run_thread_alive) {
		pthread_join(app->run_thread, NULL);
		app->run_thread_alive = false;
	}
	if (app->hub_running) {
		atomic_store(&app->hub_cancel, true);
		pthread_join(app->hub_thread, NULL);
		app->hub_running = false;
		smelt_hub_progress_destroy(&app->hub_prog);
	}
	if (app->validating) {
		pthread_join(app->valid_thread, NULL);
		app->validating = false;
	}
	work_stats_stop(app);
	/* Short workers (open, scan) cannot be interrupted; they end soon. */
	while (atomic_load(&detached_alive) > 0) {
		struct timespec ms = {0, 1000000};

		nanosleep(&ms, NULL);
	}
}

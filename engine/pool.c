/*
 * pool.c: fixed pthread pool for parallel-for loops.
 *
 * Workers sleep on a condition variable between loops. A loop publishes
 * (fn, ctx, n) under the lock with a new generation number; every thread,
 * the caller included, then claims items through one atomic counter until
 * they run out, and the caller waits until every worker has left the loop.
 */
#include "smelt/pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

struct smelt_pool {
	int threads;               /* workers + the calling thread */
	pthread_t *tids;
	pthread_mutex_t lock;
	pthread_cond_t wake, done;
	unsigned long generation;
	int busy;                  /* workers still inside the current loop */
	int stop;
	smelt_pool_fn fn;
	void *ctx;
	size_t n;
	atomic_size_t next;
};

struct worker_arg {
	struct smelt_pool *pool;
	int index;
};

static void run_items(struct smelt_pool *p, int worker)
{
	for (;;) {
		size_t i = atomic_fetch_add(&p->next, 1);

		if (i >= p->n)
			break;
		p->fn(p->ctx, i, worker);
	}
}

static void *worker_main(void *arg)
{
	struct worker_arg *wa = arg;
	struct smelt_pool *p = wa->pool;
	int index = wa->index;
	unsigned long seen = 0;

	free(wa);
	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (!p->stop && p->generation == seen)
			pthread_cond_wait(&p->wake, &p->lock);
		if (p->stop)
			break;
		seen = p->generation;
		pthread_mutex_unlock(&p->lock);
		run_items(p, index);
		pthread_mutex_lock(&p->lock);
		if (--p->busy == 0)
			pthread_cond_signal(&p->done);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

int smelt_cpu_count(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n > 0 ? (int)n : 1;
}

struct smelt_pool *smelt_pool_new(int threads)
{
	struct smelt_pool *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	p->threads = threads > 0 ? threads : smelt_cpu_count();
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->wake, NULL);
	pthread_cond_init(&p->done, NULL);
	p->tids = calloc((size_t)p->threads, sizeof(*p->tids));
	if (!p->tids)
		goto fail;
	for (int i = 1; i < p->threads; i++) {
		struct worker_arg *wa = malloc(sizeof(*wa));

		if (!wa)
			goto fail_started;
		wa->pool = p;
		wa->index = i;
		if (pthread_create(&p->tids[i], NULL, worker_main, wa) != 0) {
			free(wa);
			goto fail_started;
		}
		continue;
fail_started:
		/* Run with the workers that did start. */
		p->threads = i;
		break;
	}
	return p;
fail:
	free(p->tids);
	free(p);
	return NULL;
}

void smelt_pool_free(struct smelt_pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = 1;
	pthread_cond_broadcast(&p->wake);
	pthread_mutex_unlock(&p->lock);
	for (int i = 1; i < p->threads; i++)
		pthread_join(p->tids[i], NULL);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->wake);
	pthread_cond_destroy(&p->done);
	free(p->tids);
	free(p);
}

int smelt_pool_threads(const struct smelt_pool *p)
{
	return p->threads;
}

void smelt_pool_for(struct smelt_pool *p, size_t n, smelt_pool_fn fn, void *ctx)
{
	if (n == 0)
		return;
	if (p->threads == 1 || n == 1) {
		for (size_t i = 0; i < n; i++)
			fn(ctx, i, 0);
		return;
	}
	pthread_mutex_lock(&p->lock);
	p->fn = fn;
	p->ctx = ctx;
	p->n = n;
	atomic_store(&p->next, 0);
	p->busy = p->threads - 1;
	p->generation++;
	pthread_cond_broadcast(&p->wake);
	pthread_mutex_unlock(&p->lock);

	run_items(p, 0);

	pthread_mutex_lock(&p->lock);
	while (p->busy > 0)
		pthread_cond_wait(&p->done, &p->lock);
	pthread_mutex_unlock(&p->lock);
}

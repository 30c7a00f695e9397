/* ui_queue.c: a mutex-protected message queue with an eventfd wake-up. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "ui_queue.h"

int ui_queue_init(struct ui_queue *q)
{
	memset(q, 0, sizeof(*q));
	q->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (q->fd < 0)
		return -1;
	pthread_mutex_init(&q->lock, NULL);
	return 0;
}

void ui_queue_destroy(struct ui_queue *q)
{
	if (q->fd >= 0)
		close(q->fd);
	q->fd = -1;
	free(q->items);
	q->items = NULL;
	q->n = q->cap = 0;
	pthread_mutex_destroy(&q->lock);
}

void ui_queue_post(struct ui_queue *q, const struct ui_msg *msg)
{
	uint64_t one = 1;
	ssize_t wr;

	pthread_mutex_lock(&q->lock);
	if (q->n == q->cap) {
		size_t cap = q->cap ? q->cap * 2 : 16;
		struct ui_msg *items = realloc(q->items, cap * sizeof(*items));

		if (!items) {
			/* Out of memory: the message is lost, the UI keeps going. */
			pthread_mutex_unlock(&q->lock);
			return;
		}
		q->items = items;
		q->cap = cap;
	}
	q->items[q->n++] = *msg;
	pthread_mutex_unlock(&q->lock);
	wr = write(q->fd, &one, sizeof(one));
	(void)wr;
}

void ui_queue_postf(struct ui_queue *q, enum ui_msg_type type, int a, int b, void *ptr,
                    const char *fmt, ...)
{
	struct ui_msg m;
	va_list ap;

	memset(&m, 0, sizeof(m));
	m.type = type;
	m.a = a;
	m.b = b;
	m.ptr = ptr;
	va_start(ap, fmt);
	vsnprintf(m.text, sizeof(m.text), fmt, ap);
	va_end(ap);
	ui_queue_post(q, &m);
}

int ui_queue_take(struct ui_queue *q, struct ui_msg *out)
{
	uint64_t count;
	int got = 0;
	ssize_t rd;

	pthread_mutex_lock(&q->lock);
	if (q->n > 0) {
		*out = q->items[0];
		memmove(q->items, q->items + 1, (q->n - 1) * sizeof(*q->items));
		q->n--;
		got = 1;
	}
	if (q->n == 0) {
		rd = read(q->fd, &count, sizeof(count));
		(void)rd;
	}
	pthread_mutex_unlock(&q->lock);
	return got;
}

/*
 * ui_queue.h: how worker threads talk to the UI thread.
 *
 * Workers post fixed-size messages (copied into the queue under a mutex)
 * and write to an eventfd so the UI loop, blocked in poll() on stdin and
 * that fd, wakes at once. The UI thread drains the queue and owns whatever
 * a message's `ptr` points to from then on. Posting never blocks on the UI.
 */
#ifndef SMELT_UI_QUEUE_H
#define SMELT_UI_QUEUE_H

#include <pthread.h>
#include <stddef.h>

enum ui_msg_type {
	UI_MSG_CKPT_OPENED,   /* ptr: struct ui_model_info *, a: slot id */
	UI_MSG_CACHE_SCANNED, /* ptr: struct smelt_hub_cache_list * (or NULL + text) */
	UI_MSG_STATS_CELL,    /* a: generation: new cells were filled */
	UI_MSG_STATS_DONE,    /* a: generation, b: rc; text: error message */
	UI_MSG_VALIDATED,     /* ptr: struct ui_validation *, a: generation */
	UI_MSG_MERGE_DONE,    /* a: rc; text: error or output path */
	UI_MSG_HUB_DONE,      /* a: rc; text: snapshot path or error */
	UI_MSG_RESCORED,      /* a re-score of WIDEN weights finished */
	UI_MSG_INFO           /* text: a status line message */
};

struct ui_msg {
	enum ui_msg_type type;
	int a, b;
	void *ptr;
	char text[1024];
};

struct ui_queue {
	pthread_mutex_t lock;
	struct ui_msg *items;
	size_t n, cap;
	int fd; /* eventfd: readable while messages wait */
};

int ui_queue_init(struct ui_queue *q);
void ui_queue_destroy(struct ui_queue *q);
/* Any thread: copy msg into the queue and wake the UI. */
void ui_queue_post(struct ui_queue *q, const struct ui_msg *msg);
/* Convenience: post a message with only a type, ints and text. */
void ui_queue_postf(struct ui_queue *q, enum ui_msg_type type, int a, int b, void *ptr,
                    const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* UI thread: take the next message; returns 0 when the queue is empty. */
int ui_queue_take(struct ui_queue *q, struct ui_msg *out);

#endif

/*
 * hub_internal.h: the pieces of the Hub client shared by engine/hub_*.c and
 * the unit tests (not part of the public API).
 *
 * hub_url.c    environment, endpoint, token, URL quoting, globs, ETags,
 *              Retry-After
 * hub_cache.c  cache layout: repo folders, refs, snapshot links, locks,
 *              lookup, scan
 * hub_ranges.c the record of byte ranges already written to an unfinished
 *              blob (resume across runs)
 * hub_http.c   libcurl multi: metadata requests with retries, parallel
 *              ranged downloads into one file
 * hub_pull.c   orchestration: listing, selection, per-file download and
 *              verification, progress
 */
#ifndef SMELT_HUB_INTERNAL_H
#define SMELT_HUB_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <curl/curl.h>

#include "smelt/err.h"
#include "smelt/hub.h"

#define HUB_DEFAULT_ENDPOINT "https://huggingface.co"
#define HUB_URL_MAX          8192
#define HUB_TOKEN_MAX        1024
#define HUB_ETAG_MAX         128
#define HUB_API_BODY_MAX     (64u << 20) /* cap on JSON answers */

/* ---- hub_url.c ---- */

/* 1/ON/YES/TRUE (any case) → true. */
bool hub_env_truthy(const char *name);

/* The endpoint (override, $HF_ENDPOINT, or the default) without a trailing
 * '/'. */
int hub_endpoint(const char *override, char *buf, size_t n, struct smelt_err *err);

/* The token: override (may be ""), $HF_TOKEN, $HUGGING_FACE_HUB_TOKEN, the
 * file $HF_TOKEN_PATH or $HF_HOME/token (~/.cache/huggingface/token),
 * stripped of whitespace; "" when none or HF_HUB_DISABLE_IMPLICIT_TOKEN. */
int hub_token(const char *override, char *buf, size_t n, struct smelt_err *err);

/* Percent-encode s: unreserved characters stay, '/' stays only when
 * keep_slash. Returns 0, or -1 when out is too small. */
int hub_quote(const char *s, bool keep_slash, char *out, size_t n);

/* "org/name" → "models--org--name". */
int hub_repo_folder(const char *repo, char *out, size_t n);

/* fnmatch-style globs as huggingface_hub's allow/ignore patterns ('*' also
 * crosses '/'); a pattern ending in '/' matches everything below it. */
bool hub_glob_match(const char *pattern, const char *name);

/* Whether a repo file is downloaded: includes (or the default set when
 * there are none) minus excludes. */
bool hub_file_selected(const char *name, const char *const *inc, size_t n_inc,
                       const char *const *exc, size_t n_exc);

/* Strip a leading W/ and surrounding quotes; false when the result is
 * empty, too long or not a safe file name ([A-Za-z0-9._-], no leading '.'). */
bool hub_etag_normalize(const char *raw, char *out, size_t n);

/* True for 64 lowercase hex digits. */
bool hub_is_sha256(const char *s);

/* Retry-After: delay seconds or an HTTP date (relative to now). Returns 0
 * and the delay in *seconds (never negative), or -1 when unparsable. */
int hub_parse_retry_after(const char *value, time_t now, long *seconds);

/* IETF RateLimit header ("api";r=0;t=55): when the remaining quota r is 0,
 * the reset delay t. Returns 0 and *seconds, or -1. */
int hub_parse_ratelimit(const char *value, long *seconds);

/* ---- hub_ranges.c ---- */

struct hub_range {
	uint64_t start, end; /* [start, end) */
};

/* Sorted, disjoint, non-adjacent ranges inside [0, size). */
struct hub_ranges {
	uint64_t size;
	struct hub_range *v;
	size_t n, cap;
};

void hub_ranges_init(struct hub_ranges *r, uint64_t size);
void hub_ranges_free(struct hub_ranges *r);
void hub_ranges_clear(struct hub_ranges *r);
/* Add [start, end) (clamped to size), merging neighbours. */
int hub_ranges_add(struct hub_ranges *r, uint64_t start, uint64_t end);
uint64_t hub_ranges_covered(const struct hub_ranges *r);
bool hub_ranges_complete(const struct hub_ranges *r);
/* The missing ranges, in order, into gaps (re-initialised). */
int hub_ranges_gaps(const struct hub_ranges *r, struct hub_ranges *gaps);
/* Load a record; a missing, malformed or other-size record yields an empty
 * set (the download starts over), which is not an error. */
int hub_ranges_load(const char *path, uint64_t size, struct hub_ranges *r);
/* Write the record atomically (temporary file + rename). */
int hub_ranges_save(const char *path, const struct hub_ranges *r, struct smelt_err *err);

/* ---- hub_cache.c ---- */

int hub_mkdirs(const char *path, struct smelt_err *err);
/* <cache>/models--org--name */
int hub_cache_repo_path(const char *cache, const char *repo, char *out, size_t n);
/* Read refs/<rev>: 0 and the commit, or SMELT_ENOTFOUND. */
int hub_cache_read_ref(const char *repo_path, const char *rev, char commit[41]);
int hub_cache_write_ref(const char *repo_path, const char *rev, const char *commit,
                        struct smelt_err *err);
/* True when snapshots/<commit>/<file> resolves to a regular file. */
bool hub_cache_snapshot_has(const char *repo_path, const char *commit, const char *file);
/* snapshots/<commit>/<file> → relative link to blobs/<etag> (replaced
 * atomically if it exists). */
int hub_cache_link(const char *repo_path, const char *commit, const char *file, const char *etag,
                   struct smelt_err *err);
/* flock(LOCK_EX) on path (created), polling cancel; *fd receives the lock. */
int hub_lock(const char *path, const atomic_bool *cancel, int *fd, struct smelt_err *err);
void hub_unlock(int fd);

/* ---- hub_http.c ---- */

struct hub_net {
	CURLM *multi;
	char endpoint[1024];
	char auth[HUB_TOKEN_MAX + 32]; /* "Authorization: Bearer ..." or "" */
	bool has_token;
	const atomic_bool *cancel;
	int retries;   /* attempts after the first, for retryable failures */
	long delay_ms; /* first backoff delay, doubled up to max_delay_ms */
	long max_delay_ms;
	long meta_timeout_s;     /* HEAD / API requests (HF_HUB_ETAG_TIMEOUT) */
	long stall_timeout_s;    /* downloads: abort below 1 byte/s for this long */
	void (*tick)(void *ctx); /* called about 10 times a second while waiting */
	void *tick_ctx;
};

struct hub_resp {
	long status;
	char *body; /* NUL-terminated, NULL for HEAD */
	size_t len;
	char commit[64];
	char etag[HUB_ETAG_MAX]; /* normalised X-Linked-Etag or ETag, "" if absent/unsafe */
	int64_t size;            /* X-Linked-Size or Content-Length, -1 if absent */
	char location[HUB_URL_MAX];
	char error_code[64];
	char error_message[256];
	char link_next[HUB_URL_MAX]; /* Link: <...>; rel="next" */
	char url[HUB_URL_MAX];       /* the URL that answered */
};

int hub_net_init(struct hub_net *net, const char *endpoint, const char *token,
                 const atomic_bool *cancel, struct smelt_err *err);
void hub_net_free(struct hub_net *net);
bool hub_net_cancelled(const struct hub_net *net);

/* True when both URLs have the same scheme, host and port. */
bool hub_same_origin(const char *a, const char *b);

/* One GET or HEAD without following redirects, retried with backoff on
 * 408/429/5xx and broken connections. The token goes only to the endpoint's
 * origin. Returns 0 with r filled for any final HTTP status, SMELT_ENET
 * when no answer came, SMELT_ECANCELED. */
int hub_http_fetch(struct hub_net *net, bool head, const char *url, size_t body_cap,
                   struct hub_resp *r, struct smelt_err *err);
void hub_resp_free(struct hub_resp *r);

/* A download into an open file of known size. done holds the ranges already
 * present and grows as data arrives; it is saved to record_path about once
 * a second and whenever the download stops. counters (optional) are added
 * the number of new bytes. */
struct hub_download {
	const char *url;
	const char *name; /* for messages */
	int fd;
	uint64_t size;
	struct hub_ranges *done;
	const char *record_path;
	int connections;
	_Atomic uint64_t *counters[2];
	_Atomic int *active; /* running transfers, optional */
	/* Optional, for a checksum running alongside: bytes [0, *prefix) are
	 * written for good; *epoch grows when written bytes are thrown away
	 * (a server ignoring Range), after which the hash must start over. */
	_Atomic uint64_t *prefix;
	_Atomic unsigned *epoch;
};

int hub_http_download(struct hub_net *net, struct hub_download *d, struct smelt_err *err);

#endif

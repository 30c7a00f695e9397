/*
 * hub_http.c: HTTP for the Hub client on one libcurl multi handle.
 *
 * Metadata requests (API listings, HEAD on resolve URLs) are single
 * transfers that never follow redirects (the caller decides where to go).
 * Downloads split the missing byte ranges of a file over N concurrent
 * ranged GETs that pwrite() at their offsets into one preallocated file;
 * each range retries on its own (immediately after a cut that made
 * progress, with backoff otherwise) and the set of written ranges is saved
 * so that another run resumes where this one stopped.
 */
#include "hub_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define MIN_PART        (1u << 20)   /* smallest range worth its own request */
#define MAX_PART        (16u << 20)  /* largest range when several run at once */
#define DOWNLOAD_BUFFER (512L << 10) /* libcurl receive buffer */
#define SAVE_INTERVAL   1.0          /* seconds between range-record saves */
#define TICK_INTERVAL   0.1

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static long env_long(const char *name, long dflt, long lo, long hi)
{
	const char *v = getenv(name);
	char *end;
	long x;

	if (!v || !*v)
		return dflt;
	x = strtol(v, &end, 10);
	if (*end || x < lo || x > hi)
		return dflt;
	return x;
}

int hub_net_init(struct hub_net *net, const char *endpoint, const char *token,
                 const atomic_bool *cancel, struct smelt_err *err)
{
	memset(net, 0, sizeof(*net));
	snprintf(net->endpoint, sizeof(net->endpoint), "%s", endpoint);
	if (token && *token) {
		snprintf(net->auth, sizeof(net->auth), "Authorization: Bearer %s", token);
		net->has_token = true;
	}
	net->cancel = cancel;
	net->retries = 5;
	net->delay_ms = 1000;
	net->max_delay_ms = 8000;
	net->meta_timeout_s = env_long("HF_HUB_ETAG_TIMEOUT", 10, 1, 3600);
	net->stall_timeout_s = env_long("HF_HUB_DOWNLOAD_TIMEOUT", 10, 1, 3600);
	net->multi = curl_multi_init();
	if (!net->multi)
		return smelt_fail(err, SMELT_ENOMEM, "cannot create a libcurl multi handle");
	/* One TCP connection per range: HTTP/2 multiplexing would put all
	 * ranges on one connection and defeat the point of splitting. */
	curl_multi_setopt(net->multi, CURLMOPT_PIPELINING, CURLPIPE_NOTHING);
	return 0;
}

void hub_net_free(struct hub_net *net)
{
	if (net->multi)
		curl_multi_cleanup(net->multi);
	/* Wipe the token from memory we are about to give back. */
	memset(net->auth, 0, sizeof(net->auth));
	net->multi = NULL;
}

bool hub_net_cancelled(const struct hub_net *net)
{
	return net->cancel && atomic_load(net->cancel);
}

static void tick(struct hub_net *net)
{
	if (net->tick)
		net->tick(net->tick_ctx);
}

/* Sleep up to ms, waking for cancellation; calls the tick meanwhile. */
static int pause_ms(struct hub_net *net, long ms)
{
	double until = now_s() + (double)ms / 1000.0;

	while (now_s() < until) {
		if (hub_net_cancelled(net))
			return SMELT_ECANCELED;
		tick(net);
		nanosleep(&(struct timespec){.tv_nsec = 50 * 1000 * 1000}, NULL);
	}
	return hub_net_cancelled(net) ? SMELT_ECANCELED : 0;
}

bool hub_same_origin(const char *a, const char *b)
{
	CURLU *ua = curl_url(), *ub = curl_url();
	char *sa = NULL, *sb = NULL, *ha = NULL, *hb = NULL, *pa = NULL, *pb = NULL;
	bool same = false;

	if (!ua || !ub || curl_url_set(ua, CURLUPART_URL, a, 0) ||
	    curl_url_set(ub, CURLUPART_URL, b, 0))
		goto out;
	if (curl_url_get(ua, CURLUPART_SCHEME, &sa, 0) ||
	    curl_url_get(ub, CURLUPART_SCHEME, &sb, 0) ||
	    curl_url_get(ua, CURLUPART_HOST, &ha, 0) || curl_url_get(ub, CURLUPART_HOST, &hb, 0) ||
	    curl_url_get(ua, CURLUPART_PORT, &pa, CURLU_DEFAULT_PORT) ||
	    curl_url_get(ub, CURLUPART_PORT, &pb, CURLU_DEFAULT_PORT))
		goto out;
	same = strcasecmp(sa, sb) == 0 && strcasecmp(ha, hb) == 0 && strcmp(pa, pb) == 0;
out:
	curl_free(sa);
	curl_free(sb);
	curl_free(ha);
	curl_free(hb);
	curl_free(pa);
	curl_free(pb);
	curl_url_cleanup(ua);
	curl_url_cleanup(ub);
	return same;
}

/* Common options; headers carry the token only to the endpoint's origin. */
static CURL *easy_new(struct hub_net *net, const char *url, struct curl_slist **hdrs, char *errbuf)
{
	CURL *e = curl_easy_init();
	struct curl_slist *h = NULL, *t;

	*hdrs = NULL;
	if (!e)
		return NULL;
	t = curl_slist_append(h, "Accept-Encoding: identity");
	if (!t)
		goto fail;
	h = t;
	if (net->has_token && hub_same_origin(url, net->endpoint)) {
		t = curl_slist_append(h, net->auth);
		if (!t)
			goto fail;
		h = t;
	}
	errbuf[0] = '\0';
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "smelt/0.1 (huggingface_hub-compatible)");
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, 10L);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	*hdrs = h;
	return e;
fail:
	curl_slist_free_all(h);
	curl_easy_cleanup(e);
	return NULL;
}

/* ---- metadata requests ---- */

struct body {
	struct hub_resp *r;
	size_t cap;
	bool too_big;
};

static size_t on_body(char *p, size_t sz, size_t nm, void *ud)
{
	struct body *b = ud;
	size_t n = sz * nm;
	char *v;

	if (b->r->len + n > b->cap) {
		b->too_big = true;
		return 0;
	}
	v = realloc(b->r->body, b->r->len + n + 1);
	if (!v)
		return 0;
	memcpy(v + b->r->len, p, n);
	b->r->body = v;
	b->r->len += n;
	v[b->r->len] = '\0';
	return n;
}

static const char *header(CURL *e, const char *name)
{
	struct curl_header *h;

	if (curl_easy_header(e, name, 0, CURLH_HEADER, -1, &h) != CURLHE_OK)
		return NULL;
	return h->value;
}

static void copy_header(CURL *e, const char *name, char *out, size_t n)
{
	const char *v = header(e, name);
	snprintf(out, n, "%s", v ? v : "");
}

/* Link: <url>; rel="next", possibly among other comma-separated links. */
static void parse_link_next(const char *v, char *out, size_t n)
{
	out[0] = '\0';
	while (v && *v) {
		const char *lt = strchr(v, '<'), *gt = lt ? strchr(lt, '>') : NULL;
		const char *next, *rel;
		if (!gt)
			return;
		next = strchr(gt, ',');
		rel = strstr(gt, "rel=\"next\"");
		if (!rel)
			rel = strstr(gt, "rel=next");
		if (rel && (!next || rel < next)) {
			snprintf(out, n, "%.*s", (int)(gt - lt - 1), lt + 1);
			return;
		}
		v = next ? next + 1 : NULL;
	}
}

static void read_headers(CURL *e, struct hub_resp *r)
{
	const char *v;
	char *end;

	copy_header(e, "X-Repo-Commit", r->commit, sizeof(r->commit));
	v = header(e, "X-Linked-Etag");
	if (!v)
		v = header(e, "ETag");
	if (!v || !hub_etag_normalize(v, r->etag, sizeof(r->etag)))
		r->etag[0] = '\0';
	r->size = -1;
	v = header(e, "X-Linked-Size");
	if (!v && (r->status < 300 || r->status >= 400))
		v = header(e, "Content-Length");
	if (v) {
		long long x = strtoll(v, &end, 10);
		if (end != v && x >= 0)
			r->size = x;
	}
	copy_header(e, "Location", r->location, sizeof(r->location));
	copy_header(e, "X-Error-Code", r->error_code, sizeof(r->error_code));
	copy_header(e, "X-Error-Message", r->error_message, sizeof(r->error_message));
	parse_link_next(header(e, "Link"), r->link_next, sizeof(r->link_next));
}

/* Seconds the server asked us to wait, or -1. */
static long server_delay(CURL *e)
{
	const char *v = header(e, "Retry-After");
	long s;

	if (v && hub_parse_retry_after(v, time(NULL), &s) == 0)
		return s;
	v = header(e, "RateLimit");
	if (v && hub_parse_ratelimit(v, &s) == 0)
		return s;
	return -1;
}

static bool status_retryable(long status)
{
	return status == 408 || status == 429 || status == 500 || status == 502 || status == 503 ||
	       status == 504;
}

/* Failures worth another attempt: the connection broke, not "no server". */
static bool curl_retryable(CURLcode res)
{
	switch (res) {
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_COULDNT_CONNECT:
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_URL_MALFORMAT:
	case CURLE_WRITE_ERROR:
	case CURLE_OUT_OF_MEMORY:
	case CURLE_ABORTED_BY_CALLBACK:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE: return false;
	default: return true;
	}
}

static long backoff_ms(const struct hub_net *net, int failures, long server_s)
{
	long d = net->delay_ms;

	if (server_s >= 0)
		return (server_s > 300 ? 300 : server_s) * 1000;
	for (int i = 1; i < failures && d < net->max_delay_ms; i++)
		d *= 2;
	return d < net->max_delay_ms ? d : net->max_delay_ms;
}

/* Drive one easy handle to completion on the multi handle. */
static int run_one(struct hub_net *net, CURL *e, CURLcode *res)
{
	int running = 1, rc = 0;
	double last_tick = 0;

	*res = CURLE_OK;
	if (curl_multi_add_handle(net->multi, e) != CURLM_OK)
		return SMELT_ENOMEM;
	while (running) {
		CURLMsg *m;
		int left;

		if (hub_net_cancelled(net)) {
			rc = SMELT_ECANCELED;
			break;
		}
		curl_multi_perform(net->multi, &running);
		while ((m = curl_multi_info_read(net->multi, &left)))
			if (m->msg == CURLMSG_DONE && m->easy_handle == e)
				*res = m->data.result;
		if (!running)
			break;
		if (now_s() - last_tick >= TICK_INTERVAL) {
			tick(net);
			last_tick = now_s();
		}
		curl_multi_poll(net->multi, NULL, 0, 100, NULL);
	}
	curl_multi_remove_handle(net->multi, e);
	return rc;
}

void hub_resp_free(struct hub_resp *r)
{
	free(r->body);
	r->body = NULL;
	r->len = 0;
}

/* "scheme://host[:port]" of a URL (never credentials); false if unparsable. */
static bool origin_of(const char *url, char *out, size_t n)
{
	CURLU *u = curl_url();
	char *s = NULL, *h = NULL, *p = NULL;
	bool ok = false;

	if (u && !curl_url_set(u, CURLUPART_URL, url, 0) &&
	    !curl_url_get(u, CURLUPART_SCHEME, &s, 0) && !curl_url_get(u, CURLUPART_HOST, &h, 0)) {
		curl_url_get(u, CURLUPART_PORT, &p, 0);
		ok = (size_t)snprintf(out, n, "%s://%s%s%s", s, h, p ? ":" : "", p ? p : "") < n;
	}
	if (!ok)
		snprintf(out, n, "the server");
	curl_free(s);
	curl_free(h);
	curl_free(p);
	curl_url_cleanup(u);
	return ok;
}

static int fetch_retrying(struct hub_net *net, bool head, const char *url, size_t body_cap,
                          struct hub_resp *r, struct smelt_err *err)
{
	char errbuf[CURL_ERROR_SIZE];
	int failures = 0;

	for (;;) {
		struct curl_slist *hdrs;
		struct body b = {r, body_cap, false};
		CURLcode res;
		CURL *e;
		int rc;
		long wait_s = -1;

		hub_resp_free(r);
		memset(r, 0, sizeof(*r));
		snprintf(r->url, sizeof(r->url), "%s", url);
		e = easy_new(net, url, &hdrs, errbuf);
		if (!e)
			return smelt_fail(err, SMELT_ENOMEM, "cannot set up an HTTP request");
		if (head) {
			curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
			curl_easy_setopt(e, CURLOPT_TIMEOUT, net->meta_timeout_s);
		} else {
			curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
			curl_easy_setopt(e, CURLOPT_WRITEDATA, &b);
			curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
			curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, net->meta_timeout_s);
		}
		rc = run_one(net, e, &res);
		if (!rc && res == CURLE_OK) {
			curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r->status);
			read_headers(e, r);
			wait_s = server_delay(e);
		}
		curl_easy_cleanup(e);
		curl_slist_free_all(hdrs);
		if (rc)
			return smelt_fail(err, rc, "cancelled");
		if (b.too_big)
			return smelt_fail(err, SMELT_EFORMAT,
			                  "answer from %s is larger than %zu bytes", url, body_cap);
		if (res == CURLE_OK && !status_retryable(r->status))
			return 0;
		failures++;
		bool again = res == CURLE_OK || curl_retryable(res);
		if (!again || failures > net->retries) {
			char origin[512];
			origin_of(url, origin, sizeof(origin));
			if (res != CURLE_OK)
				return smelt_fail(err, SMELT_ENET, "cannot reach %s: %s", origin,
				                  errbuf[0] ? errbuf : curl_easy_strerror(res));
			return smelt_fail(err, SMELT_ENET, "%s answered HTTP %ld after %d tries",
			                  origin, r->status, failures);
		}
		rc = pause_ms(net, backoff_ms(net, failures, wait_s));
		if (rc)
			return smelt_fail(err, rc, "cancelled");
	}
}

/* ---- downloads ---- */

struct job {
	struct dl_state *dl;
	CURL *e;
	struct curl_slist *hdrs;
	uint64_t start, end;  /* the range this job fills */
	uint64_t pos;         /* next byte to write */
	uint64_t flushed;     /* [.., flushed) already added to the record */
	uint64_t attempt_pos; /* pos when the current attempt started */
	bool ranged;          /* the current attempt sent a Range header */
	bool checked;         /* status and Content-Range verified */
	bool got_200;         /* a ranged request was answered 200 */
	long bad_status;      /* an HTTP error answer */
	int write_errno;
	bool done, running;
	int failures;      /* consecutive attempts without progress */
	double not_before; /* earliest retry time */
	long server_wait;  /* Retry-After of the last answer, -1 if none */
	char errbuf[CURL_ERROR_SIZE];
};

struct dl_state {
	struct hub_net *net;
	struct hub_download *d;
	struct job *jobs;
	size_t n_jobs;
	int running;
	bool restart; /* the server ignores ranges: start over with one GET */
};

static size_t on_data(char *p, size_t sz, size_t nm, void *ud)
{
	struct job *j = ud;
	size_t n = sz * nm, off = 0;

	if (!j->checked) {
		long code = 0;
		curl_easy_getinfo(j->e, CURLINFO_RESPONSE_CODE, &code);
		if (code == 200 && j->ranged) {
			j->got_200 = true;
			return 0;
		}
		if (code != 200 && code != 206) {
			j->bad_status = code;
			return 0;
		}
		if (code == 206) {
			/* The answer must start where we asked. */
			const char *cr = header(j->e, "Content-Range");
			uint64_t first;
			if (!cr || sscanf(cr, "bytes %" SCNu64, &first) != 1 || first != j->pos) {
				j->bad_status = 416;
				return 0;
			}
		}
		j->checked = true;
	}
	if (n > j->end - j->pos) {
		j->bad_status = -1; /* more data than the file holds */
		return 0;
	}
	while (off < n) {
		ssize_t w = pwrite(j->dl->d->fd, p + off, n - off, (off_t)(j->pos + off));
		if (w < 0) {
			if (errno == EINTR)
				continue;
			j->write_errno = errno;
			return 0;
		}
		off += (size_t)w;
	}
	j->pos += n;
	for (int i = 0; i < 2; i++)
		if (j->dl->d->counters[i])
			atomic_fetch_add(j->dl->d->counters[i], (uint64_t)n);
	return n;
}

static int job_start(struct dl_state *s, struct job *j)
{
	char range[64];

	j->e = easy_new(s->net, s->d->url, &j->hdrs, j->errbuf);
	if (!j->e)
		return SMELT_ENOMEM;
	j->checked = false;
	j->got_200 = false;
	j->bad_status = 0;
	j->write_errno = 0;
	j->server_wait = -1;
	j->attempt_pos = j->pos;
	j->ranged = !(j->pos == 0 && j->end == s->d->size);
	if (j->ranged) {
		snprintf(range, sizeof(range), "%" PRIu64 "-%" PRIu64, j->pos, j->end - 1);
		curl_easy_setopt(j->e, CURLOPT_RANGE, range);
	}
	curl_easy_setopt(j->e, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(j->e, CURLOPT_MAXREDIRS, 10L);
	curl_easy_setopt(j->e, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(j->e, CURLOPT_WRITEDATA, j);
	curl_easy_setopt(j->e, CURLOPT_PRIVATE, j);
	curl_easy_setopt(j->e, CURLOPT_BUFFERSIZE, DOWNLOAD_BUFFER);
	curl_easy_setopt(j->e, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(j->e, CURLOPT_LOW_SPEED_TIME, s->net->stall_timeout_s);
	if (curl_multi_add_handle(s->net->multi, j->e) != CURLM_OK) {
		curl_easy_cleanup(j->e);
		curl_slist_free_all(j->hdrs);
		j->e = NULL;
		j->hdrs = NULL;
		return SMELT_ENOMEM;
	}
	j->running = true;
	s->running++;
	if (s->d->active)
		atomic_fetch_add(s->d->active, 1);
	return 0;
}

static void job_stop(struct dl_state *s, struct job *j)
{
	if (!j->running)
		return;
	curl_multi_remove_handle(s->net->multi, j->e);
	curl_easy_cleanup(j->e);
	curl_slist_free_all(j->hdrs);
	j->e = NULL;
	j->hdrs = NULL;
	j->running = false;
	s->running--;
	if (s->d->active)
		atomic_fetch_sub(s->d->active, 1);
}

/* Move each job's freshly written bytes into the record's range set. */
static int flush_progress(struct dl_state *s)
{
	for (size_t i = 0; i < s->n_jobs; i++) {
		struct job *j = &s->jobs[i];
		if (j->pos > j->flushed) {
			int rc = hub_ranges_add(s->d->done, j->flushed, j->pos);
			if (rc)
				return rc;
			j->flushed = j->pos;
		}
	}
	return 0;
}

static int save_record(struct dl_state *s, struct smelt_err *err)
{
	int rc = flush_progress(s);
	if (rc)
		return smelt_fail(err, rc, "out of memory");
	return hub_ranges_save(s->d->record_path, s->d->done, err);
}

/* Tell a concurrent checksum how far the file is written without a gap. */
static int publish_prefix(struct dl_state *s)
{
	const struct hub_ranges *done = s->d->done;
	int rc;

	if (!s->d->prefix)
		return 0;
	rc = flush_progress(s);
	if (!rc)
		atomic_store(s->d->prefix,
		             done->n && done->v[0].start == 0 ? done->v[0].end : (uint64_t)0);
	return rc;
}

/* Split the missing ranges into jobs. One connection: one request per gap.
 * Several: parts of at most MAX_PART handed out in file order, so that the
 * written prefix (which the checksum follows) grows steadily and a slow
 * connection holds up little. */
static int plan_jobs(struct dl_state *s)
{
	struct hub_ranges gaps = {0};
	uint64_t missing, part;
	size_t n = 0;
	int rc = hub_ranges_gaps(s->d->done, &gaps);

	free(s->jobs);
	s->jobs = NULL;
	s->n_jobs = 0;
	if (rc)
		goto out;
	missing = hub_ranges_covered(&gaps);
	part = (missing + (uint64_t)s->d->connections - 1) / (uint64_t)s->d->connections;
	if (s->d->connections > 1 && part > MAX_PART)
		part = MAX_PART;
	if (part < MIN_PART)
		part = MIN_PART;
	for (size_t i = 0; i < gaps.n; i++)
		n += (size_t)((gaps.v[i].end - gaps.v[i].start + part - 1) / part);
	s->jobs = calloc(n ? n : 1, sizeof(*s->jobs));
	if (!s->jobs) {
		rc = SMELT_ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < gaps.n; i++)
		for (uint64_t a = gaps.v[i].start; a < gaps.v[i].end; a += part) {
			struct job *j = &s->jobs[s->n_jobs++];
			j->dl = s;
			j->start = j->pos = j->flushed = a;
			j->end = a + part < gaps.v[i].end ? a + part : gaps.v[i].end;
		}
out:
	hub_ranges_free(&gaps);
	return rc;
}

static bool disk_full(int e)
{
	return e == ENOSPC || e == EDQUOT || e == EFBIG;
}

/* Decide what a finished attempt means: 0 (done or will retry) or a fatal
 * error. */
static int job_finished(struct dl_state *s, struct job *j, CURLcode res, struct smelt_err *err)
{
	long code = 0;
	const char *name = s->d->name;

	curl_easy_getinfo(j->e, CURLINFO_RESPONSE_CODE, &code);
	j->server_wait = server_delay(j->e);
	char errtext[CURL_ERROR_SIZE];
	snprintf(errtext, sizeof(errtext), "%s",
	         j->errbuf[0] ? j->errbuf : curl_easy_strerror(res));
	job_stop(s, j);
	if (!j->bad_status && !j->checked && code >= 300)
		j->bad_status = code;

	if (j->write_errno)
		return smelt_fail(err, SMELT_EIO, "%s: %s", name,
		                  disk_full(j->write_errno) ? "disk full while writing the download"
		                                            : strerror(j->write_errno));
	if (j->got_200) {
		/* The server ignores Range: keep what the single answer can
		 * give, i.e. nothing, and fetch the whole file in one GET. */
		s->restart = true;
		return 0;
	}
	/* Every byte arrived: done, even if the connection broke on closing. */
	if (!j->bad_status && j->pos == j->end) {
		j->done = true;
		return 0;
	}
	if (j->bad_status == -1)
		return smelt_fail(err, SMELT_ENET,
		                  "%s: the server sent more bytes than the file holds", name);
	if (j->bad_status == 416)
		return smelt_fail(err, SMELT_ENET, "%s: the server answered a different byte range",
		                  name);
	if (j->bad_status && !status_retryable(j->bad_status)) {
		if (j->bad_status == 401 || j->bad_status == 403)
			return smelt_fail(err, SMELT_EAUTH, "%s: download refused (HTTP %ld)", name,
			                  j->bad_status);
		if (j->bad_status == 404 || j->bad_status == 410)
			return smelt_fail(err, SMELT_ENOTFOUND,
			                  "%s: file missing on the download server (HTTP %ld)",
			                  name, j->bad_status);
		return smelt_fail(err, SMELT_ENET, "%s: download failed with HTTP %ld", name,
		                  j->bad_status);
	}
	if (res != CURLE_OK && !j->bad_status && !curl_retryable(res) &&
	    res != CURLE_COULDNT_CONNECT)
		return smelt_fail(err, SMELT_ENET, "%s: %s", name, errtext);
	/* Retry: at once when this attempt made progress (a cut connection),
	 * with growing delays when it did not. */
	if (j->pos > j->attempt_pos && !j->bad_status) {
		j->failures = 0;
		j->not_before = 0;
		return 0;
	}
	j->failures++;
	if (j->failures > s->net->retries) {
		if (j->bad_status)
			return smelt_fail(err, SMELT_ENET,
			                  "%s: server answered HTTP %ld after %d tries", name,
			                  j->bad_status, j->failures);
		return smelt_fail(err, SMELT_ENET, "%s: download failed after %d tries: %s", name,
		                  j->failures, errtext);
	}
	j->not_before = now_s() + (double)backoff_ms(s->net, j->failures, j->server_wait) / 1000.0;
	return 0;
}

static void stop_all(struct dl_state *s)
{
	for (size_t i = 0; i < s->n_jobs; i++)
		job_stop(s, &s->jobs[i]);
}

static bool all_done(const struct dl_state *s)
{
	for (size_t i = 0; i < s->n_jobs; i++)
		if (!s->jobs[i].done)
			return false;
	return true;
}

static int start_ready(struct dl_state *s)
{
	double now = now_s();

	for (size_t i = 0; i < s->n_jobs && s->running < s->d->connections; i++) {
		struct job *j = &s->jobs[i];
		if (j->done || j->running || j->not_before > now)
			continue;
		int rc = job_start(s, j);
		if (rc)
			return rc;
	}
	return 0;
}

int hub_http_download(struct hub_net *net, struct hub_download *d, struct smelt_err *err)
{
	struct dl_state s = {.net = net, .d = d};
	double last_save = now_s(), last_tick = 0;
	int restarts = 0, rc;

	if (d->connections < 1)
		d->connections = 1;
	rc = plan_jobs(&s);
	while (!rc && !all_done(&s)) {
		CURLMsg *m;
		int left, still;

		if (hub_net_cancelled(net)) {
			rc = smelt_fail(err, SMELT_ECANCELED, "cancelled");
			break;
		}
		rc = start_ready(&s);
		if (rc) {
			rc = smelt_fail(err, rc, "cannot set up an HTTP request");
			break;
		}
		curl_multi_perform(net->multi, &still);
		while (!rc && (m = curl_multi_info_read(net->multi, &left))) {
			struct job *j = NULL;
			if (m->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&j);
			rc = job_finished(&s, j, m->data.result, err);
		}
		if (!rc && s.restart) {
			stop_all(&s);
			if (++restarts > net->retries) {
				rc = smelt_fail(err, SMELT_ENET,
				                "%s: the server keeps ignoring byte ranges",
				                d->name);
				break;
			}
			/* Everything is refetched by one plain GET. */
			if (flush_progress(&s)) {
				rc = smelt_fail(err, SMELT_ENOMEM, "out of memory");
				break;
			}
			uint64_t lost = hub_ranges_covered(d->done);
			hub_ranges_clear(d->done);
			if (d->epoch)
				atomic_fetch_add(d->epoch, 1);
			if (d->prefix)
				atomic_store(d->prefix, 0);
			hub_ranges_save(d->record_path, d->done, NULL);
			for (int i = 0; i < 2; i++)
				if (d->counters[i])
					atomic_fetch_sub(d->counters[i], lost);
			free(s.jobs);
			s.jobs = calloc(1, sizeof(*s.jobs));
			if (!s.jobs) {
				rc = smelt_fail(err, SMELT_ENOMEM, "out of memory");
				break;
			}
			s.n_jobs = 1;
			s.jobs[0] = (struct job){.dl = &s, .start = 0, .end = d->size};
			s.restart = false;
			continue;
		}
		if (!rc && publish_prefix(&s))
			rc = smelt_fail(err, SMELT_ENOMEM, "out of memory");
		if (rc)
			break;
		if (now_s() - last_save >= SAVE_INTERVAL) {
			rc = save_record(&s, err);
			last_save = now_s();
			if (rc)
				break;
		}
		if (now_s() - last_tick >= TICK_INTERVAL) {
			tick(net);
			last_tick = now_s();
		}
		if (!all_done(&s))
			curl_multi_poll(net->multi, NULL, 0, 100, NULL);
	}
	stop_all(&s);
	/* Whatever happened, remember what is on disk for the next attempt. */
	if (flush_progress(&s) == 0 && !hub_ranges_complete(d->done)) {
		struct smelt_err tmp;
		int src = hub_ranges_save(d->record_path, d->done, &tmp);
		if (!rc && src)
			rc = smelt_fail(err, src, "%s", tmp.msg);
	}
	free(s.jobs);
	if (!rc && !hub_ranges_complete(d->done))
		rc = smelt_fail(err, SMELT_ENET, "%s: download ended incomplete", d->name);
	return rc;
}

int hub_http_fetch(struct hub_net *net, bool head, const char *url, size_t body_cap,
                   struct hub_resp *r, struct smelt_err *err)
{
	char cur[HUB_URL_MAX], origin[1024];

	snprintf(cur, sizeof(cur), "%s", url);
	/* A relative Location is the Hub itself (a renamed repo): follow it
	 * here, token included; an absolute one (a CDN) is the caller's. */
	for (int hops = 0;; hops++) {
		int rc = fetch_retrying(net, head, cur, body_cap, r, err);
		if (rc || r->status < 300 || r->status >= 400 || r->location[0] != '/')
			return rc;
		if (hops >= 10)
			return smelt_fail(err, SMELT_ENET, "too many redirects from %s", url);
		if (!origin_of(cur, origin, sizeof(origin)) ||
		    (size_t)snprintf(cur, sizeof(cur), "%s%s", origin, r->location) >= sizeof(cur))
			return smelt_fail(err, SMELT_ENET, "cannot follow the redirect from %s",
			                  url);
	}
}

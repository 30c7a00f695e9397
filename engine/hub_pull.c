/*
 * hub_pull.c: resolving a reference and filling the cache.
 *
 * 1. Ask the API which commit the revision names and which files it holds
 *    (/api/models/{repo}/revision/{rev}?blobs=true, or the paginated tree
 *    listing when the answer carries no file list).
 * 2. Keep the files a merge needs (or the caller's globs).
 * 3. For every file not yet in snapshots/<commit>/: HEAD its resolve URL
 *    for the ETag, size and download location, reuse blobs/<etag> if some
 *    other revision already brought it, else download under the blob's lock,
 *    verify, move into blobs/ and link.
 * 4. Write refs/<revision> last, so a cache lookup only ever finds a
 *    snapshot whose files were all fetched.
 */
#include "hub_internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

struct hub_file {
	char *name;
	uint64_t size; /* from the listing; the HEAD answer is authoritative */
};

struct pull {
	const struct smelt_hub_pull_opts *o;
	struct smelt_hub_progress *p;
	struct smelt_hub_progress own; /* used when the caller passes none */
	struct smelt_hub_ref ref;
	char cache[SMELT_HUB_PATH_MAX];
	char repo_path[SMELT_HUB_PATH_MAX];
	char folder[SMELT_HUB_REPO_MAX + 16];
	char endpoint[1024];
	char commit[41];
	struct hub_net net;
	struct hub_file *files;
	size_t n_files;
	/* rate estimate */
	double rate_t;
	uint64_t rate_bytes;
	double rate;
	double last_report;
};

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static CURLcode init_result;

static void init_curl(void)
{
	init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int smelt_hub_init(struct smelt_err *err)
{
	pthread_once(&init_once, init_curl);
	if (init_result != CURLE_OK)
		return smelt_fail(err, SMELT_ENET, "libcurl initialisation failed: %s",
		                  curl_easy_strerror(init_result));
	return 0;
}

/* ---- progress ---- */

void smelt_hub_progress_init(struct smelt_hub_progress *p)
{
	memset(p, 0, sizeof(*p));
	pthread_mutex_init(&p->lock, NULL);
}

void smelt_hub_progress_destroy(struct smelt_hub_progress *p)
{
	pthread_mutex_destroy(&p->lock);
}

void smelt_hub_progress_current(struct smelt_hub_progress *p, char *buf, size_t n)
{
	pthread_mutex_lock(&p->lock);
	snprintf(buf, n, "%s", p->current);
	pthread_mutex_unlock(&p->lock);
}

static void set_current(struct smelt_hub_progress *p, const char *name)
{
	pthread_mutex_lock(&p->lock);
	snprintf(p->current, sizeof(p->current), "%s", name);
	pthread_mutex_unlock(&p->lock);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void report(struct pull *pl)
{
	if (pl->o->on_progress)
		pl->o->on_progress(pl->o->ctx, pl->p);
	pl->last_report = now_s();
}

/* Called about 10 times a second by the HTTP layer: update the rate (an
 * exponential average with a ~2 s horizon) and tell the caller. */
static void on_tick(void *ctx)
{
	struct pull *pl = ctx;
	double t = now_s(), dt = t - pl->rate_t;
	uint64_t bytes = atomic_load(&pl->p->bytes_done);

	if (dt >= 0.2) {
		double inst = bytes >= pl->rate_bytes ? (double)(bytes - pl->rate_bytes) / dt : 0;
		double w = dt / 2.0 > 1.0 ? 1.0 : dt / 2.0;
		pl->rate = pl->rate == 0 ? inst : pl->rate + w * (inst - pl->rate);
		pl->rate_t = t;
		pl->rate_bytes = bytes;
		atomic_store(&pl->p->rate, (uint64_t)pl->rate);
	}
	if (t - pl->last_report >= 0.1)
		report(pl);
}

static void message(struct pull *pl, const char *msg)
{
	if (pl->o->on_message)
		pl->o->on_message(pl->o->ctx, msg);
}

/* ---- errors ---- */

/* One plain message per failure the Hub can signal. */
static int hub_error(struct pull *pl, const struct hub_resp *r, const char *file,
                     struct smelt_err *err)
{
	const char *repo = pl->ref.repo, *rev = pl->ref.revision, *code = r->error_code;
	bool tok = pl->net.has_token;

	if (strcmp(code, "GatedRepo") == 0)
		return smelt_fail(
		    err, SMELT_EAUTH,
		    tok ? "%s is a gated repository and your token has no access: "
		          "accept its conditions on the Hub"
		        : "%s is a gated repository: accept its conditions on the Hub "
		          "and set HF_TOKEN (or log in to create the token file)",
		    repo);
	if (strcmp(code, "RepoNotFound") == 0 || (r->status == 404 && !file && !*code))
		return smelt_fail(err, SMELT_ENOTFOUND,
		                  tok ? "repository %s not found (or your token cannot see it)"
		                      : "repository %s not found (if it is private, set HF_TOKEN)",
		                  repo);
	if (strcmp(code, "RevisionNotFound") == 0)
		return smelt_fail(err, SMELT_ENOTFOUND, "revision '%s' not found in %s", rev, repo);
	if (strcmp(code, "EntryNotFound") == 0 || (r->status == 404 && file))
		return smelt_fail(err, SMELT_ENOTFOUND, "file '%s' missing from %s@%s",
		                  file ? file : "?", repo, rev);
	if (r->status == 401)
		return tok ? smelt_fail(err, SMELT_EAUTH,
		                        "the Hub rejected the token (check HF_TOKEN or the token "
		                        "file) for %s",
		                        repo)
		           : smelt_fail(err, SMELT_ENOTFOUND,
		                        "repository %s not found (if it is private or gated, set "
		                        "HF_TOKEN)",
		                        repo);
	if (r->status == 403)
		return smelt_fail(err, SMELT_EAUTH,
		                  tok ? "your token lacks permission to read %s"
		                      : "access to %s is forbidden",
		                  repo);
	return smelt_fail(err, SMELT_ENET, "%s%s%s: unexpected HTTP %ld from the Hub", repo,
	                  file ? "/" : "", file ? file : "", r->status);
}

/* ---- listing ---- */

static void files_free(struct pull *pl)
{
	for (size_t i = 0; i < pl->n_files; i++)
		free(pl->files[i].name);
	free(pl->files);
	pl->files = NULL;
	pl->n_files = 0;
}

static int add_file(struct pull *pl, const char *name, uint64_t size, struct smelt_err *err)
{
	void *v;

	if (smelt_hub_filename_check(name, err))
		return smelt_err_prefix(err, "%s lists an unsafe file name", pl->ref.repo);
	if (!hub_file_selected(name, pl->o->include, pl->o->n_include, pl->o->exclude,
	                       pl->o->n_exclude))
		return 0;
	v = realloc(pl->files, (pl->n_files + 1) * sizeof(*pl->files));
	if (!v)
		return smelt_fail(err, SMELT_ENOMEM, "out of memory");
	pl->files = v;
	pl->files[pl->n_files].name = strdup(name);
	if (!pl->files[pl->n_files].name)
		return smelt_fail(err, SMELT_ENOMEM, "out of memory");
	pl->files[pl->n_files++].size = size;
	return 0;
}

static cJSON *parse_json(const struct hub_resp *r, const char *what, struct smelt_err *err)
{
	const char *end = NULL;
	cJSON *j = r->body ? cJSON_ParseWithLengthOpts(r->body, r->len, &end, 0) : NULL;

	if (!j)
		smelt_fail(err, SMELT_EFORMAT, "%s: the Hub answered something that is not JSON",
		           what);
	return j;
}

static uint64_t json_size(const cJSON *item, const char *lfs_key)
{
	const cJSON *lfs = cJSON_GetObjectItemCaseSensitive(item, "lfs");
	const cJSON *s = cJSON_GetObjectItemCaseSensitive(lfs, lfs_key);

	if (!cJSON_IsNumber(s))
		s = cJSON_GetObjectItemCaseSensitive(item, "size");
	return cJSON_IsNumber(s) && s->valuedouble >= 0 ? (uint64_t)s->valuedouble : 0;
}

/* The paginated tree listing: GET .../tree/{commit}?recursive=true, then
 * every Link rel="next" page. */
static int list_tree(struct pull *pl, struct smelt_err *err)
{
	char url[HUB_URL_MAX], qrev[SMELT_HUB_REV_MAX * 3 + 1];
	struct hub_resp r = {0};
	int rc = 0, pages = 0;

	hub_quote(pl->commit, false, qrev, sizeof(qrev));
	snprintf(url, sizeof(url), "%s/api/models/%s/tree/%s?recursive=true&expand=false",
	         pl->endpoint, pl->ref.repo, qrev);
	while (!rc && url[0]) {
		cJSON *j, *item;

		if (++pages > 10000)
			return smelt_fail(err, SMELT_EFORMAT, "%s: endless file listing",
			                  pl->ref.repo);
		rc = hub_http_fetch(&pl->net, false, url, HUB_API_BODY_MAX, &r, err);
		if (rc)
			break;
		if (r.status != 200) {
			rc = hub_error(pl, &r, NULL, err);
			break;
		}
		j = parse_json(&r, pl->ref.repo, err);
		if (!j || !cJSON_IsArray(j)) {
			cJSON_Delete(j);
			rc = smelt_fail(err, SMELT_EFORMAT, "%s: malformed file listing",
			                pl->ref.repo);
			break;
		}
		cJSON_ArrayForEach(item, j)
		{
			const cJSON *type = cJSON_GetObjectItemCaseSensitive(item, "type");
			const cJSON *path = cJSON_GetObjectItemCaseSensitive(item, "path");
			if (!cJSON_IsString(type) || strcmp(type->valuestring, "file") != 0)
				continue;
			if (!cJSON_IsString(path)) {
				rc = smelt_fail(err, SMELT_EFORMAT, "%s: malformed file listing",
				                pl->ref.repo);
				break;
			}
			rc = add_file(pl, path->valuestring, json_size(item, "size"), err);
			if (rc)
				break;
		}
		cJSON_Delete(j);
		if (r.link_next[0] && !hub_same_origin(r.link_next, pl->endpoint)) {
			rc = smelt_fail(err, SMELT_EFORMAT,
			                "%s: file listing continues on another host", pl->ref.repo);
			break;
		}
		snprintf(url, sizeof(url), "%s", r.link_next);
	}
	hub_resp_free(&r);
	return rc;
}

/* Resolve the revision to a commit and collect the selected files. */
static int list_repo(struct pull *pl, struct smelt_err *err)
{
	char url[HUB_URL_MAX], qrev[SMELT_HUB_REV_MAX * 3 + 1];
	struct hub_resp r = {0};
	cJSON *j = NULL, *sha, *siblings, *item;
	int rc;

	hub_quote(pl->ref.revision, false, qrev, sizeof(qrev));
	snprintf(url, sizeof(url), "%s/api/models/%s/revision/%s?blobs=true", pl->endpoint,
	         pl->ref.repo, qrev);
	rc = hub_http_fetch(&pl->net, false, url, HUB_API_BODY_MAX, &r, err);
	if (rc)
		goto out;
	if (r.status != 200) {
		rc = hub_error(pl, &r, NULL, err);
		goto out;
	}
	j = parse_json(&r, pl->ref.repo, err);
	if (!j) {
		rc = SMELT_EFORMAT;
		goto out;
	}
	sha = cJSON_GetObjectItemCaseSensitive(j, "sha");
	if (!cJSON_IsString(sha) || !smelt_hub_is_commit(sha->valuestring)) {
		rc = smelt_fail(err, SMELT_EFORMAT, "%s@%s: the Hub's answer has no commit hash",
		                pl->ref.repo, pl->ref.revision);
		goto out;
	}
	memcpy(pl->commit, sha->valuestring, 41);
	siblings = cJSON_GetObjectItemCaseSensitive(j, "siblings");
	if (!cJSON_IsArray(siblings)) {
		rc = list_tree(pl, err);
		goto out;
	}
	cJSON_ArrayForEach(item, siblings)
	{
		const cJSON *name = cJSON_GetObjectItemCaseSensitive(item, "rfilename");
		if (!cJSON_IsString(name)) {
			rc =
			    smelt_fail(err, SMELT_EFORMAT, "%s: malformed file list", pl->ref.repo);
			goto out;
		}
		rc = add_file(pl, name->valuestring, json_size(item, "size"), err);
		if (rc)
			goto out;
	}
out:
	cJSON_Delete(j);
	hub_resp_free(&r);
	return rc;
}

static bool has_weights(const struct pull *pl)
{
	for (size_t i = 0; i < pl->n_files; i++) {
		size_t len = strlen(pl->files[i].name);
		if (len > 12 && strcmp(pl->files[i].name + len - 12, ".safetensors") == 0)
			return true;
	}
	return false;
}

/* ---- one file ---- */

struct file_meta {
	char etag[HUB_ETAG_MAX];
	uint64_t size;
	char url[HUB_URL_MAX]; /* where the bytes are */
};

/* HEAD the resolve URL (relative redirects of renamed repos are followed by
 * hub_http_fetch); an absolute redirect names the download location. */
static int file_meta(struct pull *pl, const char *file, struct file_meta *m, struct smelt_err *err)
{
	char qfile[SMELT_HUB_PATH_MAX * 3 + 1], url[HUB_URL_MAX];
	struct hub_resp r = {0};
	int rc = 0;

	if (hub_quote(file, true, qfile, sizeof(qfile)))
		return smelt_fail(err, SMELT_EINVAL, "%s: file name too long", file);
	snprintf(url, sizeof(url), "%s/%s/resolve/%s/%s", pl->endpoint, pl->ref.repo, pl->commit,
	         qfile);
	rc = hub_http_fetch(&pl->net, true, url, 0, &r, err);
	if (rc)
		goto out;
	bool redirect = r.status >= 300 && r.status < 400 && r.location[0];
	if (!redirect && r.status != 200) {
		rc = hub_error(pl, &r, file, err);
		goto out;
	}
	if (!r.commit[0]) {
		rc =
		    smelt_fail(err, SMELT_ENET,
		               "%s: %s does not answer like the Hugging Face Hub (no X-Repo-Commit "
		               "header)",
		               file, pl->endpoint);
		goto out;
	}
	if (!r.etag[0] || r.size < 0) {
		rc = smelt_fail(err, SMELT_ENET,
		                "%s: the Hub sent no usable ETag or size for this file", file);
		goto out;
	}
	snprintf(m->etag, sizeof(m->etag), "%s", r.etag);
	m->size = (uint64_t)r.size;
	/* Bytes come from the CDN the Hub points at, or from the answer's URL. */
	snprintf(m->url, sizeof(m->url), "%s", redirect ? r.location : r.url);
out:
	hub_resp_free(&r);
	return rc;
}

/* SHA-256 of a file that may still be being written: [0, prefix) is hashed
 * as it grows, from the start again whenever epoch changes. During a
 * download it runs on its own thread, so verification overlaps the
 * transfer instead of following it. */
struct hasher {
	int fd;
	uint64_t size;
	_Atomic uint64_t prefix;
	_Atomic unsigned epoch;
	_Atomic bool stop;
	const atomic_bool *cancel;
	char hex[65];
	struct smelt_err err;
	int rc;
	pthread_t thread;
	bool threaded;
};

static bool hasher_stopped(struct hasher *h)
{
	return atomic_load(&h->stop) || (h->cancel && atomic_load(h->cancel));
}

/* One pass from byte 0; *again is set when the bytes changed under us. */
static int hash_pass(struct hasher *h, EVP_MD_CTX *ctx, const unsigned char *map,
                     unsigned char *buf, size_t chunk, bool *again)
{
	unsigned epoch = atomic_load(&h->epoch);
	unsigned char md[32];
	uint64_t off = 0;

	*again = false;
	if (!EVP_DigestInit_ex(ctx, EVP_sha256(), NULL))
		return smelt_fail(&h->err, SMELT_ENOMEM, "cannot set up SHA-256");
	while (off < h->size) {
		uint64_t ready = atomic_load(&h->prefix);
		if (hasher_stopped(h))
			return smelt_fail(&h->err, SMELT_ECANCELED, "cancelled");
		if (atomic_load(&h->epoch) != epoch) {
			*again = true;
			return 0;
		}
		if (off >= ready) {
			nanosleep(&(struct timespec){.tv_nsec = 2 * 1000 * 1000}, NULL);
			continue;
		}
		size_t want = ready - off < chunk ? (size_t)(ready - off) : chunk;
		const unsigned char *data = map ? map + off : buf;
		ssize_t got = map ? (ssize_t)want : pread(h->fd, buf, want, (off_t)off);
		if (got <= 0) {
			if (got < 0 && errno == EINTR)
				continue;
			return smelt_fail(&h->err, SMELT_EIO, "read failed while hashing: %s",
			                  got < 0 ? strerror(errno) : "file shorter than expected");
		}
		if (atomic_load(&h->epoch) != epoch) {
			*again = true;
			return 0;
		}
		EVP_DigestUpdate(ctx, data, (size_t)got);
		off += (uint64_t)got;
	}
	EVP_DigestFinal_ex(ctx, md, NULL);
	for (int i = 0; i < 32; i++)
		snprintf(h->hex + 2 * i, 3, "%02x", md[i]);
	return 0;
}

static void *hash_file(void *arg)
{
	enum { CHUNK = 4 << 20 };
	struct hasher *h = arg;
	unsigned char *buf = malloc(CHUNK), *map = NULL;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	bool again = true;

	/* Hash straight from the page cache through a mapping (the file is
	 * preallocated to its full size and never truncated while we run);
	 * pread() into a buffer when mapping is not possible. */
	if (h->size > 0 && h->size <= SIZE_MAX) {
		map = mmap(NULL, (size_t)h->size, PROT_READ, MAP_SHARED, h->fd, 0);
		if (map == MAP_FAILED)
			map = NULL;
		else
			madvise(map, (size_t)h->size, MADV_SEQUENTIAL);
	}
	if (!map)
		posix_fadvise(h->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	h->rc = buf && ctx ? 0 : smelt_fail(&h->err, SMELT_ENOMEM, "out of memory");
	while (!h->rc && again)
		h->rc = hash_pass(h, ctx, map, buf, CHUNK, &again);
	if (map)
		munmap(map, (size_t)h->size);
	EVP_MD_CTX_free(ctx);
	free(buf);
	return NULL;
}

static int preallocate(int fd, uint64_t size, const char *dir, const char *file,
                       struct smelt_err *err)
{
	int e;

	if (size == 0)
		return ftruncate(fd, 0) == 0
		           ? 0
		           : smelt_fail(err, SMELT_EIO, "%s: %s", file, strerror(errno));
	e = posix_fallocate(fd, 0, (off_t)size);
	if (e == EOPNOTSUPP || e == EINVAL)
		e = ftruncate(fd, (off_t)size) == 0 ? 0 : errno;
	if (e == ENOSPC || e == EDQUOT || e == EFBIG)
		return smelt_fail(err, SMELT_EIO, "disk full: %s needs %" PRIu64 " bytes in %s",
		                  file, size, dir);
	if (e)
		return smelt_fail(err, SMELT_EIO, "%s: cannot allocate the download: %s", file,
		                  strerror(e));
	return 0;
}

/* Bytes still free for us in dir, or UINT64_MAX when unknown. */
static uint64_t free_space(const char *dir)
{
	struct statvfs sv;

	if (statvfs(dir, &sv) != 0)
		return UINT64_MAX;
	return (uint64_t)sv.f_bavail * (uint64_t)sv.f_frsize;
}

/* Download into blobs/<etag>.smelt.incomplete (resuming from its record), verify
 * and move to blobs/<etag>. Called with the blob's lock held. */
static int fetch_blob(struct pull *pl, const char *file, const struct file_meta *m,
                      struct smelt_err *err)
{
	char blobs[SMELT_HUB_PATH_MAX], inc[SMELT_HUB_PATH_MAX + 64], rec[SMELT_HUB_PATH_MAX + 80],
	    blob[SMELT_HUB_PATH_MAX + 64];
	struct hub_ranges done;
	struct stat st;
	uint64_t have;
	int fd = -1, rc;

	snprintf(blobs, sizeof(blobs), "%s/blobs", pl->repo_path);
	snprintf(blob, sizeof(blob), "%s/%s", blobs, m->etag);
	/* Not huggingface_hub's "<etag>.incomplete": its older versions resume
	 * such a file by appending from its size, which would trust the holes
	 * of our preallocated, partly written file. */
	snprintf(inc, sizeof(inc), "%s.smelt.incomplete", blob);
	snprintf(rec, sizeof(rec), "%s.ranges", inc);
	hub_ranges_init(&done, m->size);
	rc = hub_mkdirs(blobs, err);
	if (rc)
		goto out;
	fd = open(inc, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
	if (fd < 0) {
		rc = smelt_fail(err, SMELT_EIO, "%s: %s", inc,
		                errno == ENOSPC ? "disk full" : strerror(errno));
		goto out;
	}
	/* A record only counts for a file of the expected size. */
	if (fstat(fd, &st) == 0 && (uint64_t)st.st_size == m->size)
		rc = hub_ranges_load(rec, m->size, &done);
	if (rc)
		goto out;
	have = hub_ranges_covered(&done);
	if (m->size - have > free_space(blobs) && (uint64_t)st.st_size != m->size) {
		rc = smelt_fail(err, SMELT_EIO,
		                "disk full: %s needs %" PRIu64 " bytes, %" PRIu64 " free in %s",
		                file, m->size - have, free_space(blobs), blobs);
		goto out;
	}
	rc = preallocate(fd, m->size, blobs, file, err);
	if (rc)
		goto out;
	atomic_store(&pl->p->file_bytes_total, m->size);
	atomic_store(&pl->p->file_bytes_done, have);
	atomic_fetch_add(&pl->p->bytes_done, have);
	atomic_store(&pl->p->phase, SMELT_HUB_DOWNLOADING);
	report(pl);
	struct hub_download d = {
	    .url = m->url,
	    .name = file,
	    .fd = fd,
	    .size = m->size,
	    .done = &done,
	    .record_path = rec,
	    .connections =
	        pl->o->connections > 0 ? pl->o->connections : SMELT_HUB_DEFAULT_CONNECTIONS,
	    .counters = {&pl->p->bytes_done, &pl->p->file_bytes_done},
	    .active = &pl->p->connections,
	};
	bool verify = hub_is_sha256(m->etag);
	struct hasher h = {.fd = fd, .size = m->size, .cancel = pl->o->cancel};
	if (verify) {
		atomic_store(&h.prefix, done.n && done.v[0].start == 0 ? done.v[0].end : 0);
		h.threaded = pthread_create(&h.thread, NULL, hash_file, &h) == 0;
		if (h.threaded) {
			d.prefix = &h.prefix;
			d.epoch = &h.epoch;
		}
	}
	rc = hub_http_download(&pl->net, &d, err);
	if (verify) {
		/* Finish (or abandon) the hash; without a thread, hash now. */
		if (rc)
			atomic_store(&h.stop, true);
		atomic_store(&h.prefix, m->size);
		if (!rc) {
			atomic_store(&pl->p->phase, SMELT_HUB_VERIFYING);
			report(pl);
		}
		if (h.threaded)
			pthread_join(h.thread, NULL);
		else if (!rc)
			hash_file(&h);
		if (!rc && h.rc)
			rc = smelt_fail(err, h.rc, "%s: %s", file, h.err.msg);
	}
	if (rc)
		goto out;
	if (verify) {
		const char *got = h.hex;
		if (strcmp(got, m->etag) != 0) {
			unlink(inc);
			unlink(rec);
			rc = smelt_fail(err, SMELT_ECHECKSUM,
			                "checksum mismatch for %s: expected sha256 %s, got %s (the "
			                "download was discarded)",
			                file, m->etag, got);
			goto out;
		}
	}
	if (close(fd) != 0) {
		fd = -1;
		rc = smelt_fail(err, SMELT_EIO, "%s: %s", inc, strerror(errno));
		goto out;
	}
	fd = -1;
	if (rename(inc, blob) != 0) {
		rc = smelt_fail(err, SMELT_EIO, "%s: %s", blob, strerror(errno));
		goto out;
	}
	unlink(rec);
out:
	if (fd >= 0)
		close(fd);
	hub_ranges_free(&done);
	return rc;
}

static bool blob_ok(const char *repo_path, const char *etag, uint64_t size)
{
	char path[SMELT_HUB_PATH_MAX];
	struct stat st;

	snprintf(path, sizeof(path), "%s/blobs/%s", repo_path, etag);
	return stat(path, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size == size;
}

static int pull_file(struct pull *pl, const struct hub_file *f, struct smelt_err *err)
{
	struct file_meta m;
	char lock[SMELT_HUB_PATH_MAX];
	int fd = -1, rc;

	set_current(pl->p, f->name);
	atomic_store(&pl->p->file_bytes_total, f->size);
	atomic_store(&pl->p->file_bytes_done, 0);
	report(pl);
	rc = file_meta(pl, f->name, &m, err);
	if (rc)
		return rc;
	/* The listing's size was only an estimate for the totals. */
	if (m.size != f->size) {
		atomic_fetch_add(&pl->p->bytes_total, m.size);
		atomic_fetch_sub(&pl->p->bytes_total, f->size);
	}
	if (!blob_ok(pl->repo_path, m.etag, m.size)) {
		snprintf(lock, sizeof(lock), "%s/.locks/%s/%s.lock", pl->cache, pl->folder, m.etag);
		rc = hub_lock(lock, pl->o->cancel, &fd, err);
		if (rc)
			return rc;
		/* Another process may have finished it while we waited. */
		if (!blob_ok(pl->repo_path, m.etag, m.size))
			rc = fetch_blob(pl, f->name, &m, err);
		else
			atomic_fetch_sub(&pl->p->bytes_total, m.size);
		hub_unlock(fd);
		if (rc)
			return rc;
	} else {
		/* Shared with a revision already cached: nothing to transfer. */
		atomic_fetch_sub(&pl->p->bytes_total, m.size);
	}
	rc = hub_cache_link(pl->repo_path, pl->commit, f->name, m.etag, err);
	if (rc)
		return rc;
	atomic_fetch_add(&pl->p->files_done, 1);
	atomic_store(&pl->p->file_bytes_done, m.size);
	report(pl);
	return 0;
}

/* ---- the whole pull ---- */

static bool offline_requested(const struct smelt_hub_pull_opts *o)
{
	return o->offline || hub_env_truthy("HF_HUB_OFFLINE") ||
	       hub_env_truthy("TRANSFORMERS_OFFLINE");
}

static int from_cache(struct pull *pl, char *snapshot, size_t n, struct smelt_err *err)
{
	return smelt_hub_cache_lookup(pl->cache, &pl->ref, snapshot, n, err);
}

static int setup(struct pull *pl, const struct smelt_hub_pull_opts *o, struct smelt_err *err)
{
	int rc;

	pl->o = o;
	pl->p = o->progress;
	if (!pl->p) {
		smelt_hub_progress_init(&pl->own);
		pl->p = &pl->own;
	}
	rc = smelt_hub_ref_parse(o->repo, &pl->ref, err);
	if (rc)
		return rc;
	if (o->revision) {
		rc = smelt_hub_revision_check(o->revision, err);
		if (rc)
			return rc;
		snprintf(pl->ref.revision, sizeof(pl->ref.revision), "%s", o->revision);
		pl->ref.explicit_revision = true;
	}
	if (o->cache_dir && *o->cache_dir) {
		if ((size_t)snprintf(pl->cache, sizeof(pl->cache), "%s", o->cache_dir) >=
		    sizeof(pl->cache))
			return smelt_fail(err, SMELT_EINVAL, "cache folder path too long");
	} else if (smelt_hub_cache_dir(pl->cache, sizeof(pl->cache))) {
		return smelt_fail(err, SMELT_EINVAL,
		                  "no Hugging Face cache folder (set HF_HUB_CACHE or HOME)");
	}
	if (hub_repo_folder(pl->ref.repo, pl->folder, sizeof(pl->folder)) ||
	    hub_cache_repo_path(pl->cache, pl->ref.repo, pl->repo_path, sizeof(pl->repo_path)))
		return smelt_fail(err, SMELT_EINVAL, "cache folder path too long");
	return 0;
}

static int pull_online(struct pull *pl, char *snapshot, size_t n, struct smelt_err *err)
{
	char token[HUB_TOKEN_MAX];
	int rc;

	rc = hub_endpoint(pl->o->endpoint, pl->endpoint, sizeof(pl->endpoint), err);
	if (!rc)
		rc = hub_token(pl->o->token, token, sizeof(token), err);
	if (!rc)
		rc = hub_net_init(&pl->net, pl->endpoint, token, pl->o->cancel, err);
	memset(token, 0, sizeof(token));
	if (rc)
		return rc;
	pl->net.tick = on_tick;
	pl->net.tick_ctx = pl;

	rc = list_repo(pl, err);
	if (rc == SMELT_ENET) {
		/* The Hub is unreachable: a cached snapshot still serves. */
		struct smelt_err e2;
		if (from_cache(pl, snapshot, n, &e2) == 0) {
			char msg[SMELT_ERR_MAX + 64];
			snprintf(msg, sizeof(msg), "%s; using the cached snapshot", err->msg);
			message(pl, msg);
			smelt_err_clear(err);
			return 0;
		}
		return smelt_err_prefix(err, "%s@%s is not cached and the Hub is unreachable",
		                        pl->ref.repo, pl->ref.revision);
	}
	if (rc)
		return rc;
	if (pl->n_files == 0)
		return smelt_fail(err, SMELT_ENOTFOUND, "%s@%s: no file matches the selection",
		                  pl->ref.repo, pl->ref.revision);
	if (pl->o->n_include == 0 && !has_weights(pl))
		return smelt_fail(err, SMELT_ENOTFOUND,
		                  "%s@%s has no .safetensors weights (smelt merges safetensors "
		                  "checkpoints)",
		                  pl->ref.repo, pl->ref.revision);

	/* Totals first, so the progress bar knows its length. */
	atomic_store(&pl->p->files_total, (int)pl->n_files);
	for (size_t i = 0; i < pl->n_files; i++) {
		if (hub_cache_snapshot_has(pl->repo_path, pl->commit, pl->files[i].name))
			atomic_fetch_add(&pl->p->files_done, 1);
		else
			atomic_fetch_add(&pl->p->bytes_total, pl->files[i].size);
	}
	report(pl);
	for (size_t i = 0; i < pl->n_files && !rc; i++)
		if (!hub_cache_snapshot_has(pl->repo_path, pl->commit, pl->files[i].name))
			rc = pull_file(pl, &pl->files[i], err);
	set_current(pl->p, "");
	if (rc)
		return rc;
	if (strcmp(pl->ref.revision, pl->commit) != 0) {
		rc = hub_cache_write_ref(pl->repo_path, pl->ref.revision, pl->commit, err);
		if (rc)
			return rc;
	}
	if ((size_t)snprintf(snapshot, n, "%s/snapshots/%s", pl->repo_path, pl->commit) >= n)
		return smelt_fail(err, SMELT_EINVAL, "snapshot path too long");
	/* A repo whose files were all cached still gets its snapshot folder. */
	return hub_mkdirs(snapshot, err);
}

int smelt_hub_pull(const struct smelt_hub_pull_opts *opts, char *snapshot, size_t n,
                   struct smelt_err *err)
{
	struct pull pl;
	int rc;

	memset(&pl, 0, sizeof(pl));
	pl.rate_t = now_s();
	rc = smelt_hub_init(err);
	if (!rc)
		rc = setup(&pl, opts, err);
	if (!rc) {
		atomic_store(&pl.p->phase, SMELT_HUB_RESOLVING);
		if (offline_requested(opts)) {
			rc = from_cache(&pl, snapshot, n, err);
			if (rc == SMELT_ENOTFOUND)
				rc = smelt_fail(err, SMELT_ENOTFOUND,
				                "offline mode (HF_HUB_OFFLINE) and %s@%s is not in "
				                "the cache %s",
				                pl.ref.repo, pl.ref.revision, pl.cache);
		} else {
			rc = pull_online(&pl, snapshot, n, err);
		}
	}
	if (pl.p) {
		atomic_store(&pl.p->rate, 0);
		atomic_store(&pl.p->phase, SMELT_HUB_DONE);
		if (pl.o)
			report(&pl);
	}
	hub_net_free(&pl.net);
	files_free(&pl);
	if (pl.p == &pl.own)
		smelt_hub_progress_destroy(&pl.own);
	return rc;
}

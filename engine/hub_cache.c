/*
 * hub_cache.c: the huggingface_hub cache layout.
 *
 *   <cache>/models--org--name/blobs/<etag>
 *   <cache>/models--org--name/refs/<revision>            (commit, no newline)
 *   <cache>/models--org--name/snapshots/<commit>/<path>  -> ../../blobs/<etag>
 *   <cache>/.locks/models--org--name/<etag>.lock
 *
 * Every file that other processes may read (refs, links) is replaced
 * atomically with rename(), so readers never see half a file.
 */
#include "hub_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int hub_mkdirs(const char *path, struct smelt_err *err)
{
	char buf[SMELT_HUB_PATH_MAX];
	size_t len = strlen(path);

	if (len >= sizeof(buf))
		return smelt_fail(err, SMELT_EINVAL, "%s: path too long", path);
	memcpy(buf, path, len + 1);
	for (char *p = buf + 1;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char c = *p;
		*p = '\0';
		if (mkdir(buf, 0777) != 0 && errno != EEXIST)
			return smelt_fail(err, SMELT_EIO, "%s: cannot create folder: %s", buf,
			                  errno == ENOSPC ? "disk full" : strerror(errno));
		*p = c;
		if (c == '\0')
			break;
	}
	return 0;
}

static int parent_mkdirs(const char *path, struct smelt_err *err)
{
	char buf[SMELT_HUB_PATH_MAX];
	char *slash;

	snprintf(buf, sizeof(buf), "%s", path);
	slash = strrchr(buf, '/');
	if (!slash || slash == buf)
		return 0;
	*slash = '\0';
	return hub_mkdirs(buf, err);
}

int hub_cache_repo_path(const char *cache, const char *repo, char *out, size_t n)
{
	char folder[SMELT_HUB_REPO_MAX + 16];

	if (hub_repo_folder(repo, folder, sizeof(folder)))
		return SMELT_EINVAL;
	return (size_t)snprintf(out, n, "%s/%s", cache, folder) < n ? 0 : SMELT_EINVAL;
}

int hub_cache_read_ref(const char *repo_path, const char *rev, char commit[41])
{
	char path[SMELT_HUB_PATH_MAX], text[64];
	FILE *f;
	size_t got;

	if ((size_t)snprintf(path, sizeof(path), "%s/refs/%s", repo_path, rev) >= sizeof(path))
		return SMELT_ENOTFOUND;
	f = fopen(path, "r");
	if (!f)
		return SMELT_ENOTFOUND;
	got = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[got] = '\0';
	while (got > 0 && (text[got - 1] == '\n' || text[got - 1] == '\r' || text[got - 1] == ' '))
		text[--got] = '\0';
	if (!smelt_hub_is_commit(text))
		return SMELT_ENOTFOUND;
	memcpy(commit, text, 41);
	return 0;
}

/* Write data to path through a process-unique temporary and rename(). */
static int write_atomic(const char *path, const char *data, struct smelt_err *err)
{
	char tmp[SMELT_HUB_PATH_MAX + 32];
	size_t len = strlen(data);
	int fd;
	ssize_t w;

	snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
	if (fd < 0)
		return smelt_fail(err, SMELT_EIO, "%s: %s", tmp,
		                  errno == ENOSPC ? "disk full" : strerror(errno));
	w = write(fd, data, len);
	if (close(fd) != 0 || w != (ssize_t)len || rename(tmp, path) != 0) {
		int e = errno;
		unlink(tmp);
		return smelt_fail(err, SMELT_EIO, "%s: %s", path,
		                  e == ENOSPC ? "disk full" : strerror(e));
	}
	return 0;
}

int hub_cache_write_ref(const char *repo_path, const char *rev, const char *commit,
                        struct smelt_err *err)
{
	char path[SMELT_HUB_PATH_MAX];
	char old[41];
	int rc;

	if (hub_cache_read_ref(repo_path, rev, old) == 0 && strcmp(old, commit) == 0)
		return 0;
	if ((size_t)snprintf(path, sizeof(path), "%s/refs/%s", repo_path, rev) >= sizeof(path))
		return smelt_fail(err, SMELT_EINVAL, "%s: path too long", repo_path);
	rc = parent_mkdirs(path, err);
	return rc ? rc : write_atomic(path, commit, err);
}

bool hub_cache_snapshot_has(const char *repo_path, const char *commit, const char *file)
{
	char path[SMELT_HUB_PATH_MAX];
	struct stat st;

	if ((size_t)snprintf(path, sizeof(path), "%s/snapshots/%s/%s", repo_path, commit, file) >=
	    sizeof(path))
		return false;
	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int hub_cache_link(const char *repo_path, const char *commit, const char *file, const char *etag,
                   struct smelt_err *err)
{
	char path[SMELT_HUB_PATH_MAX], tmp[SMELT_HUB_PATH_MAX + 32], target[SMELT_HUB_PATH_MAX];
	size_t t = 0;
	int rc;

	if ((size_t)snprintf(path, sizeof(path), "%s/snapshots/%s/%s", repo_path, commit, file) >=
	    sizeof(path))
		return smelt_fail(err, SMELT_EINVAL, "%s: path too long", file);
	/* One "../" per folder between the link and the repo folder. */
	int ups = 2;
	for (const char *p = file; *p; p++)
		ups += *p == '/';
	for (int i = 0; i < ups && t + 3 < sizeof(target); i++, t += 3)
		memcpy(target + t, "../", 3);
	if ((size_t)snprintf(target + t, sizeof(target) - t, "blobs/%s", etag) >=
	    sizeof(target) - t)
		return smelt_fail(err, SMELT_EINVAL, "%s: path too long", file);
	rc = parent_mkdirs(path, err);
	if (rc)
		return rc;
	snprintf(tmp, sizeof(tmp), "%s.%ld.lnk", path, (long)getpid());
	unlink(tmp);
	if (symlink(target, tmp) != 0 || rename(tmp, path) != 0) {
		int e = errno;
		unlink(tmp);
		return smelt_fail(err, SMELT_EIO, "%s: cannot create the snapshot link: %s", path,
		                  e == ENOSPC ? "disk full" : strerror(e));
	}
	return 0;
}

int hub_lock(const char *path, const atomic_bool *cancel, int *fd, struct smelt_err *err)
{
	int rc = parent_mkdirs(path, err);
	int f;

	if (rc)
		return rc;
	f = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
	if (f < 0)
		return smelt_fail(err, SMELT_EIO, "%s: cannot open the lock file: %s", path,
		                  strerror(errno));
	/* Poll so a cancel request is honoured while another process works. */
	while (flock(f, LOCK_EX | LOCK_NB) != 0) {
		if (errno != EWOULDBLOCK && errno != EINTR) {
			int e = errno;
			close(f);
			return smelt_fail(err, SMELT_EIO, "%s: cannot lock: %s", path, strerror(e));
		}
		if (cancel && atomic_load(cancel)) {
			close(f);
			return smelt_fail(err, SMELT_ECANCELED, "cancelled");
		}
		nanosleep(&(struct timespec){.tv_nsec = 50 * 1000 * 1000}, NULL);
	}
	*fd = f;
	return 0;
}

void hub_unlock(int fd)
{
	if (fd >= 0) {
		flock(fd, LOCK_UN);
		close(fd);
	}
}

static bool is_dir(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int smelt_hub_cache_lookup(const char *cache_dir, const struct smelt_hub_ref *ref, char *snapshot,
                           size_t n, struct smelt_err *err)
{
	char cache[SMELT_HUB_PATH_MAX], repo_path[SMELT_HUB_PATH_MAX], commit[41];
	int rc;

	if (!cache_dir) {
		if (smelt_hub_cache_dir(cache, sizeof(cache)))
			return smelt_fail(
			    err, SMELT_EINVAL,
			    "no Hugging Face cache folder (set HF_HUB_CACHE or HOME)");
		cache_dir = cache;
	}
	rc = smelt_hub_repo_id_check(ref->repo, err);
	if (!rc)
		rc = smelt_hub_revision_check(ref->revision, err);
	if (rc)
		return rc;
	if (hub_cache_repo_path(cache_dir, ref->repo, repo_path, sizeof(repo_path)))
		return smelt_fail(err, SMELT_EINVAL, "%s: cache path too long", cache_dir);
	if (smelt_hub_is_commit(ref->revision))
		memcpy(commit, ref->revision, 41);
	else if (hub_cache_read_ref(repo_path, ref->revision, commit) != 0)
		return smelt_fail(err, SMELT_ENOTFOUND, "%s@%s is not in the Hugging Face cache %s",
		                  ref->repo, ref->revision, cache_dir);
	if ((size_t)snprintf(snapshot, n, "%s/snapshots/%s", repo_path, commit) >= n)
		return smelt_fail(err, SMELT_EINVAL, "%s: path too long", repo_path);
	if (!is_dir(snapshot))
		return smelt_fail(err, SMELT_ENOTFOUND,
		                  "%s@%s is not in the Hugging Face cache %s (no snapshot %s)",
		                  ref->repo, ref->revision, cache_dir, commit);
	return 0;
}

/* ---- scanning ---- */

static int cmp_ref(const void *a, const void *b)
{
	return strcmp(((const struct smelt_hub_cached_ref *)a)->name,
	              ((const struct smelt_hub_cached_ref *)b)->name);
}

static int cmp_commit(const void *a, const void *b)
{
	return strcmp((const char *)a, (const char *)b);
}

static int cmp_repo(const void *a, const void *b)
{
	const struct smelt_hub_cached_repo *x = a, *y = b;
	int c = strcmp(x->type, y->type);
	return c ? c : strcmp(x->repo, y->repo);
}

/* Walk refs/ (names may hold '/', as refs/pr/1). */
static int scan_refs(struct smelt_hub_cached_repo *r, const char *dir, const char *prefix)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int rc = 0;

	if (!d)
		return 0;
	while ((e = readdir(d)) && !rc) {
		char path[SMELT_HUB_PATH_MAX], name[SMELT_HUB_REV_MAX + 1];
		struct stat st;

		if (e->d_name[0] == '.')
			continue;
		if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) >= sizeof(path) ||
		    (size_t)snprintf(name, sizeof(name), "%s%s", prefix, e->d_name) >=
		        sizeof(name) ||
		    stat(path, &st) != 0)
			continue;
		if (S_ISDIR(st.st_mode)) {
			char sub[SMELT_HUB_REV_MAX + 2];
			snprintf(sub, sizeof(sub), "%s/", name);
			rc = scan_refs(r, path, sub);
			continue;
		}
		char commit[41];
		if (hub_cache_read_ref(r->path, name, commit) != 0)
			continue;
		void *v = realloc(r->refs, (r->n_refs + 1) * sizeof(*r->refs));
		if (!v) {
			rc = SMELT_ENOMEM;
			break;
		}
		r->refs = v;
		snprintf(r->refs[r->n_refs].name, sizeof(r->refs[0].name), "%s", name);
		memcpy(r->refs[r->n_refs].commit, commit, 41);
		r->n_refs++;
	}
	closedir(d);
	return rc;
}

static int scan_snapshots(struct smelt_hub_cached_repo *r)
{
	char dir[SMELT_HUB_PATH_MAX];
	DIR *d;
	struct dirent *e;

	snprintf(dir, sizeof(dir), "%s/snapshots", r->path);
	d = opendir(dir);
	if (!d)
		return 0;
	while ((e = readdir(d))) {
		if (!smelt_hub_is_commit(e->d_name))
			continue;
		void *v = realloc(r->snapshots, (r->n_snapshots + 1) * sizeof(*r->snapshots));
		if (!v) {
			closedir(d);
			return SMELT_ENOMEM;
		}
		r->snapshots = v;
		memcpy(r->snapshots[r->n_snapshots++], e->d_name, 41);
	}
	closedir(d);
	qsort(r->snapshots, r->n_snapshots, sizeof(*r->snapshots), cmp_commit);
	return 0;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	return a >= b && strcmp(s + a - b, suffix) == 0;
}

static void scan_blobs(struct smelt_hub_cached_repo *r)
{
	char dir[SMELT_HUB_PATH_MAX];
	DIR *d;
	struct dirent *e;

	snprintf(dir, sizeof(dir), "%s/blobs", r->path);
	d = opendir(dir);
	if (!d)
		return;
	while ((e = readdir(d))) {
		char path[SMELT_HUB_PATH_MAX];
		struct stat st;

		if (e->d_name[0] == '.' ||
		    (size_t)snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) >= sizeof(path) ||
		    lstat(path, &st) != 0 || !S_ISREG(st.st_mode))
			continue;
		if (ends_with(e->d_name, ".incomplete")) {
			/* Preallocated: count what is really on disk. */
			r->incomplete_bytes += (uint64_t)st.st_blocks * 512;
			continue;
		}
		if (strchr(e->d_name, '.'))
			continue; /* records, temporaries */
		r->size_on_disk += (uint64_t)st.st_size;
		if (st.st_mtime > r->last_modified)
			r->last_modified = st.st_mtime;
	}
	closedir(d);
}

static void repo_free(struct smelt_hub_cached_repo *r)
{
	free(r->path);
	free(r->refs);
	free(r->snapshots);
}

/* Fill r from a folder name like "models--org--name"; false if not a repo. */
static bool repo_from_folder(const char *name, struct smelt_hub_cached_repo *r)
{
	static const struct {
		const char *prefix, *type;
	} kinds[] = {{"models--", "model"}, {"datasets--", "dataset"}, {"spaces--", "space"}};

	for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
		size_t pl = strlen(kinds[k].prefix);
		if (strncmp(name, kinds[k].prefix, pl) != 0)
			continue;
		const char *rest = name + pl, *sep = strstr(rest, "--");
		if (sep)
			snprintf(r->repo, sizeof(r->repo), "%.*s/%s", (int)(sep - rest), rest,
			         sep + 2);
		else
			snprintf(r->repo, sizeof(r->repo), "%s", rest);
		snprintf(r->type, sizeof(r->type), "%s", kinds[k].type);
		return smelt_hub_repo_id_check(r->repo, NULL) == 0;
	}
	return false;
}

int smelt_hub_cache_scan(const char *cache_dir, struct smelt_hub_cache_list *list,
                         struct smelt_err *err)
{
	char cache[SMELT_HUB_PATH_MAX];
	DIR *d;
	struct dirent *e;
	int rc = 0;

	memset(list, 0, sizeof(*list));
	if (!cache_dir) {
		if (smelt_hub_cache_dir(cache, sizeof(cache)))
			return smelt_fail(
			    err, SMELT_EINVAL,
			    "no Hugging Face cache folder (set HF_HUB_CACHE or HOME)");
		cache_dir = cache;
	}
	d = opendir(cache_dir);
	if (!d)
		return errno == ENOENT
		           ? 0
		           : smelt_fail(err, SMELT_EIO, "%s: %s", cache_dir, strerror(errno));
	while ((e = readdir(d))) {
		struct smelt_hub_cached_repo r;
		char path[SMELT_HUB_PATH_MAX];

		memset(&r, 0, sizeof(r));
		if (!repo_from_folder(e->d_name, &r) ||
		    (size_t)snprintf(path, sizeof(path), "%s/%s", cache_dir, e->d_name) >=
		        sizeof(path) ||
		    !is_dir(path))
			continue;
		r.path = strdup(path);
		if (!r.path) {
			rc = SMELT_ENOMEM;
			break;
		}
		char refs[SMELT_HUB_PATH_MAX];
		snprintf(refs, sizeof(refs), "%s/refs", path);
		rc = scan_refs(&r, refs, "");
		if (!rc)
			rc = scan_snapshots(&r);
		if (!rc) {
			void *v = realloc(list->repos, (list->n + 1) * sizeof(*list->repos));
			rc = v ? 0 : SMELT_ENOMEM;
			if (v)
				list->repos = v;
		}
		if (rc) {
			repo_free(&r);
			break;
		}
		qsort(r.refs, r.n_refs, sizeof(*r.refs), cmp_ref);
		scan_blobs(&r);
		list->total_bytes += r.size_on_disk + r.incomplete_bytes;
		list->repos[list->n++] = r;
	}
	closedir(d);
	if (rc) {
		smelt_hub_cache_list_free(list);
		return smelt_fail(err, rc, "out of memory while scanning %s", cache_dir);
	}
	qsort(list->repos, list->n, sizeof(*list->repos), cmp_repo);
	return 0;
}

void smelt_hub_cache_list_free(struct smelt_hub_cache_list *list)
{
	for (size_t i = 0; i < list->n; i++)
		repo_free(&list->repos[i]);
	free(list->repos);
	memset(list, 0, sizeof(*list));
}

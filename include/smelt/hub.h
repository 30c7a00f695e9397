/*
 * hub.h: the Hugging Face Hub client: model references, the local cache in
 * huggingface_hub's layout, and resumable parallel downloads (libcurl multi).
 *
 * References. "org/name[@revision]" (or "name[@revision]"); the revision
 * defaults to "main" and may be a branch, a tag, "refs/pr/N" or a 40-hex
 * commit. Repo ids, revisions and every file name that comes from a server
 * are validated before they become paths (no "..", no absolute paths, no
 * control characters).
 *
 * Cache. <cache>/models--org--name/{blobs/<etag>, refs/<revision>,
 * snapshots/<commit>/<path> -> ../../blobs/<etag>} plus
 * <cache>/.locks/models--org--name/<etag>.lock, exactly as huggingface_hub
 * writes it, so Python tools and smelt share one cache. A download in
 * progress lives in blobs/<etag>.smelt.incomplete with a sidecar
 * blobs/<etag>.smelt.incomplete.ranges listing the byte ranges written; a
 * later pull (in this or another process) fetches only the gaps. A blob
 * enters blobs/ only after its size and (for LFS files) its SHA-256 match the
 * server's ETag. Concurrent processes coordinate through flock() on the lock
 * files, as huggingface_hub's filelock does.
 *
 * Threads. Every function here may run on any thread; smelt_hub_pull() is
 * meant for a worker thread and reports through struct smelt_hub_progress
 * (atomics, read from any thread) and stops early when *cancel becomes true.
 * smelt_hub_init() should be called once from main() before threads start
 * (smelt_hub_pull() calls it too, which is safe with this libcurl). A pull
 * runs one helper thread of its own while a file downloads: the SHA-256
 * check, which follows the written part of the file.
 *
 * Secrets. The token is sent only as "Authorization: Bearer" to the
 * endpoint's own scheme, host and port (never to a CDN host a redirect
 * points at) and never appears in messages, logs or returned strings.
 */
#ifndef SMELT_HUB_H
#define SMELT_HUB_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "smelt/err.h"

#define SMELT_HUB_REPO_MAX            200 /* "org/name": two parts of at most 96 chars */
#define SMELT_HUB_REV_MAX             256
#define SMELT_HUB_PATH_MAX            4096
#define SMELT_HUB_DEFAULT_CONNECTIONS 8

/* Global libcurl setup, once per process (idempotent, thread-safe). */
int smelt_hub_init(struct smelt_err *err);

/* ---- references and validation ---- */

struct smelt_hub_ref {
	char repo[SMELT_HUB_REPO_MAX + 1];    /* "org/name" or "name" */
	char revision[SMELT_HUB_REV_MAX + 1]; /* "main" when none was given */
	bool explicit_revision;               /* "@rev" was present */
};

/* Parse and validate "org/name[@revision]". */
int smelt_hub_ref_parse(const char *text, struct smelt_hub_ref *ref, struct smelt_err *err);

/* Repo id rules of huggingface_hub: at most one '/', parts of [A-Za-z0-9_.-],
 * each at most 96 chars, no "--" or "..", not starting or ending with '-' or
 * '.', not ending in ".git". */
int smelt_hub_repo_id_check(const char *repo, struct smelt_err *err);

/* Revisions: printable ASCII without spaces or any of ~^:?*[\, no "..", no
 * empty '/'-separated part, at most SMELT_HUB_REV_MAX chars. */
int smelt_hub_revision_check(const char *rev, struct smelt_err *err);

/* File names inside a repo: relative, '/'-separated, no empty, "." or ".."
 * part, no backslash, no control characters, at most SMELT_HUB_PATH_MAX. */
int smelt_hub_filename_check(const char *name, struct smelt_err *err);

/* True when rev is a full commit hash (40 lowercase hex digits). */
bool smelt_hub_is_commit(const char *rev);

/* ---- the cache ---- */

/* The cache root: HF_HUB_CACHE (or legacy HUGGINGFACE_HUB_CACHE), else
 * $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else
 * ~/.cache/huggingface/hub; a leading "~/" is expanded. Returns 0, or
 * SMELT_EINVAL when it does not fit in n or no home folder is known. */
int smelt_hub_cache_dir(char *buf, size_t n);

/* Resolve a reference to its snapshot folder without any network access:
 * a commit revision names snapshots/<commit>, any other revision is read
 * from refs/<revision>. cache_dir NULL means smelt_hub_cache_dir(). Returns
 * SMELT_ENOTFOUND (message names the repo, revision and cache) when the
 * snapshot is not there. */
int smelt_hub_cache_lookup(const char *cache_dir, const struct smelt_hub_ref *ref, char *snapshot,
                           size_t n, struct smelt_err *err);

struct smelt_hub_cached_ref {
	char name[SMELT_HUB_REV_MAX + 1]; /* "main", "refs/pr/1", "v1.0" */
	char commit[41];
};

struct smelt_hub_cached_repo {
	char repo[SMELT_HUB_REPO_MAX + 1]; /* "org/name" */
	char type[16];                     /* "model", "dataset" or "space" */
	char *path;                        /* <cache>/models--org--name */
	struct smelt_hub_cached_ref *refs; /* sorted by name */
	size_t n_refs;
	char (*snapshots)[41]; /* commits with a snapshot folder, sorted */
	size_t n_snapshots;
	uint64_t size_on_disk;     /* bytes of complete blobs */
	uint64_t incomplete_bytes; /* bytes of unfinished downloads */
	int64_t last_modified;     /* newest blob mtime, Unix seconds */
};

struct smelt_hub_cache_list {
	struct smelt_hub_cached_repo *repos; /* sorted by type, then repo */
	size_t n;
	uint64_t total_bytes;
};

/* List every repo folder in the cache (a missing cache is an empty list).
 * The list owns all of its memory until smelt_hub_cache_list_free(). */
int smelt_hub_cache_scan(const char *cache_dir, struct smelt_hub_cache_list *list,
                         struct smelt_err *err);
void smelt_hub_cache_list_free(struct smelt_hub_cache_list *list);

/* ---- pulling ---- */

enum smelt_hub_phase {
	SMELT_HUB_IDLE,
	SMELT_HUB_RESOLVING,   /* asking the Hub for the revision and files */
	SMELT_HUB_DOWNLOADING, /* transferring file data */
	SMELT_HUB_VERIFYING,   /* hashing a finished file */
	SMELT_HUB_DONE,        /* finished, successfully or not */
};

/* Live progress. The caller owns it, calls smelt_hub_progress_init() before
 * the pull and smelt_hub_progress_destroy() after. The pulling thread writes
 * it; any thread may read the atomics at any time and the current file name
 * through smelt_hub_progress_current(). Byte counts cover only files that
 * must be downloaded (files already in the snapshot or whose blob another
 * revision brought are not counted); bytes resumed from an earlier run
 * count as done from the start. */
struct smelt_hub_progress {
	_Atomic int phase;            /* enum smelt_hub_phase */
	_Atomic int files_total;      /* files the snapshot will hold */
	_Atomic int files_done;       /* of those, present (cached or fetched) */
	_Atomic uint64_t bytes_total; /* all files to download */
	_Atomic uint64_t bytes_done;
	_Atomic uint64_t file_bytes_total; /* the current file */
	_Atomic uint64_t file_bytes_done;
	_Atomic uint64_t rate;            /* bytes per second, smoothed over ~2 s */
	_Atomic int connections;          /* transfers running right now */
	pthread_mutex_t lock;             /* guards current[] */
	char current[SMELT_HUB_PATH_MAX]; /* file being fetched or checked */
};

void smelt_hub_progress_init(struct smelt_hub_progress *p);
void smelt_hub_progress_destroy(struct smelt_hub_progress *p);
/* Copy the current file name into buf ("" when none). */
void smelt_hub_progress_current(struct smelt_hub_progress *p, char *buf, size_t n);

/* Options; a zeroed struct plus .repo is a valid request. Strings and
 * arrays are borrowed for the duration of the call. */
struct smelt_hub_pull_opts {
	const char *repo;           /* "org/name" or "org/name@rev" */
	const char *revision;       /* overrides an "@rev" in repo; NULL = main */
	const char *const *include; /* globs; when given they replace the default set */
	size_t n_include;
	const char *const *exclude; /* globs removed from the selection */
	size_t n_exclude;
	const char *cache_dir;               /* NULL = smelt_hub_cache_dir() */
	const char *endpoint;                /* NULL = $HF_ENDPOINT or https://huggingface.co */
	const char *token;                   /* NULL = $HF_TOKEN or the token file; "" = none */
	int connections;                     /* parallel ranges per large file, <= 0 = 8 */
	bool offline;                        /* cache only; HF_HUB_OFFLINE=1 forces it too */
	const atomic_bool *cancel;           /* optional: set to true to stop (resumable) */
	struct smelt_hub_progress *progress; /* optional */
	/* Optional, called on the pulling thread: about 10 times a second
	 * while transferring, and once per file event. */
	void (*on_progress)(void *ctx, struct smelt_hub_progress *p);
	/* Optional, called on the pulling thread for warnings such as "network
	 * unreachable, using the cached snapshot". */
	void (*on_message)(void *ctx, const char *msg);
	void *ctx;
};

/* The files a merge needs when no include glob is given: *.safetensors,
 * *.safetensors.index.json, config.json, generation_config.json,
 * tokenizer*, special_tokens_map.json, added_tokens.json, vocab.*,
 * merges.txt, *.model (sentencepiece), chat_template.* files. */
bool smelt_hub_default_file(const char *name);

/* Resolve the revision, download what is missing into the cache and write
 * the snapshot folder path (no trailing '/') into snapshot. Errors are
 * plain one-line messages: repository not found, revision not found, gated
 * repository (needs a token), token rejected, file missing, disk full,
 * checksum mismatch, offline with nothing cached, cancelled. */
int smelt_hub_pull(const struct smelt_hub_pull_opts *opts, char *snapshot, size_t n,
                   struct smelt_err *err);

#endif

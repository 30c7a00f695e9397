/*
 * out.c: the output folder of a merge. Everything is written into
 * OUT.partial-XXXXXX beside OUT (so the final rename stays on one
 * filesystem); only a complete folder is renamed onto OUT. A failed or
 * cancelled run removes its partial folder; a partial folder left by a
 * killed run is recognisable by its name and its .smelt-partial marker
 * (holding the pid), and the next run for the same OUT removes it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "exec.h"

struct out_shards {
	size_t n;
	struct smelt_st_writer *writers;
	struct smelt_st_out_tensor **tensors; /* per shard */
	size_t *count;                        /* tensors per shard */
	uint64_t *offset;                     /* per plan tensor */
	bool *open;
};

struct smelt_st_writer *out_shards_writer(struct out_shards *s, size_t shard)
{
	return &s->writers[shard];
}

uint64_t out_shards_offset(const struct out_shards *s, size_t i)
{
	return s->offset[i];
}

static void shards_free(struct out_shards *s, bool abort_files)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n; i++) {
		if (abort_files && s->open && s->open[i])
			smelt_st_writer_abort(&s->writers[i]);
		if (s->tensors)
			free(s->tensors[i]);
	}
	free(s->writers);
	free(s->tensors);
	free(s->count);
	free(s->offset);
	free(s->open);
	free(s);
}

static int shards_open(const struct smelt_plan *p, const char *dir, struct out_shards **out,
		       struct smelt_err *err)
{
	struct out_shards *s = calloc(1, sizeof(*s));
	size_t n = p->n_shards;
	size_t *fill = NULL;
	int rc = SMELT_ENOMEM;

	if (!s)
		goto nomem;
	s->n = n;
	s->writers = calloc(n, sizeof(*s->writers));
	s->tensors = calloc(n, sizeof(*s->tensors));
	s->count = calloc(n, sizeof(*s->count));
	s->open = calloc(n, sizeof(*s->open));
	s->offset = calloc(p->n_tensors ? p->n_tensors : 1, sizeof(*s->offset));
	fill = calloc(n, sizeof(*fill));
	if (!s->writers || !s->tensors || !s->count || !s->open || !s->offset || !fill)
		goto nomem;
	for (size_t i = 0; i < p->n_tensors; i++)
		s->count[p->tensors[i].shard]++;
	for (size_t k = 0; k < n; k++)
		if (!(s->tensors[k] = calloc(s->count[k] ? s->count[k] : 1, sizeof(**s->tensors))))
			goto nomem;
	for (size_t i = 0; i < p->n_tensors; i++) {
		const struct smelt_plan_tensor *t = &p->tensors[i];
		struct smelt_st_out_tensor *o = &s->tensors[t->shard][fill[t->shard]++];

		o->name = t->name;
		o->dtype = t->out_dtype;
		o->ndim = t->ndim;
		memcpy(o->shape, t->shape, sizeof(o->shape));
	}
	for (size_t k = 0; k < n; k++) {
		char name[64], path[4096];

		smelt_shard_name(k, n, name, sizeof(name));
		snprintf(path, sizeof(path), "%s/%s", dir, name);
		rc = smelt_st_writer_open(&s->writers[k], path, s->tensors[k], s->count[k], NULL, 0,
					  err);
		if (rc)
			goto fail;
		s->open[k] = true;
	}
	memset(fill, 0, n * sizeof(*fill));
	for (size_t i = 0; i < p->n_tensors; i++) {
		size_t k = p->tensors[i].shard;

		s->offset[i] = s->tensors[k][fill[k]++].file_offset;
	}
	free(fill);
	*out = s;
	return 0;
nomem:
	smelt_fail(err, SMELT_ENOMEM, "out of memory laying out the output shards");
fail:
	free(fill);
	shards_free(s, true);
	return rc;
}

static int shards_commit(struct out_shards *s, const struct smelt_plan *p, const char *dir,
			 struct smelt_err *err)
{
	const char **names = NULL, **files = NULL;
	char (*shard_names)[64] = NULL;
	uint64_t total = 0;
	int rc = 0;

	for (size_t k = 0; k < s->n; k++) {
		if ((rc = smelt_st_writer_commit(&s->writers[k], err)) != 0)
			return rc;
		s->open[k] = false;
	}
	if (s->n < 2)
		return 0;
	names = calloc(p->n_tensors, sizeof(*names));
	files = calloc(p->n_tensors, sizeof(*files));
	shard_names = calloc(s->n, sizeof(*shard_names));
	if (!names || !files || !shard_names) {
		rc = smelt_fail(err, SMELT_ENOMEM, "out of memory");
		goto out;
	}
	for (size_t k = 0; k < s->n; k++)
		smelt_shard_name(k, s->n, shard_names[k], sizeof(shard_names[k]));
	for (size_t i = 0; i < p->n_tensors; i++) {
		names[i] = p->tensors[i].name;
		files[i] = shard_names[p->tensors[i].shard];
		total += p->tensors[i].nbytes;
	}
	rc = smelt_write_index(dir, total, names, files, p->n_tensors, err);
out:
	free(names);
	free(files);
	free(shard_names);
	return rc;
}

/* ---- partial folders ---- */

static bool pid_alive(pid_t pid)
{
	return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM);
}

/* Remove OUT.partial-* folders left by runs that are no longer alive. */
static void remove_stale_partials(const char *out_dir)
{
	char *copy = strdup(out_dir), *copy2 = strdup(out_dir);
	char prefix[1024];
	const char *parent, *base;
	DIR *d;
	struct dirent *e;

	if (!copy || !copy2)
		goto out;
	parent = dirname(copy);
	base = basename(copy2);
	snprintf(prefix, sizeof(prefix), "%s.partial-", base);
	if (!(d = opendir(parent)))
		goto out;
	while ((e = readdir(d))) {
		char path[4096], marker[4200], buf[32] = "";
		FILE *f;
		long pid = 0;

		if (strncmp(e->d_name, prefix, strlen(prefix)) != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", parent, e->d_name);
		snprintf(marker, sizeof(marker), "%s/.smelt-partial", path);
		if (!(f = fopen(marker, "r")))
			continue; /* not ours: leave it alone */
		if (fgets(buf, sizeof(buf), f))
			pid = strtol(buf, NULL, 10);
		fclose(f);
		if (!pid_alive((pid_t)pid))
			smelt_rm_rf(path);
	}
	closedir(d);
out:
	free(copy);
	free(copy2);
}

static bool dir_is_empty(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	bool empty = true;

	if (!d)
		return false;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
			empty = false;
			break;
		}
	closedir(d);
	return empty;
}

/* OUT without trailing slashes: "out/" must name the folder's sibling
 * OUT.partial-* and its parent, not a path inside it. */
static int normalize_out(const char *out_dir, char *buf, size_t n, struct smelt_err *err)
{
	size_t len = strlen(out_dir);

	while (len > 1 && out_dir[len - 1] == '/')
		len--;
	if (len == 0 || len >= n)
		return smelt_fail(err, SMELT_EINVAL, "'%s': not a usable output folder name", out_dir);
	memcpy(buf, out_dir, len);
	buf[len] = '\0';
	return 0;
}

/* The model of the plan that OUT is or holds, or -1. Replacing such an OUT
 * (--force) would delete an input of the merge. */
static int input_inside(const struct smelt_plan *p, const char *out_dir)
{
	char out_real[PATH_MAX], in_real[PATH_MAX];
	size_t n;

	if (!p || !realpath(out_dir, out_real))
		return -1;
	n = strlen(out_real);
	for (size_t i = 0; i < p->n_models; i++) {
		if (!p->models[i].path || !realpath(p->models[i].path, in_real))
			continue;
		if (strncmp(in_real, out_real, n) == 0 &&
		    (in_real[n] == '\0' || in_real[n] == '/' || n == 1))
			return (int)i;
	}
	return -1;
}

int smelt_merge_check_output(const struct smelt_plan *p, const char *out_arg, bool force,
			     struct smelt_err *err)
{
	char out_dir[4096], *copy;
	const char *parent;
	struct stat st;
	struct statvfs vfs;
	int rc = 0;

	if ((rc = normalize_out(out_arg, out_dir, sizeof(out_dir), err)) != 0)
		return rc;
	if (!(copy = strdup(out_dir)))
		return smelt_fail(err, SMELT_ENOMEM, "out of memory");
	parent = dirname(copy);
	if (stat(out_dir, &st) == 0) {
		int in = S_ISDIR(st.st_mode) ? input_inside(p, out_dir) : -1;

		if (!S_ISDIR(st.st_mode))
			rc = smelt_fail(err, SMELT_EEXIST, "%s: exists and is not a folder", out_dir);
		else if (in >= 0)
			rc = smelt_fail(err, SMELT_EEXIST,
					"%s: holds the recipe's model '%s'; the merge cannot replace "
					"its own input (choose another output folder)",
					out_dir, p->model_refs[in]);
		else if (!force && !dir_is_empty(out_dir))
			rc = smelt_fail(err, SMELT_EEXIST,
					"%s: folder exists and is not empty (use --force to replace it)",
					out_dir);
	} else if (stat(parent, &st) != 0 || !S_ISDIR(st.st_mode)) {
		rc = smelt_fail(err, SMELT_ENOTFOUND, "%s: parent folder %s does not exist", out_dir,
				parent);
	}
	if (!rc && access(parent, W_OK) != 0)
		rc = smelt_fail(err, SMELT_EIO, "%s: cannot write in %s: %s", out_dir, parent,
				strerror(errno));
	if (!rc && p && statvfs(parent, &vfs) == 0) {
		uint64_t avail = (uint64_t)vfs.f_bavail * (uint64_t)vfs.f_frsize;
		uint64_t need = p->bytes_written + (1u << 20);

		if (avail < need) {
			char a[32], b[32];

			smelt_format_bytes((double)need, a, sizeof(a));
			smelt_format_bytes((double)avail, b, sizeof(b));
			rc = smelt_fail(err, SMELT_EIO,
					"%s: not enough disk space: the merge needs %s, %s free in %s",
					out_dir, a, b, parent);
		}
	}
	free(copy);
	return rc;
}

static int make_partial(const char *out_dir, char *partial, size_t n, struct smelt_err *err)
{
	char marker[4200], pid[32];

	snprintf(partial, n, "%s.partial-XXXXXX", out_dir);
	if (!mkdtemp(partial))
		return smelt_fail(err, SMELT_EIO, "%s: cannot create %s: %s", out_dir, partial,
				  strerror(errno));
	snprintf(marker, sizeof(marker), "%s/.smelt-partial", partial);
	snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
	if (smelt_write_text_file(marker, pid, strlen(pid), err) != 0) {
		/* Without its marker no later run would recognise the folder:
		 * take it away now. */
		rmdir(partial);
		return err->code;
	}
	return 0;
}

static int fsync_path(const char *path, int flags)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | flags);
	int rc;

	if (fd < 0)
		return -1;
	rc = fsync(fd);
	close(fd);
	return rc;
}

/* --fsync: flush every file of the finished partial folder, then the folder
 * itself, so that once OUT appears under its name its bytes are on disk
 * too. Costs the time the disk needs to take them. */
static int sync_folder(const char *dir, struct smelt_err *err)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char path[4400];
	int rc = 0;

	if (!d)
		return smelt_fail(err, SMELT_EIO, "%s: cannot open to flush: %s", dir,
				  strerror(errno));
	while (rc == 0 && (e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.' &&
		    (e->d_name[1] == '\0' || (e->d_name[1] == '.' && e->d_name[2] == '\0')))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (fsync_path(path, 0) != 0)
			rc = smelt_fail(err, SMELT_EIO, "%s: cannot flush to disk: %s", path,
					strerror(errno));
	}
	closedir(d);
	if (rc == 0 && fsync_path(dir, O_DIRECTORY) != 0)
		rc = smelt_fail(err, SMELT_EIO, "%s: cannot flush to disk: %s", dir,
				strerror(errno));
	return rc;
}

/* Move the finished partial folder onto OUT. OUT was checked before the
 * run, but another process may have filled it since: without force that
 * folder is not replaced. */
static int publish(const char *partial, const char *out_dir, bool force, bool durable,
		   struct smelt_err *err)
{
	char marker[4200], old[4200];
	struct stat st;
	int rc;

	snprintf(marker, sizeof(marker), "%s/.smelt-partial", partial);
	unlink(marker);
	if (durable && (rc = sync_folder(partial, err)) != 0)
		return rc;
	old[0] = '\0';
	if (stat(out_dir, &st) == 0) {
		if (rmdir(out_dir) != 0) {
			if (!force)
				return smelt_fail(err, SMELT_EEXIST,
						  "%s: was filled by something else during the merge; "
						  "not replaced (use --force to replace it)",
						  out_dir);
			/* Not empty (--force): move it aside first, delete it after. */
			snprintf(old, sizeof(old), "%s.old-%ld", out_dir, (long)getpid());
			if (rename(out_dir, old) != 0)
				return smelt_fail(err, SMELT_EIO, "%s: cannot replace: %s", out_dir,
						  strerror(errno));
		}
	}
	if (rename(partial, out_dir) != 0) {
		int e = errno;

		if (old[0])
			rename(old, out_dir);
		return smelt_fail(err, SMELT_EIO, "%s: cannot rename %s into place: %s", out_dir,
				  partial, strerror(e));
	}
	if (old[0])
		smelt_rm_rf(old);
	if (durable) {
		char *copy = strdup(out_dir);

		if (copy) {
			fsync_path(dirname(copy), O_DIRECTORY);
			free(copy);
		}
	}
	return 0;
}

static void init_progress(const struct smelt_plan *p, struct smelt_progress *prog)
{
	atomic_store(&prog->bytes_read_total, p->bytes_read);
	atomic_store(&prog->bytes_written_total, p->bytes_written);
	atomic_store(&prog->tensors_total, p->n_tensors);
	atomic_store(&prog->n_layers, p->out_layers < SMELT_PROGRESS_MAX_LAYERS
					      ? p->out_layers
					      : SMELT_PROGRESS_MAX_LAYERS);
	for (size_t i = 0; i < p->n_tensors; i++) {
		int l = p->tensors[i].layer;

		if (l >= 0 && l < SMELT_PROGRESS_MAX_LAYERS)
			atomic_fetch_add(&prog->layer_total[l], 1);
	}
	atomic_store(&prog->start_ns, smelt_now_ns());
}

int smelt_merge_run(struct smelt_plan *p, const char *out_arg, const struct smelt_merge_options *o,
		    struct smelt_progress *prog, struct smelt_err *err)
{
	struct smelt_progress local;
	struct out_shards *shards = NULL;
	char partial[4096] = "", out_dir[4096] = "";
	const char *name;
	int rc;

	if (!prog) {
		smelt_progress_init(&local);
		prog = &local;
	}
	if (o && o->threads > 0)
		p->threads = o->threads;
	atomic_store(&prog->phase, SMELT_PHASE_PLANNING);
	init_progress(p, prog);
	if ((rc = normalize_out(out_arg, out_dir, sizeof(out_dir), err)) != 0)
		goto fail;
	remove_stale_partials(out_dir);
	if ((rc = smelt_merge_check_output(p, out_dir, o && o->force, err)) != 0)
		goto fail;
	if ((rc = make_partial(out_dir, partial, sizeof(partial), err)) != 0) {
		partial[0] = '\0';
		goto fail;
	}
	if ((rc = shards_open(p, partial, &shards, err)) != 0)
		goto fail;
	atomic_store(&prog->phase, SMELT_PHASE_MERGING);
	if ((rc = smelt_exec_tensors(p, shards, o && o->fsync, prog, err)) != 0)
		goto fail;
	atomic_store(&prog->phase, SMELT_PHASE_FINALIZING);
	if ((rc = shards_commit(shards, p, partial, err)) != 0 ||
	    (rc = smelt_write_config(p, partial, err)) != 0 ||
	    (rc = smelt_copy_tokenizer(p, partial, err)) != 0 ||
	    (rc = smelt_write_recipe_json(p, partial, err)) != 0 ||
	    (rc = smelt_write_card(p, partial, err)) != 0)
		goto fail;
	if (atomic_load(&prog->cancel)) {
		rc = smelt_fail(err, SMELT_ECANCELED, "cancelled");
		goto fail;
	}
	if ((rc = publish(partial, out_dir, o && o->force, o && o->fsync, err)) != 0)
		goto fail;
	shards_free(shards, false);
	smelt_progress_sample_rss(prog);
	atomic_store(&prog->end_ns, smelt_now_ns());
	atomic_store(&prog->phase, SMELT_PHASE_DONE);
	return 0;
fail:
	shards_free(shards, true);
	if (partial[0])
		smelt_rm_rf(partial);
	atomic_store(&prog->end_ns, smelt_now_ns());
	atomic_store(&prog->phase, rc == SMELT_ECANCELED ? SMELT_PHASE_CANCELED : SMELT_PHASE_FAILED);
	name = out_dir[0] ? out_dir : out_arg;
	if (rc == SMELT_ECANCELED)
		smelt_fail(err, SMELT_ECANCELED, "%s: merge cancelled; nothing was written", name);
	else if (partial[0])
		smelt_err_prefix(err, "merge into %s failed (partial output removed)", name);
	else
		smelt_err_prefix(err, "merge into %s failed", name);
	return rc;
}

/*
 * st_write.c: the safetensors writer. The layout is fixed up front (the
 * reference writer's order: dtype alignment descending, then name), the
 * header is written once, and the data region is preallocated in a
 * temporary file beside the target so a full disk shows up before any
 * tensor is computed. Threads then pwrite disjoint ranges; commit makes the
 * file appear under its final name atomically.
 */
#include "smelt/st.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jsonesc.h"
#include "nameidx.h"

struct sbuf {
	char *p;
	size_t len, cap;
	bool oom;
};

static void sb_grow(struct sbuf *b, size_t extra)
{
	size_t cap;
	char *p;

	if (b->oom || b->len + extra + 1 <= b->cap)
		return;
	cap = b->cap ? b->cap : 256;
	while (cap < b->len + extra + 1)
		cap *= 2;
	p = realloc(b->p, cap);
	if (!p) {
		b->oom = true;
		return;
	}
	b->p = p;
	b->cap = cap;
}

static void sb_add(struct sbuf *b, const char *s)
{
	size_t n = strlen(s);

	sb_grow(b, n);
	if (b->oom)
		return;
	memcpy(b->p + b->len, s, n + 1);
	b->len += n;
}

static void sb_str(struct sbuf *b, const char *s)
{
	size_t n = smelt_json_escape(s, NULL, false);

	sb_grow(b, n + 2);
	if (b->oom)
		return;
	b->p[b->len++] = '"';
	smelt_json_escape(s, b->p + b->len, false);
	b->len += n;
	b->p[b->len++] = '"';
	b->p[b->len] = '\0';
}

static void sb_u64(struct sbuf *b, uint64_t v)
{
	char tmp[24];

	snprintf(tmp, sizeof(tmp), "%" PRIu64, v);
	sb_add(b, tmp);
}

/* Sort key of the reference writer: dtype descending, then name. */
static int cmp_layout(const void *a, const void *b, void *ctx)
{
	const struct smelt_st_out_tensor *base = ctx;
	const struct smelt_st_out_tensor *x = &base[*(const size_t *)a];
	const struct smelt_st_out_tensor *y = &base[*(const size_t *)b];

	if (x->dtype != y->dtype)
		return x->dtype > y->dtype ? -1 : 1;
	return strcmp(x->name, y->name);
}

static int check_tensor(const char *path, struct smelt_st_out_tensor *t, struct smelt_err *err)
{
	uint64_t numel = 1, bits;
	char nb[256];

	smelt_st_safe_name(t->name ? t->name : "", nb, sizeof(nb));
	if (!t->name || !smelt_utf8_valid(t->name, strlen(t->name)))
		return smelt_fail(err, SMELT_EINVAL, "%s: tensor '%s': name is not valid UTF-8",
				  path, nb);
	if (strcmp(t->name, "__metadata__") == 0)
		return smelt_fail(err, SMELT_EINVAL, "%s: '__metadata__' cannot name a tensor", path);
	if ((unsigned)t->dtype >= SMELT_DTYPE_COUNT)
		return smelt_fail(err, SMELT_EINVAL, "%s: tensor '%s': invalid dtype %d", path, nb,
				  (int)t->dtype);
	if (t->ndim < 0 || t->ndim > SMELT_MAX_DIMS)
		return smelt_fail(err, SMELT_EINVAL, "%s: tensor '%s': %d dimensions (at most %d)",
				  path, nb, t->ndim, SMELT_MAX_DIMS);
	for (int d = 0; d < t->ndim; d++) {
		if (t->shape[d] && numel > UINT64_MAX / t->shape[d])
			return smelt_fail(err, SMELT_EINVAL, "%s: tensor '%s': shape overflows",
					  path, nb);
		numel *= t->shape[d];
	}
	if (numel > UINT64_MAX / 64)
		return smelt_fail(err, SMELT_EINVAL, "%s: tensor '%s': shape overflows", path, nb);
	bits = numel * smelt_dtype_bits(t->dtype);
	if (bits % 8)
		return smelt_fail(err, SMELT_EINVAL,
				  "%s: tensor '%s': %" PRIu64 " elements of %s are not a whole "
				  "number of bytes",
				  path, nb, numel, smelt_dtype_name(t->dtype));
	t->nbytes = bits / 8;
	return 0;
}

static int build_header(const char *path, struct smelt_st_out_tensor *tensors, const size_t *order,
			size_t n, const struct smelt_st_meta *extra, size_t n_meta,
			struct sbuf *b, struct smelt_err *err)
{
	const char *format = "pt";
	uint64_t off = 0;

	for (size_t i = 0; i < n_meta; i++)
		if (strcmp(extra[i].key, "format") == 0)
			format = extra[i].value;
	sb_add(b, "{\"__metadata__\":{\"format\":");
	sb_str(b, format);
	for (size_t i = 0; i < n_meta; i++) {
		if (strcmp(extra[i].key, "format") == 0)
			continue;
		for (size_t j = 0; j < i; j++)
			if (strcmp(extra[i].key, extra[j].key) == 0)
				return smelt_fail(err, SMELT_EINVAL,
						  "%s: metadata key '%s' given twice", path,
						  extra[i].key);
		sb_add(b, ",");
		sb_str(b, extra[i].key);
		sb_add(b, ":");
		sb_str(b, extra[i].value);
	}
	sb_add(b, "}");
	for (size_t k = 0; k < n; k++) {
		struct smelt_st_out_tensor *t = &tensors[order[k]];

		sb_add(b, ",");
		sb_str(b, t->name);
		sb_add(b, ":{\"dtype\":\"");
		sb_add(b, smelt_dtype_name(t->dtype));
		sb_add(b, "\",\"shape\":[");
		for (int d = 0; d < t->ndim; d++) {
			if (d)
				sb_add(b, ",");
			sb_u64(b, t->shape[d]);
		}
		sb_add(b, "],\"data_offsets\":[");
		sb_u64(b, off);
		sb_add(b, ",");
		sb_u64(b, off + t->nbytes);
		sb_add(b, "]}");
		t->file_offset = off; /* relative for now */
		off += t->nbytes;
	}
	sb_add(b, "}");
	while (!b->oom && b->len % 8)
		sb_add(b, " ");
	if (b->oom)
		return smelt_fail(err, SMELT_ENOMEM, "%s: out of memory for the header", path);
	if (b->len > SMELT_ST_HEADER_MAX)
		return smelt_fail(err, SMELT_EINVAL,
				  "%s: header would be %zu bytes, over the 100000000-byte limit of "
				  "the format",
				  path, b->len);
	return 0;
}

static int write_all(int fd, uint64_t off, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t w = pwrite(fd, p, len > (1u << 30) ? (1u << 30) : len, (off_t)off);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (w == 0) {
			errno = EIO;
			return -1;
		}
		p += w;
		off += (uint64_t)w;
		len -= (size_t)w;
	}
	return 0;
}

static void writer_release(struct smelt_st_writer *w)
{
	/* The fd is ours only while the temporary file exists (a zeroed
	 * struct has fd 0). */
	if (w->tmp_path && w->fd >= 0)
		close(w->fd);
	if (w->tmp_path)
		unlink(w->tmp_path);
	free(w->tmp_path);
	free(w->path);
	w->fd = -1;
	w->tmp_path = NULL;
	w->path = NULL;
}

static int create_temp(struct smelt_st_writer *w, struct smelt_err *err)
{
	size_t l = strlen(w->path) + sizeof(".tmp-XXXXXX");

	w->tmp_path = malloc(l);
	if (!w->tmp_path)
		return smelt_fail(err, SMELT_ENOMEM, "%s: out of memory", w->path);
	snprintf(w->tmp_path, l, "%s.tmp-XXXXXX", w->path);
	w->fd = mkostemp(w->tmp_path, O_CLOEXEC);
	if (w->fd < 0) {
		int e = errno;

		free(w->tmp_path);
		w->tmp_path = NULL;
		return smelt_fail(err, SMELT_EIO, "%s: cannot create a temporary file: %s", w->path,
				  strerror(e));
	}
	/* mkstemp creates 0600; a model file is meant to be shared like any
	 * other output. */
	if (fchmod(w->fd, 0644) != 0)
		return smelt_fail(err, SMELT_EIO, "%s: %s", w->path, strerror(errno));
	return 0;
}

static int preallocate(struct smelt_st_writer *w, struct smelt_err *err)
{
	int e = posix_fallocate(w->fd, 0, (off_t)w->file_size);

	w->reserved = e == 0;
	if (e == EOPNOTSUPP || e == EINVAL) {
		/* Filesystems without fallocate: size the file at least; commit
		 * then flushes it, so a disk that fills up during writeback is
		 * an error before the file is renamed, not after. */
		if (ftruncate(w->fd, (off_t)w->file_size) == 0)
			return 0;
		e = errno;
	}
	if (e)
		return smelt_fail(err, SMELT_EIO, "%s: cannot reserve %" PRIu64 " bytes: %s",
				  w->path, w->file_size, strerror(e));
	return 0;
}

int smelt_st_writer_open(struct smelt_st_writer *w, const char *path,
			 struct smelt_st_out_tensor *tensors, size_t n,
			 const struct smelt_st_meta *extra_meta, size_t n_meta,
			 struct smelt_err *err)
{
	struct sbuf hdr = {0};
	struct smelt_nameidx names = {0};
	size_t *order = NULL;
	uint64_t data_len = 0;
	uint8_t len_le[8];
	int rc = 0;

	memset(w, 0, sizeof(*w));
	w->fd = -1;
	w->path = strdup(path);
	order = malloc((n ? n : 1) * sizeof(*order));
	if (!w->path || !order || smelt_nameidx_init(&names, n)) {
		rc = smelt_fail(err, SMELT_ENOMEM, "%s: out of memory", path);
		goto fail;
	}
	for (size_t i = 0; i < n; i++) {
		rc = check_tensor(path, &tensors[i], err);
		if (rc)
			goto fail;
		if (smelt_nameidx_put(&names, tensors[i].name, i, NULL) == 1) {
			char nb[256];

			rc = smelt_fail(err, SMELT_EINVAL, "%s: tensor '%s' given twice", path,
					smelt_st_safe_name(tensors[i].name, nb, sizeof(nb)));
			goto fail;
		}
		if (data_len > UINT64_MAX / 2 - tensors[i].nbytes) {
			rc = smelt_fail(err, SMELT_EINVAL, "%s: total size overflows", path);
			goto fail;
		}
		data_len += tensors[i].nbytes;
		order[i] = i;
	}
	qsort_r(order, n, sizeof(*order), cmp_layout, tensors);
	rc = build_header(path, tensors, order, n, extra_meta, n_meta, &hdr, err);
	if (rc)
		goto fail;
	w->header_len = hdr.len;
	w->file_size = 8 + hdr.len + data_len;
	for (size_t i = 0; i < n; i++)
		tensors[i].file_offset += 8 + hdr.len;
	rc = create_temp(w, err);
	if (rc)
		goto fail;
	rc = preallocate(w, err);
	if (rc)
		goto fail;
	for (int i = 0; i < 8; i++)
		len_le[i] = (uint8_t)(w->header_len >> (8 * i));
	if (write_all(w->fd, 0, len_le, 8) || write_all(w->fd, 8, hdr.p, hdr.len)) {
		rc = smelt_fail(err, SMELT_EIO, "%s: cannot write the header: %s", path,
				strerror(errno));
		goto fail;
	}
	goto out;
fail:
	writer_release(w);
out:
	free(hdr.p);
	free(order);
	smelt_nameidx_free(&names);
	return rc;
}

int smelt_st_writer_pwrite(struct smelt_st_writer *w, uint64_t off, const void *buf, size_t len,
			   struct smelt_err *err)
{
	if (w->fd < 0)
		return smelt_fail(err, SMELT_EINVAL, "%s: writer is not open",
				  w->path ? w->path : "safetensors");
	if (off > w->file_size || len > w->file_size - off)
		return smelt_fail(err, SMELT_EINVAL,
				  "%s: write of %zu bytes at %" PRIu64 " is outside the %" PRIu64
				  "-byte file",
				  w->path, len, off, w->file_size);
	if (write_all(w->fd, off, buf, len) != 0)
		return smelt_fail(err, SMELT_EIO, "%s: write failed: %s", w->path, strerror(errno));
	return 0;
}

int smelt_st_writer_commit(struct smelt_st_writer *w, struct smelt_err *err)
{
	int rc = 0;

	if (w->fd < 0 || !w->tmp_path)
		return smelt_fail(err, SMELT_EINVAL, "%s: writer is not open",
				  w->path ? w->path : "safetensors");
	if (!w->reserved && fsync(w->fd) != 0) {
		rc = smelt_fail(err, SMELT_EIO, "%s: cannot flush to disk: %s", w->path,
				strerror(errno));
		goto out;
	}
	if (close(w->fd) != 0) {
		w->fd = -1;
		rc = smelt_fail(err, SMELT_EIO, "%s: %s", w->path, strerror(errno));
		goto out;
	}
	w->fd = -1;
	if (rename(w->tmp_path, w->path) != 0) {
		rc = smelt_fail(err, SMELT_EIO, "%s: cannot rename the temporary file into place: %s",
				w->path, strerror(errno));
		goto out;
	}
	free(w->tmp_path);
	w->tmp_path = NULL;
out:
	writer_release(w);
	return rc;
}

void smelt_st_writer_abort(struct smelt_st_writer *w)
{
	writer_release(w);
}

int smelt_st_write_file(const char *path, struct smelt_st_out_tensor *tensors,
			const void *const *data, size_t n, struct smelt_err *err)
{
	struct smelt_st_writer w;
	int rc;

	rc = smelt_st_writer_open(&w, path, tensors, n, NULL, 0, err);
	if (rc)
		return rc;
	for (size_t i = 0; i < n; i++) {
		if (!tensors[i].nbytes)
			continue;
		rc = smelt_st_writer_pwrite(&w, tensors[i].file_offset, data[i],
					    (size_t)tensors[i].nbytes, err);
		if (rc) {
			smelt_st_writer_abort(&w);
			return rc;
		}
	}
	return smelt_st_writer_commit(&w, err);
}

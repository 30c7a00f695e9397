/*
 * st.h: safetensors files, read through mmap and written at precomputed
 * offsets.
 *
 * Reading: smelt_st_open() maps the file read-only and validates the whole
 * header before returning (every rule of the format: size caps checked
 * before allocating, UTF-8, JSON with nothing after the object, duplicate
 * keys, dtype names, integral shapes and offsets with overflow checks,
 * offsets contiguous from 0 with no gap or overlap, byte counts equal to
 * shape x dtype size, file size exactly matching, __metadata__ a
 * string-to-string map). A file that opens is safe to index: every tensor's
 * bytes lie inside the mapping. The struct smelt_st_file owns the mapping,
 * the tensor table and all strings in it until smelt_st_close().
 *
 * Writing: smelt_st_writer_open() fixes the layout of every tensor up front
 * (the reference writer's order: dtype alignment descending, then name),
 * writes the header padded with spaces to a multiple of 8, and preallocates
 * the data region in a temporary file beside the target. Any number of
 * threads may then smelt_st_writer_pwrite() disjoint byte ranges. Commit
 * fsyncs and renames the temporary file onto the target; abort unlinks it.
 * A target file therefore either does not exist or is complete.
 */
#ifndef SMELT_ST_H
#define SMELT_ST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "smelt/dtype.h"
#include "smelt/err.h"

#define SMELT_MAX_DIMS 8
#define SMELT_ST_HEADER_MAX 100000000ull /* bytes, as the reference reader */

struct smelt_st_tensor {
	const char *name;          /* NUL-terminated, owned by the file */
	enum smelt_dtype dtype;
	int ndim;                  /* 0 for a scalar */
	uint64_t shape[SMELT_MAX_DIMS];
	uint64_t begin, end;       /* data_offsets, relative to the data start */
};

struct smelt_st_meta {
	const char *key, *value;   /* owned by the file */
};

struct smelt_st_file {
	char *path;                /* as given to open */
	int fd;
	const uint8_t *map;        /* whole file, PROT_READ (NULL if size 0) */
	uint64_t size;             /* file size in bytes */
	uint64_t header_len;       /* N, the JSON header length */
	const uint8_t *data;       /* map + 8 + N */
	size_t n_tensors;
	struct smelt_st_tensor *tensors; /* in data-offset order */
	size_t n_meta;
	struct smelt_st_meta *meta;
	void *priv;                /* name index and string storage */
};

/* Validate a header held in memory: buf holds the whole file prefix
 * (at least 8 + N bytes when valid), file_size is the full file size.
 * On success fills out (which must later be smelt_st_close()d; its map/fd
 * stay unset). The fuzzer drives this entry point. `what` names the file in
 * messages. */
int smelt_st_parse(const uint8_t *buf, size_t buf_len, uint64_t file_size, const char *what,
		   struct smelt_st_file *out, struct smelt_err *err);

/* Open, map and validate a safetensors file. */
int smelt_st_open(struct smelt_st_file *f, const char *path, struct smelt_err *err);

/* Release everything the file owns; f may be zeroed or half-open. */
void smelt_st_close(struct smelt_st_file *f);

/* Find a tensor by exact name (hash lookup), NULL if absent. */
const struct smelt_st_tensor *smelt_st_find(const struct smelt_st_file *f, const char *name);

/* Metadata value for key, NULL if absent. */
const char *smelt_st_meta_get(const struct smelt_st_file *f, const char *key);

/* Element count of a tensor (1 for a scalar). Validated files never overflow. */
uint64_t smelt_st_numel(const struct smelt_st_tensor *t);

/* Pointer to a tensor's first byte inside the mapping. Possibly misaligned:
 * read it through smelt_to_f32() or memcpy, never by casting. */
static inline const uint8_t *smelt_st_bytes(const struct smelt_st_file *f,
					    const struct smelt_st_tensor *t)
{
	return f->data + t->begin;
}

/* Copy name into buf for use in a one-line message: control characters
 * become \xNN and a name longer than the buffer is cut with "...".
 * Returns buf. */
const char *smelt_st_safe_name(const char *name, char *buf, size_t size);

/* ---- writer ---- */

struct smelt_st_out_tensor {
	const char *name;          /* borrowed; must outlive writer_open */
	enum smelt_dtype dtype;
	int ndim;
	uint64_t shape[SMELT_MAX_DIMS];
	uint64_t nbytes;           /* filled by writer_open */
	uint64_t file_offset;      /* filled by writer_open: absolute offset */
};

struct smelt_st_writer {
	char *path;                /* final path */
	char *tmp_path;            /* temporary file in the same folder */
	int fd;
	uint64_t header_len;       /* N, padded */
	uint64_t file_size;        /* 8 + N + data */
	bool reserved;             /* the disk space was preallocated (fallocate) */
};

/* Lay out tensors (their nbytes and file_offset are filled in), create the
 * temporary file, write the header with {"format":"pt"} metadata (plus the
 * optional extra metadata pairs), and preallocate the file. Fails cleanly
 * (nothing left on disk) when the disk cannot hold the file. */
int smelt_st_writer_open(struct smelt_st_writer *w, const char *path,
			 struct smelt_st_out_tensor *tensors, size_t n,
			 const struct smelt_st_meta *extra_meta, size_t n_meta,
			 struct smelt_err *err);

/* Write len bytes at absolute file offset off. Thread-safe for disjoint
 * ranges. Retries short writes; reports ENOSPC/EIO naming the file. */
int smelt_st_writer_pwrite(struct smelt_st_writer *w, uint64_t off, const void *buf, size_t len,
			   struct smelt_err *err);

/* Close the file and rename it onto the final path. The file is flushed
 * to disk first only when its space could not be preallocated (so a disk
 * filling up during writeback is reported here); otherwise a caller that
 * needs the file to survive a power cut syncs it (and its folder)
 * afterwards, as smelt_merge_run() does with --fsync. */
int smelt_st_writer_commit(struct smelt_st_writer *w, struct smelt_err *err);

/* Close and unlink the temporary file (no-op after commit). */
void smelt_st_writer_abort(struct smelt_st_writer *w);

/* Convenience for tests and small files: write whole tensors from memory
 * (data[i] holds tensors[i].nbytes bytes in the tensor's dtype). */
int smelt_st_write_file(const char *path, struct smelt_st_out_tensor *tensors,
			const void *const *data, size_t n, struct smelt_err *err);

#endif

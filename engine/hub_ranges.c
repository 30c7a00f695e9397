/*
 * hub_ranges.c: which byte ranges of an unfinished blob are already on disk.
 *
 * The record is a small text file beside the blob:
 *
 *     smelt-ranges 1
 *     size <total bytes>
 *     <start> <end>        (one line per written range, end exclusive)
 *
 * It is rewritten atomically, so a crash leaves the previous or the next
 * version, never a torn one. Anything unexpected in it means "start over":
 * the SHA-256 check at the end is what guarantees the content, the record
 * only saves bandwidth.
 */
#include "hub_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void hub_ranges_init(struct hub_ranges *r, uint64_t size)
{
	memset(r, 0, sizeof(*r));
	r->size = size;
}

void hub_ranges_free(struct hub_ranges *r)
{
	free(r->v);
	memset(r, 0, sizeof(*r));
}

void hub_ranges_clear(struct hub_ranges *r)
{
	r->n = 0;
}

int hub_ranges_add(struct hub_ranges *r, uint64_t start, uint64_t end)
{
	size_t i, j;

	if (end > r->size)
		end = r->size;
	if (start >= end)
		return 0;
	/* First range that ends at or after start (touching ones merge). */
	for (i = 0; i < r->n && r->v[i].end < start; i++)
		;
	/* Ranges [i, j) overlap or touch [start, end). */
	for (j = i; j < r->n && r->v[j].start <= end; j++) {
		if (r->v[j].start < start)
			start = r->v[j].start;
		if (r->v[j].end > end)
			end = r->v[j].end;
	}
	if (i == j) {
		if (r->n == r->cap) {
			size_t cap = r->cap ? 2 * r->cap : 8;
			struct hub_range *v = realloc(r->v, cap * sizeof(*v));
			if (!v)
				return SMELT_ENOMEM;
			r->v = v;
			r->cap = cap;
		}
		memmove(&r->v[i + 1], &r->v[i], (r->n - i) * sizeof(r->v[0]));
		r->n++;
	} else if (j - i > 1) {
		memmove(&r->v[i + 1], &r->v[j], (r->n - j) * sizeof(r->v[0]));
		r->n -= j - i - 1;
	}
	r->v[i].start = start;
	r->v[i].end = end;
	return 0;
}

uint64_t hub_ranges_covered(const struct hub_ranges *r)
{
	uint64_t sum = 0;

	for (size_t i = 0; i < r->n; i++)
		sum += r->v[i].end - r->v[i].start;
	return sum;
}

bool hub_ranges_complete(const struct hub_ranges *r)
{
	return r->size == 0 || (r->n == 1 && r->v[0].start == 0 && r->v[0].end == r->size);
}

int hub_ranges_gaps(const struct hub_ranges *r, struct hub_ranges *gaps)
{
	uint64_t pos = 0;
	int rc;

	hub_ranges_free(gaps);
	hub_ranges_init(gaps, r->size);
	for (size_t i = 0; i < r->n; i++) {
		rc = hub_ranges_add(gaps, pos, r->v[i].start);
		if (rc)
			return rc;
		pos = r->v[i].end;
	}
	return hub_ranges_add(gaps, pos, r->size);
}

int hub_ranges_load(const char *path, uint64_t size, struct hub_ranges *r)
{
	FILE *f = fopen(path, "r");
	uint64_t rec_size, a, b;
	int version, rc = 0;

	hub_ranges_clear(r);
	r->size = size;
	if (!f)
		return 0;
	if (fscanf(f, "smelt-ranges %d size %" SCNu64, &version, &rec_size) != 2 || version != 1 ||
	    rec_size != size)
		goto out;
	while (fscanf(f, "%" SCNu64 " %" SCNu64, &a, &b) == 2) {
		if (a >= b || b > size) {
			hub_ranges_clear(r);
			goto out;
		}
		rc = hub_ranges_add(r, a, b);
		if (rc)
			goto out;
	}
	if (!feof(f))
		hub_ranges_clear(r);
out:
	fclose(f);
	return rc;
}

int hub_ranges_save(const char *path, const struct hub_ranges *r, struct smelt_err *err)
{
	char tmp[SMELT_HUB_PATH_MAX + 16];
	FILE *f;
	bool ok;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp))
		return smelt_fail(err, SMELT_EINVAL, "%s: path too long", path);
	f = fopen(tmp, "w");
	if (!f)
		return smelt_fail(err, SMELT_EIO, "%s: %s", tmp, strerror(errno));
	fprintf(f, "smelt-ranges 1\nsize %" PRIu64 "\n", r->size);
	for (size_t i = 0; i < r->n; i++)
		fprintf(f, "%" PRIu64 " %" PRIu64 "\n", r->v[i].start, r->v[i].end);
	ok = fflush(f) == 0 && !ferror(f);
	ok = (fclose(f) == 0) && ok;
	if (!ok || rename(tmp, path) != 0) {
		int e = errno;
		unlink(tmp);
		return smelt_fail(err, SMELT_EIO, "%s: %s", path,
		                  e == ENOSPC ? "disk full" : strerror(e));
	}
	return 0;
}

/*
 * shard.c: sharded output helpers: byte sizes with units, the
 * huggingface_hub shard split, shard file names and the index file.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jsonesc.h"
#include "nameidx.h"
#include "smelt/ckpt.h"

struct unit {
	const char *suffix;
	uint64_t mult;
};

/* Longest suffixes first so "KiB" is not read as "B". */
static const struct unit units[] = {
	{"kib", 1ull << 10}, {"mib", 1ull << 20}, {"gib", 1ull << 30}, {"tib", 1ull << 40},
	{"kb", 1000ull},     {"mb", 1000000ull},  {"gb", 1000000000ull}, {"tb", 1000000000000ull},
	/* mergekit's shorthand: K, M, B (billions); G and T for symmetry. */
	{"k", 1000ull},      {"m", 1000000ull},   {"b", 1000000000ull}, {"g", 1000000000ull},
	{"t", 1000000000000ull},
};

int smelt_parse_size(const char *text, uint64_t *out, struct smelt_err *err)
{
	const char *p = text;
	uint64_t ip = 0, frac = 0, fdiv = 1, mult = 1, v;
	bool digits = false;

	if (!text)
		return smelt_fail(err, SMELT_EINVAL, "missing size");
	while (*p == ' ')
		p++;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (ip > (UINT64_MAX - 9) / 10)
			goto bad;
		ip = ip * 10 + (uint64_t)(*p - '0');
		digits = true;
	}
	if (*p == '.') {
		for (p++; *p >= '0' && *p <= '9'; p++) {
			digits = true;
			if (fdiv < 1000000000000ull) { /* digits past 12 decimals are noise */
				frac = frac * 10 + (uint64_t)(*p - '0');
				fdiv *= 10;
			}
		}
	}
	if (!digits)
		goto bad;
	while (*p == ' ')
		p++;
	if (*p) {
		size_t i, n = sizeof(units) / sizeof(units[0]);

		for (i = 0; i < n; i++)
			if (strcasecmp(p, units[i].suffix) == 0)
				break;
		if (i == n)
			goto bad;
		mult = units[i].mult;
	}
	if (ip > UINT64_MAX / mult)
		goto bad;
	v = ip * mult;
	/* frac/fdiv * mult without overflow: both factors are < 10^13. */
	v += (uint64_t)((long double)frac * (long double)mult / (long double)fdiv);
	if (v == 0)
		return smelt_fail(err, SMELT_EINVAL, "size '%s' must be greater than zero", text);
	*out = v;
	return 0;
bad:
	return smelt_fail(err, SMELT_EINVAL,
			  "cannot read size '%s' (expected e.g. 5GB, 500MB, 1.5GB, 2KB, or bytes)",
			  text);
}

size_t smelt_shard_split(const uint64_t *nbytes, size_t n, uint64_t budget, size_t *shard_of)
{
	/* huggingface_hub's rule: an oversized tensor is closed into a shard of
	 * its own right away, while the shard being filled stays open; a shard
	 * is closed when the next tensor would push it over the budget. Shard
	 * numbers follow the order in which shards are closed. */
	const size_t open_mark = SIZE_MAX;
	size_t next = 0, open_start = 0;
	uint64_t open_size = 0;
	bool open_used = false;

	for (size_t i = 0; i < n; i++) {
		if (nbytes[i] > budget) {
			shard_of[i] = next++;
			continue;
		}
		if (open_used && open_size + nbytes[i] > budget) {
			for (size_t j = open_start; j < i; j++)
				if (shard_of[j] == open_mark)
					shard_of[j] = next;
			next++;
			open_size = 0;
			open_used = false;
		}
		if (!open_used)
			open_start = i;
		shard_of[i] = open_mark;
		open_size += nbytes[i];
		open_used = true;
	}
	if (open_used) {
		for (size_t j = open_start; j < n; j++)
			if (shard_of[j] == open_mark)
				shard_of[j] = next;
		next++;
	}
	return next ? next : 1;
}

void smelt_shard_name(size_t i, size_t n, char *buf, size_t bufsize)
{
	if (n <= 1)
		snprintf(buf, bufsize, "model.safetensors");
	else
		snprintf(buf, bufsize, "model-%05zu-of-%05zu.safetensors", i + 1, n);
}

static int cmp_idx_name(const void *a, const void *b, void *ctx)
{
	const char *const *names = ctx;

	return strcmp(names[*(const size_t *)a], names[*(const size_t *)b]);
}

/* Append the JSON string for s (ASCII-only, as Python's json.dumps). */
static int put_json_str(FILE *f, const char *s)
{
	size_t n = smelt_json_escape(s, NULL, true);
	char *e = malloc(n + 1);

	if (!e)
		return -1;
	smelt_json_escape(s, e, true);
	fprintf(f, "\"%s\"", e);
	free(e);
	return 0;
}

int smelt_write_index(const char *dir, uint64_t total_size, const char *const *names,
		      const char *const *files, size_t n, struct smelt_err *err)
{
	char path[4096], tmp[4200];
	size_t *order = malloc((n ? n : 1) * sizeof(*order));
	FILE *f = NULL;
	bool created = false;
	int fd = -1, rc = 0;

	snprintf(path, sizeof(path), "%s/model.safetensors.index.json", dir);
	snprintf(tmp, sizeof(tmp), "%s.tmp-XXXXXX", path);
	if (!order)
		return smelt_fail(err, SMELT_ENOMEM, "%s: out of memory", path);
	for (size_t i = 0; i < n; i++)
		order[i] = i;
	qsort_r(order, n, sizeof(*order), cmp_idx_name, (void *)names);
	for (size_t i = 1; i < n; i++) {
		if (strcmp(names[order[i - 1]], names[order[i]]) == 0) {
			char nb[256];

			rc = smelt_fail(err, SMELT_EINVAL, "%s: tensor '%s' listed twice", path,
					smelt_st_safe_name(names[order[i]], nb, sizeof(nb)));
			goto out;
		}
	}
	fd = mkostemp(tmp, O_CLOEXEC);
	created = fd >= 0;
	if (fd < 0 || fchmod(fd, 0644) != 0 || !(f = fdopen(fd, "w"))) {
		rc = smelt_fail(err, SMELT_EIO, "%s: cannot create a temporary file: %s", path,
				strerror(errno));
		goto out;
	}
	fd = -1; /* owned by f now */
	/* json.dumps(index, indent=2, sort_keys=True) + "\n", as transformers
	 * writes it: "metadata" sorts before "weight_map". */
	fprintf(f, "{\n  \"metadata\": {\n    \"total_size\": %" PRIu64 "\n  },\n", total_size);
	fprintf(f, "  \"weight_map\": {%s", n ? "\n" : "");
	for (size_t k = 0; k < n; k++) {
		fputs("    ", f);
		if (put_json_str(f, names[order[k]]) || fputs(": ", f) < 0 ||
		    put_json_str(f, files[order[k]])) {
			rc = smelt_fail(err, SMELT_ENOMEM, "%s: out of memory", path);
			goto out;
		}
		fputs(k + 1 < n ? ",\n" : "\n", f);
	}
	fprintf(f, "%s}\n}\n", n ? "  " : "");
	if (fflush(f) != 0) {
		rc = smelt_fail(err, SMELT_EIO, "%s: write failed: %s", path, strerror(errno));
		goto out;
	}
	if (fclose(f) != 0) {
		f = NULL;
		rc = smelt_fail(err, SMELT_EIO, "%s: write failed: %s", path, strerror(errno));
		goto out;
	}
	f = NULL;
	if (rename(tmp, path) != 0) {
		rc = smelt_fail(err, SMELT_EIO, "%s: cannot rename into place: %s", path,
				strerror(errno));
		goto out;
	}
	created = false;
out:
	if (f)
		fclose(f);
	if (fd >= 0)
		close(fd);
	if (rc && created)
		unlink(tmp);
	free(order);
	return rc;
}

/*
 * stats_cache.c: the on-disk cache of per-column divergences.
 *
 * Key: SHA-256 over a format tag, the model count, and for the base and
 * every model, in order, each shard's resolved path, size, mtime (ns) and
 * header bytes (the 8-byte length plus the JSON header). Any change to a
 * shard (rewritten, touched, replaced) changes the key.
 *
 * File <cache>/<hex key>.stats, native byte order (a foreign file fails the
 * magic check and is simply recomputed):
 *   "SMELTDV1", u32 version, u32 n_models, u64 n_tensors, key[32]
 *   per tensor: u32 name length, name, u32 branch, u64 k; unless skipped:
 *     f64 mag[n][k], u32 pos_m[n][k], then matrices f64 dir[n][k] and
 *     u32 pos_q[n][k], vectors f64 mean_a[n]
 *   "SMELTEND", SHA-256 of every byte before it
 * Written to a temporary file and renamed, so a reader never sees half a
 * file; a file whose digest does not match (damaged) is ignored and
 * recomputed. Divergences are float64 so the ranks stored beside them are the
 * exact ranks; nothing needs sorting on load.
 */
#include <errno.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "stats_int.h"

#define CACHE_VERSION 1u

static const char MAGIC[8] = {'S', 'M', 'E', 'L', 'T', 'D', 'V', '1'};
static const char TRAILER[8] = {'S', 'M', 'E', 'L', 'T', 'E', 'N', 'D'};

static int cache_dir(const struct smelt_stats *s, char *buf, size_t size)
{
	const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
	int n;

	if (s->opts.cache_dir)
		n = snprintf(buf, size, "%s", s->opts.cache_dir);
	else if (xdg && xdg[0] == '/')
		n = snprintf(buf, size, "%s/smelt/stats", xdg);
	else if (home && *home)
		n = snprintf(buf, size, "%s/.cache/smelt/stats", home);
	else
		return -1;
	return n > 0 && (size_t)n < size ? 0 : -1;
}

static int hash_ckpt(EVP_MD_CTX *md, const struct smelt_ckpt *c)
{
	uint64_t ns = c->n_shards;

	EVP_DigestUpdate(md, &ns, sizeof(ns));
	for (size_t i = 0; i < c->n_shards; i++) {
		const struct smelt_st_file *f = &c->shards[i];
		char real[PATH_MAX];
		struct stat st;
		uint64_t v[3];

		if (!realpath(f->path, real) || stat(real, &st))
			return -1;
		EVP_DigestUpdate(md, real, strlen(real) + 1);
		v[0] = (uint64_t)st.st_size;
		v[1] = (uint64_t)st.st_mtim.tv_sec;
		v[2] = (uint64_t)st.st_mtim.tv_nsec;
		EVP_DigestUpdate(md, v, sizeof(v));
		if (f->map && f->size >= 8 + f->header_len)
			EVP_DigestUpdate(md, f->map, (size_t)(8 + f->header_len));
	}
	return 0;
}

int stats_cache_key(struct smelt_stats *s, struct smelt_err *err)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char dig[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;
	char dir[3500], hex[65];
	uint32_t hdr[2] = {CACHE_VERSION, (uint32_t)s->n};
	int rc = 0;

	s->cache_path[0] = '\0';
	if (!md)
		return smelt_fail(err, SMELT_ENOMEM, "out of memory");
	if (cache_dir(s, dir, sizeof(dir)))
		goto out; /* no cache folder: run without a cache */
	EVP_DigestInit_ex(md, EVP_sha256(), NULL);
	EVP_DigestUpdate(md, "smelt-stats", 11);
	EVP_DigestUpdate(md, hdr, sizeof(hdr));
	if (hash_ckpt(md, s->base))
		goto out;
	for (int i = 0; i < s->n; i++)
		if (hash_ckpt(md, s->models[i]))
			goto out;
	EVP_DigestFinal_ex(md, dig, &dlen);
	memcpy(s->key, dig, sizeof(s->key));
	for (unsigned i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", dig[i]);
	snprintf(s->cache_path, sizeof(s->cache_path), "%s/%s.stats", dir, hex);
out:
	EVP_MD_CTX_free(md);
	return rc;
}

static int mkdirs(const char *path)
{
	char buf[4096];
	size_t len = strlen(path);

	if (len >= sizeof(buf))
		return -1;
	memcpy(buf, path, len + 1);
	for (size_t i = 1; i <= len; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		buf[i] = '\0';
		if (mkdir(buf, 0755) && errno != EEXIST)
			return -1;
		buf[i] = i < len ? '/' : '\0';
	}
	return 0;
}

struct writer {
	FILE *f;
	EVP_MD_CTX *md;
	bool ok;
};

static void put(struct writer *w, const void *p, size_t n)
{
	if (!w->ok || n == 0)
		return;
	w->ok = fwrite(p, 1, n, w->f) == n;
	EVP_DigestUpdate(w->md, p, n);
}

int stats_cache_save(struct smelt_stats *s, struct smelt_err *err)
{
	char dir[4096], tmp[4200];
	char *slash;
	struct writer w = {0};
	unsigned char dig[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;
	uint32_t hdr[2] = {CACHE_VERSION, (uint32_t)s->n};
	uint64_t nt = s->n_tensors;
	size_t n = (size_t)s->n;

	if (!s->cache_path[0])
		return 0;
	snprintf(dir, sizeof(dir), "%s", s->cache_path);
	slash = strrchr(dir, '/');
	if (slash)
		*slash = '\0';
	if (mkdirs(dir))
		return smelt_fail(err, SMELT_EIO, "%s: cannot create cache folder: %s", dir,
		                  strerror(errno));
	snprintf(tmp, sizeof(tmp), "%s.tmp%ld", s->cache_path, (long)getpid());
	w.md = EVP_MD_CTX_new();
	if (!w.md)
		return smelt_fail(err, SMELT_ENOMEM, "out of memory");
	w.f = fopen(tmp, "wb");
	if (!w.f) {
		EVP_MD_CTX_free(w.md);
		return smelt_fail(err, SMELT_EIO, "%s: %s", tmp, strerror(errno));
	}
	w.ok = EVP_DigestInit_ex(w.md, EVP_sha256(), NULL) == 1;
	put(&w, MAGIC, 8);
	put(&w, hdr, sizeof(hdr));
	put(&w, &nt, 8);
	put(&w, s->key, 32);
	for (size_t i = 0; w.ok && i < s->n_tensors; i++) {
		const struct stats_tensor *t = &s->t[i];
		uint32_t len = (uint32_t)strlen(t->info.name), br = (uint32_t)t->info.branch;
		uint64_t k = t->info.k;

		put(&w, &len, 4);
		put(&w, t->info.name, len);
		put(&w, &br, 4);
		put(&w, &k, 8);
		if (t->info.branch == SMELT_BRANCH_SKIPPED)
			continue;
		if (!t->done) {
			w.ok = false;
			break;
		}
		put(&w, t->mag, n * k * 8);
		put(&w, t->pos_m, n * k * 4);
		if (t->dir) {
			put(&w, t->dir, n * k * 8);
			put(&w, t->pos_q, n * k * 4);
		}
		if (t->mean_a)
			put(&w, t->mean_a, n * 8);
	}
	put(&w, TRAILER, 8);
	if (w.ok && EVP_DigestFinal_ex(w.md, dig, &dlen) == 1 && dlen == 32)
		w.ok = fwrite(dig, 1, 32, w.f) == 32;
	else
		w.ok = false;
	EVP_MD_CTX_free(w.md);
	w.ok = (fclose(w.f) == 0) && w.ok;
	if (!w.ok || rename(tmp, s->cache_path)) {
		unlink(tmp);
		return smelt_fail(err, SMELT_EIO, "%s: cannot write the statistics cache",
		                  s->cache_path);
	}
	return 0;
}

struct reader {
	const uint8_t *p, *end;
};

static bool get(struct reader *r, void *dst, size_t n)
{
	if ((size_t)(r->end - r->p) < n)
		return false;
	memcpy(dst, r->p, n);
	r->p += n;
	return true;
}

/* Whole file into memory when its SHA-256 trailer matches its contents. */
static uint8_t *read_verified(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	struct stat st;
	uint8_t *buf = NULL, dig[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;

	if (!f)
		return NULL;
	if (fstat(fileno(f), &st) || st.st_size < 8 + 8 + 8 + 32 + 8 + 32)
		goto fail;
	buf = malloc((size_t)st.st_size);
	if (!buf || fread(buf, 1, (size_t)st.st_size, f) != (size_t)st.st_size)
		goto fail;
	if (EVP_Digest(buf, (size_t)st.st_size - 32, dig, &dlen, EVP_sha256(), NULL) != 1 ||
	    dlen != 32 || memcmp(dig, buf + st.st_size - 32, 32))
		goto fail;
	fclose(f);
	*len = (size_t)st.st_size - 32;
	return buf;
fail:
	free(buf);
	fclose(f);
	return NULL;
}

int stats_cache_load(struct smelt_stats *s, struct smelt_err *err)
{
	struct reader r;
	char magic[8];
	uint32_t hdr[2];
	uint64_t nt, key[4];
	size_t n = (size_t)s->n, len;
	uint8_t *buf;
	int rc = 0;

	if (!s->cache_path[0] || !(buf = read_verified(s->cache_path, &len)))
		return 0;
	r.p = buf;
	r.end = buf + len;
	if (!get(&r, magic, 8) || memcmp(magic, MAGIC, 8) || !get(&r, hdr, sizeof(hdr)) ||
	    hdr[0] != CACHE_VERSION || hdr[1] != (uint32_t)s->n || !get(&r, &nt, 8) ||
	    nt != s->n_tensors || !get(&r, key, 32) || memcmp(key, s->key, 32))
		goto ignore;
	/* Check the whole table first so a stale file never installs half. */
	{
		struct reader c = r;

		for (size_t i = 0; i < s->n_tensors; i++) {
			const struct stats_tensor *t = &s->t[i];
			uint32_t nl, br;
			uint64_t k;
			size_t skip;

			if (!get(&c, &nl, 4) || nl != strlen(t->info.name) ||
			    (size_t)(c.end - c.p) < nl || memcmp(c.p, t->info.name, nl))
				goto ignore;
			c.p += nl;
			if (!get(&c, &br, 4) || br != (uint32_t)t->info.branch || !get(&c, &k, 8) ||
			    k != t->info.k)
				goto ignore;
			if (t->info.branch == SMELT_BRANCH_SKIPPED)
				continue;
			skip = n * (size_t)k * 12 +
			       (t->info.branch == SMELT_BRANCH_VECTOR ? n * 8 : n * (size_t)k * 12);
			if ((size_t)(c.end - c.p) < skip)
				goto ignore;
			c.p += skip;
		}
		if (!get(&c, magic, 8) || memcmp(magic, TRAILER, 8) || c.p != c.end)
			goto ignore;
	}
	for (size_t i = 0; i < s->n_tensors && rc == 0; i++) {
		const struct stats_tensor *t = &s->t[i];
		size_t k = (size_t)t->info.k;
		uint32_t nl, br;
		uint64_t k64;
		double *mag = NULL, *dir = NULL, *mean_a = NULL;
		uint32_t *pm = NULL, *pq = NULL;
		bool vec = t->info.branch == SMELT_BRANCH_VECTOR;

		get(&r, &nl, 4);
		r.p += nl;
		get(&r, &br, 4);
		get(&r, &k64, 8);
		if (t->info.branch == SMELT_BRANCH_SKIPPED)
			continue;
		mag = malloc(n * k * 8);
		pm = malloc(n * k * 4);
		if (vec)
			mean_a = malloc(n * 8);
		else {
			dir = malloc(n * k * 8);
			pq = malloc(n * k * 4);
		}
		if (!mag || !pm || (vec ? !mean_a : !dir || !pq)) {
			free(mag);
			free(pm);
			free(mean_a);
			free(dir);
			free(pq);
			rc = smelt_fail(err, SMELT_ENOMEM,
			                "out of memory loading the statistics cache");
			break;
		}
		get(&r, mag, n * k * 8);
		get(&r, pm, n * k * 4);
		if (vec) {
			get(&r, mean_a, n * 8);
		} else {
			get(&r, dir, n * k * 8);
			get(&r, pq, n * k * 4);
		}
		rc = stats_install(s, i, mag, dir, pm, pq, mean_a, err);
	}
	free(buf);
	return rc ? rc : 1;
ignore:
	free(buf);
	return 0;
}

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
 *   "SMELTEND"
 * Written to a temporary file and renamed, so a reader never sees half a
 * file. Divergences are float64 so the ranks stored beside them are the
 * exact ranks; nothing needs sorting on load.
 */
#include <errno.h>
#include <limits.h>
#include <openssl/evp.h>
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

static bool put(FILE *f, const void *p, size_t n)
{
	return n == 0 || fwrite(p, 1, n, f) == n;
}

int stats_cache_save(struct smelt_stats *s, struct smelt_err *err)
{
	char dir[4096], tmp[4200];
	char *slash;
	FILE *f;
	bool ok;
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
	f = fopen(tmp, "wb");
	if (!f)
		return smelt_fail(err, SMELT_EIO, "%s: %s", tmp, strerror(errno));
	ok = put(f, MAGIC, 8) && put(f, hdr, sizeof(hdr)) && put(f, &nt, 8) && put(f, s->key, 32);
	for (size_t i = 0; ok && i < s->n_tensors; i++) {
		const struct stats_tensor *t = &s->t[i];
		uint32_t len = (uint32_t)strlen(t->info.name), br = (uint32_t)t->info.branch;
		uint64_t k = t->info.k;

		ok = put(f, &len, 4) && put(f, t->info.name, len) && put(f, &br, 4) && put(f, &k, 8);
		if (!ok || t->info.branch == SMELT_BRANCH_SKIPPED)
			continue;
		if (!t->done) {
			ok = false;
			break;
		}
		ok = put(f, t->mag, n * k * 8) && put(f, t->pos_m, n * k * 4);
		if (ok && t->dir)
			ok = put(f, t->dir, n * k * 8) && put(f, t->pos_q, n * k * 4);
		if (ok && t->mean_a)
			ok = put(f, t->mean_a, n * 8);
	}
	ok = ok && put(f, TRAILER, 8);
	ok = (fclose(f) == 0) && ok;
	if (!ok || rename(tmp, s->cache_path)) {
		unlink(tmp);
		return smelt_fail(err, SMELT_EIO, "%s: cannot write the statistics cache",
				  s->cache_path);
	}
	return 0;
}

static bool get(FILE *f, void *p, size_t n)
{
	return n == 0 || fread(p, 1, n, f) == n;
}

int stats_cache_load(struct smelt_stats *s, struct smelt_err *err)
{
	FILE *f;
	char magic[8];
	uint32_t hdr[2];
	uint64_t nt, key[4];
	size_t n = (size_t)s->n;
	int rc = 0;

	if (!s->cache_path[0] || !(f = fopen(s->cache_path, "rb")))
		return 0;
	if (!get(f, magic, 8) || memcmp(magic, MAGIC, 8) || !get(f, hdr, sizeof(hdr)) ||
	    hdr[0] != CACHE_VERSION || hdr[1] != (uint32_t)s->n || !get(f, &nt, 8) ||
	    nt != s->n_tensors || !get(f, key, 32) || memcmp(key, s->key, 32))
		goto ignore;
	/* Check the whole table first so a stale file never installs half. */
	for (size_t i = 0; i < s->n_tensors; i++) {
		const struct stats_tensor *t = &s->t[i];
		uint32_t len, br;
		uint64_t k;
		char name[4096];
		long skip;

		if (!get(f, &len, 4) || len >= sizeof(name) || !get(f, name, len))
			goto ignore;
		name[len] = '\0';
		if (strcmp(name, t->info.name) || !get(f, &br, 4) || br != (uint32_t)t->info.branch ||
		    !get(f, &k, 8) || k != t->info.k)
			goto ignore;
		if (t->info.branch == SMELT_BRANCH_SKIPPED)
			continue;
		skip = (long)(n * k * 12);
		if (t->info.branch == SMELT_BRANCH_VECTOR)
			skip += (long)(n * 8);
		else
			skip += (long)(n * k * 12);
		if (fseek(f, skip, SEEK_CUR))
			goto ignore;
	}
	if (!get(f, magic, 8) || memcmp(magic, TRAILER, 8))
		goto ignore;
	if (fseek(f, 8 + 8 + 8 + 32, SEEK_SET))
		goto ignore;
	for (size_t i = 0; i < s->n_tensors; i++) {
		const struct stats_tensor *t = &s->t[i];
		uint32_t len, br;
		uint64_t k;
		char name[4096];
		double *mag = NULL, *dir = NULL, *mean_a = NULL;
		uint32_t *pm = NULL, *pq = NULL;
		bool vec = t->info.branch == SMELT_BRANCH_VECTOR;

		if (!get(f, &len, 4) || !get(f, name, len) || !get(f, &br, 4) || !get(f, &k, 8))
			goto ignore;
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
			rc = smelt_fail(err, SMELT_ENOMEM, "out of memory loading the statistics cache");
			break;
		}
		if (!get(f, mag, n * k * 8) || !get(f, pm, n * k * 4) ||
		    (vec ? !get(f, mean_a, n * 8)
			 : !get(f, dir, n * k * 8) || !get(f, pq, n * k * 4))) {
			free(mag);
			free(pm);
			free(mean_a);
			free(dir);
			free(pq);
			rc = smelt_fail(err, SMELT_EIO, "%s: read error", s->cache_path);
			break;
		}
		if ((rc = stats_install(s, i, mag, dir, pm, pq, mean_a, err)))
			break;
	}
	fclose(f);
	return rc ? rc : 1;
ignore:
	fclose(f);
	return 0;
}

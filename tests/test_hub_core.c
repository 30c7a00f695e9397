/* test_hub_core.c: the Hub client's pure parts (no network): references,
 * validation, globs, URL quoting, Retry-After, the range record, the cache
 * folder rules, cache lookup, writing links and refs, the cache scan. */
#include "check.h"
#include "hub_internal.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *C1 = "0123456789abcdef0123456789abcdef01234567";
static const char *C2 = "89abcdef0123456789abcdef0123456789abcdef";

TEST(repo_ids)
{
	static const char *good[] = {"gpt2", "org/name", "Org_1/na.me-2", "a/b", "a_b/c__d"};
	static const char *bad[] = {
	    "",
	    "a/b/c",
	    "/abs",
	    "org/",
	    "../x",
	    "org/..",
	    "org/a..b",
	    "org/a--b",
	    "org/name.git",
	    "org/-x",
	    "org/x.",
	    "org/na me",
	    "org/na\nme",
	    "org/na\\me",
	    "org/n@me",
	    "org/"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaaaaa"};
	struct smelt_err err = {0};

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		CHECK_MSG(smelt_hub_repo_id_check(good[i], &err) == 0, "%s: %s", good[i], err.msg);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK_MSG(smelt_hub_repo_id_check(bad[i], &err) == SMELT_EINVAL, "accepted '%s'",
		          bad[i]);
}

TEST(revisions)
{
	static const char *good[] = {"main", "v1.0", "refs/pr/1", "feature/x-y_z", "a.b"};
	static const char *bad[] = {"",    "..",   "a/../b", "/main",   "main/", "a//b",
	                            "a b", "a~1",  "a^",     "a:b",     "a?",    "a*",
	                            "a[",  "a\\b", "a\tb",   ".hidden", "x/.y"};
	struct smelt_err err = {0};

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		CHECK_MSG(smelt_hub_revision_check(good[i], &err) == 0, "%s: %s", good[i], err.msg);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK_MSG(smelt_hub_revision_check(bad[i], &err) == SMELT_EINVAL, "accepted '%s'",
		          bad[i]);
	CHECK(smelt_hub_is_commit(C1));
	CHECK(!smelt_hub_is_commit("0123456789ABCDEF0123456789abcdef01234567"));
	CHECK(!smelt_hub_is_commit("main"));
}

TEST(filenames)
{
	static const char *good[] = {"config.json", "a/b/c.safetensors", "name with space.json",
	                             "..hidden", "x..y"};
	static const char *bad[] = {"",     "/etc/passwd", "../x", "a/../b", "a/./b", "a//b", "a/",
	                            "a\\b", "C:x",         "a\nb", "a\x7f",  "..",    "."};
	struct smelt_err err = {0};

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		CHECK_MSG(smelt_hub_filename_check(good[i], &err) == 0, "%s: %s", good[i], err.msg);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK_MSG(smelt_hub_filename_check(bad[i], &err) == SMELT_EINVAL, "accepted '%s'",
		          bad[i]);
}

TEST(reference_parsing)
{
	struct smelt_hub_ref r;
	struct smelt_err err = {0};

	CHECK_EQ_INT(smelt_hub_ref_parse("org/name", &r, &err), 0);
	CHECK(strcmp(r.repo, "org/name") == 0 && strcmp(r.revision, "main") == 0 &&
	      !r.explicit_revision);
	CHECK_EQ_INT(smelt_hub_ref_parse("org/name@refs/pr/1", &r, &err), 0);
	CHECK(strcmp(r.revision, "refs/pr/1") == 0 && r.explicit_revision);
	CHECK_EQ_INT(smelt_hub_ref_parse("org/name@", &r, &err), SMELT_EINVAL);
	CHECK_EQ_INT(smelt_hub_ref_parse("org/name@a~b", &r, &err), SMELT_EINVAL);
	CHECK_EQ_INT(smelt_hub_ref_parse("org/../name", &r, &err), SMELT_EINVAL);
	CHECK_EQ_INT(smelt_hub_ref_parse("", &r, &err), SMELT_EINVAL);
}

TEST(url_quoting)
{
	char out[256];

	CHECK_EQ_INT(hub_quote("refs/pr/1", false, out, sizeof(out)), 0);
	CHECK_STR_CONTAINS(out, "refs%2Fpr%2F1");
	CHECK(strcmp(out, "refs%2Fpr%2F1") == 0);
	CHECK_EQ_INT(hub_quote("dir/a b+c%.json", true, out, sizeof(out)), 0);
	CHECK(strcmp(out, "dir/a%20b%2Bc%25.json") == 0);
	CHECK_EQ_INT(hub_quote("v1.0-rc_1~x", false, out, sizeof(out)), 0);
	CHECK(strcmp(out, "v1.0-rc_1~x") == 0);
	CHECK_EQ_INT(hub_quote("\xc3\xa9", false, out, sizeof(out)), 0);
	CHECK(strcmp(out, "%C3%A9") == 0);
	CHECK_EQ_INT(hub_quote("abcdef", false, out, 6), -1);
	CHECK_EQ_INT(hub_quote("a/b", false, out, 5), -1);
	CHECK_EQ_INT(hub_repo_folder("org/name", out, sizeof(out)), 0);
	CHECK(strcmp(out, "models--org--name") == 0);
	CHECK_EQ_INT(hub_repo_folder("gpt2", out, sizeof(out)), 0);
	CHECK(strcmp(out, "models--gpt2") == 0);
}

TEST(globs_and_default_set)
{
	const char *inc[] = {"*.json", "sub/"};
	const char *exc[] = {"generation_*", "*.bin"};

	CHECK(hub_glob_match("*.safetensors", "model-00001-of-00002.safetensors"));
	CHECK(hub_glob_match("*.safetensors", "adapters/x.safetensors")); /* '*' crosses '/' */
	CHECK(hub_glob_match("model-0000[1-2]*", "model-00002-of-00002.safetensors"));
	CHECK(hub_glob_match("sub/", "sub/deep/file"));
	CHECK(!hub_glob_match("sub/", "subway/file"));
	CHECK(!hub_glob_match("*.json", "model.safetensors"));

	CHECK(hub_file_selected("config.json", inc, 2, exc, 2));
	CHECK(hub_file_selected("sub/x.txt", inc, 2, exc, 2));
	CHECK(!hub_file_selected("generation_config.json", inc, 2, exc, 2));
	CHECK(!hub_file_selected("model.safetensors", inc, 2, exc, 2));

	/* No include: the default set, still minus excludes. */
	CHECK(hub_file_selected("model.safetensors", NULL, 0, NULL, 0));
	CHECK(hub_file_selected("model.safetensors.index.json", NULL, 0, NULL, 0));
	CHECK(hub_file_selected("tokenizer.json", NULL, 0, NULL, 0));
	CHECK(hub_file_selected("tokenizer_config.json", NULL, 0, NULL, 0));
	CHECK(hub_file_selected("tokenizer.model", NULL, 0, NULL, 0));
	CHECK(hub_file_selected("generation_config.json", NULL, 0, NULL, 0));
	CHECK(hub_file_selected("special_tokens_map.json", NULL, 0, NULL, 0));
	CHECK(hub_file_selected("vocab.json", NULL, 0, NULL, 0));
	CHECK(hub_file_selected("merges.txt", NULL, 0, NULL, 0));
	CHECK(!hub_file_selected("pytorch_model.bin", NULL, 0, NULL, 0));
	CHECK(!hub_file_selected("README.md", NULL, 0, NULL, 0));
	CHECK(!hub_file_selected("onnx/tokenizer.json", NULL, 0, NULL, 0));
	const char *no_st[] = {"*.safetensors"};
	CHECK(!hub_file_selected("model.safetensors", NULL, 0, no_st, 1));
}

TEST(etags)
{
	char out[HUB_ETAG_MAX];
	const char *sha = "18b21f0fd35c2c110a78f62d88e7603445bf3e29e241ba8ebfe95112837c8986";
	char quoted[100];

	snprintf(quoted, sizeof(quoted), "\"%s\"", sha);
	CHECK(hub_etag_normalize(quoted, out, sizeof(out)) && strcmp(out, sha) == 0);
	snprintf(quoted, sizeof(quoted), "W/\"%s\"", sha);
	CHECK(hub_etag_normalize(quoted, out, sizeof(out)) && strcmp(out, sha) == 0);
	CHECK(hub_etag_normalize("abc123", out, sizeof(out)) && strcmp(out, "abc123") == 0);
	CHECK(hub_is_sha256(sha));
	CHECK(!hub_is_sha256("abc123"));
	CHECK(!hub_etag_normalize("\"../../x\"", out, sizeof(out)));
	CHECK(!hub_etag_normalize("\"a/b\"", out, sizeof(out)));
	CHECK(!hub_etag_normalize("\"\"", out, sizeof(out)));
	CHECK(!hub_etag_normalize("\".hidden\"", out, sizeof(out)));
}

TEST(retry_after)
{
	long s = -1;
	time_t now = curl_getdate("Thu, 26 Nov 2026 07:00:00 GMT", NULL);

	CHECK_EQ_INT(hub_parse_retry_after("1", now, &s), 0);
	CHECK_EQ_INT(s, 1);
	CHECK_EQ_INT(hub_parse_retry_after(" 120\r\n", now, &s), 0);
	CHECK_EQ_INT(s, 120);
	CHECK_EQ_INT(hub_parse_retry_after("Thu, 26 Nov 2026 07:00:30 GMT", now, &s), 0);
	CHECK_EQ_INT(s, 30);
	CHECK_EQ_INT(hub_parse_retry_after("Thu, 26 Nov 2026 06:00:00 GMT", now, &s), 0);
	CHECK_EQ_INT(s, 0); /* a date in the past: no wait */
	CHECK_EQ_INT(hub_parse_retry_after("soon", now, &s), -1);
	CHECK_EQ_INT(hub_parse_retry_after("12abc", now, &s), -1);
	CHECK_EQ_INT(hub_parse_ratelimit("\"api\";r=0;t=55", &s), 0);
	CHECK_EQ_INT(s, 55);
	CHECK_EQ_INT(hub_parse_ratelimit("\"api\";r=10;t=55", &s), -1);
	CHECK_EQ_INT(hub_parse_ratelimit("garbage", &s), -1);
}

TEST(range_set)
{
	struct hub_ranges r, g = {0};

	hub_ranges_init(&r, 100);
	CHECK_EQ_INT(hub_ranges_add(&r, 10, 20), 0);
	CHECK_EQ_INT(hub_ranges_add(&r, 40, 50), 0);
	CHECK_EQ_INT(hub_ranges_add(&r, 30, 35), 0);
	CHECK_EQ_INT(r.n, 3);
	CHECK_EQ_INT(hub_ranges_covered(&r), 25);
	CHECK_EQ_INT(hub_ranges_add(&r, 20, 30), 0); /* touches both neighbours */
	CHECK_EQ_INT(r.n, 2);
	CHECK(r.v[0].start == 10 && r.v[0].end == 35);
	CHECK_EQ_INT(hub_ranges_add(&r, 5, 60), 0); /* swallows everything */
	CHECK_EQ_INT(r.n, 1);
	CHECK(r.v[0].start == 5 && r.v[0].end == 60);
	CHECK_EQ_INT(hub_ranges_add(&r, 90, 500), 0); /* clamped to the size */
	CHECK(r.v[1].end == 100);
	CHECK_EQ_INT(hub_ranges_add(&r, 70, 70), 0); /* empty: ignored */
	CHECK_EQ_INT(r.n, 2);
	CHECK_EQ_INT(hub_ranges_gaps(&r, &g), 0);
	CHECK_EQ_INT(g.n, 2);
	CHECK(g.v[0].start == 0 && g.v[0].end == 5 && g.v[1].start == 60 && g.v[1].end == 90);
	CHECK(!hub_ranges_complete(&r));
	CHECK_EQ_INT(hub_ranges_add(&r, 0, 100), 0);
	CHECK(hub_ranges_complete(&r));
	hub_ranges_free(&r);
	hub_ranges_free(&g);
}

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (f) {
		fputs(text, f);
		fclose(f);
	}
}

TEST(range_record)
{
	char path[512];
	struct hub_ranges r, back;
	struct smelt_err err = {0};

	snprintf(path, sizeof(path), "%s/rec.ranges", check_tmpdir());
	hub_ranges_init(&r, 1000);
	hub_ranges_init(&back, 1000);
	hub_ranges_add(&r, 0, 100);
	hub_ranges_add(&r, 500, 700);
	CHECK_EQ_INT(hub_ranges_save(path, &r, &err), 0);
	CHECK_EQ_INT(hub_ranges_load(path, 1000, &back), 0);
	CHECK_EQ_INT(back.n, 2);
	CHECK(back.v[1].start == 500 && back.v[1].end == 700);
	/* A record for another size means: start over. */
	CHECK_EQ_INT(hub_ranges_load(path, 999, &back), 0);
	CHECK_EQ_INT(back.n, 0);
	/* Garbage, overlong ranges, a missing file: start over too. */
	write_text(path, "smelt-ranges 1\nsize 1000\n0 100\n900 1200\n");
	CHECK_EQ_INT(hub_ranges_load(path, 1000, &back), 0);
	CHECK_EQ_INT(back.n, 0);
	write_text(path, "smelt-ranges 1\nsize 1000\n0 100\nxx\n");
	CHECK_EQ_INT(hub_ranges_load(path, 1000, &back), 0);
	CHECK_EQ_INT(back.n, 0);
	write_text(path, "not a record");
	CHECK_EQ_INT(hub_ranges_load(path, 1000, &back), 0);
	CHECK_EQ_INT(back.n, 0);
	unlink(path);
	CHECK_EQ_INT(hub_ranges_load(path, 1000, &back), 0);
	CHECK_EQ_INT(back.n, 0);
	hub_ranges_free(&r);
	hub_ranges_free(&back);
}

TEST(cache_dir_rules)
{
	char buf[1024];

	unsetenv("HF_HUB_CACHE");
	unsetenv("HUGGINGFACE_HUB_CACHE");
	unsetenv("HF_HOME");
	unsetenv("XDG_CACHE_HOME");
	setenv("HOME", "/home/u", 1);
	CHECK_EQ_INT(smelt_hub_cache_dir(buf, sizeof(buf)), 0);
	CHECK(strcmp(buf, "/home/u/.cache/huggingface/hub") == 0);
	setenv("XDG_CACHE_HOME", "/xdg", 1);
	CHECK_EQ_INT(smelt_hub_cache_dir(buf, sizeof(buf)), 0);
	CHECK(strcmp(buf, "/xdg/huggingface/hub") == 0);
	setenv("HF_HOME", "~/hf", 1);
	CHECK_EQ_INT(smelt_hub_cache_dir(buf, sizeof(buf)), 0);
	CHECK(strcmp(buf, "/home/u/hf/hub") == 0);
	setenv("HUGGINGFACE_HUB_CACHE", "/legacy", 1);
	CHECK_EQ_INT(smelt_hub_cache_dir(buf, sizeof(buf)), 0);
	CHECK(strcmp(buf, "/legacy") == 0);
	setenv("HF_HUB_CACHE", "/explicit", 1);
	CHECK_EQ_INT(smelt_hub_cache_dir(buf, sizeof(buf)), 0);
	CHECK(strcmp(buf, "/explicit") == 0);
	CHECK_EQ_INT(smelt_hub_cache_dir(buf, 4), SMELT_EINVAL);
	unsetenv("HF_HUB_CACHE");
	unsetenv("HUGGINGFACE_HUB_CACHE");
	unsetenv("HF_HOME");
	unsetenv("XDG_CACHE_HOME");
}

TEST(endpoint_and_token)
{
	char buf[256], path[512];
	struct smelt_err err = {0};

	unsetenv("HF_ENDPOINT");
	CHECK_EQ_INT(hub_endpoint(NULL, buf, sizeof(buf), &err), 0);
	CHECK(strcmp(buf, "https://huggingface.co") == 0);
	setenv("HF_ENDPOINT", "http://127.0.0.1:9/mirror//", 1);
	CHECK_EQ_INT(hub_endpoint(NULL, buf, sizeof(buf), &err), 0);
	CHECK(strcmp(buf, "http://127.0.0.1:9/mirror") == 0);
	CHECK_EQ_INT(hub_endpoint("ftp://x", buf, sizeof(buf), &err), SMELT_EINVAL);
	unsetenv("HF_ENDPOINT");

	unsetenv("HF_TOKEN");
	unsetenv("HUGGING_FACE_HUB_TOKEN");
	unsetenv("HF_TOKEN_PATH");
	unsetenv("HF_HUB_DISABLE_IMPLICIT_TOKEN");
	setenv("HF_HOME", check_tmpdir(), 1);
	CHECK_EQ_INT(hub_token(NULL, buf, sizeof(buf), &err), 0);
	CHECK(buf[0] == '\0');
	snprintf(path, sizeof(path), "%s/token", check_tmpdir());
	write_text(path, "  hf_fromfile\r\n");
	CHECK_EQ_INT(hub_token(NULL, buf, sizeof(buf), &err), 0);
	CHECK(strcmp(buf, "hf_fromfile") == 0);
	setenv("HF_TOKEN", "hf_env\n", 1);
	CHECK_EQ_INT(hub_token(NULL, buf, sizeof(buf), &err), 0);
	CHECK(strcmp(buf, "hf_env") == 0);
	CHECK_EQ_INT(hub_token("hf_override", buf, sizeof(buf), &err), 0);
	CHECK(strcmp(buf, "hf_override") == 0);
	CHECK_EQ_INT(hub_token("", buf, sizeof(buf), &err), 0);
	CHECK(buf[0] == '\0');
	setenv("HF_HUB_DISABLE_IMPLICIT_TOKEN", "1", 1);
	CHECK_EQ_INT(hub_token(NULL, buf, sizeof(buf), &err), 0);
	CHECK(buf[0] == '\0');
	CHECK_EQ_INT(hub_token("hf_bad token", buf, sizeof(buf), &err), SMELT_EINVAL);
	CHECK(strstr(err.msg, "hf_bad") == NULL); /* never echoed */
	unsetenv("HF_HUB_DISABLE_IMPLICIT_TOKEN");
	unsetenv("HF_TOKEN");
	unsetenv("HF_HOME");
	unlink(path);

	setenv("HF_HUB_OFFLINE", "yes", 1);
	CHECK(hub_env_truthy("HF_HUB_OFFLINE"));
	setenv("HF_HUB_OFFLINE", "0", 1);
	CHECK(!hub_env_truthy("HF_HUB_OFFLINE"));
	unsetenv("HF_HUB_OFFLINE");
	CHECK(hub_same_origin("http://a:80/x", "http://A/y"));
	CHECK(!hub_same_origin("http://a:81/x", "http://a/y"));
	CHECK(!hub_same_origin("https://a/x", "http://a/x"));
}

/* Build a cache by hand, as huggingface_hub would, then read it. */
TEST(cache_lookup_links_and_scan)
{
	char cache[512], repo[600], snap[1024], path[1200], target[256];
	struct smelt_err err = {0};
	struct smelt_hub_ref ref;
	struct smelt_hub_cache_list list;

	snprintf(cache, sizeof(cache), "%s/cache", check_tmpdir());
	CHECK_EQ_INT(hub_cache_repo_path(cache, "org/name", repo, sizeof(repo)), 0);
	CHECK_EQ_INT(hub_cache_write_ref(repo, "main", C1, &err), 0);
	CHECK_EQ_INT(hub_cache_write_ref(repo, "refs/pr/1", C2, &err), 0);
	snprintf(path, sizeof(path), "%s/blobs", repo);
	CHECK_EQ_INT(hub_mkdirs(path, &err), 0);
	snprintf(path, sizeof(path), "%s/blobs/aaaa", repo);
	write_text(path, "0123456789");
	snprintf(path, sizeof(path), "%s/blobs/bbbb.incomplete", repo);
	write_text(path, "");
	CHECK_EQ_INT(hub_cache_link(repo, C1, "config.json", "aaaa", &err), 0);
	CHECK_EQ_INT(hub_cache_link(repo, C1, "sub/dir/x.json", "aaaa", &err), 0);
	CHECK_EQ_INT(hub_cache_link(repo, C1, "config.json", "aaaa", &err), 0); /* replace */

	snprintf(path, sizeof(path), "%s/snapshots/%s/sub/dir/x.json", repo, C1);
	ssize_t n = readlink(path, target, sizeof(target) - 1);
	target[n > 0 ? n : 0] = '\0';
	CHECK(strcmp(target, "../../../../blobs/aaaa") == 0);
	CHECK(hub_cache_snapshot_has(repo, C1, "sub/dir/x.json"));
	CHECK(!hub_cache_snapshot_has(repo, C1, "missing.json"));
	snprintf(path, sizeof(path), "%s/refs/main", repo);
	FILE *f = fopen(path, "r");
	char text[64] = {0};
	if (f) {
		CHECK(fread(text, 1, sizeof(text) - 1, f) == 40);
		fclose(f);
	}
	CHECK(strcmp(text, C1) == 0); /* bare commit, no newline */

	CHECK_EQ_INT(smelt_hub_ref_parse("org/name", &ref, &err), 0);
	CHECK_EQ_INT(smelt_hub_cache_lookup(cache, &ref, snap, sizeof(snap), &err), 0);
	snprintf(path, sizeof(path), "%s/snapshots/%s", repo, C1);
	CHECK(strcmp(snap, path) == 0);
	CHECK_EQ_INT(
	    smelt_hub_ref_parse("org/name@0123456789abcdef0123456789abcdef01234567", &ref, &err),
	    0);
	CHECK_EQ_INT(smelt_hub_cache_lookup(cache, &ref, snap, sizeof(snap), &err), 0);
	/* refs/pr/1 names a commit without a snapshot folder. */
	CHECK_EQ_INT(smelt_hub_ref_parse("org/name@refs/pr/1", &ref, &err), 0);
	CHECK_EQ_INT(smelt_hub_cache_lookup(cache, &ref, snap, sizeof(snap), &err),
	             SMELT_ENOTFOUND);
	CHECK_STR_CONTAINS(err.msg, "org/name@refs/pr/1 is not in the Hugging Face cache");
	CHECK_EQ_INT(smelt_hub_ref_parse("org/other", &ref, &err), 0);
	CHECK_EQ_INT(smelt_hub_cache_lookup(cache, &ref, snap, sizeof(snap), &err),
	             SMELT_ENOTFOUND);
	/* A ref file that does not hold a commit is no ref. */
	snprintf(path, sizeof(path), "%s/refs/bad", repo);
	write_text(path, "../../../etc");
	CHECK_EQ_INT(smelt_hub_ref_parse("org/name@bad", &ref, &err), 0);
	CHECK_EQ_INT(smelt_hub_cache_lookup(cache, &ref, snap, sizeof(snap), &err),
	             SMELT_ENOTFOUND);

	/* Another repo, and junk that is not a repo folder. */
	CHECK_EQ_INT(hub_cache_repo_path(cache, "gpt2", repo, sizeof(repo)), 0);
	CHECK_EQ_INT(hub_cache_write_ref(repo, "main", C2, &err), 0);
	snprintf(path, sizeof(path), "%s/not-a-repo", cache);
	CHECK_EQ_INT(hub_mkdirs(path, &err), 0);

	CHECK_EQ_INT(smelt_hub_cache_scan(cache, &list, &err), 0);
	CHECK_EQ_INT(list.n, 2);
	if (list.n == 2) {
		CHECK(strcmp(list.repos[0].repo, "gpt2") == 0);
		const struct smelt_hub_cached_repo *r = &list.repos[1];
		CHECK(strcmp(r->repo, "org/name") == 0 && strcmp(r->type, "model") == 0);
		CHECK_EQ_INT(r->n_refs, 2); /* "bad" is skipped */
		if (r->n_refs == 2) {
			CHECK(strcmp(r->refs[0].name, "main") == 0);
			CHECK(strcmp(r->refs[1].name, "refs/pr/1") == 0);
			CHECK(strcmp(r->refs[1].commit, C2) == 0);
		}
		CHECK_EQ_INT(r->n_snapshots, 1);
		CHECK_EQ_INT(r->size_on_disk, 10);
	}
	smelt_hub_cache_list_free(&list);
	snprintf(path, sizeof(path), "%s/absent", cache);
	CHECK_EQ_INT(smelt_hub_cache_scan(path, &list, &err), 0);
	CHECK_EQ_INT(list.n, 0);
}

TEST(lock_excludes_and_cancels)
{
	char path[512];
	struct smelt_err err = {0};
	atomic_bool cancel = true;
	int fd = -1, other;

	snprintf(path, sizeof(path), "%s/locks/x/etag.lock", check_tmpdir());
	CHECK_EQ_INT(hub_lock(path, NULL, &fd, &err), 0);
	/* A second open file description cannot take it... */
	other = open(path, O_RDWR);
	CHECK(other >= 0 && flock(other, LOCK_EX | LOCK_NB) != 0);
	/* ...and a waiter gives up when cancelled. */
	int fd2 = -1;
	CHECK_EQ_INT(hub_lock(path, &cancel, &fd2, &err), SMELT_ECANCELED);
	hub_unlock(fd);
	CHECK(flock(other, LOCK_EX | LOCK_NB) == 0);
	close(other);
}

int main(void)
{
	RUN(repo_ids);
	RUN(revisions);
	RUN(filenames);
	RUN(reference_parsing);
	RUN(url_quoting);
	RUN(globs_and_default_set);
	RUN(etags);
	RUN(retry_after);
	RUN(range_set);
	RUN(range_record);
	RUN(cache_dir_rules);
	RUN(endpoint_and_token);
	RUN(cache_lookup_links_and_scan);
	RUN(lock_excludes_and_cancels);
	return check_summary();
}

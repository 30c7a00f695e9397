/*
 * test_st.c: the safetensors writer and reader together: layout rules of
 * the reference writer, round trips for every dtype, metadata, concurrent
 * pwrite, atomic replacement and clean failure.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "smelt/rng.h"
#include "smelt/st.h"

static char *path_in_tmp(const char *name)
{
	static char buf[8][4200];
	static int k;
	char *p = buf[k++ % 8];

	snprintf(p, 4200, "%s/%s", check_tmpdir(), name);
	return p;
}

static bool exists(const char *p)
{
	struct stat st;

	return stat(p, &st) == 0;
}

/* Count leftovers "<name>.tmp-*" in the temp folder. */
static int count_temp_files(void)
{
	char cmd[4400];
	FILE *f;
	int n = 0;

	snprintf(cmd, sizeof(cmd), "ls -a '%s' | grep -c '\\.tmp-' || true", check_tmpdir());
	f = popen(cmd, "r");
	if (f) {
		if (fscanf(f, "%d", &n) != 1)
			n = -1;
		pclose(f);
	}
	return n;
}

TEST(every_dtype_round_trips)
{
	struct smelt_st_out_tensor t[SMELT_DTYPE_COUNT];
	const void *data[SMELT_DTYPE_COUNT];
	uint8_t *bytes[SMELT_DTYPE_COUNT];
	char names[SMELT_DTYPE_COUNT][32];
	struct smelt_err err;
	struct smelt_st_file f;
	const char *path = path_in_tmp("all.safetensors");

	for (int i = 0; i < SMELT_DTYPE_COUNT; i++) {
		snprintf(names[i], sizeof(names[i]), "t.%s", smelt_dtype_name((enum smelt_dtype)i));
		memset(&t[i], 0, sizeof(t[i]));
		t[i].name = names[i];
		t[i].dtype = (enum smelt_dtype)i;
		t[i].ndim = 2;
		t[i].shape[0] = 3;
		t[i].shape[1] = 8; /* 24 elements: whole bytes for 4- and 6-bit types */
		bytes[i] = malloc(24 * 8);
		for (size_t b = 0; b < 24 * 8; b++)
			bytes[i][b] = (uint8_t)smelt_rng_u64((uint64_t)i, b);
		data[i] = bytes[i];
	}
	CHECK_EQ_INT(smelt_st_write_file(path, t, data, SMELT_DTYPE_COUNT, &err), 0);
	CHECK_EQ_INT(smelt_st_open(&f, path, &err), 0);
	CHECK_EQ_INT(f.n_tensors, SMELT_DTYPE_COUNT);
	CHECK_EQ_INT(f.header_len % 8, 0);
	CHECK(strcmp(smelt_st_meta_get(&f, "format"), "pt") == 0);
	CHECK(memcmp(f.map + 8, "{\"__metadata__\":{\"format\":\"pt\"}", 31) == 0);
	for (int i = 0; i < SMELT_DTYPE_COUNT; i++) {
		const struct smelt_st_tensor *r = smelt_st_find(&f, names[i]);

		CHECK(r != NULL);
		if (!r)
			continue;
		CHECK_EQ_INT(r->dtype, i);
		CHECK_EQ_INT(r->ndim, 2);
		CHECK_EQ_INT(r->end - r->begin, t[i].nbytes);
		CHECK_EQ_INT(8 + f.header_len + r->begin, t[i].file_offset);
		CHECK(memcmp(smelt_st_bytes(&f, r), bytes[i], t[i].nbytes) == 0);
		/* Every tensor of 1 byte or more starts aligned to its element size. */
		if (smelt_dtype_bits(r->dtype) >= 8)
			CHECK_EQ_INT(t[i].file_offset % (smelt_dtype_bits(r->dtype) / 8), 0);
	}
	/* Layout: dtype descending (enum order), tensors listed in offset order. */
	for (size_t i = 1; i < f.n_tensors; i++) {
		CHECK(f.tensors[i - 1].dtype > f.tensors[i].dtype);
		CHECK(f.tensors[i - 1].end == f.tensors[i].begin);
	}
	CHECK(smelt_st_find(&f, "missing") == NULL);
	smelt_st_close(&f);
	for (int i = 0; i < SMELT_DTYPE_COUNT; i++)
		free(bytes[i]);
}

TEST(float_values_round_trip)
{
	static const enum smelt_dtype dts[] = {SMELT_F32, SMELT_F16, SMELT_BF16, SMELT_F64};
	float src[37], back[37];
	uint8_t enc[4][37 * 8];
	struct smelt_st_out_tensor t[4];
	const void *data[4];
	struct smelt_err err;
	struct smelt_st_file f;
	const char *path = path_in_tmp("floats.safetensors");
	static const char *names[] = {"f32", "f16", "bf16", "f64"};

	for (int i = 0; i < 37; i++)
		src[i] = (float)i * 0.37f - 5.0f;
	for (int d = 0; d < 4; d++) {
		memset(&t[d], 0, sizeof(t[d]));
		t[d].name = names[d];
		t[d].dtype = dts[d];
		t[d].ndim = 1;
		t[d].shape[0] = 37;
		smelt_from_f32(dts[d], src, enc[d], 37);
		data[d] = enc[d];
	}
	CHECK_EQ_INT(smelt_st_write_file(path, t, data, 4, &err), 0);
	CHECK_EQ_INT(smelt_st_open(&f, path, &err), 0);
	for (int d = 0; d < 4; d++) {
		const struct smelt_st_tensor *r = smelt_st_find(&f, names[d]);

		smelt_to_f32(r->dtype, smelt_st_bytes(&f, r), back, 37);
		for (int i = 0; i < 37; i++) {
			float want = dts[d] == SMELT_F16    ? smelt_f16_to_f32(smelt_f32_to_f16(src[i]))
				     : dts[d] == SMELT_BF16 ? smelt_bf16_to_f32(smelt_f32_to_bf16(src[i]))
							    : src[i];

			CHECK_MSG(back[i] == want, "%s[%d]: %g != %g", names[d], i, back[i], want);
		}
	}
	/* Same dtype sorted by name: bf16 < f16? no: BF16 > F16 in enum order. */
	CHECK(strcmp(f.tensors[0].name, "f64") == 0);
	CHECK(strcmp(f.tensors[1].name, "f32") == 0);
	CHECK(strcmp(f.tensors[2].name, "bf16") == 0);
	CHECK(strcmp(f.tensors[3].name, "f16") == 0);
	smelt_st_close(&f);
}

TEST(header_layout_and_metadata)
{
	struct smelt_st_out_tensor t[3] = {
		{.name = "b", .dtype = SMELT_F32, .ndim = 1, .shape = {2}},
		{.name = "a", .dtype = SMELT_F32, .ndim = 1, .shape = {2}},
		{.name = "q\"\\\n\xc3\xa9", .dtype = SMELT_U8, .ndim = 0},
	};
	struct smelt_st_meta meta[2] = {{"format", "mlx"}, {"note", "x\"y"}};
	struct smelt_st_writer w;
	struct smelt_err err;
	struct smelt_st_file f;
	uint8_t zeros[8] = {0};
	const char *path = path_in_tmp("meta.safetensors");
	char *hdr;

	CHECK_EQ_INT(smelt_st_writer_open(&w, path, t, 3, meta, 2, &err), 0);
	CHECK(!exists(path)); /* nothing under the final name before commit */
	CHECK_EQ_INT(smelt_st_writer_pwrite(&w, t[0].file_offset, zeros, 8, &err), 0);
	CHECK_EQ_INT(smelt_st_writer_pwrite(&w, w.file_size, zeros, 1, &err), SMELT_EINVAL);
	CHECK_EQ_INT(smelt_st_writer_commit(&w, &err), 0);
	CHECK(exists(path));
	CHECK_EQ_INT(count_temp_files(), 0);
	smelt_st_writer_abort(&w); /* no-op after commit */
	CHECK(exists(path));
	CHECK_EQ_INT(smelt_st_open(&f, path, &err), 0);
	hdr = strndup((const char *)f.map + 8, f.header_len);
	{
		/* The JSON ends at the last '}', then only spaces (at most 7). */
		size_t end = strlen(hdr);

		while (end && hdr[end - 1] == ' ')
			end--;
		CHECK(f.header_len - end < 8);
		CHECK(strncmp(hdr, "{\"__metadata__\":{\"format\":\"mlx\",\"note\":\"x\\\"y\"},"
				   "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
				   "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]},"
				   "\"q\\\"\\\\\\n\xc3\xa9\":{\"dtype\":\"U8\",\"shape\":[],"
				   "\"data_offsets\":[16,17]}}",
			      end) == 0);
	}
	CHECK(smelt_st_find(&f, "q\"\\\n\xc3\xa9") != NULL);
	CHECK(strcmp(smelt_st_meta_get(&f, "note"), "x\"y") == 0);
	CHECK_EQ_INT(f.n_meta, 2);
	free(hdr);
	smelt_st_close(&f);
}

TEST(empty_file)
{
	struct smelt_err err;
	struct smelt_st_file f;
	const char *path = path_in_tmp("empty.safetensors");

	CHECK_EQ_INT(smelt_st_write_file(path, NULL, NULL, 0, &err), 0);
	CHECK_EQ_INT(smelt_st_open(&f, path, &err), 0);
	CHECK_EQ_INT(f.n_tensors, 0);
	CHECK_EQ_INT(f.size, 8 + 32);
	smelt_st_close(&f);
}

TEST(writer_refuses_bad_input)
{
	struct smelt_st_out_tensor dup[2] = {{.name = "a", .dtype = SMELT_U8, .ndim = 1, .shape = {1}},
					     {.name = "a", .dtype = SMELT_U8, .ndim = 1, .shape = {1}}};
	struct smelt_st_out_tensor odd = {.name = "f4", .dtype = SMELT_F4, .ndim = 1, .shape = {3}};
	struct smelt_st_out_tensor bad = {.name = "\xff", .dtype = SMELT_U8, .ndim = 0};
	struct smelt_st_out_tensor meta = {.name = "__metadata__", .dtype = SMELT_U8, .ndim = 0};
	struct smelt_st_writer w;
	struct smelt_err err;

	CHECK_EQ_INT(smelt_st_writer_open(&w, path_in_tmp("x.safetensors"), dup, 2, NULL, 0, &err),
		     SMELT_EINVAL);
	CHECK_STR_CONTAINS(err.msg, "tensor 'a' given twice");
	CHECK_EQ_INT(smelt_st_writer_open(&w, path_in_tmp("x.safetensors"), &odd, 1, NULL, 0, &err),
		     SMELT_EINVAL);
	CHECK_STR_CONTAINS(err.msg, "not a whole number of bytes");
	CHECK_EQ_INT(smelt_st_writer_open(&w, path_in_tmp("x.safetensors"), &bad, 1, NULL, 0, &err),
		     SMELT_EINVAL);
	CHECK_STR_CONTAINS(err.msg, "not valid UTF-8");
	CHECK_EQ_INT(smelt_st_writer_open(&w, path_in_tmp("x.safetensors"), &meta, 1, NULL, 0, &err),
		     SMELT_EINVAL);
	CHECK(!exists(path_in_tmp("x.safetensors")));
	CHECK_EQ_INT(count_temp_files(), 0);
	/* Folder does not exist: the message names the final path and the cause. */
	CHECK_EQ_INT(smelt_st_write_file(path_in_tmp("no/such/dir.safetensors"), &odd, NULL, 0, &err),
		     SMELT_EIO);
	CHECK_STR_CONTAINS(err.msg, "no/such/dir.safetensors");
	CHECK_STR_CONTAINS(err.msg, "No such file or directory");
}

TEST(header_over_limit_is_refused)
{
	size_t len = SMELT_ST_HEADER_MAX;
	char *name = malloc(len + 1);
	struct smelt_st_out_tensor t = {.dtype = SMELT_U8, .ndim = 0};
	struct smelt_st_writer w;
	struct smelt_err err;

	memset(name, 'n', len);
	name[len] = '\0';
	t.name = name;
	CHECK_EQ_INT(smelt_st_writer_open(&w, path_in_tmp("big.safetensors"), &t, 1, NULL, 0, &err),
		     SMELT_EINVAL);
	CHECK_STR_CONTAINS(err.msg, "over the 100000000-byte limit");
	CHECK_EQ_INT(count_temp_files(), 0);
	free(name);
}

TEST(disk_full_fails_up_front)
{
	struct smelt_st_out_tensor t = {.name = "w", .dtype = SMELT_F32, .ndim = 2,
					.shape = {1024, 1024}};
	struct smelt_st_writer w;
	struct smelt_err err;
	struct rlimit old, lim;
	const char *path = path_in_tmp("full.safetensors");
	int rc;

	/* A file-size limit stands in for a full disk: the preallocation
	 * fails (EFBIG) before any tensor is written, and nothing remains. */
	signal(SIGXFSZ, SIG_IGN);
	getrlimit(RLIMIT_FSIZE, &old);
	lim = old;
	lim.rlim_cur = 64 * 1024;
	setrlimit(RLIMIT_FSIZE, &lim);
	rc = smelt_st_writer_open(&w, path, &t, 1, NULL, 0, &err);
	setrlimit(RLIMIT_FSIZE, &old);
	CHECK_EQ_INT(rc, SMELT_EIO);
	CHECK_STR_CONTAINS(err.msg, "full.safetensors: cannot reserve ");
	CHECK_STR_CONTAINS(err.msg, "File too large");
	CHECK(!exists(path));
	CHECK_EQ_INT(count_temp_files(), 0);
}

struct pw_ctx {
	struct smelt_st_writer *w;
	uint64_t base;
	int part;
	int rc;
};

static void *pw_thread(void *arg)
{
	struct pw_ctx *c = arg;
	uint8_t buf[4096];
	struct smelt_err err;

	for (int k = 0; k < 64; k++) {
		uint64_t off = ((uint64_t)c->part * 64 + (uint64_t)k) * sizeof(buf);

		for (size_t i = 0; i < sizeof(buf); i++)
			buf[i] = (uint8_t)((off + i) * 7);
		c->rc |= smelt_st_writer_pwrite(c->w, c->base + off, buf, sizeof(buf), &err);
	}
	return NULL;
}

TEST(concurrent_pwrite_and_abort)
{
	struct smelt_st_out_tensor t = {.name = "big", .dtype = SMELT_U8, .ndim = 1,
					.shape = {4 * 64 * 4096}};
	struct smelt_st_writer w;
	struct smelt_err err;
	struct smelt_st_file f;
	pthread_t th[4];
	struct pw_ctx ctx[4];
	const char *path = path_in_tmp("threads.safetensors");
	bool same = true;

	CHECK_EQ_INT(smelt_st_writer_open(&w, path, &t, 1, NULL, 0, &err), 0);
	for (int i = 0; i < 4; i++) {
		ctx[i] = (struct pw_ctx){&w, t.file_offset, i, 0};
		pthread_create(&th[i], NULL, pw_thread, &ctx[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		CHECK_EQ_INT(ctx[i].rc, 0);
	}
	CHECK_EQ_INT(smelt_st_writer_commit(&w, &err), 0);
	CHECK_EQ_INT(smelt_st_open(&f, path, &err), 0);
	for (uint64_t i = 0; i < t.nbytes; i++)
		same &= smelt_st_bytes(&f, &f.tensors[0])[i] == (uint8_t)(i * 7);
	CHECK(same);

	/* Replacing the file keeps the old mapping intact (rename, not truncate). */
	{
		struct smelt_st_out_tensor t2 = {.name = "small", .dtype = SMELT_U8, .ndim = 1,
						 .shape = {1}};
		uint8_t one = 1;
		const void *d = &one;
		struct smelt_st_file g;

		CHECK_EQ_INT(smelt_st_write_file(path, &t2, &d, 1, &err), 0);
		CHECK_EQ_INT(smelt_st_bytes(&f, &f.tensors[0])[4095], (uint8_t)(4095 * 7));
		CHECK_EQ_INT(smelt_st_open(&g, path, &err), 0);
		CHECK_EQ_INT(g.n_tensors, 1);
		smelt_st_close(&g);
	}
	smelt_st_close(&f);

	/* Abort leaves neither the file nor the temporary. */
	CHECK_EQ_INT(smelt_st_writer_open(&w, path_in_tmp("aborted.safetensors"), &t, 1, NULL, 0,
					  &err),
		     0);
	CHECK(exists(w.tmp_path));
	smelt_st_writer_abort(&w);
	CHECK(!exists(path_in_tmp("aborted.safetensors")));
	CHECK_EQ_INT(count_temp_files(), 0);
}

TEST(open_errors)
{
	struct smelt_st_file f;
	struct smelt_err err;

	CHECK_EQ_INT(smelt_st_open(&f, path_in_tmp("nope.safetensors"), &err), SMELT_ENOTFOUND);
	CHECK_STR_CONTAINS(err.msg, "nope.safetensors: No such file or directory");
	CHECK_EQ_INT(smelt_st_open(&f, check_tmpdir(), &err), SMELT_EIO);
	CHECK_STR_CONTAINS(err.msg, "not a regular file");
	smelt_st_close(&f);
	{
		struct smelt_st_file z = {0};

		smelt_st_close(&z); /* a zeroed struct is fine */
	}
}

TEST(safe_name)
{
	char buf[16];

	CHECK(strcmp(smelt_st_safe_name("abc", buf, sizeof(buf)), "abc") == 0);
	CHECK(strcmp(smelt_st_safe_name("a\nb", buf, sizeof(buf)), "a\\x0ab") == 0);
	CHECK(strcmp(smelt_st_safe_name("0123456789abcdefghij", buf, sizeof(buf)),
		     "0123456789a...") == 0);
	CHECK(strlen(smelt_st_safe_name("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", buf,
					sizeof(buf))) < sizeof(buf));
	/* a cut never splits a UTF-8 sequence, whatever the buffer held */
	memset(buf, 0xa9, sizeof(buf));
	CHECK(strcmp(smelt_st_safe_name("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", buf,
				       sizeof(buf)),
		     "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9...") == 0);
	memset(buf, 0xa9, sizeof(buf));
	CHECK(strcmp(smelt_st_safe_name("0123456789abcdefghij", buf, sizeof(buf)),
		     "0123456789a...") == 0);
}

int main(void)
{
	RUN(every_dtype_round_trips);
	RUN(float_values_round_trip);
	RUN(header_layout_and_metadata);
	RUN(empty_file);
	RUN(writer_refuses_bad_input);
	RUN(header_over_limit_is_refused);
	RUN(disk_full_fails_up_front);
	RUN(concurrent_pwrite_and_abort);
	RUN(open_errors);
	RUN(safe_name);
	return check_summary();
}

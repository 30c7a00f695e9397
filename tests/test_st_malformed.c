/*
 * test_st_malformed.c: the reader's validation rules, one or more cases per
 * rule, with every fixture of docs/formats.md (the reference test vectors)
 * rebuilt here as bytes. Each case expects its own message fragment, the
 * file name at the start, and a single line.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "smelt/st.h"

#define FILE_NAME "model.safetensors"

static struct smelt_err ERR;

/* Build N (LE) + header + data_len bytes of data (+ tail) and parse it. */
static int parse_bytes(const void *hdr, size_t hlen, size_t data_len, const char *tail,
		       struct smelt_err *err)
{
	size_t tl = tail ? strlen(tail) : 0, total = 8 + hlen + data_len + tl;
	uint8_t *buf = calloc(1, total);
	struct smelt_st_file f;
	int rc;

	for (int i = 0; i < 8; i++)
		buf[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
	memcpy(buf + 8, hdr, hlen);
	if (tl)
		memcpy(buf + 8 + hlen + data_len, tail, tl);
	smelt_err_clear(err);
	rc = smelt_st_parse(buf, total, total, FILE_NAME, &f, err);
	if (rc == 0)
		smelt_st_close(&f);
	free(buf);
	return rc;
}

static int parse_str(const char *hdr, size_t data_len, struct smelt_err *err)
{
	return parse_bytes(hdr, strlen(hdr), data_len, NULL, err);
}

static void expect_fail(int rc, const struct smelt_err *err, const char *fragment, int line)
{
	if (rc != SMELT_EFORMAT)
		check_fail(__FILE__, line, "expected SMELT_EFORMAT with '%s', got %d (%s)", fragment,
			   rc, err->msg);
	if (!strstr(err->msg, fragment))
		check_fail(__FILE__, line, "'%s' does not contain '%s'", err->msg, fragment);
	if (strncmp(err->msg, FILE_NAME ": ", strlen(FILE_NAME) + 2) != 0)
		check_fail(__FILE__, line, "'%s' does not start with the file name", err->msg);
	if (strchr(err->msg, '\n'))
		check_fail(__FILE__, line, "'%s' is more than one line", err->msg);
}

#define FAILS(expr, fragment)                                                                      \
	do {                                                                                       \
		int rc_ = (expr);                                                                  \
		expect_fail(rc_, &ERR, fragment, __LINE__);                                        \
	} while (0)

#define OK(expr)                                                                                   \
	do {                                                                                       \
		int rc_ = (expr);                                                                  \
		CHECK_MSG(rc_ == 0, "expected success, got %d: %s", rc_, ERR.msg);                \
	} while (0)

/* ---- the reference fixtures ---- */

TEST(fixture_empty_file)
{
	struct smelt_st_file f;
	char path[4200];
	int fd;

	FAILS(smelt_st_parse((const uint8_t *)"", 0, 0, FILE_NAME, &f, &ERR), "(HeaderTooSmall)");
	FAILS(smelt_st_parse((const uint8_t *)"\x01\0\0", 3, 3, FILE_NAME, &f, &ERR),
	      "(HeaderTooSmall)");
	/* Through open(): a 0-byte file is HeaderTooSmall, not a mmap error. */
	snprintf(path, sizeof(path), "%s/empty.safetensors", check_tmpdir());
	fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
	CHECK(fd >= 0);
	close(fd);
	CHECK_EQ_INT(smelt_st_open(&f, path, &ERR), SMELT_EFORMAT);
	CHECK_STR_CONTAINS(ERR.msg, "(HeaderTooSmall)");
	CHECK_STR_CONTAINS(ERR.msg, "empty.safetensors: ");
	smelt_st_close(&f);
}

TEST(fixture_header_length)
{
	uint8_t b[8] = {60, 0, 0, 0, 0, 0, 0, 0};
	uint8_t huge[16] = {0, 0, 0, 0, 0, 0, 0xff, 0xff, '{', '}'};
	uint8_t over[16] = {0x01, 0xe1, 0xf5, 0x05, 0, 0, 0, 0}; /* 100000001 */
	struct smelt_st_file f;

	FAILS(smelt_st_parse(b, 8, 8, FILE_NAME, &f, &ERR), "(InvalidHeaderLength)");
	FAILS(smelt_st_parse(huge, 16, 16, FILE_NAME, &f, &ERR), "(HeaderTooLarge)");
	FAILS(smelt_st_parse(over, 16, 16, FILE_NAME, &f, &ERR), "(HeaderTooLarge)");
}

TEST(fixture_bad_utf8_and_json)
{
	FAILS(parse_bytes("\xff", 1, 0, NULL, &ERR), "(InvalidHeader)");
	FAILS(parse_bytes("{", 1, 0, NULL, &ERR), "(InvalidHeaderDeserialization)");
	FAILS(parse_bytes("", 0, 0, NULL, &ERR), "(InvalidHeaderDeserialization)");
}

TEST(fixture_tensor_invalid_info)
{
	FAILS(parse_str("{\"a\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":[0,4]}}", 4,
			&ERR),
	      "(TensorInvalidInfo)");
	CHECK(strcmp(ERR.msg, FILE_NAME ": tensor 'a': data_offsets [0,4] hold 4 bytes but shape "
				       "[2,2] of I32 needs 16 (TensorInvalidInfo)") == 0);
}

TEST(fixture_validation_overflow)
{
	FAILS(parse_str("{\"a\":{\"dtype\":\"I32\",\"shape\":[2,18446744073709551614],"
			"\"data_offsets\":[0,16]}}",
			16, &ERR),
	      "(ValidationOverflow)");
	FAILS(parse_str("{\"a\":{\"dtype\":\"I32\",\"shape\":[2,9223372036854775807],"
			"\"data_offsets\":[0,16]}}",
			16, &ERR),
	      "(ValidationOverflow)");
}

TEST(fixture_incomplete_buffer)
{
	const char *h = "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}";

	OK(parse_str(h, 16, &ERR));
	FAILS(parse_bytes(h, strlen(h), 16, "extra", &ERR), "trailing bytes");
	CHECK_STR_CONTAINS(ERR.msg, "(MetadataIncompleteBuffer)");
	FAILS(parse_str(h, 14, &ERR), "truncated");
	CHECK_STR_CONTAINS(ERR.msg, "(MetadataIncompleteBuffer)");
	/* No tensors at all, but data bytes left over. */
	FAILS(parse_str("{}", 3, &ERR), "(MetadataIncompleteBuffer)");
}

TEST(fixture_ten_tensors_same_offsets)
{
	char h[2048];
	size_t o = 0;

	o += (size_t)snprintf(h + o, sizeof(h) - o, "{");
	for (int i = 0; i < 10; i++)
		o += (size_t)snprintf(h + o, sizeof(h) - o,
				      "%s\"t%d\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}",
				      i ? "," : "", i);
	snprintf(h + o, sizeof(h) - o, "}");
	FAILS(parse_str(h, 16, &ERR), "(InvalidOffset)");
	CHECK_STR_CONTAINS(ERR.msg, "overlap");
}

TEST(fixture_valid_edge_cases)
{
	OK(parse_str("{\"s\":{\"dtype\":\"I32\",\"shape\":[],\"data_offsets\":[0,4]}}", 4, &ERR));
	OK(parse_str("{\"e\":{\"dtype\":\"I32\",\"shape\":[2,0],\"data_offsets\":[0,0]}}", 0, &ERR));
	OK(parse_str("   {}   ", 0, &ERR));
	OK(parse_str("\n\t\r {} \n", 0, &ERR));
	OK(parse_str("{}", 0, &ERR));
	/* N need not be a multiple of 8. */
	OK(parse_str("{ }", 0, &ERR));
	/* Zero-byte tensors may share an offset, also with a real tensor after. */
	OK(parse_str("{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
		     "\"b\":{\"dtype\":\"F16\",\"shape\":[0,3],\"data_offsets\":[0,0]},"
		     "\"c\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]}}",
		     3, &ERR));
	/* Header order does not matter, offsets do. */
	OK(parse_str("{\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,4]},"
		     "\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}",
		     4, &ERR));
	/* Metadata null means none; unknown entry fields are ignored. */
	OK(parse_str("{\"__metadata__\":null,\"a\":{\"dtype\":\"U8\",\"shape\":[1],"
		     "\"data_offsets\":[0,1],\"extra\":[1.5,{\"x\":null}]}}",
		     1, &ERR));
	/* Empty and odd (but valid) names. */
	OK(parse_str("{\"\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
		     "\"\\u00e9\\n\xe2\x82\xac\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
		     2, &ERR));
	/* Sub-byte dtypes that fill whole bytes. */
	OK(parse_str("{\"f\":{\"dtype\":\"F4\",\"shape\":[2,2],\"data_offsets\":[0,2]},"
		     "\"g\":{\"dtype\":\"F6_E2M3\",\"shape\":[4],\"data_offsets\":[2,5]}}",
		     5, &ERR));
}

/* ---- one case per rule, beyond the fixtures ---- */

TEST(rule_utf8)
{
	/* Overlong encoding of '/', a UTF-16 surrogate, a truncated sequence. */
	FAILS(parse_str("{\"\xc0\xaf\":1}", 0, &ERR), "(InvalidHeader)");
	FAILS(parse_str("{\"\xed\xa0\x80\":1}", 0, &ERR), "not valid UTF-8");
	FAILS(parse_bytes("{\"\xe2\x82", 4, 0, NULL, &ERR), "(InvalidHeader)");
}

TEST(rule_whitespace_and_control)
{
	FAILS(parse_str("\xef\xbb\xbf{}", 0, &ERR), "byte order mark");
	FAILS(parse_str("\x0c{}", 0, &ERR), "neither JSON whitespace");
	FAILS(parse_bytes("{}\0", 3, 0, NULL, &ERR), "neither JSON whitespace");
	FAILS(parse_str("{\"a\x01\":{}}", 0, &ERR), "control character 0x01");
	FAILS(parse_str("{\"a\tb\":{}}", 0, &ERR), "control character 0x09");
	FAILS(parse_str("{} \xc3\xa9", 0, &ERR), "neither JSON whitespace");
}

TEST(rule_json_structure)
{
	FAILS(parse_str("{}x", 0, &ERR), "trailing characters");
	FAILS(parse_str("{} {}", 0, &ERR), "trailing characters");
	FAILS(parse_str("[]", 0, &ERR), "not an object");
	FAILS(parse_str("\"a\"", 0, &ERR), "not an object");
	FAILS(parse_str("{\"a\":1}", 0, &ERR), "entry is a number");
	FAILS(parse_str("{\"a\":{\"shape\":[],\"data_offsets\":[0,0]}}", 0, &ERR),
	      "missing field 'dtype'");
	FAILS(parse_str("{\"a\":{\"dtype\":\"U8\",\"data_offsets\":[0,0]}}", 0, &ERR),
	      "missing field 'shape'");
	FAILS(parse_str("{\"a\":{\"dtype\":\"U8\",\"shape\":[0]}}", 0, &ERR),
	      "missing field 'data_offsets'");
	FAILS(parse_str("{\"a\":{\"dtype\":7,\"shape\":[0],\"data_offsets\":[0,0]}}", 0, &ERR),
	      "dtype is a number");
	FAILS(parse_str("{\"a\":{\"dtype\":\"U8\",\"shape\":{},\"data_offsets\":[0,0]}}", 0, &ERR),
	      "shape is a object");
	FAILS(parse_str("{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":\"0\"}}", 0, &ERR),
	      "data_offsets is a string");
	FAILS(parse_str("{\"a\":{\"dtype\":\"U8\",\"dtype\":\"U8\",\"shape\":[0],"
			"\"data_offsets\":[0,0]}}",
			0, &ERR),
	      "field 'dtype' appears twice");
}

TEST(rule_duplicate_keys)
{
	FAILS(parse_str("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
			"\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}",
			1, &ERR),
	      "key 'a' appears twice");
	FAILS(parse_str("{\"__metadata__\":{},\"__metadata__\":{}}", 0, &ERR),
	      "key '__metadata__' appears twice");
	FAILS(parse_str("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, &ERR),
	      "__metadata__ key 'k' appears twice");
}

TEST(rule_metadata_types)
{
	OK(parse_str("{\"__metadata__\":{\"format\":\"pt\",\"x\":\"\"}}", 0, &ERR));
	FAILS(parse_str("{\"__metadata__\":{\"n\":1}}", 0, &ERR),
	      "__metadata__ value for key 'n' is a number, not a string");
	FAILS(parse_str("{\"__metadata__\":{\"n\":null}}", 0, &ERR), "is a null, not a string");
	FAILS(parse_str("{\"__metadata__\":\"pt\"}", 0, &ERR), "__metadata__ is a string");
	FAILS(parse_str("{\"__metadata__\":[]}", 0, &ERR), "__metadata__ is a array");
}

TEST(rule_numbers)
{
	FAILS(parse_str("{\"a\":{\"dtype\":\"U8\",\"shape\":[1.0],\"data_offsets\":[0,1]}}", 1,
			&ERR),
	      "shape holds 1.0, not a non-negative integer");
	FAILS(parse_str("{\"a\":{\"dtype\":\"U8\",\"shape\":[-1],\"data_offsets\":[0,1]}}", 1, &ERR),
	      "shape holds -1, not a non-negative integer");
	FAILS(parse_str("{\"a\":{\"dtype\":\"U8\",\"shape\":[1e0],\"data_offsets\":[0,1]}}", 1,
			&ERR),
	      "shape holds 1e0");
	FAILS(parse_str("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1.5]}}", 1,
			&ERR),
	      "data_offsets holds 1.5");
	FAILS(parse_str("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[-0,1]}}", 1,
			&ERR),
	      "data_offsets holds -0");
	FAILS(parse_str("{\"a\":{\"dtype\":\"U8\",\"shape\":[\"1\"],\"data_offsets\":[0,1]}}", 1,
			&ERR),
	      "shape holds a string");
	FAILS(parse_str("{\"a\":{\"dtype\":\"U8\",\"shape\":[18446744073709551616],"
			"\"data_offsets\":[0,1]}}",
			1, &ERR),
	      "does not fit in 64 bits");
	FAILS(parse_str("{\"a\":{\"dtype\":\"U8\",\"shape\":[01],\"data_offsets\":[0,1]}}", 1, &ERR),
	      "malformed number '01'");
	FAILS(parse_str("{\"a\":{\"dtype\":\"U8\",\"shape\":[+1],\"data_offsets\":[0,1]}}", 1, &ERR),
	      "(InvalidHeaderDeserialization)");
	FAILS(parse_str("{\"a\":{\"dtype\":\"U8\",\"shape\":[1.],\"data_offsets\":[0,1]}}", 1, &ERR),
	      "malformed number '1.'");
	/* A value above 2^53 is read exactly, not through a double. */
	FAILS(parse_str("{\"a\":{\"dtype\":\"U8\",\"shape\":[9007199254740993],"
			"\"data_offsets\":[0,1]}}",
			1, &ERR),
	      "shape [9007199254740993] of U8 needs 9007199254740993");
}

TEST(rule_data_offsets_count)
{
	FAILS(parse_str("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1,2]}}", 1,
			&ERR),
	      "data_offsets must hold exactly 2 integers, it holds 3");
	FAILS(parse_str("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0]}}", 1, &ERR),
	      "it holds 1");
	FAILS(parse_str("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[]}}", 1, &ERR),
	      "it holds 0");
}

TEST(rule_dtype_names)
{
	FAILS(parse_str("{\"a\":{\"dtype\":\"bf16\",\"shape\":[1],\"data_offsets\":[0,2]}}", 2,
			&ERR),
	      "tensor 'a': unknown dtype 'bf16'");
	FAILS(parse_str("{\"a\":{\"dtype\":\"F8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, &ERR),
	      "unknown dtype 'F8'");
	FAILS(parse_str("{\"a\":{\"dtype\":\"\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, &ERR),
	      "unknown dtype ''");
}

TEST(rule_offsets_walk)
{
	/* Gap between tensors. */
	FAILS(parse_str("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
			"\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[3,5]}}",
			5, &ERR),
	      "tensor 'b': data_offsets [3,5] leave a gap after tensor 'a', which ends at 2 "
	      "(InvalidOffset)");
	/* First tensor not at 0. */
	FAILS(parse_str("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[1,3]}}", 3, &ERR),
	      "the first tensor must start at 0 (InvalidOffset)");
	/* Overlap. */
	FAILS(parse_str("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
			"\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[2,6]}}",
			6, &ERR),
	      "tensor 'b': data_offsets [2,6] overlap tensor 'a' [0,4] (InvalidOffset)");
	/* Reversed. */
	FAILS(parse_str("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,0]}}", 2, &ERR),
	      "tensor 'a': data_offsets [2,0] end before they begin (InvalidOffset)");
	/* Offsets are checked before sizes, in sorted order. */
	FAILS(parse_str("{\"b\":{\"dtype\":\"U8\",\"shape\":[9],\"data_offsets\":[4,8]},"
			"\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[1,4]}}",
			8, &ERR),
	      "tensor 'a'");
	CHECK_STR_CONTAINS(ERR.msg, "(InvalidOffset)");
}

TEST(rule_sizes)
{
	FAILS(parse_str("{\"a\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,2]}}", 2, &ERR),
	      "tensor 'a': shape [3] of F4 is 12 bits, not a whole number of bytes "
	      "(MisalignedSlice)");
	FAILS(parse_str("{\"a\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[0,4]}}", 4,
			&ERR),
	      "needs 6 (TensorInvalidInfo)");
}

TEST(rule_names)
{
	FAILS(parse_str("{\"a\\u0000b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}",
			1, &ERR),
	      "\\u0000");
	/* A name with an escaped newline is printed on one line. */
	FAILS(parse_str("{\"a\\nb\":{\"dtype\":\"X\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
			&ERR),
	      "tensor 'a\\x0ab': unknown dtype");
	/* Too many dimensions for smelt. */
	FAILS(parse_str("{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],"
			"\"data_offsets\":[0,1]}}",
			1, &ERR),
	      "shape has 9 dimensions, smelt supports at most 8");
	OK(parse_str("{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1],"
		     "\"data_offsets\":[0,1]}}",
		     1, &ERR));
	/* Escaped quotes and backslashes in names are fine. */
	OK(parse_str("{\"a\\\"\\\\\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
		     &ERR));
}

TEST(deep_nesting_is_rejected_not_crashing)
{
	size_t depth = 5000;
	char *h = malloc(depth * 2 + 16);
	size_t o = 0;

	o += (size_t)sprintf(h, "{\"a\":");
	for (size_t i = 0; i < depth; i++)
		h[o++] = '[';
	for (size_t i = 0; i < depth; i++)
		h[o++] = ']';
	h[o++] = '}';
	h[o] = '\0';
	FAILS(parse_str(h, 0, &ERR), "(InvalidHeaderDeserialization)");
	free(h);
}

int main(void)
{
	RUN(fixture_empty_file);
	RUN(fixture_header_length);
	RUN(fixture_bad_utf8_and_json);
	RUN(fixture_tensor_invalid_info);
	RUN(fixture_validation_overflow);
	RUN(fixture_incomplete_buffer);
	RUN(fixture_ten_tensors_same_offsets);
	RUN(fixture_valid_edge_cases);
	RUN(rule_utf8);
	RUN(rule_whitespace_and_control);
	RUN(rule_json_structure);
	RUN(rule_duplicate_keys);
	RUN(rule_metadata_types);
	RUN(rule_numbers);
	RUN(rule_data_offsets_count);
	RUN(rule_dtype_names);
	RUN(rule_offsets_walk);
	RUN(rule_sizes);
	RUN(rule_names);
	RUN(deep_nesting_is_rejected_not_crashing);
	return check_summary();
}

/* test_dtype.c: dtype table and the f32 <-> F16/BF16/F64 conversions,
 * checked against known bit patterns and exhaustive round trips. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "smelt/dtype.h"
#include "smelt/rng.h"

static uint32_t fbits(float f)
{
	uint32_t u;

	memcpy(&u, &f, 4);
	return u;
}

static float bitsf(uint32_t u)
{
	float f;

	memcpy(&f, &u, 4);
	return f;
}

TEST(names_and_bits)
{
	static const char *names[] = {
		"BOOL",    "F4",      "F6_E2M3",     "F6_E3M2",     "U8",  "I8",  "F8_E5M2", "F8_E4M3",
		"F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ", "I16", "U16", "F16", "BF16",   "I32",
		"U32",     "F32",     "C64",         "F64",         "I64", "U64"};
	static const unsigned bits[] = {8, 4, 6, 6, 8, 8, 8, 8, 8, 8, 8, 16, 16, 16, 16, 32, 32, 32, 64,
					64, 64, 64};
	enum smelt_dtype dt;

	CHECK_EQ_INT(sizeof(names) / sizeof(names[0]), SMELT_DTYPE_COUNT);
	for (int i = 0; i < SMELT_DTYPE_COUNT; i++) {
		CHECK(strcmp(smelt_dtype_name((enum smelt_dtype)i), names[i]) == 0);
		CHECK_EQ_INT(smelt_dtype_bits((enum smelt_dtype)i), bits[i]);
		CHECK(smelt_dtype_parse(names[i], strlen(names[i]), &dt) == 0 && (int)dt == i);
	}
	CHECK(smelt_dtype_parse("bf16", 4, &dt) == -1);       /* case-sensitive */
	CHECK(smelt_dtype_parse("BF16 ", 5, &dt) == -1);      /* exact */
	CHECK(smelt_dtype_parse("BF1", 3, &dt) == -1);        /* no prefixes */
	CHECK(smelt_dtype_parse("F16", 3, &dt) == 0 && dt == SMELT_F16);
	CHECK(smelt_dtype_is_float(SMELT_F32) && smelt_dtype_is_float(SMELT_BF16));
	CHECK(smelt_dtype_is_float(SMELT_F16) && smelt_dtype_is_float(SMELT_F64));
	CHECK(!smelt_dtype_is_float(SMELT_I32) && !smelt_dtype_is_float(SMELT_F8_E4M3));
}

TEST(torch_names)
{
	enum smelt_dtype dt;

	CHECK(smelt_dtype_parse_torch("float32", &dt) == 0 && dt == SMELT_F32);
	CHECK(smelt_dtype_parse_torch("torch.bfloat16", &dt) == 0 && dt == SMELT_BF16);
	CHECK(smelt_dtype_parse_torch("float16", &dt) == 0 && dt == SMELT_F16);
	CHECK(smelt_dtype_parse_torch("torch.float64", &dt) == 0 && dt == SMELT_F64);
	CHECK(smelt_dtype_parse_torch("BF16", &dt) == 0 && dt == SMELT_BF16);
	CHECK(smelt_dtype_parse_torch("float8", &dt) == -1);
	CHECK(smelt_dtype_parse_torch("torch.", &dt) == -1);
	CHECK(strcmp(smelt_dtype_torch_name(SMELT_BF16), "bfloat16") == 0);
	CHECK(strcmp(smelt_dtype_torch_name(SMELT_F32), "float32") == 0);
	CHECK(strcmp(smelt_dtype_torch_name(SMELT_F16), "float16") == 0);
	CHECK(smelt_dtype_torch_name(SMELT_F4) == NULL);
}

TEST(bf16_patterns)
{
	CHECK_EQ_INT(smelt_f32_to_bf16(1.0f), 0x3F80);
	CHECK_EQ_INT(smelt_f32_to_bf16(-2.0f), 0xC000);
	CHECK_EQ_INT(smelt_f32_to_bf16(bitsf(0x3F808000)), 0x3F80); /* tie, even stays */
	CHECK_EQ_INT(smelt_f32_to_bf16(bitsf(0x3F818000)), 0x3F82); /* tie, odd rounds up */
	CHECK_EQ_INT(smelt_f32_to_bf16(bitsf(0x3F808001)), 0x3F81); /* above tie */
	CHECK_EQ_INT(smelt_f32_to_bf16(bitsf(0x3F807FFF)), 0x3F80); /* below tie */
	CHECK_EQ_INT(smelt_f32_to_bf16(bitsf(0x7F7FFFFF)), 0x7F80); /* max float -> Inf */
	CHECK_EQ_INT(smelt_f32_to_bf16(INFINITY), 0x7F80);
	CHECK_EQ_INT(smelt_f32_to_bf16(-INFINITY), 0xFF80);
	CHECK_EQ_INT(smelt_f32_to_bf16(-0.0f), 0x8000);
	CHECK_EQ_INT(smelt_f32_to_bf16(0.0f), 0x0000);
	CHECK_EQ_INT(smelt_f32_to_bf16(bitsf(0x7FC00001)), 0x7FC0); /* quiet NaN */
	CHECK_EQ_INT(smelt_f32_to_bf16(bitsf(0x7F800001)), 0x7FC0); /* signalling -> quiet */
	CHECK_EQ_INT(smelt_f32_to_bf16(bitsf(0xFF800001)), 0xFFC0); /* sign kept */
	CHECK_EQ_INT(smelt_f32_to_bf16(bitsf(0x7FA50000)), 0x7FE5); /* payload top bits kept */
	CHECK_EQ_INT(smelt_f32_to_bf16(bitsf(0x00000001)), 0x0000); /* tiny denormal */
	CHECK_EQ_INT(smelt_f32_to_bf16(bitsf(0x00008000)), 0x0000); /* tie to even 0 */
	CHECK_EQ_INT(smelt_f32_to_bf16(bitsf(0x00018000)), 0x0002);
	CHECK_EQ_INT(fbits(smelt_bf16_to_f32(0x3F80)), 0x3F800000);
	CHECK_EQ_INT(fbits(smelt_bf16_to_f32(0xFFC1)), 0xFFC10000);
}

TEST(bf16_round_trip_all)
{
	for (uint32_t h = 0; h < 0x10000; h++) {
		float f = smelt_bf16_to_f32((uint16_t)h);
		uint16_t back = smelt_f32_to_bf16(f);

		if (isnan(f)) {
			CHECK_MSG((back & 0x7FC0) == 0x7FC0 && (back & 0x8000) == (h & 0x8000),
				  "NaN %04x -> %04x", h, back);
			CHECK_MSG((back & 0x003F) == (h & 0x003F), "NaN payload %04x -> %04x", h, back);
		} else {
			CHECK_MSG(back == h, "bf16 %04x -> %04x", h, back);
		}
	}
}

TEST(f16_patterns)
{
	CHECK_EQ_INT(smelt_f32_to_f16(1.0f), 0x3C00);
	CHECK_EQ_INT(smelt_f32_to_f16(-2.0f), 0xC000);
	CHECK_EQ_INT(smelt_f32_to_f16(65504.0f), 0x7BFF);
	CHECK_EQ_INT(smelt_f32_to_f16(65519.0f), 0x7BFF);
	CHECK_EQ_INT(smelt_f32_to_f16(65520.0f), 0x7C00); /* overflow rounds to Inf */
	CHECK_EQ_INT(smelt_f32_to_f16(1e10f), 0x7C00);
	CHECK_EQ_INT(smelt_f32_to_f16(-1e10f), 0xFC00);
	CHECK_EQ_INT(smelt_f32_to_f16(INFINITY), 0x7C00);
	CHECK_EQ_INT(smelt_f32_to_f16(0x1p-24f), 0x0001);          /* min subnormal */
	CHECK_EQ_INT(smelt_f32_to_f16(1023 * 0x1p-24f), 0x03FF);   /* max subnormal */
	CHECK_EQ_INT(smelt_f32_to_f16(0x1p-14f), 0x0400);          /* min normal */
	CHECK_EQ_INT(smelt_f32_to_f16(0x1p-25f), 0x0000);          /* tie -> even 0 */
	CHECK_EQ_INT(smelt_f32_to_f16(3 * 0x1p-25f), 0x0002);      /* tie -> even 2 */
	CHECK_EQ_INT(smelt_f32_to_f16(bitsf(0x33000001)), 0x0001); /* just above half ulp */
	CHECK_EQ_INT(smelt_f32_to_f16(2047 * 0x1p-25f), 0x0400);   /* rounds up into normals */
	CHECK_EQ_INT(smelt_f32_to_f16(1.0f + 0x1p-11f), 0x3C00);   /* tie, even */
	CHECK_EQ_INT(smelt_f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3C02);
	CHECK_EQ_INT(smelt_f32_to_f16(-0.0f), 0x8000);
	CHECK_EQ_INT(smelt_f32_to_f16(0x1p-26f), 0x0000);
	CHECK_EQ_INT(smelt_f32_to_f16(-0x1p-24f), 0x8001);
	CHECK_EQ_INT(smelt_f32_to_f16(bitsf(0x7FC00000)), 0x7E00);
	CHECK_EQ_INT(smelt_f32_to_f16(bitsf(0x7F800001)), 0x7E00); /* sNaN quietened */
	CHECK_EQ_INT(smelt_f32_to_f16(bitsf(0xFFC00000)), 0xFE00);
	CHECK_EQ_INT(smelt_f32_to_f16(bitsf(0x7FBFE000)), 0x7FFF); /* payload kept */
	CHECK_EQ_INT(fbits(smelt_f16_to_f32(0x0001)), fbits(0x1p-24f));
	CHECK_EQ_INT(fbits(smelt_f16_to_f32(0x03FF)), fbits(1023 * 0x1p-24f));
	CHECK_EQ_INT(fbits(smelt_f16_to_f32(0x7BFF)), fbits(65504.0f));
	CHECK_EQ_INT(fbits(smelt_f16_to_f32(0x7C00)), 0x7F800000);
	CHECK_EQ_INT(fbits(smelt_f16_to_f32(0xFC00)), 0xFF800000);
	CHECK_EQ_INT(fbits(smelt_f16_to_f32(0x7E00)), 0x7FC00000);
	CHECK_EQ_INT(fbits(smelt_f16_to_f32(0x7C01)), 0x7F802000); /* payload kept */
	CHECK_EQ_INT(fbits(smelt_f16_to_f32(0x8000)), 0x80000000);
	CHECK_EQ_INT(fbits(smelt_f16_to_f32(0x3C00)), 0x3F800000);
}

TEST(f16_round_trip_all)
{
	for (uint32_t h = 0; h < 0x10000; h++) {
		float f = smelt_f16_to_f32((uint16_t)h);
		uint16_t back = smelt_f32_to_f16(f);

		if (isnan(f))
			CHECK_MSG((back & 0x7E00) == 0x7E00 && (back & 0x8000) == (h & 0x8000) &&
					  (back & 0x1FF) == (h & 0x1FF),
				  "NaN %04x -> %04x", h, back);
		else
			CHECK_MSG(back == h, "f16 %04x -> %04x", h, back);
	}
}

#ifdef __FLT16_MAX__
/* Compare against the compiler's own conversion on random bit patterns. */
TEST(f16_matches_compiler)
{
	int bad = 0;

	for (uint64_t i = 0; i < 400000 && bad < 5; i++) {
		uint32_t u = (uint32_t)smelt_rng_u64(42, i);
		float f = bitsf(u);
		_Float16 h = (_Float16)f;
		uint16_t want, got = smelt_f32_to_f16(f);

		if (isnan(f))
			continue;
		memcpy(&want, &h, 2);
		if (got != want) {
			CHECK_MSG(0, "f32 %08x -> %04x, compiler says %04x", u, got, want);
			bad++;
		}
	}
}
#endif

TEST(bulk_any_alignment)
{
	static const enum smelt_dtype dts[] = {SMELT_F32, SMELT_F16, SMELT_BF16, SMELT_F64};
	static const size_t sizes[] = {0, 1, 7, 255, 256, 257, 1000};
	float *src = malloc(1000 * sizeof(float)), *back = malloc(1000 * sizeof(float));
	uint8_t *raw = malloc(1000 * 8 + 16);

	for (size_t i = 0; i < 1000; i++)
		src[i] = (float)((double)smelt_rng_u64(7, i) / 1.8446744073709552e19 - 0.5) * 8.0f;
	for (size_t d = 0; d < 4; d++) {
		for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
			for (size_t misalign = 0; misalign < 4; misalign++) {
				size_t n = sizes[s];
				uint8_t *dst = raw + misalign;

				smelt_from_f32(dts[d], src, dst, n);
				smelt_to_f32(dts[d], dst, back, n);
				for (size_t i = 0; i < n; i++) {
					float want = src[i];

					if (dts[d] == SMELT_F16)
						want = smelt_f16_to_f32(smelt_f32_to_f16(want));
					else if (dts[d] == SMELT_BF16)
						want = smelt_bf16_to_f32(smelt_f32_to_bf16(want));
					if (fbits(back[i]) != fbits(want)) {
						CHECK_MSG(0, "%s n=%zu off=%zu i=%zu: %g != %g",
							  smelt_dtype_name(dts[d]), n, misalign, i,
							  back[i], want);
						break;
					}
				}
			}
		}
	}
	/* Bulk and scalar agree bit for bit on the encoded bytes too. */
	smelt_from_f32(SMELT_BF16, src, raw + 1, 300);
	for (size_t i = 0; i < 300; i++) {
		uint16_t h;

		memcpy(&h, raw + 1 + 2 * i, 2);
		CHECK(h == smelt_f32_to_bf16(src[i]));
	}
	smelt_from_f32(SMELT_F16, src, raw + 3, 300);
	for (size_t i = 0; i < 300; i++) {
		uint16_t h;

		memcpy(&h, raw + 3 + 2 * i, 2);
		CHECK(h == smelt_f32_to_f16(src[i]));
	}
	free(src);
	free(back);
	free(raw);
}

TEST(f64_values)
{
	double d[3] = {1.0 / 3.0, 1e300, -0.0};
	float f[3];
	uint8_t raw[25];

	memcpy(raw + 1, d, sizeof(d));
	smelt_to_f32(SMELT_F64, raw + 1, f, 3);
	CHECK(f[0] == (float)(1.0 / 3.0));
	CHECK(isinf(f[1]));
	CHECK(fbits(f[2]) == 0x80000000u);
}

int main(void)
{
	RUN(names_and_bits);
	RUN(torch_names);
	RUN(bf16_patterns);
	RUN(bf16_round_trip_all);
	RUN(f16_patterns);
	RUN(f16_round_trip_all);
#ifdef __FLT16_MAX__
	RUN(f16_matches_compiler);
#endif
	RUN(bulk_any_alignment);
	RUN(f64_values);
	return check_summary();
}

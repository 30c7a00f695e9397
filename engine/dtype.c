/*
 * dtype.c: the safetensors dtype table and the float conversions.
 *
 * Bulk conversions copy the source through a small aligned local buffer
 * (memcpy, so any source alignment is fine) and then run a plain,
 * branch-free loop over it that gcc -O2 auto-vectorises. The scalar
 * functions are the same bit manipulations, one element at a time.
 */
#include "smelt/dtype.h"

#include <string.h>

#include "floatbits.h"
#include "simd.h"

struct dtype_info {
	const char *name;
	const char *torch; /* torch name written to config.json, NULL if none */
	unsigned bits;
};

/* Reference enum order ("increasing alignment"). */
static const struct dtype_info dtype_table[SMELT_DTYPE_COUNT] = {
	[SMELT_BOOL] = {"BOOL", "bool", 8},
	[SMELT_F4] = {"F4", NULL, 4},
	[SMELT_F6_E2M3] = {"F6_E2M3", NULL, 6},
	[SMELT_F6_E3M2] = {"F6_E3M2", NULL, 6},
	[SMELT_U8] = {"U8", "uint8", 8},
	[SMELT_I8] = {"I8", "int8", 8},
	[SMELT_F8_E5M2] = {"F8_E5M2", "float8_e5m2", 8},
	[SMELT_F8_E4M3] = {"F8_E4M3", "float8_e4m3fn", 8},
	[SMELT_F8_E8M0] = {"F8_E8M0", "float8_e8m0fnu", 8},
	[SMELT_F8_E4M3FNUZ] = {"F8_E4M3FNUZ", "float8_e4m3fnuz", 8},
	[SMELT_F8_E5M2FNUZ] = {"F8_E5M2FNUZ", "float8_e5m2fnuz", 8},
	[SMELT_I16] = {"I16", "int16", 16},
	[SMELT_U16] = {"U16", "uint16", 16},
	[SMELT_F16] = {"F16", "float16", 16},
	[SMELT_BF16] = {"BF16", "bfloat16", 16},
	[SMELT_I32] = {"I32", "int32", 32},
	[SMELT_U32] = {"U32", "uint32", 32},
	[SMELT_F32] = {"F32", "float32", 32},
	[SMELT_C64] = {"C64", "complex64", 64},
	[SMELT_F64] = {"F64", "float64", 64},
	[SMELT_I64] = {"I64", "int64", 64},
	[SMELT_U64] = {"U64", "uint64", 64},
};

const char *smelt_dtype_name(enum smelt_dtype dt)
{
	if ((unsigned)dt >= SMELT_DTYPE_COUNT)
		return "?";
	return dtype_table[dt].name;
}

int smelt_dtype_parse(const char *name, size_t len, enum smelt_dtype *out)
{
	for (int i = 0; i < SMELT_DTYPE_COUNT; i++) {
		const char *n = dtype_table[i].name;

		if (strlen(n) == len && memcmp(n, name, len) == 0) {
			*out = (enum smelt_dtype)i;
			return 0;
		}
	}
	return -1;
}

int smelt_dtype_parse_torch(const char *name, enum smelt_dtype *out)
{
	static const struct {
		const char *alias;
		enum smelt_dtype dt;
	} aliases[] = {
		{"float32", SMELT_F32}, {"float", SMELT_F32},    {"fp32", SMELT_F32},
		{"bfloat16", SMELT_BF16}, {"bf16", SMELT_BF16},  {"float16", SMELT_F16},
		{"half", SMELT_F16},      {"fp16", SMELT_F16},   {"float64", SMELT_F64},
		{"double", SMELT_F64},    {"fp64", SMELT_F64},
	};

	if (!name)
		return -1;
	if (strncmp(name, "torch.", 6) == 0)
		name += 6;
	for (size_t i = 0; i < sizeof(aliases) / sizeof(aliases[0]); i++) {
		if (strcmp(name, aliases[i].alias) == 0) {
			*out = aliases[i].dt;
			return 0;
		}
	}
	return smelt_dtype_parse(name, strlen(name), out);
}

const char *smelt_dtype_torch_name(enum smelt_dtype dt)
{
	if ((unsigned)dt >= SMELT_DTYPE_COUNT)
		return NULL;
	return dtype_table[dt].torch;
}

unsigned smelt_dtype_bits(enum smelt_dtype dt)
{
	if ((unsigned)dt >= SMELT_DTYPE_COUNT)
		return 0;
	return dtype_table[dt].bits;
}

bool smelt_dtype_is_float(enum smelt_dtype dt)
{
	return dt == SMELT_F64 || dt == SMELT_F32 || dt == SMELT_F16 || dt == SMELT_BF16;
}

/* ---- bit-level scalar kernels (inline so the bulk loops vectorise) ---- */

/* bf16 lives in floatbits.h, shared with the fused method kernels. */

static inline float f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
	uint32_t mag = (uint32_t)(h & 0x7fffu) << 13;
	/* Scaling by 2^112 re-biases the exponent (15 -> 127) and turns f16
	 * subnormals, which land as f32 subnormals, into exact normals. */
	uint32_t scaled = smelt_f32_bits(smelt_bits_f32(mag) * 0x1p112f);
	/* Inf/NaN: exponent all ones, payload kept bit for bit. */
	uint32_t special = mag | 0x7f800000u;
	uint32_t special_mask = 0u - (uint32_t)((h & 0x7c00u) == 0x7c00u);

	return smelt_bits_f32(sign | smelt_select_u32(special_mask, special, scaled));
}

static inline uint16_t f32_to_f16(float f)
{
	uint32_t u = smelt_f32_bits(f);
	uint32_t sign = (u >> 16) & 0x8000u;
	uint32_t a = u & 0x7fffffffu;
	/* Normal range: re-bias (127 -> 15) and round to nearest even. */
	uint32_t normal = (a + 0xfffu + ((a >> 13) & 1u) - 0x38000000u) >> 13;
	/* Below 2^-14: adding 0.5 leaves an ulp of 2^-24, so the FPU's own
	 * round-to-nearest-even produces the f16 subnormal in the low bits. */
	uint32_t sub = smelt_f32_bits(smelt_bits_f32(a) + 0.5f) - 0x3f000000u;
	uint32_t nan = 0x7e00u | ((a >> 13) & 0x3ffu);
	/* Masks instead of branches, so the bulk loop vectorises. */
	uint32_t is_normal = 0u - (uint32_t)(a >= 0x38800000u);
	uint32_t is_inf = 0u - (uint32_t)(a >= 0x477ff000u); /* >= 65520 rounds to Inf */
	uint32_t is_nan = 0u - (uint32_t)(a > 0x7f800000u);
	uint32_t r = smelt_select_u32(is_normal, normal, sub);

	r = smelt_select_u32(is_inf, 0x7c00u, r);
	r = smelt_select_u32(is_nan, nan, r);
	return (uint16_t)(sign | r);
}

float smelt_bf16_to_f32(uint16_t h)
{
	return smelt_bf16_f32_inline(h);
}

uint16_t smelt_f32_to_bf16(float f)
{
	return smelt_f32_bf16_inline(f);
}

float smelt_f16_to_f32(uint16_t h)
{
	return f16_to_f32(h);
}

uint16_t smelt_f32_to_f16(float f)
{
	return f32_to_f16(f);
}

/* ---- bulk conversions ---- */

/*
 * Each kernel converts exactly CHUNK elements between aligned local arrays:
 * a fixed trip count is what gcc -O2's cheap vectoriser cost model accepts.
 * The last partial chunk is zero-filled first, so no uninitialised value is
 * read, and only the m valid results are copied out.
 */
#define CHUNK 256

#define DEFINE_KERNEL(name, in_t, out_t, expr)                                                     \
	static inline void name(const in_t *restrict in, out_t *restrict out)                      \
	{                                                                                          \
		for (size_t i = 0; i < CHUNK; i++)                                                 \
			out[i] = expr(in[i]);                                                      \
	}

#define TO_FLOAT(x) ((float)(x))
#define TO_DOUBLE(x) ((double)(x))
DEFINE_KERNEL(kernel_bf16_f32, uint16_t, float, smelt_bf16_f32_inline)
DEFINE_KERNEL(kernel_f16_f32, uint16_t, float, f16_to_f32)
DEFINE_KERNEL(kernel_f64_f32, double, float, TO_FLOAT)
DEFINE_KERNEL(kernel_f32_bf16, float, uint16_t, smelt_f32_bf16_inline)
DEFINE_KERNEL(kernel_f32_f16, float, uint16_t, f32_to_f16)
DEFINE_KERNEL(kernel_f32_f64, float, double, TO_DOUBLE)

#define PREFETCH_DISTANCE 4096

static inline void prefetch_ahead(const uint8_t *src, size_t len, size_t left)
{
	if (left > PREFETCH_DISTANCE + len)
		for (size_t k = 0; k < len; k += 64)
			__builtin_prefetch(src + PREFETCH_DISTANCE + k);
}

/* Load m (<= CHUNK) elements of size sz from any address, zero the rest. */
static void load_chunk(void *buf, const uint8_t *src, size_t m, size_t sz)
{
	memcpy(buf, src, m * sz);
	if (m < CHUNK)
		memset((uint8_t *)buf + m * sz, 0, (CHUNK - m) * sz);
}

#define DEFINE_BULK(name, kernel, in_t, out_t)                                                     \
	static SMELT_HOT void name(const uint8_t *src, uint8_t *dst, size_t n)                     \
	{                                                                                          \
		in_t in[CHUNK] __attribute__((aligned(64)));                                       \
		out_t out[CHUNK] __attribute__((aligned(64)));                                     \
                                                                                                   \
		while (n) {                                                                        \
			size_t m = n < CHUNK ? n : CHUNK;                                          \
                                                                                                   \
			load_chunk(in, src, m, sizeof(in_t));                                      \
			kernel(in, out);                                                           \
			memcpy(dst, out, m * sizeof(out_t));                                       \
			src += m * sizeof(in_t);                                                   \
			dst += m * sizeof(out_t);                                                  \
			n -= m;                                                                    \
		}                                                                                  \
	}

/* To f32 the destination is a float array (aligned by C's rules), so full
 * chunks are converted straight into it; only the tail goes through out. */
#define DEFINE_BULK_TO_F32(name, kernel, in_t)                                                     \
	static SMELT_HOT void name(const uint8_t *src, float *dst, size_t n)                       \
	{                                                                                          \
		in_t in[CHUNK] __attribute__((aligned(64)));                                       \
		float out[CHUNK] __attribute__((aligned(64)));                                     \
                                                                                                   \
		for (; n >= CHUNK; n -= CHUNK, src += CHUNK * sizeof(in_t), dst += CHUNK) {        \
			prefetch_ahead(src, CHUNK * sizeof(in_t), n * sizeof(in_t));               \
			memcpy(in, src, CHUNK * sizeof(in_t));                                     \
			kernel(in, dst);                                                           \
		}                                                                                  \
		if (n) {                                                                           \
			load_chunk(in, src, n, sizeof(in_t));                                      \
			kernel(in, out);                                                           \
			memcpy(dst, out, n * sizeof(float));                                       \
		}                                                                                  \
	}

DEFINE_BULK_TO_F32(bulk_bf16_f32, kernel_bf16_f32, uint16_t)
DEFINE_BULK_TO_F32(bulk_f16_f32, kernel_f16_f32, uint16_t)
DEFINE_BULK_TO_F32(bulk_f64_f32, kernel_f64_f32, double)
DEFINE_BULK(bulk_f32_bf16, kernel_f32_bf16, float, uint16_t)
DEFINE_BULK(bulk_f32_f16, kernel_f32_f16, float, uint16_t)
DEFINE_BULK(bulk_f32_f64, kernel_f32_f64, float, double)

void smelt_to_f32(enum smelt_dtype dt, const void *src, float *dst, size_t n)
{
	const uint8_t *s = src;

	switch (dt) {
	case SMELT_F32: memmove(dst, s, n * 4); break;
	case SMELT_BF16: bulk_bf16_f32(s, dst, n); break;
	case SMELT_F16: bulk_f16_f32(s, dst, n); break;
	case SMELT_F64: bulk_f64_f32(s, dst, n); break;
	default: break; /* contract: float dtypes only */
	}
}

void smelt_from_f32(enum smelt_dtype dt, const float *src, void *dst, size_t n)
{
	uint8_t *d = dst;

	const uint8_t *s = (const uint8_t *)src;

	switch (dt) {
	case SMELT_F32: memmove(d, s, n * 4); break;
	case SMELT_BF16: bulk_f32_bf16(s, d, n); break;
	case SMELT_F16: bulk_f32_f16(s, d, n); break;
	case SMELT_F64: bulk_f32_f64(s, d, n); break;
	default: break; /* contract: float dtypes only */
	}
}

/*
 * dtype.h: safetensors element types and conversions to and from f32.
 *
 * Every dtype the safetensors format defines is known here (table-driven, in
 * the reference enum order, which is "increasing alignment"). Only F64, F32,
 * F16 and BF16 take part in arithmetic: they convert to f32 for computation
 * and f32 converts back to F32/F16/BF16 (and F64) for output. Every other
 * dtype is carried through verbatim.
 *
 * Conversions read and write through memcpy-safe code paths: source and
 * destination pointers need not be aligned (mmapped tensors may start at any
 * byte). f32 -> BF16/F16 rounds to nearest even and keeps NaN (quietened) and
 * Inf; F16 subnormals are exact in both directions.
 */
#ifndef SMELT_DTYPE_H
#define SMELT_DTYPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum smelt_dtype {
	SMELT_BOOL,
	SMELT_F4,
	SMELT_F6_E2M3,
	SMELT_F6_E3M2,
	SMELT_U8,
	SMELT_I8,
	SMELT_F8_E5M2,
	SMELT_F8_E4M3,
	SMELT_F8_E8M0,
	SMELT_F8_E4M3FNUZ,
	SMELT_F8_E5M2FNUZ,
	SMELT_I16,
	SMELT_U16,
	SMELT_F16,
	SMELT_BF16,
	SMELT_I32,
	SMELT_U32,
	SMELT_F32,
	SMELT_C64,
	SMELT_F64,
	SMELT_I64,
	SMELT_U64,
	SMELT_DTYPE_COUNT
};

/* The safetensors name ("BF16", ...). */
const char *smelt_dtype_name(enum smelt_dtype dt);

/* Parse an exact, case-sensitive safetensors name of length len.
 * Returns 0 and sets *out, or -1 if unknown. */
int smelt_dtype_parse(const char *name, size_t len, enum smelt_dtype *out);

/* Parse a recipe/CLI name: "float32", "bfloat16", "float16", "float64",
 * with optional "torch." prefix, or a safetensors name. -1 if unknown. */
int smelt_dtype_parse_torch(const char *name, enum smelt_dtype *out);

/* The torch-style name written to config.json ("bfloat16", ...), or NULL. */
const char *smelt_dtype_torch_name(enum smelt_dtype dt);

/* Bits per element (4, 6, 8, 16, 32, 64). */
unsigned smelt_dtype_bits(enum smelt_dtype dt);

/* True for F64, F32, F16 and BF16: the dtypes smelt computes with. */
bool smelt_dtype_is_float(enum smelt_dtype dt);

/* Scalar conversions (bit patterns in uint16_t). */
float smelt_bf16_to_f32(uint16_t h);
uint16_t smelt_f32_to_bf16(float f);
float smelt_f16_to_f32(uint16_t h);
uint16_t smelt_f32_to_f16(float f);

/* Convert n elements of a float dtype at src (any alignment) to f32 at dst.
 * dt must satisfy smelt_dtype_is_float(). */
void smelt_to_f32(enum smelt_dtype dt, const void *src, float *dst, size_t n);

/* Convert n f32 values to dtype dt at dst (any alignment).
 * dt must satisfy smelt_dtype_is_float(). */
void smelt_from_f32(enum smelt_dtype dt, const float *src, void *dst, size_t n);

#endif

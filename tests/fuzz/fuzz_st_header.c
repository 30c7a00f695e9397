/*
 * fuzz_st_header.c: libFuzzer target for the safetensors header validator.
 *
 * Every input is parsed twice: as a whole file (the bytes exactly as they
 * would sit on disk), and with its length prefix rewritten so the header
 * ends at the last '}' of the input. The second form keeps N consistent
 * with the JSON under mutation, so the fuzzer reaches the JSON, type and
 * offset rules instead of stopping at the length checks. A file that
 * validates must be safe to index: every tensor lies inside the buffer and
 * every name finds itself.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smelt/st.h"

static void parse_and_walk(const uint8_t *buf, size_t size)
{
	struct smelt_st_file f;
	struct smelt_err err;

	if (smelt_st_parse(buf, size, size, "fuzz.safetensors", &f, &err) != 0) {
		if (!err.msg[0] || strchr(err.msg, '\n'))
			abort(); /* every failure has a one-line message */
		return;
	}
	for (size_t i = 0; i < f.n_tensors; i++) {
		const struct smelt_st_tensor *t = &f.tensors[i];
		uint64_t numel = smelt_st_numel(t);

		if (t->end < t->begin || 8 + f.header_len + t->end > size)
			abort();
		if (smelt_st_find(&f, t->name) != t)
			abort();
		if (numel * smelt_dtype_bits(t->dtype) / 8 != t->end - t->begin)
			abort();
		if (t->end > t->begin) /* touch the first and last byte */
			if (smelt_st_bytes(&f, t)[0] + smelt_st_bytes(&f, t)[t->end - t->begin - 1] > 510)
				abort();
	}
	for (size_t i = 0; i < f.n_meta; i++)
		if (smelt_st_meta_get(&f, f.meta[i].key) == NULL)
			abort();
	smelt_st_close(&f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *copy;
	size_t end;

	parse_and_walk(data, size);
	if (size < 9)
		return 0;
	for (end = size; end > 8 && data[end - 1] != '}'; end--)
		;
	if (end <= 8)
		return 0;
	copy = malloc(size);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	for (int i = 0; i < 8; i++)
		copy[i] = (uint8_t)((uint64_t)(end - 8) >> (8 * i));
	parse_and_walk(copy, size);
	free(copy);
	return 0;
}

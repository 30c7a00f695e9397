/*
 * jsonesc.h: JSON string escaping for the files smelt writes itself
 * (safetensors headers, index.json, config.json). Internal to the engine.
 */
#ifndef SMELT_JSONESC_H
#define SMELT_JSONESC_H

#include <stdbool.h>
#include <stddef.h>

/* True when s is valid UTF-8 (no overlongs, surrogates or > U+10FFFF). */
bool smelt_utf8_valid(const char *s, size_t len);

/* Escape s (valid UTF-8) as the inside of a JSON string into out, which has
 * room for smelt_json_escaped_len() + 1 bytes; out may be NULL to count.
 * With ascii_only every non-ASCII character becomes \uXXXX (surrogate
 * pairs above U+FFFF), as Python's json.dumps does by default; otherwise
 * UTF-8 passes through. Returns the escaped length (without NUL). */
size_t smelt_json_escape(const char *s, char *out, bool ascii_only);

#endif

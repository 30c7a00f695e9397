/* jsonesc.c: JSON string escaping and UTF-8 validation. */
#include "jsonesc.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* Length and code point of the UTF-8 sequence at p, 0 when invalid. */
static size_t utf8_decode(const uint8_t *p, size_t n, uint32_t *cp)
{
	uint8_t c = p[0];

	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if (c >= 0xc2 && c <= 0xdf && n >= 2 && (p[1] & 0xc0) == 0x80) {
		*cp = (uint32_t)(c & 0x1f) << 6 | (p[1] & 0x3f);
		return 2;
	}
	if (c >= 0xe0 && c <= 0xef && n >= 3) {
		uint8_t lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;

		if (p[1] < lo || p[1] > hi || (p[2] & 0xc0) != 0x80)
			return 0;
		*cp = (uint32_t)(c & 0x0f) << 12 | (uint32_t)(p[1] & 0x3f) << 6 | (p[2] & 0x3f);
		return 3;
	}
	if (c >= 0xf0 && c <= 0xf4 && n >= 4) {
		uint8_t lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;

		if (p[1] < lo || p[1] > hi || (p[2] & 0xc0) != 0x80 || (p[3] & 0xc0) != 0x80)
			return 0;
		*cp = (uint32_t)(c & 0x07) << 18 | (uint32_t)(p[1] & 0x3f) << 12 |
		      (uint32_t)(p[2] & 0x3f) << 6 | (p[3] & 0x3f);
		return 4;
	}
	return 0;
}

bool smelt_utf8_valid(const char *s, size_t len)
{
	const uint8_t *p = (const uint8_t *)s;
	uint32_t cp;

	for (size_t i = 0; i < len;) {
		size_t l = utf8_decode(p + i, len - i, &cp);

		if (!l)
			return false;
		i += l;
	}
	return true;
}

static size_t put(char *out, size_t o, const char *s, size_t n)
{
	if (out)
		memcpy(out + o, s, n);
	return o + n;
}

size_t smelt_json_escape(const char *s, char *out, bool ascii_only)
{
	const uint8_t *p = (const uint8_t *)s;
	size_t n = strlen(s), o = 0;
	char tmp[16];

	for (size_t i = 0; i < n;) {
		uint32_t cp;
		size_t l = utf8_decode(p + i, n - i, &cp);

		if (!l) { /* not UTF-8: keep the byte as U+FFFD rather than emit invalid JSON */
			cp = 0xfffd;
			l = 1;
		}
		if (cp == '"' || cp == '\\') {
			tmp[0] = '\\';
			tmp[1] = (char)cp;
			o = put(out, o, tmp, 2);
		} else if (cp < 0x20) {
			const char *e = cp == '\n' ? "\\n" : cp == '\r' ? "\\r" : cp == '\t' ? "\\t"
				      : cp == '\b' ? "\\b" : cp == '\f' ? "\\f" : NULL;

			if (e)
				o = put(out, o, e, 2);
			else
				o = put(out, o, tmp, (size_t)snprintf(tmp, sizeof(tmp), "\\u%04x", cp));
		} else if (cp < 0x80) {
			o = put(out, o, (const char *)p + i, 1);
		} else if (!ascii_only && l > 1) {
			o = put(out, o, (const char *)p + i, l);
		} else if (cp < 0x10000) {
			o = put(out, o, tmp, (size_t)snprintf(tmp, sizeof(tmp), "\\u%04x", cp));
		} else {
			uint32_t v = cp - 0x10000;

			o = put(out, o, tmp,
				(size_t)snprintf(tmp, sizeof(tmp), "\\u%04x\\u%04x", 0xd800 + (v >> 10),
						 0xdc00 + (v & 0x3ff)));
		}
		i += l;
	}
	if (out)
		out[o] = '\0';
	return o;
}

/*
 * st_read.c: the safetensors reader. Validates a header with the rules of
 * the reference implementation, in its order (docs/formats.md, section
 * "Validation"):
 *
 *   1 size >= 8 (HeaderTooSmall)      2 N <= 100 MB (HeaderTooLarge)
 *   3 8 + N <= size (InvalidHeaderLength)
 *   4 UTF-8 (InvalidHeader)           5 JSON, types (InvalidHeaderDeserialization)
 *   6 no duplicate key                7 offsets contiguous (InvalidOffset)
 *   8 byte counts (ValidationOverflow, MisalignedSlice, TensorInvalidInfo)
 *   9 size exact (MetadataIncompleteBuffer)
 *
 * cJSON does the JSON parsing. It is looser than serde_json, so a pre-scan
 * checks what it lets through (UTF-8, the whitespace set, control bytes, BOM,
 * number syntax, escaped NULs) and records where every number literal
 * starts; a walk of the parsed tree in document order then ties each number
 * node to its literal, so shape and data_offsets are read from the digits
 * themselves as exact uint64 values rather than from cJSON's double.
 */
#include "smelt/st.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nameidx.h"

struct st_priv {
	struct smelt_nameidx index; /* tensor name -> position in tensors[] */
	char *arena;                /* every name, key and value string */
};

/* A tensor entry while the header is being checked. */
struct entry {
	const char *name; /* cJSON's key, later the arena copy */
	size_t order;     /* position in the header */
	enum smelt_dtype dtype;
	int ndim;
	uint64_t shape[SMELT_MAX_DIMS];
	uint64_t begin, end;
};

struct parse_ctx {
	const char *what;
	const uint8_t *hdr; /* the header text (NUL-terminated copy) */
	size_t len;
	uint32_t *num_off; /* start of every number literal, in document order */
	size_t n_num;
	struct smelt_err *err;
};

#define DESER "InvalidHeaderDeserialization"

const char *smelt_st_safe_name(const char *name, char *buf, size_t size)
{
	size_t o = 0;

	if (size < 8) {
		if (size)
			buf[0] = '\0';
		return buf;
	}
	for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
		if (o + 5 >= size) {
			/* Leave room for "..." and the terminator. */
			size_t cut = o + 4 > size ? size - 4 : o;
			/* The first byte dropped: already in buf, or the next input. */
			unsigned char next = cut < o ? (unsigned char)buf[cut] : *p;

			/* Do not cut a UTF-8 sequence in half: drop all of it. */
			if ((next & 0xc0) == 0x80) {
				while (cut > 0 && ((unsigned char)buf[cut - 1] & 0xc0) == 0x80)
					cut--;
				if (cut > 0)
					cut--; /* its lead byte */
			}
			memcpy(buf + cut, "...", 4);
			return buf;
		}
		if (*p < 0x20 || *p == 0x7f)
			o += (size_t)snprintf(buf + o, size - o, "\\x%02x", *p);
		else
			buf[o++] = (char)*p;
	}
	buf[o] = '\0';
	return buf;
}

/* ---- step 4: UTF-8 ---- */

/* Length of the valid UTF-8 sequence at p (at most n bytes available), or 0.
 * Rejects overlong forms, surrogates and code points above U+10FFFF. */
static size_t utf8_seq(const uint8_t *p, size_t n)
{
	uint8_t c = p[0];

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		return n >= 2 && (p[1] & 0xc0) == 0x80 ? 2 : 0;
	if (c >= 0xe0 && c <= 0xef) {
		uint8_t lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;

		if (n < 3 || p[1] < lo || p[1] > hi || (p[2] & 0xc0) != 0x80)
			return 0;
		return 3;
	}
	if (c >= 0xf0 && c <= 0xf4) {
		uint8_t lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;

		if (n < 4 || p[1] < lo || p[1] > hi || (p[2] & 0xc0) != 0x80 ||
		    (p[3] & 0xc0) != 0x80)
			return 0;
		return 4;
	}
	return 0;
}

static int check_utf8(const struct parse_ctx *c)
{
	for (size_t i = 0; i < c->len;) {
		size_t l = utf8_seq(c->hdr + i, c->len - i);

		if (!l)
			return smelt_fail(c->err, SMELT_EFORMAT,
					  "%s: header is not valid UTF-8 (byte 0x%02x at header "
					  "offset %zu) (InvalidHeader)",
					  c->what, c->hdr[i], i);
		i += l;
	}
	return 0;
}

/* ---- step 5a: what cJSON would let through ---- */

static bool is_json_ws(uint8_t ch)
{
	return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

static bool is_num_char(uint8_t ch)
{
	return (ch >= '0' && ch <= '9') || ch == '-' || ch == '+' || ch == '.' || ch == 'e' ||
	       ch == 'E';
}

/* True when s[0..n) is a JSON number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
static bool json_number_ok(const uint8_t *s, size_t n)
{
	size_t i = 0, d;

	if (i < n && s[i] == '-')
		i++;
	if (i >= n || s[i] < '0' || s[i] > '9')
		return false;
	if (s[i] == '0')
		i++;
	else
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
	if (i < n && s[i] == '.') {
		for (d = ++i; i < n && s[i] >= '0' && s[i] <= '9'; i++)
			;
		if (i == d)
			return false;
	}
	if (i < n && (s[i] == 'e' || s[i] == 'E')) {
		i++;
		if (i < n && (s[i] == '+' || s[i] == '-'))
			i++;
		for (d = i; i < n && s[i] >= '0' && s[i] <= '9'; i++)
			;
		if (i == d)
			return false;
	}
	return i == n;
}

static size_t num_len(const uint8_t *s, size_t avail)
{
	size_t n = 0;

	while (n < avail && is_num_char(s[n]))
		n++;
	return n;
}

/* One pass over the header outside cJSON: whitespace set, control bytes,
 * BOM, non-ASCII outside strings, escaped NULs, number syntax; records the
 * start of every number literal. */
static int prescan(struct parse_ctx *c)
{
	const uint8_t *h = c->hdr;
	size_t n = c->len, cap = 0;
	bool in_str = false;

	for (size_t i = 0; i < n;) {
		uint8_t ch = h[i];

		if (in_str) {
			if (ch == '"') {
				in_str = false;
				i++;
			} else if (ch == '\\') {
				if (i + 5 < n && h[i + 1] == 'u' && memcmp(h + i + 2, "0000", 4) == 0)
					return smelt_fail(c->err, SMELT_EFORMAT,
							  "%s: header string at offset %zu contains "
							  "\\u0000, which smelt cannot represent in a "
							  "name (" DESER ")",
							  c->what, i);
				i += 2;
			} else if (ch < 0x20) {
				return smelt_fail(c->err, SMELT_EFORMAT,
						  "%s: raw control character 0x%02x inside a string "
						  "at header offset %zu (" DESER ")",
						  c->what, ch, i);
			} else {
				i++;
			}
			continue;
		}
		if (ch == '"') {
			in_str = true;
			i++;
		} else if (is_json_ws(ch)) {
			i++;
		} else if (ch == '-' || (ch >= '0' && ch <= '9')) {
			size_t l = num_len(h + i, n - i);

			if (!json_number_ok(h + i, l))
				return smelt_fail(c->err, SMELT_EFORMAT,
						  "%s: malformed number '%.*s' at header offset %zu "
						  "(" DESER ")",
						  c->what, (int)(l > 40 ? 40 : l), (const char *)h + i, i);
			if (c->n_num == cap) {
				size_t ncap = cap ? cap * 2 : 64;
				uint32_t *p = realloc(c->num_off, ncap * sizeof(*p));

				if (!p)
					return smelt_fail(c->err, SMELT_ENOMEM, "%s: out of memory",
							  c->what);
				c->num_off = p;
				cap = ncap;
			}
			c->num_off[c->n_num++] = (uint32_t)i;
			i += l;
		} else if (ch == 0xef && i + 2 < n && h[i + 1] == 0xbb && h[i + 2] == 0xbf) {
			return smelt_fail(c->err, SMELT_EFORMAT,
					  "%s: header holds a UTF-8 byte order mark at offset %zu, "
					  "which is not JSON whitespace (" DESER ")",
					  c->what, i);
		} else if (ch < 0x20 || ch >= 0x7f) {
			return smelt_fail(c->err, SMELT_EFORMAT,
					  "%s: byte 0x%02x at header offset %zu is neither JSON "
					  "whitespace nor part of a value (" DESER ")",
					  c->what, ch, i);
		} else {
			i++;
		}
	}
	return 0;
}

/* Number nodes in document order get the index of their literal in
 * valueint (cJSON's saturated int copy, which nothing here reads). */
static void number_literals(cJSON *node, size_t *k, bool *ok, size_t n_num)
{
	for (; node; node = node->next) {
		if (cJSON_IsNumber(node)) {
			if (*k >= n_num || *k > (size_t)INT32_MAX)
				*ok = false;
			else
				node->valueint = (int)*k;
			(*k)++;
		}
		if (node->child)
			number_literals(node->child, k, ok, n_num);
	}
}

/* ---- step 5b: tensor entries ---- */

static const char *json_type(const cJSON *v)
{
	if (cJSON_IsNull(v))
		return "null";
	if (cJSON_IsBool(v))
		return "boolean";
	if (cJSON_IsNumber(v))
		return "number";
	if (cJSON_IsString(v))
		return "string";
	if (cJSON_IsArray(v))
		return "array";
	return "object";
}

/* Read a number node as an exact non-negative integer literal. */
static int read_uint(const struct parse_ctx *c, const cJSON *v, const char *name,
		     const char *field, uint64_t *out)
{
	char nb[256];
	const uint8_t *s;
	size_t len;
	uint64_t x = 0;

	if (!cJSON_IsNumber(v))
		return smelt_fail(c->err, SMELT_EFORMAT,
				  "%s: tensor '%s': %s holds a %s, not a non-negative integer "
				  "(" DESER ")",
				  c->what, smelt_st_safe_name(name, nb, sizeof(nb)), field, json_type(v));
	s = c->hdr + c->num_off[v->valueint];
	len = num_len(s, c->len - (size_t)(s - c->hdr));
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return smelt_fail(c->err, SMELT_EFORMAT,
					  "%s: tensor '%s': %s holds %.*s, not a non-negative "
					  "integer (" DESER ")",
					  c->what, smelt_st_safe_name(name, nb, sizeof(nb)), field,
					  (int)(len > 40 ? 40 : len), (const char *)s);
		if (x > (UINT64_MAX - (uint64_t)(s[i] - '0')) / 10)
			return smelt_fail(c->err, SMELT_EFORMAT,
					  "%s: tensor '%s': %s value %.*s does not fit in 64 bits "
					  "(" DESER ")",
					  c->what, smelt_st_safe_name(name, nb, sizeof(nb)), field,
					  (int)(len > 40 ? 40 : len), (const char *)s);
		x = x * 10 + (uint64_t)(s[i] - '0');
	}
	*out = x;
	return 0;
}

static int read_entry(const struct parse_ctx *c, const cJSON *item, struct entry *e)
{
	const char *name = item->string;
	const cJSON *dtype = NULL, *shape = NULL, *offs = NULL, *f, *v;
	char nb[256];
	int n, rc;

	smelt_st_safe_name(name, nb, sizeof(nb));
	if (!cJSON_IsObject(item))
		return smelt_fail(c->err, SMELT_EFORMAT,
				  "%s: tensor '%s': entry is a %s, not an object with dtype, shape "
				  "and data_offsets (" DESER ")",
				  c->what, nb, json_type(item));
	cJSON_ArrayForEach(f, item)
	{
		const cJSON **slot = NULL;

		if (strcmp(f->string, "dtype") == 0)
			slot = &dtype;
		else if (strcmp(f->string, "shape") == 0)
			slot = &shape;
		else if (strcmp(f->string, "data_offsets") == 0)
			slot = &offs;
		if (!slot)
			continue; /* unknown fields are ignored, as the reference does */
		if (*slot)
			return smelt_fail(c->err, SMELT_EFORMAT,
					  "%s: tensor '%s': field '%s' appears twice (" DESER ")",
					  c->what, nb, f->string);
		*slot = f;
	}
	if (!dtype || !shape || !offs)
		return smelt_fail(c->err, SMELT_EFORMAT,
				  "%s: tensor '%s': missing field '%s' (" DESER ")", c->what, nb,
				  !dtype ? "dtype" : !shape ? "shape" : "data_offsets");
	if (!cJSON_IsString(dtype))
		return smelt_fail(c->err, SMELT_EFORMAT,
				  "%s: tensor '%s': dtype is a %s, not a string (" DESER ")", c->what,
				  nb, json_type(dtype));
	if (smelt_dtype_parse(dtype->valuestring, strlen(dtype->valuestring), &e->dtype) != 0) {
		char db[64];

		return smelt_fail(c->err, SMELT_EFORMAT,
				  "%s: tensor '%s': unknown dtype '%s' (" DESER ")", c->what, nb,
				  smelt_st_safe_name(dtype->valuestring, db, sizeof(db)));
	}
	if (!cJSON_IsArray(shape))
		return smelt_fail(c->err, SMELT_EFORMAT,
				  "%s: tensor '%s': shape is a %s, not an array (" DESER ")", c->what,
				  nb, json_type(shape));
	n = 0;
	cJSON_ArrayForEach(v, shape)
	{
		uint64_t d;

		rc = read_uint(c, v, name, "shape", &d);
		if (rc)
			return rc;
		if (n < SMELT_MAX_DIMS)
			e->shape[n] = d;
		n++;
	}
	if (n > SMELT_MAX_DIMS)
		return smelt_fail(c->err, SMELT_EFORMAT,
				  "%s: tensor '%s': shape has %d dimensions, smelt supports at most "
				  "%d",
				  c->what, nb, n, SMELT_MAX_DIMS);
	e->ndim = n;
	if (!cJSON_IsArray(offs))
		return smelt_fail(c->err, SMELT_EFORMAT,
				  "%s: tensor '%s': data_offsets is a %s, not an array (" DESER ")",
				  c->what, nb, json_type(offs));
	n = 0;
	cJSON_ArrayForEach(v, offs)
	{
		uint64_t x;

		if (n >= 2) {
			n++;
			continue;
		}
		rc = read_uint(c, v, name, "data_offsets", &x);
		if (rc)
			return rc;
		if (n == 0)
			e->begin = x;
		else
			e->end = x;
		n++;
	}
	if (n != 2)
		return smelt_fail(c->err, SMELT_EFORMAT,
				  "%s: tensor '%s': data_offsets must hold exactly 2 integers, it "
				  "holds %d (" DESER ")",
				  c->what, nb, n);
	e->name = name;
	return 0;
}

static int read_metadata(const struct parse_ctx *c, const cJSON *md, size_t *n_meta)
{
	struct smelt_nameidx seen = {0};
	const cJSON *kv;
	char nb[256];
	size_t n = 0;
	int rc = 0;

	*n_meta = 0;
	if (cJSON_IsNull(md))
		return 0; /* the reference's Option: null means none */
	if (!cJSON_IsObject(md))
		return smelt_fail(c->err, SMELT_EFORMAT,
				  "%s: __metadata__ is a %s, not an object of strings (" DESER ")",
				  c->what, json_type(md));
	cJSON_ArrayForEach(kv, md)
		n++;
	if (smelt_nameidx_init(&seen, n) != 0)
		return smelt_fail(c->err, SMELT_ENOMEM, "%s: out of memory", c->what);
	cJSON_ArrayForEach(kv, md)
	{
		if (!cJSON_IsString(kv)) {
			rc = smelt_fail(c->err, SMELT_EFORMAT,
					"%s: __metadata__ value for key '%s' is a %s, not a string "
					"(" DESER ")",
					c->what, smelt_st_safe_name(kv->string, nb, sizeof(nb)),
					json_type(kv));
			goto out;
		}
		if (smelt_nameidx_put(&seen, kv->string, 0, NULL) == 1) {
			rc = smelt_fail(c->err, SMELT_EFORMAT,
					"%s: __metadata__ key '%s' appears twice (" DESER ")",
					c->what, smelt_st_safe_name(kv->string, nb, sizeof(nb)));
			goto out;
		}
	}
	*n_meta = n;
out:
	smelt_nameidx_free(&seen);
	return rc;
}

/* ---- steps 7-9: the offsets walk ---- */

static int cmp_entry(const void *a, const void *b)
{
	const struct entry *x = a, *y = b;

	if (x->begin != y->begin)
		return x->begin < y->begin ? -1 : 1;
	if (x->end != y->end)
		return x->end < y->end ? -1 : 1;
	return x->order < y->order ? -1 : x->order > y->order;
}

static void format_shape(const struct entry *e, char *buf, size_t size)
{
	size_t o = 0;

	o += (size_t)snprintf(buf, size, "[");
	for (int i = 0; i < e->ndim && o < size; i++)
		o += (size_t)snprintf(buf + o, size - o, "%s%" PRIu64, i ? "," : "", e->shape[i]);
	if (o < size)
		snprintf(buf + o, size - o, "]");
}

static int check_layout(const struct parse_ctx *c, struct entry *es, size_t n, uint64_t file_size,
			uint64_t header_len)
{
	uint64_t cursor = 0, data_len;
	char nb[256], pb[256], sb[256];
	const struct entry *prev = NULL;

	qsort(es, n, sizeof(*es), cmp_entry);
	for (size_t i = 0; i < n; i++) {
		const struct entry *e = &es[i];
		uint64_t numel = 1, bits, bsz = smelt_dtype_bits(e->dtype);

		smelt_st_safe_name(e->name, nb, sizeof(nb));
		if (e->end < e->begin)
			return smelt_fail(c->err, SMELT_EFORMAT,
					  "%s: tensor '%s': data_offsets [%" PRIu64 ",%" PRIu64
					  "] end before they begin (InvalidOffset)",
					  c->what, nb, e->begin, e->end);
		if (e->begin > cursor) {
			if (!prev)
				return smelt_fail(c->err, SMELT_EFORMAT,
						  "%s: tensor '%s': data_offsets [%" PRIu64
						  ",%" PRIu64 "] leave a gap: the first tensor must "
						  "start at 0 (InvalidOffset)",
						  c->what, nb, e->begin, e->end);
			return smelt_fail(c->err, SMELT_EFORMAT,
					  "%s: tensor '%s': data_offsets [%" PRIu64 ",%" PRIu64
					  "] leave a gap after tensor '%s', which ends at %" PRIu64
					  " (InvalidOffset)",
					  c->what, nb, e->begin, e->end,
					  smelt_st_safe_name(prev->name, pb, sizeof(pb)), cursor);
		}
		if (e->begin < cursor)
			return smelt_fail(c->err, SMELT_EFORMAT,
					  "%s: tensor '%s': data_offsets [%" PRIu64 ",%" PRIu64
					  "] overlap tensor '%s' [%" PRIu64 ",%" PRIu64
					  "] (InvalidOffset)",
					  c->what, nb, e->begin, e->end,
					  smelt_st_safe_name(prev->name, pb, sizeof(pb)), prev->begin,
					  prev->end);
		format_shape(e, sb, sizeof(sb));
		for (int d = 0; d < e->ndim; d++) {
			if (e->shape[d] && numel > UINT64_MAX / e->shape[d])
				return smelt_fail(c->err, SMELT_EFORMAT,
						  "%s: tensor '%s': shape %s has more elements than "
						  "fit in 64 bits (ValidationOverflow)",
						  c->what, nb, sb);
			numel *= e->shape[d];
		}
		if (numel > UINT64_MAX / bsz)
			return smelt_fail(c->err, SMELT_EFORMAT,
					  "%s: tensor '%s': shape %s of %s needs more bits than fit "
					  "in 64 bits (ValidationOverflow)",
					  c->what, nb, sb, smelt_dtype_name(e->dtype));
		bits = numel * bsz;
		if (bits % 8)
			return smelt_fail(c->err, SMELT_EFORMAT,
					  "%s: tensor '%s': shape %s of %s is %" PRIu64
					  " bits, not a whole number of bytes (MisalignedSlice)",
					  c->what, nb, sb, smelt_dtype_name(e->dtype), bits);
		if (e->end - e->begin != bits / 8)
			return smelt_fail(c->err, SMELT_EFORMAT,
					  "%s: tensor '%s': data_offsets [%" PRIu64 ",%" PRIu64
					  "] hold %" PRIu64 " bytes but shape %s of %s needs %" PRIu64
					  " (TensorInvalidInfo)",
					  c->what, nb, e->begin, e->end, e->end - e->begin, sb,
					  smelt_dtype_name(e->dtype), bits / 8);
		cursor = e->end;
		prev = e;
	}
	data_len = file_size - 8 - header_len;
	if (cursor != data_len) {
		if (cursor > data_len)
			return smelt_fail(c->err, SMELT_EFORMAT,
					  "%s: tensor data needs %" PRIu64 " bytes after the header "
					  "but the file holds %" PRIu64
					  " (truncated) (MetadataIncompleteBuffer)",
					  c->what, cursor, data_len);
		return smelt_fail(c->err, SMELT_EFORMAT,
				  "%s: %" PRIu64 " trailing bytes after the last tensor, which "
				  "ends at data byte %" PRIu64 " (MetadataIncompleteBuffer)",
				  c->what, data_len - cursor, cursor);
	}
	return 0;
}

/* ---- assembling the result ---- */

static int build_file(const struct parse_ctx *c, const struct entry *es, size_t n,
		      const cJSON *md, size_t n_meta, struct smelt_st_file *out)
{
	struct st_priv *priv;
	size_t bytes = 0, o = 0, i = 0;
	const cJSON *kv;

	priv = calloc(1, sizeof(*priv));
	if (!priv)
		goto nomem;
	out->priv = priv;
	for (i = 0; i < n; i++)
		bytes += strlen(es[i].name) + 1;
	if (n_meta)
		cJSON_ArrayForEach(kv, md)
			bytes += strlen(kv->string) + strlen(kv->valuestring) + 2;
	priv->arena = malloc(bytes ? bytes : 1);
	out->tensors = calloc(n ? n : 1, sizeof(*out->tensors));
	out->meta = calloc(n_meta ? n_meta : 1, sizeof(*out->meta));
	if (!priv->arena || !out->tensors || !out->meta || smelt_nameidx_init(&priv->index, n))
		goto nomem;
	for (i = 0; i < n; i++) {
		struct smelt_st_tensor *t = &out->tensors[i];
		size_t l = strlen(es[i].name) + 1;

		memcpy(priv->arena + o, es[i].name, l);
		t->name = priv->arena + o;
		o += l;
		t->dtype = es[i].dtype;
		t->ndim = es[i].ndim;
		memcpy(t->shape, es[i].shape, sizeof(t->shape));
		t->begin = es[i].begin;
		t->end = es[i].end;
		smelt_nameidx_put(&priv->index, t->name, i, NULL);
	}
	out->n_tensors = n;
	i = 0;
	if (n_meta) {
		cJSON_ArrayForEach(kv, md)
		{
			size_t kl = strlen(kv->string) + 1, vl = strlen(kv->valuestring) + 1;

			memcpy(priv->arena + o, kv->string, kl);
			out->meta[i].key = priv->arena + o;
			o += kl;
			memcpy(priv->arena + o, kv->valuestring, vl);
			out->meta[i].value = priv->arena + o;
			o += vl;
			i++;
		}
	}
	out->n_meta = n_meta;
	return 0;
nomem:
	return smelt_fail(c->err, SMELT_ENOMEM, "%s: out of memory", c->what);
}

static int parse_json(struct parse_ctx *c, uint64_t file_size, uint64_t header_len,
		      struct smelt_st_file *out)
{
	cJSON *root = NULL, *item;
	const cJSON *md = NULL;
	const char *end = NULL;
	struct entry *es = NULL;
	struct smelt_nameidx keys = {0};
	size_t n_items = 0, n_entries = 0, n_meta = 0, k = 0;
	bool ok = true;
	char nb[256];
	int rc;

	rc = prescan(c);
	if (rc)
		goto out;
	root = cJSON_ParseWithLengthOpts((const char *)c->hdr, c->len, &end, 0);
	if (!root) {
		size_t at = end && (const uint8_t *)end >= c->hdr ? (size_t)((const uint8_t *)end - c->hdr)
								: c->len;

		rc = smelt_fail(c->err, SMELT_EFORMAT,
				"%s: header is not valid JSON (near header offset %zu) (" DESER ")",
				c->what, at);
		goto out;
	}
	for (const uint8_t *p = (const uint8_t *)end; p < c->hdr + c->len; p++) {
		if (!is_json_ws(*p)) {
			rc = smelt_fail(c->err, SMELT_EFORMAT,
					"%s: header has trailing characters after the JSON object "
					"(header offset %zu) (" DESER ")",
					c->what, (size_t)(p - c->hdr));
			goto out;
		}
	}
	number_literals(root, &k, &ok, c->n_num);
	if (!ok || k != c->n_num) {
		rc = smelt_fail(c->err, SMELT_EFORMAT,
				"%s: header numbers could not be matched to their literals (" DESER
				")",
				c->what);
		goto out;
	}
	if (!cJSON_IsObject(root)) {
		rc = smelt_fail(c->err, SMELT_EFORMAT,
				"%s: header is a JSON %s, not an object (" DESER ")", c->what,
				json_type(root));
		goto out;
	}
	cJSON_ArrayForEach(item, root)
		n_items++;
	es = calloc(n_items ? n_items : 1, sizeof(*es));
	if (!es || smelt_nameidx_init(&keys, n_items)) {
		rc = smelt_fail(c->err, SMELT_ENOMEM, "%s: out of memory", c->what);
		goto out;
	}
	cJSON_ArrayForEach(item, root)
	{
		if (smelt_nameidx_put(&keys, item->string, 0, NULL) == 1) {
			rc = smelt_fail(c->err, SMELT_EFORMAT,
					"%s: key '%s' appears twice in the header (" DESER ")",
					c->what, smelt_st_safe_name(item->string, nb, sizeof(nb)));
			goto out;
		}
		if (strcmp(item->string, "__metadata__") == 0) {
			md = item;
			rc = read_metadata(c, md, &n_meta);
			if (rc)
				goto out;
			continue;
		}
		rc = read_entry(c, item, &es[n_entries]);
		if (rc)
			goto out;
		es[n_entries].order = n_entries;
		n_entries++;
	}
	rc = check_layout(c, es, n_entries, file_size, header_len);
	if (rc)
		goto out;
	rc = build_file(c, es, n_entries, md, n_meta, out);
out:
	smelt_nameidx_free(&keys);
	free(es);
	cJSON_Delete(root);
	return rc;
}

int smelt_st_parse(const uint8_t *buf, size_t buf_len, uint64_t file_size, const char *what,
		   struct smelt_st_file *out, struct smelt_err *err)
{
	struct parse_ctx c = {.what = what ? what : "safetensors", .err = err};
	uint64_t n;
	uint8_t *copy = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	out->fd = -1;
	if (file_size < 8)
		return smelt_fail(err, SMELT_EFORMAT,
				  "%s: file is %" PRIu64 " bytes, shorter than the 8-byte header "
				  "length (HeaderTooSmall)",
				  c.what, file_size);
	if (buf_len < 8)
		return smelt_fail(err, SMELT_EINVAL, "%s: only %zu bytes of the file were given",
				  c.what, buf_len);
	n = (uint64_t)buf[0] | (uint64_t)buf[1] << 8 | (uint64_t)buf[2] << 16 |
	    (uint64_t)buf[3] << 24 | (uint64_t)buf[4] << 32 | (uint64_t)buf[5] << 40 |
	    (uint64_t)buf[6] << 48 | (uint64_t)buf[7] << 56;
	if (n > SMELT_ST_HEADER_MAX || n > SIZE_MAX - 9)
		return smelt_fail(err, SMELT_EFORMAT,
				  "%s: header length %" PRIu64 " exceeds the 100000000-byte limit "
				  "(HeaderTooLarge)",
				  c.what, n);
	if (8 + n > file_size)
		return smelt_fail(err, SMELT_EFORMAT,
				  "%s: header length %" PRIu64 " runs past the end of the %" PRIu64
				  "-byte file (InvalidHeaderLength)",
				  c.what, n, file_size);
	if (8 + n > buf_len)
		return smelt_fail(err, SMELT_EINVAL,
				  "%s: only %zu bytes of the %" PRIu64 "-byte header were given",
				  c.what, buf_len, n);
	/* A private NUL-terminated copy: cJSON never sees bytes past the header. */
	copy = malloc((size_t)n + 1);
	if (!copy)
		return smelt_fail(err, SMELT_ENOMEM, "%s: out of memory for a %" PRIu64 "-byte header",
				  c.what, n);
	memcpy(copy, buf + 8, (size_t)n);
	copy[n] = '\0';
	c.hdr = copy;
	c.len = (size_t)n;
	rc = check_utf8(&c);
	if (!rc)
		rc = parse_json(&c, file_size, n, out);
	free(copy);
	free(c.num_off);
	if (rc) {
		smelt_st_close(out);
		return rc;
	}
	out->size = file_size;
	out->header_len = n;
	out->data = buf + 8 + n;
	return 0;
}

int smelt_st_open(struct smelt_st_file *f, const char *path, struct smelt_err *err)
{
	struct stat st;
	void *map = NULL;
	int fd, rc;

	memset(f, 0, sizeof(*f));
	f->fd = -1;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return smelt_fail(err, errno == ENOENT ? SMELT_ENOTFOUND : SMELT_EIO, "%s: %s", path,
				  strerror(errno));
	if (fstat(fd, &st) != 0) {
		rc = smelt_fail(err, SMELT_EIO, "%s: %s", path, strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = smelt_fail(err, SMELT_EIO, "%s: not a regular file", path);
		goto fail;
	}
	if (st.st_size > 0) {
		map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
		if (map == MAP_FAILED) {
			rc = smelt_fail(err, SMELT_EIO, "%s: cannot map the file: %s", path,
					strerror(errno));
			goto fail;
		}
	}
	rc = smelt_st_parse(map ? map : (const uint8_t *)"", (size_t)st.st_size, (uint64_t)st.st_size,
			    path, f, err);
	if (rc)
		goto fail;
	f->path = strdup(path);
	if (!f->path) {
		rc = smelt_fail(err, SMELT_ENOMEM, "%s: out of memory", path);
		goto fail;
	}
	f->fd = fd;
	f->map = map;
	return 0;
fail:
	if (map)
		munmap(map, (size_t)st.st_size);
	close(fd);
	smelt_st_close(f);
	return rc;
}

void smelt_st_close(struct smelt_st_file *f)
{
	struct st_priv *priv = f->priv;

	if (f->map)
		munmap((void *)f->map, (size_t)f->size);
	/* A zeroed struct has fd 0: only a file that opened owns its fd. */
	if (f->path && f->fd >= 0)
		close(f->fd);
	if (priv) {
		smelt_nameidx_free(&priv->index);
		free(priv->arena);
		free(priv);
	}
	free(f->tensors);
	free(f->meta);
	free(f->path);
	memset(f, 0, sizeof(*f));
	f->fd = -1;
}

const struct smelt_st_tensor *smelt_st_find(const struct smelt_st_file *f, const char *name)
{
	const struct st_priv *priv = f->priv;
	long long i;

	if (!priv)
		return NULL;
	i = smelt_nameidx_get(&priv->index, name);
	return i < 0 ? NULL : &f->tensors[i];
}

const char *smelt_st_meta_get(const struct smelt_st_file *f, const char *key)
{
	for (size_t i = 0; i < f->n_meta; i++)
		if (strcmp(f->meta[i].key, key) == 0)
			return f->meta[i].value;
	return NULL;
}

uint64_t smelt_st_numel(const struct smelt_st_tensor *t)
{
	uint64_t n = 1;

	for (int i = 0; i < t->ndim; i++)
		n *= t->shape[i];
	return n;
}

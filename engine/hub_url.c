/* hub_url.c: references, validation, environment, URL quoting, globs. */
#include "hub_internal.h"

#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define REPO_PART_MAX 96

bool hub_env_truthy(const char *name)
{
	const char *v = getenv(name);

	if (!v)
		return false;
	return strcasecmp(v, "1") == 0 || strcasecmp(v, "on") == 0 || strcasecmp(v, "yes") == 0 ||
	       strcasecmp(v, "true") == 0;
}

static bool has_control(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return true;
	return false;
}

static bool repo_part_ok(const char *p, size_t len)
{
	if (len == 0 || len > REPO_PART_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)p[i]) && p[i] != '_' && p[i] != '.' && p[i] != '-')
			return false;
	if (p[0] == '-' || p[0] == '.' || p[len - 1] == '-' || p[len - 1] == '.')
		return false;
	return true;
}

int smelt_hub_repo_id_check(const char *repo, struct smelt_err *err)
{
	const char *slash;

	if (!repo || !*repo)
		return smelt_fail(err, SMELT_EINVAL, "empty repository id");
	if (has_control(repo))
		return smelt_fail(err, SMELT_EINVAL, "repository id contains control characters");
	slash = strchr(repo, '/');
	if (slash && strchr(slash + 1, '/'))
		return smelt_fail(err, SMELT_EINVAL,
		                  "repository id '%s' has more than one '/' (expected org/name)",
		                  repo);
	if (slash ? !repo_part_ok(repo, (size_t)(slash - repo)) ||
	                !repo_part_ok(slash + 1, strlen(slash + 1))
	          : !repo_part_ok(repo, strlen(repo)))
		return smelt_fail(err, SMELT_EINVAL,
		                  "repository id '%s' is not valid (org/name: letters, digits, "
		                  "'-', '_', '.', at most 96 chars each)",
		                  repo);
	if (strstr(repo, "--") || strstr(repo, ".."))
		return smelt_fail(err, SMELT_EINVAL,
		                  "repository id '%s' may not contain '--' or '..'", repo);
	size_t len = strlen(repo);
	if (len >= 4 && strcmp(repo + len - 4, ".git") == 0)
		return smelt_fail(err, SMELT_EINVAL, "repository id '%s' may not end in .git",
		                  repo);
	return 0;
}

int smelt_hub_revision_check(const char *rev, struct smelt_err *err)
{
	size_t len = rev ? strlen(rev) : 0;

	if (len == 0)
		return smelt_fail(err, SMELT_EINVAL, "empty revision");
	if (len > SMELT_HUB_REV_MAX)
		return smelt_fail(err, SMELT_EINVAL, "revision is longer than %d characters",
		                  SMELT_HUB_REV_MAX);
	for (const char *p = rev; *p; p++) {
		unsigned char c = (unsigned char)*p;
		if (c <= 0x20 || c >= 0x7f || strchr("~^:?*[\\", c))
			return smelt_fail(err, SMELT_EINVAL,
			                  "revision contains a character not allowed in a git ref");
	}
	if (strstr(rev, "..") || strstr(rev, "//") || rev[0] == '/' || rev[len - 1] == '/' ||
	    rev[0] == '.' || strstr(rev, "/."))
		return smelt_fail(err, SMELT_EINVAL, "revision '%s' is not a valid git ref", rev);
	return 0;
}

int smelt_hub_filename_check(const char *name, struct smelt_err *err)
{
	size_t len = name ? strlen(name) : 0;

	if (len == 0)
		return smelt_fail(err, SMELT_EINVAL, "empty file name");
	if (len >= SMELT_HUB_PATH_MAX)
		return smelt_fail(err, SMELT_EINVAL, "file name is too long");
	if (has_control(name))
		return smelt_fail(err, SMELT_EINVAL, "file name contains control characters");
	if (strchr(name, '\\'))
		return smelt_fail(err, SMELT_EINVAL, "file name '%s' contains a backslash", name);
	if (name[0] == '/')
		return smelt_fail(err, SMELT_EINVAL, "file name '%s' is an absolute path", name);
	if (len >= 2 && isalpha((unsigned char)name[0]) && name[1] == ':')
		return smelt_fail(err, SMELT_EINVAL, "file name '%s' names a drive", name);
	for (const char *p = name;;) {
		const char *end = strchr(p, '/');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			return smelt_fail(err, SMELT_EINVAL,
			                  "file name '%s' has an empty, '.' or '..' part", name);
		if (!end)
			break;
		p = end + 1;
	}
	return 0;
}

bool smelt_hub_is_commit(const char *rev)
{
	size_t i = 0;

	for (; rev[i]; i++)
		if (!((rev[i] >= '0' && rev[i] <= '9') || (rev[i] >= 'a' && rev[i] <= 'f')))
			return false;
	return i == 40;
}

bool hub_is_sha256(const char *s)
{
	size_t i = 0;

	for (; s[i]; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return i == 64;
}

int smelt_hub_ref_parse(const char *text, struct smelt_hub_ref *ref, struct smelt_err *err)
{
	const char *at;
	size_t repo_len;
	int rc;

	memset(ref, 0, sizeof(*ref));
	if (!text || !*text)
		return smelt_fail(err, SMELT_EINVAL, "empty model reference");
	at = strchr(text, '@');
	repo_len = at ? (size_t)(at - text) : strlen(text);
	if (repo_len > SMELT_HUB_REPO_MAX)
		return smelt_fail(err, SMELT_EINVAL, "repository id is too long");
	memcpy(ref->repo, text, repo_len);
	ref->repo[repo_len] = '\0';
	rc = smelt_hub_repo_id_check(ref->repo, err);
	if (rc)
		return rc;
	if (at) {
		if (strlen(at + 1) > SMELT_HUB_REV_MAX)
			return smelt_fail(err, SMELT_EINVAL, "revision is too long");
		rc = smelt_hub_revision_check(at + 1, err);
		if (rc)
			return smelt_err_prefix(err, "%s", ref->repo);
		strcpy(ref->revision, at + 1);
		ref->explicit_revision = true;
	} else {
		strcpy(ref->revision, "main");
	}
	return 0;
}

/* Copy with a leading "~/" expanded; false when it does not fit. */
static bool expand_home(const char *v, char *buf, size_t n)
{
	const char *home = getenv("HOME");

	if (v[0] == '~' && (v[1] == '/' || v[1] == '\0') && home && *home)
		return (size_t)snprintf(buf, n, "%s%s", home, v + 1) < n;
	return (size_t)snprintf(buf, n, "%s", v) < n;
}

static bool env_set(const char *name)
{
	const char *v = getenv(name);
	return v && *v;
}

/* $HF_HOME, else $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface. */
static int hf_home(char *buf, size_t n)
{
	char tmp[SMELT_HUB_PATH_MAX];
	const char *home = getenv("HOME");

	if (env_set("HF_HOME"))
		return expand_home(getenv("HF_HOME"), buf, n) ? 0 : SMELT_EINVAL;
	if (env_set("XDG_CACHE_HOME")) {
		if (!expand_home(getenv("XDG_CACHE_HOME"), tmp, sizeof(tmp)))
			return SMELT_EINVAL;
		return (size_t)snprintf(buf, n, "%s/huggingface", tmp) < n ? 0 : SMELT_EINVAL;
	}
	if (!home || !*home)
		return SMELT_EINVAL;
	return (size_t)snprintf(buf, n, "%s/.cache/huggingface", home) < n ? 0 : SMELT_EINVAL;
}

int smelt_hub_cache_dir(char *buf, size_t n)
{
	char home[SMELT_HUB_PATH_MAX];

	if (env_set("HF_HUB_CACHE"))
		return expand_home(getenv("HF_HUB_CACHE"), buf, n) ? 0 : SMELT_EINVAL;
	if (env_set("HUGGINGFACE_HUB_CACHE"))
		return expand_home(getenv("HUGGINGFACE_HUB_CACHE"), buf, n) ? 0 : SMELT_EINVAL;
	if (hf_home(home, sizeof(home)))
		return SMELT_EINVAL;
	return (size_t)snprintf(buf, n, "%s/hub", home) < n ? 0 : SMELT_EINVAL;
}

int hub_endpoint(const char *override, char *buf, size_t n, struct smelt_err *err)
{
	const char *v = override && *override ? override : getenv("HF_ENDPOINT");
	size_t len;

	if (!v || !*v)
		v = HUB_DEFAULT_ENDPOINT;
	if (strncmp(v, "http://", 7) != 0 && strncmp(v, "https://", 8) != 0)
		return smelt_fail(err, SMELT_EINVAL,
		                  "endpoint '%s' must start with http:// or https://", v);
	if (has_control(v) || strchr(v, ' '))
		return smelt_fail(err, SMELT_EINVAL,
		                  "endpoint contains spaces or control characters");
	len = strlen(v);
	while (len > 0 && v[len - 1] == '/')
		len--;
	if (len >= n)
		return smelt_fail(err, SMELT_EINVAL, "endpoint is too long");
	memcpy(buf, v, len);
	buf[len] = '\0';
	return 0;
}

/* Copy the token stripped of whitespace (CR/LF/spaces anywhere at the ends). */
static int take_token(const char *v, char *buf, size_t n, struct smelt_err *err)
{
	size_t len;

	while (*v && isspace((unsigned char)*v))
		v++;
	len = strlen(v);
	while (len > 0 && isspace((unsigned char)v[len - 1]))
		len--;
	if (len >= n)
		return smelt_fail(err, SMELT_EINVAL, "the Hub token is too long");
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)v[i] <= 0x20 || v[i] == 0x7f)
			return smelt_fail(err, SMELT_EINVAL,
			                  "the Hub token contains spaces or control characters");
	memcpy(buf, v, len);
	buf[len] = '\0';
	return 0;
}

static int token_from_file(const char *path, char *buf, size_t n, struct smelt_err *err)
{
	char text[HUB_TOKEN_MAX + 64];
	FILE *f = fopen(path, "r");
	size_t got;

	buf[0] = '\0';
	if (!f)
		return errno == ENOENT
		           ? 0
		           : smelt_fail(err, SMELT_EIO, "%s: cannot read the token file", path);
	got = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[got] = '\0';
	return take_token(text, buf, n, err);
}

int hub_token(const char *override, char *buf, size_t n, struct smelt_err *err)
{
	char path[SMELT_HUB_PATH_MAX];

	buf[0] = '\0';
	if (override)
		return take_token(override, buf, n, err);
	if (hub_env_truthy("HF_HUB_DISABLE_IMPLICIT_TOKEN"))
		return 0;
	if (env_set("HF_TOKEN"))
		return take_token(getenv("HF_TOKEN"), buf, n, err);
	if (env_set("HUGGING_FACE_HUB_TOKEN"))
		return take_token(getenv("HUGGING_FACE_HUB_TOKEN"), buf, n, err);
	if (env_set("HF_TOKEN_PATH")) {
		if (!expand_home(getenv("HF_TOKEN_PATH"), path, sizeof(path)))
			return 0;
	} else {
		char home[SMELT_HUB_PATH_MAX];
		if (hf_home(home, sizeof(home)) ||
		    (size_t)snprintf(path, sizeof(path), "%s/token", home) >= sizeof(path))
			return 0;
	}
	return token_from_file(path, buf, n, err);
}

int hub_quote(const char *s, bool keep_slash, char *out, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;

	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		bool plain = isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' ||
		             (keep_slash && c == '/');
		if (plain) {
			if (o + 1 >= n)
				return -1;
			out[o++] = (char)c;
		} else {
			if (o + 3 >= n)
				return -1;
			out[o++] = '%';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	if (o >= n)
		return -1;
	out[o] = '\0';
	return 0;
}

int hub_repo_folder(const char *repo, char *out, size_t n)
{
	const char *slash = strchr(repo, '/');
	int w;

	if (slash)
		w = snprintf(out, n, "models--%.*s--%s", (int)(slash - repo), repo, slash + 1);
	else
		w = snprintf(out, n, "models--%s", repo);
	return w >= 0 && (size_t)w < n ? 0 : -1;
}

bool hub_glob_match(const char *pattern, const char *name)
{
	size_t len = strlen(pattern);

	if (len > 0 && pattern[len - 1] == '/')
		return strncmp(pattern, name, len) == 0;
	return fnmatch(pattern, name, 0) == 0;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	return a >= b && strcmp(s + a - b, suffix) == 0;
}

bool smelt_hub_default_file(const char *name)
{
	static const char *const exact[] = {
	    "config.json",
	    "generation_config.json",
	    "special_tokens_map.json",
	    "added_tokens.json",
	    "merges.txt",
	    "chat_template.json",
	    "chat_template.jinja",
	    "tokenizer.model",
	    "preprocessor_config.json",
	};
	const char *base = strrchr(name, '/');

	/* Weights anywhere; metadata only at the top, where loaders read it. */
	if (ends_with(name, ".safetensors") || ends_with(name, ".safetensors.index.json"))
		return true;
	if (base)
		return false;
	for (size_t i = 0; i < sizeof(exact) / sizeof(exact[0]); i++)
		if (strcmp(name, exact[i]) == 0)
			return true;
	return strncmp(name, "tokenizer", 9) == 0 || strncmp(name, "vocab.", 6) == 0 ||
	       ends_with(name, ".model");
}

bool hub_file_selected(const char *name, const char *const *inc, size_t n_inc,
                       const char *const *exc, size_t n_exc)
{
	bool in = false;

	if (n_inc == 0) {
		in = smelt_hub_default_file(name);
	} else {
		for (size_t i = 0; i < n_inc && !in; i++)
			in = hub_glob_match(inc[i], name);
	}
	for (size_t i = 0; i < n_exc && in; i++)
		if (hub_glob_match(exc[i], name))
			in = false;
	return in;
}

bool hub_etag_normalize(const char *raw, char *out, size_t n)
{
	size_t len;

	while (*raw == ' ')
		raw++;
	if (strncmp(raw, "W/", 2) == 0)
		raw += 2;
	len = strlen(raw);
	while (len > 0 && (raw[len - 1] == ' ' || raw[len - 1] == '\r' || raw[len - 1] == '\n'))
		len--;
	if (len >= 2 && raw[0] == '"' && raw[len - 1] == '"') {
		raw++;
		len -= 2;
	}
	if (len == 0 || len >= n || raw[0] == '.')
		return false;
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)raw[i]) && raw[i] != '-' && raw[i] != '_' &&
		    raw[i] != '.')
			return false;
	memcpy(out, raw, len);
	out[len] = '\0';
	return true;
}

int hub_parse_retry_after(const char *value, time_t now, long *seconds)
{
	char *end;
	long v;
	time_t when;

	while (*value == ' ')
		value++;
	if (isdigit((unsigned char)*value)) {
		errno = 0;
		v = strtol(value, &end, 10);
		while (*end == ' ' || *end == '\r' || *end == '\n')
			end++;
		if (errno || *end)
			return -1;
		*seconds = v;
		return 0;
	}
	when = curl_getdate(value, NULL);
	if (when == (time_t)-1)
		return -1;
	*seconds = when > now ? (long)(when - now) : 0;
	return 0;
}

int hub_parse_ratelimit(const char *value, long *seconds)
{
	const char *r = strstr(value, ";r="), *t = strstr(value, ";t=");
	char *end;
	long remaining, reset;

	if (!r || !t)
		return -1;
	remaining = strtol(r + 3, &end, 10);
	if (end == r + 3)
		return -1;
	reset = strtol(t + 3, &end, 10);
	if (end == t + 3 || reset < 0 || remaining != 0)
		return -1;
	*seconds = reset;
	return 0;
}

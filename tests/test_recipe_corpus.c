/*
 * test_recipe_corpus.c: the 50 real-world mergekit recipes of
 * $SMELT_SHARED/testdata/mergekit-recipes against their index.json entries.
 *
 *   ok                      -> no errors and no warnings
 *   ok_with_warnings        -> no errors, and a warning naming every listed
 *                              unknown key / unknown parameter
 *   schema_ok_runtime_error -> at least one error at validation
 *
 * Deliberate differences from mergekit are listed in `deviations` with the
 * text the error must contain. Also checked for every recipe: the distinct
 * model references, the output layer count of slices recipes, the levels
 * each parameter is set at, --strict (fails exactly when unknown keys or
 * parameters are listed), and the YAML and JSON writers (re-parsed, same
 * tree). A recipe whose method is not in the registry is skipped with a note.
 */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "check.h"
#include "smelt/method.h"
#include "smelt/recipe.h"

static const struct {
	const char *file_prefix;
	const char *error_text;
	const char *why;
} deviations[] = {
    {"22-", "union tokenizers", "smelt does not build union tokenizers"},
    {"42-", "LoRA", "model+LoRA references are refused up front"},
    {"44-", "union tokenizers", "smelt does not build union tokenizers"},
};

/* Recipes that --strict refuses although the index lists no unknown key:
 * a per-model value of a global parameter, which mergekit ignores too. */
static const char *const strict_extra[] = {"38-"};

static char corpus_dir[1024];
static int n_checked, n_skipped;

static char *read_text(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long n;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
		buf = malloc((size_t)n + 1);
		if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
			free(buf);
			buf = NULL;
		}
		if (buf)
			buf[n] = '\0';
	}
	fclose(f);
	return buf;
}

/* "sources[].down_proj" -> "down_proj": the last component of a key path. */
static const char *last_component(const char *key)
{
	const char *dot = strrchr(key, '.');

	return dot ? dot + 1 : key;
}

static bool warned_about(const struct smelt_diag *d, const char *key)
{
	const char *name = last_component(key);
	size_t len = strlen(name);

	for (size_t i = 0; i < d->n; i++) {
		const char *p = d->items[i].path;
		size_t pl = strlen(p);

		if (d->items[i].severity != SMELT_DIAG_WARNING || pl < len)
			continue;
		if (strcmp(p + pl - len, name) == 0 && (pl == len || p[pl - len - 1] == '.'))
			return true;
	}
	return false;
}

static bool has_error_text(const struct smelt_diag *d, const char *text)
{
	for (size_t i = 0; i < d->n; i++)
		if (d->items[i].severity == SMELT_DIAG_ERROR && strstr(d->items[i].msg, text))
			return true;
	return false;
}

static const char *deviation(const char *file)
{
	for (size_t i = 0; i < sizeof(deviations) / sizeof(deviations[0]); i++)
		if (strncmp(file, deviations[i].file_prefix, strlen(deviations[i].file_prefix)) ==
		    0)
			return deviations[i].error_text;
	return NULL;
}

static void check_refs(const char *file, const struct smelt_recipe *r, const cJSON *e)
{
	const cJSON *refs = cJSON_GetObjectItem(e, "model_refs");
	const cJSON *base = cJSON_GetObjectItem(e, "base_model");
	int want = cJSON_GetObjectItem(e, "num_models")->valueint;
	const cJSON *it;

	CHECK_MSG((int)r->n_model_refs == want, "%s: %zu distinct models, index says %d", file,
	          r->n_model_refs, want);
	cJSON_ArrayForEach(it, refs)
	{
		bool found = false;

		for (size_t i = 0; i < r->n_model_refs; i++)
			found |= strcmp(r->model_refs[i], it->valuestring) == 0;
		CHECK_MSG(found, "%s: model '%s' not among the references", file, it->valuestring);
	}
	if (cJSON_IsString(base))
		CHECK_MSG(r->base_model && strcmp(r->base_model, base->valuestring) == 0,
		          "%s: base_model '%s'", file, r->base_model ? r->base_model : "(none)");
	else
		CHECK_MSG(!r->base_model, "%s: unexpected base_model", file);
}

static void check_layers(const char *file, const struct smelt_recipe *r, const cJSON *e)
{
	const cJSON *out = cJSON_GetObjectItem(e, "output_layer_count");
	int total = 0;

	if (!cJSON_IsNumber(out))
		return;
	CHECK_MSG(r->uses_slices, "%s: index has an output layer count but no slices", file);
	for (size_t s = 0; s < r->n_slices; s++)
		total += smelt_slice_layers(&r->slices[s]);
	CHECK_MSG(total == out->valueint, "%s: %d output layers, index says %d", file, total,
	          out->valueint);
}

static bool pset_has(const struct smelt_pset *ps, const char *name)
{
	for (size_t i = 0; i < ps->n; i++)
		if (strcmp(ps->names[i], name) == 0)
			return true;
	return false;
}

/* parameters_used: {name: ["top" | "model" | "slice" | "source", ...]} */
static void check_levels(const char *file, const struct smelt_recipe *r, const cJSON *e)
{
	const cJSON *used = cJSON_GetObjectItem(e, "parameters_used"), *p;

	cJSON_ArrayForEach(p, used)
	{
		const cJSON *lvl;

		cJSON_ArrayForEach(lvl, p)
		{
			const char *l = lvl->valuestring;
			bool found = false;

			if (strcmp(l, "top") == 0)
				found = pset_has(&r->params, p->string);
			for (size_t s = 0; s < r->n_slices; s++) {
				const struct smelt_slice *sl = &r->slices[s];

				if (strcmp(l, "slice") == 0)
					found |= pset_has(&sl->params, p->string);
				for (size_t i = 0; i < sl->n_sources; i++)
					if (strcmp(l, "model") == 0 || strcmp(l, "source") == 0)
						found |=
						    pset_has(&sl->sources[i].params, p->string);
			}
			CHECK_MSG(found, "%s: parameter %s not found at level %s", file, p->string,
			          l);
		}
	}
}

static void check_writers(const char *file, const struct smelt_recipe *r)
{
	char *json = smelt_recipe_to_json(r), *yaml = smelt_recipe_to_yaml(r);
	struct smelt_recipe *a = NULL, *b = NULL;
	struct smelt_diag d = {0};
	char *ja = NULL, *jb = NULL;

	CHECK(json && yaml);
	if (json && yaml) {
		smelt_recipe_parse(yaml, strlen(yaml), "written.yml", &a, &d);
		smelt_recipe_parse(json, strlen(json), "written.json", &b, &d);
		ja = a ? smelt_recipe_to_json(a) : NULL;
		jb = b ? smelt_recipe_to_json(b) : NULL;
		CHECK_MSG(ja && strcmp(ja, json) == 0, "%s: YAML writer round trip differs:\n%s",
		          file, yaml);
		CHECK_MSG(jb && strcmp(jb, json) == 0, "%s: JSON writer round trip differs", file);
		CHECK_MSG(smelt_diag_warnings(&d) == 0 && smelt_diag_errors(&d) == 0,
		          "%s: written recipe has diagnostics", file);
	}
	free(json);
	free(yaml);
	free(ja);
	free(jb);
	smelt_recipe_free(a);
	smelt_recipe_free(b);
	smelt_diag_release(&d);
}

static void check_entry(const cJSON *e)
{
	const char *file = cJSON_GetObjectItem(e, "file")->valuestring;
	const char *status = cJSON_GetObjectItem(e, "mergekit_status")->valuestring;
	const char *method = cJSON_GetObjectItem(e, "merge_method")->valuestring;
	const cJSON *keys[2] = {cJSON_GetObjectItem(e, "unknown_keys"),
	                        cJSON_GetObjectItem(e, "unknown_params")};
	const char *dev = deviation(file);
	struct smelt_recipe *r = NULL;
	struct smelt_diag d = {0}, ds = {0};
	char path[2048], *text = NULL;
	bool has_unknown = cJSON_GetArraySize(keys[0]) + cJSON_GetArraySize(keys[1]) > 0;
	int rc, failures_before = check_failures;

	for (size_t i = 0; i < sizeof(strict_extra) / sizeof(strict_extra[0]); i++)
		has_unknown |= strncmp(file, strict_extra[i], strlen(strict_extra[i])) == 0;

	if (!smelt_method_find(method)) {
		printf("  note: %s skipped: method %s not in the registry\n", file, method);
		n_skipped++;
		return;
	}
	n_checked++;
	snprintf(path, sizeof(path), "%s/%s", corpus_dir, file);
	rc = smelt_recipe_load(path, &r, &d);
	CHECK_MSG(rc == 0 && r, "%s: parse failed", file);
	if (!r)
		goto out;
	CHECK_MSG(strcmp(r->merge_method, method) == 0, "%s: method %s", file, r->merge_method);
	text = read_text(path);
	CHECK(text && strcmp(text, r->source_text) == 0 && r->source_is_yaml);
	smelt_recipe_validate(r, false, &d);
	for (int k = 0; k < 2; k++) {
		const cJSON *it;

		cJSON_ArrayForEach(it, keys[k])
		    CHECK_MSG(warned_about(&d, it->valuestring), "%s: no warning names '%s'", file,
		              it->valuestring);
	}
	if (dev) {
		CHECK_MSG(has_error_text(&d, dev), "%s: expected smelt's error about '%s'", file,
		          dev);
	} else if (strcmp(status, "schema_ok_runtime_error") == 0) {
		CHECK_MSG(smelt_diag_errors(&d) > 0, "%s: expected an error", file);
	} else {
		CHECK_MSG(smelt_diag_errors(&d) == 0, "%s: unexpected errors", file);
		if (strcmp(status, "ok") == 0)
			CHECK_MSG(smelt_diag_warnings(&d) == 0, "%s: unexpected warnings", file);
		else
			CHECK_MSG(smelt_diag_warnings(&d) > 0, "%s: expected warnings", file);
	}
	if (smelt_diag_errors(&d) || (strcmp(status, "ok") == 0 && smelt_diag_warnings(&d))) {
		char *txt = smelt_diag_format(&d);

		if (check_failures != failures_before)
			printf("%s", txt ? txt : "");
		free(txt);
	}
	/* --strict: fails where mergekit would silently ignore keys */
	if (!dev && strcmp(status, "schema_ok_runtime_error") != 0) {
		struct smelt_recipe *rs = NULL;

		smelt_recipe_load(path, &rs, &ds);
		if (rs)
			CHECK_MSG((smelt_recipe_validate(rs, true, &ds) != 0) == has_unknown,
			          "%s: strict validation %s", file,
			          has_unknown ? "passed" : "failed");
		smelt_recipe_free(rs);
	}
	check_refs(file, r, e);
	check_layers(file, r, e);
	check_levels(file, r, e);
	check_writers(file, r);
out:
	free(text);
	smelt_recipe_free(r);
	smelt_diag_release(&d);
	smelt_diag_release(&ds);
}

TEST(corpus)
{
	char index[1200];
	char *text;
	cJSON *root, *e;
	int n = 0;

	/* An empty registry is not "methods still being written": it means the
	 * method objects were not linked into this program at all. */
	CHECK_MSG(smelt_method_count() > 0,
	          "the method registry is empty: no method object was linked in (weak "
	          "references in engine/methods/registry.c do not pull members out of the "
	          "static engine library)");
	check_shared("testdata/mergekit-recipes", corpus_dir, sizeof(corpus_dir));
	snprintf(index, sizeof(index), "%s/index.json", corpus_dir);
	text = read_text(index);
	CHECK_MSG(text != NULL, "cannot read %s", index);
	if (!text)
		return;
	root = cJSON_Parse(text);
	free(text);
	CHECK(cJSON_IsArray(root));
	cJSON_ArrayForEach(e, root)
	{
		int before = check_failures;

		check_entry(e);
		if (check_failures != before)
			printf("  ^ %s\n", cJSON_GetObjectItem(e, "file")->valuestring);
		n++;
	}
	CHECK_EQ_INT(n, 50);
	printf("  %d recipes checked, %d skipped (method not in the registry)\n", n_checked,
	       n_skipped);
	cJSON_Delete(root);
}

int main(void)
{
	RUN(corpus);
	return check_summary();
}

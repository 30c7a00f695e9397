/*
 * test_recipe.c: recipe parsing (YAML 1.1 typing, JSON), diagnostics,
 * per-tensor resolution (gradients, filters, precedence, step lists) and the
 * writers. Tests that need a method skip with a note when the registry does
 * not hold it.
 */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "recipe_int.h"
#include "smelt/method.h"
#include "smelt/recipe.h"

static struct smelt_recipe *parse(const char *text, struct smelt_diag *d)
{
	struct smelt_recipe *r = NULL;
	int rc = smelt_recipe_parse(text, strlen(text), "recipe.yml", &r, d);

	CHECK_MSG(rc == 0 && r, "parse failed (%d)", rc);
	return r;
}

static bool have(const char *method)
{
	if (smelt_method_find(method))
		return true;
	printf("  note: method %s not in the registry yet, part skipped\n", method);
	return false;
}

/* True if some diag line (formatted) contains all of the given pieces. */
static bool diag_has(const struct smelt_diag *d, int severity, const char *a, const char *b)
{
	for (size_t i = 0; i < d->n; i++) {
		const struct smelt_diag_item *it = &d->items[i];
		char line[2048];

		if (severity && it->severity != severity)
			continue;
		snprintf(line, sizeof(line), "%s: %s", it->path, it->msg);
		if (strstr(line, a) && (!b || strstr(line, b)))
			return true;
	}
	return false;
}

static double res(const struct smelt_recipe *r, size_t slice, int src, const char *p,
                  const char *tensor, double t, bool *found)
{
	double v = -999;
	struct smelt_err err = {0};
	int rc = smelt_recipe_resolve(r, slice, src, p, tensor, t, &v, found, &err);

	CHECK_MSG(rc == 0, "resolve %s: %s", p, err.msg);
	return v;
}

TEST(yaml11_scalar_typing)
{
	static const struct {
		const char *text;
		enum rn_kind kind;
		double num;
	} cases[] = {
	    {"1e-4", RN_STR, 0},     {"1.0e-4", RN_NUM, 1e-4},   {"1.0e4", RN_STR, 0},
	    {"1.0e+4", RN_NUM, 1e4}, {".5", RN_NUM, 0.5},        {"-.5", RN_STR, 0},
	    {"-0.5", RN_NUM, -0.5},  {"1.", RN_NUM, 1},          {"1_000", RN_NUM, 1000},
	    {"0x1F", RN_NUM, 31},    {"017", RN_NUM, 15},        {"0o17", RN_STR, 0},
	    {"0b101", RN_NUM, 5},    {"1:30", RN_NUM, 90},       {"1:30.5", RN_NUM, 90.5},
	    {"yes", RN_BOOL, 1},     {"No", RN_BOOL, 0},         {"ON", RN_BOOL, 1},
	    {"off", RN_BOOL, 0},     {"TRUE", RN_BOOL, 1},       {"tRue", RN_STR, 0},
	    {"y", RN_STR, 0},        {"~", RN_NULL, 0},          {"null", RN_NULL, 0},
	    {"", RN_NULL, 0},        {"0", RN_NUM, 0},           {"+12", RN_NUM, 12},
	    {"1.5.2", RN_STR, 0},    {".inf", RN_NUM, INFINITY}, {"-.inf", RN_NUM, -INFINITY},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct rnode n = {0};

		recipe_yaml11_resolve(cases[i].text, &n);
		CHECK_MSG(n.kind == cases[i].kind, "'%s': kind %d, want %d", cases[i].text, n.kind,
		          cases[i].kind);
		if (n.kind == RN_NUM && cases[i].kind == RN_NUM)
			CHECK_MSG(n.num == cases[i].num, "'%s': %g, want %g", cases[i].text, n.num,
			          cases[i].num);
		if (n.kind == RN_BOOL)
			CHECK_MSG(n.b == (cases[i].num != 0), "'%s' bool", cases[i].text);
	}
}

TEST(quoted_scalars_are_strings)
{
	struct smelt_diag d = {0};
	struct smelt_recipe *r = parse("merge_method: linear\n"
	                               "models:\n  - model: a\n    parameters: {weight: '0.5'}\n"
	                               "  - model: \"1.5\"\n    parameters: {weight: 1e-4}\n",
	                               &d);

	if (r) {
		CHECK_EQ_INT(r->slices[0].sources[0].params.values[0].kind, SMELT_PV_STRING);
		CHECK(strcmp(r->slices[0].sources[1].model, "1.5") == 0);
		CHECK_EQ_INT(r->slices[0].sources[1].params.values[0].kind, SMELT_PV_STRING);
		bool found;
		CHECK_NEAR(res(r, 0, 1, "weight", "x", 0, &found), 1e-4, 1e-18);
		CHECK(found);
	}
	smelt_recipe_free(r);
	smelt_diag_release(&d);
}

TEST(gradient_worked_example)
{
	static const int layer[] = {0, 5, 10, 15, 20, 25, 30, 35, 39};
	static const double want[] = {0.000, 0.256, 0.495, 0.392, 0.321,
	                              0.526, 0.723, 0.877, 1.000};
	struct smelt_diag d = {0};
	struct smelt_recipe *r = parse("merge_method: slerp\nbase_model: a\n"
	                               "models: [{model: a}, {model: b}]\n"
	                               "parameters:\n  t: [0, 0.5, 0.3, 0.7, 1]\n",
	                               &d);

	for (size_t i = 0; r && i < 9; i++) {
		bool found;
		double v = res(r, 0, -1, "t", "model.layers.0.self_attn.q_proj.weight",
		               smelt_recipe_layer_t(layer[i], 40), &found);

		CHECK(found);
		CHECK_MSG(fabs(v - want[i]) < 0.0005, "layer %d: %.4f, want %.3f", layer[i], v,
		          want[i]);
	}
	CHECK_NEAR(smelt_recipe_layer_t(0, 1), 1.0, 0);
	smelt_recipe_free(r);
	smelt_diag_release(&d);
}

TEST(filters_with_gradients)
{
	struct smelt_diag d = {0};
	struct smelt_recipe *r =
	    parse("slices:\n"
	          "  - sources:\n"
	          "      - model: A\n        layer_range: [0, 32]\n"
	          "      - model: B\n        layer_range: [0, 32]\n"
	          "merge_method: slerp\nbase_model: A\n"
	          "parameters:\n  t:\n"
	          "    - filter: self_attn\n      value: [0, 0.5, 0.3, 0.7, 1]\n"
	          "    - filter: mlp\n      value: [1, 0.5, 0.7, 0.3, 0]\n"
	          "    - value: 0.5\n"
	          "dtype: bfloat16\n",
	          &d);
	bool found;

	if (!r)
		return;
	CHECK_EQ_INT(smelt_slice_layers(&r->slices[0]), 32);
	CHECK_NEAR(res(r, 0, -1, "t", "model.layers.31.self_attn.o_proj.weight", 1, &found), 1,
	           1e-12);
	CHECK_NEAR(res(r, 0, -1, "t", "model.layers.0.self_attn.o_proj.weight", 0, &found), 0,
	           1e-12);
	CHECK_NEAR(res(r, 0, -1, "t", "model.layers.0.mlp.up_proj.weight", 0, &found), 1, 1e-12);
	CHECK_NEAR(res(r, 0, -1, "t", "model.layers.16.mlp.up_proj.weight", 0.5, &found), 0.7,
	           1e-12);
	CHECK_NEAR(res(r, 0, -1, "t", "model.norm.weight", 0, &found), 0.5, 1e-12);
	CHECK(found);
	CHECK(r->has_dtype && r->dtype == SMELT_BF16);
	smelt_recipe_free(r);
	smelt_diag_release(&d);
}

TEST(precedence_and_fallthrough)
{
	struct smelt_diag d = {0};
	struct smelt_recipe *r = parse("merge_method: linear\n"
	                               "slices:\n"
	                               "  - sources:\n"
	                               "      - model: A\n        layer_range: [0, 4]\n"
	                               "        parameters:\n          weight:\n"
	                               "            - filter: mlp\n              value: 0.9\n"
	                               "      - model: B\n        layer_range: [4, 8]\n"
	                               "    parameters:\n      weight: 0.3\n"
	                               "  - sources:\n"
	                               "      - model: A\n        layer_range: [4, 8]\n"
	                               "parameters:\n  weight: [0.1, 0.2]\n  normalize: false\n",
	                               &d);
	bool found;

	if (!r)
		return;
	/* source level wins where its filter matches, else the slice value */
	CHECK_NEAR(res(r, 0, 0, "weight", "model.layers.0.mlp.up_proj.weight", 0, &found), 0.9, 0);
	CHECK_NEAR(res(r, 0, 0, "weight", "model.layers.0.self_attn.q_proj.weight", 0, &found), 0.3,
	           0);
	CHECK_NEAR(res(r, 0, 1, "weight", "model.layers.4.mlp.up_proj.weight", 0, &found), 0.3, 0);
	/* the second slice has no slice parameters: top level gradient, restarted */
	CHECK_NEAR(res(r, 1, 0, "weight", "model.layers.4.mlp.up_proj.weight", 0, &found), 0.1,
	           1e-15);
	CHECK_NEAR(res(r, 1, 0, "weight", "model.layers.7.mlp.up_proj.weight", 1, &found), 0.2,
	           1e-15);
	CHECK_NEAR(res(r, 1, -1, "normalize", "x", 0, &found), 0, 0);
	CHECK(found);
	res(r, 1, -1, "lambda", "x", 0, &found);
	CHECK(!found);
	CHECK(smelt_recipe_find(r, 1, -1, "lambda", "x") == NULL);
	smelt_recipe_free(r);
	smelt_diag_release(&d);
}

TEST(step_list_of_bools_and_strings)
{
	struct smelt_diag d = {0};
	struct smelt_recipe *r = parse("merge_method: ties\nbase_model: b\n"
	                               "models: [{model: x, parameters: {weight: 1}}]\n"
	                               "parameters:\n  normalize: [true, false, true]\n"
	                               "  exclude: ['^lm_head', embed]\n",
	                               &d);
	bool found;
	const struct smelt_pvalue *ex;

	if (!r)
		return;
	CHECK_NEAR(res(r, 0, -1, "normalize", "x", 0, &found), 1, 0);
	CHECK_NEAR(res(r, 0, -1, "normalize", "x", 0.4, &found), 1, 0);
	CHECK_NEAR(res(r, 0, -1, "normalize", "x", 0.5, &found), 0, 0);
	CHECK_NEAR(res(r, 0, -1, "normalize", "x", 0.99, &found), 0, 0);
	CHECK_NEAR(res(r, 0, -1, "normalize", "x", 1, &found), 1, 0);
	ex = smelt_recipe_find(r, 0, -1, "exclude", "x");
	CHECK(ex && ex->kind == SMELT_PV_LIST && ex->n_items == 2 &&
	      strcmp(ex->items[0].str, "^lm_head") == 0);
	smelt_recipe_free(r);
	smelt_diag_release(&d);
}

TEST(json_matches_yaml)
{
	struct smelt_diag d = {0};
	struct smelt_recipe *y =
	    parse("merge_method: ties\nbase_model: base\n"
	          "models:\n  - model: a\n    parameters:\n      weight: 0.5\n"
	          "      density: [0.2, 0.8]\n  - model: base\n"
	          "parameters:\n  normalize: true\n  t:\n"
	          "    - filter: mlp\n      value: 1\ndtype: float16\nseed: 42\n",
	          &d);
	struct smelt_recipe *j =
	    parse("{\"merge_method\": \"ties\", \"base_model\": \"base\", \"models\": ["
	          "{\"model\": \"a\", \"parameters\": {\"weight\": 0.5, \"density\": [0.2, 0.8]}},"
	          "{\"model\": \"base\"}], \"parameters\": {\"normalize\": true, \"t\": "
	          "[{\"filter\": \"mlp\", \"value\": 1}]}, \"dtype\": \"float16\", \"seed\": 42}",
	          &d);
	char *jy = y ? smelt_recipe_to_json(y) : NULL, *jj = j ? smelt_recipe_to_json(j) : NULL;

	CHECK(jy && jj && strcmp(jy, jj) == 0);
	CHECK(y && y->source_is_yaml && j && !j->source_is_yaml);
	CHECK(j && j->has_seed && j->seed == 42);
	CHECK(j && j->n_model_refs == 2 && strcmp(j->model_refs[0], "base") == 0);
	CHECK_EQ_INT(smelt_diag_errors(&d), 0);
	free(jy);
	free(jj);
	smelt_recipe_free(y);
	smelt_recipe_free(j);
	smelt_diag_release(&d);
}

TEST(writers_round_trip)
{
	static const char *const texts[] = {
	    "merge_method: slerp\nbase_model: 'yes'\nslices:\n  - sources:\n"
	    "      - model: 'yes'\n        layer_range: [0, 8]\n"
	    "      - model: 'org/b: c'\n        layer_range: [8, 16]\n"
	    "        parameters: {weight: -.inf}\n"
	    "    parameters:\n      t: [0, 1.0e-5, 0.3333333333333333]\n"
	    "parameters:\n  t:\n    - filter: '*'\n      value: 0.25\n    - value: [1, 2]\n"
	    "  exclude: ['^model.embed', '0x10', 'a, [b]']\n  zeros: [-0.0, 0]\n"
	    "dtype: torch.bfloat16\nout_dtype: float16\ntokenizer:\n  source: base\n"
	    "chat_template: \"{% for m in messages %}{{ m.content }}\\n{% endfor %}\"\n"
	    "seed: 18446744073709551615\nembed_policy: mean\n"
	    "chat_template: \"{{ x }} \\u2028 \\x85 \\ufeff \\U0001F600 \\u00e9 \\t tail\"\n",
	    "{\"merge_method\":\"linear\",\"models\":[{\"model\":\"~/m\",\"parameters\":"
	    "{\"weight\":1e-05}},{\"model\":\"2024-01-31\"}],\"tokenizer_source\":\"base\"}"};

	for (size_t i = 0; i < 2; i++) {
		struct smelt_diag d = {0};
		struct smelt_recipe *a = parse(texts[i], &d), *b = NULL, *c = NULL;
		char *ja = NULL, *y = NULL, *jb = NULL, *jc = NULL;

		if (!a)
			goto next;
		ja = smelt_recipe_to_json(a);
		y = smelt_recipe_to_yaml(a);
		CHECK(ja && y);
		if (!ja || !y)
			goto next;
		b = parse(y, &d);
		c = parse(ja, &d);
		jb = b ? smelt_recipe_to_json(b) : NULL;
		jc = c ? smelt_recipe_to_json(c) : NULL;
		CHECK_MSG(jb && strcmp(ja, jb) == 0, "yaml round trip differs:\n%s\n---\n%s\n%s", y,
		          ja, jb ? jb : "");
		CHECK_MSG(jc && strcmp(ja, jc) == 0, "json round trip differs");
		if (i == 0) {
			CHECK_STR_CONTAINS(y, "t: [0, 1.0e-05, 0.3333333333333333]");
			CHECK_STR_CONTAINS(y, "base_model: \"yes\"");
			CHECK_STR_CONTAINS(ja, "\"seed\":\t\"18446744073709551615\"");
			CHECK(b && b->seed == 18446744073709551615ull);
		}
		CHECK_EQ_INT(smelt_diag_errors(&d), 0);
	next:
		free(ja);
		free(y);
		free(jb);
		free(jc);
		smelt_recipe_free(a);
		smelt_recipe_free(b);
		smelt_recipe_free(c);
		smelt_diag_release(&d);
	}
}

TEST(duplicate_keys_keep_last)
{
	struct smelt_diag d = {0};
	struct smelt_recipe *r = parse("merge_method: ties\nmodels:\n  - model: a\n"
	                               "merge_method: task_arithmetic\nbase_model: b\n"
	                               "models:\n  - model: c\n    parameters: {weight: 1}\n",
	                               &d);

	if (!r)
		return;
	CHECK(strcmp(r->merge_method, "task_arithmetic") == 0);
	CHECK(r->slices[0].n_sources == 1 && strcmp(r->slices[0].sources[0].model, "c") == 0);
	CHECK(diag_has(&d, SMELT_DIAG_WARNING, "merge_method: duplicate key", NULL));
	CHECK(diag_has(&d, SMELT_DIAG_WARNING, "models: duplicate key", NULL));
	CHECK_EQ_INT(smelt_diag_errors(&d), 0);
	smelt_recipe_free(r);
	smelt_diag_release(&d);
}

TEST(structural_errors_all_reported)
{
	struct smelt_diag d = {0};
	struct smelt_recipe *r =
	    parse("merge_method: passthrough\nmodules: {}\n"
	          "tokenzer_source: union\n"
	          "slices:\n  - sources:\n      - model: a\n        layer_range: [8, 4]\n"
	          "      - model: b\n        layer_range: [0, 2]\n"
	          "  - sources:\n      - model: c\n"
	          "dtype: int64\nout_dtype: bfloat61\n"
	          "tokenizer:\n  source: union\n  tokens: {}\n"
	          "chat_template: chatlm\nembed_policy: median\n",
	          &d);
	char *txt;

	if (!r)
		return;
	smelt_recipe_validate(r, false, &d);
	txt = smelt_diag_format(&d);
	CHECK(diag_has(&d, SMELT_DIAG_ERROR, "modules", "not supported"));
	CHECK(
	    diag_has(&d, SMELT_DIAG_WARNING, "tokenzer_source", "did you mean 'tokenizer_source'"));
	CHECK(
	    diag_has(&d, SMELT_DIAG_ERROR, "slices[0].sources[0].layer_range", "end is exclusive"));
	CHECK(diag_has(&d, SMELT_DIAG_ERROR, "slices[1].sources[0].layer_range", "missing"));
	CHECK(diag_has(&d, SMELT_DIAG_ERROR, "dtype", "int64"));
	CHECK(diag_has(&d, SMELT_DIAG_ERROR, "out_dtype", "did you mean 'bfloat16'"));
	CHECK(diag_has(&d, SMELT_DIAG_ERROR, "tokenizer.tokens", "tokenizer"));
	CHECK(diag_has(&d, SMELT_DIAG_ERROR, "tokenizer.source", "union"));
	CHECK(diag_has(&d, SMELT_DIAG_ERROR, "chat_template", "did you mean 'chatml'"));
	CHECK(diag_has(&d, SMELT_DIAG_ERROR, "embed_policy", "median"));
	CHECK_STR_CONTAINS(txt, "recipe.yml: modules: ");
	/* errors come first */
	CHECK(txt && strstr(txt, "warning:") > strstr(txt, "dtype"));
	free(txt);
	smelt_recipe_free(r);
	smelt_diag_release(&d);
}

TEST(models_entries)
{
	struct smelt_diag d = {0};
	struct smelt_recipe *r = parse("merge_method: linear\nmodels:\n  - just/a-name\n"
	                               "  - model: org/m+org/lora\n    parameters: {weight: 1}\n"
	                               "  - model: org/with space -\n    layer_range: [0, 2]\n",
	                               &d);

	if (!r)
		return;
	smelt_recipe_validate(r, false, &d);
	CHECK(diag_has(&d, SMELT_DIAG_ERROR, "models[0]", "- model: just/a-name"));
	CHECK(diag_has(&d, SMELT_DIAG_ERROR, "models[1].model", "LoRA"));
	CHECK(diag_has(&d, SMELT_DIAG_WARNING, "models[2].model", "whitespace"));
	CHECK(diag_has(&d, SMELT_DIAG_WARNING, "models[2].layer_range", "unknown key"));
	CHECK(smelt_model_ref_is_lora("a+b") && !smelt_model_ref_is_lora("org/a@main"));
	smelt_recipe_free(r);
	smelt_diag_release(&d);
}

TEST(home_expansion)
{
	char *a, *b;

	setenv("HOME", "/home/u", 1);
	a = smelt_model_ref_expand("~/models/x");
	b = smelt_model_ref_expand("~bob/x");
	CHECK(a && strcmp(a, "/home/u/models/x") == 0);
	CHECK(b && strcmp(b, "~bob/x") == 0);
	free(a);
	free(b);
}

TEST(anchors_and_merge_keys)
{
	struct smelt_diag d = {0};
	struct smelt_recipe *r =
	    parse("merge_method: ties\nbase_model: b\n"
	          "models:\n"
	          "  - model: x\n    parameters: &p {weight: 0.5, density: 0.4}\n"
	          "  - model: y\n    parameters:\n      <<: *p\n      weight: 0.7\n"
	          "  - model: z\n    parameters: *p\n",
	          &d);
	bool found;

	if (!r)
		return;
	CHECK_NEAR(res(r, 0, 1, "weight", "w", 0, &found), 0.7, 0);
	CHECK_NEAR(res(r, 0, 1, "density", "w", 0, &found), 0.4, 0);
	CHECK_NEAR(res(r, 0, 2, "weight", "w", 0, &found), 0.5, 0);
	CHECK_EQ_INT(r->slices[0].sources[1].params.n, 2);
	CHECK_EQ_INT(d.n, 0);
	smelt_recipe_free(r);
	smelt_diag_release(&d);
}

TEST(syntax_errors)
{
	struct smelt_diag d = {0};
	struct smelt_recipe *r = NULL;
	const char *bad_yaml = "merge_method: ties\nmodels:\n  - model: a\n   parameters: x\n";
	const char *two = "merge_method: ties\n---\nmerge_method: linear\n";
	const char *bad_json = "{\"merge_method\": \"ties\",\n \"models\": [}";

	CHECK(smelt_recipe_parse(bad_yaml, strlen(bad_yaml), "a.yml", &r, &d) == SMELT_EFORMAT);
	CHECK(!r && diag_has(&d, SMELT_DIAG_ERROR, "YAML syntax error at line", NULL));
	CHECK(smelt_recipe_parse(two, strlen(two), "a.yml", &r, &d) == SMELT_EFORMAT);
	CHECK(diag_has(&d, SMELT_DIAG_ERROR, "second YAML document", NULL));
	CHECK(smelt_recipe_parse(bad_json, strlen(bad_json), "a.json", &r, &d) == SMELT_EFORMAT);
	CHECK(diag_has(&d, SMELT_DIAG_ERROR, "JSON syntax error at line 2", NULL));
	CHECK(smelt_recipe_parse("{\"merge_method\": \"a\xff\"}", 21, "a.json", &r, &d) ==
	      SMELT_EFORMAT);
	CHECK(diag_has(&d, SMELT_DIAG_ERROR, "not valid UTF-8", NULL));
	CHECK(smelt_recipe_parse("[1, 2]", 6, "a.yml", &r, &d) == SMELT_EINVAL);
	CHECK(smelt_recipe_parse("models: []", 10, "a.yml", &r, &d) == SMELT_EINVAL);
	CHECK(diag_has(&d, SMELT_DIAG_ERROR, "merge_method", "missing"));
	CHECK(smelt_recipe_load("/nonexistent/recipe.yml", &r, &d) == SMELT_ENOTFOUND);
	smelt_diag_release(&d);
}

TEST(method_checks)
{
	struct smelt_diag d = {0};
	struct smelt_recipe *r;

	if (!have("ties") || !have("dare_ties"))
		return;
	r = parse("merge_method: dare-ties\nbase_model: b\nmodels: [{model: a}]\n", &d);
	if (r)
		CHECK(smelt_recipe_validate(r, false, &d) == SMELT_EINVAL);
	CHECK(diag_has(&d, SMELT_DIAG_ERROR, "merge_method", "did you mean 'dare_ties'"));
	smelt_recipe_free(r);
	smelt_diag_release(&d);

	memset(&d, 0, sizeof(d));
	r = parse("merge_method: ties\nbase_model: b\nmodels:\n  - model: b\n"
	          "  - model: a\n    parameters: {weight: 1, density: 1.5}\n  - model: c\n"
	          "parameters:\n  nomalize: true\n  int8_mask: 1\n  lambda: yes\n",
	          &d);
	if (r) {
		char *txt;

		CHECK(smelt_recipe_validate(r, false, &d) == SMELT_EINVAL);
		txt = smelt_diag_format(&d);
		CHECK_STR_CONTAINS(txt, "recipe.yml: models[2].parameters.weight: required by ties "
		                        "but not set");
		CHECK(!diag_has(&d, 0, "models[0].parameters.weight", NULL)); /* base exempt */
		CHECK(diag_has(&d, SMELT_DIAG_WARNING, "parameters.nomalize",
		               "did you mean 'normalize'"));
		CHECK(diag_has(&d, SMELT_DIAG_ERROR, "parameters.lambda", "bool"));
		if (smelt_method_find("ties")
		        ->params[smelt_method_param(smelt_method_find("ties"), "density")]
		        .max < 1.5)
			CHECK(diag_has(&d, SMELT_DIAG_ERROR, "models[1].parameters.density",
			               "outside"));
		free(txt);
		CHECK(r->method == smelt_method_find("ties"));
	}
	smelt_recipe_free(r);
	smelt_diag_release(&d);

	/* --strict turns unknown keys and parameters into errors */
	memset(&d, 0, sizeof(d));
	r = parse("merge_method: ties\nbase_model: b\nmodels:\n  - model: a\n"
	          "    parameters: {weight: 1, densty: 0.5}\nname: x\n",
	          &d);
	if (r) {
		CHECK(smelt_recipe_validate(r, false, &d) == 0);
		CHECK(smelt_recipe_validate(r, true, &d) == SMELT_EINVAL);
		CHECK(diag_has(&d, SMELT_DIAG_ERROR, "models[0].parameters.densty", "density"));
		CHECK(diag_has(&d, SMELT_DIAG_ERROR, "name", "unknown key"));
	}
	smelt_recipe_free(r);
	smelt_diag_release(&d);
}

TEST(base_and_counts)
{
	struct smelt_diag d = {0};
	struct smelt_recipe *r;

	if (!have("slerp") || !have("model_stock"))
		return;
	r = parse("merge_method: slerp\nbase_model: C\nslices:\n  - sources:\n"
	          "      - model: A\n        layer_range: [0, 4]\n"
	          "      - model: B\n        layer_range: [0, 4]\nparameters: {t: 0.5}\n",
	          &d);
	if (r)
		CHECK(smelt_recipe_validate(r, false, &d) == SMELT_EINVAL);
	CHECK(diag_has(&d, SMELT_DIAG_ERROR, "slices[0]", "not one of this slice's sources"));
	smelt_recipe_free(r);
	smelt_diag_release(&d);

	memset(&d, 0, sizeof(d));
	r = parse("merge_method: model_stock\nbase_model: b\nmodels: [{model: a}]\n", &d);
	if (r)
		CHECK(smelt_recipe_validate(r, false, &d) == SMELT_EINVAL);
	CHECK(diag_has(&d, SMELT_DIAG_ERROR, "models", "at least"));
	smelt_recipe_free(r);
	smelt_diag_release(&d);

	memset(&d, 0, sizeof(d));
	r = parse("merge_method: slerp\nmodels: [{model: a}, {model: b}]\n", &d);
	if (r)
		CHECK(smelt_recipe_validate(r, false, &d) == SMELT_EINVAL);
	CHECK(diag_has(&d, SMELT_DIAG_ERROR, "base_model", "needs a base_model"));
	CHECK(diag_has(&d, SMELT_DIAG_ERROR, "parameters.t", "required by slerp"));
	smelt_recipe_free(r);
	smelt_diag_release(&d);
}

/* Every corpus recipe, damaged in many ways (truncated, bytes replaced by
 * YAML punctuation): parse, validate, resolve and write must never crash or
 * leak (ASan/UBSan builds), whatever they report. */
TEST(damaged_recipes_are_handled)
{
	static const char punct[] = ":-[]{}\n #'\"0.,&*!|>~\t";
	static const char *const params[] = {"weight", "t", "density", "normalize", "lambda"};
	static const char *const tensors[] = {
	    "model.embed_tokens.weight", "model.layers.3.self_attn.q_proj.weight",
	    "model.layers.3.mlp.up_proj.weight", "lm_head.weight"};
	char dir[1024], path[1400];
	unsigned long long rng = 88172645463325252ull;
	int parsed = 0;
	struct dirent *de;
	DIR *dp;

	check_shared("testdata/mergekit-recipes", dir, sizeof(dir));
	dp = opendir(dir);
	CHECK(dp != NULL);
	while (dp && (de = readdir(dp))) {
		size_t nl = strlen(de->d_name);
		FILE *fp;
		char *text, *json;
		long len;

		if (nl < 5 || strcmp(de->d_name + nl - 4, ".yml") != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		fp = fopen(path, "rb");
		if (!fp)
			continue;
		fseek(fp, 0, SEEK_END);
		len = ftell(fp);
		fseek(fp, 0, SEEK_SET);
		text = malloc((size_t)len + 1);
		if (!text || fread(text, 1, (size_t)len, fp) != (size_t)len) {
			free(text);
			fclose(fp);
			continue;
		}
		fclose(fp);
		{
			/* every third damaged copy starts from the JSON rendering */
			struct smelt_recipe *orig = NULL;
			struct smelt_diag od = {0};

			smelt_recipe_parse(text, (size_t)len, "orig.yml", &orig, &od);
			json = orig ? smelt_recipe_to_json(orig) : NULL;
			smelt_recipe_free(orig);
			smelt_diag_release(&od);
		}
		for (int k = 0; k < 60; k++) {
			const char *src = k % 3 == 0 && json ? json : text;
			size_t n = src == text ? (size_t)len : strlen(json);
			char *m = malloc(n + 1);
			struct smelt_recipe *r = NULL;
			struct smelt_diag d = {0};

			memcpy(m, src, n);
			for (int edits = 0; edits < 1 + k % 4 && n; edits++) {
				rng ^= rng << 13;
				rng ^= rng >> 7;
				rng ^= rng << 17;
				if (k % 6 == 5)
					n = rng % n;
				else
					m[rng % n] = punct[(rng >> 20) % (sizeof(punct) - 1)];
			}
			if (smelt_recipe_parse(m, n, "damaged.yml", &r, &d) == 0 && r) {
				char *a, *b, *c;

				parsed++;
				smelt_recipe_validate(r, k % 2, &d);
				for (size_t s = 0; s < r->n_slices; s++)
					for (size_t p = 0; p < 5; p++)
						for (size_t t = 0; t < 4; t++) {
							double v;
							bool found;

							smelt_recipe_resolve(
							    r, s, (int)t - 1, params[p], tensors[t],
							    t / 3.0, &v, &found, NULL);
							smelt_recipe_find(r, s, 0, params[p],
							                  tensors[t]);
						}
				a = smelt_recipe_to_json(r);
				b = smelt_recipe_to_yaml(r);
				c = smelt_diag_format(&d);
				CHECK(a && b && c);
				free(a);
				free(b);
				free(c);
			}
			smelt_recipe_free(r);
			smelt_diag_release(&d);
			free(m);
		}
		free(text);
		free(json);
	}
	if (dp)
		closedir(dp);
	CHECK(parsed > 300);
}

int main(void)
{
	RUN(yaml11_scalar_typing);
	RUN(quoted_scalars_are_strings);
	RUN(gradient_worked_example);
	RUN(filters_with_gradients);
	RUN(precedence_and_fallthrough);
	RUN(step_list_of_bools_and_strings);
	RUN(json_matches_yaml);
	RUN(writers_round_trip);
	RUN(duplicate_keys_keep_last);
	RUN(structural_errors_all_reported);
	RUN(models_entries);
	RUN(home_expansion);
	RUN(anchors_and_merge_keys);
	RUN(syntax_errors);
	RUN(method_checks);
	RUN(base_and_counts);
	RUN(damaged_recipes_are_handled);
	return check_summary();
}

/*
 * recipe.h: merge recipes (mergekit YAML or JSON), parsed into one tree,
 * validated against the method registry, and resolved per tensor.
 *
 * Owned by the recipe module (engine/recipe.c, recipe_yaml.c, recipe_check.c,
 * recipe_param.c, recipe_write.c; private header engine/recipe_int.h). The
 * planner, the CLI and the TUI read the tree; only this module allocates or
 * frees it. docs/recipes.md describes the format for users.
 *
 * Invariants of a parsed struct smelt_recipe:
 *   - every string is malloc'd and owned by the tree; NULL means "absent";
 *   - exactly one of `models:` / `slices:` was given; `models:` became ONE
 *     slice (uses_slices = false) whose sources have has_range = false;
 *   - a models[i] entry is slices[0].sources[i] (same order, base included
 *     when listed), so models[i].parameters is the source level of the
 *     precedence;
 *   - model_refs lists each distinct model reference once, in order of first
 *     appearance in the text, the base model included (references are
 *     compared as written, like mergekit: "/a/b" and "//a/b" are two
 *     models); a tokenizer_source model is not in the list;
 *   - a parameter value keeps the shape it was written in (scalar, gradient,
 *     step list, conditionals) and its key path for messages;
 *   - YAML 1.1 scalars are typed as PyYAML (mergekit) types them; a numeric
 *     string such as `1e-5` (no dot, so a string in YAML 1.1) stays a STRING
 *     in the tree and is read as a number when resolved (as pydantic does),
 *     with a validation warning.
 *
 * Parsing never fails on semantic problems: it records structural problems
 * (wrong types, missing keys, unknown keys, duplicate keys) in the diag and
 * still returns the tree when it could be built. smelt_recipe_validate()
 * adds the method-aware checks. A diag collects every problem, not just the
 * first.
 */
#ifndef SMELT_RECIPE_H
#define SMELT_RECIPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "smelt/dtype.h"
#include "smelt/err.h"

struct smelt_method;

enum smelt_pv_kind {
	SMELT_PV_NULL,
	SMELT_PV_NUMBER,
	SMELT_PV_BOOL,
	SMELT_PV_STRING,
	SMELT_PV_LIST,
	SMELT_PV_CONDS
};

/* A parameter value as written. */
struct smelt_pvalue {
	enum smelt_pv_kind kind;
	double num; /* NUMBER */
	bool b;     /* BOOL */
	char *str;  /* STRING */
	/* LIST: gradient anchors (numbers), step values (bools/strings) or a
	 * string list; CONDS: conditionals, each item has filter + value. */
	struct smelt_pvalue *items;
	size_t n_items;
	/* CONDS item: NULL = no filter (matches all); "*" matches all; else a
	 * substring of the tensor name. */
	char *filter;
	struct smelt_pvalue *value; /* CONDS item's value (scalar or LIST) */
	char *path;                 /* key path for messages: "models[1].parameters.weight" */
};

/* A `parameters:` mapping, in the order written. */
struct smelt_pset {
	size_t n;
	char **names;
	struct smelt_pvalue *values;
	char *path; /* "models[1].parameters", NULL when the mapping was absent */
};

struct smelt_source {
	char *model;
	bool has_range;
	int layer_start, layer_end; /* end-exclusive */
	struct smelt_pset params;
	char *path; /* "models[1]" or "slices[0].sources[1]" */
};

struct smelt_slice {
	struct smelt_source *sources;
	size_t n_sources;
	struct smelt_pset params;
	char *base_model; /* slice-level base_model, NULL if none */
	char *path;       /* "slices[0]" (or "models" for the models: form) */
};

struct smelt_recipe {
	char *merge_method;
	char *base_model; /* NULL if none */
	bool uses_slices; /* slices: syntax; otherwise models: became ONE slice whose sources
	                     have has_range=false */
	struct smelt_slice *slices;
	size_t n_slices;
	struct smelt_pset params; /* top-level parameters */
	bool has_dtype, has_out_dtype;
	enum smelt_dtype dtype, out_dtype; /* dtype = compute dtype */
	char *tokenizer_source;            /* NULL | "base" | "union" | model ref */
	bool has_tokenizer_block;          /* `tokenizer:` mapping present */
	char *chat_template;               /* NULL | "auto" | built-in name | literal jinja */
	bool has_seed;
	uint64_t seed;
	char *embed_policy; /* NULL (= "strict") | "strict" | "common" | "mean": smelt's key for
	                       differing vocab sizes */
	char **model_refs;
	size_t n_model_refs; /* distinct references, order of first appearance, base included */
	char *source_text;   /* the original text, verbatim, for the model card */
	bool source_is_yaml;
	char *source_name; /* file name given to parse/load (messages), may be NULL */

	/* Set by smelt_recipe_validate() so resolution honours parameter
	 * scope and aliases; NULL before validation (then a name is matched
	 * literally and every level applies). Points into the registry. */
	const struct smelt_method *method;
};

enum { SMELT_DIAG_WARNING = 1, SMELT_DIAG_ERROR = 2 };

struct smelt_diag_item {
	int severity; /* SMELT_DIAG_ERROR=2, SMELT_DIAG_WARNING=1 */
	char *path;   /* key path ("models[1].parameters.weight"), "" for the whole recipe */
	char *msg;
	bool strict; /* an unknown key/parameter: validate(strict=true) makes it an error */
};

struct smelt_diag {
	struct smelt_diag_item *items;
	size_t n;
	char *file; /* prefix for formatted lines ("recipe.yml"), may be NULL */
};

void smelt_diag_release(struct smelt_diag *d);
size_t smelt_diag_errors(const struct smelt_diag *d);
size_t smelt_diag_warnings(const struct smelt_diag *d);
/* Add one item (path may be NULL or ""). Allocation failures are dropped
 * silently: a diag is best effort and never fails its caller. */
void smelt_diag_add(struct smelt_diag *d, int severity, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* "<file>: <path>: <msg>" lines (file and path omitted when empty), errors
 * first, each ending in '\n', into a malloc'd string ("" when empty; NULL
 * only when out of memory). */
char *smelt_diag_format(const struct smelt_diag *d);

/* Parse a recipe: JSON if the first non-space char is '{', else YAML. On
 * success (0) *out owns a tree; structural problems are in diag and the call
 * still returns 0 when a tree could be built, except for problems that
 * leave nothing to merge (no merge_method, not a mapping, syntax error):
 * then SMELT_EINVAL / SMELT_EFORMAT and *out = NULL. */
int smelt_recipe_parse(const char *text, size_t len, const char *what, struct smelt_recipe **out,
                       struct smelt_diag *diag);
int smelt_recipe_load(const char *path, struct smelt_recipe **out, struct smelt_diag *diag);

/* Method-aware checks, every problem added to diag. Returns SMELT_EINVAL if
 * diag holds any error afterwards (including errors left by parsing),
 * else 0. With strict, warnings about unknown keys/parameters become errors.
 * Records the method in r->method (r is otherwise unchanged). */
int smelt_recipe_validate(const struct smelt_recipe *r, bool strict, struct smelt_diag *diag);
void smelt_recipe_free(struct smelt_recipe *r);

/* Resolution for one tensor, mergekit precedence: slice source params
 * (per-model) > slice params > top-level params > default. For GLOBAL-scope
 * params pass source = -1 and the OUTPUT tensor name; for MODEL-scope params
 * pass the source index and that model's INPUT tensor name. t = position in
 * the slice (i/(L-1), 1 if L==1; 0 for embeddings / final norm / lm_head).
 * Gradients interpolate piecewise-linearly (methods.md §2); lists holding a
 * bool or a non-numeric string are step functions; CONDS: first match wins, no match falls through to the
 * next level. Bools resolve to 0/1, numeric strings to their number.
 * *found=false when nothing sets it (the caller applies the method default).
 * Fails (SMELT_EINVAL) on a value that is not a number (a non-numeric
 * string, a string list), naming its key path. */
int smelt_recipe_resolve(const struct smelt_recipe *r, size_t slice, int source, const char *param,
                         const char *tensor_name, double t, double *value, bool *found,
                         struct smelt_err *err);
/* The raw value that applies (for list-typed params like WIDEN's `exclude`
 * regex list), NULL if unset. CONDS are resolved against tensor_name (may be
 * NULL: then only unfiltered / "*" conditionals match). */
const struct smelt_pvalue *smelt_recipe_find(const struct smelt_recipe *r, size_t slice, int source,
                                             const char *param, const char *tensor_name);

/* Evaluate one value at position t for tensor_name (no precedence). */
int smelt_pvalue_eval(const struct smelt_pvalue *v, const char *tensor_name, double t,
                      double *value, bool *found, struct smelt_err *err);

/* Read a scalar as a number the way pydantic coerces it into a float:
 * NUMBER, BOOL (0/1), or a STRING holding a number ("1e-5", " 2 ").
 * Returns false otherwise. */
bool smelt_pvalue_number(const struct smelt_pvalue *v, double *out);

/* Position of layer i (0-based within a slice of L layers): i/(L-1), 1 if L == 1. */
double smelt_recipe_layer_t(int i, int L);

/* Number of layers one slice covers (the common length of its sources'
 * ranges), or -1 when its sources have no layer_range (models: form, where
 * the planner uses the checkpoint's layer count). */
int smelt_slice_layers(const struct smelt_slice *s);

/* True if ref is a `model+lora` reference (LoRA adapters are not supported). */
bool smelt_model_ref_is_lora(const char *ref);

/* A model reference with a leading "~/" (or a lone "~") expanded against
 * $HOME, malloc'd; other references are copied unchanged. mergekit does not
 * expand "~" (issue #40); smelt does, for local paths only. */
char *smelt_model_ref_expand(const char *ref);

char *smelt_recipe_to_json(const struct smelt_recipe *r); /* malloc'd, pretty */
char *smelt_recipe_to_yaml(const struct smelt_recipe *r); /* malloc'd, mergekit style, numeric
                                                             lists in flow style */

#endif

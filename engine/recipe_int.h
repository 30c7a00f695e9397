/*
 * recipe_int.h: private to the recipe module (recipe*.c).
 *
 * Both front ends (YAML via libyaml, JSON via cJSON) first build the same
 * small document tree, struct rnode, with scalars already typed (YAML 1.1
 * rules as PyYAML applies them, JSON types as written). recipe.c then turns
 * one rnode tree into a struct smelt_recipe, so both syntaxes share every
 * rule about keys, nesting and messages. A mapping keeps every key in order,
 * duplicates included; the builder uses the last one (as PyYAML does) and
 * warns about the others.
 */
#ifndef SMELT_RECIPE_INT_H
#define SMELT_RECIPE_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "smelt/recipe.h"

enum rn_kind { RN_NULL, RN_BOOL, RN_NUM, RN_STR, RN_SEQ, RN_MAP };

struct rnode {
	enum rn_kind kind;
	bool b;
	double num;
	bool is_int;          /* RN_NUM written as an integer */
	char *str;            /* RN_STR value; for other scalars the text as written */
	struct rnode **items; /* RN_SEQ items, RN_MAP values */
	char **keys;          /* RN_MAP keys (scalar text), parallel to items */
	size_t n;
	int line; /* 1-based line in the source text, 0 if unknown */
};

void rnode_free(struct rnode *n);
struct rnode *rnode_new(enum rn_kind kind, int line);
/* Append (key may be NULL for sequences); takes ownership of child. */
int rnode_append(struct rnode *parent, const char *key, struct rnode *child);

/* Front ends. On a syntax error: SMELT_EFORMAT with one diag error naming
 * the line; on success *out is the document root. */
int recipe_yaml_read(const char *text, size_t len, struct rnode **out, struct smelt_diag *diag);
int recipe_json_read(const char *text, size_t len, struct rnode **out, struct smelt_diag *diag);

/* Type a plain (unquoted, untagged) YAML scalar the way PyYAML's YAML 1.1
 * resolver does; fills kind/b/num/is_int of n (RN_STR when nothing matches). */
void recipe_yaml11_resolve(const char *s, struct rnode *n);

/* Helpers shared by the module. */
char *recipe_strdup(const char *s);
char *recipe_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
size_t recipe_edit_distance(const char *a, const char *b);
/* The closest candidate (edit distance <= max(2, len/3)), or NULL. */
const char *recipe_suggest(const char *word, const char *const *cands, size_t n);

/* Find a parameter in a set by canonical name or any alias of the method's
 * table entry (the method may be NULL: literal match). -1 if absent; when
 * the set holds several spellings the last written wins. */
int recipe_pset_find(const struct smelt_pset *ps, const struct smelt_method *m, const char *param);

#endif

/*
 * cmd_methods.c: `smelt methods [NAME]` prints the merge-method registry.
 *
 * The engine's method table is the single source of truth (names, summaries,
 * help, parameters, defaults, ranges, base rule, model limits, paper); this
 * file only formats it.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "smelt/method.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: smelt methods [NAME]\n\n"
	           "Without NAME, list every merge method with its parameters and defaults.\n"
	           "With NAME, print that method's formula, parameters, base and model rules.\n");
}

/* A parameter's default as a recipe would write it. */
static void format_default(const struct smelt_param_def *p, char *buf, size_t size)
{
	if (p->required)
		snprintf(buf, size, "required");
	else if (p->type == SMELT_PARAM_BOOL)
		snprintf(buf, size, "%s", p->def != 0 ? "true" : "false");
	else if (p->type == SMELT_PARAM_REGEX_LIST)
		snprintf(buf, size, "[]");
	else if (p->type == SMELT_PARAM_INT)
		snprintf(buf, size, "%.0f", p->def);
	else
		snprintf(buf, size, "%g", p->def);
}

static void format_bound(double v, char *buf, size_t size)
{
	if (isinf(v))
		snprintf(buf, size, "%sinf", v < 0 ? "-" : "");
	else
		snprintf(buf, size, "%g", v);
}

static void format_range(const struct smelt_param_def *p, char *buf, size_t size)
{
	char lo[32], hi[32];

	if (p->type == SMELT_PARAM_BOOL) {
		snprintf(buf, size, "true/false");
		return;
	}
	if (p->type == SMELT_PARAM_REGEX_LIST) {
		snprintf(buf, size, "list of regexes");
		return;
	}
	if (isinf(p->min) && isinf(p->max)) {
		snprintf(buf, size, "%s",
		         p->type == SMELT_PARAM_INT ? "any integer" : "any number");
		return;
	}
	format_bound(p->min, lo, sizeof(lo));
	format_bound(p->max, hi, sizeof(hi));
	snprintf(buf, size, "%s in [%s, %s]", p->type == SMELT_PARAM_INT ? "integer" : "number", lo,
	         hi);
}

static const char *scope_name(const struct smelt_param_def *p)
{
	return p->scope == SMELT_SCOPE_MODEL ? "per model" : "global";
}

static const char *base_rule(enum smelt_base_rule b)
{
	switch (b) {
	case SMELT_BASE_REQUIRED: return "required";
	case SMELT_BASE_OPTIONAL: return "optional (used when given)";
	case SMELT_BASE_AS_MODEL: return "not needed; a listed base is merged as one more model";
	case SMELT_BASE_NONE: return "not used";
	}
	return "?";
}

static void format_models(const struct smelt_method *m, char *buf, size_t size)
{
	if (m->max_models == 0)
		snprintf(buf, size, "%d or more", m->min_models);
	else if (m->max_models == m->min_models)
		snprintf(buf, size, "exactly %d", m->min_models);
	else
		snprintf(buf, size, "%d to %d", m->min_models, m->max_models);
}

/* One line per method plus an indented line of parameters. */
static void list_all(void)
{
	size_t n = smelt_method_count();

	printf("%zu merge methods (smelt methods NAME for details):\n", n);
	for (size_t i = 0; i < n; i++) {
		const struct smelt_method *m = smelt_method_at(i);
		int col = 6;

		printf("\n  %-17s %s\n", m->name, m->summary);
		printf("      ");
		if (m->n_params == 0)
			printf("no parameters");
		for (int k = 0; k < m->n_params; k++) {
			const struct smelt_param_def *p = &m->params[k];
			char def[48], item[160];
			int len;

			format_default(p, def, sizeof(def));
			len = snprintf(item, sizeof(item), "%s%s%s%s%s", k ? "  " : "", p->name,
			               p->required ? " (" : "=", p->required ? "required" : def,
			               p->required ? ")" : "");
			if (p->scope == SMELT_SCOPE_MODEL || p->unused)
				len +=
				    snprintf(item + len, sizeof(item) - (size_t)len, " [%s%s%s]",
				             p->scope == SMELT_SCOPE_MODEL ? "per model" : "",
				             p->scope == SMELT_SCOPE_MODEL && p->unused ? ", " : "",
				             p->unused ? "no effect" : "");
			if (col + len > 96 && k) {
				printf("\n      ");
				col = 6;
				memmove(item, item + 2, strlen(item + 2) + 1);
				len -= 2;
			}
			fputs(item, stdout);
			col += len;
		}
		printf("\n");
	}
}

/* Print text indented by `ind` spaces on every line. */
static void indented(const char *text, int ind)
{
	while (*text) {
		const char *nl = strchr(text, '\n');
		int len = nl ? (int)(nl - text) : (int)strlen(text);

		printf("%*s%.*s\n", ind, "", len, text);
		text += len + (nl ? 1 : 0);
	}
}

static void show(const struct smelt_method *m)
{
	char models[64];

	format_models(m, models, sizeof(models));
	printf("%s: %s\n\n", m->name, m->summary);
	indented(m->help, 2);
	printf("\n");
	printf("  base model:  %s\n", base_rule(m->base));
	printf("  models:      %s (base excluded)\n", models);
	if (m->flags & SMELT_M_RANDOM)
		printf("  random:      yes: results depend on the merge seed\n");
	if (m->paper)
		printf("  paper:       %s\n", m->paper);
	printf("\n");
	if (m->n_params == 0) {
		printf("  no parameters\n");
		return;
	}
	printf("  parameters:\n");
	for (int k = 0; k < m->n_params; k++) {
		const struct smelt_param_def *p = &m->params[k];
		char def[48], range[96];

		format_default(p, def, sizeof(def));
		format_range(p, range, sizeof(range));
		printf("    %-20s %-9s  %s%s, %s\n", p->name, scope_name(p),
		       p->required ? "" : "default ", def, range);
		if (p->aliases)
			printf("    %-20s also accepted as: %s\n", "", p->aliases);
		printf("    %-20s %s%s\n", "", p->unused ? "(no effect) " : "", p->help);
	}
}

/* Edit distance, '-' and '_' counted as equal (dare-ties -> dare_ties). */
static size_t distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), *row = calloc(lb + 1, sizeof(size_t)), d;

	if (!row)
		return (size_t)-1;
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t diag = row[0];

		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			char ca = a[i - 1] == '-' ? '_' : a[i - 1],
			     cb = b[j - 1] == '-' ? '_' : b[j - 1];
			size_t sub = diag + (ca != cb), up = row[j] + 1, left = row[j - 1] + 1;
			size_t best = sub < up ? sub : up;

			diag = row[j];
			row[j] = best < left ? best : left;
		}
	}
	d = row[lb];
	free(row);
	return d;
}

static const struct smelt_method *closest(const char *name)
{
	const struct smelt_method *best = NULL;
	size_t best_d = (size_t)-1, limit = strlen(name) / 3 + 2;

	for (size_t i = 0; i < smelt_method_count(); i++) {
		const struct smelt_method *m = smelt_method_at(i);
		size_t d = distance(name, m->name);

		if (d < best_d) {
			best_d = d;
			best = m;
		}
	}
	return best_d <= limit ? best : NULL;
}

int cmd_methods(int argc, char **argv)
{
	const struct smelt_method *m;

	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		usage(stdout);
		return 0;
	}
	if (argc > 2 || (argc == 2 && argv[1][0] == '-')) {
		usage(stderr);
		return 2;
	}
	if (argc < 2) {
		list_all();
		return 0;
	}
	m = smelt_method_find(argv[1]);
	if (!m) {
		const struct smelt_method *near = closest(argv[1]);

		if (near)
			cli_error("unknown merge method '%s' (did you mean '%s'?); "
			          "`smelt methods` lists them all",
			          argv[1], near->name);
		else
			cli_error("unknown merge method '%s'; `smelt methods` lists them all",
			          argv[1]);
		return 1;
	}
	show(m);
	return 0;
}

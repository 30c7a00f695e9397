/*
 * registry.c: the table of merge methods, in display order.
 *
 * Each method lives in its own file under engine/methods/ and exports one
 * `const struct smelt_method smelt_method_<name>`.
 */
#include <string.h>

#include "smelt/method.h"

#define METHODS(X)                                                                                 \
	X(widen)                                                                                   \
	X(linear)                                                                                  \
	X(task_arithmetic)                                                                         \
	X(ties)                                                                                    \
	X(dare_linear)                                                                             \
	X(dare_ties)                                                                               \
	X(breadcrumbs)                                                                             \
	X(breadcrumbs_ties)                                                                        \
	X(della)                                                                                   \
	X(della_linear)                                                                            \
	X(slerp)                                                                                   \
	X(nuslerp)                                                                                 \
	X(multislerp)                                                                              \
	X(karcher)                                                                                 \
	X(model_stock)                                                                             \
	X(nearswap)                                                                                \
	X(sce)                                                                                     \
	X(ram)                                                                                     \
	X(ramplus_tl)                                                                              \
	X(arcee_fusion)                                                                            \
	X(passthrough)

#define DECLARE(n) extern const struct smelt_method smelt_method_##n;
METHODS(DECLARE)
#undef DECLARE

#define ENTRY(n) &smelt_method_##n,
static const struct smelt_method *const all_methods[] = {METHODS(ENTRY)};
#undef ENTRY

#define N_ALL (sizeof(all_methods) / sizeof(all_methods[0]))

size_t smelt_method_count(void)
{
	size_t n = 0;

	for (size_t i = 0; i < N_ALL; i++)
		n += all_methods[i] != NULL;
	return n;
}

const struct smelt_method *smelt_method_at(size_t i)
{
	for (size_t k = 0; k < N_ALL; k++) {
		if (!all_methods[k])
			continue;
		if (i-- == 0)
			return all_methods[k];
	}
	return NULL;
}

const struct smelt_method *smelt_method_find(const char *name)
{
	for (size_t k = 0; k < N_ALL; k++)
		if (all_methods[k] && strcmp(all_methods[k]->name, name) == 0)
			return all_methods[k];
	return NULL;
}

int smelt_method_param(const struct smelt_method *m, const char *name)
{
	size_t len = strlen(name);

	for (int i = 0; i < m->n_params; i++) {
		const char *a = m->params[i].aliases;

		if (strcmp(m->params[i].name, name) == 0)
			return i;
		while (a && *a) {
			const char *end = strchr(a, ',');
			size_t alen = end ? (size_t)(end - a) : strlen(a);

			if (alen == len && strncmp(a, name, len) == 0)
				return i;
			a = end ? end + 1 : NULL;
		}
	}
	return -1;
}

/*
 * fuzz_recipe.c: libFuzzer target for the recipe front ends. Any byte string
 * goes through parse (YAML or JSON by its first character), validation (both
 * modes), resolution of a few parameters over typical tensor names, and both
 * writers; a written recipe must parse again.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smelt/recipe.h"

static void exercise(const struct smelt_recipe *r)
{
	static const char *const params[] = {"weight", "t", "density", "normalize", "exclude"};
	static const char *const tensors[] = {"model.embed_tokens.weight",
	                                      "model.layers.1.self_attn.q_proj.weight",
	                                      "model.layers.1.mlp.down_proj.weight", NULL};

	for (size_t s = 0; s < r->n_slices; s++)
		for (size_t p = 0; p < 5; p++)
			for (int t = 0; t < 4; t++) {
				double v;
				bool found;

				smelt_recipe_resolve(r, s, t - 1, params[p], tensors[t], t / 3.0,
				                     &v, &found, NULL);
				smelt_recipe_find(r, s, t - 1, params[p], tensors[t]);
			}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smelt_recipe *r = NULL, *again = NULL;
	struct smelt_diag d = {0};
	char *yaml, *json, *txt;

	if (smelt_recipe_parse((const char *)data, size, "fuzz.yml", &r, &d) == 0 && r) {
		bool clean = smelt_diag_errors(&d) == 0;

		smelt_recipe_validate(r, size & 1, &d);
		exercise(r);
		yaml = smelt_recipe_to_yaml(r);
		json = smelt_recipe_to_json(r);
		/* a recipe that parsed without errors must survive both writers */
		for (int k = 0; clean && yaml && json && k < 2; k++) {
			const char *text = k ? json : yaml;
			struct smelt_diag d2 = {0};
			char *j2 = NULL;

			if (smelt_recipe_parse(text, strlen(text), "w", &again, &d2) != 0 ||
			    smelt_diag_errors(&d2) || !(j2 = smelt_recipe_to_json(again)) ||
			    strcmp(j2, json) != 0)
				abort();
			free(j2);
			smelt_recipe_free(again);
			smelt_diag_release(&d2);
		}
		free(yaml);
		free(json);
	}
	txt = smelt_diag_format(&d);
	free(txt);
	smelt_recipe_free(r);
	smelt_diag_release(&d);
	return 0;
}

/* plan_print.c: the human-readable plan behind `smelt merge --dry-run`. */
#include <stdio.h>
#include <string.h>

#include "smelt/merge.h"
#include "smelt/progress.h"

static void print_params(const struct smelt_plan *p, const struct smelt_plan_tensor *t, FILE *f)
{
	const struct smelt_method *m = p->method;

	if (t->action == SMELT_ACT_COPY) {
		if (t->scale != 1.0)
			fprintf(f, "copy x%g from %s", t->scale, p->model_refs[t->inputs[0].model]);
		else
			fprintf(f, "copy from %s", p->model_refs[t->inputs[0].model]);
		return;
	}
	fprintf(f, "%s", m->name);
	for (int k = 0; k < m->n_params; k++) {
		const struct smelt_param_def *d = &m->params[k];

		if (d->unused || d->type == SMELT_PARAM_REGEX_LIST)
			continue;
		if (d->scope == SMELT_SCOPE_GLOBAL) {
			fprintf(f, " %s=%g", d->name, t->pg[k]);
			continue;
		}
		fprintf(f, " %s=[", d->name);
		for (int i = 0; i < t->n_inputs; i++)
			fprintf(f, "%s%g", i ? "," : "", t->pm[(size_t)i * (size_t)m->n_params + (size_t)k]);
		fprintf(f, "]");
	}
	if (t->ndim && t->merge_rows < t->shape[0])
		fprintf(f, " (rows 0..%llu merged, rest from the base)",
			(unsigned long long)t->merge_rows);
}

void smelt_plan_print(const struct smelt_plan *p, FILE *f, bool by_layer)
{
	char r[32], w[32], m[32];

	fprintf(f, "method: %s\n", p->method->name);
	for (size_t i = 0; i < p->n_models; i++)
		fprintf(f, "model %zu: %s%s (%s)\n", i, p->model_refs[i],
			(int)i == p->base ? " [base]" : "", p->models[i].path);
	fprintf(f, "output: %zu tensors, %d layers, %s, %zu shard%s\n", p->n_tensors, p->out_layers,
		smelt_dtype_name(p->out_dtype), p->n_shards, p->n_shards == 1 ? "" : "s");
	fprintf(f, "\n");
	if (by_layer) {
		int last = -2;

		for (size_t i = 0; i < p->n_tensors; i++) {
			const struct smelt_plan_tensor *t = &p->tensors[i];

			if (t->layer != last) {
				if (t->layer >= 0)
					fprintf(f, "layer %d:\n", t->layer);
				else
					fprintf(f, "outside the layers:\n");
				last = t->layer;
			}
			fprintf(f, "  %-48s ", t->name);
			print_params(p, t, f);
			fprintf(f, "\n");
		}
	} else {
		for (size_t i = 0; i < p->n_tensors; i++) {
			const struct smelt_plan_tensor *t = &p->tensors[i];

			smelt_format_bytes((double)t->read_bytes, r, sizeof(r));
			smelt_format_bytes((double)t->nbytes, w, sizeof(w));
			fprintf(f, "%-56s read %10s write %10s  ", t->name, r, w);
			print_params(p, t, f);
			fprintf(f, "\n");
		}
	}
	smelt_format_bytes((double)p->bytes_read, r, sizeof(r));
	smelt_format_bytes((double)p->bytes_written, w, sizeof(w));
	smelt_format_bytes((double)p->peak_memory, m, sizeof(m));
	fprintf(f, "\nreads %s, writes %s (disk needed), estimated peak memory %s with %d threads\n",
		r, w, m, p->threads);
}

/*
 * demo.h: the built-in synthetic demo family (owned by the checkpoint I/O
 * module).
 *
 * smelt_demo_write(dir) writes three small Llama-shaped BF16 checkpoints,
 * dir/base, dir/chat and dir/multilingual, each with model.safetensors,
 * config.json, tokenizer_config.json, generation_config.json and a README
 * saying the weights are synthetic. Output is deterministic (same bytes on
 * every run): base is Gaussian (std 0.02, norms around 1), chat adds small
 * fine-tune-like deltas (1-2% relative) everywhere, multilingual adds large
 * deltas (20-45% relative, larger in embeddings, MLPs and upper layers) and
 * rescales some input columns of the upper layers (x0.5 / x1.5), so both
 * magnitude and direction divergence stand out against chat. Every file is
 * written atomically (temporary file + rename); existing files are replaced.
 */
#ifndef SMELT_DEMO_H
#define SMELT_DEMO_H

#include "smelt/err.h"

#define SMELT_DEMO_HIDDEN 128
#define SMELT_DEMO_INTERMEDIATE 344
#define SMELT_DEMO_LAYERS 8
#define SMELT_DEMO_HEADS 4
#define SMELT_DEMO_VOCAB 512
#define SMELT_DEMO_MODELS 3

/* Model folder names, in order: "base", "chat", "multilingual". */
extern const char *const smelt_demo_models[SMELT_DEMO_MODELS];

/* Write the family under dir (created if needed, parents included). */
int smelt_demo_write(const char *dir, struct smelt_err *err);

#endif

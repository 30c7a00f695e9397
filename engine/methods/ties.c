/*
 * ties.c: TIES merging (trim, elect sign, disjoint merge), mergekit's
 * `ties` semantics. Shared engine in sparsify.c.
 */
#include "sparsify.h"

enum { P_WEIGHT, P_DENSITY, P_LAMBDA, P_NORMALIZE, P_RESCALE, P_INT8_MASK, N_PARAMS };

static const struct smelt_param_def params[N_PARAMS] = {
    [P_WEIGHT] = {"weight", SMELT_PARAM_FLOAT, SMELT_SCOPE_MODEL, true, 0, -INFINITY, INFINITY,
                  NULL, "weight of this model's trimmed task vector", false},
    [P_DENSITY] = {"density", SMELT_PARAM_FLOAT, SMELT_SCOPE_MODEL, false, 1.0, 0, INFINITY, NULL,
                   "fraction of the largest-magnitude delta entries kept (>= 1 keeps all)", false},
    [P_LAMBDA] = {"lambda", SMELT_PARAM_FLOAT, SMELT_SCOPE_GLOBAL, false, 1.0, -INFINITY, INFINITY,
                  NULL, "scale of the merged task vector", false},
    [P_NORMALIZE] = {"normalize", SMELT_PARAM_BOOL, SMELT_SCOPE_GLOBAL, false, 1, 0, 1, NULL,
                     "divide by the summed weights of the models agreeing with the sign", false},
    [P_RESCALE] = {"rescale", SMELT_PARAM_BOOL, SMELT_SCOPE_GLOBAL, false, 0, 0, 1, NULL,
                   "rescale each trimmed delta to the L1 norm of the untrimmed one", false},
    [P_INT8_MASK] = {"int8_mask", SMELT_PARAM_BOOL, SMELT_SCOPE_GLOBAL, false, 0, 0, 1, NULL,
                     "accepted for mergekit compatibility; no effect on results", true},
};

static const struct sp_gta_cfg cfg = {
    .method = "ties",
    .trim = SP_TRIM_MAGNITUDE,
    .consensus = true,
    .p_weight = P_WEIGHT,
    .p_density = P_DENSITY,
    .p_gamma = -1,
    .p_epsilon = -1,
    .p_lambda = P_LAMBDA,
    .p_normalize = P_NORMALIZE,
    .p_rescale = P_RESCALE,
};

SP_GTA_CALLBACKS(cfg)

const struct smelt_method smelt_method_ties = {
    .name = "ties",
    .summary = "TIES: trim small deltas, elect a sign per element, average the agreeing ones",
    .help = "d_i = x_i - base. Trim: keep the k = floor(density_i * n) largest |d_i| of the\n"
            "tensor (exactly k; equal magnitudes: the earlier element first), optionally\n"
            "rescaled to the untrimmed L1 norm. e_i = weight_i * trimmed d_i. Per element the\n"
            "sign s = + if sum_i e_i >= 0 else -; models whose e_i has sign s agree (zeros\n"
            "never do). y = base + lambda * sum_agree e_i / sum_agree weight_i (the division\n"
            "only with normalize; an empty agreement divides by 1). weight and density are\n"
            "per model; a base is required. density >= 1 keeps a delta whole; a density that\n"
            "keeps 0 elements of a tensor is an error.",
    .paper = "Yadav et al., TIES-Merging: Resolving Interference When Merging Models, "
             "NeurIPS 2023, arXiv:2306.01708",
    .base = SMELT_BASE_REQUIRED,
    .min_models = 1,
    .max_models = 0,
    .flags = 0,
    .params = params,
    .n_params = N_PARAMS,
    .check = gta_check,
    .setup = gta_setup,
    .stats = sp_gta_stats,
    .finish = sp_gta_finish,
    .merge = sp_gta_merge,
    .release = sp_gta_release,
};

/*
 * dare_ties.c: DARE drop-and-rescale followed by the TIES sign election,
 * mergekit's `dare_ties` semantics. Shared engine in sparsify.c.
 */
#include "sparsify.h"

enum { P_WEIGHT, P_DENSITY, P_LAMBDA, P_NORMALIZE, P_RESCALE, P_INT8_MASK, N_PARAMS };

static const struct smelt_param_def params[N_PARAMS] = {
    [P_WEIGHT] = {"weight", SMELT_PARAM_FLOAT, SMELT_SCOPE_MODEL, true, 0, -INFINITY, INFINITY,
                  NULL, "weight of this model's pruned task vector", false},
    [P_DENSITY] = {"density", SMELT_PARAM_FLOAT, SMELT_SCOPE_MODEL, false, 1.0, 0, INFINITY, NULL,
                   "probability of keeping each delta entry (>= 1 keeps all)", false},
    [P_LAMBDA] = {"lambda", SMELT_PARAM_FLOAT, SMELT_SCOPE_GLOBAL, false, 1.0, -INFINITY, INFINITY,
                  NULL, "scale of the merged task vector", false},
    [P_NORMALIZE] = {"normalize", SMELT_PARAM_BOOL, SMELT_SCOPE_GLOBAL, false, 0, 0, 1, NULL,
                     "divide by the summed weights of the models agreeing with the sign", false},
    [P_RESCALE] = {"rescale", SMELT_PARAM_BOOL, SMELT_SCOPE_GLOBAL, false, 1, 0, 1, NULL,
                   "rescale each pruned delta to the L1 norm of the unpruned one", false},
    [P_INT8_MASK] = {"int8_mask", SMELT_PARAM_BOOL, SMELT_SCOPE_GLOBAL, false, 0, 0, 1, NULL,
                     "accepted for mergekit compatibility; no effect on results", true},
};

static const struct sp_gta_cfg cfg = {
    .method = "dare_ties",
    .trim = SP_TRIM_RANDOM,
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

const struct smelt_method smelt_method_dare_ties = {
    .name = "dare_ties",
    .summary = "DARE pruning with TIES sign consensus",
    .help = "d_i = x_i - base. Each entry of d_i is kept with probability density_i (smelt's\n"
            "counter RNG), then with rescale (default) scaled to the L1 norm of d_i (skipped\n"
            "below 1e-7). e_i = weight_i * pruned d_i; per element the sign s = + if\n"
            "sum_i e_i >= 0 else -, and only models whose e_i has sign s are added.\n"
            "y = base + lambda * sum_agree e_i, divided by sum_agree weight_i when normalize\n"
            "(default off, unlike ties). weight and density are per model; a base is required.",
    .paper = "Yu et al., Language Models are Super Mario, ICML 2024, arXiv:2311.03099; with TIES "
             "(Yadav et al., arXiv:2306.01708)",
    .base = SMELT_BASE_REQUIRED,
    .min_models = 1,
    .max_models = 0,
    .flags = SMELT_M_RANDOM,
    .params = params,
    .n_params = N_PARAMS,
    .check = gta_check,
    .setup = gta_setup,
    .stats = sp_gta_stats,
    .finish = sp_gta_finish,
    .merge = sp_gta_merge,
    .release = sp_gta_release,
};

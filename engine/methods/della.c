/*
 * della.c: DELLA: magnitude-ranked random pruning with TIES sign election,
 * mergekit's `della` semantics. Shared engine in sparsify.c.
 */
#include "sparsify.h"

enum { P_WEIGHT, P_DENSITY, P_EPSILON, P_LAMBDA, P_NORMALIZE, P_RESCALE, P_INT8_MASK, N_PARAMS };

static const struct smelt_param_def params[N_PARAMS] = {
    [P_WEIGHT] = {"weight", SMELT_PARAM_FLOAT, SMELT_SCOPE_MODEL, true, 0, -INFINITY, INFINITY,
                  NULL, "weight of this model's pruned task vector", false},
    [P_DENSITY] = {"density", SMELT_PARAM_FLOAT, SMELT_SCOPE_MODEL, false, 1.0, 0, INFINITY, NULL,
                   "mean keep probability of the delta entries (>= 1 keeps all, <= 0 drops all)",
                   false},
    [P_EPSILON] = {"epsilon", SMELT_PARAM_FLOAT, SMELT_SCOPE_MODEL, false, 0.15, 0, 1, NULL,
                   "half-width of the keep probabilities around density (rank-scaled)", false},
    [P_LAMBDA] = {"lambda", SMELT_PARAM_FLOAT, SMELT_SCOPE_GLOBAL, false, 1.0, -INFINITY, INFINITY,
                  NULL, "scale of the merged task vector", false},
    [P_NORMALIZE] = {"normalize", SMELT_PARAM_BOOL, SMELT_SCOPE_GLOBAL, false, 1, 0, 1, NULL,
                     "divide by the summed weights of the models agreeing with the sign", false},
    [P_RESCALE] = {"rescale", SMELT_PARAM_BOOL, SMELT_SCOPE_GLOBAL, false, 1, 0, 1, NULL,
                   "rescale each pruned delta to the L1 norm of the unpruned one", false},
    [P_INT8_MASK] = {"int8_mask", SMELT_PARAM_BOOL, SMELT_SCOPE_GLOBAL, false, 0, 0, 1, NULL,
                     "accepted for mergekit compatibility; no effect on results", true},
};

static const struct sp_gta_cfg cfg = {
    .method = "della",
    .trim = SP_TRIM_DELLA,
    .consensus = true,
    .p_weight = P_WEIGHT,
    .p_density = P_DENSITY,
    .p_gamma = -1,
    .p_epsilon = P_EPSILON,
    .p_lambda = P_LAMBDA,
    .p_normalize = P_NORMALIZE,
    .p_rescale = P_RESCALE,
};

SP_GTA_CALLBACKS(cfg)

const struct smelt_method smelt_method_della = {
    .name = "della",
    .summary = "DELLA: keep larger deltas more often (MagPrune), rescale, TIES consensus",
    .help = "d_i = x_i - base. Per row (a 1-D tensor is one row) rank |d_i| ascending (equal\n"
            "magnitudes by column), r = rank / (cols - 1), keep each entry with probability\n"
            "p = density_i - epsilon_i + 2 * epsilon_i * r (a one-column row uses p = density).\n"
            "With rescale (default) scale to the L1 norm of d_i over the whole tensor. Then\n"
            "the TIES election on e_i = weight_i * pruned d_i and y = base + lambda *\n"
            "sum_agree e_i / sum_agree weight_i (normalize, default on). weight, density and\n"
            "epsilon are per model; a base is required; need density-epsilon > 0 and\n"
            "density+epsilon < 1 unless density >= 1 (kept whole) or <= 0 (dropped).",
    .paper = "Deep et al., DELLA-Merging: Reducing Interference in Model Merging through "
             "Magnitude-Based Sampling, arXiv:2406.11617",
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

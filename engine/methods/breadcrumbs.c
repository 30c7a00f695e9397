/*
 * breadcrumbs.c: Model Breadcrumbs: drop the largest outliers and the small tail, then task
 * arithmetic, mergekit's `breadcrumbs` semantics. Shared engine in sparsify.c.
 */
#include "sparsify.h"

enum { P_WEIGHT, P_DENSITY, P_GAMMA, P_LAMBDA, P_NORMALIZE, P_RESCALE, P_INT8_MASK, N_PARAMS };

static const struct smelt_param_def params[N_PARAMS] = {
    [P_WEIGHT] = {"weight", SMELT_PARAM_FLOAT, SMELT_SCOPE_MODEL, true, 0, -INFINITY, INFINITY,
                  NULL, "weight of this model's sparsified task vector", false},
    [P_DENSITY] = {"density", SMELT_PARAM_FLOAT, SMELT_SCOPE_MODEL, false, 1.0, 0, INFINITY, NULL,
                   "fraction of delta entries kept (>= 1 keeps all, whatever gamma)", false},
    [P_GAMMA] = {"gamma", SMELT_PARAM_FLOAT, SMELT_SCOPE_MODEL, false, 0.01, 0, 1, NULL,
                 "fraction of the largest-magnitude delta entries dropped as outliers", false},
    [P_LAMBDA] = {"lambda", SMELT_PARAM_FLOAT, SMELT_SCOPE_GLOBAL, false, 1.0, -INFINITY, INFINITY,
                  NULL, "scale of the merged task vector", false},
    [P_NORMALIZE] = {"normalize", SMELT_PARAM_BOOL, SMELT_SCOPE_GLOBAL, false, 0, 0, 1, NULL,
                     "divide by the sum of the weights", false},
    [P_RESCALE] = {"rescale", SMELT_PARAM_BOOL, SMELT_SCOPE_GLOBAL, false, 0, 0, 1, NULL,
                   "rescale each pruned delta to the L1 norm of the unpruned one", false},
    [P_INT8_MASK] = {"int8_mask", SMELT_PARAM_BOOL, SMELT_SCOPE_GLOBAL, false, 0, 0, 1, NULL,
                     "accepted for mergekit compatibility; no effect on results", true},
};

static const struct sp_gta_cfg cfg = {
    .method = "breadcrumbs",
    .trim = SP_TRIM_OUTLIERS,
    .consensus = false,
    .p_weight = P_WEIGHT,
    .p_density = P_DENSITY,
    .p_gamma = P_GAMMA,
    .p_epsilon = -1,
    .p_lambda = P_LAMBDA,
    .p_normalize = P_NORMALIZE,
    .p_rescale = P_RESCALE,
};

SP_GTA_CALLBACKS(cfg)

const struct smelt_method smelt_method_breadcrumbs = {
    .name = "breadcrumbs",
    .summary = "Breadcrumbs: drop the top-gamma outliers and the smallest deltas, then add",
    .help = "d_i = x_i - base, n elements. n_top = floor(gamma_i*n), keep = floor(density_i*n),\n"
            "n_bot = n - keep - n_top (if negative, n_top shrinks by that much and n_bot = 0).\n"
            "Ranked by |d_i| ascending (equal magnitudes: the earlier element ranks higher),\n"
            "positions [n_bot, n - n_top) are kept; with n_top = 0 that is [n_bot, n) (mergekit\n"
            "drops the whole delta there). Optional L1 rescale. y = base + lambda * sum_i\n"
            "weight_i * kept d_i (divided by sum weight_i with normalize, default off).\n"
            "weight, density and gamma are per model; a base is required; density >= 1 keeps\n"
            "a delta whole.",
    .paper = "Davari & Belilovsky, Model Breadcrumbs: Scaling Multi-Task Model Merging with Sparse "
             "Masks, arXiv:2312.06795",
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

/*
 * breadcrumbs_ties.c: Model Breadcrumbs with the TIES sign election,
 * mergekit's `breadcrumbs_ties` semantics. Shared engine in sparsify.c.
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
                     "divide by the summed weights of the models agreeing with the sign", false},
    [P_RESCALE] = {"rescale", SMELT_PARAM_BOOL, SMELT_SCOPE_GLOBAL, false, 0, 0, 1, NULL,
                   "rescale each pruned delta to the L1 norm of the unpruned one", false},
    [P_INT8_MASK] = {"int8_mask", SMELT_PARAM_BOOL, SMELT_SCOPE_GLOBAL, false, 0, 0, 1, NULL,
                     "accepted for mergekit compatibility; no effect on results", true},
};

static const struct sp_gta_cfg cfg = {
    .method = "breadcrumbs_ties",
    .trim = SP_TRIM_OUTLIERS,
    .consensus = true,
    .p_weight = P_WEIGHT,
    .p_density = P_DENSITY,
    .p_gamma = P_GAMMA,
    .p_epsilon = -1,
    .p_lambda = P_LAMBDA,
    .p_normalize = P_NORMALIZE,
    .p_rescale = P_RESCALE,
};

SP_GTA_CALLBACKS(cfg)

const struct smelt_method smelt_method_breadcrumbs_ties = {
    .name = "breadcrumbs_ties",
    .summary = "Breadcrumbs sparsification with TIES sign consensus",
    .help = "The breadcrumbs mask (drop the n_top = floor(gamma_i*n) largest |d_i| and the\n"
            "smallest so that floor(density_i*n) remain; with n_top = 0 only the small tail\n"
            "goes), optional L1 rescale, e_i = weight_i * kept d_i, then the TIES sign\n"
            "election: s = + if sum_i e_i >= 0 else -, only agreeing models are added.\n"
            "y = base + lambda * sum_agree e_i (divided by sum_agree weight_i with normalize,\n"
            "default off). weight, density and gamma are per model; a base is required.",
    .paper = "Davari & Belilovsky, arXiv:2312.06795; with TIES (Yadav et al., arXiv:2306.01708)",
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

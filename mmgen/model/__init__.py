"""The model layer: what every model family builds on. The Gaussian and mixture posteriors, the
product of experts, a base for families of unimodal experts and one for private latents, the bounds
(latent draws, the KL part, elbo/iwae/dreg reductions, stratified for mixtures), the terms of a
sub-sampled objective and their masks, and which example has which modality. The families themselves
are plugins (``mmgen_plugins.families``, or a third party's).

Owns the mathematics of a training step and of a posterior. May import: mmgen.errors,
mmgen.config, mmgen.plugin (the interfaces and the posterior protocol; never a registry lookup).
"""

from mmgen.model.bounds import Draw, draw_latents, kl_part, mean_over_draws, reduce_bound
from mmgen.model.experts import UnimodalExpertsModel, full_precision, modality_weights
from mmgen.model.gaussian import DiagonalGaussian, kl_standard_normal, kl_to_prior, standard_normal
from mmgen.model.inputs import prepare_fixed
from mmgen.model.mixture import GaussianMixture, with_prior_fallback
from mmgen.model.private import IndependentBlocks, PrivateLatentsModel, PrivateLayout, private_posterior
from mmgen.model.product import product_of_experts
from mmgen.model.terms import TermMasks, TermPlan, fixed_terms, random_terms
from mmgen.plugin.moved import module_getattr

__all__ = [
    "DiagonalGaussian",
    "Draw",
    "GaussianMixture",
    "IndependentBlocks",
    "PrivateLatentsModel",
    "PrivateLayout",
    "TermMasks",
    "TermPlan",
    "UnimodalExpertsModel",
    "draw_latents",
    "fixed_terms",
    "full_precision",
    "kl_part",
    "kl_standard_normal",
    "kl_to_prior",
    "mean_over_draws",
    "modality_weights",
    "prepare_fixed",
    "private_posterior",
    "product_of_experts",
    "random_terms",
    "reduce_bound",
    "standard_normal",
    "with_prior_fallback",
]

__getattr__ = module_getattr(__name__)  # names that moved to the families (mmgen.plugin.moved)

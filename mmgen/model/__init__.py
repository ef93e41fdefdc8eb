"""The model: the multimodal VAE and its objectives, the Gaussian and mixture posteriors, the
product of experts, the ELBO's terms and masks, and which example has which modality.

Owns the mathematics of a training step and of a posterior. May import: mmgen.errors,
mmgen.config, mmgen.plugin (the interfaces and the posterior protocol; never a registry lookup).
"""

from mmgen.model.gaussian import DiagonalGaussian, kl_standard_normal, kl_to_prior, standard_normal
from mmgen.model.inputs import prepare_fixed
from mmgen.model.mixture import GaussianMixture, with_prior_fallback
from mmgen.model.product import product_of_experts
from mmgen.model.vae import ModelOutput, MultimodalVAE, elbo

__all__ = [
    "DiagonalGaussian",
    "GaussianMixture",
    "ModelOutput",
    "MultimodalVAE",
    "elbo",
    "kl_standard_normal",
    "kl_to_prior",
    "prepare_fixed",
    "product_of_experts",
    "standard_normal",
    "with_prior_fallback",
]

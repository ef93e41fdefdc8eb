"""Product-of-experts fusion with a N(0, I) prior expert (Wu & Goodman 2018), in precision space.

The product itself is ``mmgen.product_of_experts`` (log-precision space, so it stays finite however
confident an expert becomes; the prior expert bounds the joint variance by 1).

``prior_expert = false`` drops the prior from the product (an ablation; the paper keeps it). A
position with no expert at all still gets N(0, I), so a missing modality never leaves q undefined.
"""

from __future__ import annotations

from pydantic import Field
from torch import Tensor

from mmgen import DiagonalGaussian, Fusion, FusionConfig, hookimpl, product_of_experts


class PoEConfig(FusionConfig):
    prior_expert: bool = Field(True, description="Include the N(0, I) prior expert in the product (the paper does).")


class ProductOfExperts(Fusion):
    Config = PoEConfig

    def __init__(self, config: FusionConfig, latent_dim: int, num_modalities: int):
        # A bare FusionConfig(kind="poe") means the defaults of this fusion's own settings.
        if not isinstance(config, self.Config):
            config = self.Config.model_validate(config.model_dump())
        super().__init__(config, latent_dim, num_modalities)

    def forward(self, mu: Tensor, logvar: Tensor, use: Tensor) -> DiagonalGaussian:
        return DiagonalGaussian(*product_of_experts(mu, logvar, use, prior=self.config.prior_expert))


@hookimpl
def register_fusions(register):
    register("poe", ProductOfExperts)

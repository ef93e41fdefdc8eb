"""Product-of-experts fusion with a N(0, I) prior expert (Wu & Goodman 2018), in precision space.

The precision of a product of Gaussians is the sum of the precisions. Summing in log space,
log T = logsumexp(0, -logvar_1, ..., -logvar_M), keeps it finite however confident an expert
becomes; each expert's weight in the mean is T_i / T = softmax of the log-precisions, always in
[0, 1]. The prior expert bounds the joint variance by 1, so sampling never overflows.

``prior_expert = false`` drops the prior from the product (an ablation; the paper keeps it). A
position with no expert at all still gets N(0, I), so a missing modality never leaves q undefined.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor

from mmgen import Fusion, FusionConfig, hookimpl
from mmgen.gaussian import DiagonalGaussian


def product_of_experts(mu: Tensor, logvar: Tensor, use: Tensor, prior: bool = True) -> tuple[Tensor, Tensor]:
    """Experts ``(M, *batch, D)`` (broadcastable against ``use`` ``(M, *batch)``) -> joint ``mu, logvar``."""
    # Unused experts get log-precision -inf.
    mask = use[..., None]  # (M, *batch, 1)
    log_prec = torch.where(mask, -logvar, float("-inf"))  # (M, *batch, D)
    # Zero the unused means too: their share is 0, but backward would still form g * mu there.
    mu = torch.where(mask, mu, 0.0)
    prior_log_prec = torch.zeros_like(log_prec[:1])  # (1, *batch, D): N(0, I) has precision 1
    if not prior:  # keep the prior only where no expert is present
        prior_log_prec = torch.where(mask.any(0, keepdim=True), float("-inf"), prior_log_prec)
    log_prec = torch.cat([prior_log_prec, log_prec])  # (M + 1, *batch, D)
    log_total = torch.logsumexp(log_prec, dim=0)  # (*batch, D)
    share = torch.exp(log_prec[1:] - log_total)  # (M, *batch, D), zero for unused experts
    return (share * mu).sum(0), -log_total  # the prior's mean is 0


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

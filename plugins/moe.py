"""Mixture-of-experts fusion (MMVAE, Shi et al. 2019): q(z|X) = (1/|X|) Σ_m q(z|x_m).

Each present modality's expert is one component, weighted uniformly over the modalities an
example has. An example with none falls back to the prior N(0, I). The model trains a mixture
with the stratified objective: one draw per component (see ``mmgen.GaussianMixture``). Shi et al. use
Laplace experts; mmgen's experts are Gaussian, as for the product of experts.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor

from mmgen import Fusion, FusionConfig, GaussianMixture, hookimpl, with_prior_fallback


class MoEConfig(FusionConfig):
    kind: str = Field("moe", description="Registered fusion kind: 'moe', the uniform mixture of the experts.")


class MixtureOfExperts(Fusion):
    Config = MoEConfig

    def forward(self, mu: Tensor, logvar: Tensor, use: Tensor) -> GaussianMixture:
        # mu, logvar: (M, *batch, D) or broadcastable; use: (M, *batch).
        return GaussianMixture(*with_prior_fallback(mu, logvar, use))

    def component_members(self) -> Tensor:
        """Bool ``(C, M)`` on the host: component m is expert m alone."""
        return torch.eye(self.num_modalities, dtype=torch.bool)


@hookimpl
def register_fusions(register):
    register("moe", MixtureOfExperts)

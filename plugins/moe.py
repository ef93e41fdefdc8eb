"""Mixture-of-experts fusion (MMVAE, Shi et al. 2019): q(z|X) = (1/|X|) Σ_m q(z|x_m).

Each present modality's expert is one component, weighted uniformly over the modalities an
example has. An example with none falls back to the prior N(0, I). The model trains a mixture
with the stratified objective: one draw per component (see ``mmgen.mixture``). Shi et al. use
Laplace experts; mmgen's experts are Gaussian, as for the product of experts.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mmgen import Fusion, FusionConfig, hookimpl
from mmgen.mixture import GaussianMixture


def with_prior_fallback(mu: Tensor, logvar: Tensor, active: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Append N(0, I) as a last component, active only where no other component is: ``C -> C + 1``.

    Skipped (one host check) when every position has a component, so training on paired batches
    never decodes a component of weight zero.
    """
    shape = torch.broadcast_shapes(mu.shape, logvar.shape, (*active.shape, 1))
    mu, logvar, active = mu.expand(shape), logvar.expand(shape), active.expand(shape[:-1])
    if bool(active.any(0).all()):
        return mu, logvar, active
    mu, logvar = torch.where(active[..., None], mu, 0.0), torch.where(active[..., None], logvar, 0.0)
    none = ~active.any(0, keepdim=True)  # (1, *batch)
    zeros = torch.zeros_like(mu[:1])
    return torch.cat([mu, zeros]), torch.cat([logvar, zeros]), torch.cat([active, none])


class MixtureOfExperts(Fusion):
    Config = FusionConfig

    def forward(self, mu: Tensor, logvar: Tensor, use: Tensor) -> GaussianMixture:
        # mu, logvar: (M, *batch, D) or broadcastable; use: (M, *batch).
        return GaussianMixture(*with_prior_fallback(mu, logvar, use))


@hookimpl
def register_fusions(register):
    register("moe", MixtureOfExperts)

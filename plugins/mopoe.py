"""Mixture-of-products-of-experts fusion (MoPoE, Sutter et al. 2021).

q(z|X) is the uniform mixture, over every non-empty subset S of the modalities an example has,
of the product of experts of S (with the N(0, I) prior expert, as in mmgen's PoE). With M
modalities there are 2^M - 1 subsets, so the fusion refuses recipes with more than
``max_modalities`` of them.
"""

from __future__ import annotations

import itertools

import torch
from pydantic import Field
from torch import Tensor

from mmgen import Fusion, FusionConfig, GaussianMixture, hookimpl, product_of_experts, with_prior_fallback


class MoPoEConfig(FusionConfig):
    kind: str = Field("mopoe", description="Registered fusion kind: 'mopoe', the uniform mixture of the products "
                      "of experts of every non-empty subset.")
    max_modalities: int = Field(
        8, ge=1, le=16, description="Refuse more modalities than this: the mixture has 2^M - 1 components."
    )


def nonempty_subsets(num_modalities: int) -> Tensor:
    """Bool ``(2^M - 1, M)``: every non-empty subset, smallest first, each in lexicographic order."""
    rows = [[i in s for i in range(num_modalities)]
            for r in range(1, num_modalities + 1) for s in itertools.combinations(range(num_modalities), r)]
    return torch.tensor(rows, dtype=torch.bool)


class MixtureOfProductsOfExperts(Fusion):
    Config = MoPoEConfig

    @classmethod
    def check(cls, config: MoPoEConfig, modalities: list[str], model) -> list[str]:
        if len(modalities) > config.max_modalities:
            return [f"mopoe mixes 2^M - 1 = {2 ** len(modalities) - 1} products for M = {len(modalities)} "
                    f"modalities, more than max_modalities = {config.max_modalities} allows"]
        return []

    def __init__(self, config: MoPoEConfig, latent_dim: int, num_modalities: int):
        super().__init__(config, latent_dim, num_modalities)
        self.register_buffer("subsets", nonempty_subsets(num_modalities), persistent=False)

    def forward(self, mu: Tensor, logvar: Tensor, use: Tensor) -> GaussianMixture:
        # mu, logvar: (M, *batch, D) or broadcastable; use: (M, *batch).
        extra = (1,) * (use.dim() - 1)
        member = self.subsets.T.reshape(self.num_modalities, -1, *extra)  # (M, S, 1...)
        use_s = member & use[:, None]  # (M, S, *batch): the subset's experts that are present
        # A subset counts only when all of its modalities are present (else it repeats a smaller one).
        active = (use_s == member).all(0)  # (S, *batch)
        joint_mu, joint_logvar = product_of_experts(mu[:, None], logvar[:, None], use_s)  # (S, *batch, D)
        return GaussianMixture(*with_prior_fallback(joint_mu, joint_logvar, active))

    def component_members(self) -> Tensor:
        """Bool ``(C, M)`` on the host: component s is the product of the experts of subset s."""
        return nonempty_subsets(self.num_modalities)


@hookimpl
def register_fusions(register):
    register("mopoe", MixtureOfProductsOfExperts)

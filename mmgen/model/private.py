"""Private latents beside a shared one: the layout of the latent vector, a posterior over it, and a base for the
families that use them (MMVAE+, DMVAE).

A family whose modalities each keep a private latent w_m beside the shared z lays its latent vector out as

    [ z (D) | w_1 (P) | ... | w_M (P) ]        width L = D + M·P

Modality m's expert is a Gaussian over its own ``[z | w_m]`` (D + P numbers) and its decoder reads the same
``[z | w_m]``. The posterior over the whole vector is a product of independent blocks: q(z | given), whatever
the family fuses, and q(w_m | x_m) for a given modality, its prior N(0, I) for one that is not given.

Shapes: B batch, M modalities, ``*S`` sample dims.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor
from torch.distributions import Distribution, constraints

from mmgen.config import ModelConfig
from mmgen.model.experts import UnimodalExpertsModel
from mmgen.model.gaussian import DiagonalGaussian
from mmgen.model.mixture import bound_logvar
from mmgen.plugin.modality import Modality
from mmgen.plugin.model import LatentWidths
from mmgen.plugin.posterior import Posterior, detached


@dataclass(frozen=True)
class PrivateLayout:
    """Where each part sits in the latent vector: ``shared`` = D, ``private`` = P, ``count`` = M."""

    shared: int
    private: int
    count: int

    @property
    def width(self) -> int:
        """L = D + M·P: the whole latent vector."""
        return self.shared + self.count * self.private

    @property
    def expert(self) -> int:
        """D + P: what one modality's expert covers and its decoder reads."""
        return self.shared + self.private

    def private_part(self, latents: Tensor, m: int) -> Tensor:
        """w_m of ``latents`` ``(*S, L)`` -> ``(*S, P)``."""
        start = self.shared + m * self.private
        return latents[..., start : start + self.private]

    def decoder_input(self, latents: Tensor, m: int) -> Tensor:
        """``[z | w_m]`` of ``latents`` ``(*S, L)`` -> ``(*S, D + P)``: what modality m's decoder reads."""
        return torch.cat([latents[..., : self.shared], self.private_part(latents, m)], -1)


def private_posterior(mu: Tensor, logvar: Tensor, use: Tensor) -> DiagonalGaussian:
    """q(w_1, ..., w_M | given): each w_m from its expert where ``use`` (bool ``(M, B)``), else N(0, I).

    ``mu, logvar`` are the private parts of the experts, ``(M, B, P)``; the result has batch ``(B,)`` and
    event ``(M·P,)``, laid out as the private blocks of the latent vector. The log-variances are bounded
    softly at 30, as a mixture's are (``mmgen.GaussianMixture``): there is no prior expert to bound them.
    """
    mu = torch.where(use[..., None], mu, 0.0)  # (M, B, P)
    logvar = torch.where(use[..., None], bound_logvar(logvar), 0.0)  # (M, B, P)
    return DiagonalGaussian(mu.movedim(0, -2).flatten(-2), logvar.movedim(0, -2).flatten(-2))  # (B, M·P)


class IndependentBlocks(Distribution):
    """A product of independent distributions over consecutive blocks of one vector.

    ``parts``: distributions with one batch shape and events ``(width_i,)``; the event is ``(Σ width_i,)``.
    Each part needs only the posterior protocol (``rsample``, ``sample``, ``log_prob``, ``mean``), so the
    shared block can be a mixture and the private blocks Gaussians.
    """

    arg_constraints: ClassVar[dict] = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, parts: list[Posterior]):
        self.parts = list(parts)
        self.widths = [p.event_shape[-1] for p in self.parts]
        super().__init__(batch_shape=self.parts[0].batch_shape, event_shape=(sum(self.widths),),
                         validate_args=False)

    def _blocks(self, z: Tensor) -> tuple[Tensor, ...]:
        return z.split(self.widths, dim=-1)

    def rsample(self, sample_shape: torch.Size | tuple = ()) -> Tensor:
        return torch.cat([p.rsample(torch.Size(sample_shape)) for p in self.parts], -1)  # (*S, *batch, L)

    def sample(self, sample_shape: torch.Size | tuple = ()) -> Tensor:
        return torch.cat([p.sample(torch.Size(sample_shape)) for p in self.parts], -1)

    def log_prob(self, z: Tensor) -> Tensor:
        """Σ_i log q_i(block i of z): ``(*S, *batch, L)`` -> ``(*S, *batch)``."""
        return sum(p.log_prob(block) for p, block in zip(self.parts, self._blocks(z), strict=True))

    @property
    def mean(self) -> Tensor:
        return torch.cat([p.mean for p in self.parts], -1)  # (*batch, L)

    @property
    def variance(self) -> Tensor:
        return torch.cat([p.variance for p in self.parts], -1)

    def detached(self) -> IndependentBlocks:
        """The same density with every part's parameters cut from the graph."""
        return IndependentBlocks([detached(p) for p in self.parts])


class PrivateLatentsModel(UnimodalExpertsModel):
    """A family over ``[z | w_1 | ... | w_M]``: each expert covers ``[z | w_m]`` and each decoder reads it.

    Its config has ``latent_dim`` (D) and ``private_dim`` (P); ``layout`` says where each part sits.
    """

    def __init__(self, modalities: dict[str, Modality], config: ModelConfig):
        super().__init__(modalities, config)
        self.layout = PrivateLayout(config.latent_dim, config.private_dim, len(modalities))

    @classmethod
    def latent_widths(cls, config: ModelConfig, name: str, modality) -> LatentWidths:
        width = config.latent_dim + config.private_dim  # the expert covers [z | w_m]; the decoder reads it
        return LatentWidths(width, width)

    @property
    def latent_size(self) -> int:
        return self.layout.width

    def decode(self, latents: Tensor, names: list[str] | None = None) -> dict[str, Tensor]:
        """``(*S, L)`` -> each named modality's parameters, decoded from its ``[z | w_m]``."""
        return {n: self.modalities[n].decode(self.layout.decoder_input(latents, self.names.index(n)))
                for n in (names or self.names)}

    def private_experts(self, mu: Tensor, logvar: Tensor) -> DiagonalGaussian:
        """q(w_m | x_m) of every modality from the experts ``(M, B, D + P)``: batch ``(M, B)``, its log-variance
        bounded softly at 30 as ``private_posterior``'s (no prior expert bounds it)."""
        D = self.layout.shared
        return DiagonalGaussian(mu[..., D:], bound_logvar(logvar[..., D:]))

"""The Fusion interface: combine the experts of the modalities present into q(z|X).

The result is a posterior over z (``mmgen.plugin.posterior``): any distribution with ``rsample``,
``log_prob`` and ``mean``, plus whatever optional capabilities it has. A product of experts gives a
``mmgen.DiagonalGaussian`` (closed-form KL); a mixture (MMVAE, MoPoE) gives a ``mmgen.GaussianMixture``
(stratified draws); a plugin may return a distribution of its own.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from torch import Tensor, nn

from mmgen.config import FusionConfig, ModelConfig
from mmgen.plugin.posterior import Posterior


class Fusion(nn.Module, ABC):
    """Experts ``(M, *batch, D)`` plus a use-mask ``(M, *batch)`` -> q(z|X) with ``batch_shape == batch``."""

    Config: ClassVar[type[FusionConfig]] = FusionConfig

    def __init__(self, config: FusionConfig, latent_dim: int, num_modalities: int):
        super().__init__()
        self.config = config
        self.latent_dim = latent_dim
        self.num_modalities = num_modalities

    @classmethod
    def check(cls, config: FusionConfig, modalities: list[str], model: ModelConfig) -> list[str]:
        """Problems with using this fusion in this recipe, as messages; checked before anything is built."""
        return []

    @abstractmethod
    def forward(self, mu: Tensor, logvar: Tensor, use: Tensor) -> Posterior:
        """Fuse the experts whose ``use`` entry is True; an unused expert must contribute nothing.

        ``mu``, ``logvar``: ``(M, *batch, D)`` (broadcasting against ``use`` is allowed);
        ``use``: bool ``(M, *batch)``. A position where no expert is used gets the prior N(0, I).
        """

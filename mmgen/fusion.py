"""The Fusion interface: combine the experts of the modalities present into q(z|X).

The result is any ``torch.distributions.Distribution`` over z that supports ``rsample`` and
``log_prob``. A product of experts gives a :class:`mmgen.gaussian.DiagonalGaussian`; a mixture
(MMVAE, MoPoE) gives a non-Gaussian distribution, and the model then estimates the KL by sampling.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn
from torch.distributions import Distribution

if TYPE_CHECKING:
    from mmgen.model import ModelConfig


class FusionConfig(BaseModel):
    """Settings shared by every fusion; a plugin's Config subclasses this."""

    model_config = ConfigDict(extra="forbid")

    kind: str = Field("poe", description="Registered fusion kind, e.g. 'poe'.")


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
    def forward(self, mu: Tensor, logvar: Tensor, use: Tensor) -> Distribution:
        """Fuse the experts whose ``use`` entry is True; an unused expert must contribute nothing.

        ``mu``, ``logvar``: ``(M, *batch, D)`` (broadcasting against ``use`` is allowed);
        ``use``: bool ``(M, *batch)``. A position where no expert is used gets the prior N(0, I).
        """

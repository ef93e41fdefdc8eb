"""The Model interface: a model family (MVAE, MMVAE, MoPoE, a plugin's own) as the trainer, ``mmgen eval``,
``mmgen sample`` and ``Run`` see it.

A family subclasses :class:`Model`, sets ``Config`` to a subclass of :class:`mmgen.ModelConfig`
and registers itself with the ``register_models`` hook; a recipe picks it with ``[model] kind``.
Nothing here is MVAE-specific. What the rest of mmgen asks of a family:

* ``forward(batch, beta, present) -> ModelOutput``: the training objective (loss plus named terms);
* ``validation_output(batch, present)``: the same at β = 1 without random choices;
* ``posterior(given, present)``: q(latents | given), a posterior over **all** of the family's
  latents, batch_shape ``(B,)``. A family with private latents puts them in the same vector and
  draws the private part of a modality that is not given from its prior;
* ``prior(batch_shape)``: p(latents);
* ``decode(latents, names)``: likelihood parameters of each named modality;
* ``log_joint(latents, batch, targets)``: log p(latents) + Σ_targets log p(x_t | latents), so every
  importance-weighted estimate in eval is ``log_joint - log q`` for any family;
* ``elbo(batch, names)``: the honest single-sample ELBO of some modalities (validation's ``val/elbo``).
* ``training_stage(config, epoch, epochs)`` and ``enter_stage(stage)``: a family trained in stages (TELBO)
  says which stage trains each epoch and freezes what that stage does not train; one stage by default.

Shapes: ``B`` batch, ``L`` the width of the latent vector (``latent_size``), ``*S`` sample dims.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.distributions import Independent, Normal

from mmgen.config import ModalityConfig, ModelConfig
from mmgen.plugin.modality import Modality
from mmgen.plugin.posterior import Posterior

Lookup = Callable[[str, str], type]  # (category, kind) -> registered class, e.g. ("fusions", "poe")


@dataclass
class ModelOutput:
    """What the trainer reads: the loss to minimize plus named detached terms for logging."""

    loss: Tensor  # scalar
    terms: dict[str, Tensor] = field(default_factory=dict)  # scalars, per-example means


@dataclass(frozen=True)
class LatentWidths:
    """What a family asks of one modality's networks: its expert's width (the encoder gives a Gaussian
    over this many latent dimensions) and the width of the latents its decoder reads."""

    encode: int
    decode: int


def diagonal_normal(mu: Tensor, logvar: Tensor | None = None) -> Independent:
    """N(mu, diag(exp(logvar))) with event ``(L,)``; ``logvar`` None means unit variance."""
    scale = torch.ones_like(mu) if logvar is None else (0.5 * logvar).exp()
    return Independent(Normal(mu, scale, validate_args=False), 1, validate_args=False)


class Model(nn.Module, ABC):
    """A model family over named modalities. ``names`` orders them; ``modalities`` holds their networks."""

    Config: ClassVar[type[ModelConfig]] = ModelConfig

    def __init__(self, modalities: dict[str, Modality], config: ModelConfig):
        super().__init__()
        self.config = config
        self.names = list(modalities)
        self.modalities = nn.ModuleDict(modalities)

    # ---- building ----------------------------------------------------------------------------
    @classmethod
    def latent_widths(cls, config: ModelConfig, name: str, modality: ModalityConfig) -> LatentWidths:
        """The widths the modality ``name`` is built with; by default one shared latent of ``latent_dim``."""
        return LatentWidths(config.latent_dim, config.latent_dim)

    @classmethod
    def check(cls, config: ModelConfig, modalities: dict[str, ModalityConfig], lookup: Lookup) -> list[str]:
        """Problems of this family with this recipe, as messages keyed like ``model.x: ...``, checked
        before anything is built. ``lookup`` finds registered kinds (a family that uses a fusion)."""
        return []

    @classmethod
    def create(cls, modalities: dict[str, Modality], config: ModelConfig, lookup: Lookup) -> Model:
        """Build the family from its built modalities; ``lookup`` finds the other parts it names."""
        return cls(modalities, config)

    def describe(self) -> str:
        """A short phrase naming the family and its settings, for messages."""
        return f"model {self.config.kind!r}"

    @property
    def latent_size(self) -> int:
        """L: the width of the latent vector that ``posterior``, ``prior`` and ``decode`` speak."""
        return self.config.latent_dim

    @property
    def device(self) -> torch.device:
        """Where the model's weights (or, for a model without parameters, its buffers) live."""
        return self._anchor().device

    def _anchor(self) -> Tensor:
        """A floating tensor of the model's, for its device and dtype (a model in float64 scores in float64)."""
        tensors = (t for t in [*self.parameters(), *self.buffers()] if t.is_floating_point())
        return next(tensors, torch.zeros(()))

    # ---- training ----------------------------------------------------------------------------
    @abstractmethod
    def forward(self, batch: dict[str, Tensor], beta: float | Tensor = 1.0,
                present: dict[str, Tensor] | None = None) -> ModelOutput:
        """The training objective on prepared inputs ``(B, *event)``, negated and averaged over the batch.

        ``present`` (bool ``(B,)`` per modality) marks which example has which modality (weak
        supervision); None means every example has every modality in ``batch``.
        """

    def validation_output(self, batch: dict[str, Tensor], present: dict[str, Tensor] | None = None) -> ModelOutput:
        """The objective at β = 1 with no random choice of terms (validation compares epochs with it)."""
        return self(batch, beta=1.0, present=present)

    # ---- training in stages (TELBO) ------------------------------------------------------------------
    @classmethod
    def training_stage(cls, config: ModelConfig, epoch: int, epochs: int) -> str:
        """The stage that trains the 0-based ``epoch`` of a run of ``epochs``; "" for a family trained in one stage.

        The trainer asks before every epoch, a resumed one too, and calls ``enter_stage`` when the answer changes;
        only epochs of the last stage can be the best checkpoint. The stage follows from the epoch and the run's
        length, so nothing more is saved: a resume that changes ``train.epochs`` is refused where it would change
        the stage of an epoch already begun.
        """
        return ""

    def enter_stage(self, stage: str) -> None:
        """Get ready to train ``stage``: a parameter it does not train gets ``requires_grad = False``, so it has
        no gradient and the optimizer leaves its weights and moments as they are."""

    # ---- inference and generation ---------------------------------------------------------------
    @abstractmethod
    def posterior(self, given: dict[str, Tensor], present: dict[str, Tensor] | None = None) -> Posterior:
        """q(latents | the modalities in ``given``), batch_shape ``(B,)``, event ``(L,)``."""

    def prior(self, batch_shape: tuple[int, ...] = (1,)) -> Posterior:
        """p(latents), batch_shape ``batch_shape``; by default N(0, I)."""
        anchor = self._anchor()
        return diagonal_normal(anchor.new_zeros(*batch_shape, self.latent_size))

    def decode(self, latents: Tensor, names: list[str] | None = None) -> dict[str, Tensor]:
        """Latents ``(*S, L)`` -> likelihood parameters per modality (every modality by default)."""
        return {n: self.modalities[n].decode(latents) for n in (names or self.names)}

    def log_joint(self, latents: Tensor, batch: dict[str, Tensor], targets: list[str]) -> Tensor:
        """log p(latents) + Σ_t log p(x_t | latents): latents ``(*S, B, L)`` -> ``(*S, B)``.

        A family without a tractable density raises NotImplementedError with the reason; ``mmgen eval``
        then skips the log-likelihoods and says why in ``eval.json["skipped"]``.
        """
        out = self.prior().log_prob(latents)
        params = self.decode(latents, targets)
        for n in targets:
            out = out + self.modalities[n].log_likelihood(params[n], batch[n])
        return out

    def elbo(self, batch: dict[str, Tensor], names: list[str]) -> Tensor:
        """Single-sample ELBO of the modalities ``names`` with q(latents | names), β = 1, every λ = 1: ``(B,)``."""
        given = {n: batch[n] for n in names}
        q = self.posterior(given)
        z = q.rsample()  # (B, L)
        return self.log_joint(z, given, names) - q.log_prob(z)

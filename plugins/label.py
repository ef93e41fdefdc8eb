"""Class labels with a categorical likelihood (the MNIST digit in the MVAE paper).

Stored as int64 ``(N,)`` in ``[0, num_classes)``; 0 is a class like any other, never "no label".
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field, PositiveInt, model_validator
from torch import Tensor, nn
from torch.distributions import Categorical

from mmgen import GivenError, Modality, ModalityConfig, hookimpl
from mmgen_plugins.mlp import GaussianHead, mlp


class LabelConfig(ModalityConfig):
    """A label modality: embedding + MLP encoder, MLP decoder to class logits."""

    num_classes: int = Field(10, ge=2, description="Number of classes.")
    classes: list[str] | None = Field(None, description="Optional class names, accepted by --given and printed.")
    encoder_hidden: list[PositiveInt] = Field(
        [512, 512], description="Embedding width, then hidden widths of the encoder."
    )
    decoder_hidden: list[PositiveInt] = Field([512, 512, 512], description="Hidden layer widths of the decoder MLP.")

    @model_validator(mode="after")
    def _names_match_classes(self) -> LabelConfig:
        if self.classes is not None and len(self.classes) != self.num_classes:
            raise ValueError(f"classes lists {len(self.classes)} names for num_classes={self.num_classes}")
        if self.classes is not None and len(set(self.classes)) != len(self.classes):
            twice = sorted({c for c in self.classes if self.classes.count(c) > 1})
            raise ValueError(f"classes names {', '.join(map(repr, twice))} more than once")
        return self


class CategoricalLabel(Modality):
    Config = LabelConfig
    config: LabelConfig

    def __init__(self, name: str, config: LabelConfig, latent_dim: int, decode_dim: int | None = None):
        super().__init__(name, config, latent_dim, decode_dim)
        widths = config.encoder_hidden or [latent_dim]
        # An embedding is a one-hot times a Linear layer, without the matmul.
        self.embedding = nn.Embedding(config.num_classes, widths[0])
        self.encoder = mlp(widths, final_activation=True) if len(widths) > 1 else nn.SiLU()
        self.head = GaussianHead(widths[-1], latent_dim)
        self.decoder = mlp([self.decode_dim, *config.decoder_hidden, config.num_classes])

    def encode(self, y: Tensor) -> tuple[Tensor, Tensor]:
        h = self.embedding(y)  # (B,) -> (B, E)
        if len(self.config.encoder_hidden) > 1:
            h = nn.functional.silu(h)
        return self.head(self.encoder(h))

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)  # (*S, D) -> logits (*S, num_classes)

    def likelihood(self, params: Tensor) -> Categorical:
        return Categorical(logits=params, validate_args=False)

    def mean(self, params: Tensor) -> Tensor:
        return params.softmax(-1)  # class probabilities (*S, num_classes)

    def parse_given(self, value: Any) -> Tensor:
        """A class index or name -> ``(1,)``; a tensor of indices, ``()`` or a batch ``(N,)`` -> ``(N,)`` long."""
        n = self.config.num_classes
        if isinstance(value, Tensor):
            y = value.detach().cpu()
            if y.dim() > 1 or y.numel() == 0 or y.is_complex() or y.dtype == torch.bool:
                raise GivenError(f"{self.name}: expected a class index or a batch (N,) of them, got a tensor of "
                                 f"shape {tuple(y.shape)} and dtype {y.dtype}")
            if y.is_floating_point() and not bool((y == y.round()).all()):
                raise GivenError(f"{self.name}: class indices must be whole numbers")
            y = y.reshape(-1).long()
            if not bool(((y >= 0) & (y < n)).all()):
                raise GivenError(f"{self.name}: class indices from {int(y.min())} to {int(y.max())} are out of "
                                 f"range: {self.name} takes 0 to {n - 1}")
            return y
        if isinstance(value, str) and self.config.classes and value in self.config.classes:
            value = self.config.classes.index(value)
        try:
            k = int(str(value).strip())
        except ValueError:
            names = f" or one of {', '.join(self.config.classes)}" if self.config.classes else ""
            raise GivenError(f"{self.name}={value}: expected an integer from 0 to {n - 1}{names}")
        if not 0 <= k < n:
            raise GivenError(f"{self.name}={value} is out of range: {self.name} takes an integer from 0 to {n - 1}")
        return torch.tensor([k], dtype=torch.long)

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def evaluation_note(self) -> str:
        return f"categorical log-probability of the true class out of {self.config.num_classes}"

    def describe(self, mean: Tensor) -> str:
        probs = mean.reshape(-1, self.config.num_classes).mean(0)  # average over samples
        names = self.config.classes or [str(k) for k in range(self.config.num_classes)]
        best = int(probs.argmax())
        cells = "  ".join(f"{names[k]}:{probs[k]:.3f}" for k in range(len(names)))
        return f"{self.name}: most likely {names[best]} (p={probs[best]:.3f})  [{cells}]"


@hookimpl
def register_modalities(register):
    register("label", CategoricalLabel)

"""Grey-scale images with a Bernoulli likelihood on [0, 1] intensities (MNIST in the MVAE paper).

Stored as uint8 ``(N, C, H, W)``; ``prepare`` scales to [0, 1] and, with ``binarize``, draws a
fresh binary image per step (dynamic binarization, "BinaryMNIST").
"""

from __future__ import annotations

import math
from typing import Any

import torch
from pydantic import Field, PositiveInt
from torch import Tensor
from torch.distributions import Bernoulli, Independent

from mmgen import Modality, ModalityConfig, hookimpl
from mmgen_plugins.image_io import parse_image, prepare_image
from mmgen_plugins.mlp import GaussianHead, mlp


class ImageConfig(ModalityConfig):
    """An MLP image modality."""

    shape: tuple[PositiveInt, PositiveInt, PositiveInt] = Field(
        (1, 28, 28), description="Image shape (channels, height, width)."
    )
    encoder_hidden: list[PositiveInt] = Field([512, 512], description="Hidden layer widths of the encoder MLP.")
    decoder_hidden: list[PositiveInt] = Field([512, 512, 512], description="Hidden layer widths of the decoder MLP.")
    binarize: bool = Field(False, description="Dynamic binarization: train on Bernoulli draws of the intensities.")


class BernoulliImage(Modality):
    Config = ImageConfig
    config: ImageConfig

    def __init__(self, name: str, config: ImageConfig, latent_dim: int, decode_dim: int | None = None):
        super().__init__(name, config, latent_dim, decode_dim)
        self.shape = tuple(config.shape)
        pixels = math.prod(self.shape)
        self.encoder = mlp([pixels, *config.encoder_hidden], final_activation=True)
        self.head = GaussianHead(config.encoder_hidden[-1] if config.encoder_hidden else pixels, latent_dim)
        self.decoder = mlp([self.decode_dim, *config.decoder_hidden, pixels])

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.head(self.encoder(x.flatten(1)))  # (B, C*H*W) -> 2 x (B, D)

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z).unflatten(-1, self.shape)  # (*S, D) -> logits (*S, C, H, W)

    def likelihood(self, params: Tensor) -> Independent:
        return Independent(Bernoulli(logits=params, validate_args=False), 3, validate_args=False)

    def prepare(self, raw: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return prepare_image(raw, self.config.binarize, generator)

    def parse_given(self, value: Any) -> Tensor:
        """A PNG path -> ``(1, C, H, W)``; a tensor of one image or a batch -> uint8 ``(N, C, H, W)``."""
        return parse_image(value, self.shape, self.name)

    def evaluation_note(self) -> str:
        if self.config.binarize:
            return "Bernoulli log-probability of binary images, binarized once with binarization_seed (BinaryMNIST)"
        return "Bernoulli log-probability of grey values in [0, 1] (continuous MNIST, as the MVAE paper reports)"

    def to_image(self, mean: Tensor) -> Tensor:
        return mean  # (N, C, H, W) in [0, 1]


@hookimpl
def register_modalities(register):
    register("image", BernoulliImage)

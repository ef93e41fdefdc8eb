"""Images with a DCGAN-style convolutional encoder and decoder, grey or RGB, 28 to 64 pixels a side.

The encoder halves the resolution with every 4x4 stride-2 convolution (``channels``, each followed
by SiLU), then one Linear gives the expert's mean and log-variance. The decoder mirrors it with
transposed convolutions whose output padding restores the encoder's exact sizes (28 -> 14 -> 7 -> 3
comes back as 3 -> 7 -> 14 -> 28), so any size works, 50x50 MultiMNIST included.

Likelihoods (``likelihood``):
* ``bernoulli``: logits, on intensities in [0, 1] (``binarize`` draws binary images per step);
* ``gaussian`` and ``laplace``: location sigmoid(decoder output) in [0, 1] and a ``scale`` that is
  fixed, or learned per channel (``learn_scale``; MMVAE uses Laplace).

Generated images are read by mmgen's CNN judge, trained on the data set's class field, like any
image modality's (``classes_of`` is None).
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Literal

import torch
from pydantic import Field, PositiveInt, model_validator
from torch import Tensor, nn
from torch.distributions import Bernoulli, Independent, Laplace, Normal

from mmgen import Modality, ModalityConfig, hookimpl
from mmgen_plugins.image_io import parse_image, prepare_image


class ConvImageConfig(ModalityConfig):
    """A convolutional image modality."""

    shape: tuple[PositiveInt, PositiveInt, PositiveInt] = Field(
        (1, 28, 28), description="Image shape (channels, height, width); 1 or 3 channels, sides of 8 to 128."
    )
    channels: list[PositiveInt] = Field(
        [32, 64, 128], min_length=1, max_length=5,
        description="Output channels of the encoder's stride-2 convolutions; the decoder mirrors them.",
    )
    likelihood: Literal["bernoulli", "gaussian", "laplace"] = Field("bernoulli", description="p(x | z).")
    scale: float = Field(0.1, gt=0, description="The fixed scale of a gaussian or laplace likelihood.")
    learn_scale: bool = Field(False, description="Learn that scale (one per channel) instead of fixing it.")
    binarize: bool = Field(False, description="Dynamic binarization (bernoulli only).")

    @model_validator(mode="after")
    def _consistent(self) -> ConvImageConfig:
        C, H, W = self.shape
        if C not in (1, 3) or not (8 <= H <= 128 and 8 <= W <= 128):
            raise ValueError(f"shape {self.shape}: 1 or 3 channels and sides of 8 to 128 pixels")
        if min(H, W) >> len(self.channels) < 1:
            raise ValueError(f"{len(self.channels)} halvings of {min(H, W)} pixels leave nothing: use fewer channels")
        if self.binarize and self.likelihood != "bernoulli":
            raise ValueError("binarize is for the bernoulli likelihood")
        return self


def encoder_sizes(side: int, layers: int) -> list[int]:
    """Spatial sides after each 4x4 stride-2 convolution with padding 1: floor(side / 2) each time."""
    sizes = [side]
    for _ in range(layers):
        sizes.append(sizes[-1] // 2)
    return sizes


class ConvImage(Modality):
    Config = ConvImageConfig
    config: ConvImageConfig

    def __init__(self, name: str, config: ConvImageConfig, latent_dim: int, decode_dim: int | None = None):
        super().__init__(name, config, latent_dim, decode_dim)
        self.shape = tuple(config.shape)
        C, H, W = self.shape
        widths = [C, *config.channels]
        self.heights, self.widths = encoder_sizes(H, len(config.channels)), encoder_sizes(W, len(config.channels))
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(widths):
            layers += [nn.Conv2d(a, b, 4, stride=2, padding=1), nn.SiLU()]
        self.encoder = nn.Sequential(*layers, nn.Flatten())
        flat = widths[-1] * self.heights[-1] * self.widths[-1]
        self.head = nn.Linear(flat, 2 * latent_dim)
        self.expand = nn.Linear(self.decode_dim, flat)
        up: list[nn.Module] = []
        for i in range(len(config.channels), 0, -1):  # from the smallest size back to the image
            pad = (self.heights[i - 1] - 2 * self.heights[i], self.widths[i - 1] - 2 * self.widths[i])
            up.append(nn.ConvTranspose2d(widths[i], widths[i - 1], 4, stride=2, padding=1, output_padding=pad))
            if i > 1:
                up.append(nn.SiLU())
        self.decoder = nn.Sequential(*up)
        if config.learn_scale:
            self.log_scale = nn.Parameter(torch.full((C, 1, 1), math.log(config.scale)))

    # ---- model -------------------------------------------------------------------------
    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = self.head(self.encoder(x)).chunk(2, dim=-1)  # (B, C, H, W) -> 2 x (B, D)
        return mu, logvar

    def decode(self, z: Tensor) -> Tensor:
        S = z.shape[:-1]
        h = nn.functional.silu(self.expand(z.reshape(-1, self.decode_dim)))  # (prod S, flat)
        h = h.unflatten(1, (self.config.channels[-1], self.heights[-1], self.widths[-1]))
        return self.decoder(h).reshape(*S, *self.shape)  # (*S, C, H, W): logits or locations before sigmoid

    def likelihood(self, params: Tensor) -> Independent:
        if self.config.likelihood == "bernoulli":
            return Independent(Bernoulli(logits=params, validate_args=False), 3, validate_args=False)
        scale = self.log_scale.exp() if self.config.learn_scale else self.config.scale
        family = Normal if self.config.likelihood == "gaussian" else Laplace
        return Independent(family(torch.sigmoid(params), scale, validate_args=False), 3, validate_args=False)

    def mean(self, params: Tensor) -> Tensor:
        return torch.sigmoid(params)  # the Bernoulli mean, or the location of the Gaussian and Laplace

    # ---- data --------------------------------------------------------------------------
    def prepare(self, raw: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return prepare_image(raw, self.config.binarize, generator)

    def parse_given(self, value: Any) -> Tensor:
        """A PNG path -> ``(1, C, H, W)``; a tensor of one image or a batch -> uint8 ``(N, C, H, W)``."""
        return parse_image(value, self.shape, self.name)

    def evaluation_note(self) -> str:
        what = {"bernoulli": "Bernoulli log-probability of intensities in [0, 1]",
                "gaussian": "Gaussian log-density of intensities in [0, 1]",
                "laplace": "Laplace log-density of intensities in [0, 1]"}[self.config.likelihood]
        if self.config.likelihood != "bernoulli":
            what += f" with {'a learned' if self.config.learn_scale else 'the fixed'} scale (a density: may exceed 0)"
        return what + (", binarized once with binarization_seed" if self.config.binarize else "")

    def to_image(self, mean: Tensor) -> Tensor:
        return mean  # (N, C, H, W) in [0, 1]


@hookimpl
def register_modalities(register):
    register("conv_image", ConvImage)

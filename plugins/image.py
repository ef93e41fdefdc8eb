"""Grey-scale images with a Bernoulli likelihood on [0, 1] intensities (MNIST in the MVAE paper).

Stored as uint8 ``(N, C, H, W)``; ``prepare`` scales to [0, 1] and, with ``binarize``, draws a
fresh binary image per step (dynamic binarization, "BinaryMNIST").
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from pydantic import Field, PositiveInt
from torch import Tensor
from torch.distributions import Bernoulli, Independent

from mmgen import GivenError, Modality, ModalityConfig, hookimpl
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

    def __init__(self, name: str, config: ImageConfig, latent_dim: int):
        super().__init__(name, config, latent_dim)
        self.shape = tuple(config.shape)
        pixels = math.prod(self.shape)
        self.encoder = mlp([pixels, *config.encoder_hidden], final_activation=True)
        self.head = GaussianHead(config.encoder_hidden[-1] if config.encoder_hidden else pixels, latent_dim)
        self.decoder = mlp([latent_dim, *config.decoder_hidden, pixels])

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.head(self.encoder(x.flatten(1)))  # (B, C*H*W) -> 2 x (B, D)

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z).unflatten(-1, self.shape)  # (*S, D) -> logits (*S, C, H, W)

    def likelihood(self, params: Tensor) -> Independent:
        return Independent(Bernoulli(logits=params, validate_args=False), 3, validate_args=False)

    def prepare(self, raw: Tensor, generator: torch.Generator | None = None) -> Tensor:
        x = raw.float().div_(255.0) if raw.dtype == torch.uint8 else raw.float()
        if self.config.binarize:
            x = torch.bernoulli(x, generator=generator)
        return x

    def parse_given(self, value: Any) -> Tensor:
        """A PNG path -> ``(1, C, H, W)``; a tensor of one image ``(C, H, W)`` or a batch ``(N, C, H, W)``
        (for grey images also ``(H, W)`` and ``(N, H, W)``), uint8 or floats in [0, 1] -> uint8 ``(N, C, H, W)``."""
        if not isinstance(value, Tensor):
            return read_png(Path(str(value)), self.shape, self.name)
        x = value.detach().cpu()
        C, H, W = self.shape
        shapes = [(C, H, W)] + ([(H, W)] if C == 1 else [])
        if tuple(x.shape) in shapes:
            x = x.reshape(1, C, H, W)
        elif x.dim() >= 1 and x.shape[0] > 0 and tuple(x.shape[1:]) in shapes:
            x = x.reshape(x.shape[0], C, H, W)
        else:
            one = " or ".join(str(s) for s in shapes)
            raise GivenError(f"{self.name}: expected a tensor of shape {one} or a batch (N, {C}, {H}, {W}), "
                             f"got {tuple(x.shape)}")
        if x.dtype == torch.uint8:
            return x
        if not x.is_floating_point() or not bool(((x >= 0) & (x <= 1)).all()):
            raise GivenError(f"{self.name}: expected uint8 pixels or floats in [0, 1], got {x.dtype} values "
                             f"from {float(x.min()):g} to {float(x.max()):g}")
        return (x.float() * 255).round().to(torch.uint8)

    def evaluation_note(self) -> str:
        if self.config.binarize:
            return "Bernoulli log-probability of binary images, binarized once with binarization_seed (BinaryMNIST)"
        return "Bernoulli log-probability of grey values in [0, 1] (continuous MNIST, as the MVAE paper reports)"

    def to_image(self, mean: Tensor) -> Tensor:
        return mean  # (N, C, H, W) in [0, 1]


def read_png(path: Path, shape: tuple[int, int, int], name: str = "image") -> Tensor:
    """A PNG of exactly ``shape`` -> uint8 ``(1, C, H, W)``; colour images are converted to grey.

    The size is checked from the header before any pixel is decoded, so a decompression bomb (a
    small file of a huge image) is refused without being unpacked.
    """
    import warnings

    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise GivenError(f"{name}={path}: no such file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.size != (shape[2], shape[1]):
                    raise GivenError(
                        f"{name}={path}: expected a {shape[2]}x{shape[1]} image, got {img.size[0]}x{img.size[1]}"
                    )
                img = img.convert("L" if shape[0] == 1 else "RGB")
                data = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, Image.DecompressionBombWarning,
            ValueError) as exc:
        raise GivenError(f"{name}={path}: not a readable image ({exc.__class__.__name__})")
    return data.reshape(shape[1], shape[2], shape[0]).permute(2, 0, 1).unsqueeze(0).contiguous()


@hookimpl
def register_modalities(register):
    register("image", BernoulliImage)

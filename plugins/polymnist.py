"""PolyMNIST-style: five RGB image modalities of one digit class, each on its own background (Sutter et al. 2021).

The real PolyMNIST pastes MNIST digits onto crops of five photographs, which cannot be reached
here; this data set makes five procedural textures instead, from ``texture_seed``: stripes,
a checkerboard, smoothed colour noise, rings and a plaid, each 128x128 RGB. Example i of a split
shows, in modality m, a 28x28 crop of texture m at a random place with an MNIST digit of the
example's class on it, its pixels the background's inverse colour (as in PolyMNIST); modality 0
shows the example's own MNIST image, the others other images of the same class from the same
split, drawn from ``sample_seed``. It is therefore called ``polymnist_style``: numbers on it are
not numbers on PolyMNIST. Everything is made with torch's CPU generator from the seeds, so the
bytes are the same on every machine (tested with a hash).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from pydantic import Field
from torch import Tensor

from mmgen import IdxImageConfig, IdxImageDataset, hookimpl

TEXTURE = 128  # side of a background texture
SIDE = 28
MODALITIES = 5


class PolyMnistConfig(IdxImageConfig):
    """MNIST from ``<root>/MNIST/raw``, recomposed into five textured modalities (nothing is downloaded but MNIST)."""

    texture_seed: int = Field(0, ge=0, lt=2**63, description="Seed of the five background textures.")
    sample_seed: int = Field(0, ge=0, lt=2**63, description="Seed of the digit instances and crops of each example.")
    train_size: int | None = Field(
        None, ge=1, description="Keep only the first N training examples (a smaller budget); None keeps all."
    )


def _grid(g: torch.Generator) -> tuple[Tensor, Tensor]:
    y, x = torch.meshgrid(torch.arange(TEXTURE, dtype=torch.float32), torch.arange(TEXTURE, dtype=torch.float32),
                          indexing="ij")
    return x / TEXTURE, y / TEXTURE


def _paint(field: Tensor, g: torch.Generator) -> Tensor:
    """A field in [0, 1] ``(H, W)`` coloured between two random colours -> uint8 ``(3, H, W)``."""
    a, b = torch.rand(3, 1, 1, generator=g) * 255, torch.rand(3, 1, 1, generator=g) * 255
    return (a + (b - a) * field.clamp(0, 1)).round().to(torch.uint8)


def textures(seed: int) -> Tensor:
    """Five distinct procedural backgrounds, uint8 ``(5, 3, 128, 128)``."""
    g = torch.Generator().manual_seed(seed)
    x, y = _grid(g)
    angle = float(torch.rand(1, generator=g)) * math.pi
    stripes = 0.5 + 0.5 * torch.sin(2 * math.pi * (6 + 6 * float(torch.rand(1, generator=g)))
                                     * (x * math.cos(angle) + y * math.sin(angle)))
    cell = 8 + int(torch.randint(0, 8, (1,), generator=g))
    checker = ((torch.arange(TEXTURE)[:, None] // cell + torch.arange(TEXTURE)[None, :] // cell) % 2).float()
    coarse = torch.rand(1, 1, 8, 8, generator=g)
    noise = torch.nn.functional.interpolate(coarse, size=(TEXTURE, TEXTURE), mode="bicubic", align_corners=False)[0, 0]
    cx, cy = torch.rand(2, generator=g).tolist()
    rings = 0.5 + 0.5 * torch.cos(2 * math.pi * 10 * torch.sqrt((x - cx) ** 2 + (y - cy) ** 2))
    plaid = 0.25 * (2 + torch.sin(2 * math.pi * 5 * x) + torch.sin(2 * math.pi * 7 * (x + y)))
    fields = [stripes, checker, (noise - noise.min()) / (noise.max() - noise.min()), rings, plaid]
    return torch.stack([_paint(f, g) for f in fields])


def compose(digits: Tensor, texture: Tensor, g: torch.Generator) -> Tensor:
    """Digits uint8 ``(N, 28, 28)`` on random crops of one texture ``(3, 128, 128)`` -> uint8 ``(N, 3, 28, 28)``."""
    n = digits.shape[0]
    oy, ox = torch.randint(0, TEXTURE - SIDE + 1, (2, n), generator=g)
    rows = oy[:, None] + torch.arange(SIDE)  # (N, 28)
    cols = ox[:, None] + torch.arange(SIDE)
    background = texture[:, rows[:, :, None], cols[:, None, :]].permute(1, 0, 2, 3).float()  # (N, 3, 28, 28)
    ink = digits.float()[:, None] / 255.0  # (N, 1, 28, 28): 1 where the digit is
    return (background * (1 - ink) + (255 - background) * ink).round().to(torch.uint8)


def same_class_instances(labels: Tensor, g: torch.Generator) -> Tensor:
    """For each example, the index of a random example of its class in the same split ``(N,)``."""
    out = torch.empty_like(labels)
    for k in labels.unique().tolist():
        members = (labels == k).nonzero().squeeze(1)
        out[members] = members[torch.randint(0, len(members), (len(members),), generator=g)]
    return out


class PolyMnistDataset(IdxImageDataset):
    Config = PolyMnistConfig
    config: PolyMnistConfig
    fields: ClassVar[dict[str, str]] = {**{f"m{i}": "conv_image" for i in range(MODALITIES)}, "label": "label"}
    class_field: ClassVar[str | None] = "label"
    folder: ClassVar[str] = "MNIST"

    def load(self):
        mnist = super().load()  # the seeded train/val split of MNIST's training images, and its test images
        if self.config.train_size is not None:
            mnist["train"] = {k: v[: self.config.train_size] for k, v in mnist["train"].items()}
        backgrounds = textures(self.config.texture_seed)
        out = {}
        for offset, (name, split) in enumerate(mnist.items()):  # the same draws for a split whatever others exist
            # Wrapped to torch's 64 bits, so that every seed below 2**63 works; those that fitted draw as before.
            g = torch.Generator().manual_seed((self.config.sample_seed * 7919 + offset) % 2**64)
            digits, labels = split["image"][:, 0], split["label"]
            fields = {"label": labels}
            for m in range(MODALITIES):
                source = torch.arange(len(labels)) if m == 0 else same_class_instances(labels, g)
                fields[f"m{m}"] = compose(digits[source], backgrounds[m], g)
            out[name] = fields
        return out


@hookimpl
def register_datasets(register):
    register("polymnist_style", PolyMnistDataset)

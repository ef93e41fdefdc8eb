"""MultiMNIST (the MVAE paper's): up to four MNIST digits on a 50x50 canvas, and the digits as text.

Each canvas of a split holds between ``min_digits`` and ``max_digits`` digits of the same split of
mmgen's MNIST (the seeded train/validation cut of the official training images, and the test
images), each 28x28 digit pasted at a random place (overlaps keep the brighter pixel). The second
field, ``digits``, is the text of the digits read left to right by their position, padded at the end
("372_" in ``max_digits`` = 4 characters over "_0123456789"): pair it with a ``text`` modality of
that length and alphabet. Everything comes from ``seed`` through torch's CPU generator, so the bytes
are the same on every machine; the splits are cached as safetensors under
``<root>/MultiMNIST/<key>/`` (the key names the settings and the MNIST split) and never downloaded.
"""

from __future__ import annotations

import hashlib
import json
from typing import ClassVar

import torch
from mmgen import IdxImageConfig, IdxImageDataset, hookimpl, load_tensors, save_tensors
from pydantic import Field, model_validator
from torch import Tensor

from mmgen_text.spelling import DEFAULT_PAD

DIGITS = "0123456789"
SIDE = 28


class MultiMnistConfig(IdxImageConfig):
    """MultiMNIST made from MNIST in ``<root>/MNIST/raw``; pair ``digits`` with a text modality of
    length ``max_digits`` and alphabet 0-9."""

    canvas: int = Field(50, ge=SIDE, le=128, description="Side of the square canvas in pixels.")
    min_digits: int = Field(1, ge=0, le=4, description="Fewest digits on a canvas.")
    max_digits: int = Field(4, ge=1, le=4, description="Most digits on a canvas (and the text's length).")
    seed: int = Field(0, ge=0, lt=2**63, description="Seed of the canvases: which digits, how many, where.")
    cache: bool = Field(True, description="Keep the generated splits under <root>/MultiMNIST/ for the next load.")

    @model_validator(mode="after")
    def _counts(self) -> MultiMnistConfig:
        if self.min_digits > self.max_digits:
            raise ValueError(f"min_digits={self.min_digits} exceeds max_digits={self.max_digits}")
        return self


def make_canvases(images: Tensor, labels: Tensor, config: MultiMnistConfig, g: torch.Generator) -> dict[str, Tensor]:
    """MNIST digits ``(N, 1, 28, 28)`` -> canvases uint8 ``(N, 1, S, S)`` and texts int64 ``(N, max_digits)``."""
    n, S, slots = images.shape[0], config.canvas, config.max_digits
    counts = torch.randint(config.min_digits, config.max_digits + 1, (n,), generator=g)  # (N,)
    picks = torch.randint(0, n, (n, slots), generator=g)  # which MNIST digit in each slot
    xs = torch.randint(0, S - SIDE + 1, (n, slots), generator=g)
    ys = torch.randint(0, S - SIDE + 1, (n, slots), generator=g)
    used = torch.arange(slots)[None] < counts[:, None]  # (N, slots)
    canvas = torch.zeros(n, 1, S, S, dtype=torch.uint8)
    for i in range(n):
        for j in range(int(counts[i])):
            x, y = int(xs[i, j]), int(ys[i, j])
            region = canvas[i, 0, y : y + SIDE, x : x + SIDE]
            torch.maximum(region, images[picks[i, j], 0], out=region)
    # The text reads the digits left to right: unused slots sort last and become padding.
    order = torch.where(used, xs, S).argsort(dim=1, stable=True)  # (N, slots)
    digits = torch.where(used, labels[picks] + 1, 0).gather(1, order)  # +1: index 0 is the padding
    return {"image": canvas, "digits": digits.long()}


class MultiMnistDataset(IdxImageDataset):
    Config = MultiMnistConfig
    config: MultiMnistConfig
    fields: ClassVar[dict[str, str]] = {"image": "conv_image", "digits": "text"}
    class_field: ClassVar[str | None] = None  # a canvas has several classes: its text is its ground truth
    folder: ClassVar[str] = "MNIST"
    vocabulary: ClassVar[str] = DEFAULT_PAD + DIGITS

    def _key(self, sizes: dict[str, int]) -> str:
        settings = {k: getattr(self.config, k) for k in ("canvas", "min_digits", "max_digits", "seed", "val_size",
                                                        "split_seed")}
        text = json.dumps({**settings, "sizes": sizes, "v": 1}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def load(self) -> dict[str, dict[str, Tensor]]:
        mnist = super().load()
        folder = self.root / "MultiMNIST" / self._key({k: len(v["label"]) for k, v in mnist.items()})
        out = {}
        for offset, (name, split) in enumerate(mnist.items()):
            path = folder / f"{name}.safetensors"
            if self.config.cache and path.is_file():
                out[name] = load_tensors(path)[0]
                continue
            # Wrapped to torch's 64 bits, so that every seed below 2**63 works; those that fitted draw as before.
            g = torch.Generator().manual_seed((self.config.seed * 7919 + offset) % 2**64)
            out[name] = make_canvases(split["image"], split["label"], self.config, g)
            if self.config.cache:
                folder.mkdir(parents=True, exist_ok=True)
                save_tensors(path, out[name], {"seed": self.config.seed})
        return out


@hookimpl
def register_datasets(register):
    register("multimnist", MultiMnistDataset)

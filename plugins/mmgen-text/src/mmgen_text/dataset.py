"""MNIST image + label + text: the text spells the digit's English name at a random offset.

This is the text modality of MNIST-SVHN-Text (Sutter et al. 2020): "seven" in a string of
``text_length`` characters, padded with ``_`` around it ("__seven_"). Images, labels and splits are
exactly those of mmgen's ``mnist`` dataset: this class extends ``mmgen.IdxImageDataset``, the loader
mmgen's own MNIST derives from, so it reads the same files under the same root and gives the same
errors when they are missing.
The offsets are drawn from ``text_seed``, so the texts are the same on every load.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch
from mmgen import SPLITS, IdxImageConfig, IdxImageDataset, Split, hookimpl
from mmgen.recipe.memory import refuse_if_too_big
from pydantic import Field

from mmgen_text.spelling import DEFAULT_ALPHABET, DEFAULT_PAD, DIGIT_NAMES, spell, word_table

RECIPES = Path(__file__).parent / "recipes"


class MnistTextConfig(IdxImageConfig):
    """MNIST in torchvision's layout plus a text per image; pair it with a ``text`` modality of the same length."""

    text_length: int = Field(
        8, ge=max(map(len, DIGIT_NAMES)), description="Characters per text (the text modality's length)."
    )
    text_seed: int = Field(0, ge=0, lt=2**63, description="Seed of the random offsets at which the names are placed.")


class MnistTextDataset(IdxImageDataset):
    """Texts use the text modality's default vocabulary: pad ``_`` (index 0), then ``a``-``z``."""

    Config = MnistTextConfig
    config: MnistTextConfig
    fields: ClassVar[dict[str, str]] = {"image": "image", "label": "label", "text": "text"}
    class_field: ClassVar[str | None] = "label"

    def load(self) -> dict[str, Split]:
        splits = super().load()  # {"train", "val", "test"} -> {"image": (N, 1, 28, 28) uint8, "label": (N,)}
        L, n = self.config.text_length, sum(splits[name]["label"].shape[0] for name in SPLITS)
        nbytes = (n + len(DIGIT_NAMES)) * L * 8  # int64: the texts (N, L) and the names' table (K, L)
        refuse_if_too_big(f"data.text_length = {L:,}, for the texts of {n:,} examples,", nbytes,
                          hint="data.text_length is the text modality's length: 8 in the shipped recipe")
        table, lengths = word_table(DIGIT_NAMES, DEFAULT_PAD + DEFAULT_ALPHABET, self.config.text_length)
        gen = torch.Generator().manual_seed(self.config.text_seed)
        for name in SPLITS:  # a fixed order, so each split's offsets depend only on the seed
            labels = splits[name]["label"]  # (N,)
            u = torch.rand(labels.shape[0], generator=gen)  # (N,)
            splits[name]["text"] = spell(table, lengths, labels, u)  # (N, L) int64
        return splits


@hookimpl
def register_datasets(register):
    register("mnist_text", MnistTextDataset)


@hookimpl
def register_recipes(register):
    register(RECIPES)

"""MNIST image + label (the MVAE paper's), in torchvision's layout: ``<root>/MNIST/raw/*-ubyte``.

Everything but the name comes from ``mmgen.IdxImageDataset``: local files first, a download
through torchvision when ``data.download`` allows, and the seeded 50k/10k train/validation split
of the official training images; the official test images are the test split.
"""

from __future__ import annotations

from typing import ClassVar

from mmgen import IdxImageConfig, IdxImageDataset, hookimpl


class MnistConfig(IdxImageConfig):
    """MNIST in torchvision's layout: ``<root>/MNIST/raw/*-ubyte``."""


class MnistDataset(IdxImageDataset):
    Config = MnistConfig
    config: MnistConfig
    folder: ClassVar[str] = "MNIST"


@hookimpl
def register_datasets(register):
    register("mnist", MnistDataset)

"""Fashion-MNIST image + label: MNIST's loader and split pointed at Zalando's clothing images.

Looks in ``<root>/FashionMNIST/raw/*-ubyte`` (torchvision's layout, through ``mmgen.IdxImageDataset``),
then in the folder Debian's ``dataset-fashion-mnist`` package installs
(``/usr/share/datasets/fashion-mnist/*-ubyte.gz``), then downloads through torchvision when
``data.download`` allows. Same sizes, format and validation split (``val_size``, ``split_seed``) as
MNIST, so recipes differ only in ``data.kind`` and class names.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from mmgen import IdxImageConfig, IdxImageDataset, hookimpl

# Label k's name, as in torchvision.datasets.FashionMNIST.classes (kept here so that listing
# the plugins does not import torchvision); recipes/fashion_mvae.toml repeats them for display.
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


class FashionMnistConfig(IdxImageConfig):
    """Fashion-MNIST: ``<root>/FashionMNIST/raw/*-ubyte``, else ``/usr/share/datasets/fashion-mnist/*.gz``."""


class FashionMnistDataset(IdxImageDataset):
    Config = FashionMnistConfig
    config: FashionMnistConfig
    folder: ClassVar[str] = "FashionMNIST"
    system_dirs: ClassVar[tuple[Path, ...]] = (Path("/usr/share/datasets/fashion-mnist"),)  # Debian's package
    classes: ClassVar[tuple[str, ...]] = CLASSES


@hookimpl
def register_datasets(register):
    register("fashion_mnist", FashionMnistDataset)

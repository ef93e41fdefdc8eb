"""MNIST image + label through torchvision: local files first, download when allowed and online.

Splits: the official 60k training images are cut into train and validation by a seeded
permutation (50k/10k by default); the official 10k test images are the test split, which
training never looks at.
"""

from __future__ import annotations

import contextlib
import sys
from typing import ClassVar

import torch
from pydantic import Field

from mmgen import DataError, Dataset, DatasetConfig, hookimpl
from mmgen.dataset import Split

RAW_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


class MnistConfig(DatasetConfig):
    """MNIST in torchvision's layout: ``<root>/MNIST/raw/*-ubyte``."""

    val_size: int = Field(10_000, ge=1, description="Examples of the official training set held out for validation.")
    split_seed: int = Field(0, description="Seed of the permutation that picks the validation examples.")


class MnistDataset(Dataset):
    Config = MnistConfig
    config: MnistConfig
    fields: ClassVar[dict[str, str]] = {"image": "image", "label": "label"}
    class_field: ClassVar[str | None] = "label"
    folder = "MNIST"  # torchvision's class name, also its folder under root

    def torchvision_class(self):
        from torchvision.datasets import MNIST

        return MNIST

    def read(self, train: bool):
        cls = self.torchvision_class()
        root = self.root
        raw = root / self.folder / "raw"
        missing = [f for f in RAW_FILES if not (raw / f).is_file()]
        if missing and self.config.download:
            try:
                with contextlib.redirect_stdout(sys.stderr):  # torchvision prints its progress: keep stdout for results
                    return cls(str(root), train=train, download=True)
            except Exception as exc:  # offline, mirror down, read-only folder...
                raise DataError(
                    f"{self.folder} is not in {raw} (expected {', '.join(RAW_FILES)}) and downloading it failed: "
                    f"{' '.join(str(exc).split())[:400] or exc.__class__.__name__}"
                )
        if missing:
            raise DataError(
                f"{self.folder} is not in {raw}: missing {', '.join(missing)} (download is off; expected "
                f"{', '.join(RAW_FILES)})"
            )
        try:
            return cls(str(root), train=train, download=False)
        except Exception as exc:
            raise DataError(f"could not read {self.folder} from {raw}: {exc}")

    def load(self) -> dict[str, Split]:
        train, test = self.read(train=True), self.read(train=False)
        images, labels = train.data.unsqueeze(1), train.targets.long()  # (N, 1, 28, 28) uint8, (N,)
        n = images.shape[0]
        if self.config.val_size >= n:
            raise DataError(f"data.val_size={self.config.val_size} leaves no training examples out of {n}")
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.config.split_seed))
        val, tr = order[: self.config.val_size], order[self.config.val_size :]
        return {
            "train": {"image": images[tr], "label": labels[tr]},
            "val": {"image": images[val], "label": labels[val]},
            "test": {"image": test.data.unsqueeze(1), "label": test.targets.long()},
        }


@hookimpl
def register_datasets(register):
    register("mnist", MnistDataset)

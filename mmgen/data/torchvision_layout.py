"""Image + label data sets of torchvision's MNIST family: local files first, download when allowed.

``<root>/<folder>/raw/*-ubyte`` (torchvision's layout), then gzipped copies in ``system_dirs``
(as a distribution package installs them), then a download through torchvision. Splits: the
official training images are cut into train and validation by a seeded permutation (50k/10k for
MNIST by default); the official test images are the test split, which training never looks at.

A plugin derives its data set from :class:`IdxImageDataset` by naming the folder (which is also
the ``torchvision.datasets`` class) and registering it; a subclass may add fields in ``load``.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import ClassVar

import torch
from pydantic import Field
from torch import Tensor

from mmgen.config import DatasetConfig
from mmgen.data.idx import read_idx_gz
from mmgen.errors import DataError
from mmgen.plugin.dataset import Dataset, Split

RAW_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


class IdxImageConfig(DatasetConfig):
    """An MNIST-family data set in torchvision's layout: ``<root>/<folder>/raw/*-ubyte``."""

    val_size: int = Field(10_000, ge=1, description="Examples of the official training set held out for validation.")
    split_seed: int = Field(
        0, ge=0, lt=2**63, description="Seed of the permutation that picks the validation examples."
    )


class IdxImageDataset(Dataset):
    """uint8 images ``(N, 1, 28, 28)`` and int64 labels ``(N,)`` in fields ``image`` and ``label``."""

    Config = IdxImageConfig
    config: IdxImageConfig
    fields: ClassVar[dict[str, str]] = {"image": "image", "label": "label"}
    class_field: ClassVar[str | None] = "label"
    folder: ClassVar[str] = "MNIST"  # torchvision's class name, also its folder under root
    # Folders outside root holding the four files gzipped, as a distribution package installs them;
    # tried after root and before a download. A class attribute so tests can point it at tmp_path.
    system_dirs: ClassVar[tuple[Path, ...]] = ()

    def torchvision_class(self):
        """The ``torchvision.datasets`` class that reads and downloads ``folder`` (imported only when needed)."""
        import torchvision.datasets

        return getattr(torchvision.datasets, self.folder)

    def read(self, train: bool) -> tuple[Tensor, Tensor]:
        """uint8 images (N, 28, 28) and int64 labels (N,): from root, else a system folder, else a download."""
        root = self.root
        raw = root / self.folder / "raw"
        missing = [f for f in RAW_FILES if not (raw / f).is_file()]
        if not missing:
            try:
                found = self.torchvision_class()(str(root), train=train, download=False)
            except Exception as exc:
                raise DataError(f"could not read {self.folder} from {raw}: {exc}")
            return found.data, found.targets.long()
        looked = [f"{raw} (missing {', '.join(missing)})"]
        for folder in self.system_dirs:
            absent = [f"{f}.gz" for f in RAW_FILES if not (folder / f"{f}.gz").is_file()]
            if not absent:
                prefix = "train" if train else "t10k"
                images = read_idx_gz(folder / f"{prefix}-images-idx3-ubyte.gz")
                labels = read_idx_gz(folder / f"{prefix}-labels-idx1-ubyte.gz")
                return images, labels.long()
            looked.append(f"{folder} (missing {', '.join(absent)})")
        where = f"{self.folder} not found: looked in {' and in '.join(looked)}"
        if not self.config.download:
            raise DataError(f"{where}; download is off")
        return self._download(train, where)

    def _download(self, train: bool, where: str) -> tuple[Tensor, Tensor]:
        """torchvision's download; a failed one leaves no empty folders behind (they would look like data)."""
        made = [p for p in (self.root, self.root / self.folder, self.root / self.folder / "raw") if not p.exists()]
        try:
            with contextlib.redirect_stdout(sys.stderr):  # torchvision prints its progress: keep stdout for results
                found = self.torchvision_class()(str(self.root), train=train, download=True)
        except Exception as exc:  # offline, mirror down, read-only folder...
            for folder in reversed(made):
                with contextlib.suppress(OSError):
                    folder.rmdir()  # only if empty: a partial download stays for torchvision to resume
            raise DataError(f"{where}; downloading it failed: {' '.join(str(exc).split())[:400] or type(exc).__name__}")
        return found.data, found.targets.long()

    def load(self) -> dict[str, Split]:
        (images, labels), (test_images, test_labels) = self.read(train=True), self.read(train=False)
        images, test_images = images.unsqueeze(1), test_images.unsqueeze(1)  # (N, 1, 28, 28) uint8
        n = images.shape[0]
        if self.config.val_size >= n:
            raise DataError(f"data.val_size={self.config.val_size} leaves no training examples out of {n}")
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.config.split_seed))
        val, tr = order[: self.config.val_size], order[self.config.val_size :]
        return {
            "train": {"image": images[tr], "label": labels[tr]},
            "val": {"image": images[val], "label": labels[val]},
            "test": {"image": test_images, "label": test_labels},
        }

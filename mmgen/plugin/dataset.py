"""The Dataset interface: a plugin returns whole splits as tensors, one per field.

Training keeps the splits on the device and slices batches out of them, so no per-example
Python work happens in the training loop.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

from torch import Tensor

from mmgen.config import DatasetConfig

SPLITS = ("train", "val", "test")
Split = dict[str, Tensor]  # field name -> stored tensor (N, *event), e.g. uint8 images, int64 labels


class Dataset(ABC):
    """A data set of several aligned fields (for example ``image`` and ``label``).

    ``fields`` maps each field name to the modality kind it is meant for; recipe modalities are
    matched to fields by name before any data is read.
    """

    Config: ClassVar[type[DatasetConfig]] = DatasetConfig
    fields: ClassVar[dict[str, str]] = {}
    # The field holding each example's class (int64), the ground truth of cross-modal accuracy; None if none.
    class_field: ClassVar[str | None] = None

    def __init__(self, config: DatasetConfig):
        self.config = config

    @property
    def root(self) -> Path:
        """recipe ``data.root``, else ``$MMGEN_DATA_ROOT``, else ``~/.cache/mmgen/data``."""
        root = self.config.root or os.environ.get("MMGEN_DATA_ROOT")
        return Path(root).expanduser() if root else Path.home() / ".cache" / "mmgen" / "data"

    @abstractmethod
    def load(self) -> dict[str, Split]:
        """Return ``{"train": ..., "val": ..., "test": ...}``, each ``{field: tensor (N, *event)}`` on the CPU."""

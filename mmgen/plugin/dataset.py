"""The Dataset interface: a plugin returns whole splits as tensors, or reads them example by example.

Where the training split fits (``data.on_device``), training keeps it on the device and slices
batches out of it, so no per-example Python work happens in the loop. A data set too large for
that is read through a ``torch.utils.data.DataLoader`` with workers instead: from the tensors of
``load()``, or, for data that does not fit in host memory either, from the plugin's ``reader()``.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar, Protocol

from torch import Tensor

from mmgen.config import DatasetConfig

SPLITS = ("train", "val", "test")
Split = dict[str, Tensor]  # field name -> stored tensor (N, *event), e.g. uint8 images, int64 labels


class ExampleReader(Protocol):
    """Per-example reads of one split: ``len(reader)`` examples, ``reader[i]`` -> ``{field: (*event)}``.

    It may also offer ``__getitems__(indices: list[int]) -> {field: (n, *event)}``, a whole batch in
    one read, which the DataLoader then uses instead of n single reads. It is read in DataLoader
    worker processes, so it must be picklable (hold paths and indices, not open files).
    """

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> dict[str, Tensor]: ...


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
        """Return ``{"train": ..., "val": ..., "test": ...}``, each ``{field: tensor (N, *event)}`` on the CPU.

        A data set that implements ``reader`` may leave out the splits it reads per example.
        """

    def reader(self, split: str) -> ExampleReader | None:
        """Per-example reads of ``split`` (an ``ExampleReader``), or None to use the tensors of ``load()``.

        Implement it for data too large for host memory (image folders): training then streams the
        split through DataLoader workers. Validation and evaluation read their splits whole, so
        those must fit in host memory.
        """
        return None

    def record(self) -> dict[str, Tensor]:
        """The tensors that define how the examples were assembled, ``{name: tensor}``; empty by default.

        A data set that builds its examples from others (pairs matched by a seed, say) returns what it
        chose, e.g. the indices of each pair per split. Training saves it in the run directory as
        ``data_record.safetensors``, and a later command refuses to score the run on data assembled
        otherwise (another seed, other files). Return the same tensors on every call with the same config.
        """
        return {}

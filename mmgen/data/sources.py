"""The splits of a data set, whole (tensors) or example by example (readers), and their sizes.

``DataSource`` wraps a Dataset plugin: ``tensors(split)`` gives a split whole, materializing a
per-example split when a plugin only reads that way; ``reader(split)`` gives per-example reads,
over the tensors of ``load()`` when the plugin has no reader of its own. ``load()`` is called at
most once.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mmgen.errors import DataError
from mmgen.plugin.dataset import Dataset, ExampleReader, Split

MATERIALIZE_BATCH = 4096  # examples per read when a per-example split is made whole


class TensorReader:
    """Per-example and batched reads of in-memory tensors ``{field: (N, *event)}``."""

    def __init__(self, split: Split, names: list[str]):
        self.split = {n: split[n] for n in names}
        self.length = next(iter(self.split.values())).shape[0]

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {n: t[index] for n, t in self.split.items()}

    def __getitems__(self, indices: list[int]) -> dict[str, Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return {n: t[idx] for n, t in self.split.items()}  # one gather per field, not len(indices) reads


def read_batch(reader: ExampleReader, indices: list[int]) -> dict[str, Tensor]:
    """``{field: (n, *event)}``: one batched read when the reader offers it, else n reads stacked."""
    batched = getattr(reader, "__getitems__", None)
    if callable(batched):
        return batched(indices)
    examples = [reader[i] for i in indices]
    return {n: torch.stack([e[n] for e in examples]) for n in examples[0]}


class DataSource:
    def __init__(self, dataset: Dataset | None, loaded: dict[str, Split] | None = None):
        self.dataset = dataset
        self._loaded = loaded

    @classmethod
    def of(cls, splits: dict[str, Split]) -> DataSource:
        """A source over splits already in memory (tests, benchmarks)."""
        return cls(None, splits)

    def _own_reader(self, split: str) -> ExampleReader | None:
        return self.dataset.reader(split) if self.dataset is not None else None

    def loaded(self) -> dict[str, Split]:
        if self._loaded is None:
            self._loaded = self.dataset.load()
        return self._loaded

    def reader(self, split: str, names: list[str]) -> ExampleReader:
        own = self._own_reader(split)
        return own if own is not None else TensorReader(self._split(split), names)

    def tensors(self, split: str, names: list[str]) -> Split:
        """The split whole, ``{field: (N, *event)}`` on the CPU, for the fields ``names``: from ``load()``
        when it has the split, else read example by example from the plugin's reader."""
        own = self._own_reader(split)
        if own is None or split in self.loaded():
            part = self._split(split)
            return {n: part[n] for n in names}
        chunks = [read_batch(own, list(range(i, min(i + MATERIALIZE_BATCH, len(own)))))
                  for i in range(0, len(own), MATERIALIZE_BATCH)]
        return {n: torch.cat([c[n] for c in chunks]) for n in names}

    def nbytes(self, split: str, names: list[str]) -> int:
        """Bytes the split takes as tensors, from its length and one example."""
        reader = self._own_reader(split)
        if reader is None:
            return sum(t.numel() * t.element_size() for n, t in self._split(split).items() if n in names)
        first = reader[0]
        return len(reader) * sum(math.prod(first[n].shape) * first[n].element_size() for n in names)

    def _split(self, split: str) -> Split:
        loaded = self.loaded()
        if split not in loaded:
            raise DataError(f"the data set has no {split!r} split "
                            f"(it has {', '.join(loaded) or 'none'})")
        return loaded[split]

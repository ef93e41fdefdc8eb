"""Training batches by one of two paths that give the same batches for the same order.

* ``InMemoryBatches``: the whole training split on the training device; a batch is one index op
  (what makes mmgen fast on MNIST).
* ``StreamingBatches``: the split stays where the data set keeps it and a
  ``torch.utils.data.DataLoader`` with workers reads each batch (``__getitems__``: one read per
  batch), into pinned memory on CUDA; the batch sampler is the epoch's seeded order itself.

``data.on_device = auto`` keeps the split on the device when it takes at most a quarter of the
device's memory (``choose_path``), and training says which path it chose.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator

import torch
from torch import Tensor
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from mmgen.data.sources import DataSource, read_batch
from mmgen.plugin.dataset import ExampleReader
from mmgen.recipe.memory import human, memory_of

# The examples' indices (on the device), their fields, and their weight in the global batch (1 in one process).
Batch = tuple[Tensor, dict[str, Tensor], float]
Shard = Callable[[Tensor], tuple[Tensor, float]] | None  # this rank's part of a global batch and its weight
ON_DEVICE_SHARE = 0.25  # auto keeps a split on the device when it takes at most this share of its memory


def _batches(order: Tensor, batch_size: int, start: int, shard: Shard) -> list[tuple[Tensor, float]]:
    """The epoch's order cut into batches, from batch ``start`` on: (this rank's indices, their weight)."""
    return [shard(c) if shard else (c, 1.0) for c in list(order.split(batch_size))[start:]]


class InMemoryBatches:
    def __init__(self, split: dict[str, Tensor], names: list[str], device: torch.device):
        # Keep the stored dtype (uint8 images are 4x smaller); `prepare` converts one batch at a time.
        self.data = {n: split[n].to(device) for n in names}
        self.device = device
        self.length = next(iter(self.data.values())).shape[0]

    def epoch(self, order: Tensor, batch_size: int, start: int = 0, shard: Shard = None) -> Iterator[Batch]:
        order = order.to(self.device)
        for idx, weight in _batches(order, batch_size, start, shard):
            yield idx, {name: d[idx] for name, d in self.data.items()}, weight


class _Reads(TorchDataset):
    """A reader as a torch map-style dataset whose batched read takes a whole batch at once."""

    def __init__(self, reader: ExampleReader):
        self.reader = reader

    def __len__(self) -> int:
        return len(self.reader)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return self.reader[index]

    def __getitems__(self, indices: list[int]) -> dict[str, Tensor]:
        return read_batch(self.reader, indices)


def _leave_signals_to_the_trainer(_worker_id: int) -> None:
    """Workers ignore SIGINT and SIGTERM: a signal to the whole process group (Ctrl-C, SLURM, systemd) must
    let the trainer save its checkpoint, not kill a worker under it; the loader stops the workers itself."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _collate(batch):
    return batch  # __getitems__ already made the batch


class StreamingBatches:
    def __init__(self, reader: ExampleReader, device: torch.device, workers: int):
        self.reads, self.device, self.workers = _Reads(reader), device, workers
        self.length = len(reader)

    def epoch(self, order: Tensor, batch_size: int, start: int = 0, shard: Shard = None) -> Iterator[Batch]:
        chunks = _batches(order.cpu(), batch_size, start, shard)
        # Its own generator: a DataLoader draws its workers' base seed, which must not move the global RNG
        # (the reparameterization noise), or the two paths would train differently.
        loader = DataLoader(self.reads, batch_sampler=[c.tolist() for c, _ in chunks], num_workers=self.workers,
                            collate_fn=_collate, pin_memory=self.device.type == "cuda",
                            prefetch_factor=4 if self.workers else None, generator=torch.Generator().manual_seed(0),
                            worker_init_fn=_leave_signals_to_the_trainer)
        for (idx, weight), batch in zip(chunks, loader):
            yield idx.to(self.device, non_blocking=True), {k: t.to(self.device, non_blocking=True)
                                                           for k, t in batch.items()}, weight


def choose_path(setting: bool | str, source: DataSource, names: list[str], device: torch.device,
                workers: int) -> tuple[InMemoryBatches | StreamingBatches, str]:
    """The training batches for ``data.on_device``, and a line saying which path was chosen and why."""
    nbytes = source.nbytes("train", names)
    budget = memory_of(device) * ON_DEVICE_SHARE
    on_device = setting if isinstance(setting, bool) else nbytes <= budget
    why = "data.on_device" if isinstance(setting, bool) else f"auto: {'at most' if on_device else 'more than'} " \
        f"a quarter of the {human(memory_of(device))} of {device.type}"
    if on_device:
        split = source.tensors("train", names)
        return InMemoryBatches(split, names, device), f"the training split ({human(nbytes)}) stays on {device} ({why})"
    reader = source.reader("train", names)
    return StreamingBatches(reader, device, workers), (
        f"the training split ({human(nbytes)}) streams through a DataLoader with {workers} worker(s) ({why})")

"""Multi-process training on torch.distributed, launched by torchrun (or srun with torchrun inside).

``torchrun --nproc-per-node N -m mmgen train RECIPE`` starts N processes with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous in their environment; each trains a
``DistributedDataParallel`` model on its shard of every global batch (``train.batch_size`` stays
the global batch), with gloo on the CPU and nccl on CUDA (one GPU per process, ``cuda:LOCAL_RANK``).
Rank 0 alone validates, writes the run directory and logs; the decisions every rank must share
(a divergence, a stop request, the validation numbers) are reduced or broadcast, so all ranks
stop at the same step. A single process (no ``WORLD_SIZE``) uses none of this.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from mmgen.errors import MmgenError

# The stop flag is shared every step over gloo, on the host, even when training uses nccl: a flag
# read back from the GPU every step would be a host sync per step. None: the default group (gloo).
_host_group: Any = None


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> Distributed:
        """The process's place in a torchrun job; rank 0 of 1 outside one."""
        try:
            return cls(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                       int(os.environ.get("LOCAL_RANK", 0)))
        except ValueError as exc:
            raise MmgenError(f"RANK, WORLD_SIZE or LOCAL_RANK is not a number: {exc}")

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def start(self, device: torch.device) -> torch.device:
        """Join the process group (gloo on the CPU, nccl on CUDA) and return this rank's device."""
        if not self.active:
            return device
        if device.type == "cuda":
            device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
        elif device.type != "cpu":
            raise MmgenError(f"torchrun training runs on cpu or cuda, not {device.type}")
        if not dist.is_initialized():
            # Rank 0 alone trains the probe's judges and validates while the others wait at a collective.
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timedelta(minutes=30))
        global _host_group
        _host_group = dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else None
        return device

    def stop(self) -> None:
        global _host_group
        if self.active and dist.is_initialized():
            dist.destroy_process_group()
        _host_group = None

    # ---- what the ranks share ------------------------------------------------------------------
    def mean(self, sums: dict[str, Tensor]) -> dict[str, Tensor]:
        """Each value averaged over the ranks (one all-reduce for all of them)."""
        if not self.active or not sums:
            return sums
        stacked = torch.stack([v.detach().float().reshape(()) for v in sums.values()])
        dist.all_reduce(stacked)
        return dict(zip(sums, stacked / self.world))

    def any(self, flag: bool) -> bool:
        """True on every rank when it is True on any (a host-side all-reduce: it never waits for the GPU)."""
        if not self.active:
            return flag
        value = torch.tensor([float(flag)])
        dist.all_reduce(value, op=dist.ReduceOp.MAX, group=_host_group)
        return bool(value.item())

    def share(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank."""
        if not self.active:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order, on every rank."""
        if not self.active:
            return [value]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, value)
        return out

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def shard(self, idx: Tensor) -> tuple[Tensor, float]:
        """This rank's part of a global batch of indices (contiguous, sizes differing by at most one), and the
        weight that makes DDP's mean over ranks the mean over the global batch: n_rank * world / n.

        A rank left without an example (a last batch smaller than the world) trains on one example with
        weight 0, so it still takes part in every collective and adds nothing.
        """
        if not self.active:
            return idx, 1.0
        local = idx.tensor_split(self.world)[self.rank]
        if local.numel() == 0:
            return idx[:1], 0.0
        return local, local.numel() * self.world / idx.numel()

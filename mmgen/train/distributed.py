"""Multi-process training on torch.distributed, launched by torchrun (or srun with torchrun inside).

``torchrun --nproc-per-node N -m mmgen train RECIPE`` starts N processes with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous in their environment; each trains a
``DistributedDataParallel`` model on its shard of every global batch (``train.batch_size`` stays
the global batch), with gloo on the CPU and nccl on CUDA (one GPU per process, ``cuda:LOCAL_RANK``).
Rank 0 alone validates, writes the run directory and logs; the decisions every rank must share
(a divergence, a stop request, the validation numbers) are reduced or broadcast, so all ranks
stop at the same step. A single process (no ``WORLD_SIZE``) uses none of this.

That environment is checked before anything is loaded (every problem in one line, naming the
variable), and the ranks meet within ``train.rendezvous_timeout`` seconds or stop with one line.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from mmgen.config import TrainConfig
from mmgen.errors import MmgenError

# The stop flag is shared every step over gloo, on the host, even when training uses nccl: a flag
# read back from the GPU every step would be a host sync per step. None: the default group (gloo).
_host_group: Any = None

# Once the ranks have met, rank 0 alone trains the probe's judges and validates while the others
# wait at a collective: collectives keep 30 minutes, whatever the rendezvous timeout.
COLLECTIVE_TIMEOUT = timedelta(minutes=30)
MAX_WORLD = 2**31 - 1  # c10d keeps ranks and world sizes in a C int
WHOLE = re.compile(r"[+-]?[0-9]+")  # ASCII digits only: int() would also take "1_0" and other scripts' digits
LAUNCH_HINT = ("torchrun sets these; by hand, start WORLD_SIZE processes with the same WORLD_SIZE, MASTER_ADDR "
               "and MASTER_PORT, and each its own RANK from 0 (docs/training-at-scale.md)")


class LaunchError(MmgenError):
    """The torchrun environment is invalid, or the ranks did not all meet."""

    hint = LAUNCH_HINT
    every_rank = True  # each process prints its own line: no rank is sure to be there to say it for the others


def _shown(text: str) -> str:
    """An environment value for a message: a whole number as it is, anything else quoted (one line)."""
    return text.strip() if WHOLE.fullmatch(text.strip()) else repr(text)


def _number(env: Mapping[str, str], name: str, default: int | None, least: int, problems: list[str]) -> int | None:
    """The variable ``name`` as a whole number of at least ``least``, ``default`` when it is not set;
    None, with the problem noted, when it is not one."""
    text = env.get(name)
    if text is None:
        return default
    if not WHOLE.fullmatch(text.strip()):
        problems.append(f"{name}={_shown(text)} is not a whole number")
        return None
    value = int(text)
    if value < least:
        problems.append(f"{name}={value} is negative" if least == 0 else f"{name}={value} must be at least {least}")
        return None
    if value > MAX_WORLD:
        problems.append(f"{name}={value} is above torch.distributed's limit of {MAX_WORLD}")
        return None
    return value


def _places(env: Mapping[str, str], problems: list[str]) -> tuple[int, int, int]:
    """RANK, WORLD_SIZE and LOCAL_RANK, each checked against the others where they are valid."""
    world = _number(env, "WORLD_SIZE", 1, 1, problems)
    rank = _number(env, "RANK", 0, 0, problems)
    local = _number(env, "LOCAL_RANK", 0, 0, problems)
    local_world = _number(env, "LOCAL_WORLD_SIZE", None, 1, problems)  # torchrun's processes on this machine
    sized = f"WORLD_SIZE={world}" if "WORLD_SIZE" in env else "WORLD_SIZE (not set: 1 process)"
    if world is not None and world > 1 and "RANK" not in env:
        problems.append(f"WORLD_SIZE={world} needs RANK (this process's rank, from 0), which is not set")
    if world is not None and rank is not None and rank >= world:
        problems.append(f"RANK={rank} must be below {sized}: ranks count from 0")
    if world is not None and local_world is not None and local_world > world:
        problems.append(f"LOCAL_WORLD_SIZE={local_world} is above WORLD_SIZE={world}")
    elif local is not None and local_world is not None and local >= local_world:
        problems.append(f"LOCAL_RANK={local} must be below LOCAL_WORLD_SIZE={local_world}: local ranks count from 0")
    elif world is not None and local is not None and local >= world:
        problems.append(f"LOCAL_RANK={local} must be below {sized}: local ranks count from 0")
    return rank or 0, world or 1, local or 0


def _unresolved(host: str) -> str:
    """Why ``host`` names no address; "" when it does, or when the resolver could not answer now."""
    try:
        socket.getaddrinfo(host, None)
    except socket.gaierror as exc:
        return "" if exc.errno == socket.EAI_AGAIN else str(exc.strerror)  # EAI_AGAIN: let the rendezvous retry
    except (UnicodeError, ValueError) as exc:  # not even a well-formed name (a label over 63 characters...)
        return str(exc) or exc.__class__.__name__
    return ""


def _meeting_point(env: Mapping[str, str], world: int, problems: list[str]) -> str:
    """MASTER_ADDR:MASTER_PORT, where every rank meets rank 0 (or torchrun's store)."""
    address, port = env.get("MASTER_ADDR"), env.get("MASTER_PORT")
    if address is None:
        problems.append(f"WORLD_SIZE={world} needs MASTER_ADDR (the host of rank 0), which is not set")
    elif not address.strip():
        problems.append(f"MASTER_ADDR={address!r} is empty: it must name the host of rank 0")
    elif reason := _unresolved(address.strip()):
        problems.append(f"MASTER_ADDR={address!r} does not resolve to an address ({reason})")
    if port is None:
        problems.append(f"WORLD_SIZE={world} needs MASTER_PORT (a free port on the host of rank 0), which is not set")
    elif not (WHOLE.fullmatch(port.strip()) and 1 <= int(port) <= 65535):
        problems.append(f"MASTER_PORT={_shown(port)} is not a port: it must be a whole number from 1 to 65535")
    return f"{(address or '').strip()}:{(port or '').strip()}"


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    meeting_point: str = ""  # MASTER_ADDR:MASTER_PORT under torchrun

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Distributed:
        """The process's place in a torchrun job, rank 0 of 1 outside one; a LaunchError lists every
        problem of RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT.
        The rendezvous variables are read only when WORLD_SIZE > 1: one process needs none."""
        problems: list[str] = []
        rank, world, local = _places(env, problems)
        where = _meeting_point(env, world, problems) if world > 1 else ""
        if problems:
            raise LaunchError("; ".join(problems))
        return cls(rank, world, local, where)

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def start(self, device: torch.device,
              rendezvous_timeout: float = TrainConfig.model_fields["rendezvous_timeout"].default) -> torch.device:
        """Meet the other ranks within ``rendezvous_timeout`` seconds, join the process group (gloo on
        the CPU, nccl on CUDA) and return this rank's device."""
        if not self.active:
            return device
        if device.type == "cuda":
            if self.local_rank >= torch.cuda.device_count():
                raise LaunchError(f"LOCAL_RANK={self.local_rank} has no GPU: this machine has "
                                  f"{torch.cuda.device_count()}", hint="start at most one process per GPU "
                                  "(torchrun --nproc-per-node), or train with --device cpu")
            device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
        elif device.type != "cpu":
            raise MmgenError(f"torchrun training runs on cpu or cuda, not {device.type}")
        if not dist.is_initialized():
            store = self._meet(rendezvous_timeout)
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo", store=store, rank=self.rank,
                                    world_size=self.world, timeout=COLLECTIVE_TIMEOUT)
        global _host_group
        _host_group = dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else None
        return device

    def _meet(self, timeout_s: float) -> dist.Store:
        """The rendezvous: every rank reaches the store at MASTER_ADDR:MASTER_PORT and waits for all
        the others, within ``timeout_s`` seconds (gloo's own connect would wait the collective timeout)."""
        wait = timedelta(seconds=timeout_s)
        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")  # torchrun's store outlives a restart
        try:
            store = next(dist.rendezvous("env://", self.rank, self.world, timeout=wait))[0]
            store.set(f"mmgen/{attempt}/here/{self.rank}", "1")
            store.wait([f"mmgen/{attempt}/here/{r}" for r in range(self.world)], wait)
        except dist.DistError as exc:
            said = " ".join(str(exc).split())[:300]
            if "timed out" in said.lower() or "timeout" in said.lower():
                raise LaunchError(
                    f"rank {self.rank} of {self.world}: not every rank joined the rendezvous at {self.meeting_point} "
                    f"within train.rendezvous_timeout={timeout_s:g} s ({said})",
                    hint="start all WORLD_SIZE processes with the same MASTER_ADDR and MASTER_PORT (torchrun does), "
                    "or raise train.rendezvous_timeout when some start late (each loads the data first)") from exc
            raise LaunchError(f"rank {self.rank} of {self.world}: the rendezvous at {self.meeting_point} failed "
                              f"({said})", hint="MASTER_ADDR must be the host of rank 0 and MASTER_PORT a free "
                              "port there (torchrun sets both)") from exc
        store.set_timeout(COLLECTIVE_TIMEOUT)  # later store reads (new groups) wait like collectives
        return store

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

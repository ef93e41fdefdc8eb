"""Refuse sizes that cannot fit, before anything is allocated, with the estimate in the message.

A recipe with ``latent_dim = 1000000000`` or ``num_classes = 10000000000``, or ``mmgen sample
-n 1000000000000``, would otherwise ask the allocator for terabytes: at best an internal error,
at worst the kernel's OOM killer. The model is first built on torch's ``meta`` device, which
allocates nothing, to count its parameters and buffers; sampling, evaluation and the training's
cross-modal probe are counted from one decoded latent.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch

from mmgen.errors import MmgenError

FLOAT_BYTES = 4


def human(nbytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if nbytes < 1000 or unit == "PB":
            return f"{nbytes:.3g} {unit}"
        nbytes /= 1000
    return f"{nbytes:.3g} PB"


def memory_of(device: torch.device | str = "cpu") -> int:
    """Bytes of memory of ``device``: the GPU's own for cuda, the machine's physical memory otherwise."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_properties(device.index or 0).total_memory
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # no sysconf (Windows): assume a generous 1 TB
        return 10**12


def refuse_if_too_big(what: str, nbytes: float, device: torch.device | str = "cpu", hint: str = "") -> None:
    """Raise one line when ``nbytes`` exceed the memory of ``device``."""
    available = memory_of(device)
    if nbytes > available:
        raise MmgenError(f"{what} needs about {human(nbytes)}, more than the {human(available)} of memory of "
                         f"{torch.device(device).type}", hint=hint)


@dataclass(frozen=True)
class PartSize:
    parameters: int
    nbytes: int  # its parameters and buffers, each at its own dtype


def part_sizes(build: Callable[[], dict[str, torch.nn.Module]], what: str,
               hint: str = "") -> dict[str, PartSize] | None:
    """The size of each part ``build()`` makes, counted on the meta device (nothing is allocated);
    None when a part cannot be built there (a plugin that computes host values while it builds).
    A tensor past 64-bit sizes is refused here, as ``what``: no memory could hold it."""
    try:
        with torch.device("meta"):
            parts = build()
    except Exception as exc:  # anything a plugin does on meta tensors that needs real values
        if "overflow" in str(exc).lower():  # torch's words for a size past 64 bits, in its size checks
            raise MmgenError(f"{what} needs a tensor of more than 2**63 bytes, more than any memory holds",
                             hint=hint) from exc
        return None
    return {name: PartSize(sum(math.prod(p.shape) for p in part.parameters()),
                           sum(math.prod(t.shape) * t.element_size() for t in (*part.parameters(), *part.buffers())))
            for name, part in parts.items()}


@torch.no_grad()
def decoded_bytes(model, names: list[str] | None = None) -> int:
    """Memory one decoded sample takes: its latent, and each modality's parameters and means."""
    training = model.training
    model.eval()  # a decoder in training mode would move a batch norm's statistics
    try:
        params = model.decode(model.prior().mean, names)  # from z (1, L)
    finally:
        model.train(training)
    return FLOAT_BYTES * (model.latent_size + 2 * sum(p.numel() for p in params.values()))

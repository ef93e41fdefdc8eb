"""The IDX format of MNIST-family files (big-endian magic, dimensions, then uint8 data)."""

from __future__ import annotations

import gzip
import math
import struct
from pathlib import Path

import torch
from torch import Tensor

from mmgen.errors import DataError


def read_idx_gz(path: Path) -> Tensor:
    """A gzipped uint8 IDX file -> tensor of its shape, e.g. (N, 28, 28) images or (N,) labels.

    Hand-written because torchvision's IDX reader only takes an uncompressed path, and
    decompressing 55 MB to disk to hand it one costs more than reading the 8-16 byte header.
    """
    try:
        data = gzip.decompress(Path(path).read_bytes())
    except (OSError, EOFError) as exc:
        raise DataError(f"could not read {path}: {exc}")
    (magic,) = struct.unpack(">I", data[:4]) if len(data) >= 4 else (0,)
    ndim = magic & 0xFF
    if magic >> 8 != 0x08 or ndim not in (1, 3) or len(data) < 4 + 4 * ndim:  # 0x08: unsigned bytes
        raise DataError(f"{path} is not a uint8 IDX file (magic {magic:#010x})")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = data[4 + 4 * ndim :]
    if len(body) != math.prod(shape):
        raise DataError(f"{path} is truncated: header says {shape}, found {len(body)} bytes of data")
    return torch.frombuffer(bytearray(body), dtype=torch.uint8).view(*shape)

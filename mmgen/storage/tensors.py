"""Safetensors files, written atomically and read without pickle.

A file holds named tensors plus plain values (JSON) in its header metadata under ``"mmgen"``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from mmgen.errors import CheckpointError
from mmgen.storage.atomic import atomic_write_bytes


def encode_tensors(tensors: dict[str, torch.Tensor], meta: dict[str, Any] | None = None) -> bytes:
    """Tensors (moved to CPU, made contiguous) plus JSON-able ``meta`` -> the bytes of a safetensors file."""
    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    return save(flat, metadata={"mmgen": json.dumps(meta or {})})


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any] | None = None) -> None:
    """Tensors (moved to CPU, made contiguous) plus JSON-able ``meta`` -> one safetensors file, atomically."""
    atomic_write_bytes(path, encode_tensors(tensors, meta))


def _checked(meta: Any, path: Path) -> dict[str, Any]:
    """The header's JSON, which every reader takes for an object."""
    if not isinstance(meta, dict):
        raise CheckpointError(f"corrupt checkpoint {path}: its mmgen header holds a JSON {type(meta).__name__}")
    return meta


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """-> (tensors on CPU, meta). A missing or corrupt file raises CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = json.loads((f.metadata() or {}).get("mmgen", "{}"))
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    except (SafetensorError, ValueError, OSError) as exc:
        raise CheckpointError(f"corrupt checkpoint {path}: {str(exc).splitlines()[0] if str(exc) else exc!r}")
    return tensors, _checked(meta, path)


def read_metadata(path: Path) -> dict[str, Any]:
    """Only the JSON metadata of a safetensors file, without reading its tensors."""
    return read_header(path)[1]


def read_header(path: Path) -> tuple[dict[str, tuple[int, ...]], dict[str, Any]]:
    """-> (the shape of every tensor, meta), from the header alone: no tensor is read. safetensors
    checks on opening that the header covers the whole file, so a truncated file fails here too."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = json.loads((f.metadata() or {}).get("mmgen", "{}"))
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 (not a dict)
    except (SafetensorError, ValueError, OSError) as exc:
        raise CheckpointError(f"corrupt checkpoint {path}: {str(exc).splitlines()[0] if str(exc) else exc!r}")
    return shapes, _checked(meta, path)

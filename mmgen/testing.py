"""Helpers for tests, mmgen's own and plugin authors': tiny data and ad-hoc plugins.

    from mmgen.testing import registered_plugin, write_tiny_mnist
    root = write_tiny_mnist(tmp_path, n_train=120, n_test=40)   # root/MNIST/raw/*-ubyte
    with registered_plugin("my-test-plugin", register_fusions=hook):   # a kind for one test
        ...

The tiny MNIST is IDX files in torchvision's layout, made from a seed and never downloaded: its
images are label-dependent patterns that a small model learns in one epoch (a bright horizontal
bar at a row set by the label, and a vertical bar whose column is set by its parity).
"""

from __future__ import annotations

import contextlib
import struct
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from mmgen.plugin.discovery import current
from mmgen.plugin.registry import get_registry


def idx_bytes(array: np.ndarray) -> bytes:
    """Uncompressed IDX: big-endian magic 0x0000080<ndim> (uint8 data), then each dim as big-endian uint32."""
    header = struct.pack(">I", 0x0800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array).astype(np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray) -> None:
    Path(path).write_bytes(idx_bytes(array))


def digit_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Labels ``(N,)`` -> uint8 images ``(N, 28, 28)``: a bar per label row and parity column, on noise."""
    x = rng.integers(0, 40, size=(len(labels), 28, 28)).astype(np.int32)
    for i, k in enumerate(labels):
        row = 3 + 2 * int(k)
        x[i, row : row + 2, 4:24] = 230
        col = 6 if k % 2 == 0 else 20
        x[i, 4:24, col : col + 2] = 200
    return np.clip(x, 0, 255).astype(np.uint8)


def write_tiny_mnist(root: Path, n_train: int = 300, n_test: int = 100, seed: int = 0,
                     folders: tuple[str, ...] = ("MNIST",)) -> Path:
    """Write ``<root>/<folder>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` for each folder.

    Every class appears equally often (labels ``arange(n) % 10``, shuffled). The same seed gives
    the same bytes on any machine. Returns ``root``.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        rng.shuffle(labels)
        arrays[prefix] = (digit_images(labels, rng), labels)
    for folder in folders:
        raw = root / folder / "raw"
        raw.mkdir(parents=True, exist_ok=True)
        for prefix, (images, labels) in arrays.items():
            write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
            write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return root


@contextlib.contextmanager
def registered_plugin(name: str, plugin: object | None = None, refresh: bool = True,
                      **hooks: Callable) -> Iterator[object]:
    """Register ``plugin`` (or a module made of the ``hooks`` given, e.g. ``register_fusions=f``) under
    ``name`` for the block, as an entry point would, and rebuild the registry; on exit it is
    unregistered and the registry rebuilt again.

    ``refresh=False`` leaves the rebuild on entry to the block (a test of a failing hook may want
    the failure to happen there).
    """
    if plugin is None:
        plugin = types.ModuleType(name)
        for hook, function in hooks.items():
            setattr(plugin, hook, function)
    pm = current().pm
    pm.register(plugin, name=name)
    try:
        if refresh:
            get_registry(refresh=True)
        yield plugin
    finally:
        pm.unregister(name=name)
        get_registry(refresh=True)


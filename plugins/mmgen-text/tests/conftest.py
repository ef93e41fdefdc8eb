"""Fixtures for mmgen-text's tests: isolation from the network and the real caches, a tiny MNIST.

The tiny MNIST is written here in torchvision's layout (``<root>/MNIST/raw/*-ubyte``), so the tests
need no real data and no file from mmgen's own test suite.
"""

from __future__ import annotations

import socket
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

N_TRAIN, N_TEST = 120, 40


@pytest.fixture(scope="session", autouse=True)
def _text_isolated(tmp_path_factory):
    """HOME, the data root and mmgen's cache in temporary folders; no network; one thread (tiny models)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(tmp_path_factory.mktemp("home")))
        mp.delenv("MMGEN_DATA_ROOT", raising=False)
        mp.delenv("MMGEN_DEBUG", raising=False)
        mp.setenv("MMGEN_CACHE", str(tmp_path_factory.mktemp("cache")))

        def no_network(*args, **kwargs):
            raise OSError("tests must not use the network")

        mp.setattr(socket.socket, "connect", no_network)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        yield
        torch.set_num_threads(threads)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Uncompressed IDX: big-endian magic 0x0000080<ndim> (uint8 data), then each dim as big-endian uint32."""
    header = struct.pack(">I", 0x0800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def digit_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A bright bar at a row set by the label, on noise: ``(N,)`` -> uint8 ``(N, 28, 28)``."""
    x = rng.integers(0, 40, size=(len(labels), 28, 28))
    for i, k in enumerate(labels):
        x[i, 3 + 2 * int(k) : 5 + 2 * int(k), 4:24] = 230
    return x.astype(np.uint8)


@pytest.fixture(scope="session")
def tiny_mnist(tmp_path_factory) -> Path:
    """A data root with 120 train and 40 test examples, every class equally often."""
    root = tmp_path_factory.mktemp("tiny_mnist")
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", N_TRAIN), ("t10k", N_TEST)):
        labels = rng.permutation(np.arange(n) % 10)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", digit_images(labels, rng))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return root

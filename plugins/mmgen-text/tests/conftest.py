"""Fixtures for mmgen-text's tests: isolation from the network and the real caches, a tiny MNIST.

The tiny MNIST comes from ``mmgen.testing`` (torchvision's layout, ``<root>/MNIST/raw/*-ubyte``),
so the tests need no real data and no file from mmgen's own test suite.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
from mmgen.testing import write_tiny_mnist

N_TRAIN, N_TEST = 120, 40


@pytest.fixture(scope="session", autouse=True)
def _text_isolated(tmp_path_factory):
    """HOME, the data root and mmgen's cache in temporary folders; no network; one thread (tiny models)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(tmp_path_factory.mktemp("home")))
        mp.delenv("MMGEN_DATA_ROOT", raising=False)
        mp.delenv("MMGEN_DEBUG", raising=False)
        mp.setenv("MMGEN_CACHE", str(tmp_path_factory.mktemp("cache")))

        real_connect = socket.socket.connect

        def no_network(self, address, *args, **kwargs):
            if self.family == socket.AF_UNIX:  # local pipes (DataLoader workers pass tensors through them)
                return real_connect(self, address, *args, **kwargs)
            raise OSError("tests must not use the network")

        mp.setattr(socket.socket, "connect", no_network)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        yield
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_mnist(tmp_path_factory) -> Path:
    """A data root with 120 train and 40 test examples, every class equally often (mmgen's test data)."""
    return write_tiny_mnist(tmp_path_factory.mktemp("tiny_mnist"), n_train=N_TRAIN, n_test=N_TEST)

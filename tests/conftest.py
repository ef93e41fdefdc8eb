"""Shared fixtures: a tiny MNIST in torchvision's layout, a tiny recipe, one trained run, isolation.

Every test runs offline and with HOME in a temporary folder, so nothing reads or writes the
real ~/.cache or downloads data; MMGEN_DATA_ROOT from the environment is removed (tests that
want real data read it at import time, see test_real_mnist.py).
"""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from mmgen.cli import app
from mmgen.testing import write_tiny_mnist

N_TRAIN, N_TEST = 300, 100
ANSI = re.compile(r"\x1b\[[0-9;]*m")


# ---- isolation ---------------------------------------------------------------------------------
@pytest.fixture(scope="session", autouse=True)
def _isolated(tmp_path_factory):
    """Session-wide, so session fixtures (the trained run) are isolated too."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(tmp_path_factory.mktemp("home")))  # Path.home() -> ~/.cache/mmgen/data
        mp.delenv("MMGEN_DATA_ROOT", raising=False)
        mp.delenv("MMGEN_DEBUG", raising=False)  # tracebacks instead of one line would fail the CLI tests
        mp.setenv("MMGEN_CACHE", str(tmp_path_factory.mktemp("cache")))  # classifiers never reach a real cache

        real_connect = socket.socket.connect

        def no_network(self, address, *args, **kwargs):
            if self.family == socket.AF_UNIX:  # local pipes (DataLoader workers pass tensors through them)
                return real_connect(self, address, *args, **kwargs)
            raise OSError("tests must not use the network")

        mp.setattr(socket.socket, "connect", no_network)
        # Tiny models: one thread is ~10x faster than two when another job shares the CPUs.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        yield
        torch.set_num_threads(threads)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """Run in tmp_path, so a default `runs/` lands there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ---- a tiny MNIST --------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def tiny_mnist_root(tmp_path_factory) -> Path:
    """``<root>/MNIST/raw/*-ubyte`` with 300 train and 100 test examples, and the same files again
    as ``<root>/FashionMNIST/raw``, so every shipped recipe (MNIST or Fashion-MNIST) finds its data."""
    return write_tiny_mnist(tmp_path_factory.mktemp("tiny_data"), N_TRAIN, N_TEST, folders=("MNIST", "FashionMNIST"))


TINY_RECIPE = """\
# recipes/mnist_mvae.toml shrunk: tiny MLPs, one short epoch on the tiny data, offline.
name = "tiny"
seed = 0

[model]
latent_dim = 8

[modalities.image]
kind = "image"
weight = 1.0
encoder_hidden = [32]
decoder_hidden = [32]

[modalities.label]
kind = "label"
weight = 50.0
num_classes = 10
encoder_hidden = [32]
decoder_hidden = [32]

[data]
kind = "mnist"
root = "{root}"
download = false
val_size = 50

[train]
epochs = 1
batch_size = 50
anneal_epochs = 1
device = "cpu"
"""


@pytest.fixture(scope="session")
def tiny_recipe(tiny_mnist_root, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("recipe") / "tiny.toml"
    path.write_text(TINY_RECIPE.format(root=tiny_mnist_root.as_posix()))
    return path


# ---- the CLI -------------------------------------------------------------------------------------
def run_cli(*args):
    """Invoke ``mmgen ARGS`` in-process; stdout and stderr stay apart (click >= 8.2)."""
    return CliRunner().invoke(app, [str(a) for a in args])


def error_line(result) -> str:
    """Assert the CLI failed as promised: exit != 0, no traceback, one ``error:`` line on stderr, last.

    Status lines before it (``resuming ... at epoch 2``) are allowed; a second error line is not.
    """
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # not an escaped exception
    assert "Traceback" not in result.output
    lines = [line for line in ANSI.sub("", result.stderr).splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    return errors[0]


@pytest.fixture
def cli():
    """``cli("train", recipe, ...)`` -> click Result."""
    return run_cli


@pytest.fixture
def cli_error():
    """``cli_error(result)`` -> the one ``error:`` line, after checking how the command failed."""
    return error_line


@pytest.fixture(scope="session")
def trained_run(tiny_recipe, tmp_path_factory) -> Path:
    """One epoch on the tiny data through the CLI, shared read-only; copy it before changing it."""
    out = tmp_path_factory.mktemp("trained") / "run"
    result = run_cli("train", tiny_recipe, "--out", out, "--device", "cpu")
    assert result.exit_code == 0, result.output
    return out

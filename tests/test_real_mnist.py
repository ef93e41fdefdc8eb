"""Real MNIST, read from $MMGEN_DATA_ROOT (torchvision's layout); skipped when it is not set.

MMGEN_DATA_ROOT=/work/shared/data python -m pytest tests/test_real_mnist.py
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

# Read at import: conftest removes MMGEN_DATA_ROOT from the environment while tests run.
DATA_ROOT = os.environ.get("MMGEN_DATA_ROOT")
RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "mnist_mvae.toml"
HAS_MNIST = bool(DATA_ROOT) and (Path(DATA_ROOT) / "MNIST" / "raw").is_dir()


@pytest.mark.skipif(not HAS_MNIST, reason="set MMGEN_DATA_ROOT to a folder with MNIST/raw")
def test_real_mnist_smoke(cli, tmp_path):
    run = tmp_path / "run"
    # 59k of the 60k go to validation, leaving 1000 training examples: 10 steps of 100.
    result = cli(
        "train", RECIPE, "--out", run, "--device", "cpu",
        f"data.root='{Path(DATA_ROOT).resolve()}'", "data.download=false", "data.val_size=59000",
        "train.epochs=1", "train.anneal_epochs=1", "model.latent_dim=16",
        "modalities.image.encoder_hidden=[64]", "modalities.image.decoder_hidden=[64]",
        "modalities.label.encoder_hidden=[32]", "modalities.label.decoder_hidden=[32]",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (row,) = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert row["step"] == 10
    assert all(math.isfinite(v) for v in row.values() if isinstance(v, float))
    # An untrained Bernoulli decoder scores 784*log(2) = 543 nats per image; 10 steps already do better.
    assert -row["val/elbo(image)"] < 543

    result = cli("sample", run, "--given", "label=7", "-n", "4", "--out", tmp_path / "s.npy")
    assert result.exit_code == 0, result.output
    x = np.load(tmp_path / "s.npy")
    assert x.shape == (4, 1, 28, 28) and np.isfinite(x).all()

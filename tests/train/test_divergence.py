"""The divergence rule (mmgen/train/divergence.py): NaN, a loss ceiling, a sudden blow-up."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from mmgen.train.divergence import divergence


def test_the_rule():
    assert divergence({"loss": 120.0, "kl": 3.0}, 1e8, 1000, None) is None
    assert divergence({"loss": math.nan, "kl": 3.0}, 1e8, 1000, None) == "loss=nan"
    assert "above train.max_loss=1e+08" in divergence({"loss": 6e31}, 1e8, 1000, None)
    assert "more than train.blowup=1000 times" in divergence({"loss": 2e5}, 1e8, 1000, 150.0)
    assert divergence({"loss": 2e5}, 1e8, 0, 150.0) is None  # the blow-up rule off
    assert divergence({"loss": -900.0}, 1e8, 1000, -0.5) is None  # the floor of 1 nat: -900 is not 1000x
    assert divergence({"val/loss": 5e9, "val/elbo(image)": -1.0}, 1e8, 1000, None) is not None


def test_a_huge_learning_rate_stops_with_a_finite_but_absurd_loss(cli, cli_error, tiny_recipe, tmp_path):
    # lr 1e6 does not reach NaN on this data: the losses grow past 1e20 and stay finite.
    out = tmp_path / "run"
    line = cli_error(cli("train", tiny_recipe, "--out", out, "train.lr=1e6", "train.log_every=1"))
    assert "diverged at epoch 1" in line and ("max_loss" in line or "nan" in line or "inf" in line)
    assert "nothing" in line or "no checkpoint had been written yet" in line
    assert not out.exists()  # nothing was saved, so the run directory it had made is gone


def test_a_blow_up_after_a_good_epoch_keeps_the_good_checkpoint(cli, cli_error, trained_run, tmp_path):
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    before = (run / "last.safetensors").read_bytes()
    # The resumed run may change only train.epochs; a blow-up shows with a far lower ceiling instead.
    recipe = json.loads((run / "recipe.json").read_text())
    recipe["train"]["max_loss"] = 1.0
    (run / "recipe.json").write_text(json.dumps(recipe))
    line = cli_error(cli("train", run, "--resume", "train.epochs=2"))
    assert "diverged at epoch 2" in line and "above train.max_loss=1" in line
    assert f"mmgen train {run} --resume" in line  # the hint: the checkpoint of epoch 1 is there to resume
    assert (run / "last.safetensors").read_bytes() == before


@pytest.mark.parametrize("key", ["train.max_loss=0", "train.blowup=-1"])
def test_the_rule_is_validated(cli, cli_error, tiny_recipe, key):
    assert key.split("=")[0] in cli_error(cli("recipes", "validate", tiny_recipe, key))

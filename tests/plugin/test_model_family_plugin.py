"""A model family is a plugin: a family that is not mmgen's code and not an MVAE (a private latent per
modality, ``tests/fixtures/private_family``) is installed as a third party's distribution would be, then
trained, interrupted by SIGTERM and resumed bit-identically, sampled with ``--given`` and scored by
``mmgen eval``, all through the CLI in subprocesses."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.support.distributions import installed_plugin_env

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "private_family" / "mmgen_test_private.py"
SETTINGS = ['model={kind="private", latent_dim=4, private_dim=2}', "train.epochs=2"]


@pytest.fixture(scope="module")
def env(tmp_path_factory, tiny_mnist_root) -> dict:
    """A subprocess environment with the family installed through an entry point, as pip would."""
    base = {**os.environ, "OMP_NUM_THREADS": "1", "MMGEN_DATA_ROOT": str(tiny_mnist_root)}
    return installed_plugin_env(tmp_path_factory.mktemp("site"), "mmgen-test-private", "private",
                                "mmgen_test_private", FIXTURE.read_text(), base)


def mmgen(env: dict, *args, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mmgen", *map(str, args)], env={**env, **(extra_env or {})},
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def straight(env, tiny_recipe, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("straight") / "run"
    done = mmgen(env, "train", tiny_recipe, "--out", out, "--device", "cpu", *SETTINGS)
    assert done.returncode == 0, done.stderr
    return out


def test_the_family_is_listed_with_its_package(env):
    done = mmgen(env, "plugins")
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stdout.splitlines() if "mmgen-test-private" in line)
    assert "private" in line


def test_it_trains_with_its_own_latents_and_settings(straight):
    recipe = json.loads((straight / "recipe.json").read_text())
    assert recipe["model"] == {"kind": "private", "latent_dim": 4, "private_dim": 2}
    weights = load_file(straight / "last.safetensors")
    # The image expert is a Gaussian over the shared 4 and its private 2; its decoder reads those 6.
    assert weights["modalities.image.head.linear.weight"].shape[0] == 2 * 6
    assert weights["modalities.image.decoder.0.weight"].shape[1] == 6
    rows = [json.loads(line) for line in (straight / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and all(r["val/loss"] == r["val/loss"] for r in rows)


def test_sigterm_then_resume_equals_the_uninterrupted_run(env, tiny_recipe, tmp_path, straight):
    out = tmp_path / "run"
    stopped = mmgen(env, "train", tiny_recipe, "--out", out, "--device", "cpu", *SETTINGS,
                    extra_env={"MMGEN_TEST_SIGTERM_AT_STEP": "7"})  # epoch 2, step 2 of 5
    assert stopped.returncode == 143, stopped.stderr
    assert "resume with: mmgen train" in stopped.stderr
    resumed = mmgen(env, "train", out, "--resume", "--device", "cpu")
    assert resumed.returncode == 0, resumed.stderr
    a, b = load_file(straight / "last.safetensors"), load_file(out / "last.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_sample_given_a_label_draws_the_image_private_part_from_its_prior(env, straight, tmp_path):
    out = tmp_path / "threes.npy"
    done = mmgen(env, "sample", straight, "--given", "label=3", "-n", "6", "--seed", "0", "--out", out)
    assert done.returncode == 0, done.stderr
    import numpy as np

    images = np.load(out)
    assert images.shape == (6, 1, 28, 28) and ((images >= 0) & (images <= 1)).all()
    assert images.std(0).mean() > 0  # six draws, not one image six times


def test_eval_scores_it_through_the_model_interface(env, straight, tmp_path):
    done = mmgen(env, "eval", straight, "-K", "8", "--limit", "40", "--per-class", "4", "--no-pictures", "--json",
                 "--device", "cpu")
    assert done.returncode == 0, done.stderr
    report = json.loads((straight / "eval.json").read_text())
    for key in ("log p(image)", "log p(label)", "log p(image,label)"):
        value = report[key]["value"]
        assert value is not None and -1e5 < value < 0, (key, value)
    assert 0 <= report["accuracy image->label"] <= 1


def test_a_family_without_a_density_has_its_likelihoods_skipped_with_the_reason(env, straight, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(straight, run)
    done = mmgen(env, "eval", run, "-K", "4", "--limit", "20", "--per-class", "2", "--no-pictures", "--device", "cpu",
                 extra_env={"MMGEN_TEST_NO_DENSITY": "1"})
    assert done.returncode == 0, done.stderr
    report = json.loads((run / "eval.json").read_text())
    assert "log p(image)" not in report and "accuracy image->label" in report
    assert report["skipped"]["log-likelihoods"] == ("the model 'private' has no joint density to score: "
                                                   "the test asked for a family without one")

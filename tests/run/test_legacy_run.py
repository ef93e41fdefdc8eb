"""A run directory written by an earlier mmgen (tests/fixtures/legacy_run, made by make_legacy_run.py at
commit ab2e919, before the layered package) still loads, samples, evaluates and resumes."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import mmgen
from tests.support import REPO_ROOT

LEGACY = REPO_ROOT / "tests" / "fixtures" / "legacy_run"


@pytest.fixture
def legacy(tmp_path, tiny_mnist_root, monkeypatch):
    """A copy of the fixture (tests must not change it); its recipe reads the data from MMGEN_DATA_ROOT."""
    monkeypatch.setenv("MMGEN_DATA_ROOT", str(tiny_mnist_root))
    return shutil.copytree(LEGACY, tmp_path / "legacy_run")


def test_the_fixture_is_what_the_old_code_wrote():
    versions = json.loads((LEGACY / "versions.json").read_text())
    assert versions["mmgen"] == "0.1.0" and "mnist" in versions["plugins"]
    rows = [json.loads(line) for line in (LEGACY / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1]


def test_it_loads_and_samples(legacy):
    run = mmgen.load_run(legacy, device="cpu")
    assert run.epoch == 1 and run.model.latent_dim == 4
    images = run.sample(5, given={"label": 3}, seed=0)["image"]
    assert images.shape == (5, 1, 28, 28) and bool(((images >= 0) & (images <= 1)).all())
    probs = run.decode(run.encode({"image": torch.zeros(1, 28, 28)}).mean)["label"]
    assert probs.shape == (1, 10) and float(probs.sum()) == pytest.approx(1.0, abs=1e-5)


def test_the_cli_samples_and_evaluates_it(cli, legacy, tmp_path):
    result = cli("sample", legacy, "--given", "label=3", "-n", "4", "--out", tmp_path / "threes.png")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "threes.png").is_file()
    result = cli("eval", legacy, "-K", "3", "--limit", "10", "--per-class", "1", "--no-pictures", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads((legacy / "eval.json").read_text())["epoch"] == 1


def test_it_resumes(cli, legacy):
    result = cli("train", legacy, "--resume", "train.epochs=2", "--device", "cpu")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (legacy / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[1]["step"] == 2 * rows[0]["step"]  # the second epoch continued the counters
    assert mmgen.load_run(legacy, which="last").epoch == 2

"""``pairing.safetensors`` is checked on resume against the masks rebuilt from ``data.pairing_seed``.

A weakly supervised run (``data.paired_fraction=0.5``) of one epoch on the tiny data: 250 training
examples. Each broken file is refused with one line naming it, and nothing of the run changes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from mmgen.storage import load_tensors, save_tensors
from mmgen.train.session import train_recipe

N_TRAIN = 250
HINT = ("(hint: the run trains with the masks data.pairing_seed=0 gives; if its data set is the one it was trained "
        "on, delete pairing.safetensors and resume: it is written anew)")


@pytest.fixture(scope="module")
def weak_run(tiny_recipe, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("weak") / "run"
    train_recipe(tiny_recipe, ["data.paired_fraction=0.5"], out, "cpu", resume=False)
    return out


@pytest.fixture
def run(weak_run, tmp_path) -> Path:
    return Path(shutil.copytree(weak_run, tmp_path / "run"))


def truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def random_bytes(path: Path) -> None:
    path.write_bytes(bytes(torch.randint(256, (3000,), generator=torch.Generator().manual_seed(0)).tolist()))


def wrong_shape(path: Path) -> None:
    masks, meta = load_tensors(path)
    save_tensors(path, {**masks, "label": masks["label"][:7]}, meta)


def flipped(path: Path) -> None:
    masks, meta = load_tensors(path)
    label = masks["label"].clone()
    label[:3] = 1 - label[:3]
    save_tensors(path, {**masks, "label": label}, meta)


@pytest.mark.parametrize(("damage", "why"), [
    (wrong_shape, "its mask of 'label' is torch.uint8 of shape (7,), not torch.uint8 of shape (250,) for the 250 "
                  "training examples"),
    (flipped, "its mask of 'label' differs from the rebuilt one in 3 of 250 examples"),
])
def test_a_pairing_file_that_disagrees_is_refused(cli, cli_error, run, damage, why):
    damage(run / "pairing.safetensors")
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    result = cli("train", run, "--resume", "train.epochs=2")
    assert result.exit_code == 1
    assert cli_error(result) == (f"error: {run}/pairing.safetensors does not hold the pairing this run trains with: "
                                 f"{why} {HINT}")
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


@pytest.mark.parametrize("damage", [truncated, random_bytes])
def test_an_unreadable_pairing_file_is_refused(cli, cli_error, run, damage):
    damage(run / "pairing.safetensors")
    result = cli("train", run, "--resume", "train.epochs=2")
    assert result.exit_code == 1
    line = cli_error(result)
    assert line.startswith(f"error: {run}/pairing.safetensors does not hold the pairing this run trains with: it is "
                           "not a readable safetensors file (")  # then safetensors' own words
    assert line.endswith(f") {HINT}")


def test_the_way_forward_it_offers_writes_the_file_anew(cli, run):
    good = (run / "pairing.safetensors").read_bytes()
    truncated(run / "pairing.safetensors")
    (run / "pairing.safetensors").unlink()  # as the hint says
    result = cli("train", run, "--resume", "train.epochs=2")
    assert result.exit_code == 0, result.output
    assert "wrote pairing.safetensors again: it was missing" in " ".join(result.stderr.split())
    assert (run / "pairing.safetensors").read_bytes() == good


def test_a_good_pairing_file_resumes_and_is_kept(cli, run):
    good = (run / "pairing.safetensors").read_bytes()
    result = cli("train", run, "--resume", "train.epochs=2")
    assert result.exit_code == 0, result.output
    assert f"resuming {run} at epoch 2 of 2" in " ".join(result.stderr.split())
    assert (run / "pairing.safetensors").read_bytes() == good
    masks, meta = load_tensors(run / "pairing.safetensors")
    assert meta["examples"] == N_TRAIN and masks["image"].shape == (N_TRAIN,)

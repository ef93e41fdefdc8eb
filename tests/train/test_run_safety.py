"""A run's files are never trained over, and what ``--resume`` reads is checked before the data loads.

Each case prints one line, checked whole, and exits 1. The tiny recipe trains 250 examples in 5
steps per epoch; ``three_epochs`` is a finished run of 3 epochs, copied before it is changed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

import mmgen.train.session as session
from mmgen import DataError
from mmgen.data.sources import DataSource
from mmgen.run import RunDir
from mmgen.storage import load_tensors, read_metadata, save_tensors
from mmgen.train.session import first_examples, train_recipe

WEIGHTS = ("last.safetensors", "best.safetensors")
FROM_WEIGHTS = "with a fresh optimizer state, so not bit-identical to an unbroken run"


@pytest.fixture(scope="module")
def three_epochs(tiny_recipe, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("three") / "run"
    train_recipe(tiny_recipe, ["train.epochs=3"], out, "cpu", resume=False)
    return out


def copy_of(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run, tmp_path / "run"))


def snapshot(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(run.iterdir()) if p.is_file()}


# ---- resume never trains over weights ---------------------------------------------------------
def test_resume_without_a_resume_file_does_not_train_over_the_weights(cli, cli_error, three_epochs, tmp_path):
    run = copy_of(three_epochs, tmp_path)
    (run / "trainer_state.safetensors").unlink()
    before = snapshot(run)
    result = cli("train", run, "--resume", "train.epochs=4")
    assert result.exit_code == 1
    assert cli_error(result) == (
        f"error: {run} has trained weights (last.safetensors, best.safetensors) but no resume file "
        "(trainer_state.safetensors): training it from epoch 1 would overwrite them (hint: "
        f"`mmgen train {run} --resume --from-weights` goes on from last.safetensors (epoch 3) with a fresh "
        f"optimizer state; or `mmgen train {run} --out NEW_DIR` trains its recipe anew)")
    assert snapshot(run) == before  # the weights byte for byte, and recipe.json with its train.epochs=3
    result = cli("train", run, "--resume", "--from-weights", "train.epochs=4")  # the way forward it offers
    assert result.exit_code == 0, result.output
    assert f"resuming {run} at epoch 4 of 4 from last.safetensors (epoch 3)" in " ".join(result.stderr.split())
    assert read_metadata(run / "last.safetensors")["epoch"] == 4


def test_a_resume_may_wait_longer_at_the_rendezvous(cli, three_epochs, tmp_path):
    # The rendezvous error tells the user to raise train.rendezvous_timeout: a resume must accept it.
    run = copy_of(three_epochs, tmp_path)
    result = cli("train", run, "--resume", "train.epochs=4", "train.rendezvous_timeout=1200", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert read_metadata(run / "last.safetensors")["epoch"] == 4


def test_an_old_order_kill_inside_epoch_1s_commit_still_resumes(cli, tiny_recipe, tmp_path):
    # Before the resume file was renamed first, a kill between renaming last and the resume file at
    # epoch 1 left last (epoch 1) with no resume file and no metrics row: retraining it is bit-identical.
    whole = tmp_path / "whole"
    train_recipe(tiny_recipe, ["train.epochs=1"], whole, "cpu", resume=False)
    run = Path(shutil.copytree(whole, tmp_path / "cut"))
    (run / "trainer_state.safetensors").unlink()
    (run / "metrics.jsonl").unlink()
    result = cli("train", run, "--resume", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert (run / "last.safetensors").read_bytes() == (whole / "last.safetensors").read_bytes()
    assert len(RunDir(run).read_metrics()) == 1


def test_the_same_command_again_does_not_take_over_a_run_with_weights(cli, cli_error, tiny_recipe, three_epochs,
                                                                       tmp_path):
    run = copy_of(three_epochs, tmp_path)
    (run / "trainer_state.safetensors").unlink()
    before = snapshot(run)
    line = cli_error(cli("train", tiny_recipe, "train.epochs=3", "--out", run))
    assert line == (f"error: {run} already exists and is not empty (hint: pass --resume to continue it, or another "
                    "--out)")
    assert snapshot(run) == before


def test_with_only_best_weights_left_the_way_forward_is_a_new_run(cli, cli_error, three_epochs, tmp_path):
    run = copy_of(three_epochs, tmp_path)
    (run / "trainer_state.safetensors").unlink()
    (run / "last.safetensors").unlink()
    before = snapshot(run)
    result = cli("train", run, "--resume")
    assert result.exit_code == 1
    assert cli_error(result) == (
        f"error: {run} has trained weights (best.safetensors) but no resume file (trainer_state.safetensors): "
        f"training it from epoch 1 would overwrite them (hint: `mmgen train {run} --out NEW_DIR` trains its "
        "recipe anew)")
    assert snapshot(run) == before


# ---- a split of one training example ------------------------------------------------------------
def test_a_training_split_of_one_example_trains(cli, tiny_recipe, tmp_path):
    out = tmp_path / "run"
    result = cli("train", tiny_recipe, "data.val_size=299", "--out", out)  # 300 examples: 1 left to train on
    assert result.exit_code == 0, result.output
    (row,) = RunDir(out).read_metrics()
    assert row["epoch"] == 1 and row["step"] == 1  # one step of one example


def test_an_empty_training_split_is_one_line():
    empty = {"image": torch.zeros(0, 1, 28, 28, dtype=torch.uint8), "label": torch.zeros(0, dtype=torch.long)}
    source = DataSource.of({"train": empty, "val": empty})
    with pytest.raises(DataError) as info:
        first_examples(source, ["image", "label"])
    assert str(info.value) == "the training split holds no example"
    assert info.value.hint == "check data.val_size and the data set's files"


# ---- a folder named like a temporary file -----------------------------------------------------------
def test_a_folder_named_like_a_stray_temporary_is_left_alone(cli, trained_run, tmp_path):
    run = copy_of(trained_run, tmp_path)
    folder = run / ".last.safetensors.ab12.tmp"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    (run / ".best.safetensors.cd34.tmp").write_bytes(b"half a checkpoint")  # a true stray file
    outside = tmp_path / "elsewhere.txt"
    outside.write_text("not the run's")
    (run / ".recipe.json.ef56.tmp").symlink_to(outside)
    result = cli("train", run, "--resume", "train.epochs=2")
    assert result.exit_code == 0, result.output
    assert "removed .best.safetensors.cd34.tmp" in " ".join(result.stderr.split())
    assert (folder / "notes.txt").read_text() == "mine" and outside.read_text() == "not the run's"
    assert sorted(p.name for p in run.glob(".*.tmp")) == [".last.safetensors.ab12.tmp", ".recipe.json.ef56.tmp"]


def test_a_folder_named_like_a_temporary_survives_removing_an_unstarted_run(tmp_path):
    run = RunDir(tmp_path / "run")
    run.create({"name": "tiny"})
    (run.path / ".metrics.jsonl.x1.tmp").mkdir()
    (run.path / ".last.safetensors.x2.tmp").write_bytes(b"half")
    run.remove_unstarted()
    assert sorted(p.name for p in run.path.iterdir()) == [".metrics.jsonl.x1.tmp"]


# ---- a resume file that does not fit, refused before the data loads ----------------------------------
def rewrite_state(run: Path, change) -> None:
    """``change(tensors, meta)`` edits the resume file's contents in place; the file is written whole."""
    tensors, meta = load_tensors(run / "trainer_state.safetensors")
    change(tensors, meta)
    save_tensors(run / "trainer_state.safetensors", tensors, meta)


def without_param_groups(tensors, meta):
    del meta["param_groups"]


def shorter_param_groups(tensors, meta):
    meta["param_groups"][0]["params"].pop()


def wrong_moment(tensors, meta):
    tensors["optim.0.exp_avg"] = torch.zeros(3)


def wrong_weights(tensors, meta):
    tensors["model.modalities.label.decoder.0.bias"] = torch.zeros(5)


@pytest.fixture
def data_loads(monkeypatch) -> list[str]:
    """The names of the data sets built during the test (the session builds one to load the data)."""
    built = []
    real = session.build_dataset

    def build(recipe):
        built.append(recipe.data.kind)
        return real(recipe)

    monkeypatch.setattr(session, "build_dataset", build)
    return built


@pytest.mark.parametrize(("change", "why"), [
    (without_param_groups, "does not fit this model's optimizer: its header has no 'param_groups' (the optimizer's "
                           "settings), so it was not written by mmgen's trainer"),
    (shorter_param_groups, "does not fit this model's optimizer: it holds the optimizer state of {n_1} parameter "
                           "tensor(s) in group(s) of [{n_1}]; this model's optimizer has {n} in [{n}]"),
    (wrong_moment, "does not fit this model's optimizer: optim.0.exp_avg has shape (3,), its parameter {shape0}"),
    (wrong_weights, "does not fit the recipe's model: modalities.label.decoder.0.bias has shape (5,), the "
                    "model's (32,)"),
])
def test_a_resume_file_that_does_not_fit_says_what_and_what_to_do_before_the_data_loads(
        cli, cli_error, trained_run, tmp_path, data_loads, change, why):
    run = copy_of(trained_run, tmp_path)
    tensors, meta = load_tensors(run / "trainer_state.safetensors")
    n = len(meta["param_groups"][0]["params"])
    why = why.format(n=n, n_1=n - 1, shape0=tuple(tensors["optim.0.exp_avg_sq"].shape))
    rewrite_state(run, change)
    before = snapshot(run)
    result = cli("train", run, "--resume", "train.epochs=2")
    assert result.exit_code == 1
    assert cli_error(result) == (f"error: {run}/trainer_state.safetensors {why} (hint: `mmgen train {run} --resume "
                                 f"--from-weights` goes on from last.safetensors (epoch 1) {FROM_WEIGHTS})")
    assert data_loads == []  # refused before the data set was built
    assert snapshot(run) == before  # recipe.json too: train.epochs=2 is written only once training starts
    result = cli("train", run, "--resume", "--from-weights", "train.epochs=2")  # the command it offers
    assert result.exit_code == 0, result.output


def test_weights_that_do_not_fit_are_refused_before_the_data_loads_with_from_weights(cli, cli_error, trained_run,
                                                                                    tmp_path, data_loads):
    run = copy_of(trained_run, tmp_path)
    weights, meta = load_tensors(run / "last.safetensors")
    del weights["modalities.label.decoder.0.bias"]
    save_tensors(run / "last.safetensors", weights, meta)
    result = cli("train", run, "--resume", "--from-weights", "train.epochs=2")
    assert result.exit_code == 1
    assert cli_error(result) == (
        f"error: {run}/last.safetensors does not fit the recipe's model: it lacks 1 of the model's 15 tensors (the "
        f"first: modalities.label.decoder.0.bias) (hint: `mmgen train {run} --out NEW_DIR` trains its recipe "
        "anew)")
    assert data_loads == []


def test_a_library_caller_naming_a_file_as_the_run_gets_one_error(tiny_recipe, tmp_path):
    # The CLI refuses --out FILE before training; train_recipe itself must not raise NotADirectoryError.
    from mmgen import CheckpointError

    notes = tmp_path / "notes.txt"
    notes.write_text("keep me")
    with pytest.raises(CheckpointError, match=f"^{notes} is a file, not a run directory$"):
        train_recipe(tiny_recipe, ["train.epochs=1"], notes, "cpu", resume=False)
    assert notes.read_text() == "keep me"

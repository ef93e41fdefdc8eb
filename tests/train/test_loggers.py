"""Loggers through the register_loggers hook: jsonl by default, TensorBoard's event files, one line when a
logger's package is missing or its kind is unknown for training, a trained run that loads and evaluates
without its loggers, and a failing progress sync that costs a warning, not the training (MLflow and W&B:
test_mlflow_logger.py, test_wandb_logger.py)."""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil

import pytest

import mmgen
from mmgen_plugins import loggers as builtin

EVAL = ("-K", "5", "--limit", "20", "--per-class", "2", "--device", "cpu", "--no-pictures")


def without(monkeypatch, package: str) -> None:
    """``package`` looks uninstalled to the loggers' ``missing()``."""
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == package else real(name, *a))


def with_loggers(trained_run, folder, loggers: list[str]):
    """A copy of the trained run whose recipe names ``loggers``, as if it had been trained with them."""
    run = shutil.copytree(trained_run, folder / "run")
    recipe = json.loads((run / "recipe.json").read_text())
    recipe["train"]["loggers"] = loggers
    (run / "recipe.json").write_text(json.dumps(recipe, indent=2))
    return run


def test_tensorboard_writes_the_step_and_epoch_scalars(cli, tiny_recipe, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    result = cli("train", tiny_recipe, "train.epochs=2", "train.log_every=1", 'train.loggers=["jsonl","tensorboard"]',
                 "--out", out, "--device", "cpu")
    assert result.exit_code == 0, result.output
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"step/loss", "epoch/train/loss", "epoch/val/loss"} <= tags
    assert [e.step for e in events.Scalars("epoch/val/loss")] == [5, 10]
    assert len(events.Scalars("step/loss")) == 10  # every step (log_every = 1)
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2


def test_without_jsonl_no_metrics_file_is_written(cli, tiny_recipe, tmp_path):
    out = tmp_path / "run"
    assert cli("train", tiny_recipe, "train.loggers=[]", "--out", out).exit_code == 0
    assert not (out / "metrics.jsonl").exists() and (out / "trainer_state.safetensors").is_file()
    from mmgen.storage import read_metadata

    assert [r["epoch"] for r in read_metadata(out / "trainer_state.safetensors")["metrics"]] == [1]


@pytest.mark.parametrize(("kind", "command"), [("tensorboard", "pip install tensorboard"),
                                              ("mlflow", "pip install mlflow-skinny"), ("wandb", "pip install wandb")])
def test_a_missing_package_is_one_line_naming_it(cli, cli_error, tiny_recipe, tmp_path, monkeypatch, kind, command):
    without(monkeypatch, kind)
    line = cli_error(cli("train", tiny_recipe, f'train.loggers=["{kind}"]', "--out", tmp_path / "run"))
    assert f"the {kind} logger needs" in line and command in line and not (tmp_path / "run").exists()
    line = cli_error(cli("recipes", "validate", tiny_recipe, f'train.loggers=["{kind}"]'))
    assert f"the {kind} logger needs" in line and command in line


def test_a_run_trained_with_a_logger_missing_here_loads_samples_and_evaluates(cli, trained_run, tmp_path,
                                                                            monkeypatch):
    run = with_loggers(trained_run, tmp_path, ["jsonl", "tensorboard", "neptune"])  # neptune: no such kind here
    without(monkeypatch, "tensorboard")
    assert mmgen.load_run(run).recipe.train.loggers == ["jsonl", "tensorboard", "neptune"]
    assert cli("sample", run, "-n", "2", "--out", tmp_path / "x.npy").exit_code == 0
    result = cli("eval", run, *EVAL)
    assert result.exit_code == 0, result.output
    assert "warning: the evaluation was not logged to tensorboard: the tensorboard logger needs the tensorboard " \
           "package: python3 -m pip install tensorboard" in result.stderr
    assert "warning: the evaluation was not logged to neptune: unknown logger kind 'neptune'" in result.stderr
    assert (run / "eval.json").is_file()


def test_resuming_a_run_whose_logger_is_missing_here_is_one_line(cli, cli_error, trained_run, tmp_path, monkeypatch):
    run = with_loggers(trained_run, tmp_path, ["jsonl", "tensorboard"])
    without(monkeypatch, "tensorboard")
    line = cli_error(cli("train", run, "--resume", "train.epochs=2", "--device", "cpu"))
    assert "the tensorboard logger needs the tensorboard package: python3 -m pip install tensorboard" in line
    assert json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["epoch"] == 1


def test_a_failing_progress_sync_is_one_warning_and_training_goes_on(cli, tiny_recipe, tmp_path, monkeypatch, caplog):
    """A logger that fails at a progress sync is skipped until the epoch is committed, then tried again."""
    tried = []

    def fails(self, step, values):
        tried.append(step)
        raise RuntimeError("the tracker went away")

    monkeypatch.setattr(builtin.JsonlLogger, "log_step", fails)
    out = tmp_path / "run"
    with caplog.at_level(logging.WARNING, logger="mmgen.train"):
        result = cli("train", tiny_recipe, "train.epochs=2", "train.log_every=1", "--out", out, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert tried == [1, 6]  # the first step of each epoch (5 steps per epoch)
    assert [r.getMessage() for r in caplog.records if r.name == "mmgen.train"] == [
        "mmgen: the jsonl logger failed at step 1 (the tracker went away); training goes on, without its step "
        "metrics until the epoch is committed"]
    assert [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2]


def test_the_loggers_are_told_how_training_ended(cli, tiny_recipe, tmp_path, monkeypatch):
    told = []
    monkeypatch.setattr(builtin.JsonlLogger, "end", lambda self, outcome: told.append(outcome), raising=False)
    assert cli("train", tiny_recipe, "--out", tmp_path / "a", "--device", "cpu").exit_code == 0
    assert told == ["finished"]
    monkeypatch.setattr(builtin.JsonlLogger, "log_epoch", lambda self, epoch, row: 1 / 0)
    assert cli("train", tiny_recipe, "--out", tmp_path / "b", "--device", "cpu").exit_code != 0
    assert told == ["finished", "failed"]


@pytest.mark.parametrize(("value", "words"), [('["neptune"]', "unknown logger kind 'neptune'"),
                                              ('["jsonl","jsonl"]', "named twice")])
def test_bad_logger_kinds(cli, cli_error, tiny_recipe, value, words):
    assert words in cli_error(cli("recipes", "validate", tiny_recipe, f"train.loggers={value}"))


def test_the_jsonl_logger_rebuilds_metrics_from_the_committed_rows(trained_run, tmp_path):
    import shutil

    run = shutil.copytree(trained_run, tmp_path / "run")
    (run / "metrics.jsonl").write_text("garbage\n")
    rows = [{"epoch": 1, "step": 5}]
    builtin.JsonlLogger(run, {}, rows)
    assert [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()] == rows

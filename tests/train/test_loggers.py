"""Loggers through the register_loggers hook: jsonl by default, TensorBoard's event files, and one line
when a logger's package is missing or its kind is unknown."""

from __future__ import annotations

import importlib.util
import json

import pytest

from mmgen_plugins import loggers as builtin


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


def test_a_missing_package_is_one_line_naming_it(cli, cli_error, tiny_recipe, tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(builtin.importlib.util, "find_spec", lambda name: None if name == "tensorboard" else real(name))
    line = cli_error(cli("train", tiny_recipe, 'train.loggers=["tensorboard"]', "--out", tmp_path / "run"))
    assert "pip install tensorboard" in line and not (tmp_path / "run").exists()


@pytest.mark.parametrize(("value", "words"), [('["wandb"]', "unknown logger kind 'wandb'"),
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

"""The wandb logger offline (its default), read back with ``wandb leet inspect`` from the runs it leaves under
``<run>/wandb/``: the recipe as config, step and epoch metrics, resumes that continue the same W&B run without
repeating an epoch or a step (also after crashes), and ``mmgen eval``'s numbers and pictures in the run's
summary."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from mmgen.cli import app
from mmgen.train.trainer import Trainer
from mmgen_plugins.wandb_logger import WandbLogger
from tests.support.wandb_offline import OfflineRun

EVAL = ("-K", "5", "--limit", "20", "--per-class", "2", "--device", "cpu")


def run_cli(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def offline(mp) -> None:
    for name in ("WANDB_MODE", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_API_KEY", "WANDB_DIR"):
        mp.delenv(name, raising=False)  # the logger's own default: offline, project "mmgen"


@pytest.fixture(scope="module")
def tracked(tiny_recipe, tmp_path_factory):
    """Two epochs, a resume to three, then ``mmgen eval``: (run directory, its offline W&B runs)."""
    out = tmp_path_factory.mktemp("wandb") / "run"
    with pytest.MonkeyPatch.context() as mp:
        offline(mp)
        run_cli("train", tiny_recipe, "train.epochs=2", "train.log_every=1", 'train.loggers=["jsonl","wandb"]',
                "--out", out, "--device", "cpu")
        run_cli("train", out, "--resume", "train.epochs=3", "--device", "cpu")
        result = run_cli("eval", out, *EVAL, "--json")
        assert "warning" not in result.stderr, result.stderr
        assert json.loads(result.stdout)["pictures"]  # W&B's own lines stay off stdout
    folders = sorted((out / "wandb").glob("offline-run-*"))
    return out, [OfflineRun.read(folder) for folder in folders]


def epochs_of(runs: list[OfflineRun]) -> list[dict]:
    return sorted((row for run in runs for row in run.history if "epoch" in row), key=lambda row: row["epoch"])


def test_training_resume_and_eval_each_write_an_offline_segment_of_the_same_run(tracked):
    out, runs = tracked
    run_id = json.loads((out / "wandb-run.json").read_text())["run_id"]
    assert len(runs) == 3 and {run.run_id for run in runs} == {run_id}
    assert {run.state for run in runs} == {"finished"}  # close() finished each
    assert json.loads((out / "wandb-run.json").read_text())["epochs_logged"] == 3


def test_the_recipe_is_the_runs_config(tracked):
    out, runs = tracked
    config = runs[0].config
    recipe = json.loads((out / "recipe.json").read_text())
    assert config["train.lr"] == recipe["train"]["lr"] and config["modalities.image.kind"] == "image"
    assert config["modalities.image.encoder_hidden"] == [32] and config["train.epochs"] == 2
    assert max(run.config.get("train.epochs", 0) for run in runs) == 3  # the resume's new length


def test_every_epoch_is_logged_once_across_the_resume(tracked):
    out, runs = tracked
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    logged = epochs_of(runs)
    assert [row["epoch"] for row in logged] == [1, 2, 3]
    assert [(row["_step"], row["epoch/val/loss"]) for row in logged] == [(r["step"], r["val/loss"]) for r in rows]
    assert all(row["epoch/val/elbo(image,label)"] == r["val/elbo(image,label)"] for row, r in zip(logged, rows))
    steps = sorted(row["_step"] for run in runs for row in run.history if "step/loss" in row)
    assert steps[:10] == list(range(1, 11))  # log_every = 1 before the resume


def test_eval_puts_its_numbers_and_pictures_in_the_summary(tracked):
    out, runs = tracked
    report = json.loads((out / "eval.json").read_text())
    (evaluated,) = [run for run in runs if any(key.startswith("eval/") for key in run.summary)]
    assert evaluated.summary["eval/test/log p(image,label)"] == report["log p(image,label)"]["value"]
    assert evaluated.summary["eval/test/log p(label|image)/stderr"] == report["log p(label|image)"]["stderr"]
    assert evaluated.summary["eval/test/coherence label->image"] == report["coherence label->image"]
    picture = evaluated.summary["eval/test/samples-prior"]
    assert picture["_type"] == "image-file"
    assert list((out / "wandb").glob(f"offline-run-*/files/{picture['path']}"))  # the PNG itself, for wandb sync
    assert not any(key.startswith("eval/") for run in runs if run is not evaluated for key in run.summary)


def test_crashes_after_a_commit_and_mid_epoch_lose_no_epoch_and_repeat_no_step(cli, tiny_recipe, tmp_path,
                                                                            monkeypatch):
    """A crash between epoch 2's commit and its logging, then one in epoch 3's validation (its steps were sent),
    then a resume to the end: three segments of one W&B run, each epoch and each step's progress once."""
    offline(monkeypatch)
    out = tmp_path / "run"
    real = WandbLogger.log_epoch

    def crash_after_the_second_commit(self, epoch, row):
        if epoch == 2:
            raise RuntimeError("killed between the commit and the logging")
        real(self, epoch, row)

    with monkeypatch.context() as mp:
        mp.setattr(WandbLogger, "log_epoch", crash_after_the_second_commit)
        assert cli("train", tiny_recipe, "train.epochs=3", "train.log_every=1", 'train.loggers=["jsonl","wandb"]',
                   "--out", out, "--device", "cpu").exit_code != 0
    assert json.loads((out / "wandb-run.json").read_text())["epochs_logged"] == 1
    with monkeypatch.context() as mp:
        mp.setattr(Trainer, "validate", lambda self: 1 / 0)
        assert cli("train", out, "--resume", "--device", "cpu").exit_code != 0
    record = json.loads((out / "wandb-run.json").read_text())
    assert record["epochs_logged"] == 2 and record["steps_logged"] == 15  # epoch 2's row sent, then epoch 3's steps
    result = cli("train", out, "--resume", "--device", "cpu")
    assert result.exit_code == 0, result.output
    runs = [OfflineRun.read(folder) for folder in sorted((out / "wandb").glob("offline-run-*"))]
    assert [run.state for run in runs] == ["failed", "failed", "finished"]
    assert {run.run_id for run in runs} == {record["run_id"]}
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(row["epoch"], row["epoch/val/loss"]) for row in epochs_of(runs)] == [(r["epoch"], r["val/loss"])
                                                                                   for r in rows]
    assert sorted(row["_step"] for run in runs for row in run.history if "step/loss" in row) == list(range(1, 16))


def test_a_mode_wandb_refuses_is_one_line(cli, cli_error, tiny_recipe, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "sometimes")
    line = cli_error(cli("train", tiny_recipe, 'train.loggers=["wandb"]', "--out", tmp_path / "run"))
    assert line.startswith(f"error: the wandb logger could not start a run in {tmp_path / 'run'}: ")
    assert "sometimes" in line and "WANDB_MODE=offline" in line

"""Signals, crashes and restarts: a run is never a dead end and loses no finished epoch.

The signals are real (``os.kill`` of this process from inside a training step); the crashes are
simulated by making a write raise in the middle of an epoch's commit. The tiny recipe has 5 steps
per epoch.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mmgen import TrainingInterrupted
from mmgen.run import RunDir
from mmgen.train.session import train_recipe
from mmgen.train.trainer import Trainer

STEPS = 5  # per epoch of the tiny recipe


def rows_of(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def same_weights(a: Path, b: Path, name: str = "last.safetensors") -> None:
    x, y = load_file(a / name), load_file(b / name)
    assert x.keys() == y.keys()
    for key in x:
        torch.testing.assert_close(x[key], y[key], rtol=0, atol=0, msg=key)


@pytest.fixture
def signal_at(monkeypatch):
    """``signal_at(7, SIGTERM)``: this process receives the signal right after global step 7."""
    plan: dict[int, int] = {}
    original = Trainer._step

    def step(self, *args, **kwargs):
        beta = original(self, *args, **kwargs)
        if self.state.step in plan:
            os.kill(os.getpid(), plan.pop(self.state.step))
        return beta

    monkeypatch.setattr(Trainer, "_step", step)
    return lambda at, sig=signal.SIGTERM: plan.__setitem__(at, sig)


@pytest.fixture(scope="module")
def straight(tiny_recipe, tmp_path_factory) -> Path:
    """Three epochs without interruption: the reference every resumed run must equal bit for bit."""
    out = tmp_path_factory.mktemp("straight") / "run"
    train_recipe(tiny_recipe, ["train.epochs=3"], out, "cpu", resume=False)
    return out


@pytest.mark.parametrize(("sig", "at"), [(signal.SIGTERM, 7), (signal.SIGINT, 3), (signal.SIGTERM, 10)])
def test_a_signal_saves_a_checkpoint_and_resuming_equals_the_uninterrupted_run(tiny_recipe, tmp_path, straight,
                                                                                 signal_at, sig, at):
    out = tmp_path / "run"
    signal_at(at, sig)
    with pytest.raises(TrainingInterrupted) as info:
        train_recipe(tiny_recipe, ["train.epochs=3"], out, "cpu", resume=False)
    message = str(info.value)
    assert info.value.exit_code == 128 + sig
    assert signal.Signals(sig).name in message and f"mmgen train {out} --resume" in message
    finished = at // STEPS
    if at % STEPS:  # mid-epoch: a partial checkpoint; last.safetensors is still the last finished epoch
        assert f"during epoch {finished + 1} (step {at % STEPS} of {STEPS})" in message
    else:
        assert f"after epoch {finished}" in message
    assert [r["epoch"] for r in rows_of(out)] == list(range(1, finished + 1))
    train_recipe(out, [], None, "cpu", resume=True)
    assert [r["epoch"] for r in rows_of(out)] == [1, 2, 3]
    same_weights(out, straight)
    same_weights(out, straight, "best.safetensors")
    for a, b in zip(rows_of(out), rows_of(straight)):
        assert a["train/loss"] == b["train/loss"] and a["val/loss"] == b["val/loss"]


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_the_cli_says_what_was_saved_and_exits_128_plus_the_signal(cli, tiny_recipe, tmp_path, signal_at, sig, code):
    signal_at(2, sig)
    result = cli("train", tiny_recipe, "--out", tmp_path / "run", "train.epochs=2")
    assert result.exit_code == code
    line = result.stderr.strip().splitlines()[-1]
    name = signal.Signals(sig).name
    assert line.startswith(f"error: interrupted by {name} during epoch 1 (step 2 of 5): saved the partial epoch")
    assert "--resume" in line
    result = cli("train", tmp_path / "run", "--resume")
    assert result.exit_code == 0, result.output
    assert "resuming" in result.stderr and "at epoch 1 of 2, step 2" in " ".join(result.stderr.split())


def test_a_crash_between_the_commit_and_the_metrics_line_loses_no_epoch(tiny_recipe, tmp_path, straight,
                                                                         monkeypatch):
    out = tmp_path / "run"
    original = RunDir.append_metrics

    class Killed(BaseException):  # what the process would see of a kill -9: nothing after this point
        pass

    def append(self, row):
        if row["epoch"] == 2:
            raise Killed
        original(self, row)

    monkeypatch.setattr(RunDir, "append_metrics", append)
    with pytest.raises(Killed):
        train_recipe(tiny_recipe, ["train.epochs=3"], out, "cpu", resume=False)
    monkeypatch.undo()
    assert [r["epoch"] for r in rows_of(out)] == [1]  # the line of epoch 2 never reached the file
    with (out / "metrics.jsonl").open("a") as f:
        f.write('{"epoch": 2, "step": 1')  # and a torn line, as a crash in the middle of a write leaves
    train_recipe(out, [], None, "cpu", resume=True)
    assert [r["epoch"] for r in rows_of(out)] == [1, 2, 3]  # every finished epoch exactly once
    same_weights(out, straight)


class Killed(BaseException):  # what the process would see of a kill -9: nothing after this point
    pass


def kill_in_the_commit(monkeypatch, epoch: int, where: str) -> None:
    """Stop the process in epoch ``epoch``'s commit: right after the resume file is renamed into place
    (before ``last``, ``best`` and the metrics row), or after the weights, before the metrics row."""
    if where == "after the resume file":
        real, commits = os.replace, [0]

        def replace(src, dst, *args, **kwargs):
            real(src, dst, *args, **kwargs)
            if Path(dst).name == "trainer_state.safetensors":
                commits[0] += 1
                if commits[0] == epoch:
                    raise Killed

        monkeypatch.setattr(os, "replace", replace)
    else:
        real_append = RunDir.append_metrics

        def append(self, row):
            if row["epoch"] == epoch:
                raise Killed
            real_append(self, row)

        monkeypatch.setattr(RunDir, "append_metrics", append)


@pytest.mark.parametrize("where", ["after the resume file", "before the metrics row"])
@pytest.mark.parametrize("epoch", [2, 3])  # 3: the last, after which --resume finds the run finished
def test_a_kill_in_an_epochs_commit_is_completed_by_resume(cli, tiny_recipe, tmp_path, straight, monkeypatch,
                                                         epoch, where):
    out = tmp_path / "run"
    with monkeypatch.context() as mp:
        kill_in_the_commit(mp, epoch, where)
        with pytest.raises(Killed):
            train_recipe(tiny_recipe, ["train.epochs=3"], out, "cpu", resume=False)
    assert [r["epoch"] for r in rows_of(out)] == list(range(1, epoch))  # the row of the epoch never came
    (out / ".best.safetensors.x1.tmp").write_bytes(b"staged")  # a kill leaves the temporaries not yet renamed
    result = cli("train", out, "--resume")
    assert result.exit_code == 0, result.output
    said = " ".join(result.stderr.split())
    assert "removed .best.safetensors.x1.tmp" in said and not list(out.glob(".*.tmp"))
    rebuilt = ["last.safetensors", "best.safetensors"] if where == "after the resume file" else []
    for name in [*rebuilt, "metrics.jsonl"]:
        assert f"rebuilt {name} from the resume file (a kill had cut the commit of epoch {epoch} short)" in said
    assert ("is finished: 3 of 3 epochs" in said) == (epoch == 3)
    assert [r["epoch"] for r in rows_of(out)] == [1, 2, 3]
    for a, b in zip(rows_of(out), rows_of(straight)):
        assert a["train/loss"] == b["train/loss"] and a["val/loss"] == b["val/loss"] and a["best"] == b["best"]
    for name in ("last.safetensors", "best.safetensors"):
        assert (out / name).read_bytes() == (straight / name).read_bytes()  # rebuilt byte for byte
    result = cli("train", out, "--resume")  # and nothing is left to rebuild
    assert "rebuilt" not in result.stderr and result.exit_code == 0


def test_a_torn_last_line_is_skipped_with_a_warning_by_readers(trained_run, tmp_path, caplog):
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"epoch": 2, "ste')
    assert [r["epoch"] for r in RunDir(run).read_metrics()] == [1]
    assert "line 2 is not a metrics row" in caplog.text


def killed_in_first_epoch(tiny_recipe, out: Path, monkeypatch, write_tmp: bool = True) -> None:
    """A training process killed before its first checkpoint: recipe.json, versions.json, maybe a .tmp."""

    class Killed(BaseException):
        pass

    def die(self, *args, **kwargs):
        if write_tmp:
            (self.run.path / ".last.safetensors.x1.tmp").write_bytes(b"half a checkpoint")  # left by the kill
        raise Killed

    with monkeypatch.context() as mp:
        mp.setattr(Trainer, "save", die)
        with pytest.raises(Killed):
            train_recipe(tiny_recipe, ["train.epochs=3"], out, "cpu", resume=False)
    assert (out / "recipe.json").is_file() and not (out / "trainer_state.safetensors").exists()


@pytest.mark.parametrize("how", ["the same command", "--resume"])
def test_a_run_killed_before_its_first_checkpoint_restarts_in_place(cli, tiny_recipe, tmp_path, straight,
                                                                       monkeypatch, how):
    out = tmp_path / "run"
    killed_in_first_epoch(tiny_recipe, out, monkeypatch)
    args = ("train", out, "--resume") if how == "--resume" else ("train", tiny_recipe, "train.epochs=3", "--out", out)
    result = cli(*args)
    assert result.exit_code == 0, result.output
    stderr = " ".join(result.stderr.split())
    assert "has no checkpoint yet: training it from epoch 1 in place" in stderr
    assert "removed .last.safetensors.x1.tmp" in stderr
    assert not list(out.glob(".*.tmp"))
    same_weights(out, straight)


def test_another_recipe_does_not_take_over_an_unstarted_run(cli, cli_error, tiny_recipe, tmp_path, monkeypatch):
    out = tmp_path / "run"
    killed_in_first_epoch(tiny_recipe, out, monkeypatch, write_tmp=False)
    line = cli_error(cli("train", tiny_recipe, "train.epochs=3", "train.lr=0.01", "--out", out))
    assert "another recipe" in line and "--resume" in line


def test_a_start_killed_while_writing_its_recipe_is_no_dead_end(cli, tiny_recipe, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".recipe.json.ab12.tmp").write_text('{"name": "tin')  # the kill came during the very first write
    result = cli("train", out, "--resume")
    assert "killed while writing it" in result.stderr and f"--out {out}" in " ".join(result.stderr.split())
    result = cli("train", tiny_recipe, "--out", out)  # and the command it suggests works
    assert result.exit_code == 0, result.output
    assert not list(out.glob(".*.tmp"))


def test_resume_of_a_finished_run_says_so_and_changes_nothing(cli, trained_run, tmp_path):
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    before = (run / "trainer_state.safetensors").read_bytes()
    result = cli("train", run, "--resume")
    assert result.exit_code == 0, result.output
    assert "is finished: 1 of 1 epochs" in " ".join(result.stderr.split())
    assert (run / "trainer_state.safetensors").read_bytes() == before


def test_resume_with_fewer_epochs_than_finished_is_refused_and_keeps_the_recipe(cli, cli_error, tiny_recipe,
                                                                               tmp_path):
    out = tmp_path / "run"
    assert cli("train", tiny_recipe, "--out", out, "train.epochs=2").exit_code == 0
    recipe = (out / "recipe.json").read_text()
    line = cli_error(cli("train", out, "--resume", "train.epochs=1"))
    assert "train.epochs=1 is below the 2 epochs" in line
    assert (out / "recipe.json").read_text() == recipe


def test_resume_says_where_it_resumes(cli, trained_run, tmp_path):
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    result = cli("train", run, "--resume", "train.epochs=2")
    assert result.exit_code == 0, result.output
    assert f"resuming {run} at epoch 2 of 2" in " ".join(result.stderr.split())


def test_the_progress_bar_shows_the_true_epoch_of_a_resumed_run(cli, trained_run, tmp_path):
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    result = cli("train", run, "--resume", "train.epochs=3")
    assert result.exit_code == 0, result.output
    bar = [line for line in result.stderr.splitlines() if line.startswith("epoch ") and "step" in line]
    assert bar and bar[-1].startswith("epoch 3/")  # the bar's last state: the true epoch, not "epoch 1"
    assert "epoch 1/" not in result.stderr

"""A full disk, and a resume file lost: never a dead end.

The disk fills up for real as far as mmgen can tell: ``os.fsync`` of one file's temporary copy
raises ENOSPC, as a write to a full disk does. The tiny recipe has 5 steps per epoch.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mmgen import CheckpointError
from mmgen.storage import read_metadata
from mmgen.train.session import train_recipe
from mmgen.train.trainer import Trainer
from tests.train.test_interrupts import same_weights

pytestmark = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="finds a file by its descriptor")


def rows_of(run: Path) -> list[int]:
    return [row["epoch"] for row in read_metadata(run / "trainer_state.safetensors")["metrics"]]


@pytest.fixture
def disk_full(monkeypatch):
    """``disk_full("trainer_state.safetensors", 2)``: the 2nd write of that file fails with ENOSPC.
    ``disk_full.free()`` makes room again."""
    real = os.fsync
    plans: dict[str, list[int]] = {}

    def fsync(fd):
        name = Path(os.readlink(f"/proc/self/fd/{fd}")).name
        for target, count in plans.items():
            if name.startswith(f".{target}."):  # the temporary file of an atomic write of ``target``
                count[0] += 1
                if count[0] == count[1]:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    class Plan:
        def __call__(self, target: str, nth: int = 1) -> None:
            plans[target] = [0, nth]

        def free(self) -> None:
            plans.clear()

    monkeypatch.setattr(os, "fsync", fsync)
    return Plan()


@pytest.fixture(scope="module")
def straight(tiny_recipe, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("straight") / "run"
    train_recipe(tiny_recipe, ["train.epochs=3"], out, "cpu", resume=False)
    return out


@pytest.mark.parametrize("name", ["last.safetensors", "best.safetensors", "trainer_state.safetensors"])
def test_a_full_disk_at_a_commit_keeps_the_last_checkpoint_whole_and_resume_goes_on(tiny_recipe, tmp_path,
                                                                                   straight, disk_full, name):
    out = tmp_path / "run"
    disk_full(name, 2)  # the commit of epoch 2 (every epoch of the tiny run is its best so far)
    with pytest.raises(CheckpointError) as info:
        train_recipe(tiny_recipe, ["train.epochs=3"], out, "cpu", resume=False)
    assert str(info.value) == (f"cannot save the checkpoint of epoch 2: {out / name}: No space left on device; "
                               "the checkpoint of epoch 1 is kept")
    assert info.value.hint == f"free some space, then resume with: mmgen train {out} --resume"
    # All or nothing: every file still holds epoch 1, and no temporary file is left.
    for file in ("last.safetensors", "best.safetensors", "trainer_state.safetensors"):
        assert read_metadata(out / file)["epoch"] == 1, file
    state = load_file(out / "trainer_state.safetensors")
    for key, value in load_file(out / "last.safetensors").items():
        assert torch.equal(state[f"model.{key}"], value)
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []
    disk_full.free()
    train_recipe(out, [], None, "cpu", resume=True)
    assert rows_of(out) == [1, 2, 3]
    same_weights(out, straight)  # the resume file was whole: the very same run
    same_weights(out, straight, "best.safetensors")


def test_the_cli_names_the_file_and_the_command_that_goes_on(cli, cli_error, tiny_recipe, tmp_path, disk_full):
    out = tmp_path / "run"
    disk_full("trainer_state.safetensors", 2)
    line = cli_error(cli("train", tiny_recipe, "train.epochs=2", "--out", out))
    assert line == (f"error: cannot save the checkpoint of epoch 2: {out}/trainer_state.safetensors: No space left "
                    f"on device; the checkpoint of epoch 1 is kept (hint: free some space, then resume with: "
                    f"mmgen train {out} --resume)")
    disk_full.free()
    result = cli("train", out, "--resume")
    assert result.exit_code == 0, result.output
    assert f"resuming {out} at epoch 2 of 2" in " ".join(result.stderr.split())


def test_a_full_disk_at_the_first_commit_says_nothing_was_saved(cli, cli_error, tiny_recipe, tmp_path, disk_full):
    out = tmp_path / "run"
    disk_full("last.safetensors", 1)
    line = cli_error(cli("train", tiny_recipe, "--out", out))
    assert line == (f"error: cannot save the checkpoint of epoch 1: {out}/last.safetensors: No space left on "
                    f"device; no checkpoint had been saved yet (hint: free some space, then `mmgen train {out} "
                    "--resume` trains it again from epoch 1)")
    disk_full.free()
    result = cli("train", out, "--resume")
    assert result.exit_code == 0, result.output
    assert rows_of(out) == [1]


def truncated_state(trained_run: Path, tmp_path: Path) -> Path:
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    state = run / "trainer_state.safetensors"
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    return run


def test_a_truncated_resume_file_offers_the_weights_of_the_last_epoch(cli, cli_error, trained_run, tmp_path):
    run = truncated_state(trained_run, tmp_path)
    line = cli_error(cli("train", run, "--resume", "train.epochs=3"))
    assert line.startswith(f"error: corrupt checkpoint {run}/trainer_state.safetensors: ")  # then safetensors' words
    assert line.endswith(f" (hint: `mmgen train {run} --resume --from-weights` goes on from last.safetensors "
                         "(epoch 1) with a fresh optimizer state, so not bit-identical to an unbroken run)")
    result = cli("train", run, "--resume", "--from-weights", "train.epochs=3")  # the command it offers
    assert result.exit_code == 0, result.output
    assert (f"resuming {run} at epoch 2 of 3 from last.safetensors (epoch 1) with a fresh optimizer state: not "
            "bit-identical to an unbroken run") in " ".join(result.stderr.split())
    assert rows_of(run) == [1, 2, 3] and read_metadata(run / "last.safetensors")["epoch"] == 3
    assert [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    result = cli("train", run, "--resume")  # and the run is whole again
    assert result.exit_code == 0 and "is finished: 3 of 3 epochs" in " ".join(result.stderr.split())


def test_a_truncated_resume_file_without_weights_offers_a_new_run(cli, cli_error, trained_run, tmp_path):
    run = truncated_state(trained_run, tmp_path)
    (run / "last.safetensors").unlink()
    line = cli_error(cli("train", run, "--resume"))
    assert line.endswith(f" (hint: no weights of a finished epoch remain: `mmgen train {run} --out NEW_DIR` trains "
                         "its recipe again)")
    result = cli("train", run, "--out", tmp_path / "again")  # the command it offers
    assert result.exit_code == 0, result.output


def test_from_weights_goes_with_resume(cli, cli_error, trained_run):
    line = cli_error(cli("train", trained_run, "--from-weights"))
    assert line == "error: --from-weights goes with --resume: `mmgen train RUN_DIR --resume --from-weights`"


def test_from_weights_steps_the_schedule_to_where_the_run_was(tiny_recipe, tmp_path, monkeypatch):
    """The learning rate goes on where the run left it; only the optimizer's moments start afresh."""
    schedule = ["train.schedule=step", "train.step_epochs=1", "train.gamma=0.5", "train.warmup_epochs=0.5"]
    out = tmp_path / "run"
    train_recipe(tiny_recipe, ["train.epochs=2", *schedule], out, "cpu", resume=False)
    copy = Path(shutil.copytree(out, tmp_path / "copy"))
    seen = {}
    original = Trainer.fit

    def fit(self, *args, **kwargs):
        seen[self.run.path] = (self.optimizer.param_groups[0]["lr"], len(self.optimizer.state))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "fit", fit)
    train_recipe(out, ["train.epochs=3"], None, "cpu", resume=True)
    train_recipe(copy, ["train.epochs=3"], None, "cpu", resume=True, from_weights=True)
    assert seen[copy][0] == seen[out][0] < 1e-3  # the recipe's lr, stepped down once or more
    assert seen[out][1] > 0 and seen[copy][1] == 0  # Adam's moments: restored, or fresh

"""Multi-process training under a real torchrun (gloo on the CPU).

The reparameterization noise of two processes cannot be the noise of one, so these runs use a
deterministic posterior (the product of experts' mean as a point mass: a fusion plugin installed
for the subprocesses through an entry point). Then two processes, each on its shard of every
batch, must end with the parameters of one process on the whole batches, within float32's
reduction-order noise (stated tolerance: atol 2e-5, rtol 1e-4), also when their shards differ
in size and when the run is resumed under torchrun.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.support.distributions import installed_plugin_env

PLUGIN = '''
import os
import signal

import mmgen
from mmgen import DiagonalGaussian, Fusion, hookimpl, product_of_experts


class PointMass(DiagonalGaussian):
    """The product of experts' mean, drawn without noise: training becomes deterministic."""

    def rsample(self, sample_shape=()):
        return self.mu.expand(*sample_shape, *self.mu.shape)


def named_rank(variable):
    """True in the torchrun process whose RANK the test put in ``variable``."""
    rank = os.environ.get(variable)
    return rank is not None and os.environ.get("RANK") == rank


class PointMassFusion(Fusion):
    calls = 0

    def forward(self, mu, logvar, use):
        PointMassFusion.calls += 1
        if PointMassFusion.calls == 4 and named_rank("MMGEN_TEST_FAIL_RANK"):
            raise RuntimeError("injected failure")
        if PointMassFusion.calls == 4 and named_rank("MMGEN_TEST_SIGNAL_RANK"):
            os.kill(os.getpid(), signal.SIGTERM)  # a scheduler's SIGTERM reaching one rank, mid-epoch
        return PointMass(*product_of_experts(mu, logvar, use))


@hookimpl
def register_fusions(register):
    register("pointmass", PointMassFusion)
'''
TOLERANCE = {"atol": 2e-5, "rtol": 1e-4}
SETTINGS = ["model.fusion.kind=pointmass", "train.batch_size=49", "train.log_every=2"]  # 250 = 5 x 49 + 5


@pytest.fixture(scope="module")
def env(tmp_path_factory, tiny_mnist_root) -> dict:
    """A subprocess environment with the point-mass fusion installed as an entry point."""
    base = {**os.environ, "OMP_NUM_THREADS": "1", "MMGEN_DATA_ROOT": str(tiny_mnist_root)}
    return installed_plugin_env(tmp_path_factory.mktemp("site"), "mmgen-test-pointmass", "pointmass",
                                "mmgen_test_pointmass", textwrap.dedent(PLUGIN), base)


def mmgen(env: dict, *args, processes: int = 1, timeout: int = 180) -> subprocess.CompletedProcess:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"] \
        if processes > 1 else [sys.executable]
    return subprocess.run([*launcher, "-m", "mmgen", "train", *map(str, args), "--device", "cpu"], env=env,
                          capture_output=True, text=True, timeout=timeout)


def close(a: Path, b: Path) -> None:
    x, y = load_file(a / "last.safetensors"), load_file(b / "last.safetensors")
    assert x.keys() == y.keys()
    for key in x:
        torch.testing.assert_close(x[key], y[key], **TOLERANCE, msg=key)


@pytest.fixture(scope="module")
def single(env, tiny_recipe, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("single") / "run"
    done = mmgen(env, tiny_recipe, "--out", out, "train.epochs=2", *SETTINGS)
    assert done.returncode == 0, done.stderr
    return out


def test_two_processes_train_as_one_on_the_whole_batches(env, tiny_recipe, tmp_path, single):
    out = tmp_path / "ddp"
    done = mmgen(env, tiny_recipe, "--out", out, "train.epochs=2", *SETTINGS, processes=2)
    assert done.returncode == 0, done.stderr
    assert "2 processes share each batch of 49" in " ".join(done.stderr.split())
    assert done.stdout.strip().splitlines() == [str(out)]  # rank 0 alone prints the run directory
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2  # and writes it
    close(out, single)


def test_a_last_batch_smaller_than_the_world_leaves_a_rank_without_examples(env, tiny_recipe, tmp_path):
    # 250 = 3 x 83 + 1: in the last batch rank 1 has nothing to train on, and must still step with rank 0.
    settings = [*SETTINGS, "train.batch_size=83", "train.epochs=1"]
    one, two = tmp_path / "one", tmp_path / "two"
    assert mmgen(env, tiny_recipe, "--out", one, *settings).returncode == 0
    done = mmgen(env, tiny_recipe, "--out", two, *settings, processes=2)
    assert done.returncode == 0, done.stderr
    close(two, one)
    logged = [json.loads((run / "metrics.jsonl").read_text().splitlines()[0]) for run in (one, two)]
    assert logged[0]["train/loss"] == pytest.approx(logged[1]["train/loss"], rel=1e-4)


def test_a_two_process_run_resumes_under_torchrun(env, tiny_recipe, tmp_path, single):
    out = tmp_path / "ddp"
    assert mmgen(env, tiny_recipe, "--out", out, "train.epochs=1", *SETTINGS, processes=2).returncode == 0
    done = mmgen(env, out, "--resume", "train.epochs=2", processes=2)
    assert done.returncode == 0, done.stderr
    assert "at epoch 2 of 2" in " ".join(done.stderr.split())
    close(out, single)


def test_a_failure_on_one_rank_stops_all_ranks_with_one_line(env, tiny_recipe, tmp_path):
    out = tmp_path / "ddp"
    done = mmgen({**env, "MMGEN_TEST_FAIL_RANK": "1"}, tiny_recipe, "--out", out, "train.epochs=2", *SETTINGS,
                 processes=2, timeout=120)
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert errors == ["error: rank 1: internal error: RuntimeError: injected failure (set MMGEN_DEBUG=1 for the "
                      "traceback)"], done.stderr[-3000:]


def test_a_sigterm_to_one_rank_stops_every_rank_at_one_step_and_the_run_resumes(env, tiny_recipe, tmp_path, single):
    out = tmp_path / "ddp"
    stopped = mmgen({**env, "MMGEN_TEST_SIGNAL_RANK": "1"}, tiny_recipe, "--out", out, "train.epochs=2", *SETTINGS,
                    processes=2, timeout=120)
    assert stopped.returncode != 0
    said = " ".join(stopped.stderr.split())
    assert "saved the partial epoch" in said and f"mmgen train {out} --resume" in said, stopped.stderr[-3000:]
    assert not (out / "metrics.jsonl").exists() or not (out / "metrics.jsonl").read_text().strip()  # mid-epoch 1
    done = mmgen(env, out, "--resume", processes=2)
    assert done.returncode == 0, done.stderr
    close(out, single)  # both ranks stopped at the same step: the resumed run is the uninterrupted one

"""Learning-rate schedules, gradient clipping, and their state across --resume."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file

from mmgen.config import TrainConfig
from mmgen.errors import CheckpointError
from mmgen.train.optim import WARMUP_START, Stepper, build_scheduler, clip_gradients
from mmgen.train.session import train_recipe


def lrs(cfg: TrainConfig, steps_per_epoch: int) -> list[float]:
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=cfg.lr)
    scheduler = build_scheduler(opt, cfg, steps_per_epoch)
    out = []
    for _ in range(cfg.epochs * steps_per_epoch):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        if scheduler is not None:
            scheduler.step()
    return out


def test_constant_is_no_scheduler():
    cfg = TrainConfig(epochs=2, lr=0.1)
    assert build_scheduler(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1), cfg, 5) is None


def test_warmup_then_cosine():
    cfg = TrainConfig(epochs=4, lr=0.1, schedule="cosine", warmup_epochs=1, min_lr=0.01)
    got = lrs(cfg, steps_per_epoch=10)  # 10 warm-up steps, then 30 cosine steps
    assert got[0] == pytest.approx(0.1 * WARMUP_START)
    assert got[5] == pytest.approx(0.1 * (WARMUP_START + (1 - WARMUP_START) * 5 / 10))
    assert got[10] == pytest.approx(0.1)
    assert got[25] == pytest.approx(0.01 + 0.09 * (1 + math.cos(math.pi * 15 / 30)) / 2)
    assert min(got[10:]) >= 0.01 - 1e-12


def test_step_schedule_and_warmup_alone():
    assert lrs(TrainConfig(epochs=3, lr=0.1, schedule="step", step_epochs=1, gamma=0.5), 4)[::4] == \
        pytest.approx([0.1, 0.05, 0.025])
    constant_after = lrs(TrainConfig(epochs=2, lr=0.1, warmup_epochs=0.5), 4)
    assert constant_after[0] < 0.1 and constant_after[2:] == pytest.approx([0.1] * 6)


def test_clipping_bounds_the_global_norm():
    params = [torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2))]
    params[0].grad, params[1].grad = torch.tensor([3.0, 4.0, 0.0]), torch.tensor([0.0, 12.0])  # norm 13
    clip_gradients(params, 1.0)
    assert float(torch.cat([p.grad for p in params]).norm()) == pytest.approx(1.0, rel=1e-5)
    clip_gradients(params, 0.0)  # 0: off
    assert float(torch.cat([p.grad for p in params]).norm()) == pytest.approx(1.0, rel=1e-5)


SCHEDULED = ["train.schedule=step", "train.step_epochs=1", "train.gamma=0.7", "train.warmup_epochs=0.5",
             "train.clip_grad_norm=5"]


def test_the_schedule_continues_on_resume_bit_for_bit(tiny_recipe, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train_recipe(tiny_recipe, ["train.epochs=3", *SCHEDULED], straight, "cpu", resume=False)
    train_recipe(tiny_recipe, ["train.epochs=1", *SCHEDULED], resumed, "cpu", resume=False)
    train_recipe(resumed, ["train.epochs=3"], None, "cpu", resume=True)
    a, b = load_file(straight / "last.safetensors"), load_file(resumed / "last.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    plain = tmp_path / "plain"
    train_recipe(tiny_recipe, ["train.epochs=3"], plain, "cpu", resume=False)
    c = load_file(plain / "last.safetensors")
    assert any(not torch.equal(a[k], c[k]) for k in a)  # the schedule did change the training


def test_a_cosine_run_cannot_change_its_length_on_resume(cli, cli_error, tiny_recipe, tmp_path):
    out = tmp_path / "run"
    assert cli("train", tiny_recipe, "train.schedule=cosine", "--out", out).exit_code == 0
    line = cli_error(cli("train", out, "--resume", "train.epochs=2"))
    assert "cosine" in line and "train.epochs" in line


@pytest.mark.parametrize(("key", "word"), [("train.schedule=linear", "train.schedule"),
                                           ("train.gamma=2", "train.gamma"), ("train.clip_grad_norm=-1", "clip")])
def test_bad_schedules_are_refused(cli, cli_error, tiny_recipe, key, word):
    assert word in cli_error(cli("recipes", "validate", tiny_recipe, key))


def test_a_resume_file_without_the_schedule_state_is_refused():
    cfg = TrainConfig(epochs=2, lr=0.1, schedule="cosine")
    model = torch.nn.Linear(2, 2)
    stepper = Stepper(model, model, cfg, torch.device("cpu"), steps_per_epoch=5)
    with pytest.raises(CheckpointError, match="no scheduler state"):
        stepper.load_state({})

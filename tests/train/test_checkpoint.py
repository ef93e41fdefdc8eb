"""The trainer's resume file: optimizer state flattened into safetensors and back."""

import pytest
import torch

from mmgen import CheckpointError
from mmgen.storage import load_tensors, save_tensors
from mmgen.train.checkpoint import optimizer_from_tensors, optimizer_mismatch, optimizer_to_tensors


def _train(params, optimizer, steps, seed):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        optimizer.zero_grad()
        x = torch.randn(8, 4, generator=g)
        loss = ((x @ params[0] + params[1]) ** 2).mean()
        loss.backward()
        optimizer.step()


@pytest.mark.parametrize("fused", [False, True])  # the trainer uses fused Adam on the CPU
def test_optimizer_state_round_trip(tmp_path, fused):
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(4, 3)), torch.nn.Parameter(torch.randn(3))]
    opt = torch.optim.Adam(params, lr=1e-2, betas=(0.8, 0.95), fused=fused)
    _train(params, opt, steps=3, seed=1)

    tensors, meta = optimizer_to_tensors(opt)
    save_tensors(tmp_path / "state.safetensors", tensors, meta)
    loaded, loaded_meta = load_tensors(tmp_path / "state.safetensors")

    # A fresh optimizer with different hyperparameters, over copies of the same weights.
    copies = [torch.nn.Parameter(p.detach().clone()) for p in params]
    restored = torch.optim.Adam(copies, lr=1.0, fused=fused)
    optimizer_from_tensors(restored, loaded, loaded_meta)
    assert restored.param_groups[0]["lr"] == 1e-2 and tuple(restored.param_groups[0]["betas"]) == (0.8, 0.95)

    _train(params, opt, steps=1, seed=2)
    _train(copies, restored, steps=1, seed=2)
    for a, b in zip(params, copies):
        assert torch.equal(a, b)
    assert torch.equal(opt.state[params[0]]["exp_avg_sq"], restored.state[copies[0]]["exp_avg_sq"])


def test_optimizer_state_of_another_model_is_refused():
    # Resuming with a changed model (here: one parameter group size differs) must say so plainly.
    opt = torch.optim.Adam([torch.nn.Parameter(torch.randn(3))])
    other = torch.optim.Adam([torch.nn.Parameter(torch.randn(2)), torch.nn.Parameter(torch.randn(2))])
    tensors, meta = optimizer_to_tensors(other)
    with pytest.raises(CheckpointError) as info:
        optimizer_from_tensors(opt, tensors, meta)
    assert str(info.value) == ("the trainer state does not fit this model's optimizer: it holds the optimizer state "
                               "of 2 parameter tensor(s) in group(s) of [2]; this model's optimizer has 1 in [1]")


def stepped_adam() -> torch.optim.Optimizer:
    params = [torch.nn.Parameter(torch.randn(4, 3)), torch.nn.Parameter(torch.randn(3))]
    opt = torch.optim.Adam(params)
    _train(params, opt, steps=1, seed=0)
    return opt


def test_an_optimizer_state_is_checked_by_the_shapes_of_its_moments():
    opt = stepped_adam()
    tensors, meta = optimizer_to_tensors(opt)
    shapes = {k: tuple(v.shape) for k, v in tensors.items()}
    assert optimizer_mismatch(opt, shapes, meta) is None  # Adam's 0-dim step counts as a scalar
    assert optimizer_mismatch(opt, {**shapes, "optim.1.exp_avg": (4,)}, meta) == (
        "optim.1.exp_avg has shape (4,), its parameter (3,)")
    assert optimizer_mismatch(opt, {**shapes, "optim.7.exp_avg": (3,)}, meta) == (
        "optim.7.exp_avg belongs to no parameter of its 'param_groups'")
    assert optimizer_mismatch(opt, shapes, {"scalars": {}}) == (
        "its header has no 'param_groups' (the optimizer's settings), so it was not written by mmgen's trainer")
    with pytest.raises(CheckpointError, match=r"^the trainer state does not fit this model's optimizer: optim.1"):
        optimizer_from_tensors(opt, {**tensors, "optim.1.exp_avg": torch.zeros(4)}, meta)

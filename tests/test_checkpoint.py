"""Safetensors checkpoints: round trips, atomic writes, corrupt files, and optimizer state for --resume."""

import os

import pytest
import torch

from mmgen import CheckpointError
from mmgen.checkpoint import load_tensors, optimizer_from_tensors, optimizer_to_tensors, save_tensors


def test_round_trip_with_metadata(tmp_path):
    tensors = {
        "w": torch.randn(3, 4),
        "b": torch.arange(5, dtype=torch.int64),
        "mask": torch.tensor([True, False]),
        "t": torch.randn(4, 3).t(),  # not contiguous: saved anyway
    }
    meta = {"epoch": 3, "best_val": 1.5, "names": ["image", "label"], "nested": {"a": None}}
    save_tensors(tmp_path / "ck.safetensors", tensors, meta)
    loaded, loaded_meta = load_tensors(tmp_path / "ck.safetensors")
    assert loaded_meta == meta
    assert loaded.keys() == tensors.keys()
    for k, v in tensors.items():
        assert loaded[k].dtype == v.dtype and torch.equal(loaded[k], v)


def test_no_metadata_reads_back_empty(tmp_path):
    save_tensors(tmp_path / "ck.safetensors", {"x": torch.ones(2)})
    assert load_tensors(tmp_path / "ck.safetensors")[1] == {}


def test_atomic_write_leaves_no_temp_files(tmp_path):
    save_tensors(tmp_path / "ck.safetensors", {"x": torch.ones(2)})
    save_tensors(tmp_path / "ck.safetensors", {"x": torch.zeros(2)})  # overwrite in place
    assert [p.name for p in tmp_path.iterdir()] == ["ck.safetensors"]
    assert torch.equal(load_tensors(tmp_path / "ck.safetensors")[0]["x"], torch.zeros(2))


@pytest.mark.parametrize("fail_in", ["replace", "fsync"])
def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch, fail_in):
    # A crash mid-save (disk full, Ctrl-C) must never leave a half-written checkpoint behind.
    path = tmp_path / "ck.safetensors"
    save_tensors(path, {"x": torch.ones(2)}, {"epoch": 1})
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, fail_in, boom)
    with pytest.raises(OSError, match="disk full"):
        save_tensors(path, {"x": torch.zeros(2)}, {"epoch": 2})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ck.safetensors"]


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_tensors(tmp_path / "nope.safetensors")


def _garbage(good: bytes) -> dict[str, bytes]:
    return {
        "truncated": good[: len(good) // 2],
        "header only": good[:20],
        "empty": b"",
        "random": bytes(range(256)) * 4,
        "pickle": b"\x80\x04\x95" + b"\x00" * 64,  # what torch.save writes would start like this
    }


@pytest.mark.parametrize("kind", ["truncated", "header only", "empty", "random", "pickle"])
def test_corrupt_file_raises_checkpoint_error(tmp_path, kind):
    good = tmp_path / "good.safetensors"
    save_tensors(good, {"x": torch.randn(64, 64)}, {"epoch": 1})
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(_garbage(good.read_bytes())[kind])
    with pytest.raises(CheckpointError, match="corrupt checkpoint"):
        load_tensors(bad)


def test_torch_save_file_is_not_unpickled(tmp_path):
    # A pickled file must be refused, not executed: nothing in a run directory is pickled.
    path = tmp_path / "weights.safetensors"
    torch.save({"x": torch.ones(3)}, path)
    with pytest.raises(CheckpointError):
        load_tensors(path)


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
    with pytest.raises(CheckpointError, match="does not fit"):
        optimizer_from_tensors(opt, tensors, meta)

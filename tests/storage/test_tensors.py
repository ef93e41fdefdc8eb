"""Safetensors files: round trips, atomic writes, corrupt files, no unpickling."""

import os

import pytest
import torch

from mmgen import CheckpointError
from mmgen.storage import load_tensors, save_tensors


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

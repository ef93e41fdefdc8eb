"""The GPU fast paths run on the CPU too: autocast bf16 and fp16 (with fp32 islands and a gradient
scaler), and torch.compile of the training step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mmgen.recipe import build_model, load_recipe
from mmgen.train.session import train_recipe
from tests.support.toy import make_batch


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_close_to_fp32(tiny_recipe, tmp_path, precision):
    fp32, amp = tmp_path / "fp32", tmp_path / precision
    train_recipe(tiny_recipe, ["train.epochs=2"], fp32, "cpu", resume=False)
    train_recipe(tiny_recipe, ["train.epochs=2", f"train.precision={precision}"], amp, "cpu", resume=False)
    a, b = rows(fp32)[-1], rows(amp)[-1]
    assert b["train/loss"] == pytest.approx(a["train/loss"], rel=0.05)
    assert b["val/loss"] == pytest.approx(a["val/loss"], rel=0.05)
    # The weights stay fp32: autocast changes computations only.
    assert all(v.dtype == torch.float32 for v in load_file(amp / "last.safetensors").values() if v.is_floating_point())


def test_the_delicate_parts_stay_fp32_under_autocast(tiny_recipe):
    model = build_model(load_recipe(tiny_recipe))
    batch = make_batch(["image", "label"], 4)
    batch["image"] = torch.rand(4, 1, 28, 28)
    seen = {}
    fusion = model.fusion.forward

    def spy(mu, logvar, use):
        seen["dtype"] = mu.dtype
        return fusion(mu, logvar, use)

    model.fusion.forward = spy
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(batch)
    assert seen["dtype"] == torch.float32 and out.loss.dtype == torch.float32 and torch.isfinite(out.loss)


def test_torch_compile_of_the_step_trains(tiny_recipe, tmp_path):
    eager, compiled = tmp_path / "eager", tmp_path / "compiled"
    train_recipe(tiny_recipe, ["train.epochs=1"], eager, "cpu", resume=False)
    train_recipe(tiny_recipe, ["train.epochs=1", "train.compile=true", "train.compile_backend=aot_eager"], compiled,
                 "cpu", resume=False)
    assert rows(compiled)[0]["train/loss"] == pytest.approx(rows(eager)[0]["train/loss"], rel=1e-3)

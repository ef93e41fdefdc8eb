"""Training speed of the convolutional image modality on this machine, against its own roofline.

    MMGEN_DATA_ROOT=../shared/data python benchmarks/conv_speed.py --recipe recipes/polymnist_mvae.toml --steps 40

Times ``--steps`` real training steps of each ``--recipe`` (repeatable; after 5 warm-up steps), then the
step's own Linear and convolution products alone in fp32 (benchmarks/roofline.py), and prints samples/s, the
roofline samples/s and their ratio. Recipes of one data set share its loaded data.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from roofline import record_conv_calls, record_linear_calls, time_convs, time_matmuls

from mmgen.data.sources import DataSource
from mmgen.recipe import build_dataset, build_model, load_recipe, resolve_device
from mmgen.train.session import create_run
from mmgen.train.trainer import Trainer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", action="append", help="repeatable (default: recipes/polymnist_mvae.toml)")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("overrides", nargs="*", help="key.path=value, for every recipe")
    args = ap.parse_args()
    sources: dict[str, DataSource] = {}  # recipes of one data set share its loaded data (PolyMNIST-style: ~30 s)
    for path in args.recipe or ["recipes/polymnist_mvae.toml"]:
        with tempfile.TemporaryDirectory(prefix="mmgen-conv-") as tmp:  # the timed run's folder, removed after
            measure(path, args.overrides, args.steps, resolve_device(args.device), sources, Path(tmp) / "run")


def measure(path: str, overrides: list[str], steps: int, device: torch.device, sources: dict, out: Path) -> None:
    recipe = load_recipe(path, overrides)
    key = recipe.data.model_dump_json()
    if key not in sources:
        sources[key] = DataSource(build_dataset(recipe))
    source = sources[key]
    trainer = Trainer(recipe, build_model(recipe), source, create_run(out, recipe, lambda _m: None), device)
    B, names = recipe.train.batch_size, trainer.names
    order = torch.randperm(trainer.n_train, generator=torch.Generator().manual_seed(0))
    batches = iter(trainer.batches.epoch(order, B))
    sums: dict = {}
    trainer._enter_stage()  # a family trained in stages (TELBO): its first stage, as epoch 1 trains
    for _ in range(5):
        idx, raw, _n = next(batches)
        trainer._step(idx, raw, sums)
    float(sums["loss"])  # wait for the device
    t = time.perf_counter()
    for _ in range(steps):
        idx, raw, _n = next(batches)
        trainer._step(idx, raw, sums)
    float(sums["loss"])  # wait for the device
    sps = steps * B / (time.perf_counter() - t)

    idx, raw, _n = next(batches)
    batch = {n: trainer.model.modalities[n].prepare(raw[n].to(device)) for n in names}
    model = trainer.model
    step = lambda: model(batch, beta=1.0).loss.backward()  # noqa: E731
    linears, convs = record_linear_calls(model, step), record_conv_calls(model, step)
    model.zero_grad(set_to_none=True)
    seconds = time_matmuls(linears, device) + time_convs(convs, device)
    flops = sum(c.flops for c in linears) + sum(c.flops for c in convs)
    roof = B / seconds
    # Only families that sample ELBO terms (the MVAE's sub-sampled ELBO) say how many a step has.
    terms = f"  terms per step {model.step_rows().shape[0]}" if hasattr(model, "step_rows") else ""
    print(f"recipe {path}  precision {recipe.train.precision}  device {device}  threads {torch.get_num_threads()}  "
          f"batch {B}  modalities {len(names)}{terms}")
    print(f"per step: {len(linears)} Linear and {len(convs)} convolution calls, {flops / 1e9:.2f} GFLOP "
          f"({flops / B / 1e6:.1f} MFLOP/sample)")
    print(f"training: {sps:.0f} samples/s; the step's products alone: {roof:.0f} samples/s "
          f"({flops / seconds / 1e9:.0f} GFLOP/s); ratio {sps / roof:.0%}")


if __name__ == "__main__":
    main()

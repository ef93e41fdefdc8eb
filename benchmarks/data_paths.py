"""The two data paths side by side in one process: the training split on the device, or streamed
through a DataLoader, on the same recipe, seed and machine.

    MMGEN_DATA_ROOT=../shared/data python benchmarks/data_paths.py --epochs 2

Prints samples/s per epoch of each path (in-memory, then streaming with 0 and 2 workers) and the
streaming paths' ratio to the in-memory one; the trained weights of every path must be equal bit
for bit (checked and printed).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch

from mmgen.data.sources import DataSource
from mmgen.recipe import build_dataset, build_model, load_recipe, resolve_device
from mmgen.train.batches import InMemoryBatches, StreamingBatches
from mmgen.train.session import create_run
from mmgen.train.trainer import Trainer


def train(recipe, source: DataSource, batches, out: Path, device) -> tuple[float, dict]:
    trainer = Trainer(recipe, build_model(recipe), source, create_run(out, recipe, lambda _m: None), device,
                      batches=batches)
    rows = []
    trainer.fit(on_epoch=rows.append)
    return statistics.median(r["samples_per_s"] for r in rows), trainer.model.state_dict()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default="recipes/mnist_mvae.toml")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    recipe = load_recipe(args.recipe, [f"train.epochs={args.epochs}"])
    device = resolve_device(args.device)
    source = DataSource(build_dataset(recipe))
    names = list(recipe.modalities)
    tmp = Path(tempfile.mkdtemp(prefix="mmgen-paths-"))
    print(f"recipe {args.recipe}  device {device}  threads {torch.get_num_threads()}  epochs {args.epochs}")
    base, reference = train(recipe, source, InMemoryBatches(source.tensors("train", names), names, device),
                            tmp / "memory", device)
    print(f"in memory:               {base:6.0f} samples/s")
    for workers in (0, 2):
        batches = StreamingBatches(source.reader("train", names), device, workers)
        sps, weights = train(recipe, source, batches, tmp / f"stream{workers}", device)
        same = all(torch.equal(weights[k], reference[k]) for k in reference)
        print(f"streaming, {workers} worker(s):   {sps:6.0f} samples/s  ({sps / base:.0%} of in memory; "
              f"weights {'bit-identical' if same else 'DIFFERENT'})")


if __name__ == "__main__":
    main()

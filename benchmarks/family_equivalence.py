"""The losses and step times of the shipped MVAE, MMVAE and MoPoE recipes, to compare two checkouts
(before and after model families became plugins): run it under each and diff the output.

    OMP_NUM_THREADS=1 python benchmarks/family_equivalence.py --steps 20 > after.txt
    OMP_NUM_THREADS=1 PYTHONPATH=/path/to/old/checkout python benchmarks/family_equivalence.py --steps 20 > before.txt

Each recipe's model is built seeded, then takes ``--steps`` Adam steps on fixed random MNIST-shaped
batches (the same in both checkouts) with β = 0.5; every loss is printed in full (``float.hex``), so
equal lines mean bit-identical losses. Then the median CPU time per step (``time.process_time``, which
other processes on the machine do not inflate) over ``--repeats`` timings of ``--time-steps`` steps.
Only names both checkouts have are used (``load_recipe``, ``build_model``, ``model(batch, beta)``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from mmgen.recipe import load_recipe
from mmgen.recipe.build import build_model

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ["mnist_mvae", "mnist_mmvae", "mnist_mopoe", "mnist_best"]


def batches(n: int, batch_size: int = 100) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [{"image": torch.randint(0, 256, (batch_size, 1, 28, 28), generator=g).float() / 255,
             "label": torch.randint(0, 10, (batch_size,), generator=g)} for _ in range(n)]


def steps(model, optimizer, data) -> list[float]:
    losses = []
    for batch in data:
        out = model(batch, beta=0.5)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(float(out.loss))
    return losses


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--time-steps", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    data = batches(args.steps)
    for name in RECIPES:
        model = build_model(load_recipe(ROOT / "recipes" / f"{name}.toml"))
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        torch.manual_seed(1)
        losses = steps(model, optimizer, data)
        print(f"{name} losses: " + " ".join(float.hex(x) for x in losses))
        print(f"{name} first/last: {losses[0]:.6f} {losses[-1]:.6f}")
        timing = batches(args.time_steps)
        times = []
        for _ in range(args.repeats):
            start = time.process_time()
            steps(model, optimizer, timing)
            times.append((time.process_time() - start) / args.time_steps * 1000)
        print(f"{name} ms/step (CPU time, median of {args.repeats}): {statistics.median(times):.1f}")


if __name__ == "__main__":
    main()

"""Training-step speed of MoPoE's two estimators on PolyMNIST-style (five 3x28x28 modalities): stratified
(every example decodes all 31 subsets' draws) against sampled (one drawn subset per example).

    OMP_NUM_THREADS=1 python benchmarks/mopoe_estimators.py
    OMP_NUM_THREADS=1 python benchmarks/mopoe_estimators.py --batch-size 64 --rounds 5 --steps 2

Both models are built from recipes/polymnist_mopoe_sampled.toml, one with ``model.estimator=stratified``,
so the networks, batch and optimizer are the recipe's and only the estimator differs; they start from the
same weights. A step is the trainer's: forward, backward and an Adam step, on random uint8 images of the
recipe's shape (the decoders' cost does not depend on the pixels, so no download is needed). The two are
timed in one process, interleaved (stratified, sampled, then sampled, stratified, ...), so background load
hits both alike. Printed per round and as medians: samples/s by wall clock and by the process's CPU time
(``time.process_time``, one thread's with OMP_NUM_THREADS=1, which other processes disturb far less).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from datetime import UTC, datetime

import torch
from torch import Tensor

from mmgen.recipe import build_model, load_recipe

RECIPE = "recipes/polymnist_mopoe_sampled.toml"
ESTIMATORS = ("stratified", "sampled")


def random_batch(model, B: int, seed: int = 0) -> dict[str, Tensor]:
    """One prepared batch of random uint8 images, ``(B, *shape)`` per modality."""
    g = torch.Generator().manual_seed(seed)
    raw = {n: torch.randint(0, 256, (B, *m.config.shape), dtype=torch.uint8, generator=g)
           for n, m in model.modalities.items()}
    return {n: model.modalities[n].prepare(x) for n, x in raw.items()}


def timed_steps(model, opt, batch: dict[str, Tensor], steps: int) -> tuple[float, float]:
    """Wall-clock and CPU seconds of ``steps`` training steps."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        model(batch, beta=1.0).loss.backward()
        opt.step()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default=RECIPE)
    ap.add_argument("--batch-size", type=int, default=None, help="default: the recipe's train.batch_size")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; each times both estimators")
    ap.add_argument("--steps", type=int, default=1, help="training steps per estimator and round")
    args = ap.parse_args()
    torch.manual_seed(0)
    models = {e: build_model(load_recipe(args.recipe, [f"model.estimator={e}"])) for e in ESTIMATORS}
    models["sampled"].load_state_dict(models["stratified"].state_dict())
    recipe = load_recipe(args.recipe)
    B = args.batch_size or recipe.train.batch_size
    batch = random_batch(models["stratified"], B)
    opts = {e: torch.optim.Adam(m.parameters(), lr=recipe.train.lr) for e, m in models.items()}
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC  recipe {args.recipe}  batch {B}  modalities {len(batch)}  "
          f"threads {torch.get_num_threads()}  cores {os.cpu_count()}  load average {os.getloadavg()[0]:.2f}")
    for e in ESTIMATORS:  # warm-up: allocator, first-call overheads
        timed_steps(models[e], opts[e], batch, 1)
    rates: dict[str, list[tuple[float, float]]] = {e: [] for e in ESTIMATORS}
    for r in range(args.rounds):
        for e in ESTIMATORS if r % 2 == 0 else ESTIMATORS[::-1]:
            wall, cpu = timed_steps(models[e], opts[e], batch, args.steps)
            rates[e].append((args.steps * B / wall, args.steps * B / cpu))
            print(f"round {r}  {e:10s}  {rates[e][-1][0]:8.1f} samples/s (wall)  {rates[e][-1][1]:8.1f} (CPU)  "
                  f"load {os.getloadavg()[0]:.2f}", flush=True)
    median = {e: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for e, v in rates.items()}
    for e in ESTIMATORS:
        print(f"median  {e:10s}  {median[e][0]:8.1f} samples/s (wall)  {median[e][1]:8.1f} (CPU)")
    print(f"sampled / stratified: {median['sampled'][0] / median['stratified'][0]:.1f}x (wall), "
          f"{median['sampled'][1] / median['stratified'][1]:.1f}x (CPU)")


if __name__ == "__main__":
    main()

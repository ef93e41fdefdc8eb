"""Training-step time of the mixture fusions (MMVAE, MoPoE) with the old and the new ``with_prior_fallback``.

    OMP_NUM_THREADS=1 python benchmarks/mixture_step.py --steps 50 --repeats 3
    OMP_NUM_THREADS=1 python benchmarks/mixture_step.py --steps 50 --repeats 3 --empty-every 10

The old fallback (kept below as ``old_with_prior_fallback``) asked the device whether every position
had a component (``bool(active.any(0).all())``, a host sync every step on CUDA) and appended the prior
as an extra component when one had none. The new one is data-independent. Both are timed in one
process, interleaved (old, new, old, new, ...) so background load hits both alike; each run is
``--steps`` Adam steps of ``build_model`` on a shipped recipe with random uint8 images and labels. Before
timing, the script checks that both give bit-identical losses and gradients (``torch.equal``).
Times are the process's CPU time (``time.process_time``; with OMP_NUM_THREADS=1 it is one thread's),
which other processes on the machine disturb far less than wall-clock time.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from torch import Tensor

import mmgen_plugins.moe as moe
import mmgen_plugins.mopoe as mopoe
from mmgen.model.mixture import with_prior_fallback
from mmgen.recipe import build_model, load_recipe

ROOT = Path(__file__).resolve().parents[1]
RECIPES = {"MMVAE": "recipes/mnist_mmvae.toml", "MoPoE": "recipes/mnist_mopoe.toml"}


def old_with_prior_fallback(mu: Tensor, logvar: Tensor, active: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The fallback before this change, verbatim: one host check, then C -> C + 1 when a position has nothing."""
    shape = torch.broadcast_shapes(mu.shape, logvar.shape, (*active.shape, 1))
    mu, logvar, active = mu.expand(shape), logvar.expand(shape), active.expand(shape[:-1])
    if bool(active.any(0).all()):
        return mu, logvar, active
    mu, logvar = torch.where(active[..., None], mu, 0.0), torch.where(active[..., None], logvar, 0.0)
    none = ~active.any(0, keepdim=True)  # (1, *batch)
    zeros = torch.zeros_like(mu[:1])
    return torch.cat([mu, zeros]), torch.cat([logvar, zeros]), torch.cat([active, none])


def use_fallback(fn) -> None:
    """Make both mixture fusions call ``fn`` (they import the function by name)."""
    moe.with_prior_fallback = mopoe.with_prior_fallback = fn


def random_batches(model, n: int, B: int, seed: int = 0) -> list[dict[str, Tensor]]:
    """``n`` prepared batches of random uint8 images ``(B, 1, 28, 28)`` and labels ``(B,)``."""
    g = torch.Generator().manual_seed(seed)
    raw = [{"image": torch.randint(0, 256, (B, 1, 28, 28), dtype=torch.uint8, generator=g),
            "label": torch.randint(0, 10, (B,), generator=g)} for _ in range(n)]
    return [{k: model.modalities[k].prepare(v) for k, v in r.items()} for r in raw]


def train(recipe_path: str, batches: list[dict[str, Tensor]], empty_every: int = 0) -> tuple[float, list, list]:
    """Adam steps on ``batches`` -> (CPU seconds, losses, gradients of every step). With ``empty_every`` = n > 0,
    every n-th example of a batch has no modality (``present`` masks), the others have both."""
    recipe = load_recipe(ROOT / recipe_path)
    model = build_model(recipe)
    opt = torch.optim.Adam(model.parameters(), lr=recipe.train.lr)
    B = next(iter(batches[0].values())).shape[0]
    has = torch.arange(B) % empty_every != 0 if empty_every else None  # (B,)
    present = None if has is None else dict.fromkeys(model.names, has)
    losses, grads = [], []
    torch.manual_seed(0)
    started = time.process_time()
    for batch in batches:
        opt.zero_grad(set_to_none=True)
        out = model(batch, beta=0.5, present=present)
        out.loss.backward()
        opt.step()
        losses.append(out.loss.detach())
        grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
    return time.process_time() - started, losses, grads


def time_fusion(fusion, fn, n: int, B: int, D: int = 64) -> float:
    """Seconds for ``n`` fusion calls with backward on paired experts, as the model makes them (T = 1)."""
    use_fallback(fn)
    M = fusion.num_modalities
    mu = torch.randn(M, 1, B, D, requires_grad=True)  # (M, T, B, D)
    logvar = torch.randn(M, 1, B, D, requires_grad=True)  # (M, T, B, D)
    use = torch.ones(M, 1, 1, dtype=torch.bool)  # (M, T, 1): a paired batch
    started = time.process_time()
    for _ in range(n):
        q = fusion(mu, logvar, use)
        (q.mu.sum() + q.logvar.sum()).backward()
    return time.process_time() - started


def identical(a: tuple, b: tuple) -> bool:
    """Bit-identical losses and gradients (``torch.equal``) at every step."""
    same_loss = all(torch.equal(x, y) for x, y in zip(a[1], b[1], strict=True))
    return same_loss and all(torch.equal(x, y) for ga, gb in zip(a[2], b[2], strict=True)
                             for x, y in zip(ga, gb, strict=True))


def compare(title: str, path: str, args: argparse.Namespace) -> None:
    """Check bit-identity (paired batches), then time old and new interleaved, and the fusion alone."""
    fallbacks = {"old": old_with_prior_fallback, "new": with_prior_fallback}
    batches = random_batches(build_model(load_recipe(ROOT / path)), args.steps, args.batch_size)
    if not args.empty_every:  # with empty examples the layouts differ by design (old: C + 1 components)
        use_fallback(fallbacks["old"])
        old = train(path, batches[:5])
        use_fallback(fallbacks["new"])
        print(f"{title}: 5 steps bit-identical (loss and gradients): {identical(old, train(path, batches[:5]))}")
    times: dict[str, list[float]] = {"old": [], "new": []}
    for _ in range(args.repeats):
        for name, fn in fallbacks.items():  # interleaved: old, new, old, new, ...
            use_fallback(fn)
            times[name].append(train(path, batches, args.empty_every)[0])
    fusion = build_model(load_recipe(ROOT / path)).fusion
    fus = {k: 1e6 * statistics.median(time_fusion(fusion, fn, 500, args.batch_size) for _ in range(args.repeats)) / 500
           for k, fn in fallbacks.items()}
    print(f"{title}: fusion alone (forward + backward, paired), median CPU us/call "
          f"old {fus['old']:.0f}, new {fus['new']:.0f}")
    ms = {k: 1e3 * statistics.median(v) / args.steps for k, v in times.items()}
    runs = "; ".join(f"{k} " + ", ".join(f"{1e3 * t / args.steps:.1f}" for t in v) for k, v in times.items())
    print(f"{title}: median CPU ms/step old {ms['old']:.1f}, new {ms['new']:.1f} "
          f"({100 * (ms['new'] / ms['old'] - 1):+.1f}%)  [runs: {runs}]")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--empty-every", type=int, default=0,
                    help="every n-th example has no modality (the old fallback then added a component)")
    args = ap.parse_args()
    for title, path in RECIPES.items():
        compare(title, path, args)
    use_fallback(with_prior_fallback)


if __name__ == "__main__":
    main()

"""FID for ``mmgen eval``: generated images against the real test images, in a feature network's features
(:mod:`mmgen.eval.features`), as MultiVae's FIDEvaluator reports it.

* unconditional: latents from each sampler (by default the model's prior p(z)), decoded to each image
  modality's likelihood mean, against that modality's real test images;
* conditional: for each image modality m and each non-empty subset S of the other modalities (a label
  among them), z ~ q(z | x_S) for every test example that has all of S, m's mean decoded; averaged over
  every m and every S of each size k, as conditional coherence is (:mod:`mmgen.eval.conditional`).

The distance is torchmetrics' ``FrechetInceptionDistance`` with a custom feature network, its sums,
covariances and result in float64; each modality's real statistics are computed once and reused.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from statistics import fmean
from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance

from mmgen.errors import MmgenError
from mmgen.eval.features import FeatureNet
from mmgen.eval.judge import as_unit_float, preserved_rng
from mmgen.model.presence import Presence, having
from mmgen.plugin.model import Model

MIN_SAMPLES = 2  # the fewest images a covariance can be estimated from (torchmetrics refuses fewer)
Sampler = Callable[[int], Tensor]  # n -> latents (n, L), e.g. the prior's or a post-hoc mixture's draws


class _MetricFeatures(nn.Module):
    """A FeatureNet as torchmetrics takes a custom network: a module with ``num_features`` (else torchmetrics
    probes it with a 3 x 299 x 299 dummy), returning float64 features (torchmetrics casts its result to the
    features' dtype, so float64 features keep the distance in float64)."""

    def __init__(self, features: FeatureNet, stats_device: torch.device):
        super().__init__()
        self.num_features = features.num_features
        self.features = (features,)  # a tuple keeps it out of the module tree: moving the metric must not move it
        self.stats_device = stats_device

    def forward(self, images: Tensor) -> Tensor:
        return self.features[0](images).to(self.stats_device).double()  # (N, F); moved first: MPS has no float64


def _check_count(what: str, count: int) -> None:
    if count < MIN_SAMPLES:
        raise MmgenError(f"FID needs at least {MIN_SAMPLES} {what} images to estimate a covariance; got {count}")


class FrechetReference:
    """The real images' feature statistics, computed once; the Fréchet distance of generated sets to them.

    ``add`` generated images ``(b, C, H, W)`` in [0, 1] in as many batches as wanted, then ``distance()``,
    which forgets them (the real statistics stay). The statistics live on the real images' device
    (on the CPU for MPS, which has no float64); the feature network runs where the images are.
    """

    def __init__(self, real: Tensor, features: FeatureNet, batch_size: int = 500):
        _check_count("real", real.shape[0])
        self.batch_size, self.real_count, self.fake_count = batch_size, real.shape[0], 0
        device = torch.device("cpu") if real.device.type == "mps" else real.device
        # normalize=False: torchmetrics before 1.4 scaled float images to 0..255 bytes when it was True, even for a
        # custom network; with False every version hands the network the [0, 1] images unchanged.
        self.metric = FrechetInceptionDistance(feature=_MetricFeatures(features, device), normalize=False,
                                               reset_real_features=False, sync_on_compute=False).to(device)
        for batch in as_unit_float(real).split(batch_size):
            self.metric.update(batch, real=True)

    def add(self, fake: Tensor) -> None:
        for batch in fake.split(self.batch_size):
            self.metric.update(batch, real=False)
        self.fake_count += fake.shape[0]

    def distance(self) -> float:
        count, self.fake_count = self.fake_count, 0
        try:
            _check_count("generated", count)
            return float(self.metric.compute())
        finally:
            self.metric.reset()  # the generated statistics only (reset_real_features=False)


def frechet_distance(real: Tensor, fake: Tensor, features: FeatureNet, batch_size: int = 500) -> float:
    """||mu_r - mu_f||^2 + Tr(S_r + S_f - 2 (S_r S_f)^(1/2)) of the two sets' features: images ``(N, C, H, W)``
    in [0, 1], the features computed ``batch_size`` images at a time.

    At least 2 images a side (MmgenError otherwise). With n <= num_features images a side the sample
    covariance is singular (rank n - 1): the number is still defined, but the estimate is biased upward
    (FID's bias shrinks like 1/n at any n), so compare only FIDs of equal n and equal features.
    """
    reference = FrechetReference(real, features, batch_size)
    reference.add(fake)
    return reference.distance()


def _distances(model: Model, references: dict[str, FrechetReference], draws: Iterable[Tensor]) -> dict[str, float]:
    """Each batch of latents ``(b, L)`` decoded to every target's likelihood mean; each target's FID."""
    targets = list(references)
    for z in draws:
        params = model.decode(z, targets)
        for m in targets:
            references[m].add(model.modalities[m].mean(params[m]))  # (b, C, H, W) in [0, 1]
    return {m: references[m].distance() for m in targets}


def _conditional(model: Model, references: dict[str, FrechetReference], inputs: dict[str, Tensor],
                 present: Presence | None, sizes: Iterable[int],
                 batch_size: int) -> tuple[dict[str, dict[str, float | None]], dict[str, int]]:
    """``({m: {"s1,s2": FID or None}}, {"s1,s2": examples that have the subset})``: one posterior draw per
    example serves every target outside the subset; None where fewer than 2 examples have it."""
    first = next(iter(inputs.values()))
    per_subset: dict[str, dict[str, float | None]] = {m: {} for m in references}
    samples: dict[str, int] = {}
    for k in sizes:
        for subset in itertools.combinations(model.names, k):
            aims = {m: ref for m, ref in references.items() if m not in subset}
            if not aims:
                continue
            key, keep = ",".join(subset), having(present, list(subset), first.shape[0], first.device)
            given = {s: inputs[s][keep] for s in subset}  # (n_S, *event) each
            samples[key] = count = int(keep.sum())
            if count < MIN_SAMPLES:
                for m in aims:
                    per_subset[m][key] = None
                continue
            draws = (model.posterior({s: x[i : i + batch_size] for s, x in given.items()}).sample()  # (b, L)
                     for i in range(0, count, batch_size))
            for m, value in _distances(model, aims, draws).items():
                per_subset[m][key] = value
    return per_subset, samples


def _by_size(per_subset: dict[str, dict[str, float | None]]) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Means over subsets of each size k: over every target (first), and per target (second)."""
    pooled: dict[int, list[float]] = {}
    per_target: dict[str, dict[str, float]] = {}
    for m, table in per_subset.items():
        mine: dict[int, list[float]] = {}
        for key, value in table.items():
            if value is not None:
                mine.setdefault(key.count(",") + 1, []).append(value)
                pooled.setdefault(key.count(",") + 1, []).append(value)
        per_target[m] = {str(k): fmean(v) for k, v in sorted(mine.items())}
    return {str(k): fmean(v) for k, v in sorted(pooled.items())}, per_target


def _notes(features: dict[str, FeatureNet], real_counts: dict[str, int], generated: list[int],
           samples: dict[str, int]) -> list[str]:
    """Caveats: subsets too rare to measure; FIDs from no more images than features (``generated``: the
    unconditional counts)."""
    notes = [f"conditional on {key}: only {count} example(s) have all of it, no FID"
             for key, count in samples.items() if count < MIN_SAMPLES]
    for m, net in features.items():
        conditional = [c for key, c in samples.items() if c >= MIN_SAMPLES and m not in key.split(",")]
        fewest = min([real_counts[m], *generated, *conditional])
        if fewest <= net.num_features:
            notes.append(f"{m}: as few as {fewest} images for {net.num_features} features: a singular covariance, "
                         "FID biased upward; compare only at equal counts")
    return notes


def _check(model: Model, features: dict[str, FeatureNet], inputs: dict[str, Tensor], real: dict[str, Tensor]) -> None:
    problems = [f"{m} is no modality of the model" for m in features if m not in model.names]
    problems += [f"no real images of {m}" for m in features if m not in real]
    problems += [f"no test inputs of {m}" for m in model.names if m not in inputs]
    if problems:
        raise MmgenError("FID cannot be measured: " + "; ".join(problems))


@torch.no_grad()
def fid_report(model: Model, features: dict[str, FeatureNet], inputs: dict[str, Tensor], real: dict[str, Tensor],
               present: Presence | None = None, seed: int = 0, latents: dict[str, Sampler] | None = None,
               conditional_sizes: Iterable[int] | None = None, batch_size: int = 500) -> dict[str, Any]:
    """``{"fid": {...}}`` for every image modality in ``features`` (see the module docstring; JSON-able).

    ``inputs``: every modality's prepared test examples ``(N, *event)``; ``real``: the test images of each
    modality in ``features``, float in [0, 1] (or uint8), never binarized; ``present``: which example has
    which modality (a real set keeps the images its modality has, a subset the examples that have all of
    it); ``latents``: named samplers ``n -> (n, L)`` for unconditional FID, N latents each, by default
    ``{"prior": p(z)}`` (``{}`` for none); ``conditional_sizes``: the subset sizes k (default 1 to M - 1;
    ``()`` for none). Seeded with ``seed``; the caller's random streams are left as they were.

    Keys: ``"features"`` {m: what the features are}, ``"samples"`` N, ``"real images"`` {m: count},
    ``"unconditional"`` {sampler: {m: FID}}, ``"conditional"`` {k: mean over every m and S of size k},
    ``"conditional per target"`` {m: {k: mean}}, ``"conditional per subset"`` {m: {"s1,s2": FID or None}},
    ``"conditional samples"`` {"s1,s2": examples generated from}, ``"seed"``, ``"notes"`` (caveats).
    """
    _check(model, features, inputs, real)
    n = next(iter(inputs.values())).shape[0]
    samplers = {"prior": lambda count: model.prior((count,)).sample()} if latents is None else latents  # (count, L)
    sizes = range(1, len(model.names)) if conditional_sizes is None else conditional_sizes
    with preserved_rng(model.device):
        torch.manual_seed(seed)
        model.eval()
        images = {m: real[m] if present is None else real[m][present[m].to(real[m].device)] for m in features}
        references = {m: FrechetReference(images[m], net, batch_size) for m, net in features.items()}
        unconditional = {name: _distances(model, references, draw(n).split(batch_size))
                         for name, draw in samplers.items()}
        per_subset, samples = _conditional(model, references, inputs, present, sizes, batch_size)
    by_size, per_target = _by_size(per_subset)
    real_counts = {m: ref.real_count for m, ref in references.items()}
    return {"fid": {
        "features": {m: net.name for m, net in features.items()}, "samples": n, "real images": real_counts,
        "unconditional": unconditional, "conditional": by_size, "conditional per target": per_target,
        "conditional per subset": per_subset, "conditional samples": samples, "seed": seed,
        "notes": _notes(features, real_counts, [n] if samplers else [], samples),
    }}

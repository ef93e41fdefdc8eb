"""Diversity of conditional samples: do samples given a class vary as much as real examples of it?

For a class source s (a label) and an image modality t, for each class k: ``per_class`` latents
z ~ q(z | s made from k), each decoded to t's **mean** (Bernoulli means: grey values in [0, 1], not
binary draws); the mean pairwise **Euclidean distance** between those flattened means, divided by the
same statistic over up to ``per_class`` real test images of class k (as the model sees them:
prepared, so in [0, 1]). 1 means samples vary as much as the data; a posterior q(z | label) that
collapses onto one image per class gives 0. Reported per class and averaged over the classes.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mmgen.model.vae import MultimodalVAE


def mean_pairwise_distance(x: Tensor) -> float:
    """Mean Euclidean distance over the distinct pairs of rows of ``x`` ``(n, ...)``; 0 for n < 2."""
    n = x.shape[0]
    if n < 2:
        return 0.0
    flat = x.reshape(n, -1).double()
    d = torch.cdist(flat, flat)  # (n, n)
    return float(d.sum() / (n * (n - 1)))


@torch.no_grad()
def diversity(model: MultimodalVAE, source: str, target: str, real: Tensor, truth: Tensor, num_classes: int,
              per_class: int = 100, seed: int = 0) -> tuple[float | None, list[float | None]]:
    """Mean over classes and per-class ratios; a class without two real test images gives None."""
    model.eval()
    device = next(model.parameters()).device
    torch.manual_seed(seed)
    made = torch.Generator(device=device).manual_seed(seed)
    per: list[float | None] = []
    for k in range(num_classes):
        examples = real[truth == k][:per_class]
        reference = mean_pairwise_distance(examples)
        if examples.shape[0] < 2 or reference == 0:
            per.append(None)
            continue
        classes = torch.full((per_class,), k, dtype=torch.long, device=device)
        given = model.modalities[source].examples_of(classes, made)
        z = model.posterior({source: model.modalities[source].prepare(given, made)}).sample()  # (per_class, D)
        means = model.modalities[target].mean(model.modalities[target].decode(z))
        per.append(mean_pairwise_distance(means) / reference)
    known = [p for p in per if p is not None]
    return (sum(known) / len(known) if known else None), per

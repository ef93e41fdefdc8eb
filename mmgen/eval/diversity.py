"""Diversity of conditional samples: do samples given a class vary as much as the model's own
reconstructions of real examples of that class?

For a class source s (a label), an image modality t and each class k:

* samples: ``per_class`` latents z ~ q(z | s made from k), each decoded to t's **mean** (for a
  Bernoulli decoder, grey values in [0, 1], never binary draws);
* reference: up to ``per_class`` real test images x of class k, each prepared as the model sees its
  inputs, one latent z ~ q(z | x) each, decoded to t's mean in the same way;
* ratio: the mean pairwise **Euclidean distance** between the flattened samples over the same statistic
  of the reference.

Both sides are means of the same decoder, so the decoder's smoothing (a mean has no pixel noise)
cancels: comparing decoded means with raw images instead would put even a perfect model below 1.
1 means the samples given k spread as widely as the reconstructions of the class's test images (as
they would if q(z | k) were the aggregate of q(z | x) over them); 0 means q(z | k) collapsed onto one
image; above 1, the samples spread wider than the reconstructions (into other classes, for example).
Reported per class (None for a class with fewer than two test images) and averaged over the classes.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mmgen.plugin.model import Model


def mean_pairwise_distance(x: Tensor) -> float:
    """Mean Euclidean distance over the distinct pairs of rows of ``x`` ``(n, ...)``; 0 for n < 2."""
    n = x.shape[0]
    if n < 2:
        return 0.0
    flat = x.reshape(n, -1).double()
    d = torch.cdist(flat, flat)  # (n, n)
    return float(d.sum() / (n * (n - 1)))


def decoded_means(model: Model, given: dict[str, Tensor], target: str) -> Tensor:
    """One draw z ~ q(z | given) per example, decoded to ``target``'s likelihood mean: ``(n, *event)``."""
    z = model.posterior(given).sample()  # (n, L)
    return model.modalities[target].mean(model.decode(z, [target])[target])


@torch.no_grad()
def diversity(model: Model, source: str, target: str, real: Tensor, truth: Tensor, num_classes: int,
              per_class: int = 100, seed: int = 0) -> tuple[float | None, list[float | None]]:
    """Mean over classes and per-class ratios (module docstring); ``real``: the test images ``(N, *event)``
    as intensities, prepared here with ``target``'s ``prepare`` before they are encoded; ``truth``: their
    classes ``(N,)``. A class without two test images, or whose reconstructions do not vary, gives None."""
    model.eval()
    device = next(model.parameters()).device
    torch.manual_seed(seed)
    made = torch.Generator(device=device).manual_seed(seed)
    per: list[float | None] = []
    for k in range(num_classes):
        examples = real[truth == k][:per_class].to(device)  # (n_k, *event)
        if examples.shape[0] < 2:
            per.append(None)
            continue
        inputs = model.modalities[target].prepare(examples, made)
        reference = mean_pairwise_distance(decoded_means(model, {target: inputs}, target))
        if reference == 0:
            per.append(None)
            continue
        classes = torch.full((per_class,), k, dtype=torch.long, device=device)
        given = model.modalities[source].examples_of(classes, made)
        samples = decoded_means(model, {source: model.modalities[source].prepare(given, made)}, target)
        per.append(mean_pairwise_distance(samples) / reference)
    known = [p for p in per if p is not None]
    return (sum(known) / len(known) if known else None), per

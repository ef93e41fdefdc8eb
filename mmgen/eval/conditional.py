"""Conditional coherence (Sutter et al. 2021): how often a modality generated from real examples of a
subset of the others shows the class those examples have, averaged over subsets of each size.

For every modality m read in the data set's class space (a judge for an image) and every non-empty
subset S of the other modalities: z ~ q(z | x_S) for each test example, m decoded at z and read,
compared with the example's class. ``"conditional coherence"[k]`` averages over every m and every S
of size k; ``"... per target"`` keeps m apart. With M modalities, k runs from 1 to M - 1.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch import Tensor

from mmgen.eval.crossmodal import Reader
from mmgen.model.presence import having
from mmgen.plugin.model import Model


@torch.no_grad()
def generated_accuracy(model: Model, inputs: dict[str, Tensor], target: str, reader: Reader, truth: Tensor,
                       batch_size: int = 1000) -> float:
    """Fraction of examples whose ``target``, decoded at z ~ q(z | inputs), reads as ``truth``."""
    modality = model.modalities[target]
    n, correct = truth.shape[0], 0
    for i in range(0, n, batch_size):
        z = model.posterior({k: v[i : i + batch_size] for k, v in inputs.items()}).sample()  # (b, D)
        means = modality.mean(model.decode(z, [target])[target])
        correct += int((reader.predict(means) == truth[i : i + batch_size]).sum())
    return correct / max(n, 1)


def conditional_coherence(model: Model, readers: dict[str, Reader], inputs: dict[str, Tensor],
                          truth: Tensor, present: dict[str, Tensor] | None = None, seed: int = 0) -> dict[str, Any]:
    """``{"conditional coherence": {k: mean}, "conditional coherence per target": {m: {k: mean}}}``.

    ``readers``: the modalities read in the class space of ``truth`` (the targets); ``inputs``: every
    modality's prepared test examples ``(N, *event)``; ``truth``: their classes ``(N,)``. A subset
    conditions only on the examples that have all of it (``present``, ``data.missing_at_eval``).
    """
    model.eval()
    torch.manual_seed(seed)
    per_target: dict[str, dict[str, float]] = {}
    by_size: dict[int, list[float]] = {}
    for target, reader in readers.items():
        others = [n for n in model.names if n != target]
        per_size: dict[int, list[float]] = {}
        for k in range(1, len(others) + 1):
            for subset in itertools.combinations(others, k):
                keep = having(present, list(subset), truth.shape[0], truth.device)
                if not keep.any():
                    continue
                acc = generated_accuracy(model, {n: inputs[n][keep] for n in subset}, target, reader, truth[keep])
                per_size.setdefault(k, []).append(acc)
                by_size.setdefault(k, []).append(acc)
        per_target[target] = {str(k): sum(v) / len(v) for k, v in per_size.items()}
    return {"conditional coherence": {str(k): sum(v) / len(v) for k, v in sorted(by_size.items())},
            "conditional coherence per target": per_target}

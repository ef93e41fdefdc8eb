"""Cross-modal quality: how well one modality predicts or generates another.

* accuracy: decode the label from the posterior mean of q(z | image) and compare (image -> label).
* coherence: for each class k draw images from q(z | label = k) and let a classifier judge them.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mmgen.judge import ImageClassifier
from mmgen.model import MultimodalVAE


@torch.no_grad()
def prediction_accuracy(model: MultimodalVAE, inputs: dict[str, Tensor], target: str, truth: Tensor,
                        batch_size: int = 2000) -> float:
    """Fraction of examples whose ``target`` decoded at the mean of q(z | inputs) has argmax == truth."""
    model.eval()
    correct = 0
    n = truth.shape[0]
    for i in range(0, n, batch_size):
        batch = {k: v[i : i + batch_size] for k, v in inputs.items()}
        z = model.posterior(batch).mean  # (b, D)
        logits = model.modalities[target].decode(z)
        correct += int((logits.argmax(-1) == truth[i : i + batch_size]).sum())
    return correct / n


@torch.no_grad()
def coherence(model: MultimodalVAE, classifier: ImageClassifier, source: str, target: str,
              num_classes: int, per_class: int = 100, seed: int = 0) -> tuple[float, list[float]]:
    """Label -> image coherence: mean and per-class fraction of q(z | source=k) samples judged as k."""
    model.eval()
    device = next(model.parameters()).device
    torch.manual_seed(seed)
    per = []
    for k in range(num_classes):
        given = {source: torch.full((per_class,), k, dtype=torch.long, device=device)}
        z = model.posterior(given).sample()  # (per_class, D)
        images = model.modalities[target].mean(model.modalities[target].decode(z))  # (per_class, C, H, W)
        per.append(float((classifier.predict(images) == k).float().mean()))
    return sum(per) / len(per), per

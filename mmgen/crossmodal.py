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
def image_modalities(model: MultimodalVAE) -> list[str]:
    """Modalities whose decoded means render as images (probed on one latent at the origin)."""
    z = torch.zeros(1, model.latent_dim, device=next(model.parameters()).device)
    return [n for n in model.names
            if model.modalities[n].to_image(model.modalities[n].mean(model.modalities[n].decode(z))) is not None]


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


@torch.no_grad()
def joint_coherence(model: MultimodalVAE, classifier: ImageClassifier, label: str, image: str,
                    n: int = 1000, seed: int = 0) -> float:
    """Samples z ~ p(z) decoded to (image, label): the fraction where the classifier agrees with the label."""
    model.eval()
    device = next(model.parameters()).device
    torch.manual_seed(seed)
    z = torch.randn(n, model.latent_dim, device=device)
    images = model.modalities[image].mean(model.modalities[image].decode(z))  # (n, C, H, W)
    labels = model.modalities[label].decode(z).argmax(-1)  # (n,)
    return float((classifier.predict(images) == labels).float().mean())


class CrossModalProbe:
    """Accuracy and coherence on a fixed validation subset, cheap enough to log every few epochs.

    For every class-label modality c: accuracy s->c from each other modality s, and, for every
    image modality i, coherence c->i judged by the cached classifier of the training split.
    """

    def __init__(self, model: MultimodalVAE, splits: dict[str, dict[str, Tensor]], examples: int,
                 device: torch.device, data_name: str):
        from mmgen.judge import load_or_train_classifier

        self.model, self.device = model, device
        names = model.names
        self.labels = [n for n in names if model.modalities[n].num_classes]
        self.images = image_modalities(model)
        fixed = torch.Generator(device=device).manual_seed(0)
        val = splits["val"]
        self.raw = {n: val[n][:examples].to(device) for n in names}
        self.inputs = {n: model.modalities[n].prepare(self.raw[n], fixed) for n in names}
        self.per_class = max(1, examples // 10)
        self.classifiers = {
            (c, i): load_or_train_classifier(splits["train"][i].to(device), splits["train"][c].to(device),
                                             model.modalities[c].num_classes, name=f"{data_name}-{i}")
            for c in self.labels for i in self.images if i != c
        }

    def __call__(self) -> dict[str, float]:
        from mmgen.judge import preserved_rng

        out = {}
        with preserved_rng(self.device):  # the probe must not change the training's random stream
            out.update(self._measure())
        return out

    def _measure(self) -> dict[str, float]:
        out = {}
        for c in self.labels:
            for s in self.model.names:
                if s != c:
                    out[f"val/accuracy {s}->{c}"] = prediction_accuracy(self.model, {s: self.inputs[s]}, c, self.raw[c])
            for i in self.images:
                if (c, i) in self.classifiers:
                    num = self.model.modalities[c].num_classes
                    mean, _ = coherence(self.model, self.classifiers[(c, i)], c, i, num, self.per_class, seed=0)
                    out[f"val/coherence {c}->{i}"] = mean
        return out

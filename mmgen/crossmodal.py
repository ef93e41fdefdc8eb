"""Cross-modal quality: how well one modality predicts or generates another, judged by classes.

A *reader* turns decoded means of a modality into classes ``(N,)``: a label or a text reads itself
(``Modality.classes_of``), an image is read by a CNN judge trained on the data's class field.
A *source* can be built from a class (``Modality.examples_of``): a label is its class, a text
spells its class name.

* accuracy s -> t: decode t at the mean of q(z | the real s) and read it against the true class
  (t a self-reading modality: image -> label, image -> text, text -> label, ...).
* coherence s -> t: for each class k draw z ~ q(z | s made from k), decode t and read it: the
  fraction read as k (label -> image, text -> image, label -> text, ...).
* joint coherence: z ~ p(z) decoded to every readable modality; the fraction where all agree.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from mmgen.model import MultimodalVAE


class Reader(Protocol):
    def predict(self, means: Tensor) -> Tensor:
        """Decoded means ``(N, *event)`` -> classes ``(N,)`` (-1 for none)."""


class SelfReader:
    """A modality that reads its own class from its decoded means."""

    def __init__(self, model: MultimodalVAE, name: str):
        self.modality = model.modalities[name]

    def predict(self, means: Tensor) -> Tensor:
        return self.modality.classes_of(means)


@torch.no_grad()
def _probe(model: MultimodalVAE, name: str) -> Tensor:
    """Decoded means of ``name`` at the origin of z, to ask a modality what it can do."""
    z = torch.zeros(1, model.latent_dim, device=next(model.parameters()).device)
    modality = model.modalities[name]
    return modality.mean(modality.decode(z))


def image_modalities(model: MultimodalVAE) -> list[str]:
    """Modalities whose decoded means render as images."""
    return [n for n in model.names if model.modalities[n].to_image(_probe(model, n)) is not None]


def self_reading(model: MultimodalVAE) -> list[str]:
    """Modalities that read their own class (labels, texts)."""
    return [n for n in model.names if model.modalities[n].classes_of(_probe(model, n)) is not None]


def class_sources(model: MultimodalVAE) -> list[str]:
    """Modalities that can be made from a class, so coherence can condition on them."""
    device = next(model.parameters()).device
    k = torch.zeros(1, dtype=torch.long, device=device)
    return [n for n in model.names if model.modalities[n].examples_of(k) is not None]


@torch.no_grad()
def prediction_accuracy(model: MultimodalVAE, inputs: dict[str, Tensor], target: str, truth: Tensor,
                        batch_size: int = 2000, reader: Reader | None = None) -> float:
    """Fraction of examples whose ``target``, decoded at the mean of q(z | inputs), reads as ``truth``."""
    model.eval()
    reader = reader or SelfReader(model, target)
    modality = model.modalities[target]
    correct = 0
    n = truth.shape[0]
    for i in range(0, n, batch_size):
        batch = {k: v[i : i + batch_size] for k, v in inputs.items()}
        z = model.posterior(batch).mean  # (b, D)
        correct += int((reader.predict(modality.mean(modality.decode(z))) == truth[i : i + batch_size]).sum())
    return correct / n


@torch.no_grad()
def coherence(model: MultimodalVAE, reader: Reader, source: str, target: str,
              num_classes: int, per_class: int = 100, seed: int = 0) -> tuple[float, list[float]]:
    """Mean and per-class fraction of ``target`` samples from q(z | source made from k) read as k."""
    model.eval()
    device = next(model.parameters()).device
    torch.manual_seed(seed)
    made = torch.Generator(device=device).manual_seed(seed)  # e.g. where a text places its word
    per = []
    for k in range(num_classes):
        classes = torch.full((per_class,), k, dtype=torch.long, device=device)
        given = model.modalities[source].examples_of(classes, made)  # (per_class, *event)
        z = model.posterior({source: model.modalities[source].prepare(given, made)}).sample()  # (per_class, D)
        means = model.modalities[target].mean(model.modalities[target].decode(z))
        per.append(float((reader.predict(means) == k).float().mean()))
    return sum(per) / len(per), per


@torch.no_grad()
def joint_coherence(model: MultimodalVAE, readers: dict[str, Reader], n: int = 1000, seed: int = 0) -> float:
    """Samples z ~ p(z) decoded to every modality in ``readers``: the fraction where all read the same class."""
    model.eval()
    device = next(model.parameters()).device
    torch.manual_seed(seed)
    z = torch.randn(n, model.latent_dim, device=device)
    read = torch.stack([reader.predict(model.modalities[name].mean(model.modalities[name].decode(z)))
                        for name, reader in readers.items()])  # (R, n)
    return float(((read == read[:1]).all(0) & (read[0] >= 0)).float().mean())


def readers_for(model: MultimodalVAE, train: dict[str, Tensor], class_field: str, num_classes: int,
                device: torch.device, data_name: str, on_judge=None) -> dict[str, Reader]:
    """A reader per readable modality: its own ``classes_of``, or for an image the cached CNN judge."""
    from mmgen.judge import load_or_train_classifier

    readers: dict[str, Reader] = {n: SelfReader(model, n) for n in self_reading(model)}
    for name in image_modalities(model):
        if on_judge:
            on_judge(name)
        readers[name] = load_or_train_classifier(train[name].to(device), train[class_field].to(device),
                                                 num_classes, name=f"{data_name}-{name}")
    return readers


def class_field_of(data_kind: str) -> str | None:
    from mmgen.plugins import get_registry

    return get_registry().lookup("datasets", data_kind).class_field


class CrossModalProbe:
    """Accuracy and coherence on a fixed validation subset, cheap enough to log every few epochs."""

    def __init__(self, model: MultimodalVAE, splits: dict[str, dict[str, Tensor]], examples: int,
                 device: torch.device, data_name: str, present: dict[str, Tensor] | None = None):
        self.model, self.device = model, device
        self.class_field = class_field_of(data_name)
        self.readers: dict[str, Reader] = {}
        self.sources: list[str] = []
        self.targets: list[str] = []
        if self.class_field is None:  # no ground-truth classes: the probe measures nothing
            return
        fixed = torch.Generator().manual_seed(0)  # on the CPU: the same binarization on every device
        val = splits["val"]
        self.truth = val[self.class_field][:examples].to(device)
        self.inputs = {n: model.modalities[n].prepare(val[n][:examples], fixed).to(device) for n in model.names}
        # As in `mmgen eval`: an accuracy from s counts only the examples that have s (data.missing_at_eval).
        self.has = {n: torch.ones_like(self.truth, dtype=torch.bool) for n in model.names}
        if present is not None:
            self.has = {n: present[n][:examples].to(device) for n in model.names}
        self.num_classes = int(splits["train"][self.class_field].max()) + 1
        self.per_class = max(1, examples // self.num_classes)
        self.readers = readers_for(model, splits["train"], self.class_field, self.num_classes, device, data_name)
        self.sources = class_sources(model)
        self.targets = self_reading(model)  # fixed for the run: ask once, not every probe

    def __call__(self) -> dict[str, float]:
        from mmgen.judge import preserved_rng

        with preserved_rng(self.device):  # the probe must not change the training's random stream
            return self._measure()

    def _measure(self) -> dict[str, float]:
        out = {}
        for t in self.targets:
            for s in self.model.names:
                if s != t and self.has[s].any():
                    keep = self.has[s]
                    out[f"val/accuracy {s}->{t}"] = prediction_accuracy(
                        self.model, {s: self.inputs[s][keep]}, t, self.truth[keep], reader=self.readers[t])
        for s in self.sources:
            for t, reader in self.readers.items():
                if t != s:
                    out[f"val/coherence {s}->{t}"] = coherence(
                        self.model, reader, s, t, self.num_classes, self.per_class, seed=0)[0]
        return out

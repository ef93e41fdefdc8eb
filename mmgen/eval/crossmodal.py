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

from collections.abc import Callable
from typing import Protocol

import torch
from torch import Tensor

from mmgen.plugin.model import Model


class Reader(Protocol):
    def predict(self, means: Tensor) -> Tensor:
        """Decoded means ``(N, *event)`` -> classes ``(N,)`` (-1 for none)."""


class SelfReader:
    """A modality that reads its own class from its decoded means."""

    def __init__(self, model: Model, name: str):
        self.modality = model.modalities[name]

    def predict(self, means: Tensor) -> Tensor:
        return self.modality.classes_of(means)


@torch.no_grad()
def _probe(model: Model, name: str) -> Tensor:
    """Decoded means of ``name`` at the origin of z, to ask a modality what it can do."""
    z = model.prior().mean  # (1, L)
    return model.modalities[name].mean(model.decode(z, [name])[name])


def image_modalities(model: Model) -> list[str]:
    """Modalities whose decoded means render as images."""
    return [n for n in model.names if model.modalities[n].to_image(_probe(model, n)) is not None]


def self_reading(model: Model) -> list[str]:
    """Modalities that read their own class (labels, texts)."""
    return [n for n in model.names if model.modalities[n].classes_of(_probe(model, n)) is not None]


def class_sources(model: Model) -> list[str]:
    """Modalities that can be made from a class, so coherence can condition on them."""
    device = next(model.parameters()).device
    k = torch.zeros(1, dtype=torch.long, device=device)
    return [n for n in model.names if model.modalities[n].examples_of(k) is not None]


@torch.no_grad()
def prediction_accuracy(model: Model, inputs: dict[str, Tensor], target: str, truth: Tensor,
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
        means = modality.mean(model.decode(z, [target])[target])
        correct += int((reader.predict(means) == truth[i : i + batch_size]).sum())
    return correct / n


@torch.no_grad()
def coherence(model: Model, reader: Reader, source: str, target: str,
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
        means = model.modalities[target].mean(model.decode(z, [target])[target])
        per.append(float((reader.predict(means) == k).float().mean()))
    return sum(per) / len(per), per


@torch.no_grad()
def joint_coherence(model: Model, readers: dict[str, Reader], n: int = 1000, seed: int = 0,
                    latents: Callable[[int], Tensor] | None = None) -> float:
    """Samples z ~ p(z) (the family's prior), or ``latents(n)`` (a post-hoc sampler's ``(n, L)``), decoded to
    every modality in ``readers``: the fraction where all read the same class."""
    model.eval()
    torch.manual_seed(seed)
    z = model.prior((n,)).sample() if latents is None else latents(n)  # (n, L)
    read = torch.stack([reader.predict(model.modalities[name].mean(model.decode(z, [name])[name]))
                        for name, reader in readers.items()])  # (R, n)
    return float(((read == read[:1]).all(0) & (read[0] >= 0)).float().mean())

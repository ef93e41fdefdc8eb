"""Which cross-modal numbers a run can honestly have: modalities are compared only in one class space.

Every modality that reads or makes classes declares a ``ClassSpace``: how many classes, and the
data set field that holds each example's class in it (``Modality.class_space``). An image is read
by the CNN judge, trained on the data set's class field, so it lives in that field's space.

* accuracy s -> t: t's read class against t's own ground truth field, for every self-reading t;
* coherence s -> t: only when s makes and t reads classes of the same field;
* joint coherence: over the readers of the data set's class field.

A pair in different spaces, or a modality that declares no space, gives no number, and the report
says why (``"skipped"``), instead of a number scored against the wrong classes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from mmgen.eval.crossmodal import (
    Reader,
    SelfReader,
    class_sources,
    coherence,
    image_modalities,
    prediction_accuracy,
    self_reading,
)
from mmgen.eval.diversity import diversity
from mmgen.eval.judge import load_or_train_classifier
from mmgen.plugin.modality import ClassSpace
from mmgen.plugin.model import Model

JUDGE_EXAMPLES = 100_000  # training examples a judge learns from (3 epochs of them)


@dataclass
class CrossModalSetup:
    """Readers, targets of accuracy and sources of coherence, each with its resolved class space."""

    readers: dict[str, Reader]
    targets: list[str]  # self-reading modalities: accuracy targets
    sources: list[str]  # modalities made from a class: coherence sources
    spaces: dict[str, ClassSpace]  # every reader and source, with ``field`` resolved
    class_field: str | None  # the data set's
    skipped: dict[str, str] = field(default_factory=dict)  # metric -> why it is not measured
    images: list[str] = field(default_factory=list)  # the readers that are images (read by a judge)

    def fields(self) -> set[str]:
        return {space.field for space in self.spaces.values()}

    def judged(self) -> dict[str, Reader]:
        """The readers of the data set's class field (joint coherence compares those)."""
        return {n: r for n, r in self.readers.items() if self.spaces[n].field == self.class_field}


def _declared(model: Model, names: list[str], class_field: str | None, fields: set[str],
              role: str, skipped: dict[str, str]) -> dict[str, ClassSpace]:
    """The resolved spaces of ``names``; a modality without a usable one is noted in ``skipped``."""
    spaces = {}
    for name in names:
        declared = model.modalities[name].class_space()
        space = declared.resolved(class_field) if declared else None
        if space is None or space.field not in fields:
            why = ("declares no class space (Modality.class_space)" if declared is None else
                   f"declares {declared.describe()}, a field the data set lacks" if space
                   else "declares the data set's classes, and the data set names no class field")
            skipped[f"{role} {name}"] = f"{name} {why}"
            continue
        spaces[name] = space
    return spaces


def crossmodal_setup(model: Model, train: dict[str, Tensor], class_field: str | None,
                     device: torch.device, data_name: str,
                     on_judge: Callable[[str], None] | None = None) -> CrossModalSetup:
    """Readers (a modality's own ``classes_of``, or for an image the cached CNN judge), targets, sources."""
    skipped: dict[str, str] = {}
    fields = set(train)
    readers: dict[str, Reader] = {}
    spaces = _declared(model, self_reading(model), class_field, fields, "reader", skipped)
    readers.update({n: SelfReader(model, n) for n in spaces})
    targets = list(spaces)
    if class_field is not None:
        size = int(train[class_field].max()) + 1
        for name in image_modalities(model):
            if on_judge:
                on_judge(name)
            # At most JUDGE_EXAMPLES: a paired data set (MNIST-SVHN) repeats each image k times in its split.
            images, labels = train[name][:JUDGE_EXAMPLES], train[class_field][:JUDGE_EXAMPLES]
            readers[name] = load_or_train_classifier(images.to(device), labels.to(device), size,
                                                     name=f"{data_name}-{name}")
            spaces[name] = ClassSpace(size, class_field)
    sources = _declared(model, class_sources(model), class_field, fields, "source", skipped)
    spaces.update(sources)
    images = [n for n in readers if n not in targets]
    return CrossModalSetup(readers, targets, list(sources), spaces, class_field, skipped, images)


def crossmodal_metrics(model: Model, setup: CrossModalSetup, inputs: dict[str, Tensor],
                       truths: dict[str, Tensor], present: dict[str, Tensor] | None, per_class: int,
                       seed: int = 0, real: dict[str, Tensor] | None = None) -> dict[str, Any]:
    """Accuracy of every target from every other modality, and coherence within each class space.

    ``inputs``: prepared examples ``{name: (N, *event)}``; ``truths``: ``{field: (N,)}`` classes of
    each field in ``setup.fields()``; ``real``: the test images whose reconstructions are diversity's
    reference, as stored or as intensities (diversity prepares them itself; by default ``inputs``). An
    accuracy from s counts the examples that have s (``present``); it is None when none has it. Keys:
    ``"accuracy s->t"``, ``"coherence s->t"`` and ``"coherence s->t per class"`` (a list). Pairs in
    different spaces go to ``setup.skipped``.
    """
    out: dict[str, Any] = {}
    for t in setup.targets:
        truth = truths[setup.spaces[t].field]
        for s in model.names:
            if s == t:
                continue
            keep = None if present is None else present[s]  # None: no copy when nothing is missing
            if keep is not None and not keep.any():
                out[f"accuracy {s}->{t}"] = None
                continue
            x, y = (inputs[s], truth) if keep is None else (inputs[s][keep], truth[keep])
            out[f"accuracy {s}->{t}"] = prediction_accuracy(model, {s: x}, t, y, reader=setup.readers[t])
    for s in setup.sources:
        for t, reader in setup.readers.items():
            if t == s:
                continue
            if setup.spaces[s] != setup.spaces[t]:
                setup.skipped[f"coherence {s}->{t}"] = (f"{s} makes {setup.spaces[s].describe()}, "
                                                        f"{t} reads {setup.spaces[t].describe()}")
                continue
            mean, per = coherence(model, reader, s, t, setup.spaces[s].size, per_class, seed)
            out[f"coherence {s}->{t}"] = mean
            out[f"coherence {s}->{t} per class"] = per
            if t in setup.images:  # do the samples given a class vary as much as its real images?
                images, truth = (real or inputs)[t], truths[setup.spaces[t].field]
                if present is not None:  # only the test images the examples have
                    images, truth = images[present[t]], truth[present[t]]
                mean, per = diversity(model, s, t, images, truth, setup.spaces[s].size, per_class, seed)
                out[f"diversity {s}->{t}"] = mean
                out[f"diversity {s}->{t} per class"] = per
    return out

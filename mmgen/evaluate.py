"""``mmgen eval``: IWAE likelihoods, cross-modal accuracy and coherence, and pictures, for a run.

Every number says how it was obtained: the proposal of each likelihood estimate, the split, K,
the likelihood convention of each modality, the classifier's own test accuracy.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mmgen.build import build_dataset
from mmgen.crossmodal import (
    class_field_of,
    class_sources,
    coherence,
    joint_coherence,
    prediction_accuracy,
    readers_for,
    self_reading,
)
from mmgen.errors import MmgenError
from mmgen.judge import as_unit_float
from mmgen.likelihood import likelihood_report
from mmgen.pairing import evaluation_presence
from mmgen.run import Run

EVAL_SPLITS = ("test", "val")
Stage = Callable[[str], None]


def evaluate(run: Run, split: str = "test", K: int = 1000, proposal: list[str] | None = None,
             per_class: int = 100, limit: int | None = None, seed: int = 0,
             on_stage: Stage | None = None) -> dict[str, Any]:
    """The whole evaluation as a JSON-able dict (``eval.json``)."""
    say = on_stage or (lambda _msg: None)
    if split not in EVAL_SPLITS:
        raise MmgenError(f"split {split!r} cannot be evaluated: choose one of {', '.join(EVAL_SPLITS)}")
    if K < 1:
        raise MmgenError(f"-K {K}: the number of importance samples must be at least 1")
    model, names = run.model, run.model.names
    for name in proposal or []:
        if name not in names:
            raise MmgenError(f"--proposal {name!r}: this run has no such modality ({', '.join(names)})")
    say(f"loading the {split} split")
    splits = build_dataset(run.recipe).load()
    if split not in splits:
        raise MmgenError(f"the {run.recipe.data.kind!r} dataset has no {split!r} split (it has {', '.join(splits)})")
    raw = {n: splits[split][n][:limit] for n in names}
    # Prepared once with a fixed seed on the CPU: a binarized split is binarized once, and the same
    # way on every device (a cuda generator draws other numbers than a CPU one).
    fixed = torch.Generator().manual_seed(seed)
    data = {n: model.modalities[n].prepare(raw[n], fixed).to(run.device) for n in names}
    n_examples = next(iter(data.values())).shape[0]
    # Examples that lack a modality (data.missing_at_eval) are left out of every number that needs it.
    present = evaluation_presence(names, splits[split][names[0]].shape[0], run.recipe.data.missing_at_eval,
                                  run.recipe.data.pairing_seed)
    present = None if present is None else {n: m[:limit].to(run.device) for n, m in present.items()}

    out: dict[str, Any] = {
        "run": str(run.run.path), "epoch": run.epoch, "split": split, "examples": n_examples, "K": K,
        "proposal": "per estimate (the modalities scored)" if proposal is None else f"q(z|{','.join(proposal)})",
        "conventions": {n: model.modalities[n].evaluation_note() for n in names},
        "binarization_seed": seed,
        "missing": {n: int((~m).sum()) for n, m in present.items() if not m.all()} if present else {},
    }
    say(f"IWAE estimates with K={K} on {n_examples} examples")
    torch.manual_seed(seed)
    started = time.perf_counter()
    def progress(done: int, total: int) -> None:
        say(f"  {done}/{total} examples, {time.perf_counter() - started:.0f} s")

    for key, est in likelihood_report(model, data, K=K, proposal=proposal, on_batch=progress,
                                      present=present).items():
        out[key] = est.to_dict()
    out["seconds likelihood"] = time.perf_counter() - started

    class_field = class_field_of(run.recipe.data.kind)
    if class_field is not None:
        out.update(crossmodal_report(run, splits, class_field, data, raw_truth=splits[split][class_field][:limit],
                                     present=present, per_class=per_class, seed=seed, say=say))
    out["seconds total"] = time.perf_counter() - started
    return out


def crossmodal_report(run: Run, splits, class_field: str, data, raw_truth, present, per_class: int, seed: int,
                      say: Stage) -> dict[str, Any]:
    """Accuracy of every self-reading target from every other modality, coherence from every class
    source to every readable modality, and joint coherence; the judges' own test accuracies."""
    model, device = run.model, run.device
    truth = raw_truth.to(device)
    num_classes = int(splits["train"][class_field].max()) + 1
    readers = readers_for(model, splits["train"], class_field, num_classes, device, run.recipe.data.kind,
                          on_judge=lambda n: say(f"classifier of {n} (trained on the training split once, cached)"))
    out: dict[str, Any] = {}
    readable = self_reading(model)  # asked once: each call decodes a probe latent
    for name, reader in readers.items():
        if name not in readable:
            test_x, test_y = splits["test"][name].to(device), splits["test"][class_field].to(device)
            out[f"classifier accuracy {name} (test)"] = float((reader.predict(as_unit_float(test_x)) == test_y)
                                                             .float().mean())
    for t in readable:
        for s in model.names:
            if s != t:
                keep = present[s] if present is not None else slice(None)  # a slice: no copy when none is missing
                if present is not None and not keep.any():  # every example lacks the source: nothing to measure
                    out[f"accuracy {s}->{t}"] = None
                    continue
                out[f"accuracy {s}->{t}"] = prediction_accuracy(model, {s: data[s][keep]}, t, truth[keep],
                                                                reader=readers[t])
    for s in class_sources(model):
        for t, reader in readers.items():
            if t != s:
                mean, per = coherence(model, reader, s, t, num_classes, per_class, seed)
                out[f"coherence {s}->{t}"] = mean
                out[f"coherence {s}->{t} per class"] = per
    if len(readers) >= 2:
        out["coherence joint"] = joint_coherence(model, readers, n=per_class * num_classes, seed=seed)
    return out


def write_pictures(run: Run, split: str = "test", seed: int = 0) -> list[Path]:
    """Sampling modes, reconstructions and training curves as PNGs in the run directory."""
    from mmgen.pictures import save_sampling_pictures, save_training_curves

    splits = build_dataset(run.recipe).load()
    written = save_sampling_pictures(run, splits[split], run.run.path, seed=seed)
    rows = run.run.read_metrics()
    if rows:
        written.append(save_training_curves(rows, run.run.path / "curves.png"))
    return written

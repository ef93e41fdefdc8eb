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
from mmgen.crossmodal import coherence, image_modalities, joint_coherence, prediction_accuracy
from mmgen.errors import MmgenError
from mmgen.judge import as_unit_float, load_or_train_classifier
from mmgen.likelihood import likelihood_report
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
    raw = {n: splits[split][n][:limit].to(run.device) for n in names}
    # Prepared once with a fixed seed: a binarized split is binarized once, reproducibly.
    fixed = torch.Generator(device=run.device).manual_seed(seed)
    data = {n: model.modalities[n].prepare(raw[n], fixed) for n in names}
    n_examples = next(iter(data.values())).shape[0]

    out: dict[str, Any] = {
        "run": str(run.run.path), "epoch": run.epoch, "split": split, "examples": n_examples, "K": K,
        "proposal": "per estimate (the modalities scored)" if proposal is None else f"q(z|{','.join(proposal)})",
        "conventions": {n: model.modalities[n].evaluation_note() for n in names},
        "binarization_seed": seed,
    }
    say(f"IWAE estimates with K={K} on {n_examples} examples")
    torch.manual_seed(seed)
    started = time.perf_counter()
    def progress(done: int, total: int) -> None:
        say(f"  {done}/{total} examples, {time.perf_counter() - started:.0f} s")

    for key, est in likelihood_report(model, data, K=K, proposal=proposal, on_batch=progress).items():
        out[key] = est.to_dict()
    out["seconds likelihood"] = time.perf_counter() - started

    labels = [n for n in names if model.modalities[n].num_classes]
    images = image_modalities(model)
    pairs = [(c, i) for c in labels for i in images if i != c]
    for c in labels:
        for s in names:
            if s != c:
                out[f"accuracy {s}->{c}"] = prediction_accuracy(model, {s: data[s]}, c, raw[c])
        for i in images:
            if i == c:
                continue
            say(f"classifier of {i} by {c} (trained on the training split on first use, then cached)")
            train = splits["train"]
            classifier = load_or_train_classifier(train[i].to(run.device), train[c].to(run.device),
                                                  model.modalities[c].num_classes, name=f"{run.recipe.data.kind}-{i}")
            test_x, test_y = splits["test"][i].to(run.device), splits["test"][c].to(run.device)
            out[f"classifier accuracy {i} (test)"] = float((classifier.predict(as_unit_float(test_x)) == test_y)
                                                          .float().mean())
            mean, per = coherence(model, classifier, c, i, model.modalities[c].num_classes, per_class, seed)
            out[f"coherence {c}->{i}"] = mean
            out[f"coherence {c}->{i} per class"] = per
            key = "coherence joint" if len(pairs) == 1 else f"coherence joint {c},{i}"
            out[key] = joint_coherence(model, classifier, c, i, n=per_class * 10, seed=seed)
    out["seconds total"] = time.perf_counter() - started
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

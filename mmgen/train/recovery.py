"""Before ``--resume`` trains: check what it will read, and finish what a kill left half-done.

- ``check_fits_model``: the resume file (or, with ``--from-weights``, ``last.safetensors``) fits the
  recipe's model and optimizer, read from its header alone, so a file that does not fit is refused
  before the data loads.
- ``complete_commit``: an epoch's commit renames the resume file first, then ``last`` and ``best``,
  then appends the epoch's row to ``metrics.jsonl``. A kill between those steps leaves the others
  behind the resume file; they are rebuilt from it (its copy of the weights, its metrics rows), also
  when the run is finished and nothing else would write them again.
- ``check_pairing``: ``pairing.safetensors`` records which training example has which modality. The
  masks are rebuilt from ``data.pairing_seed``; a file that disagrees with them is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mmgen.errors import CheckpointError
from mmgen.run.directory import RunDir
from mmgen.run.loaded import weights_mismatch
from mmgen.storage.atomic import atomic_write_many
from mmgen.storage.tensors import load_tensors, read_header
from mmgen.train.checkpoint import (
    epoch_of,
    finished_weights,
    optimizer_mismatch,
    start_anew,
    way_forward,
    weights_payloads,
)


def check_fits_model(run: RunDir, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                     from_weights: bool = False) -> None:
    """Refuse a resume file whose weights or optimizer state do not fit (with ``from_weights``: a ``last``
    whose weights do not fit), from the header alone: no tensor is read."""
    if from_weights:
        shapes, _ = read_header(finished_weights(run))  # read_counters has found it readable
        why = weights_mismatch(shapes, model)
        if why:
            raise CheckpointError(f"{run.last} does not fit the recipe's model: {why}", hint=start_anew(run))
        return
    if not run.state.is_file():
        return
    try:
        shapes, meta = read_header(run.state)
    except CheckpointError as exc:
        raise CheckpointError(str(exc), hint=way_forward(run)) from None
    why = weights_mismatch({k[len("model."):]: v for k, v in shapes.items() if k.startswith("model.")}, model)
    if why:
        raise CheckpointError(f"{run.state} does not fit the recipe's model: {why}", hint=way_forward(run))
    why = optimizer_mismatch(optimizer, shapes, meta)
    if why:
        raise CheckpointError(f"{run.state} does not fit this model's optimizer: {why}", hint=way_forward(run))
    if "rng.batch" not in shapes:
        raise CheckpointError(f"{run.state} is not a resume file of this mmgen: it holds no random-number state "
                              "(rng.batch)", hint=way_forward(run))


def behind(run: RunDir, meta: dict[str, Any]) -> list[Path]:
    """The weights files that an epoch's commit (``meta``, the resume file's header) did not reach."""
    try:
        epoch, partial, best = int(meta.get("epoch", 0)), int(meta.get("epoch_step", 0)), int(meta.get("best_epoch", 0))
    except (TypeError, ValueError):
        return []  # not counters of this mmgen: loading the resume file says so
    if epoch < 1 or partial:  # a partial epoch's resume file is written without weights
        return []
    stale = [run.last] if epoch_of(run.last) != epoch else []
    return stale + ([run.best] if best == epoch and epoch_of(run.best) != epoch else [])


def complete_commit(run: RunDir, meta: dict[str, Any]) -> list[str]:
    """Rebuild, from the resume file (``meta``: its header), the weights files and the metrics rows its
    commit did not reach; returns the names of the files rewritten."""
    done = []
    stale = behind(run, meta)
    if stale:
        try:
            tensors, _ = load_tensors(run.state)
        except CheckpointError as exc:
            raise CheckpointError(str(exc), hint=way_forward(run)) from None
        weights = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
        payloads = weights_payloads(run, weights, int(meta["epoch"]), int(meta.get("step", 0)), run.best in stale)
        atomic_write_many({path: payloads[path] for path in stale})
        done += [path.name for path in stale]
    rows = meta.get("metrics")
    if isinstance(rows, list) and run.repair_metrics(rows):  # None in resume files of mmgen < 0.2
        done.append(run.metrics_file.name)
    return done


def pairing_mismatch(run: RunDir, masks: dict[str, Tensor]) -> str | None:
    """How ``pairing.safetensors`` differs from the rebuilt ``masks`` (bool, one ``(N,)`` per modality)."""
    try:
        saved, _ = load_tensors(run.pairing)
    except CheckpointError as exc:
        return f"it is not a readable safetensors file ({str(exc).removeprefix(f'corrupt checkpoint {run.pairing}: ')})"
    if sorted(saved) != sorted(masks):
        return f"it holds masks of {sorted(saved)}, the run's modalities are {sorted(masks)}"
    for name, mask in masks.items():
        n = mask.shape[0]
        if tuple(saved[name].shape) != (n,) or saved[name].dtype != torch.uint8:
            return (f"its mask of {name!r} is {saved[name].dtype} of shape {tuple(saved[name].shape)}, "
                    f"not torch.uint8 of shape ({n},) for the {n} training examples")
        differ = int((saved[name] != mask.to("cpu", torch.uint8)).sum())
        if differ:
            return f"its mask of {name!r} differs from the rebuilt one in {differ} of {n} examples"
    return None


def check_pairing(run: RunDir, masks: dict[str, Tensor] | None, pairing_seed: int) -> None:
    """Refuse a ``pairing.safetensors`` that does not hold the masks this run trains with; with full
    pairing (``masks`` None) there are none to check, and a missing file is written again by the caller."""
    if masks is None or not run.pairing.is_file():
        return
    why = pairing_mismatch(run, masks)
    if why:
        raise CheckpointError(
            f"{run.pairing} does not hold the pairing this run trains with: {why}",
            hint=f"the run trains with the masks data.pairing_seed={pairing_seed} gives; if its data set is the one "
                 f"it was trained on, delete {run.pairing.name} and resume: it is written anew")

"""The trainer's checkpoints: weights (``best``, ``last``) and the self-contained resume file.

``trainer_state.safetensors`` is the commit point of a run. It holds its own copy of the weights,
the optimizer moments flattened into tensors (``optim.<param>.<key>``, scalar settings in the
header), the RNG states (torch, batch order, binarization noise, the device's), the counters, and
every finished epoch's metrics row, so ``metrics.jsonl`` can always be rebuilt to hold each
finished epoch exactly once. A checkpoint of a *partial* epoch (written when a signal stops
training mid-epoch) also holds the epoch's example order and its running sums, so resuming it
continues the very same sequence of batches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from mmgen.errors import CheckpointError
from mmgen.run.directory import RunDir
from mmgen.storage.atomic import atomic_write_many, no_space
from mmgen.storage.tensors import encode_tensors, load_tensors, read_metadata


@dataclass
class TrainState:
    epoch: int = 0  # finished epochs
    step: int = 0  # optimizer steps taken
    best_val: float = math.inf
    best_epoch: int = 0
    epoch_step: int = 0  # steps done in the unfinished epoch; 0 at an epoch boundary
    epoch_seconds: float = 0.0  # training seconds spent in it


@dataclass
class PartialEpoch:
    """Where an unfinished epoch stands: its example order and the running sums of the logged terms."""

    order: Tensor  # (N,) long
    sums: dict[str, Tensor] = field(default_factory=dict)  # scalars


@dataclass
class Generators:
    """The trainer's own random streams (the reparameterization noise uses torch's global RNG)."""

    batch: torch.Generator  # order of examples, on the host
    noise: torch.Generator  # binarization draws, on the device


@dataclass
class Checkpoint:
    """What a resume file gives back besides the weights and optimizer it restores in place."""

    state: TrainState
    rows: list[dict[str, Any]] | None  # every finished epoch's metrics row; None in files of mmgen < 0.2
    partial: PartialEpoch | None
    meta: dict[str, Any]  # the whole header (the schedule's and scaler's state among it)


def optimizer_to_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Flatten an optimizer state_dict into tensors ``optim.<param>.<key>`` plus JSON metadata."""
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{idx}.{key}"] = value
            else:
                scalars[f"{idx}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_from_tensors(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):  # other entries (weights, RNG states) share the file
            _, idx, key = name.split(".", 2)
            state.setdefault(int(idx), {})[key] = value
    for name, value in meta.get("scalars", {}).items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    try:
        optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    except (KeyError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"trainer state does not fit this model's optimizer: {exc}")


def rng_tensors(generators: Generators, device: torch.device, rank: int = 0) -> dict[str, torch.Tensor]:
    """This process's RNG states; rank r > 0 of a distributed run suffixes its keys with ``.rank{r}``
    (the batch order is drawn alike on every rank, so only rank 0 keeps it)."""
    suffix = f".rank{rank}" if rank else ""
    rng = {f"rng.torch{suffix}": torch.get_rng_state(), f"rng.noise{suffix}": generators.noise.get_state()}
    if not rank:
        rng["rng.batch"] = generators.batch.get_state()
    if device.type == "cuda":
        rng[f"rng.cuda{suffix}"] = torch.cuda.get_rng_state(device)
    if device.type == "mps":
        rng[f"rng.mps{suffix}"] = torch.mps.get_rng_state()
    return rng


def restore_rng(tensors: dict[str, torch.Tensor], generators: Generators, device: torch.device, rank: int = 0) -> None:
    """This rank's RNG states; a rank the saved run did not have (more processes than before) keeps its seeds."""
    suffix = f".rank{rank}" if rank else ""
    generators.batch.set_state(tensors["rng.batch"])
    if f"rng.torch{suffix}" not in tensors:
        return
    torch.set_rng_state(tensors[f"rng.torch{suffix}"])
    generators.noise.set_state(tensors[f"rng.noise{suffix}"])
    if f"rng.cuda{suffix}" in tensors and device.type == "cuda":
        torch.cuda.set_rng_state(tensors[f"rng.cuda{suffix}"], device)
    if f"rng.mps{suffix}" in tensors and device.type == "mps":
        torch.mps.set_rng_state(tensors[f"rng.mps{suffix}"])


def save_checkpoint(run: RunDir, model: torch.nn.Module, optimizer: torch.optim.Optimizer, rng: dict[str, Tensor],
                    state: TrainState, rows: list[dict[str, Any]], best: bool = False,
                    partial: PartialEpoch | None = None, extra: dict[str, Any] | None = None) -> None:
    """At an epoch boundary: ``last`` (and ``best``) weights, then the resume file. In a partial
    epoch: the resume file only (``last`` stays the weights of the last finished epoch). All or nothing:
    a write that fails (a full disk) leaves the previous checkpoint whole and raises one CheckpointError
    naming the file and the command that goes on.

    ``rng``: the RNG states of every rank (``rng_tensors``); ``extra``: JSON state of the schedule
    and the fp16 scaler."""
    weights = model.state_dict()
    payloads = {}
    if partial is None:
        payloads[run.last] = encode_tensors(weights, {"epoch": state.epoch, "step": state.step})
        if best:
            payloads[run.best] = payloads[run.last]
    opt_tensors, opt_meta = optimizer_to_tensors(optimizer)
    tensors = {**{f"model.{k}": v for k, v in weights.items()}, **opt_tensors, **rng}
    if partial is not None:
        tensors["epoch.order"] = partial.order
        tensors.update({f"epoch.sum.{k}": v.reshape(1) for k, v in partial.sums.items()})
    payloads[run.state] = encode_tensors(tensors, {**opt_meta, **vars(state), "metrics": rows, **(extra or {})})
    kept = committed(run)  # read before writing: what a failed write leaves in place
    try:
        atomic_write_many(payloads)  # all or nothing: a failure leaves the previous checkpoint whole
    except OSError as exc:
        what = f"epoch {state.epoch}" if partial is None else f"the partial epoch {state.epoch + 1}"
        first = "free some space" if no_space(exc) else "fix that"
        then = (f"resume with: mmgen train {run.path} --resume" if kept
                else f"`mmgen train {run.path} --resume` trains it again from epoch 1")
        raise CheckpointError(f"cannot save the checkpoint of {what}: {exc.filename or run.state}: "
                              f"{exc.strerror or exc}; {kept or 'no checkpoint had been saved yet'}",
                              hint=f"{first}, then {then}") from exc


def committed(run: RunDir) -> str:
    """What the resume file holds now, in words ("" when there is none)."""
    try:
        meta = read_metadata(run.state) if run.state.is_file() else {}
    except CheckpointError:
        return "the previous checkpoint is kept"
    if not meta:
        return ""
    epoch, step = int(meta.get("epoch", 0)), int(meta.get("epoch_step", 0))
    return (f"the checkpoint of epoch {epoch} is kept" if not step
            else f"the checkpoint of epoch {epoch + 1}, step {step} is kept")


def load_checkpoint(run: RunDir, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    generators: Generators, device: torch.device, rank: int = 0) -> Checkpoint:
    """Restore weights, optimizer and RNG states from the resume file in place; the rest comes back."""
    try:
        tensors, meta = load_tensors(run.state)
    except CheckpointError as exc:
        raise CheckpointError(str(exc), hint=way_forward(run)) from None
    weights = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise CheckpointError(f"{run.state} does not fit the recipe's model: {str(exc).splitlines()[0]}")
    optimizer_from_tensors(optimizer, tensors, meta)
    try:
        restore_rng(tensors, generators, device, rank)
        state = TrainState(**{k: meta[k] for k in vars(TrainState()) if k in meta})
    except (KeyError, TypeError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{run.state} is not a resume file of this mmgen: {exc.__class__.__name__}: {exc}")
    partial = None
    if state.epoch_step > 0:
        if "epoch.order" not in tensors:
            raise CheckpointError(f"{run.state} is a partial epoch without its example order")
        sums = {k[len("epoch.sum."):]: v.reshape(()) for k, v in tensors.items() if k.startswith("epoch.sum.")}
        partial = PartialEpoch(tensors["epoch.order"].to(device), {k: v.to(device) for k, v in sums.items()})
    return Checkpoint(state, meta.get("metrics"), partial, meta)


def way_forward(run: RunDir) -> str:
    """The hint for an unreadable resume file: go on from the weights of the last finished epoch, or start again."""
    try:
        epoch = int(read_metadata(run.last).get("epoch", 0)) if run.last.is_file() else 0
    except (CheckpointError, TypeError, ValueError):
        epoch = 0
    if epoch:
        return (f"`mmgen train {run.path} --resume --from-weights` goes on from {run.last.name} (epoch {epoch}) "
                "with a fresh optimizer state, so not bit-identical to an unbroken run")
    return f"no weights of a finished epoch remain: `mmgen train {run.path} --out NEW_DIR` trains its recipe again"


def read_counters(run: RunDir, from_weights: bool = False) -> dict[str, Any]:
    """The counters of the resume file, read-only ({} when there is none); an unreadable one says how to go on.
    ``from_weights``: those of ``last`` (the weights of the last finished epoch), which must exist."""
    if from_weights:
        return read_metadata(finished_weights(run))
    if not run.state.is_file():
        return {}
    try:
        return read_metadata(run.state)
    except CheckpointError as exc:
        raise CheckpointError(str(exc), hint=way_forward(run)) from None


def selection_score(row: dict[str, Any], best_by: str, names: list[str]) -> float | None:
    """The number ``train.best_by`` minimizes, from one metrics row: ``val/loss``, or minus the
    validation ELBO of all ``names`` together; None when the row has not got it."""
    value = row.get("val/loss") if best_by == "loss" else row.get(f"val/elbo({','.join(names)})")
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    return float(value) if best_by == "loss" else -float(value)


def load_weights(run: RunDir, model: torch.nn.Module, best_by: str = "loss",
                 names: list[str] | None = None) -> tuple[TrainState, list[dict[str, Any]]]:
    """``--from-weights``: the weights of the last finished epoch (``last``) into ``model``, the counters
    from their header, and the metrics rows up to that epoch from ``metrics.jsonl``. The optimizer's
    moments, the fp16 scaler and the random streams are not in that file: they start afresh."""
    tensors, meta = load_tensors(finished_weights(run))
    try:
        model.load_state_dict(tensors)
    except RuntimeError as exc:
        raise CheckpointError(f"{run.last} does not fit the recipe's model: {str(exc).splitlines()[0]}")
    epoch, step = int(meta.get("epoch", 0)), int(meta.get("step", 0))
    if epoch < 1:
        raise CheckpointError(f"{run.last} does not say which epoch it holds, so --from-weights cannot go on from it")
    rows = {r["epoch"]: r for r in run.read_metrics() if isinstance(r.get("epoch"), int) and 0 < r["epoch"] <= epoch}
    scored = [(s, e) for e, r in rows.items() if (s := selection_score(r, best_by, names or [])) is not None]
    best_val, best_epoch = min(scored, default=(math.inf, 0))
    state = TrainState(epoch=epoch, step=step, best_val=best_val, best_epoch=best_epoch)
    return state, [rows[e] for e in sorted(rows)]


def finished_weights(run: RunDir):
    """``last.safetensors``, which ``--from-weights`` goes on from; an error when the run has none."""
    if not run.last.is_file():
        raise CheckpointError(f"{run.last} not found: --from-weights needs the weights of a finished epoch",
                              hint=f"`mmgen train {run.path} --out NEW_DIR` trains its recipe again")
    return run.last

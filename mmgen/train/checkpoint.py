"""The trainer's checkpoints: weights (``best``, ``last``) and the self-contained resume file.

``trainer_state.safetensors`` is the commit point of a run. It holds its own copy of the weights,
the optimizer moments flattened into tensors (``optim.<param>.<key>``, scalar settings in the
header), the RNG states (torch, batch order, binarization noise, the device's), the counters, and
every finished epoch's metrics row. It is renamed into place first; ``last``, ``best`` and the
metrics row follow, and what a kill kept from following is rebuilt from it
(``mmgen.train.recovery``). A checkpoint of a *partial* epoch (written when a signal stops
training mid-epoch) also holds the epoch's example order and its running sums, so resuming it
continues the very same sequence of batches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
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


def optimizer_mismatch(optimizer: torch.optim.Optimizer, shapes: dict[str, tuple[int, ...]],
                       meta: dict[str, Any]) -> str | None:
    """What in a saved optimizer state (its header ``meta`` and the ``shapes`` of its tensors) does not fit
    ``optimizer``, in words; None when it fits. torch itself checks only the group sizes, and a moment of the
    wrong shape would fail at the first step."""
    saved = meta.get("param_groups")
    if not isinstance(saved, list) or not all(isinstance(g, dict) and isinstance(g.get("params"), list)
                                              and all(type(i) is int for i in g["params"]) for g in saved):
        return "its header has no 'param_groups' (the optimizer's settings), so it was not written by mmgen's trainer"
    sizes, now = [len(g["params"]) for g in saved], [len(g["params"]) for g in optimizer.param_groups]
    if sizes != now:
        return (f"it holds the optimizer state of {sum(sizes)} parameter tensor(s) in group(s) of {sizes}; "
                f"this model's optimizer has {sum(now)} in {now}")
    # torch pairs the saved ids with the optimizer's parameters in group order.
    ids = (i for g in saved for i in g["params"])
    params = dict(zip(ids, (p for g in optimizer.param_groups for p in g["params"])))
    for name, shape in shapes.items():
        if not name.startswith("optim."):
            continue
        idx = name.split(".")[1]
        param = params.get(int(idx)) if idx.isascii() and idx.isdigit() else None
        if param is None:
            return f"{name} belongs to no parameter of its 'param_groups'"
        if shape and shape != tuple(param.shape):  # 0-dim entries (Adam's step) are scalars
            return f"{name} has shape {shape}, its parameter {tuple(param.shape)}"
    return None


def optimizer_from_tensors(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any],
    source: str = "the trainer state",
) -> None:
    why = optimizer_mismatch(optimizer, {k: tuple(v.shape) for k, v in tensors.items()}, meta)
    if why:
        raise CheckpointError(f"{source} does not fit this model's optimizer: {why}")
    state: dict[int, dict[str, Any]] = {}
    try:
        for name, value in tensors.items():
            if name.startswith("optim."):  # other entries (weights, RNG states) share the file
                _, idx, key = name.split(".", 2)
                state.setdefault(int(idx), {})[key] = value
        for name, value in meta.get("scalars", {}).items():
            idx, key = name.split(".", 1)
            state.setdefault(int(idx), {})[key] = value
        optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    except (KeyError, ValueError, RuntimeError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{source} does not fit this model's optimizer: {exc.__class__.__name__}: {exc}")


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
    """At an epoch boundary: the resume file, then ``last`` (and ``best``) weights. In a partial
    epoch: the resume file only (``last`` stays the weights of the last finished epoch). All or nothing:
    a write that fails (a full disk) leaves the previous checkpoint whole and raises one CheckpointError
    naming the file and the command that goes on. The resume file is renamed first, so weights never
    exist without the resume file that committed them; a kill right after it leaves ``last`` and
    ``best`` behind it, and ``complete_commit`` rebuilds them from its copy of the weights.

    ``rng``: the RNG states of every rank (``rng_tensors``); ``extra``: JSON state of the schedule
    and the fp16 scaler."""
    weights = model.state_dict()
    opt_tensors, opt_meta = optimizer_to_tensors(optimizer)
    tensors = {**{f"model.{k}": v for k, v in weights.items()}, **opt_tensors, **rng}
    if partial is not None:
        tensors["epoch.order"] = partial.order
        tensors.update({f"epoch.sum.{k}": v.reshape(1) for k, v in partial.sums.items()})
    payloads = {run.state: encode_tensors(tensors, {**opt_meta, **vars(state), "metrics": rows, **(extra or {})})}
    if partial is None:
        payloads.update(weights_payloads(run, weights, state.epoch, state.step, best))
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


def weights_payloads(run: RunDir, weights: dict[str, Tensor], epoch: int, step: int,
                     best: bool) -> dict[Path, bytes]:
    """The bytes of ``last`` (and ``best``) holding ``weights`` after ``epoch``."""
    payload = encode_tensors(weights, {"epoch": epoch, "step": step})
    return {run.last: payload, **({run.best: payload} if best else {})}


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
    try:
        optimizer_from_tensors(optimizer, tensors, meta, str(run.state))
    except CheckpointError as exc:
        raise CheckpointError(str(exc), hint=way_forward(run)) from None
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


def epoch_of(path: Path) -> int:
    """The epoch a weights file says it holds; 0 when it is missing, unreadable or says none."""
    try:
        return int(read_metadata(path).get("epoch", 0)) if path.is_file() else 0
    except (CheckpointError, TypeError, ValueError):
        return 0


def way_forward(run: RunDir) -> str:
    """The hint for an unreadable resume file: go on from the weights of the last finished epoch, or start again."""
    epoch = epoch_of(run.last)
    if epoch:
        return f"{from_last(run, epoch)}, so not bit-identical to an unbroken run"
    return f"no weights of a finished epoch remain: `mmgen train {run.path} --out NEW_DIR` trains its recipe again"


def from_last(run: RunDir, epoch: int) -> str:
    """The way forward from ``last`` (holding ``epoch``) when the resume file cannot be used."""
    return (f"`mmgen train {run.path} --resume --from-weights` goes on from {run.last.name} (epoch {epoch}) "
            "with a fresh optimizer state")


def read_counters(run: RunDir, from_weights: bool = False) -> dict[str, Any]:
    """The counters of the resume file, read-only ({} when there is none); an unreadable one says how to go on.
    ``from_weights``: those of ``last`` (the weights of the last finished epoch), which must exist."""
    if from_weights:
        try:
            return read_metadata(finished_weights(run))
        except CheckpointError as exc:
            raise CheckpointError(str(exc), hint=exc.hint or start_anew(run)) from None
    if not run.state.is_file():
        refuse_to_train_over_weights(run)
        return {}
    try:
        return read_metadata(run.state)
    except CheckpointError as exc:
        raise CheckpointError(str(exc), hint=way_forward(run)) from None


def refuse_to_train_over_weights(run: RunDir) -> None:
    """A run with weights but no resume file was not killed before its first checkpoint (the resume file is
    renamed into place before any weights): its resume file was lost, and training it from epoch 1 in
    place would overwrite what it learned."""
    trained = [p.name for p in (run.last, run.best) if p.is_file()]
    epoch = epoch_of(run.last)
    if not trained or (epoch <= 1 and not run.read_metrics()):
        # The second: a run written before the commit order of 2026-12-03 (weights renamed before the resume file),
        # killed inside epoch 1's commit, before its row; retraining from epoch 1 redoes it bit for bit.
        return
    raise CheckpointError(
        f"{run.path} has trained weights ({', '.join(trained)}) but no resume file ({run.state.name}): "
        "training it from epoch 1 would overwrite them",
        hint=f"{from_last(run, epoch)}; or {start_anew(run)}" if epoch else start_anew(run))


def start_anew(run: RunDir) -> str:
    """The way forward that keeps a run as it is: its recipe trained into another directory."""
    return f"`mmgen train {run.path} --out NEW_DIR` trains its recipe anew"


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

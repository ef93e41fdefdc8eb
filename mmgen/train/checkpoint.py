"""The trainer's checkpoints: weights (``best``, ``last``) and the self-contained resume file.

``trainer_state.safetensors`` holds its own copy of the weights, the optimizer moments flattened
into tensors (``optim.<param>.<key>``, scalar settings in the header), the RNG states (torch,
batch order, binarization noise, the device's) and the counters, so a resumed run continues the
exact same sequence of batches and a crash between two renames never leaves a run unresumable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from mmgen.errors import CheckpointError
from mmgen.run.directory import RunDir
from mmgen.storage.tensors import load_tensors, save_tensors


@dataclass
class TrainState:
    epoch: int = 0  # finished epochs
    step: int = 0  # optimizer steps taken
    best_val: float = math.inf
    best_epoch: int = 0


@dataclass
class Generators:
    """The trainer's own random streams (the reparameterization noise uses torch's global RNG)."""

    batch: torch.Generator  # order of examples, on the host
    noise: torch.Generator  # binarization draws, on the device


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


def rng_tensors(generators: Generators, device: torch.device) -> dict[str, torch.Tensor]:
    rng = {"rng.torch": torch.get_rng_state(), "rng.batch": generators.batch.get_state(),
           "rng.noise": generators.noise.get_state()}
    if device.type == "cuda":
        rng["rng.cuda"] = torch.cuda.get_rng_state(device)
    if device.type == "mps":
        rng["rng.mps"] = torch.mps.get_rng_state()
    return rng


def restore_rng(tensors: dict[str, torch.Tensor], generators: Generators, device: torch.device) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    generators.batch.set_state(tensors["rng.batch"])
    generators.noise.set_state(tensors["rng.noise"])
    if "rng.cuda" in tensors and device.type == "cuda":
        torch.cuda.set_rng_state(tensors["rng.cuda"], device)
    if "rng.mps" in tensors and device.type == "mps":
        torch.mps.set_rng_state(tensors["rng.mps"])


def save_checkpoint(run: RunDir, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    generators: Generators, state: TrainState, device: torch.device, best: bool) -> None:
    """``last`` (and ``best``) weights, then the resume file."""
    weights = model.state_dict()
    meta = {"epoch": state.epoch, "step": state.step}
    save_tensors(run.last, weights, meta)
    if best:
        save_tensors(run.best, weights, meta)
    opt_tensors, opt_meta = optimizer_to_tensors(optimizer)
    model_tensors = {f"model.{k}": v for k, v in weights.items()}
    save_tensors(run.state, {**model_tensors, **opt_tensors, **rng_tensors(generators, device)},
                 {**opt_meta, **vars(state)})


def load_checkpoint(run: RunDir, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    generators: Generators, device: torch.device) -> TrainState:
    """Restore weights, optimizer and RNG states from the resume file; returns the counters."""
    tensors, meta = load_tensors(run.state)
    weights = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise CheckpointError(f"{run.state} does not fit the recipe's model: {str(exc).splitlines()[0]}")
    optimizer_from_tensors(optimizer, tensors, meta)
    restore_rng(tensors, generators, device)
    return TrainState(**{k: meta[k] for k in vars(TrainState()) if k in meta})

"""What ``mmgen train`` runs: validate everything, load the data, build the model, open or create
the run directory, and fit; ``--resume`` continues a run from its resume file."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from mmgen.config import Recipe
from mmgen.errors import CheckpointError
from mmgen.model.presence import describe
from mmgen.recipe.build import build_dataset, build_model, check_fits, resolve_device
from mmgen.recipe.load import load_recipe
from mmgen.run.directory import RunDir
from mmgen.storage.atomic import atomic_write_text
from mmgen.storage.tensors import save_tensors
from mmgen.train.trainer import Callback, Trainer


def prepare_run(out: Path, recipe: Recipe, resume: bool) -> RunDir:
    """Open (resume) or create the run directory; resuming checks the recipe matches."""
    if not resume:
        run = RunDir(out)
        run.create(recipe.to_dict())
        return run
    run = RunDir.open(out)
    # Re-validated, so a field added since the run began compares as its default, not as a difference.
    saved = run.recipe().to_dict()
    now = recipe.to_dict()
    saved.get("train", {}).pop("epochs", None)
    now.get("train", {}).pop("epochs", None)
    if saved != now:
        raise CheckpointError(
            f"{out}: the recipe differs from the one this run was trained with (only train.epochs may change)"
        )
    if not run.state.is_file():
        raise CheckpointError(f"{out} has no trainer_state.safetensors: nothing to resume")
    atomic_write_text(run.recipe_file, json.dumps(recipe.to_dict(), indent=2) + "\n")  # new train.epochs
    return run


def record_pairing(run: RunDir, trainer: Trainer) -> None:
    """Save the weak-supervision masks (bool as uint8) with their counts, so the split can be inspected."""
    if trainer.train_present is None:
        return
    masks = {n: m.to("cpu", torch.uint8) for n, m in trainer.train_present.items()}
    counts = describe({n: m.bool() for n, m in masks.items()}, trainer.n_train)
    save_tensors(run.pairing, masks, {"paired_fraction": trainer.recipe.data.paired_fraction,
                                      "pairing_seed": trainer.recipe.data.pairing_seed, **counts})


def train_recipe(recipe_path: Path, overrides: list[str], out: Path | None, device: str | None, resume: bool,
                 on_progress: Callback | None = None, on_epoch: Callback | None = None) -> Path:
    """``mmgen train``: validate everything, then load data, build the model and fit. Returns the run dir.

    ``recipe_path`` may also be a run directory, whose recipe.json is used (handy with --resume).
    """
    recipe_path = Path(recipe_path)
    if recipe_path.is_dir():
        recipe = RunDir.open(recipe_path).recipe(overrides)
        out = out or recipe_path
    else:
        recipe = load_recipe(recipe_path, overrides)  # every recipe error surfaces here, before any tensor
    dev = resolve_device(device or recipe.train.device)
    # Data, model and their fit come before the run directory, so an error there leaves nothing behind.
    splits = build_dataset(recipe).load()
    model = build_model(recipe)
    check_fits(model, splits["train"])
    run = prepare_run(out or RunDir.default_path(recipe.name), recipe, resume)
    trainer = Trainer(recipe, model, splits, run, dev)
    if resume:
        trainer.resume()
    else:
        record_pairing(run, trainer)
    trainer.fit(on_progress, on_epoch)
    return run.path

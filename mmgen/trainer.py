"""The training loop: whole splits on the device, β annealed every step, validation every epoch.

Run it with ``mmgen train RECIPE``. Checkpoints are written only after a finished epoch whose
losses were finite, so a NaN never overwrites a good checkpoint.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from mmgen.checkpoint import (
    atomic_write_text,
    load_tensors,
    optimizer_from_tensors,
    optimizer_to_tensors,
    save_tensors,
)
from mmgen.errors import CheckpointError, TrainingDiverged
from mmgen.model import MultimodalVAE, elbo
from mmgen.pairing import describe, evaluation_presence, training_presence
from mmgen.rundir import RunDir

if TYPE_CHECKING:
    from mmgen.recipe import Recipe


class TrainConfig(BaseModel):
    """Optimization schedule (the MVAE paper: Adam 1e-3, batch 100, 500 epochs, β over 200)."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(500, ge=1, description="Epochs to train in total (a resumed run continues up to this).")
    batch_size: int = Field(100, ge=1, description="Examples per optimizer step.")
    lr: float = Field(1e-3, gt=0, description="Adam learning rate.")
    anneal_epochs: float = Field(200, ge=0, description="β rises linearly from 0 to 1 over these epochs, every step.")
    eval_batch_size: int = Field(2000, ge=1, description="Examples per batch when validating.")
    log_every: int = Field(25, ge=1, description="Steps between progress updates; each one syncs the host once.")
    crossmodal_every: int = Field(
        0, ge=0, description="Log accuracy and coherence on a fixed validation subset every N epochs (0: never)."
    )
    crossmodal_examples: int = Field(1000, ge=10, description="Size of that subset (coherence: a tenth per class).")
    device: str = Field(
        "auto", pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$", description="auto, cpu, cuda[:N] or mps (--device wins)."
    )


def beta_at(step: int, steps_per_epoch: int, anneal_epochs: float) -> float:
    """β after ``step`` optimizer steps (0-based): linear from 1/N to 1 over the first N steps."""
    total = anneal_epochs * steps_per_epoch
    return 1.0 if total <= 0 else min(1.0, (step + 1) / total)


@dataclass
class TrainState:
    epoch: int = 0  # finished epochs
    step: int = 0  # optimizer steps taken
    best_val: float = math.inf
    best_epoch: int = 0


Callback = Callable[[dict[str, Any]], None]


class Trainer:
    """Owns the model, optimizer, data on the device and the run directory."""

    def __init__(self, recipe: Recipe, model: MultimodalVAE, splits: dict[str, dict[str, Tensor]],
                 run: RunDir, device: torch.device):
        self.recipe, self.cfg, self.run, self.device = recipe, recipe.train, run, device
        self.model = model.to(device)
        self.names = model.names
        # Keep the stored dtype (uint8 images are 4x smaller); `prepare` converts one batch at a time.
        self.train_data = {n: splits["train"][n].to(device) for n in self.names}
        self.n_train = next(iter(self.train_data.values())).shape[0]
        data_cfg = recipe.data
        present = training_presence(self.names, self.n_train, data_cfg.paired_fraction, data_cfg.pairing_seed)
        self.train_present = None if present is None else {n: m.to(device) for n, m in present.items()}
        n_val = splits["val"][self.names[0]].shape[0]
        present = evaluation_presence(self.names, n_val, data_cfg.missing_at_eval, data_cfg.pairing_seed)
        self.val_present = None if present is None else {n: m.to(device) for n, m in present.items()}
        self.steps_per_epoch = math.ceil(self.n_train / self.cfg.batch_size)
        # Validation inputs are prepared once with a fixed seed, so epochs are scored on the same data;
        # on the CPU, so every device scores the same binarization.
        fixed = torch.Generator().manual_seed(recipe.seed + 1)
        self.val_data = {n: model.modalities[n].prepare(splits["val"][n], fixed).to(device) for n in self.names}
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.cfg.lr, **_fast_adam(device))
        self.batch_gen = torch.Generator().manual_seed(recipe.seed)  # order of examples, on the host
        self.noise_gen = torch.Generator(device=device).manual_seed(recipe.seed + 2)  # binarization draws
        self.state = TrainState()
        torch.manual_seed(recipe.seed)  # the reparameterization noise: global RNG, saved for --resume
        self.probe = None
        if self.cfg.crossmodal_every:
            from mmgen.crossmodal import CrossModalProbe

            self.probe = CrossModalProbe(model, splits, self.cfg.crossmodal_examples, device, recipe.data.kind,
                                         present=self.val_present)

    # ---- checkpoints -----------------------------------------------------------------------
    def save(self, best: bool) -> None:
        weights = self.model.state_dict()
        meta = {"epoch": self.state.epoch, "step": self.state.step}
        save_tensors(self.run.last, weights, meta)
        if best:
            save_tensors(self.run.best, weights, meta)
        # The resume file is self-contained (its own copy of the weights): a crash between two of
        # these renames can never leave a run that cannot be resumed.
        opt_tensors, opt_meta = optimizer_to_tensors(self.optimizer)
        rng = {"rng.torch": torch.get_rng_state(), "rng.batch": self.batch_gen.get_state(),
               "rng.noise": self.noise_gen.get_state()}
        if self.device.type == "cuda":
            rng["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        if self.device.type == "mps":
            rng["rng.mps"] = torch.mps.get_rng_state()
        model = {f"model.{k}": v for k, v in weights.items()}
        save_tensors(self.run.state, {**model, **opt_tensors, **rng}, {**opt_meta, **vars(self.state)})

    def resume(self) -> None:
        tensors, meta = load_tensors(self.run.state)
        weights = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
        try:
            self.model.load_state_dict(weights)
        except RuntimeError as exc:
            raise CheckpointError(f"{self.run.state} does not fit the recipe's model: {str(exc).splitlines()[0]}")
        optimizer_from_tensors(self.optimizer, tensors, meta)
        torch.set_rng_state(tensors["rng.torch"])
        self.batch_gen.set_state(tensors["rng.batch"])
        self.noise_gen.set_state(tensors["rng.noise"])
        if "rng.cuda" in tensors and self.device.type == "cuda":
            torch.cuda.set_rng_state(tensors["rng.cuda"], self.device)
        if "rng.mps" in tensors and self.device.type == "mps":
            torch.mps.set_rng_state(tensors["rng.mps"])
        self.state = TrainState(**{k: meta[k] for k in vars(TrainState()) if k in meta})
        self.run.truncate_metrics(self.state.epoch)

    # ---- one epoch -----------------------------------------------------------------------------
    def train_epoch(self, on_progress: Callback | None = None) -> dict[str, Any]:
        """One pass over the training split; returns mean loss terms. Raises TrainingDiverged on NaN/Inf."""
        self.model.train()
        B = self.cfg.batch_size
        order = torch.randperm(self.n_train, generator=self.batch_gen).to(self.device)
        sums: dict[str, Tensor] = {}
        seen_sync = 0
        started = time.perf_counter()
        for i in range(self.steps_per_epoch):
            idx = order[i * B : (i + 1) * B]
            batch = {n: self.model.modalities[n].prepare(self.train_data[n][idx], self.noise_gen) for n in self.names}
            beta = beta_at(self.state.step, self.steps_per_epoch, self.cfg.anneal_epochs)
            present = None if self.train_present is None else {n: m[idx] for n, m in self.train_present.items()}
            out = self.model(batch, beta=beta, present=present)
            self.optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            self.optimizer.step()
            self.state.step += 1
            for key, value in {"loss": out.loss.detach(), **out.terms}.items():
                sums[key] = sums[key] + value if key in sums else value.clone()
            last = i + 1 == self.steps_per_epoch
            if (i + 1) % self.cfg.log_every == 0 or last:
                means = {k: float(v) / (i + 1) for k, v in sums.items()}  # the only host sync
                if not all(math.isfinite(v) for v in means.values()):
                    self._diverged(i + 1, means)
                if on_progress:
                    seen_sync = i + 1
                    on_progress({"step": seen_sync, "steps": self.steps_per_epoch, "beta": beta,
                                 "samples_per_s": (i + 1) * B / (time.perf_counter() - started), **means})
        seconds = time.perf_counter() - started
        means = {f"train/{k}": float(v) / self.steps_per_epoch for k, v in sums.items()}
        return {**means, "beta": beta, "train_seconds": seconds, "samples_per_s": self.n_train / seconds}

    def _diverged(self, step: int, means: dict[str, float]) -> None:
        bad = ", ".join(f"{k}={v}" for k, v in means.items() if not math.isfinite(v))
        kept = (f"the last good checkpoint is {self.run.last} (epoch {self.state.epoch})"
                if self.run.last.is_file() else "no checkpoint had been written yet")
        raise TrainingDiverged(
            f"training diverged at epoch {self.state.epoch + 1}, step {step}: {bad}; {kept}",
            hint="inspect metrics.jsonl; --resume restarts from the last good checkpoint",
        )

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Validation split: the training objective at β=1 (same λ) and the honest ELBOs (λ=1) in nats."""
        self.model.eval()
        n = next(iter(self.val_data.values())).shape[0]
        groups = [self.names] + ([[m] for m in self.names] if len(self.names) > 1 else [])
        totals = {"val/loss": 0.0, **{f"val/elbo({','.join(g)})": 0.0 for g in groups}}
        counts = dict.fromkeys(totals, 0)
        for start in range(0, n, self.cfg.eval_batch_size):
            part = slice(start, start + self.cfg.eval_batch_size)
            batch = {k: v[part] for k, v in self.val_data.items()}
            present = None if self.val_present is None else {k: v[part] for k, v in self.val_present.items()}
            b = next(iter(batch.values())).shape[0]
            out = self.model(batch, beta=1.0, present=present, subsets=self.model.fixed_subsets())
            totals["val/loss"] += float(out.loss) * b
            counts["val/loss"] += b
            for g in groups:
                # Scored on the examples that have every modality of the group.
                keep = torch.ones(b, dtype=torch.bool, device=self.device)
                for m in g if present is not None else []:
                    keep &= present[m]
                key = f"val/elbo({','.join(g)})"
                totals[key] += float(elbo(self.model, {m: batch[m][keep] for m in g}, g).sum()) if keep.any() else 0.0
                counts[key] += int(keep.sum())
        return {k: v / max(counts[k], 1) for k, v in totals.items()}

    # ---- the whole run ---------------------------------------------------------------------------
    def fit(self, on_progress: Callback | None = None, on_epoch: Callback | None = None) -> TrainState:
        while self.state.epoch < self.cfg.epochs:
            stats = self.train_epoch(on_progress)
            val = self.validate()
            if not all(math.isfinite(v) for v in val.values()):
                self._diverged(self.steps_per_epoch, {k: v for k, v in val.items()})
            self.state.epoch += 1
            if self.probe is not None and self.state.epoch % self.cfg.crossmodal_every == 0:
                val.update(self.probe())
            best = val["val/loss"] < self.state.best_val
            if best:
                self.state.best_val, self.state.best_epoch = val["val/loss"], self.state.epoch
            self.save(best)
            row = {"epoch": self.state.epoch, "step": self.state.step, **stats, **val, "best": best}
            self.run.append_metrics(row)
            if on_epoch:
                on_epoch(row)
        return self.state


def _fast_adam(device: torch.device) -> dict[str, bool]:
    """One fused kernel per step where torch supports it for this device (CPU and CUDA do)."""
    return {"fused": True} if device.type in ("cpu", "cuda") else {"foreach": True}


def prepare_run(out: Path, recipe: Recipe, resume: bool) -> RunDir:
    """Open (resume) or create the run directory; resuming checks the recipe matches."""
    if resume:
        from mmgen.recipe import validate_recipe

        run = RunDir.open(out)
        # Re-validated, so a field added since the run began compares as its default, not as a difference.
        saved = validate_recipe(run.read_recipe_data(), source=str(run.recipe_file)).to_dict()
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
    run = RunDir(out)
    run.create(recipe.to_dict())
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
    from mmgen.build import build_dataset, build_model, check_fits, resolve_device
    from mmgen.recipe import apply_overrides, load_recipe, validate_recipe

    recipe_path = Path(recipe_path)
    if recipe_path.is_dir():
        data = apply_overrides(RunDir.open(recipe_path).read_recipe_data(), overrides)
        recipe = validate_recipe(data, source=str(recipe_path / "recipe.json"))
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

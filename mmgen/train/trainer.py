"""The training loop: whole splits on the device, β annealed every step, validation every epoch.

Run it with ``mmgen train RECIPE`` (``mmgen.train.session``). An epoch's checkpoint is written
only after the epoch finished with sane losses (``mmgen.train.divergence``), so a divergence never
overwrites a good checkpoint; the resume file commits the epoch's metrics row with it. A stop
request (SIGINT, SIGTERM) ends training after the current step with a checkpoint of the partial
epoch, from which ``--resume`` continues the same sequence of batches.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from mmgen.config import Recipe
from mmgen.errors import TrainingDiverged, TrainingInterrupted
from mmgen.eval.probe import CrossModalProbe
from mmgen.model.inputs import prepare_fixed
from mmgen.model.presence import evaluation_presence, having, training_presence
from mmgen.model.vae import MultimodalVAE, elbo
from mmgen.recipe.build import class_field_of
from mmgen.run.directory import RunDir
from mmgen.train.checkpoint import Generators, PartialEpoch, TrainState, load_checkpoint, save_checkpoint
from mmgen.train.divergence import divergence
from mmgen.train.signals import StopRequest

Callback = Callable[[dict[str, Any]], None]


def beta_at(step: int, steps_per_epoch: int, anneal_epochs: float) -> float:
    """β after ``step`` optimizer steps (0-based): linear from 1/N to 1 over the first N steps."""
    total = anneal_epochs * steps_per_epoch
    return 1.0 if total <= 0 else min(1.0, (step + 1) / total)


def _on_device(present: dict[str, Tensor] | None, device: torch.device) -> dict[str, Tensor] | None:
    return None if present is None else {n: m.to(device) for n, m in present.items()}


class Trainer:
    """Owns the model, optimizer, data on the device and the run directory."""

    def __init__(self, recipe: Recipe, model: MultimodalVAE, splits: dict[str, dict[str, Tensor]],
                 run: RunDir, device: torch.device, stop: StopRequest | None = None):
        self.recipe, self.cfg, self.run, self.device = recipe, recipe.train, run, device
        self.stop = stop or StopRequest()
        self.model = model.to(device)
        self.names = model.names
        # Keep the stored dtype (uint8 images are 4x smaller); `prepare` converts one batch at a time.
        self.train_data = {n: splits["train"][n].to(device) for n in self.names}
        self.n_train = next(iter(self.train_data.values())).shape[0]
        data_cfg = recipe.data
        self.train_present = _on_device(training_presence(self.names, self.n_train, data_cfg.paired_fraction,
                                                          data_cfg.pairing_seed), device)
        n_val = splits["val"][self.names[0]].shape[0]
        self.val_present = _on_device(evaluation_presence(self.names, n_val, data_cfg.missing_at_eval,
                                                          data_cfg.pairing_seed), device)
        self.steps_per_epoch = math.ceil(self.n_train / self.cfg.batch_size)
        # Validation inputs are prepared once with a fixed seed, so epochs are scored on the same data.
        self.val_data = prepare_fixed(model.modalities, {n: splits["val"][n] for n in self.names},
                                      recipe.seed + 1, device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.cfg.lr, **_fast_adam(device))
        self.generators = Generators(batch=torch.Generator().manual_seed(recipe.seed),
                                     noise=torch.Generator(device=device).manual_seed(recipe.seed + 2))
        self.state = TrainState()
        self.rows: list[dict[str, Any]] = []  # every finished epoch's metrics row, committed with the state
        self.partial: PartialEpoch | None = None
        torch.manual_seed(recipe.seed)  # the reparameterization noise: global RNG, saved for --resume
        self.probe = None
        if self.cfg.crossmodal_every:
            self.probe = CrossModalProbe(model, splits, self.cfg.crossmodal_examples, device, recipe.data.kind,
                                         class_field_of(recipe), present=self.val_present)

    # ---- checkpoints -----------------------------------------------------------------------
    def save(self, best: bool = False, partial: PartialEpoch | None = None) -> None:
        save_checkpoint(self.run, self.model, self.optimizer, self.generators, self.state, self.device,
                        self.rows, best, partial)

    def resume(self) -> None:
        """Continue from the resume file; ``metrics.jsonl`` is rebuilt to hold each finished epoch once."""
        checkpoint = load_checkpoint(self.run, self.model, self.optimizer, self.generators, self.device)
        self.state, self.partial = checkpoint.state, checkpoint.partial
        if checkpoint.rows is None:  # a resume file of mmgen < 0.2: metrics.jsonl is the only record
            self.rows = [r for r in self.run.read_metrics() if r.get("epoch", 0) <= self.state.epoch]
        else:
            self.rows = [r for r in checkpoint.rows if r["epoch"] <= self.state.epoch]
        self.run.write_metrics(self.rows)

    # ---- one epoch -----------------------------------------------------------------------------
    def train_epoch(self, on_progress: Callback | None = None) -> dict[str, Any]:
        """One pass over the training split (or the rest of a partial one); returns mean loss terms.

        Raises TrainingDiverged by the divergence rule, TrainingInterrupted after a stop request.
        """
        self.model.train()
        B, steps = self.cfg.batch_size, self.steps_per_epoch
        partial, self.partial = self.partial, None
        if partial is None:
            partial = PartialEpoch(torch.randperm(self.n_train, generator=self.generators.batch).to(self.device))
        sums, first = partial.sums, self.state.epoch_step
        started = time.perf_counter() - self.state.epoch_seconds
        for i in range(first, steps):
            beta = self._step(partial.order[i * B : (i + 1) * B], sums)
            self.state.epoch_step = i + 1
            if (i + 1) % self.cfg.log_every == 0 or i + 1 == steps or self.stop.requested:
                means = {k: float(v) / (i + 1) for k, v in sums.items()}  # the only host sync
                self._check(means, i + 1, "train/loss")
                if on_progress:
                    on_progress({"epoch": self.state.epoch + 1, "epochs": self.cfg.epochs, "step": i + 1,
                                 "steps": steps, "global_step": self.state.step,
                                 "total_steps": self.cfg.epochs * steps, "beta": beta,
                                 "samples_per_s": (i + 1) * B / max(time.perf_counter() - started, 1e-9), **means})
            if self.stop.requested and i + 1 < steps:
                self.state.epoch_seconds = time.perf_counter() - started
                self.save(partial=partial)
                self._interrupted(f"during epoch {self.state.epoch + 1} (step {i + 1} of {steps})",
                                  "the partial epoch")
        seconds = time.perf_counter() - started
        self.state.epoch_step, self.state.epoch_seconds = 0, 0.0
        means = {f"train/{k}": float(v) / steps for k, v in sums.items()}
        return {**means, "beta": beta, "train_seconds": seconds, "samples_per_s": self.n_train / seconds}

    def _step(self, idx: Tensor, sums: dict[str, Tensor]) -> float:
        """One optimizer step on the examples ``idx``; adds its logged terms to ``sums``; returns β."""
        batch = {n: self.model.modalities[n].prepare(self.train_data[n][idx], self.generators.noise)
                 for n in self.names}
        beta = beta_at(self.state.step, self.steps_per_epoch, self.cfg.anneal_epochs)
        present = None if self.train_present is None else {n: m[idx] for n, m in self.train_present.items()}
        out = self.model(batch, beta=beta, present=present)
        self.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        self.optimizer.step()
        self.state.step += 1
        for key, value in {"loss": out.loss.detach(), **out.terms}.items():
            sums[key] = sums[key] + value if key in sums else value.clone()
        return beta

    def _check(self, means: dict[str, float], step: int, previous_key: str) -> None:
        """Stop by the divergence rule, comparing with the previous epoch's ``previous_key``."""
        previous = self.rows[-1].get(previous_key) if self.rows else None
        why = divergence(means, self.cfg.max_loss, self.cfg.blowup, previous)
        if why is None:
            return
        if self.state.epoch > 0:
            kept = f"the last good checkpoint is epoch {self.state.epoch} in {self.run.path}"
            hint = f"metrics.jsonl has every finished epoch; `mmgen train {self.run.path} --resume` restarts from it"
        else:
            kept, hint = "no checkpoint had been written yet", ""
        raise TrainingDiverged(f"training diverged at epoch {self.state.epoch + 1}, step {step}: {why}; {kept}", hint)

    def _interrupted(self, where: str, what: str) -> None:
        raise TrainingInterrupted(
            f"interrupted by {self.stop.name} {where}: saved {what} to {self.run.state}; "
            f"resume with: mmgen train {self.run.path} --resume",
            self.stop.signal_number or 2,
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
                keep = having(present, g, b, self.device)  # scored on the examples that have the whole group
                key = f"val/elbo({','.join(g)})"
                totals[key] += float(elbo(self.model, {m: batch[m][keep] for m in g}, g).sum()) if keep.any() else 0.0
                counts[key] += int(keep.sum())
        return {k: v / max(counts[k], 1) for k, v in totals.items()}

    # ---- the whole run ---------------------------------------------------------------------------
    def fit(self, on_progress: Callback | None = None, on_epoch: Callback | None = None) -> TrainState:
        while self.state.epoch < self.cfg.epochs:
            stats = self.train_epoch(on_progress)
            val = self.validate()
            self._check(val, self.steps_per_epoch, "val/loss")
            self.state.epoch += 1
            if self.probe is not None and self.state.epoch % self.cfg.crossmodal_every == 0:
                val.update(self.probe())
            best = val["val/loss"] < self.state.best_val
            if best:
                self.state.best_val, self.state.best_epoch = val["val/loss"], self.state.epoch
            row = {"epoch": self.state.epoch, "step": self.state.step, **stats, **val, "best": best}
            self.rows.append(row)
            self.save(best)  # the commit point: weights, optimizer, RNG and this row together
            self.run.append_metrics(row)
            if on_epoch:
                on_epoch(row)
            if self.stop.requested and self.state.epoch < self.cfg.epochs:
                self._interrupted(f"after epoch {self.state.epoch}", f"epoch {self.state.epoch}")
        return self.state


def _fast_adam(device: torch.device) -> dict[str, bool]:
    """One fused kernel per step where torch supports it for this device (CPU and CUDA do)."""
    return {"fused": True} if device.type in ("cpu", "cuda") else {"foreach": True}

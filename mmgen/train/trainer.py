"""The training loop: batches by either data path, β annealed every step, validation every epoch.

Run it with ``mmgen train RECIPE`` (``mmgen.train.session``). An epoch's checkpoint is written
only after the epoch finished with sane losses (``mmgen.train.divergence``), so a divergence never
overwrites a good checkpoint; the resume file commits the epoch's metrics row with it. A stop
request (SIGINT, SIGTERM) ends training after the current step with a checkpoint of the partial
epoch, from which ``--resume`` continues the same sequence of batches. Under torchrun each rank
trains its shard of every batch (``mmgen.train.distributed``); rank 0 validates and writes.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel

from mmgen.config import Recipe
from mmgen.data.sources import DataSource
from mmgen.errors import MmgenError, TrainingDiverged, TrainingInterrupted
from mmgen.eval.probe import CrossModalProbe
from mmgen.model.inputs import prepare_fixed
from mmgen.model.presence import evaluation_presence, having, training_presence
from mmgen.plugin.logger import Logger
from mmgen.plugin.model import Model
from mmgen.plugin.registry import get_registry
from mmgen.recipe.build import class_field_of
from mmgen.run.directory import RunDir
from mmgen.train.batches import InMemoryBatches, StreamingBatches
from mmgen.train.checkpoint import (
    Generators,
    PartialEpoch,
    TrainState,
    load_checkpoint,
    rng_tensors,
    save_checkpoint,
    selection_score,
)
from mmgen.train.distributed import Distributed
from mmgen.train.divergence import divergence
from mmgen.train.optim import Stepper
from mmgen.train.signals import StopRequest

Callback = Callable[[dict[str, Any]], None]
log = logging.getLogger("mmgen.train")
PROGRESS_KEYS = ("epoch", "epochs", "step", "steps", "global_step", "total_steps")


def beta_at(step: int, steps_per_epoch: int, anneal_epochs: float) -> float:
    """β after ``step`` optimizer steps (0-based): linear from 1/N to 1 over the first N steps."""
    total = anneal_epochs * steps_per_epoch
    return 1.0 if total <= 0 else min(1.0, (step + 1) / total)


def _on_device(present: dict[str, Tensor] | None, device: torch.device) -> dict[str, Tensor] | None:
    return None if present is None else {n: m.to(device) for n, m in present.items()}


def open_loggers(kinds: list[str], run: RunDir, recipe: Recipe, rows: list[dict[str, Any]]) -> list[Logger]:
    """The recipe's loggers for this run. A new recipe's kinds were checked when it was validated; a resumed
    run's recipe (read back from the run) is checked here: an unknown kind, or a package missing, is one line."""
    registry = get_registry()
    classes = [registry.lookup("loggers", kind) for kind in kinds]
    for cls in classes:
        why = cls.missing_for(run.path)
        if why:
            raise MmgenError(f"{run.path}: train.loggers: {why}")
    return [cls(run.path, recipe.to_dict(), rows) for cls in classes]


class StepMetrics:
    """Each progress sync to the loggers' ``log_step``. Step metrics are a view, not the record: a logger that
    fails there (a tracker that went away) costs one warning and its step metrics until the epoch is committed,
    never the training. Its ``log_epoch`` then decides: a failure there stops training after the checkpoint."""

    def __init__(self, kinds: list[str], loggers: list[Logger]):
        self.loggers = dict(zip(kinds, loggers))
        self.paused: set[str] = set()  # failed during this epoch
        self.warned: set[str] = set()

    def log(self, step: int, values: dict[str, float]) -> None:
        for kind, logger in self.loggers.items():
            if kind in self.paused:
                continue
            try:
                logger.log_step(step, values)
            except Exception as exc:  # any tracker's failure: a lost network, a store it refuses, a plugin's bug
                self.paused.add(kind)
                if kind not in self.warned:
                    self.warned.add(kind)
                    why = " ".join(str(exc).split())[:300] or type(exc).__name__
                    log.warning("mmgen: the %s logger failed at step %d (%s); training goes on, without its step "
                                "metrics until the epoch is committed", kind, step, why)

    def resume(self) -> None:
        """After an epoch's commit (and its ``log_epoch``): every logger gets step metrics again."""
        self.paused.clear()


class Trainer:
    """Owns the model, the optimizer step, the training batches and the run directory."""

    def __init__(self, recipe: Recipe, model: Model, source: DataSource | dict[str, dict[str, Tensor]],
                 run: RunDir, device: torch.device, stop: StopRequest | None = None,
                 batches: InMemoryBatches | StreamingBatches | None = None, ranks: Distributed | None = None):
        self.recipe, self.cfg, self.run, self.device = recipe, recipe.train, run, device
        self.stop, self.ranks = stop or StopRequest(), ranks or Distributed()
        self.model = model.to(device)
        self.names = model.names
        source = source if isinstance(source, DataSource) else DataSource.of(source)
        self.batches = batches or InMemoryBatches(source.tensors("train", self.names), self.names, device)
        self.n_train = self.batches.length
        data_cfg = recipe.data
        self.train_present = _on_device(training_presence(self.names, self.n_train, data_cfg.paired_fraction,
                                                          data_cfg.pairing_seed), device)
        val = source.tensors("val", self._fields(recipe))
        n_val = val[self.names[0]].shape[0]
        self.val_present = _on_device(evaluation_presence(self.names, n_val, data_cfg.missing_at_eval,
                                                          data_cfg.pairing_seed), device)
        self.steps_per_epoch = math.ceil(self.n_train / self.cfg.batch_size)
        # Validation inputs are prepared once with a fixed seed, so epochs are scored on the same data.
        self.val_data = prepare_fixed(model.modalities, {n: val[n] for n in self.names}, recipe.seed + 1, device)
        # Rank 0's probe comes first: its judges may train for minutes while the other ranks wait to build DDP.
        self.probe = None
        if self.cfg.crossmodal_every and self.ranks.main:  # its judge trains on the training images, read whole
            splits = {"train": source.tensors("train", list(val)), "val": val}
            self.probe = CrossModalProbe(model, splits, self.cfg.crossmodal_examples, device, recipe.data.kind,
                                         class_field_of(recipe), present=self.val_present)
        self.stage = ""  # the family's training stage (Model.training_stage); "" for one stage
        self.stepper = Stepper(self.model, self._forward(), self.cfg, device, self.steps_per_epoch)
        self.optimizer = self.stepper.optimizer
        rank = self.ranks.rank  # each rank its own noise; rank 0 draws what a single process draws
        self.generators = Generators(batch=torch.Generator().manual_seed(recipe.seed),
                                     noise=torch.Generator(device=device).manual_seed(recipe.seed + 2 + 1000 * rank))
        self.state = TrainState()
        self.rows: list[dict[str, Any]] = []  # every finished epoch's metrics row, committed with the state
        self.partial: PartialEpoch | None = None
        torch.manual_seed(recipe.seed + 1000 * rank)  # the reparameterization noise: saved for --resume

    def _forward(self) -> Model | DistributedDataParallel:
        """The model, or under torchrun its DDP wrapper, which reduces the parameters that require a gradient."""
        if not self.ranks.active:
            return self.model
        device = self.device
        return DistributedDataParallel(self.model, device_ids=[device.index] if device.type == "cuda" else None)

    def _stage_of(self, epoch: int) -> str:
        """The family's training stage of the 0-based ``epoch``."""
        return self.model.training_stage(self.model.config, epoch, self.cfg.epochs)

    def _enter_stage(self) -> None:
        """Before every epoch: the family's stage for it, entered when it changes (a resumed run enters the
        stage of the epoch it resumes in). DDP is built again, over the parameters the stage trains."""
        stage = self._stage_of(self.state.epoch)
        if stage == self.stage:
            return
        self.model.enter_stage(stage)
        self.stage = stage
        if self.ranks.active:
            self.stepper.set_forward(self._forward())
        if self.ranks.main:
            log.info("mmgen: epoch %d of %d trains the %s stage of %s", self.state.epoch + 1, self.cfg.epochs,
                     stage, self.model.describe())

    @staticmethod
    def _fields(recipe: Recipe) -> list[str]:
        """Every field of the recipe's data set (the probe and validation read them by name)."""
        return list(get_registry().lookup("datasets", recipe.data.kind).fields)

    # ---- checkpoints -----------------------------------------------------------------------
    def save(self, best: bool = False, partial: PartialEpoch | None = None) -> None:
        """Rank 0 writes, with every rank's RNG state (the other ranks only hand theirs over)."""
        gathered = self.ranks.gather(rng_tensors(self.generators, self.device, self.ranks.rank))
        if self.ranks.main:
            rng = {k: v for part in gathered for k, v in part.items()}
            save_checkpoint(self.run, self.model, self.optimizer, rng, self.state, self.rows, best, partial,
                            self.stepper.state())
        self.ranks.barrier()

    def resume(self) -> None:
        """Continue from the resume file; ``metrics.jsonl`` is rebuilt to hold each finished epoch once."""
        checkpoint = load_checkpoint(self.run, self.model, self.optimizer, self.generators, self.device,
                                     self.ranks.rank)
        self.stepper.load_state(checkpoint.meta)
        self.state, self.partial = checkpoint.state, checkpoint.partial
        if checkpoint.rows is None:  # a resume file of mmgen < 0.2: metrics.jsonl is the only record
            self.rows = [r for r in self.run.read_metrics() if r.get("epoch", 0) <= self.state.epoch]
        else:
            self.rows = [r for r in checkpoint.rows if r["epoch"] <= self.state.epoch]

    # ---- one epoch -----------------------------------------------------------------------------
    def train_epoch(self, on_progress: Callback | None = None) -> dict[str, Any]:
        """One pass over the training split (or the rest of a partial one); returns mean loss terms.

        Raises TrainingDiverged by the divergence rule, TrainingInterrupted after a stop request.
        """
        self.model.train()
        B, steps = self.cfg.batch_size, self.steps_per_epoch
        partial, self.partial = self.partial, None
        if partial is None:
            partial = PartialEpoch(torch.randperm(self.n_train, generator=self.generators.batch))
        sums, first = partial.sums, self.state.epoch_step
        started = time.perf_counter() - self.state.epoch_seconds
        shard = self.ranks.shard if self.ranks.active else None
        for i, (idx, raw, weight) in enumerate(self.batches.epoch(partial.order, B, first, shard), start=first):
            beta = self._step(idx, raw, sums, loss_scale=weight)
            self.state.epoch_step = i + 1
            # Under torchrun the stop flag is shared every step (one scalar, on the host), so all ranks stop
            # at the same one.
            stop = self.ranks.any(self.stop.requested) if shard else self.stop.requested
            if (i + 1) % self.cfg.log_every == 0 or i + 1 == steps or stop:
                means = {k: float(v) / (i + 1) for k, v in self.ranks.mean(sums).items()}  # the only device sync
                self._check(means, i + 1, "train/loss")
                if on_progress:
                    on_progress({"epoch": self.state.epoch + 1, "epochs": self.cfg.epochs, "step": i + 1,
                                 "steps": steps, "global_step": self.state.step,
                                 "total_steps": self.cfg.epochs * steps, "beta": beta,
                                 "samples_per_s": (i + 1) * B / max(time.perf_counter() - started, 1e-9), **means})
            if stop and i + 1 < steps:
                self.state.epoch_seconds = time.perf_counter() - started
                # Every rank resumes from the mean over ranks (the reduction is linear: the means stay right).
                partial = PartialEpoch(partial.order, self.ranks.mean(sums))
                self.save(partial=partial)
                self._interrupted(f"during epoch {self.state.epoch + 1} (step {i + 1} of {steps})",
                                  "the partial epoch")
        seconds = time.perf_counter() - started
        self.state.epoch_step, self.state.epoch_seconds = 0, 0.0
        means = {f"train/{k}": float(v) / steps for k, v in self.ranks.mean(sums).items()}
        return {**means, "beta": beta, "train_seconds": seconds, "samples_per_s": self.n_train / seconds}

    def _step(self, idx: Tensor, raw: dict[str, Tensor], sums: dict[str, Tensor], loss_scale: float = 1.0) -> float:
        """One optimizer step on the examples ``idx`` (stored fields ``raw``); adds its logged terms to ``sums``.

        ``loss_scale`` makes DDP's mean over ranks the mean over the global batch when shards differ in size
        (and 0 for a rank given no example); the logged terms are weighted alike.
        """
        batch = {n: self.model.modalities[n].prepare(raw[n], self.generators.noise) for n in self.names}
        beta = beta_at(self.state.step, self.steps_per_epoch, self.cfg.anneal_epochs)
        present = None if self.train_present is None else {n: m[idx] for n, m in self.train_present.items()}
        out = self.stepper(batch, beta, present, loss_scale)
        self.state.step += 1
        for key, value in {"loss": out.loss.detach(), **out.terms}.items():
            value = value * loss_scale if loss_scale != 1.0 else value
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
            f"interrupted by {self.stop.name or 'a signal to another rank'} {where}: saved {what} to "
            f"{self.run.state}; resume with: mmgen train {self.run.path} --resume",
            self.stop.signal_number or 15,
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
            out = self.model.validation_output(batch, present)
            totals["val/loss"] += float(out.loss) * b
            counts["val/loss"] += b
            for g in groups:
                keep = having(present, g, b, self.device)  # scored on the examples that have the whole group
                key = f"val/elbo({','.join(g)})"
                totals[key] += float(self.model.elbo({m: batch[m][keep] for m in g}, g).sum()) if keep.any() else 0.0
                counts[key] += int(keep.sum())
        return {k: v / max(counts[k], 1) for k, v in totals.items()}

    def _validate_and_probe(self) -> dict[str, float]:
        """Rank 0's validation (and probe, every ``crossmodal_every`` epochs), shared with every rank."""
        val = None
        if self.ranks.main:
            val = self.validate()
            if self.probe is not None and (self.state.epoch + 1) % self.cfg.crossmodal_every == 0:
                val.update(self.probe())
        return self.ranks.share(val)

    def _may_be_best(self, score: float) -> bool:
        """A better score than the best so far, in the last stage of a family trained in stages (an earlier
        stage's weights are not the trained model: TELBO's unimodal encoders are untrained after its first);
        the first epoch of the last stage is best whatever the earlier stages scored."""
        last = self._stage_of(self.cfg.epochs - 1)
        if self._stage_of(self.state.epoch - 1) != last:  # state.epoch counts the epoch just finished
            return False
        best_so_far = self.state.best_epoch > 0 and self._stage_of(self.state.best_epoch - 1) == last
        return score < self.state.best_val or (not best_so_far and not math.isnan(score))

    # ---- the whole run ---------------------------------------------------------------------------
    def fit(self, on_progress: Callback | None = None, on_epoch: Callback | None = None) -> TrainState:
        """Train up to ``train.epochs``; the recipe's loggers see every progress sync and committed epoch, then
        how training ended."""
        loggers = open_loggers(self.cfg.loggers, self.run, self.recipe, self.rows) if self.ranks.main else []
        steps = StepMetrics(self.cfg.loggers, loggers)

        def on_step(info: dict[str, Any]) -> None:
            steps.log(info["global_step"], {k: v for k, v in info.items() if k not in PROGRESS_KEYS})
            if on_progress:
                on_progress(info)

        def on_committed(row: dict[str, Any]) -> None:
            steps.resume()
            if on_epoch:
                on_epoch(row)

        outcome = "failed"
        try:
            state = self._fit(on_step, on_committed, loggers)
            outcome = "finished"
            return state
        except (TrainingInterrupted, KeyboardInterrupt):
            outcome = "interrupted"
            raise
        finally:
            for logger in loggers:
                logger.end(outcome)
                logger.close()

    def _fit(self, on_progress: Callback, on_epoch: Callback | None, loggers: list[Logger]) -> TrainState:
        while self.state.epoch < self.cfg.epochs:
            self._enter_stage()
            stats = self.train_epoch(on_progress)
            val = self._validate_and_probe()
            self._check({k: v for k, v in val.items() if not k.startswith(("val/accuracy", "val/coherence"))},
                        self.steps_per_epoch, "val/loss")
            self.state.epoch += 1
            score = selection_score(val, self.cfg.best_by, self.names)
            best = score is not None and self._may_be_best(score)
            if best:
                self.state.best_val, self.state.best_epoch = score, self.state.epoch
            row = {"epoch": self.state.epoch, "step": self.state.step, **stats, **val, "best": best}
            self.rows.append(row)
            self.save(best)  # the commit point: weights, optimizer, RNG and this row together
            for logger in loggers:
                logger.log_epoch(self.state.epoch, row)
            if on_epoch:
                on_epoch(row)
            if self.ranks.any(self.stop.requested) and self.state.epoch < self.cfg.epochs:
                self._interrupted(f"after epoch {self.state.epoch}", f"epoch {self.state.epoch}")
        return self.state

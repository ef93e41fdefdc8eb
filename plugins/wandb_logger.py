"""The ``wandb`` logger: the recipe as the run's config, the metrics of every progress sync and committed
epoch, and ``mmgen eval``'s numbers and pictures in the summary of one Weights & Biases run.

Offline unless WANDB_MODE says otherwise, so training never waits on the network or a login: the run
is written under ``<run>/wandb/`` and ``wandb sync <run>/wandb/offline-run-*`` uploads it later
(WANDB_MODE=online sends it live; WANDB_PROJECT, ``mmgen`` when unset, and WANDB_ENTITY say where).
``<run>/wandb-run.json`` keeps the W&B run's id, so ``--resume`` and ``mmgen eval`` continue the same
run: each adds an ``offline-run-*`` folder with that id, and ``wandb sync`` uploads them in order.
A training that fails or is interrupted finishes its segment with exit code 1 (W&B shows it failed;
``--resume`` continues it). Needs ``wandb``: ``pip install "mmgen[wandb]"``.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from mmgen import Logger, MmgenError
from mmgen_plugins.tracking import TrackedRun, epoch_numbers, evaluation_numbers, flat_params, numbers

RECORD = "wandb-run.json"
DEFAULT_PROJECT = "mmgen"


def _open_run(run_dir: Path, recipe: dict[str, Any], run_id: str | None) -> Any:
    """A new W&B run (``run_id`` None), or the recorded one continued; its files go under ``<run>/wandb/``."""
    import wandb  # needs wandb: see missing()

    try:
        # console="off": mmgen's console is progress bars, and the numbers reach W&B through log();
        # quiet: W&B says where the run is saved when it starts, not its whole history when it ends.
        settings = wandb.Settings(console="off", quiet=True, mode=os.environ.get("WANDB_MODE") or "offline")
        return wandb.init(dir=run_dir, project=os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT,
                          name=run_dir.name, id=run_id, resume="allow" if run_id else None,
                          tags=[str(recipe.get("name"))], settings=settings)
    except (wandb.Error, OSError, ValueError) as exc:  # ValueError: settings W&B refuses (a WANDB_MODE)
        raise MmgenError(f"the wandb logger could not start a run in {run_dir}: {' '.join(str(exc).split())[:300]}",
                         hint="WANDB_MODE=offline logs without an account; `wandb login` for online")


class WandbLogger(Logger):
    """Step metrics as ``step/<key>`` at the optimizer step; epoch metrics as ``epoch/<key>``, plotted
    against ``epoch`` (W&B's own step is the optimizer step throughout, as it must only grow)."""

    def __init__(self, run_dir: Path, recipe: dict[str, Any], rows: list[dict[str, Any]]):
        super().__init__(run_dir, recipe, rows)
        self.tracked = TrackedRun(self.run_dir / RECORD)
        self.run = _open_run(self.run_dir, recipe, self.tracked.run_id if self.tracked.exists else None)
        if not self.tracked.exists:
            self.tracked.save(run_id=self.run.id, epochs_logged=0)
        self.run.config.update(flat_params(recipe), allow_val_change=True)  # a resume may raise train.epochs
        self.run.define_metric("epoch/*", step_metric="epoch")
        self.exit_code = 0  # until end() says otherwise
        for row in self.tracked.unlogged(rows):  # committed before a crash cut the logging
            self.log_epoch(row["epoch"], row)

    @classmethod
    def missing(cls) -> str | None:
        if importlib.util.find_spec("wandb") is None:
            return "the wandb logger needs the wandb package: python3 -m pip install wandb"
        return None

    def log_step(self, step: int, values: dict[str, float]) -> None:
        if step <= self.tracked.steps_logged:  # a resume after a crash trains again what followed the last commit
            return
        self.run.log({f"step/{k}": v for k, v in numbers(values).items()}, step=step)
        self.tracked.save(steps_logged=step)

    def log_epoch(self, epoch: int, row: dict[str, Any]) -> None:
        self.run.log({**{f"epoch/{k}": v for k, v in epoch_numbers(row).items()}, "epoch": epoch}, step=row["step"])
        self.tracked.save(epochs_logged=epoch)

    def end(self, outcome: str) -> None:
        self.exit_code = 0 if outcome == "finished" else 1

    def close(self) -> None:
        self.run.finish(exit_code=self.exit_code)

    @classmethod
    def log_evaluation(cls, run_dir: Path, recipe: dict[str, Any], report: dict[str, Any],
                       pictures: list[Path]) -> None:
        """Into the summary, which has no step (a continued run's step restarts): the numbers, and each picture
        as ``eval/<split>/<file name>``."""
        import wandb

        tracked = TrackedRun(Path(run_dir) / RECORD)
        if not tracked.exists:
            raise MmgenError(f"no W&B run is recorded for {run_dir} ({RECORD}: training never logged to W&B)")
        run = _open_run(Path(run_dir), recipe, tracked.run_id)
        try:
            run.summary.update(evaluation_numbers(report))
            split = report.get("split", "test")
            run.summary.update({f"eval/{split}/{p.stem}": wandb.Image(str(p)) for p in pictures if p.is_file()})
        finally:
            run.finish()

"""The Logger interface: where a run's metrics go besides its resume file (``train.loggers``).

A logger kind is registered with the ``register_loggers`` hook; the trainer (rank 0 only, under
torchrun) calls ``log_step`` at every progress sync and ``log_epoch`` after each committed epoch,
then ``end`` and ``close``; ``mmgen eval`` hands the recipe's loggers its numbers and pictures
(``log_evaluation``).
mmgen ships ``jsonl`` (``metrics.jsonl``, which ``mmgen eval`` draws its curves from),
``tensorboard``, ``mlflow`` and ``wandb``; others come from plugins (``docs/plugin-hooks.md``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any


class Logger(ABC):
    """One sink of metrics for one run. ``rows`` are the epochs already committed (a resumed run)."""

    def __init__(self, run_dir: Path, recipe: dict[str, Any], rows: list[dict[str, Any]]):
        self.run_dir = Path(run_dir)
        self.recipe = recipe

    @classmethod
    def missing(cls) -> str | None:
        """Why this logger cannot run here (a package it needs is not installed), or None.

        Checked when a recipe is validated for training, so a missing package is one line before any data is
        read. A finished run's recipe is not checked: it loads, samples and evaluates without its loggers.
        """
        return None

    @classmethod
    def missing_for(cls, run_dir: Path) -> str | None:
        """Why this logger cannot reach what it logged for ``run_dir`` here (a resume, ``mmgen eval``), or None.

        ``missing()`` by default; a logger whose needs depend on where the run went (MLflow's store) reads that
        from what it left in ``run_dir``.
        """
        return cls.missing()

    def log_step(self, step: int, values: dict[str, float]) -> None:  # noqa: B027 (optional: a no-op by default)
        """Running means of the loss terms (and β, samples/s) at global optimizer step ``step``."""

    @abstractmethod
    def log_epoch(self, epoch: int, row: dict[str, Any]) -> None:
        """The committed metrics row of a finished epoch (the same row the resume file holds)."""

    def end(self, outcome: str) -> None:  # noqa: B027 (optional: a no-op by default)
        """How training ended, told once just before ``close``: ``"finished"``, ``"interrupted"`` (a stop request
        or Ctrl-C: ``--resume`` continues) or ``"failed"`` (an error, a divergence)."""

    def close(self) -> None:  # noqa: B027 (optional: a no-op by default)
        """Flush and release whatever the logger holds; called once, also when training stops early."""

    @classmethod  # noqa: B027 (optional: a no-op by default)
    def log_evaluation(cls, run_dir: Path, recipe: dict[str, Any], report: dict[str, Any],
                       pictures: list[Path]) -> None:
        """``mmgen eval``'s numbers (the dict it wrote to ``eval.json``) and the pictures it drew; a no-op by default.

        A classmethod: ``mmgen eval`` is another process, long after training, so a logger that tracks runs
        elsewhere finds its run again from what it left in ``run_dir``. Raising only costs a warning: eval.json
        is already written.
        """

"""The Logger interface: where a run's metrics go besides its resume file (``train.loggers``).

A logger kind is registered with the ``register_loggers`` hook; the trainer (rank 0 only, under
torchrun) calls ``log_step`` at every progress sync and ``log_epoch`` after each committed epoch.
mmgen ships ``jsonl`` (``metrics.jsonl``, which ``mmgen eval`` draws its curves from) and
``tensorboard``; wandb or MLflow are left to plugins (``docs/plugin-hooks.md`` shows how).
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

        Checked when the recipe is validated, so a missing package is one line before any data is read.
        """
        return None

    def log_step(self, step: int, values: dict[str, float]) -> None:  # noqa: B027 (optional: a no-op by default)
        """Running means of the loss terms (and β, samples/s) at global optimizer step ``step``."""

    @abstractmethod
    def log_epoch(self, epoch: int, row: dict[str, Any]) -> None:
        """The committed metrics row of a finished epoch (the same row the resume file holds)."""

    def close(self) -> None:  # noqa: B027 (optional: a no-op by default)
        """Flush and release whatever the logger holds; called once, also when training stops early."""

"""One cell of the board: a family trained on a data set with one seed under the protocol, then scored.

    <root>/<protocol key>/<dataset>/<family>/<recipe and code key>/seed<N>/
        run/            the run directory (mmgen train --out), its eval.json inside
        progress.json   training seconds spent so far; once training has ended, what stopped it
        result.json     the outcome: scored, diverged, no epoch (the time cap came first) or failed, and why

A cell with a result other than "failed" is never trained again; a failed one is tried again on the next
invocation (a failure may come from the machine). Training runs in this process through mmgen's own
``train_recipe``; an interrupted one (Ctrl-C, SIGTERM) resumes with ``--resume`` on the next invocation.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmgen.errors import MmgenError, TrainingDiverged, TrainingInterrupted
from mmgen.eval.comparison import ComparisonSettings
from mmgen.eval.report import evaluate
from mmgen.run.directory import RunDir
from mmgen.run.loaded import Run
from mmgen.storage.atomic import atomic_write_text
from mmgen.train.session import train_recipe

from .protocol import Protocol

SCORED, DIVERGED, NO_EPOCH, FAILED, NO_RECIPE = "scored", "diverged", "no epoch", "failed", "no recipe"
NOT_RUN = "not run"  # only on pages written with --no-train; never stored
Say = Callable[[str], None]


class TimeCap(Exception):
    """Raised from the trainer's callbacks when the protocol's wall-time cap stops a training."""


@dataclass(frozen=True)
class Cell:
    """One (data set, family, seed); ``problem`` says why it cannot be trained (no recipe, a recipe that fails)."""

    protocol: Protocol
    family: str
    seed: int
    recipe: Path | None = None
    overrides: tuple[str, ...] = ()
    path: Path | None = None
    epochs: int = 0
    steps_per_epoch: int = 0
    trains: str = ""  # what the recipe trains, when its model kind is not the family's (the MVAE with fusion moe)
    problem: str = ""
    status: str = ""  # of a cell with a problem: no recipe, or failed

    @property
    def run_dir(self) -> Path:
        return self.path / "run"

    def stored(self) -> dict[str, Any] | None:
        """The stored result, or None when there is none (or it is a failure, to be tried again)."""
        if self.problem:
            return {"status": self.status, "error": self.problem}
        result = read_json(self.path / "result.json")
        return result if result and result["status"] != FAILED else None


def read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())[:400]
    return text if isinstance(exc, MmgenError) else f"{type(exc).__name__}: {text}"  # mmgen's own: a sentence


def run_cell(cell: Cell, say: Say) -> dict[str, Any]:
    """Train (or resume) and score one cell, unless it has a result already; the result is stored.

    A divergence, a failure of training or of evaluation, or a cap that came before the first epoch
    ended is a result that says so; an interruption (Ctrl-C, SIGTERM) propagates.
    """
    stored = cell.stored()
    if stored is not None:
        return stored
    cell.path.mkdir(parents=True, exist_ok=True)
    try:
        training = train(cell, say)
        if training["epochs"] == 0:
            result = {"status": NO_EPOCH, **training,
                      "error": f"the {cell.protocol.minutes:g}-minute cap came before the first epoch ended "
                               f"({training['reached']} of {cell.steps_per_epoch} steps)"}
        else:
            started = time.perf_counter()
            report = score(cell, say)
            result = {"status": SCORED, **training, "weights_epoch": report["epoch"],
                      "eval_seconds": time.perf_counter() - started}
    except TrainingDiverged as exc:  # its first clause says where and why; the rest, what became of the run
        result = {"status": DIVERGED, "error": one_line(exc).split("; ")[0]}
    except (TrainingInterrupted, KeyboardInterrupt):
        raise
    except Exception as exc:  # a family's bug, a recipe its code cannot train, an evaluation that fails
        result = {"status": FAILED, "error": one_line(exc)}
    write_json(cell.path / "result.json", result)
    return result


class Clock:
    """Training seconds of a cell, across invocations (``progress.json``), against the protocol's cap."""

    def __init__(self, cell: Cell, spent: float, say: Say):
        self.cell, self.spent, self.cap, self.say = cell, spent, cell.protocol.minutes * 60, say
        self.started = self.last_epoch = time.perf_counter()
        self.reached = 0  # the last global step a progress update reported

    def elapsed(self) -> float:
        return self.spent + time.perf_counter() - self.started

    def save(self, **extra: Any) -> dict[str, Any]:
        progress = {"seconds": round(self.elapsed(), 1), **extra}
        write_json(self.cell.path / "progress.json", progress)
        return progress

    def on_progress(self, info: dict[str, Any]) -> None:
        self.reached = info["global_step"]
        if self.elapsed() >= self.cap:
            raise TimeCap(f"during epoch {info['epoch']}")

    def on_epoch(self, row: dict[str, Any]) -> None:
        """After an epoch's commit: stop now when the next epoch, as long as this one, would end past the cap."""
        now = time.perf_counter()
        last, self.last_epoch = now - self.last_epoch, now
        self.save()
        self.say(f"epoch {row['epoch']} of {self.cell.epochs}, step {row['step']}, {self.elapsed() / 60:.1f} min")
        if row["epoch"] < self.cell.epochs and self.elapsed() + last > self.cap:
            raise TimeCap(f"after epoch {row['epoch']}: the next would end past the cap")


def train(cell: Cell, say: Say) -> dict[str, Any]:
    """Train the cell's run to its epochs or until the cap, resuming a run an interruption left; returns
    what stopped it ("steps" or "time (...)"), the steps and epochs done and the training seconds."""
    progress = read_json(cell.path / "progress.json") or {"seconds": 0.0}
    if "stopped_by" in progress:  # training ended in an earlier invocation; its scoring failed
        return progress
    clock = Clock(cell, progress["seconds"], say)
    stopped = "steps"
    resume = (cell.run_dir / "recipe.json").is_file()
    try:
        callbacks = {"on_progress": clock.on_progress, "on_epoch": clock.on_epoch, "say": say}
        if resume:  # mmgen train RUN --resume
            say(f"resuming {cell.run_dir}")
            train_recipe(cell.run_dir, [], None, None, True, **callbacks)
        else:  # mmgen train RECIPE OVERRIDES --out RUN
            train_recipe(cell.recipe, list(cell.overrides), cell.run_dir, None, False, **callbacks)
    except TimeCap as exc:
        stopped = f"time ({exc})"
    except (TrainingInterrupted, KeyboardInterrupt):
        clock.save()
        raise
    rows = RunDir(cell.run_dir).read_metrics() if cell.run_dir.is_dir() else []
    return clock.save(stopped_by=stopped, steps=rows[-1]["step"] if rows else 0, epochs=len(rows),
                      reached=max(clock.reached, rows[-1]["step"] if rows else 0))


def score(cell: Cell, say: Say) -> dict[str, Any]:
    """The protocol's ``mmgen eval`` of the best weights, written to the run's eval.json."""
    cfg = cell.protocol.eval
    run = Run.load(cell.run_dir, device=cell.protocol.device, which="best")
    report = evaluate(run, split="test", K=cfg.K, per_class=cfg.per_class, limit=cfg.limit, seed=0, on_stage=say,
                      compare=ComparisonSettings(probe_train=cfg.probe_train))
    write_json(cell.run_dir / "eval.json", report)
    return report

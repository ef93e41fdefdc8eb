"""A rich progress bar for training: epoch and step, loss terms, β and samples/s, on stderr."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class RichProgress:
    def __init__(self, console: Console):
        self.console = console
        self.progress = Progress(
            TextColumn("epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[terms]}"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.task = None
        self.epoch = 1

    def __enter__(self) -> RichProgress:
        return self  # the bar starts at the first step, so an early error prints nothing before it

    def __exit__(self, *exc) -> None:
        if self.task is not None:
            self.progress.__exit__(*exc)

    def on_step(self, info: dict[str, Any]) -> None:
        skip = {"step", "steps", "beta", "samples_per_s"}
        terms = "  ".join(f"{k} {v:.2f}" for k, v in info.items() if k not in skip)
        terms += f"  β {info['beta']:.3f}  {info['samples_per_s']:.0f} samples/s"
        if self.task is None:
            self.progress.__enter__()
            self.task = self.progress.add_task("train", total=info["steps"], epoch=self.epoch, terms=terms)
        self.progress.update(self.task, completed=info["step"], epoch=self.epoch, terms=terms)

    def on_epoch(self, row: dict[str, Any]) -> None:
        vals = "  ".join(f"{k} {v:.2f}" for k, v in row.items() if k.startswith("val/"))
        mark = "  (best)" if row["best"] else ""
        self.progress.console.log(
            f"epoch {row['epoch']}: loss {row['train/loss']:.2f}  {vals}  "
            f"{row['samples_per_s']:.0f} samples/s{mark}", highlight=False, markup=False
        )
        self.epoch = row["epoch"] + 1
        if self.task is not None:
            self.progress.update(self.task, completed=0, epoch=self.epoch)

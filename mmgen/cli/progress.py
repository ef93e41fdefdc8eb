"""A rich progress bar for training on stderr: the true epoch, the step in it, loss terms, β,
samples/s, and the time remaining for the whole run (a resumed run starts where it stopped)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.text import Text

SKIP = {"epoch", "epochs", "step", "steps", "global_step", "total_steps", "beta", "samples_per_s"}


class RichProgress:
    def __init__(self, console: Console):
        self.console = console
        self.progress = Progress(
            TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}  step {task.fields[step]}"),
            BarColumn(),
            TextColumn("{task.fields[terms]}"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.task = None

    def __enter__(self) -> RichProgress:
        return self  # the bar starts at the first step, so an early error prints nothing before it

    def __exit__(self, *exc) -> None:
        if self.task is not None:
            self.progress.__exit__(*exc)

    def say(self, message: str) -> None:
        """A line about what is happening (resuming, restarting in place), above the bar."""
        self.console.print(Text(message, style="dim"), highlight=False, soft_wrap=True)

    def on_step(self, info: dict[str, Any]) -> None:
        terms = "  ".join(f"{k} {v:.2f}" for k, v in info.items() if k not in SKIP)
        terms += f"  β {info['beta']:.3f}  {info['samples_per_s']:.0f} samples/s"
        fields = {"epoch": info["epoch"], "epochs": info["epochs"], "step": f"{info['step']}/{info['steps']}",
                  "terms": terms}
        if self.task is None:
            self.progress.__enter__()
            # The whole run is the bar, started at the steps already taken: only steps taken from
            # here on count towards the speed that the time remaining is estimated from.
            self.task = self.progress.add_task("train", total=info["total_steps"], completed=info["global_step"],
                                               **fields)
        self.progress.update(self.task, completed=info["global_step"], **fields)

    def on_epoch(self, row: dict[str, Any]) -> None:
        vals = "  ".join(f"{k} {v:.2f}" for k, v in row.items() if k.startswith("val/"))
        mark = "  (best)" if row["best"] else ""
        self.progress.console.log(
            f"epoch {row['epoch']}: loss {row['train/loss']:.2f}  {vals}  "
            f"{row['samples_per_s']:.0f} samples/s{mark}", highlight=False, markup=False
        )

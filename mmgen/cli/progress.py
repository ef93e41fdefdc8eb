"""Progress on stderr that a person can trust.

Training: one line with the true epoch, a bar over the whole run, the step in the epoch, samples/s and
the time left in the whole run (from the rate this process measured, validation included, so a resumed
run is estimated from its own speed), kept whole at 80 columns; the loss terms, in a fixed order, on the
line below; a summary of every epoch. ``mmgen eval``: a line per stage, and a bar with the time left
for every stage that counts its work.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Column
from rich.text import Text

SKIP = {"epoch", "epochs", "step", "steps", "global_step", "total_steps", "beta", "samples_per_s"}


def plural(n: int, word: str) -> str:
    """``1 sample``, ``2 samples``."""
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def clock(seconds: float | None) -> str:
    """``h:mm:ss`` (``-:--:--`` while not known yet)."""
    if seconds is None:
        return "-:--:--"
    s = max(0, round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def ordered(values: dict[str, Any], first: str) -> list[str]:
    """``first``, then the other keys sorted: the same order in a fresh and in a resumed run (a resumed
    partial epoch reads its running sums back in another order)."""
    return ([first] if first in values else []) + sorted(k for k in values if k != first)


class Remaining:
    """The time left in a whole job at the mean rate measured since this process first saw it: the
    first sight (a resume's first step, say) is the origin, so only work done here counts."""

    def __init__(self) -> None:
        self.origin: tuple[float, float] | None = None

    def __call__(self, now: float, done: float, total: float) -> float | None:
        if self.origin is None:
            self.origin = (now, done)
            return None
        t0, d0 = self.origin
        if done <= d0 or now <= t0:
            return None
        return (total - done) * (now - t0) / (done - d0)


class Countdown(ProgressColumn):
    """``ETA h:mm:ss``: a task's last estimate (fields ``left``, made at ``at``) counted down between
    updates; nothing for a task that has none."""

    def __init__(self, now: Callable[[], float]):
        super().__init__(table_column=Column(no_wrap=True))
        self.now = now

    def render(self, task) -> Text:
        if "left" not in task.fields:
            return Text("")
        left = task.fields["left"]
        return Text(f"ETA {clock(None if left is None else max(0.0, left - (self.now() - task.fields['at'])))}")


class TwoLines(Progress):
    """The bar's row, then each task's ``terms`` field on a line of its own (cut at the width, never
    wrapped), so the loss terms never squeeze the bar, the rate and the time left out of the row."""

    def get_renderables(self):
        yield self.make_tasks_table(self.tasks)
        for task in self.tasks:
            if task.fields.get("terms"):
                yield Text("  " + task.fields["terms"], no_wrap=True, overflow="ellipsis", style="dim")


class RichProgress:
    """``mmgen train``'s progress: the run directory first, then the bar, then a summary per epoch."""

    def __init__(self, console: Console):
        self.console = console
        self.progress = TwoLines(
            TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}", table_column=Column(no_wrap=True)),
            BarColumn(bar_width=None),
            TextColumn("{task.fields[step]}", table_column=Column(no_wrap=True)),
            TextColumn("{task.fields[rate]}", table_column=Column(no_wrap=True)),
            Countdown(lambda: self.progress.get_time()),
            console=console,
            transient=False,
            expand=True,
        )
        self.task = None
        self.remaining = Remaining()  # of the whole run, on the progress display's clock
        self.last: dict[str, Any] = {}

    def __enter__(self) -> RichProgress:
        return self  # the bar starts at the first step, so an early error prints nothing before it

    def __exit__(self, *exc) -> None:
        if self.task is not None:
            self.progress.__exit__(*exc)

    def say(self, message: str) -> None:
        """A line about what is happening (resuming, restarting in place), above the bar."""
        self.console.print(Text(message, style="dim"), highlight=False, soft_wrap=True)

    def run_directory(self, path: Any) -> None:
        """The first line: where the run is written, before anything else happens."""
        self.console.print(Text.assemble("run directory: ", (str(path), "bold")), highlight=False, soft_wrap=True)

    def left(self, global_step: int, total_steps: int) -> dict[str, float | None]:
        """The fields of the time left in the run (for ``Countdown``)."""
        now = self.progress.get_time()
        return {"left": self.remaining(now, global_step, total_steps), "at": now}

    def on_step(self, info: dict[str, Any]) -> None:
        terms = "  ".join(f"{k} {info[k]:.2f}" for k in ordered({k: 0 for k in info if k not in SKIP}, "loss"))
        fields = {"epoch": info["epoch"], "epochs": info["epochs"], "step": f"step {info['step']}/{info['steps']}",
                  "rate": f"{info['samples_per_s']:.0f} samples/s", "terms": f"{terms}  β {info['beta']:.3f}",
                  **self.left(info["global_step"], info["total_steps"])}
        self.last = info
        if self.task is None:
            self.progress.__enter__()
            # The whole run is the bar, started at the steps already taken: only steps taken from
            # here on count towards the speed that the time remaining is estimated from.
            self.task = self.progress.add_task("train", total=info["total_steps"], completed=info["global_step"],
                                               **fields)
        self.progress.update(self.task, completed=info["global_step"], **fields)

    def on_epoch(self, row: dict[str, Any]) -> None:
        """A summary of the epoch (printed, with no logging source): the training loss at its β beside the
        validation loss at β = 1, the other validation numbers, the speed and the time left in the run."""
        epochs = self.last.get("epochs")
        left = clock(self.left(row["step"], self.last["total_steps"])["left"] if self.last else None)
        vals = {k: v for k, v in row.items() if k.startswith("val/")}
        head = (f"{time.strftime('%H:%M:%S')} epoch {row['epoch']}" + (f"/{epochs}" if epochs else "")
                + f": loss {row['train/loss']:.2f} at β={row.get('beta', 1.0):.3g}")
        if "val/loss" in vals:
            head += f", val/loss {vals.pop('val/loss'):.2f} at β=1"
        self.progress.console.print(head + ("  (best)" if row.get("best") else ""), highlight=False, markup=False)
        items = [f"{row['samples_per_s']:.0f} samples/s", f"ETA {left}"] + [f"{k} {number(v)}" for k, v in vals.items()]
        for line in packed(items, self.progress.console.width):
            self.progress.console.print(Text(line, style="dim"), highlight=False, soft_wrap=True)


def number(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, int | float) else str(value)


def packed(items: list[str], width: int, indent: str = "  ") -> list[str]:
    """``items`` two spaces apart in lines of at most ``width`` (an item is never split, as a wrap would
    split ``val/elbo(image) -97.37``)."""
    lines = [indent]
    for item in items:
        if lines[-1].strip() and len(lines[-1]) + 2 + len(item) > width:
            lines.append(indent)
        lines[-1] += ("  " if lines[-1].strip() else "") + item
    return lines


class StageProgress:
    """``mmgen eval``'s progress: a line as each stage begins; in a terminal, a bar for the running stage
    with its count, the time left in it and the time it has taken (a stage that counts no work shows its
    time only); elsewhere (a log file) the count and the time left as a line at most every ``every`` s."""

    def __init__(self, console: Console, quiet: bool = False, every: float = 30.0):
        self.console, self.quiet, self.every = console, quiet, every
        self.live = console.is_terminal and not quiet
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}", table_column=Column(max_width=22, no_wrap=True, overflow="ellipsis")),
            BarColumn(bar_width=None),
            TextColumn("{task.fields[count]}", table_column=Column(no_wrap=True)),
            Countdown(lambda: self.progress.get_time()),
            TimeElapsedColumn(),
            console=console, transient=True, expand=True,
        )
        self.task = None
        self.remaining, self.printed = Remaining(), 0.0

    def __enter__(self) -> StageProgress:
        if self.live:
            self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.live:
            self.progress.__exit__(*exc)

    def stage(self, message: str) -> None:
        """A stage begins: its line stays; the bar (in a terminal) is now this stage's."""
        if self.quiet:
            return
        self.console.print(Text(message, style="dim"), highlight=False, soft_wrap=True)
        self.remaining, self.printed = Remaining(), self.progress.get_time()
        if self.live:
            if self.task is not None:
                self.progress.remove_task(self.task)
            self.task = self.progress.add_task(message.strip(), total=None, count="")

    def work(self, done: int, total: int, unit: str) -> None:
        """The running stage has done ``done`` of ``total`` ``unit``: its time left, from its own rate."""
        if self.quiet:
            return
        now = self.progress.get_time()
        left = self.remaining(now, done, total)
        count, eta = f"{done}/{total} {unit}", f"ETA {clock(left)}"
        if self.live and self.task is not None:
            self.progress.update(self.task, total=total, completed=done, count=count, left=left, at=now)
        elif not self.live and done and (done == total or now - self.printed >= self.every):
            self.printed = now
            self.console.print(Text(f"  {count}, {eta}", style="dim"), highlight=False, soft_wrap=True)

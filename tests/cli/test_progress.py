"""The training bar shows the true epoch and a real time remaining: the steps left in the whole run
(not in one epoch) at the speed of the steps this process has taken, also after a resume."""

from __future__ import annotations

import io

from rich.console import Console
from rich.progress import TimeRemainingColumn

from mmgen.cli.progress import RichProgress


def step(global_step: int) -> dict:
    return {"epoch": 6, "epochs": 10, "step": global_step % 100, "steps": 100, "global_step": global_step,
            "total_steps": 1000, "beta": 1.0, "samples_per_s": 10.0, "train/loss": 1.0}


def test_a_resumed_run_estimates_the_time_left_from_its_own_speed():
    now = [0.0]
    bar = RichProgress(Console(file=io.StringIO(), width=200))
    bar.progress.get_time = lambda: now[0]  # a clock the test moves
    with bar:
        bar.on_step(step(500))  # resumed at step 500 of 1000
        for t, done in [(10.0, 600), (20.0, 700)]:  # then 10 steps a second
            now[0] = t
            bar.on_step(step(done))
        task = bar.progress.tasks[0]
        assert task.time_remaining == 30  # 300 steps left at 10 a second
        assert str(TimeRemainingColumn().render(task)) == "0:00:30"
        assert "epoch 6/10" in bar.progress.columns[0].render(task).plain

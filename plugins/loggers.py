"""mmgen's own loggers: ``jsonl`` (``metrics.jsonl``, one JSON line per epoch), ``tensorboard``, and the
experiment trackers ``mlflow`` (``mmgen_plugins.mlflow_logger``) and ``wandb`` (``mmgen_plugins.wandb_logger``).

``metrics.jsonl`` is rebuilt from the committed rows when a run (re)starts, so it holds each
finished epoch exactly once whatever crashed before. TensorBoard's event files go to
``<run>/tensorboard/`` (``tensorboard --logdir runs``); they need the ``tensorboard`` package.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any

from mmgen import Logger, RunDir, hookimpl
from mmgen_plugins.mlflow_logger import MlflowLogger
from mmgen_plugins.wandb_logger import WandbLogger


class JsonlLogger(Logger):
    def __init__(self, run_dir: Path, recipe: dict[str, Any], rows: list[dict[str, Any]]):
        super().__init__(run_dir, recipe, rows)
        self.run = RunDir(self.run_dir)
        self.run.write_metrics(rows)

    def log_epoch(self, epoch: int, row: dict[str, Any]) -> None:
        self.run.append_metrics(row)


class TensorBoardLogger(Logger):
    """Scalars per optimizer step (``step/*``) and per epoch (``epoch/*``, at the epoch's last step)."""

    def __init__(self, run_dir: Path, recipe: dict[str, Any], rows: list[dict[str, Any]]):
        super().__init__(run_dir, recipe, rows)
        from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package: see missing()

        self.writer = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"), purge_step=rows[-1]["step"] + 1
                                    if rows else None)

    @classmethod
    def missing(cls) -> str | None:
        if importlib.util.find_spec("tensorboard") is None:
            return "the tensorboard logger needs the tensorboard package: python3 -m pip install tensorboard"
        return None

    def log_step(self, step: int, values: dict[str, float]) -> None:
        for key, value in values.items():
            self.writer.add_scalar(f"step/{key}", value, step)

    def log_epoch(self, epoch: int, row: dict[str, Any]) -> None:
        for key, value in row.items():
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                self.writer.add_scalar(f"epoch/{key}", value, row["step"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


@hookimpl
def register_loggers(register):
    register("jsonl", JsonlLogger)
    register("tensorboard", TensorBoardLogger)
    register("mlflow", MlflowLogger)
    register("wandb", WandbLogger)

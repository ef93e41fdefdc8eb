"""What the ``mlflow`` and ``wandb`` loggers share: the recipe as flat parameters, the numbers of a
metrics row and of an evaluation, and the small JSON file in the run directory that names the
tracked run, so that a resumed training and a later ``mmgen eval`` reach the same one.

The file also counts the epochs already sent: a resumed run sends the committed epochs after that
count (those a crash cut off between commit and logging) and never one of the others again. It keeps
the last optimizer step whose progress was sent too: a run resumed after a crash in the middle of an
epoch trains that epoch's first steps again, and their step metrics are not sent twice.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from mmgen import MmgenError
from mmgen.storage import atomic_write_text

SETTINGS = ("epoch", "examples", "K", "K rest", "binarization_seed")  # numbers in eval.json that describe the run


def flat_params(recipe: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 0.001}}`` -> ``{"train.lr": 0.001}``; a list stays one value."""
    flat: dict[str, Any] = {}
    for key, value in recipe.items():
        if isinstance(value, dict):
            flat.update(flat_params(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def is_number(value: Any) -> bool:
    """A finite int or float (a tracker cannot plot NaN, and ``best`` is a flag, not a number)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def numbers(values: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of a metrics row or of a progress sync."""
    return {key: float(value) for key, value in values.items() if is_number(value)}


def epoch_numbers(row: dict[str, Any]) -> dict[str, float]:
    """A committed row's numbers but ``epoch``, which is where a tracker plots them."""
    return {key: value for key, value in numbers(row).items() if key != "epoch"}


def evaluation_numbers(report: dict[str, Any]) -> dict[str, float]:
    """eval.json's numbers under ``eval/<split>/``: each estimate's value and standard error, the fractions
    (accuracy, coherence, diversity), coherence per number of given modalities; not times, counts or lists."""
    out: dict[str, float] = {}
    for key, value in report.items():
        if isinstance(value, dict) and "value" in value:
            out.update({key: value["value"], f"{key}/stderr": value.get("stderr")})
        elif key == "conditional coherence" and isinstance(value, dict):
            out.update({f"{key}/{given} given": v for given, v in value.items()})
        elif not key.startswith("seconds") and key not in SETTINGS:
            out[key] = value
    return {f"eval/{report.get('split', 'test')}/{key}": float(v) for key, v in out.items() if is_number(v)}


class TrackedRun:
    """``<run>/<name>``: the tracked run's id, what else a logger needs to reopen it, ``epochs_logged`` and
    ``steps_logged``."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.fields: dict[str, Any] = self._read() if self.path.is_file() else {}

    def _read(self) -> dict[str, Any]:
        try:
            fields = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            raise MmgenError(f"cannot read {self.path}: {exc}", hint=self._delete_hint)
        if not isinstance(fields, dict) or not isinstance(fields.get("run_id"), str):
            raise MmgenError(f"{self.path} names no tracked run (no run_id)", hint=self._delete_hint)
        return fields

    @property
    def _delete_hint(self) -> str:
        return f"delete {self.path} to start a new tracked run (a resume then sends every committed epoch)"

    @property
    def exists(self) -> bool:
        return bool(self.fields)

    @property
    def run_id(self) -> str:
        return self.fields["run_id"]

    @property
    def epochs_logged(self) -> int:
        return int(self.fields.get("epochs_logged", 0))

    @property
    def steps_logged(self) -> int:
        """The last optimizer step whose progress was sent (0: none)."""
        return int(self.fields.get("steps_logged", 0))

    def unlogged(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The committed rows the tracked run has not had yet."""
        return [row for row in rows if row["epoch"] > self.epochs_logged]

    def save(self, **fields: Any) -> None:
        self.fields.update(fields)
        atomic_write_text(self.path, json.dumps(self.fields, indent=2) + "\n")

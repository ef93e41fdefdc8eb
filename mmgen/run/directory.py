"""The self-describing run directory.

    runs/<recipe name>-<timestamp>/
        recipe.json                 the resolved recipe (defaults filled in, overrides applied)
        versions.json               mmgen, torch, python and every plugin with its package
        metrics.jsonl               one JSON line per epoch
        best.safetensors            weights with the best validation number (train.best_by)
        last.safetensors            weights after the last finished epoch
        trainer_state.safetensors   optimizer, RNG states and counters for --resume
        pairing.safetensors         which training example has which modality (weak supervision only)
        data_record.safetensors     how the data set assembled its examples (Dataset.record: MNIST-SVHN's pairs)
        sampler-gmm.safetensors     the post-hoc latent sampler of mmgen eval / sample --sampler gmm, once fitted
"""

from __future__ import annotations

import json
import logging
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mmgen.config import Recipe
from mmgen.errors import CheckpointError
from mmgen.plugin.discovery import mmgen_version, plugin_versions
from mmgen.recipe.load import apply_overrides
from mmgen.recipe.validate import validate_recipe
from mmgen.storage.atomic import atomic_write_text

RUNS_ROOT = Path("runs")
log = logging.getLogger("mmgen.run")


def _lines(rows: list[dict[str, Any]]) -> str:
    """``metrics.jsonl``'s text: one JSON object per line."""
    return "".join(json.dumps(r) + "\n" for r in rows)


def current_versions() -> dict[str, Any]:
    """``versions.json``: mmgen, torch, python and every loaded plugin with its package and version."""
    return {"mmgen": mmgen_version(), "torch": torch.__version__, "python": platform.python_version(),
            "plugins": plugin_versions()}


@dataclass(frozen=True)
class RunDir:
    path: Path

    recipe_file = property(lambda self: self.path / "recipe.json")
    versions_file = property(lambda self: self.path / "versions.json")
    metrics_file = property(lambda self: self.path / "metrics.jsonl")
    best = property(lambda self: self.path / "best.safetensors")
    last = property(lambda self: self.path / "last.safetensors")
    state = property(lambda self: self.path / "trainer_state.safetensors")
    pairing = property(lambda self: self.path / "pairing.safetensors")

    @staticmethod
    def default_path(recipe_name: str, root: Path = RUNS_ROOT) -> Path:
        """``runs/<name>-<timestamp>``, with a ``-2``, ``-3``... suffix when started in the same second."""
        base = root / f"{recipe_name}-{time.strftime('%Y%m%d-%H%M%S')}"
        path, n = base, 1
        while path.exists():
            n += 1
            path = base.with_name(f"{base.name}-{n}")
        return path

    @staticmethod
    def newest(root: Path = RUNS_ROOT) -> RunDir:
        """The most recently modified run under ``root`` that has weights (a failed start has none)."""
        runs = [RunDir(p.parent) for p in root.glob("*/recipe.json")] if root.is_dir() else []
        runs = [r for r in runs if r.best.is_file() or r.last.is_file()]
        if not runs:
            raise CheckpointError(f"no trained run under {root}/", hint="train one with `mmgen train RECIPE`")
        return max(runs, key=lambda r: r.path.stat().st_mtime)

    @staticmethod
    def open(path: Path) -> RunDir:
        """An existing run directory; a folder without recipe.json is not one."""
        run = RunDir(Path(path))
        if not run.path.is_dir():
            raise CheckpointError(f"run directory not found: {run.path}")
        if not run.recipe_file.is_file():
            started = any(p.name.startswith(".recipe.json.") for p in run.stray_temporaries())
            raise CheckpointError(
                f"{run.path} is not a mmgen run directory (no recipe.json"
                + ("; a start was killed while writing it)" if started else ")"),
                hint=f"train it again with `mmgen train RECIPE --out {run.path}`" if started else "")
        return run

    def create(self, recipe_data: dict[str, Any]) -> None:
        """Make the folder and write the resolved recipe and versions; refuses to reuse a non-empty folder
        (temporary files of a start killed while writing them do not count)."""
        if self.path.exists() and not self.path.is_dir():  # the CLI says so first; this is for library callers
            raise CheckpointError(f"{self.path} is a file, not a run directory",
                                  hint="name a new folder, or an existing run with --resume")
        self.remove_stray_temporaries()
        if self.path.exists() and any(self.path.iterdir()):
            raise CheckpointError(
                f"{self.path} already exists and is not empty",
                hint="pass --resume to continue it, or another --out",
            )
        versions = current_versions()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.recipe_file, json.dumps(recipe_data, indent=2) + "\n")
            atomic_write_text(self.versions_file, json.dumps(versions, indent=2) + "\n")
        except OSError as exc:
            raise CheckpointError(f"cannot make the run directory {self.path}: {exc.strerror or exc}",
                                  hint="choose a writable --out")

    def read_recipe_data(self) -> dict[str, Any]:
        try:
            data = json.loads(self.recipe_file.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise CheckpointError(f"{self.recipe_file} is unreadable: {exc.__class__.__name__}: "
                                  f"{' '.join(str(exc).split())[:200]}")
        if not isinstance(data, dict):
            raise CheckpointError(f"{self.recipe_file} is not a recipe: it holds a JSON {type(data).__name__}")
        return data

    def recipe(self, overrides: list[str] | tuple[str, ...] = (), for_training: bool = False) -> Recipe:
        """The run's recipe, re-validated by today's schema (a field added since the run began takes
        its default), with ``key.path=value`` overrides applied first. Its loggers are checked only
        ``for_training``: a run trained with MLflow loads where MLflow is not installed."""
        data = apply_overrides(self.read_recipe_data(), list(overrides))
        return validate_recipe(data, source=str(self.recipe_file), overrides=list(overrides), for_training=for_training)

    def read_metrics(self) -> list[dict[str, Any]]:
        """One dict per epoch line. A line that is not a JSON object (a write cut short by a crash) is
        skipped with a warning, never fatal; ``--resume`` rewrites the file from the resume file."""
        if not self.metrics_file.is_file():
            return []
        rows = []
        for number, line in enumerate(self.metrics_file.read_text(errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                row = None
            if not isinstance(row, dict):
                log.warning("mmgen: %s line %d is not a metrics row (cut short by a crash?); skipped",
                            self.metrics_file, number)
                continue
            rows.append(row)
        return rows

    def append_metrics(self, row: dict[str, Any]) -> None:
        with self.metrics_file.open("a") as f:
            f.write(json.dumps(row) + "\n")

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        """Replace ``metrics.jsonl`` atomically by these rows."""
        atomic_write_text(self.metrics_file, _lines(rows))

    def repair_metrics(self, rows: list[dict[str, Any]]) -> bool:
        """Make an existing ``metrics.jsonl`` hold exactly ``rows`` (the resume file's), as after a kill
        between an epoch's commit and its line; True when it had to be rewritten. A run whose loggers
        leave out ``jsonl`` has no such file, and gets none."""
        if not self.metrics_file.is_file():
            return False
        expected = _lines(rows)
        if self.metrics_file.read_text(errors="replace") == expected:
            return False
        atomic_write_text(self.metrics_file, expected)
        return True

    def remove_unstarted(self) -> None:
        """Remove a run that never wrote a checkpoint: the files ``create`` and the first epoch write, then
        the folder if nothing else is in it."""
        if self.state.is_file() or self.last.is_file():
            raise CheckpointError(f"{self.path} has checkpoints; not removing it")
        for path in (self.recipe_file, self.versions_file, self.metrics_file, self.pairing, *self.stray_temporaries()):
            path.unlink(missing_ok=True)
        if self.path.is_dir() and not any(self.path.iterdir()):
            self.path.rmdir()

    def stray_temporaries(self) -> list[Path]:
        """The ``.NAME.*.tmp`` files an atomic write leaves when the process is killed in it. Only plain
        files: an atomic write makes nothing else, so a folder or a link of such a name is not ours to delete."""
        if not self.path.is_dir():
            return []
        return sorted(p for p in self.path.glob(".*.tmp") if p.is_file() and not p.is_symlink())

    def remove_stray_temporaries(self) -> list[Path]:
        """Delete the stray temporary files (``stray_temporaries``); returns them."""
        stray = self.stray_temporaries()
        for path in stray:
            path.unlink(missing_ok=True)
        return stray

    def weights(self, which: str = "best") -> Path:
        """Path of ``best`` or ``last`` weights; falls back from best to last; an error if neither exists."""
        if which not in ("best", "last"):
            raise CheckpointError(f"--weights {which!r}: use best or last")
        for path in ([self.best, self.last] if which == "best" else [self.last]):
            if path.is_file():
                return path
        raise CheckpointError(f"{self.path} has no {which} weights (.safetensors); was training interrupted early?")

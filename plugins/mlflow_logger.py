"""The ``mlflow`` logger: the recipe as parameters, the metrics of every progress sync and committed
epoch, and ``mmgen eval``'s numbers, eval.json and pictures, in one MLflow run.

Where it writes is MLflow's own setting: MLFLOW_TRACKING_URI (a tracking server, ``sqlite:///path.db``,
``databricks``...), else MLflow's default, ``sqlite:///mlflow.db`` in the working directory; the
experiment is MLFLOW_EXPERIMENT_NAME, or ``mmgen``. ``<run>/mlflow-run.json`` keeps the run's id and
tracking URI (a relative path made absolute), so ``--resume`` and ``mmgen eval`` reach the same MLflow
run from any directory. The run ends FINISHED, KILLED (interrupted: ``--resume`` continues it, RUNNING
again) or FAILED. Needs ``mlflow-skinny``, and SQLAlchemy with Alembic for a database store (sqlite,
the default): ``pip install "mmgen[mlflow]"``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mmgen import Logger, MmgenError
from mmgen_plugins.tracking import TrackedRun, epoch_numbers, evaluation_numbers, flat_params, numbers

RECORD = "mlflow-run.json"
DEFAULT_EXPERIMENT = "mmgen"
INSTALL = "python3 -m pip install mlflow-skinny sqlalchemy alembic"
SQL_STORE = ("sqlalchemy", "alembic")  # what a sqlite (or other database) store needs beyond mlflow-skinny
DATABASES = ("sqlite", "postgresql", "mysql", "mssql")  # MLflow's database stores, ``<database>[+driver]://``
STATUS = {"finished": "FINISHED", "interrupted": "KILLED", "failed": "FAILED"}  # how training ended -> MLflow's
# MLflow's names take letters, digits, _ - . / and spaces (and ':' but not on Windows); mmgen's keys also
# hold parentheses, commas, '->' and '|', spelled out here so that a name still reads as it did.
SPELLED = {"->": " to ", "|": " given ", "(": " ", ",": " ", ")": ""}
PARAMS_PER_CALL = 100  # MLflow's limit for one log_batch


def mlflow_name(key: str) -> str:
    """``val/elbo(image,label)`` -> ``val/elbo image label``; ``log p(image|label)`` -> ``log p image given label``."""
    for old, new in SPELLED.items():
        key = key.replace(old, new)
    return re.sub(r" +", " ", re.sub(r"[^\w./\- ]", "_", key)).strip()


def _now_ms() -> int:
    return int(time.time() * 1000)


@contextlib.contextmanager
def _as_one_line(uri: str, hint: str) -> Iterator[None]:
    """MLflow's errors (an unreachable server, a store it refuses) as one line naming the tracking URI."""
    from mlflow.exceptions import MlflowException  # needs mlflow: see missing()

    try:
        yield
    except MlflowException as exc:
        raise MmgenError(f"the mlflow logger failed at {uri}: {' '.join(exc.message.split())[:800]}", hint=hint)


def absolute_uri(uri: str) -> str:
    """A tracking URI that means the same from any directory: a relative path (``./mlruns``, ``file:mlruns``,
    ``sqlite:///rel.db``) made absolute from the working directory; any other URI as it is."""
    from mlflow.utils.uri import resolve_uri_if_local  # needs mlflow: see missing(); paths and file: URIs

    scheme, _, rest = uri.partition(":///")
    if scheme.partition("+")[0] == "sqlite" and rest and not Path(rest.partition("?")[0]).is_absolute():
        path, mark, query = rest.partition("?")  # sqlite:///rel.db?mode=ro: the query is the driver's
        return f"{scheme}:///{Path(os.path.abspath(path)).as_posix()}{mark}{query}"
    return resolve_uri_if_local(uri)


def _client(tracked: TrackedRun) -> tuple[Any, str]:
    """An MlflowClient on the recorded tracking URI, or on MLflow's current one (made absolute) for a new run."""
    import mlflow  # needs mlflow: see missing()

    uri = tracked.fields.get("tracking_uri") or mlflow.get_tracking_uri()  # MLflow's default is already absolute
    with _as_one_line(uri, "check MLFLOW_TRACKING_URI (docs/training-at-scale.md, Experiment trackers)"):
        uri = absolute_uri(uri)
        return mlflow.MlflowClient(tracking_uri=uri), uri


def _missing(uri: str, where: str) -> str | None:
    """What mlflow-skinny, and for a database store (``uri`` empty: MLflow's default, sqlite) SQLAlchemy and
    Alembic, lack here; None when nothing."""
    if importlib.util.find_spec("mlflow") is None:
        return f"the mlflow logger needs the mlflow-skinny package: {INSTALL}"
    database = not uri or uri.partition(":")[0].partition("+")[0] in DATABASES
    if database and any(importlib.util.find_spec(p) is None for p in SQL_STORE):
        return f"the mlflow logger's store ({where}) needs SQLAlchemy and Alembic: {INSTALL}"
    return None


class MlflowLogger(Logger):
    """Step metrics as ``step/<key>`` at the optimizer step, epoch metrics as ``epoch/<key>`` at the epoch."""

    def __init__(self, run_dir: Path, recipe: dict[str, Any], rows: list[dict[str, Any]]):
        super().__init__(run_dir, recipe, rows)
        self.tracked = TrackedRun(self.run_dir / RECORD)
        self.client, self.uri = _client(self.tracked)
        self.hint = f"the epochs are committed: `mmgen train {self.run_dir} --resume` sends those MLflow missed"
        self.status = STATUS["finished"]  # until end() says otherwise
        with _as_one_line(self.uri, f"check MLFLOW_TRACKING_URI, or delete {self.tracked.path} for a new run"):
            if self.tracked.exists:
                self.client.update_run(self.tracked.run_id, status="RUNNING")
            else:
                self._start_run()
        for row in self.tracked.unlogged(rows):  # committed before a crash cut the logging
            self.log_epoch(row["epoch"], row)

    def _start_run(self) -> None:
        from mlflow.entities import Param

        name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(name)
        tags = {"mmgen.recipe": str(self.recipe.get("name")), "mmgen.run_dir": str(self.run_dir.resolve())}
        run = self.client.create_run(experiment_id, run_name=self.run_dir.name, tags=tags)
        self.tracked.save(run_id=run.info.run_id, tracking_uri=self.uri, epochs_logged=0)
        params = [Param(mlflow_name(k), str(v)) for k, v in flat_params(self.recipe).items()]
        for start in range(0, len(params), PARAMS_PER_CALL):
            self.client.log_batch(self.tracked.run_id, params=params[start:start + PARAMS_PER_CALL])

    @classmethod
    def missing(cls) -> str | None:
        """For a new run: the packages of mlflow-skinny and of the store MLFLOW_TRACKING_URI names."""
        uri = os.environ.get("MLFLOW_TRACKING_URI", "")
        return _missing(uri, f"MLFLOW_TRACKING_URI={uri}" if uri else "MLflow's default store, sqlite:///mlflow.db")

    @classmethod
    def missing_for(cls, run_dir: Path) -> str | None:
        """For a run that logged to MLflow: the store its mlflow-run.json names, whatever MLFLOW_TRACKING_URI says."""
        uri = TrackedRun(Path(run_dir) / RECORD).fields.get("tracking_uri")
        return _missing(uri, f"{uri}, recorded in {RECORD}") if uri else cls.missing()

    def _log_metrics(self, values: dict[str, float], prefix: str, step: int) -> None:
        from mlflow.entities import Metric

        now = _now_ms()
        metrics = [Metric(mlflow_name(f"{prefix}{k}"), v, now, step) for k, v in values.items()]
        with _as_one_line(self.uri, self.hint):
            self.client.log_batch(self.tracked.run_id, metrics=metrics)

    def log_step(self, step: int, values: dict[str, float]) -> None:
        if step <= self.tracked.steps_logged:  # a resume after a crash trains again what followed the last commit
            return
        self._log_metrics(numbers(values), "step/", step)
        self.tracked.save(steps_logged=step)

    def log_epoch(self, epoch: int, row: dict[str, Any]) -> None:
        self._log_metrics(epoch_numbers(row), "epoch/", epoch)
        self.tracked.save(epochs_logged=epoch)

    def end(self, outcome: str) -> None:
        self.status = STATUS.get(outcome, "FAILED")

    def close(self) -> None:
        with _as_one_line(self.uri, self.hint):
            self.client.set_terminated(self.tracked.run_id, status=self.status)

    @classmethod
    def log_evaluation(cls, run_dir: Path, recipe: dict[str, Any], report: dict[str, Any],
                       pictures: list[Path]) -> None:
        """The numbers at the step of the weights' epoch; eval.json and the pictures as artifacts under ``eval/``."""
        from mlflow.entities import Metric

        tracked = TrackedRun(Path(run_dir) / RECORD)
        if not tracked.exists:
            raise MmgenError(f"no MLflow run is recorded for {run_dir} ({RECORD}: training never logged to MLflow)")
        client, uri = _client(tracked)
        now, step = _now_ms(), int(report.get("epoch", 0))
        metrics = [Metric(mlflow_name(k), v, now, step) for k, v in evaluation_numbers(report).items()]
        with _as_one_line(uri, f"eval.json is written; rerun `mmgen eval {run_dir}` to log it"):
            client.log_batch(tracked.run_id, metrics=metrics)
            for path in [Path(run_dir) / "eval.json", *pictures]:
                if path.is_file():
                    client.log_artifact(tracked.run_id, str(path), artifact_path="eval")


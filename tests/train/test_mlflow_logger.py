"""The mlflow logger against a real sqlite store in a temporary folder, read back with MlflowClient: the recipe
as parameters, step and epoch metrics, ``mmgen eval``'s numbers and artifacts, resumes that continue the same
MLflow run without sending an epoch or a step twice, the run's final status, a relative tracking URI, and a run
that evaluates where MLflow or its store's packages are missing."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from mmgen.cli import app
from mmgen.train.trainer import Trainer
from mmgen_plugins import mlflow_logger
from mmgen_plugins.mlflow_logger import MlflowLogger, absolute_uri, mlflow_name

EVAL = ("-K", "5", "--limit", "20", "--per-class", "2", "--device", "cpu")


def run_cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def without(mp, package: str) -> None:
    """``package`` looks uninstalled to the logger's ``missing()``."""
    real = mlflow_logger.importlib.util.find_spec
    mp.setattr(mlflow_logger.importlib.util, "find_spec", lambda name, *a: None if name == package else real(name, *a))


def use_store(mp, folder: Path) -> str:
    """A sqlite store in ``folder``; the working directory too, where MLflow puts a new experiment's artifacts."""
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    mp.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    mp.chdir(folder)
    return uri


@pytest.fixture(scope="module")
def tracked(tiny_recipe, tmp_path_factory):
    """Two epochs logged to MLflow, then ``mmgen eval`` on the run: (run directory, client, MLflow run id)."""
    folder = tmp_path_factory.mktemp("mlflow")
    with pytest.MonkeyPatch.context() as mp:
        uri = use_store(mp, folder)
        out = folder / "run"
        result = run_cli("train", tiny_recipe, "train.epochs=2", "train.log_every=1",
                         'train.loggers=["jsonl","mlflow"]', "--out", out, "--device", "cpu")
        assert result.exit_code == 0, result.output
        result = run_cli("eval", out, *EVAL)
        assert result.exit_code == 0, result.output
        assert "warning" not in result.stderr, result.stderr
    record = json.loads((out / "mlflow-run.json").read_text())
    assert record["tracking_uri"] == uri and record["epochs_logged"] == 2
    return out, MlflowClient(tracking_uri=uri), record["run_id"]


def history(client, run_id, key) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def test_the_recipe_is_the_runs_parameters(tracked):
    out, client, run_id = tracked
    run = client.get_run(run_id)
    recipe = json.loads((out / "recipe.json").read_text())
    assert run.data.params["train.epochs"] == "2" and run.data.params["modalities.image.kind"] == "image"
    assert run.data.params["train.lr"] == str(recipe["train"]["lr"])
    assert run.data.params["modalities.image.encoder_hidden"] == "[32]"
    assert run.info.run_name == "run" and run.data.tags["mmgen.recipe"] == "tiny"
    assert run.info.status == "FINISHED"


def test_every_committed_epoch_and_progress_sync_is_a_metric(tracked):
    out, client, run_id = tracked
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert history(client, run_id, "epoch/val/loss") == [(r["epoch"], r["val/loss"]) for r in rows]
    elbo = history(client, run_id, "epoch/val/elbo image label")  # MLflow's spelling of val/elbo(image,label)
    assert elbo == [(r["epoch"], r["val/elbo(image,label)"]) for r in rows]
    assert [step for step, _ in history(client, run_id, "step/loss")] == list(range(1, 11))  # log_every = 1
    assert "epoch/epoch" not in client.get_run(run_id).data.metrics  # the epoch is the x-axis, not a metric


def test_eval_sends_its_numbers_eval_json_and_pictures(tracked, tmp_path):
    out, client, run_id = tracked
    report = json.loads((out / "eval.json").read_text())
    joint = report["log p(image,label)"]
    assert history(client, run_id, "eval/test/log p image label") == [(report["epoch"], joint["value"])]
    assert history(client, run_id, "eval/test/log p image given label/stderr")[0][1] == \
        report["log p(image|label)"]["stderr"]
    assert history(client, run_id, "eval/test/accuracy image to label")[0][1] == report["accuracy image->label"]
    names = {Path(a.path).name for a in client.list_artifacts(run_id, "eval")}
    assert names == {"eval.json", *(Path(p).name for p in report["pictures"])} and "samples-prior.png" in names
    copy = client.download_artifacts(run_id, "eval/eval.json", str(tmp_path))
    assert Path(copy).read_bytes() == (out / "eval.json").read_bytes()


def test_a_resume_sends_the_epochs_a_crash_cut_off_once_to_the_same_run(cli, tiny_recipe, tmp_path, monkeypatch):
    uri = use_store(monkeypatch, tmp_path)
    out = tmp_path / "run"
    real = MlflowLogger.log_epoch

    def crash_after_the_second_commit(self, epoch, row):
        if epoch == 2:
            raise RuntimeError("killed between the commit and the logging")
        real(self, epoch, row)

    with monkeypatch.context() as mp:
        mp.setattr(MlflowLogger, "log_epoch", crash_after_the_second_commit)
        assert cli("train", tiny_recipe, "train.epochs=2", 'train.loggers=["mlflow"]', "--out", out).exit_code != 0
    assert json.loads((out / "mlflow-run.json").read_text())["epochs_logged"] == 1
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'elsewhere.db'}")  # the record's URI wins
    result = cli("train", out, "--resume", "train.epochs=3", "--device", "cpu")
    assert result.exit_code == 0, result.output
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("mmgen").experiment_id])
    assert [step for step, _ in history(client, run.info.run_id, "epoch/val/loss")] == [1, 2, 3]
    assert not (tmp_path / "elsewhere.db").exists()


def test_a_crash_or_a_stop_marks_the_run_and_a_resume_sends_no_step_twice(cli, tiny_recipe, tmp_path, monkeypatch):
    """Stopped at step 3 (KILLED), resumed into a crash at epoch 1's validation (FAILED: steps 4 and 5 were sent),
    resumed again from step 3 to the end (FINISHED): every step's progress is in MLflow once."""
    uri = use_store(monkeypatch, tmp_path)
    out = tmp_path / "run"
    client = MlflowClient(tracking_uri=uri)
    real_step = Trainer._step

    def sigterm_at_step_3(self, *args, **kwargs):
        beta = real_step(self, *args, **kwargs)
        if self.state.step == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return beta

    def status() -> str:
        return client.get_run(json.loads((out / "mlflow-run.json").read_text())["run_id"]).info.status

    with monkeypatch.context() as mp:
        mp.setattr(Trainer, "_step", sigterm_at_step_3)
        result = cli("train", tiny_recipe, "train.epochs=2", "train.log_every=1", 'train.loggers=["mlflow"]',
                     "--out", out, "--device", "cpu")
    assert result.exit_code != 0 and status() == "KILLED"
    with monkeypatch.context() as mp:
        mp.setattr(Trainer, "validate", lambda self: 1 / 0)
        assert cli("train", out, "--resume", "--device", "cpu").exit_code != 0
    assert status() == "FAILED" and json.loads((out / "mlflow-run.json").read_text())["steps_logged"] == 5
    result = cli("train", out, "--resume", "--device", "cpu")
    assert result.exit_code == 0, result.output
    run_id = json.loads((out / "mlflow-run.json").read_text())["run_id"]
    assert status() == "FINISHED"
    assert [step for step, _ in history(client, run_id, "step/loss")] == list(range(1, 11))
    assert [step for step, _ in history(client, run_id, "epoch/val/loss")] == [1, 2]


def test_a_relative_tracking_uri_is_saved_absolute_and_eval_finds_it_from_elsewhere(cli, tiny_recipe, tmp_path,
                                                                                   monkeypatch):
    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    here.mkdir(), elsewhere.mkdir()
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///rel.db")
    monkeypatch.chdir(here)
    result = cli("train", tiny_recipe, 'train.loggers=["mlflow"]', "--out", "run", "--device", "cpu")
    assert result.exit_code == 0, result.output
    record = json.loads((here / "run" / "mlflow-run.json").read_text())
    assert record["tracking_uri"] == f"sqlite:///{here / 'rel.db'}"
    monkeypatch.chdir(elsewhere)
    result = cli("eval", here / "run", *EVAL, "--no-pictures")
    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr, result.stderr
    client = MlflowClient(tracking_uri=record["tracking_uri"])
    assert history(client, record["run_id"], "eval/test/log p image label")
    assert not (elsewhere / "rel.db").exists()


@pytest.mark.parametrize(("uri", "absolute"), [("sqlite:///rel.db", "sqlite:///{cwd}/rel.db"),
                                               ("sqlite:///rel.db?mode=ro", "sqlite:///{cwd}/rel.db?mode=ro"),
                                               ("sqlite:////abs/x.db", "sqlite:////abs/x.db"),
                                               ("./mlruns", "{cwd}/mlruns"), ("mlruns", "{cwd}/mlruns"),
                                               ("file:./mlruns", "file://{cwd}/mlruns"),
                                               ("file:///abs/mlruns", "file:///abs/mlruns"),
                                               ("http://mlflow:5000", "http://mlflow:5000"),
                                               ("databricks", "databricks")])
def test_a_relative_tracking_uri_is_made_absolute(uri, absolute, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert absolute_uri(uri) == absolute.format(cwd=tmp_path.as_posix())


def test_eval_where_mlflow_is_not_installed_warns_naming_the_pip_command(cli, tracked, tmp_path, monkeypatch):
    run = Path(shutil.copytree(tracked[0], tmp_path / "run"))
    without(monkeypatch, "mlflow")
    result = cli("eval", run, *EVAL, "--no-pictures")
    assert result.exit_code == 0, result.output
    assert "warning: the evaluation was not logged to mlflow: the mlflow logger needs the mlflow-skinny package: " \
           "python3 -m pip install mlflow-skinny sqlalchemy alembic" in result.stderr


def test_the_store_a_run_recorded_decides_what_evaluating_it_needs(tmp_path, monkeypatch):
    without(monkeypatch, "alembic")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "mlflow-run.json").write_text(json.dumps({"run_id": "r", "tracking_uri": "http://mlflow:5000"}))
    assert MlflowLogger.missing() is not None and MlflowLogger.missing_for(tmp_path) is None
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    (tmp_path / "mlflow-run.json").write_text(json.dumps({"run_id": "r", "tracking_uri": "sqlite:////abs/x.db"}))
    assert MlflowLogger.missing() is None
    assert "store (sqlite:////abs/x.db, recorded in mlflow-run.json) needs SQLAlchemy" in MlflowLogger.missing_for(
        tmp_path)
    assert MlflowLogger.missing_for(tmp_path / "no-record") is None  # no record: as for a new run


def test_a_store_mlflow_refuses_is_one_line_naming_it(cli, cli_error, tiny_recipe, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "nosuchscheme://nowhere")
    line = cli_error(cli("train", tiny_recipe, 'train.loggers=["mlflow"]', "--out", tmp_path / "run"))
    assert line.startswith("error: the mlflow logger failed at nosuchscheme://nowhere: ")
    assert "MLFLOW_TRACKING_URI" in line


def test_eval_of_a_run_mlflow_never_saw_is_a_warning_not_a_failure(cli, tracked, tmp_path):
    run = Path(shutil.copytree(tracked[0], tmp_path / "run"))
    (run / "mlflow-run.json").unlink()
    (run / "eval.json").unlink()
    result = cli("eval", run, *EVAL, "--no-pictures")
    assert result.exit_code == 0, result.output
    assert "warning: the evaluation was not logged to mlflow: no MLflow run is recorded" in result.stderr
    assert (run / "eval.json").is_file()


@pytest.mark.parametrize(("key", "name"), [("val/elbo(image,label)", "val/elbo image label"),
                                           ("log p(image|label)/stderr", "log p image given label/stderr"),
                                           ("accuracy image->label", "accuracy image to label"),
                                           ("train/nll/image", "train/nll/image"),
                                           ("odd*key", "odd_key")])
def test_names_are_spelled_as_mlflow_takes_them(key, name):
    assert mlflow_name(key) == name


def test_the_sqlite_store_needs_sqlalchemy_and_alembic(monkeypatch):
    without(monkeypatch, "alembic")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert "sqlite:///mlflow.db) needs SQLAlchemy and Alembic" in MlflowLogger.missing()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://mlflow.example.org")
    assert MlflowLogger.missing() is None  # a tracking server needs only the client

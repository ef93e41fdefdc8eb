"""``mmgen export``: the folder holds what the issue lists and nothing pickled, loads anywhere (sample and
eval from it), samples bit-identically to the run it came from, and an old run exports too."""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard
from PIL import Image
from safetensors import safe_open

import mmgen
from mmgen.eval.comparison import ComparisonSettings
from mmgen.run.data_record import DATA_RECORD, data_record_path
from mmgen.run.exported import FILES
from mmgen.share.card import nats
from mmgen.share.export import export_run
from mmgen.storage.tensors import save_tensors
from tests.conftest import run_cli
from tests.support import REPO_ROOT

LEGACY = REPO_ROOT / "tests" / "fixtures" / "legacy_run"
EVAL_ARGS = ("-K", "3", "--limit", "20", "--per-class", "2", "--no-pictures", "--device", "cpu")


@pytest.fixture(scope="module")
def evaluated_run(trained_run, tmp_path_factory):
    """A copy of the tiny run with an eval.json, as `mmgen eval` writes it."""
    run = Path(shutil.copytree(trained_run, tmp_path_factory.mktemp("evaluated") / "run"))
    result = run_cli("eval", run, *EVAL_ARGS)
    assert result.exit_code == 0, result.output
    return run


@pytest.fixture(scope="module")
def exported(evaluated_run, tmp_path_factory) -> Path:
    return export_run(evaluated_run, tmp_path_factory.mktemp("exports") / "tiny", repo_id="my-lab/tiny")


def test_the_export_holds_the_weights_recipe_versions_numbers_samples_and_card(evaluated_run, exported):
    names = {p.name for p in exported.iterdir()}
    assert names == {"best.safetensors", "recipe.json", "versions.json", "metrics.jsonl", "eval.json", "samples.png",
                     "README.md", "export.json"}
    assert names <= set(FILES)  # all that a Hub download fetches
    assert (exported / "best.safetensors").read_bytes() == (evaluated_run / "best.safetensors").read_bytes()
    assert (exported / "versions.json").read_bytes() == (evaluated_run / "versions.json").read_bytes()
    assert (exported / "eval.json").read_bytes() == (evaluated_run / "eval.json").read_bytes()
    recipe, trained = (json.loads((folder / "recipe.json").read_text()) for folder in (exported, evaluated_run))
    assert trained["data"]["root"] is not None and recipe["data"]["root"] is None  # a folder of the training machine
    assert recipe["modalities"] == trained["modalities"] and recipe["model"] == trained["model"]


def test_the_manifest_names_each_plugin_part_and_the_weights_bytes(exported):
    manifest = json.loads((exported / "export.json").read_text())
    needs = {(n["category"], n["kind"]): (n["plugin"], n["package"]) for n in manifest["needs"]}
    assert needs == {("models", "mvae"): ("mvae", "mmgen"), ("fusions", "poe"): ("poe", "mmgen"),
                     ("modalities", "image"): ("image", "mmgen"), ("modalities", "label"): ("label", "mmgen"),
                     ("datasets", "mnist"): ("mnist", "mmgen"), ("loggers", "jsonl"): ("loggers", "mmgen")}
    weights = (exported / "best.safetensors").read_bytes()
    assert manifest["weights"] == {"file": "best.safetensors", "chosen": "best", "epoch": 1, "bytes": len(weights),
                                   "sha256": hashlib.sha256(weights).hexdigest()}


def test_nothing_in_it_is_pickled(exported):
    """Each file reads with a reader of its own format, none of which runs code from the file."""
    for path in exported.iterdir():
        if path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as f:
                assert len(list(f.keys())) > 0
        elif path.suffix == ".json":
            assert isinstance(json.loads(path.read_text()), dict)
        elif path.suffix == ".jsonl":
            assert all(isinstance(json.loads(line), dict) for line in path.read_text().splitlines())
        elif path.suffix == ".png":
            assert Image.open(path).format == "PNG"
        else:
            assert path.suffix == ".md", path
        assert not path.read_bytes().startswith(b"\x80"), path  # a pickle's protocol byte


def test_the_sample_grid_shows_each_class(exported):
    picture = Image.open(exported / "samples.png")
    assert picture.text["Title"] == "image given the row's label"
    assert picture.text["Rows"].splitlines() == [f"label={c}" for c in range(10)]


def test_the_card_is_the_hubs_format_with_the_numbers_and_their_k(exported):
    card = ModelCard.load(exported / "README.md")  # huggingface_hub's own reader of model cards
    assert card.data.library_name == "mmgen"
    assert {"mmgen", "mvae", "poe", "image", "label"} <= set(card.data.tags)
    assert card.data.datasets == ["mnist"]
    assert {"log-likelihood", "accuracy", "coherence"} <= set(card.data.metrics)
    report = json.loads((exported / "eval.json").read_text())
    estimates = {k: v for k, v in report.items() if isinstance(v, dict) and "value" in v}
    assert len(estimates) == 5
    for key, value in estimates.items():  # each row: name, value, s.e., proposal, K, n
        row = next(line for line in card.text.splitlines() if line.startswith(f"| {key.replace('|', chr(92) + '|')} |"))
        cells = [c.strip() for c in row.strip("|").split(" | ")]
        assert float(cells[1]) == pytest.approx(value["value"], abs=0.005)
        assert float(cells[2]) == pytest.approx(value["stderr"], rel=0.05, abs=0.005)
        assert cells[4].split()[0] == str(value["K"]) and cells[5] == str(value["n"])
    assert f"| accuracy image->label | {report['accuracy image->label']:.4f} |" in card.text
    assert "mmgen sample hf://my-lab/tiny --given label=1" in card.text
    assert "![samples drawn by this model](samples.png)" in card.text and "| `samples.png` |" in card.text
    assert "mmgen train THIS_FOLDER --out runs/tiny" in card.text  # "tiny" is no shipped recipe
    assert "mmgen eval runs/tiny --split test -K 3 --limit 20 --per-class 2\n" in card.text


def test_the_card_says_when_eval_json_scored_other_weights(evaluated_run, tmp_path):
    run = Path(shutil.copytree(evaluated_run, tmp_path / "run"))
    report = json.loads((run / "eval.json").read_text())
    (run / "eval.json").write_text(json.dumps({**report, "epoch": 7}))
    card = (export_run(run, tmp_path / "export") / "README.md").read_text()
    assert "**These numbers are of the weights of epoch 7; the weights here are of epoch 1.**" in card


def test_a_standard_error_below_a_hundredth_keeps_two_digits():
    assert [nats(x) for x in (-90.1797, 0.2443, 0.0031838, 0.0)] == ["-90.18", "0.24", "0.0032", "0.00"]


def test_sampling_an_export_is_bit_identical_to_sampling_its_run(evaluated_run, exported):
    run, export = mmgen.load_run(evaluated_run, device="cpu"), mmgen.load_run(exported, device="cpu")
    assert export.epoch == run.epoch == 1
    for given, seed in (({"label": 3}, 0), ({}, 1), ({"image": torch.rand(2, 1, 28, 28)}, 2)):
        ours, theirs = run.sample(8, given, seed=seed), export.sample(8, given, seed=seed)
        assert ours.keys() == theirs.keys()
        assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_the_command_line_samples_and_evaluates_an_export(cli, evaluated_run, exported, tiny_mnist_root, tmp_path,
                                                          workdir, monkeypatch):
    for source, out in ((evaluated_run, tmp_path / "run.npy"), (exported, tmp_path / "export.npy")):
        result = cli("sample", source, "--given", "label=3", "-n", "6", "--seed", "0", "--out", out)
        assert result.exit_code == 0, result.output
    assert np.array_equal(np.load(tmp_path / "run.npy"), np.load(tmp_path / "export.npy"))
    # Another machine: the data under MMGEN_DATA_ROOT, since the export's recipe names no folder.
    monkeypatch.setenv("MMGEN_DATA_ROOT", str(tiny_mnist_root))
    copy = Path(shutil.copytree(exported, tmp_path / "elsewhere"))
    result = cli("eval", copy, *EVAL_ARGS, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads((workdir / "eval.json").read_text())["epoch"] == 1


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_eval_and_sample_leave_every_file_of_an_export_as_exported(cli, exported, tiny_mnist_root, workdir,
                                                                    monkeypatch):
    """The card's numbers are eval.json's: a new evaluation goes into the working folder, as for hf://."""
    monkeypatch.setenv("MMGEN_DATA_ROOT", str(tiny_mnist_root))
    export = Path(shutil.copytree(exported, workdir / "export"))
    before = files_of(export)
    result = cli("eval", export, "--fast", "-K", "2", "--limit", "10", "--per-class", "1", "--device", "cpu")
    assert result.exit_code == 0, result.output
    result = cli("sample", export, "--given", "label=3", "-n", "4", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert files_of(export) == before
    assert json.loads((workdir / "eval.json").read_text())["K"] == 2
    assert list(workdir.glob("samples-label3-*.png")) and list(workdir.glob("curves.png"))


def test_the_cards_eval_command_reproduces_the_numbers_of_eval_json(cli, exported, tiny_mnist_root, workdir,
                                                                    monkeypatch):
    """The settings eval.json records (--limit and --per-class among them) are the command's flags, and the
    command gives eval.json's numbers again."""
    monkeypatch.setenv("MMGEN_DATA_ROOT", str(tiny_mnist_root))
    card = (exported / "README.md").read_text()
    (command,) = [line for line in card.splitlines() if line.startswith("mmgen eval runs/tiny ")]
    words = shlex.split(command)
    result = cli("eval", exported, *words[3:], "--no-pictures", "--device", "cpu")  # runs/tiny: the export's run
    assert result.exit_code == 0, result.output
    shipped, again = (json.loads((folder / "eval.json").read_text()) for folder in (exported, workdir))
    assert again["settings"] == shipped["settings"] == {"split": "test", "K": 3, "K_rest": None, "proposal": None,
                                                        "limit": 20, "per_class": 2, **ComparisonSettings().to_dict()}
    numbers = [k for k, v in shipped.items() if not k.startswith(("seconds", "run"))]
    assert {k: again[k] for k in numbers} == {k: shipped[k] for k in numbers}


def test_the_cards_train_command_trains_the_exports_recipe(cli, exported, tiny_mnist_root, workdir, monkeypatch):
    """``mmgen train THIS_FOLDER --out runs/tiny``, as the card says; without --out, a new run under runs/.
    The export is left as it is, and the retrained weights are the exported ones, bit for bit."""
    monkeypatch.setenv("MMGEN_DATA_ROOT", str(tiny_mnist_root))
    card = (exported / "README.md").read_text()
    assert "mmgen train THIS_FOLDER --out runs/tiny" in card
    before = files_of(exported)
    result = cli("train", exported, "--out", "runs/tiny", "--device", "cpu")
    assert result.exit_code == 0, result.output
    run = workdir / "runs" / "tiny"
    trained, shipped = (json.loads((folder / "recipe.json").read_text()) for folder in (run, exported))
    assert trained == shipped
    assert (run / "best.safetensors").read_bytes() == (exported / "best.safetensors").read_bytes()
    result = cli("train", exported, "train.epochs=1", "--device", "cpu")
    assert result.exit_code == 0, result.output
    (new,) = [p for p in (workdir / "runs").iterdir() if p.name.startswith("tiny-")]
    assert result.stdout.strip().splitlines()[-1] == str(Path("runs") / new.name)
    assert files_of(exported) == before


def test_an_export_is_not_resumed(cli, cli_error, exported, tiny_recipe):
    """Neither as RECIPE nor as --out: training in place would change its files."""
    before = files_of(exported)
    line = (f"error: {exported} is an export, not a run to resume (hint: train its recipe into a new run: "
            f"mmgen train {exported} --out NEW_RUN)")
    assert cli_error(cli("train", exported, "--resume")) == line
    assert cli_error(cli("train", tiny_recipe, "--out", exported, "--resume")) == line
    assert files_of(exported) == before


def test_the_manifest_needs_only_the_plugins_of_the_exported_recipe(trained_run, tmp_path):
    """The run logged to TensorBoard; the exported recipe logs as a new run does, and needs no TensorBoard."""
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    recipe = json.loads((run / "recipe.json").read_text())
    recipe["train"]["loggers"] = ["jsonl", "tensorboard"]
    (run / "recipe.json").write_text(json.dumps(recipe))
    export = export_run(run, tmp_path / "export")
    loggers = [n["kind"] for n in json.loads((export / "export.json").read_text())["needs"]
               if n["category"] == "loggers"]
    assert loggers == json.loads((export / "recipe.json").read_text())["train"]["loggers"] == ["jsonl"]
    assert "tensorboard" not in (export / "README.md").read_text()


def test_a_run_without_versions_json_exports_its_versions_as_unknown(trained_run, tmp_path):
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    (run / "versions.json").unlink()
    export = export_run(run, tmp_path / "export")
    versions = json.loads((export / "versions.json").read_text())
    assert versions == {"unknown": "the run this was exported from had no versions.json: the versions that trained "
                                   "it are not known"}
    card = (export / "README.md").read_text()
    assert "| trained with | unknown: the run had no versions.json |" in card
    assert "| `versions.json` | that the versions of the training are not known |" in card


def test_export_into_the_empty_working_folder_fills_it_in_place(cli, trained_run, workdir, monkeypatch):
    """``mmgen export RUN .``: the folder the shell is in is filled, not replaced by another of its name."""
    here = workdir / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    inode = here.stat().st_ino
    result = cli("export", trained_run, ".")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(here)
    assert (here / "export.json").is_file() and here.stat().st_ino == inode
    assert Path.cwd() == here and mmgen.load_run(".", device="cpu").epoch == 1
    assert sorted(p.name for p in workdir.iterdir()) == ["here"]  # nothing left beside it
    assert not [p for p in here.iterdir() if p.name.startswith(".")]  # nor in it


def test_a_run_written_before_exports_existed_exports(cli, tiny_mnist_root, tmp_path, monkeypatch):
    monkeypatch.setenv("MMGEN_DATA_ROOT", str(tiny_mnist_root))
    legacy = Path(shutil.copytree(LEGACY, tmp_path / "legacy_run"))
    result = cli("export", legacy, tmp_path / "legacy_export")
    assert result.exit_code == 0, result.output
    export = tmp_path / "legacy_export"
    assert result.stdout.strip() == str(export)
    assert json.loads((export / "versions.json").read_text())["mmgen"] == "0.1.0"  # what trained it, kept
    ours = mmgen.load_run(legacy, device="cpu").sample(5, {"label": 3}, seed=0)["image"]
    theirs = mmgen.load_run(export, device="cpu").sample(5, {"label": 3}, seed=0)["image"]
    assert torch.equal(ours, theirs)
    assert "No evaluation came with this model" in (export / "README.md").read_text()


def test_last_weights_export_as_last(trained_run, tmp_path):
    export = export_run(trained_run, tmp_path / "last", which="last")
    assert (export / "last.safetensors").is_file() and not (export / "best.safetensors").exists()
    assert json.loads((export / "export.json").read_text())["weights"]["chosen"] == "last"
    assert mmgen.load_run(export, device="cpu", which="last").epoch == 1
    assert mmgen.load_run(export, device="cpu").epoch == 1  # best falls back to last, as in a run


def test_an_export_of_the_best_weights_has_no_last_and_says_so(cli, cli_error, exported):
    assert cli_error(cli("sample", exported, "--weights", "last")) == (
        f"error: {exported} is an export of the run's best weights (epoch 1); it holds no others "
        "(hint: leave out --weights last)")


@pytest.mark.parametrize("existing", ["file", "full folder"])
def test_an_existing_destination_is_refused_and_left_alone(cli, cli_error, trained_run, tmp_path, existing):
    dest = tmp_path / "dest"
    if existing == "file":
        dest.write_text("mine")
    else:
        dest.mkdir()
        (dest / "mine.txt").write_text("mine")
    line = cli_error(cli("export", trained_run, dest))
    assert line == (f"error: {dest} is a file, not a folder to export into (hint: name a new folder)" if existing ==
                    "file" else f"error: {dest} already exists and is not empty; not overwriting it "
                    "(hint: name a new folder, or delete that one)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest"]  # no half-written export beside it


def test_an_empty_destination_folder_is_filled(trained_run, tmp_path):
    (tmp_path / "empty").mkdir()
    assert (export_run(trained_run, tmp_path / "empty") / "export.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_the_data_record_travels_with_the_export(evaluated_run, tmp_path):
    """A run's data record (MNIST-SVHN's pairs) is part of what it was trained on: the export carries it."""
    run = Path(shutil.copytree(evaluated_run, tmp_path / "run"))
    save_tensors(data_record_path(run), {"train pairs": torch.arange(6, dtype=torch.int32).reshape(3, 2)})
    dest = export_run(run, tmp_path / "export")
    assert (dest / DATA_RECORD).read_bytes() == data_record_path(run).read_bytes()
    assert not (dest / "sampler-gmm.safetensors").exists()  # a cache eval refits, not part of the model

"""``mmgen eval`` on the tiny trained run: the table, --json and eval.json, proposals, splits,
errors and pictures. Small -K, --limit and --per-class keep each call well under a second once
the judge's classifier is cached (trained once per module, under a temporary MMGEN_CACHE)."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from mmgen.cli import app

ANSI = re.compile(r"\x1b\[[0-9;]*m")

FAST = ("-K", "5", "--limit", "20", "--per-class", "5", "--device", "cpu")
ESTIMATES = {  # key -> proposal, by default each estimate's own modalities
    "log p(image)": "q(z|image)",
    "log p(label)": "q(z|label)",
    "log p(image,label)": "q(z|image,label)",
    "log p(image|label)": "q(z|image,label) - q(z|label)",
    "log p(label|image)": "q(z|image,label) - q(z|image)",
}
FRACTIONS = ("accuracy image->label", "coherence label->image", "coherence joint")
PICTURES = ("fid.png", "samples-prior.png", "samples-given-label.png", "samples-given-image.png",
            "samples-given-both.png", "reconstructions.png", "curves.png")


@pytest.fixture(scope="module", autouse=True)
def _classifier_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MMGEN_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture
def run(trained_run, tmp_path) -> Path:
    """A private copy of the trained run: eval writes eval.json and pictures into it."""
    return Path(shutil.copytree(trained_run, tmp_path / "run"))


@pytest.fixture(scope="module")
def table_eval(trained_run, tmp_path_factory, _classifier_cache):
    """One default ``mmgen eval`` (table and pictures) shared by the tests that only read it."""
    run = Path(shutil.copytree(trained_run, tmp_path_factory.mktemp("table") / "run"))
    result = CliRunner().invoke(app, ["eval", str(run), *FAST])
    assert result.exit_code == 0, result.output
    return result, run


def table_rows(stdout: str) -> dict[str, list[str]]:
    """Rich's table -> {quantity: [value, ± s.e., how]}; a line with no value continues the row above."""
    rows: dict[str, list[str]] = {}
    last = None
    for line in ANSI.sub("", stdout).splitlines():
        if not line.startswith("│"):
            continue
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if cells[1] or last is None:
            last = cells[0]
            rows[last] = cells[1:]
        else:  # a wrapped cell
            merged = " ".join(p for p in (last, cells[0]) if p)
            rows[merged] = [" ".join(p for p in pair if p) for pair in zip(rows.pop(last), cells[1:])]
            last = merged
    return rows


def strict_json(text: str):
    """RFC 8259 JSON: NaN and Infinity, which Python's json accepts, are refused."""

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def floats(value):
    """Every number in a JSON value."""
    if isinstance(value, dict):
        return [x for v in value.values() for x in floats(v)]
    if isinstance(value, list):
        return [x for v in value for x in floats(v)]
    return [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else []


# ---- the table -----------------------------------------------------------------------------------
def test_table_lists_every_estimate_with_its_proposal(table_eval):
    result, run = table_eval
    rows = table_rows(result.stdout)
    report = json.loads((run / "eval.json").read_text())
    for key, proposal in ESTIMATES.items():
        value, stderr, how = rows[key]
        ks = f"{report[key]['K']}" + (f" - {report[key]['K rest']}" if "K rest" in report[key] else "")
        assert report[key]["K"] >= 5 and how == f"{proposal}, K={ks}, n={report[key]['n']}", (key, how)
        assert float(value) == pytest.approx(report[key]["value"], abs=0.006)
        assert float(stderr) == pytest.approx(report[key]["stderr"], abs=0.006) and float(stderr) > 0
        assert float(value) < 0  # log-probabilities of discrete and [0, 1]-valued data
    for key in FRACTIONS:
        value, stderr, how = rows[key]
        assert 0 <= float(value) <= 1 and (stderr, how) == ("", "")
        assert float(value) == pytest.approx(report[key], abs=6e-5)
    assert "(epoch 1), test split" in ANSI.sub("", result.stdout).replace("\n", " ")
    assert "20 examples in " in result.stdout


def test_table_run_states_conventions_and_progress_goes_to_stderr(table_eval):
    result, _ = table_eval
    out = ANSI.sub("", result.stdout)
    assert "image: Bernoulli log-probability" in out and "label: categorical log-probability" in out
    assert "IWAE estimates with K=5 on 20 examples" in result.stderr
    assert "IWAE" not in out


# ---- --json and eval.json ------------------------------------------------------------------------
def test_json_is_eval_json(cli, run):
    result = cli("eval", run, *FAST, "--json", "--no-pictures")
    assert result.exit_code == 0, result.output
    printed = strict_json(result.stdout)
    assert printed == strict_json((run / "eval.json").read_text())
    assert result.stderr == ""  # no progress lines around the JSON either

    assert (printed["split"], printed["examples"], printed["K"], printed["epoch"]) == ("test", 20, 5, 1)
    assert printed["proposal"] == "per estimate (the modalities scored)"
    for key, proposal in ESTIMATES.items():
        assert printed[key]["proposal"] == proposal and printed[key]["n"] == 20
    for key in FRACTIONS:
        assert 0 <= printed[key] <= 1
    per = printed["coherence label->image per class"]
    assert len(per) == 10 and all(x * 5 == round(x * 5) for x in per)  # 5 samples per class
    assert printed["coherence label->image"] == pytest.approx(sum(per) / 10)
    assert 20 * printed["accuracy image->label"] == pytest.approx(round(20 * printed["accuracy image->label"]))
    assert 0 <= printed["classifier accuracy image (test)"] <= 1
    assert all(math.isfinite(x) for x in floats(printed))
    assert "pictures" not in printed and not list(run.glob("*.png"))  # --no-pictures


def test_json_of_a_single_example_is_still_json(cli, run):
    result = cli("eval", run, "-K", "5", "--limit", "1", "--per-class", "2", "--json", "--no-pictures")
    assert result.exit_code == 0, result.output
    assert strict_json(result.stdout)["examples"] == 1
    strict_json((run / "eval.json").read_text())


def test_proposal_image_is_used_for_every_estimate(cli, run):
    result = cli("eval", run, *FAST, "--json", "--no-pictures", "--proposal", "image")
    assert result.exit_code == 0, result.output
    report = strict_json(result.stdout)
    assert report["proposal"] == "q(z|image)"
    for key in ESTIMATES:
        assert set(report[key]["proposal"].split(" - ")) == {"q(z|image)"}, key
    assert all(math.isfinite(x) for x in floats(report))


def test_unknown_proposal_is_one_error_line(cli, cli_error, run):
    line = cli_error(cli("eval", run, *FAST, "--proposal", "sound"))
    assert "'sound'" in line and "image, label" in line
    assert not (run / "eval.json").exists()


# ---- splits --------------------------------------------------------------------------------------
def test_split_val(cli, run):
    result = cli("eval", run, "-K", "5", "--per-class", "2", "--json", "--no-pictures", "--split", "val")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["split"] == "val" and report["examples"] == 50  # the tiny recipe's data.val_size
    assert report["log p(image)"]["n"] == 50


def test_split_test_is_the_default_and_uses_the_whole_split(cli, run):
    result = cli("eval", run, "-K", "5", "--per-class", "2", "--json", "--no-pictures")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["examples"] == 100  # conftest.N_TEST


@pytest.mark.parametrize("split", ["train", "nope"])
def test_other_splits_are_one_error_line(cli, cli_error, run, split):
    line = cli_error(cli("eval", run, *FAST, "--split", split))
    assert f"split '{split}'" in line and "test, val" in line
    assert not (run / "eval.json").exists()


def test_a_split_the_dataset_lacks_is_one_error_line(cli, cli_error, run, monkeypatch):
    import mmgen.eval.report

    real = mmgen.eval.report.build_dataset

    class WithoutVal:
        def __init__(self, recipe):
            self.dataset = real(recipe)

        def load(self):
            return {k: v for k, v in self.dataset.load().items() if k != "val"}

    monkeypatch.setattr(mmgen.eval.report, "build_dataset", WithoutVal)
    line = cli_error(cli("eval", run, *FAST, "--split", "val", "--json"))  # --json: no progress lines
    assert "has no 'val' split (it has train, test)" in line


# ---- bad run directories -------------------------------------------------------------------------
def test_run_without_weights_is_one_error_line(cli, cli_error, run):
    for weights in run.glob("*.safetensors"):
        weights.unlink()
    line = cli_error(cli("eval", run, *FAST))
    assert str(run) in line and "weights" in line
    assert not (run / "eval.json").exists()


def test_folder_that_is_not_a_run_is_one_error_line(cli, cli_error, tmp_path):
    line = cli_error(cli("eval", tmp_path, *FAST))
    assert "not a mmgen run directory" in line


# ---- pictures ------------------------------------------------------------------------------------
def test_pictures_are_written_and_are_pngs(table_eval):
    _, run = table_eval
    report = json.loads((run / "eval.json").read_text())
    assert sorted(Path(p).name for p in report["pictures"]) == sorted(PICTURES)
    sizes = {}
    for name in PICTURES:
        with Image.open(run / name) as img:
            assert img.format == "PNG", name
            img.load()  # decodes the whole file: a truncated PNG fails here
            sizes[name] = img.size
    grid = 10 * 30 + 2  # 10 tiles of 28 pixels with 2 of padding, and captions left of and above them
    for name in ("samples-prior.png", "samples-given-label.png", "samples-given-image.png", "samples-given-both.png"):
        width, height = sizes[name]  # 10 rows: one per class (given ones) or 10 prior rows
        assert width >= grid and grid < height < grid + 40, name
    width, height = sizes["reconstructions.png"]  # 20 originals over their reconstructions
    assert width > grid and 4 * 30 + 2 < height < 4 * 30 + 2 + 40
    assert sizes["curves.png"][0] > sizes["curves.png"][1] > 100


def test_a_binarized_given_image_is_shown_as_the_model_saw_it(cli, tiny_recipe, tmp_path):
    # BinaryMNIST: the first tile of each row must be the very binarization the samples were drawn given.
    import mmgen
    from mmgen.recipe import build_dataset

    out = tmp_path / "binary"
    assert cli("train", tiny_recipe, "modalities.image.binarize=true", "--out", out).exit_code == 0
    result = cli("eval", out, *FAST)
    assert result.exit_code == 0, result.output
    loaded = mmgen.load_run(out)
    test = build_dataset(loaded.recipe).load()["test"]
    with Image.open(out / "samples-given-image.png") as img:
        grid = torch.from_numpy(np.array(img.convert("L")))
    top, left = grid.shape[0] - 302, grid.shape[1] - 302  # the grid sits in the bottom-right corner, under captions
    for row, k in enumerate(int(k) for k in test["label"].unique()):
        i = int((test["label"] == k).nonzero()[0])
        seen = loaded.prepare_given({"image": test["image"][i : i + 1]})["image"][0, 0]  # (28, 28) in {0, 1}
        tile = grid[top + 2 + row * 30 : top + 30 + row * 30, left + 2 : left + 30]
        assert torch.equal(tile, (seen * 255).to(torch.uint8)), k


def test_a_failing_picture_is_a_warning_and_eval_json_is_kept(cli, run, monkeypatch):
    import mmgen.cli.evaluate

    def broken(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'matplotlib'")

    monkeypatch.setattr(mmgen.cli.evaluate, "write_pictures", broken)
    result = cli("eval", run, *FAST)
    assert result.exit_code == 0, result.output
    assert "warning: the pictures were not drawn: ModuleNotFoundError" in " ".join(result.stderr.split())
    report = json.loads((run / "eval.json").read_text())
    assert report["pictures"] == [] and report["log p(image,label)"]["n"] > 0

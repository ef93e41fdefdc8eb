"""``hf://ORG/NAME[@REVISION]``: every command that takes a run downloads it into the Hub's cache and loads
it as an export; offline, a cached model loads and anything else is one line saying what to do.

These machines cannot reach the Hub. The downloads go through huggingface_hub's own code to a stand-in
at the network boundary (tests/support/fake_hub.py), so the cache is the one huggingface_hub writes;
the offline runs are separate processes started with HF_HUB_OFFLINE=1, as a user would set it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import constants, scan_cache_dir, snapshot_download

import mmgen
from mmgen import CheckpointError, MmgenError
from mmgen.run.hub import HubModel, parse_reference
from mmgen.share.export import export_run
from tests.support import REPO_ROOT
from tests.support.fake_hub import FakeHub, serve


@pytest.mark.parametrize(("text", "model"), [
    ("hf://my-lab/tiny", HubModel("my-lab/tiny")),
    ("hf://my-lab/tiny@v1.0", HubModel("my-lab/tiny", "v1.0")),
    ("hf://my-lab/tiny@refs/pr/3", HubModel("my-lab/tiny", "refs/pr/3")),
    (Path("hf://my-lab/tiny"), HubModel("my-lab/tiny")),  # typer's Path folds the slashes: hf:/my-lab/tiny
    ("runs/tiny", None),
    (Path("exports/hf"), None),
])
def test_references(text, model):
    assert parse_reference(text) == model


@pytest.mark.parametrize("text", ["hf://tiny", "hf://a/b/c", "hf://my-lab/tiny@", "hf://my-lab/"])
def test_a_malformed_reference_is_one_line(text):
    with pytest.raises(CheckpointError, match="not a Hub model") as info:
        parse_reference(text)
    assert info.value.hint == "a Hub model is named hf://ORG/NAME or hf://ORG/NAME@REVISION"


@pytest.fixture(scope="module")
def export(trained_run, tmp_path_factory) -> Path:
    return export_run(trained_run, tmp_path_factory.mktemp("exports") / "tiny", repo_id="my-lab/tiny")


@pytest.fixture
def hub(export, tmp_path, monkeypatch):
    """The stand-in Hub serving the export as my-lab/tiny, and an empty Hub cache of this test's own."""
    fake = FakeHub()
    fake.commit = fake.publish("my-lab/tiny", export)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))  # read at each download
    restore = serve(fake)
    yield fake
    restore()


def samples(run_ref, seed: int = 0) -> torch.Tensor:
    return mmgen.load_run(run_ref, device="cpu").sample(6, {"label": 3}, seed=seed)["image"]


def test_a_hub_model_is_downloaded_into_the_hubs_cache_and_samples_as_its_run(hub, trained_run):
    assert torch.equal(samples("hf://my-lab/tiny"), samples(trained_run))
    (repo,) = scan_cache_dir(constants.HF_HUB_CACHE).repos  # huggingface_hub's own reading of its cache
    assert repo.repo_id == "my-lab/tiny" and repo.repo_type == "model"
    (revision,) = repo.revisions
    assert revision.commit_hash == hub.commit and revision.refs == {"main"}
    assert {f.file_name for f in revision.files} == {p.name for p in Path(revision.snapshot_path).iterdir()}
    run = mmgen.load_run(f"hf://my-lab/tiny@{hub.commit}", device="cpu")
    assert run.run_dir.path == Path(revision.snapshot_path) and str(run.hub) == f"hf://my-lab/tiny@{hub.commit}"


def test_sample_writes_a_hub_models_grid_here_not_into_the_cache(cli, hub, workdir):
    result = cli("sample", "hf://my-lab/tiny", "--given", "label=3", "-n", "4")
    assert result.exit_code == 0, result.output
    (grid,) = workdir.glob("samples-label3-*.png")
    assert result.stdout.strip().splitlines()[-1] == f"wrote {grid.name}"
    assert not list(Path(constants.HF_HUB_CACHE).rglob("samples-label3-*"))


def test_a_hub_model_exports_like_any_run(cli, hub, export, tmp_path):
    result = cli("export", "hf://my-lab/tiny", tmp_path / "again")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "again" / "best.safetensors").read_bytes() == (export / "best.safetensors").read_bytes()


def test_a_cached_model_loads_without_network(hub, trained_run):
    mmgen.load_run("hf://my-lab/tiny", device="cpu")  # cached
    hub.reachable = False
    assert torch.equal(samples("hf://my-lab/tiny"), samples(trained_run))


def test_without_network_a_model_not_cached_is_one_line(cli, cli_error, hub):
    hub.reachable = False
    line = cli_error(cli("sample", "hf://my-lab/tiny", "--given", "label=3"))
    assert line == (f"error: hf://my-lab/tiny is not (or not completely) in the Hugging Face cache "
                    f"{constants.HF_HUB_CACHE}, and the Hub cannot be reached (ConnectError: [Errno -2] Name or "
                    "service not known (a test without network)) (hint: connect to the network and run again, or "
                    "copy its export folder here and load that folder by its path)")


@pytest.mark.parametrize(("ref", "line"), [
    ("hf://my-lab/nothing", "error: hf://my-lab/nothing: no such model on the Hub, or it is private or gated "
                            "(hint: check the name; for a private model log in with `hf auth login` or set HF_TOKEN)"),
    ("hf://my-lab/tiny@v9", "error: hf://my-lab/tiny@v9: the Hub model my-lab/tiny has no revision 'v9' "
                            "(hint: name a branch, tag or commit it has)"),
])
def test_what_the_hub_does_not_have_is_one_line(cli, cli_error, hub, ref, line):
    assert cli_error(cli("eval", ref, "--fast")) == line


def test_a_repository_that_is_no_export_is_refused_after_a_few_small_files(hub, tmp_path):
    other = tmp_path / "bert"
    other.mkdir()
    (other / "config.json").write_text("{}")
    (other / "model.safetensors").write_bytes(b"\0" * 1000)
    hub.publish("someone/bert", other)
    with pytest.raises(CheckpointError, match=r"^hf://someone/bert is not an mmgen export: it has no export.json$"):
        mmgen.load_run("hf://someone/bert")
    assert not any("model.safetensors" in r for r in hub.requested)  # only an export's files are fetched


def test_a_run_directory_pushed_by_hand_is_refused_for_it_has_no_manifest_to_check(cli, cli_error, hub, trained_run,
                                                                                   tmp_path):
    """recipe.json and weights, but no export.json: nothing to hold the weights and recipe to."""
    bare = Path(shutil.copytree(trained_run, tmp_path / "bare"))
    hub.publish("my-lab/bare", bare)
    assert cli_error(cli("sample", "hf://my-lab/bare", "--given", "label=3")) == (
        "error: hf://my-lab/bare is not an mmgen export: it has no export.json (hint: export a run with "
        "`mmgen export RUN DEST` and push it with `mmgen push`)")


def test_a_hub_model_trains_its_recipe_into_a_new_run(cli, cli_error, hub, export, workdir, tiny_mnist_root,
                                                      monkeypatch):
    monkeypatch.setenv("MMGEN_DATA_ROOT", str(tiny_mnist_root))
    result = cli("train", "hf://my-lab/tiny", "--out", "runs/again", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert (workdir / "runs" / "again" / "best.safetensors").read_bytes() == (export / "best.safetensors").read_bytes()
    result = cli("train", "hf://my-lab/tiny", "--device", "cpu")  # no --out: a new run, never into the cache
    assert result.exit_code == 0, result.output
    assert [p.name.startswith("tiny-") for p in (workdir / "runs").iterdir()].count(True) == 1
    assert cli_error(cli("train", "hf://my-lab/tiny", "--resume")) == (
        "error: hf://my-lab/tiny is an export, not a run to resume (hint: train its recipe into a new run: "
        "mmgen train hf://my-lab/tiny --out NEW_RUN)")


def test_the_hub_extra_missing_is_one_line_with_the_pip_command(cli, cli_error, monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # `import huggingface_hub` raises ImportError
    line = cli_error(cli("sample", "hf://my-lab/tiny"))
    assert line == ("error: loading hf://my-lab/tiny needs the huggingface_hub package, which is not installed "
                    "(hint: pip install 'mmgen[hub]' (or pip install huggingface_hub))")
    with pytest.raises(MmgenError, match="needs the huggingface_hub package"):
        mmgen.load_run("hf://my-lab/tiny")


def offline_mmgen(cache: Path, *args) -> subprocess.CompletedProcess:
    """``mmgen ARGS`` in a new process with HF_HUB_OFFLINE=1 and ``cache`` as the Hub's cache."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "mmgen", *map(str, args)], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_offline_a_cached_model_loads_and_anything_else_is_one_line(hub, trained_run, tmp_path):
    """One process per case, since huggingface_hub reads HF_HUB_OFFLINE when it is imported."""
    cache = Path(constants.HF_HUB_CACHE)
    snapshot_download("my-lab/tiny", cache_dir=cache)  # huggingface_hub's own download fills the cache
    out = tmp_path / "threes.npy"
    done = offline_mmgen(cache, "sample", "hf://my-lab/tiny", "--given", "label=3", "-n", "6", "--seed", "0",
                         "--out", out)
    assert done.returncode == 0, done.stderr
    assert np.array_equal(np.load(out), samples(trained_run).numpy())
    refused = offline_mmgen(cache, "sample", "hf://my-lab/other")
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        f"error: hf://my-lab/other is not (or not completely) in the Hugging Face cache {cache}, and "
        "HF_HUB_OFFLINE=1 forbids downloading it (hint: download it once without HF_HUB_OFFLINE on a machine with "
        "network, or copy its export folder here and load that folder by its path)"]


def test_eval_writes_a_hub_models_report_here_and_leaves_the_cache_as_downloaded(cli, hub, workdir, tiny_mnist_root,
                                                                                monkeypatch):
    monkeypatch.setenv("MMGEN_DATA_ROOT", str(tiny_mnist_root))
    snapshot = mmgen.load_run("hf://my-lab/tiny", device="cpu").run_dir.path
    before = {p: p.read_bytes() for p in Path(constants.HF_HUB_CACHE).rglob("*") if p.is_file()}
    result = cli("eval", "hf://my-lab/tiny", "-K", "2", "--limit", "20")
    assert result.exit_code == 0, result.output
    assert (workdir / "eval.json").is_file() and list(workdir.glob("*.png"))
    after = {p: p.read_bytes() for p in Path(constants.HF_HUB_CACHE).rglob("*") if p.is_file()}
    assert after == before and snapshot.is_dir()

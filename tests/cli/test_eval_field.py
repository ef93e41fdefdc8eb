"""``mmgen eval``'s field metrics (FID, post-hoc samplers, latent probes) and ``mmgen sample --sampler`` on the
tiny trained run: what eval.json holds, what the options turn off, and the one-line refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mmgen.share.reproduce import eval_command

FAST = ("-K", "3", "--limit", "40", "--per-class", "5", "--device", "cpu", "--no-pictures")


@pytest.fixture(scope="module", autouse=True)
def _classifier_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MMGEN_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture
def run(trained_run, tmp_path) -> Path:
    return Path(shutil.copytree(trained_run, tmp_path / "run"))


def report_of(run: Path) -> dict:
    return json.loads((run / "eval.json").read_text())


def test_eval_reports_fid_per_sampler_the_gmm_and_the_probe(cli, run):
    result = cli("eval", run, *FAST, "--probe-train", "30")
    assert result.exit_code == 0, result.output
    report = report_of(run)
    fid = report["fid"]
    assert fid["samples"] == 40 and set(fid["unconditional"]) == {"prior", "gmm"}
    assert "judge" in fid["features"]["image"] and "not Inception" in fid["features"]["image"]
    assert all(v >= 0 for sampler in fid["unconditional"].values() for v in sampler.values())
    assert list(fid["conditional per subset"]["image"]) == ["label"]  # the image given the other modality
    assert 0 <= report["coherence joint (gmm)"] <= 1 and "coherence joint" in report
    assert report["latent samplers"]["gmm"]["components"] >= 1
    assert (run / "sampler-gmm.safetensors").is_file()  # fitted once, cached beside the weights
    assert list(report["latent probe per subset"]) == ["image"]  # the label is the class itself: excluded
    assert report["latent probe settings"]["n_train"] == 30 and report["latent probe settings"]["excluded"] == ["label"]
    assert report["settings"]["samplers"] == ["prior", "gmm"] and report["settings"]["probe_train"] == 30
    assert "FID image," in result.stdout and "latent probe," in result.stdout  # rows of the table (wrapped)
    assert "--probe-train 30" in eval_command(report, "RUN")  # the card's command makes these numbers again


def test_the_options_turn_each_part_off(cli, run):
    result = cli("eval", run, *FAST, "--no-fid", "--no-probe", "--sampler", "prior")
    assert result.exit_code == 0, result.output
    report = report_of(run)
    assert "fid" not in report and "latent probe" not in report and "coherence joint (gmm)" not in report
    assert not (run / "sampler-gmm.safetensors").exists()  # nothing fitted that nothing uses
    assert eval_command(report, "RUN").endswith("--no-fid --sampler prior --no-probe")


@pytest.mark.parametrize(("option", "words"), [
    (("--fid-features", "vgg"), "--fid-features 'vgg': choose judge or inception"),
    (("--sampler", "flow"), "--sampler 'flow': the latent samplers are prior, gmm"),
])
def test_a_wrong_choice_is_one_line_before_anything_loads(cli, cli_error, run, option, words):
    line = cli_error(cli("eval", run, *FAST, *option))
    assert words in line
    assert not (run / "eval.json").exists()


def test_inception_without_its_weights_is_one_line(cli, cli_error, run, tmp_path):
    line = cli_error(cli("eval", run, *FAST, "--fid-features", "inception",
                         "--inception-weights", tmp_path / "absent.pth"))
    assert "absent.pth" in line


def test_sample_from_the_gmm_is_seeded_and_refuses_a_given(cli, cli_error, run, tmp_path):
    first, again = tmp_path / "a.npy", tmp_path / "b.npy"
    for out in (first, again):
        result = cli("sample", run, "--sampler", "gmm", "-n", "6", "--seed", "3", "--out", out)
        assert result.exit_code == 0, result.output
    assert "gmm sampler" in result.stdout
    image = np.load(first)  # images come first: x.npy holds them
    assert image.shape[0] == 6 and np.array_equal(image, np.load(again))
    prior = tmp_path / "p.npy"
    assert cli("sample", run, "-n", "6", "--seed", "3", "--out", prior).exit_code == 0
    assert not np.array_equal(image, np.load(prior))  # another sampler, other latents
    assert "leave out --given" in cli_error(cli("sample", run, "--sampler", "gmm", "--given", "label=3"))
    assert "choose one of prior, gmm" in cli_error(cli("sample", run, "--sampler", "maf"))

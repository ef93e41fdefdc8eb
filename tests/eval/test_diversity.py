"""Diversity of samples given a class: mean pairwise distance of decoded means over that of real images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import mmgen
from mmgen import DiagonalGaussian
from mmgen.eval.class_spaces import crossmodal_metrics, crossmodal_setup
from mmgen.eval.diversity import diversity, mean_pairwise_distance
from mmgen.eval.judge import as_unit_float
from mmgen.model import prepare_fixed
from mmgen.recipe import build_dataset


def test_mean_pairwise_distance():
    points = torch.tensor([[0.0, 0.0], [3.0, 0.0], [3.0, 4.0]])  # pair distances 3, 4 and 5
    assert mean_pairwise_distance(points) == pytest.approx(4.0)
    assert mean_pairwise_distance(points[:1]) == 0.0


@pytest.fixture(scope="module")
def run(trained_run):
    return mmgen.load_run(trained_run, device="cpu")


def real_test(run):
    test = build_dataset(run.recipe).load()["test"]
    return as_unit_float(test["image"]), test["label"]


def test_a_collapsed_posterior_has_no_diversity(run, monkeypatch):
    images, labels = real_test(run)
    _, per = diversity(run.model, "label", "image", images, labels, 10, per_class=8)
    assert all(p is not None and p > 0 for p in per)
    posterior = run.model.posterior
    monkeypatch.setattr(run.model, "posterior", lambda batch, present=None: DiagonalGaussian(
        posterior(batch).mean, torch.full_like(posterior(batch).mean, -40.0)))  # a point mass per class
    mean, per = diversity(run.model, "label", "image", images, labels, 10, per_class=8)
    assert mean == pytest.approx(0.0, abs=1e-6)


def test_real_images_against_themselves_are_one(run, monkeypatch):
    images, labels = real_test(run)
    # Decoding returns the real images of the class: the ratio is exactly 1.
    monkeypatch.setattr(run.model.modalities["image"], "mean", lambda params: params)
    monkeypatch.setattr(run.model.modalities["image"], "decode", lambda z: images[labels == int(z.sum() < -1e9)][:8])
    monkeypatch.setattr(run.model, "posterior", lambda batch, present=None: DiagonalGaussian(
        torch.zeros(8, run.model.latent_dim), torch.zeros(8, run.model.latent_dim)))
    _, per = diversity(run.model, "label", "image", images, labels, 10, per_class=8)
    assert per[0] == pytest.approx(1.0)


def test_the_reference_is_the_real_images_never_binarized(run):
    splits = build_dataset(run.recipe).load()
    test = {k: v[:200] for k, v in splits["test"].items()}
    setup = crossmodal_setup(run.model, splits["train"], "label", torch.device("cpu"), run.recipe.data.kind)
    inputs = prepare_fixed(run.model.modalities, {n: test[n] for n in run.model.names}, 0, "cpu")
    grey = as_unit_float(test["image"])
    inputs["image"] = (grey > 0.5).float()  # as a binarizing image modality prepares them

    def measured(real):
        return crossmodal_metrics(run.model, setup, inputs, {"label": test["label"]}, None, 4, real=real)

    default, given = measured(None)["diversity label->image"], measured({"image": grey})["diversity label->image"]
    assert given != pytest.approx(default)  # the grey images, not the binarized inputs, are the reference
    assert measured({"image": grey / 2})["diversity label->image"] == pytest.approx(2 * given)


def test_mmgen_eval_reports_diversity_per_class(cli, trained_run, tmp_path):
    out = Path(shutil.copytree(trained_run, tmp_path / "run"))
    result = cli("eval", out, "-K", "3", "--limit", "40", "--per-class", "4", "--no-pictures")
    assert result.exit_code == 0, result.output
    report = json.loads((out / "eval.json").read_text())
    assert report["diversity label->image"] >= 0 and len(report["diversity label->image per class"]) == 10
    assert "diversity label->image" in result.stdout

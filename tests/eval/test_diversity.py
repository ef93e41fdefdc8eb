"""Diversity of samples given a class: mean pairwise distance of decoded means of samples given the class over
that of the model's decoded reconstructions of the class's real test images (mmgen/eval/diversity.py)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn
from torch.distributions import Independent, Normal

import mmgen
from mmgen import DiagonalGaussian, Modality, ModalityConfig, Model, ModelConfig, diagonal_normal
from mmgen.eval.class_spaces import crossmodal_metrics, crossmodal_setup
from mmgen.eval.diversity import diversity, mean_pairwise_distance
from mmgen.eval.judge import as_unit_float
from mmgen.model import prepare_fixed
from mmgen.recipe import build_dataset

SHAPE, PER_CLASS = (1, 4, 4), 30


class Pixels(Modality):
    """Latents are the pixels; the decoded mean pulls them halfway to grey, as a decoder's smooth means do."""

    def __init__(self, name: str = "image"):
        super().__init__(name, ModalityConfig(kind="pixels"), math.prod(SHAPE))

    def encode(self, x: Tensor):
        raise NotImplementedError  # the stub model's posterior reads the pixels directly

    def decode(self, z: Tensor) -> Tensor:
        return z.unflatten(-1, SHAPE)  # (*S, 16) -> (*S, 1, 4, 4)

    def likelihood(self, params: Tensor) -> Independent:
        return Independent(Normal(params, 1.0), 3)

    def mean(self, params: Tensor) -> Tensor:
        return 0.25 + 0.5 * params  # less varied than the data, like any decoder's means

    def parse_given(self, value):
        raise NotImplementedError


class Label(Pixels):
    """A class label: ``examples_of`` gives the classes themselves."""

    def examples_of(self, classes: Tensor, generator=None) -> Tensor:
        return classes


class Reconstructing(Model):
    """q(z | image) = N(its pixels, σ²); q(z | label k) = N(the pixels of the first ``PER_CLASS`` real images of
    class k, in order, σ²): its samples given k ARE its reconstructions of the class's test images. ``collapsed``:
    q(z | label k) is N(the first image of class k, σ²) for every draw."""

    def __init__(self, images: Tensor, labels: Tensor, log_sigma: float = math.log(0.05), collapsed: bool = False):
        super().__init__({"image": Pixels(), "label": Label("label")}, ModelConfig(latent_dim=math.prod(SHAPE)))
        self.pool = {int(k): images[labels == k][:PER_CLASS].flatten(1) for k in labels.unique()}  # k -> (n, 16)
        self.log_sigma, self.collapsed = log_sigma, collapsed
        self.anchor = nn.Parameter(torch.zeros(1))  # a device to read

    def forward(self, batch, beta=1.0, present=None):
        raise NotImplementedError

    def posterior(self, given: dict[str, Tensor], present=None):
        if "image" in given:
            mu = given["image"].flatten(1)  # (B, 16)
        else:
            k = given["label"]  # (B,), one class
            pool = self.pool[int(k[0])]
            mu = pool[:1].expand(len(k), -1) if self.collapsed else pool[torch.arange(len(k)) % len(pool)]  # (B, 16)
        return diagonal_normal(mu, torch.full_like(mu, 2 * self.log_sigma))


def class_images() -> tuple[Tensor, Tensor]:
    """Three classes of ``PER_CLASS`` grey 4x4 images (a pattern per class plus noise), interleaved, and one
    image of a fourth class."""
    g = torch.Generator().manual_seed(1)
    labels = torch.cat([torch.arange(3).repeat(PER_CLASS), torch.tensor([3])])  # (3 * PER_CLASS + 1,)
    patterns = torch.rand(4, *SHAPE, generator=g) * 0.6 + 0.2  # (4, 1, 4, 4)
    noise = (torch.rand(len(labels), *SHAPE, generator=g) - 0.5) * 0.4
    return (patterns[labels] + noise).clamp(0, 1), labels


def test_samples_that_are_reconstructions_of_the_class_score_one():
    images, labels = class_images()
    model = Reconstructing(images, labels)
    mean, per = diversity(model, "label", "image", images, labels, 4, per_class=PER_CLASS)
    assert per[3] is None  # a class with one test image has no reference
    assert all(p == pytest.approx(1.0, abs=0.05) for p in per[:3]), per
    assert mean == pytest.approx(sum(per[:3]) / 3)
    # The old definition divided by the spread of the raw images: the decoder's smoother means put even
    # this model, whose samples are its reconstructions, at little more than one half.
    for k in range(3):
        given = torch.full((PER_CLASS,), k)
        z = model.posterior({"label": given}).sample()  # (PER_CLASS, 16)
        samples = model.modalities["image"].mean(model.decode(z, ["image"])["image"])
        old = mean_pairwise_distance(samples) / mean_pairwise_distance(images[labels == k])
        assert 0.45 < old < 0.6  # the noise of q adds a little to the samples, none to the raw images


def test_a_collapsed_posterior_given_the_class_scores_zero():
    images, labels = class_images()
    model = Reconstructing(images, labels, log_sigma=-20.0, collapsed=True)
    mean, per = diversity(model, "label", "image", images, labels, 4, per_class=PER_CLASS)
    assert mean == pytest.approx(0.0, abs=1e-6) and per[3] is None


def test_the_reference_encodes_the_real_images_as_the_model_prepares_them(monkeypatch):
    # Nearly noiseless, so the ratio is exactly the ratio of spreads: preparing the real images to half their
    # intensity halves the reconstructions' spread and doubles the ratio.
    images, labels = class_images()
    model = Reconstructing(images, labels, log_sigma=-20.0)
    _, per = diversity(model, "label", "image", images, labels, 3, per_class=PER_CLASS)
    assert per == pytest.approx([1.0] * 3, abs=1e-6)
    monkeypatch.setattr(model.modalities["image"], "prepare", lambda raw, generator=None: raw / 2)
    _, per = diversity(model, "label", "image", images, labels, 3, per_class=PER_CLASS)
    assert per == pytest.approx([2.0] * 3, abs=1e-6)


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
    before, per = diversity(run.model, "label", "image", images, labels, 10, per_class=8)
    assert all(p is not None and p > 0 for p in per) and before > 0.1
    posterior = run.model.posterior
    monkeypatch.setattr(run.model, "posterior", lambda batch, present=None: DiagonalGaussian(
        posterior(batch).mean, torch.full_like(posterior(batch).mean, -40.0)))  # a point mass per class
    mean, per = diversity(run.model, "label", "image", images, labels, 10, per_class=8)
    assert mean == pytest.approx(0.0, abs=1e-4)  # float32 rounding of z = mean + 2e-9 noise, nothing more


def test_the_reference_encodes_the_real_images_given_not_the_binarized_inputs(run):
    splits = build_dataset(run.recipe).load()
    test = {k: v[:200] for k, v in splits["test"].items()}
    setup = crossmodal_setup(run.model, splits["train"], "label", torch.device("cpu"), run.recipe.data.kind)
    inputs = prepare_fixed(run.model.modalities, {n: test[n] for n in run.model.names}, 0, "cpu")
    grey = as_unit_float(test["image"])
    inputs["image"] = (grey > 0.5).float()  # as a binarizing image modality prepares them

    def measured(real):
        return crossmodal_metrics(run.model, setup, inputs, {"label": test["label"]}, None, 4, real=real)

    default, given = measured(None)["diversity label->image"], measured({"image": grey})["diversity label->image"]
    assert given != pytest.approx(default)  # the grey images, not the binarized inputs, are encoded


def test_mmgen_eval_reports_diversity_per_class(cli, trained_run, tmp_path):
    out = Path(shutil.copytree(trained_run, tmp_path / "run"))
    result = cli("eval", out, "-K", "3", "--limit", "40", "--per-class", "4", "--no-pictures")
    assert result.exit_code == 0, result.output
    report = json.loads((out / "eval.json").read_text())
    assert report["diversity label->image"] >= 0 and len(report["diversity label->image per class"]) == 10
    assert "diversity label->image" in result.stdout

"""Latent linear probes: on latents of Gaussian classes with known means and identity covariance, the probe's
test accuracy approaches the Bayes accuracy (closed form); on labels independent of the latents, chance; on a
tiny model, one accuracy per non-empty subset, averaged by size."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch
from scipy.integrate import quad
from scipy.stats import norm

from mmgen.errors import MmgenError
from mmgen.eval.representation import latent_probe_report, probe_subsets
from tests.plugins.test_mvae_family import toy_dataset  # noqa: F401 (the fixture registering the toy4 data set)
from tests.support.toy import make_batch, make_model


class MeanOfGiven:
    """A stand-in model whose inputs are latents ``(N, L)``: q(z | given) has the mean of the given ones.
    It refuses non-finite inputs (the examples a test marks missing) and logs what it was given."""

    def __init__(self, names):
        self.names, self.given = list(names), []

    def eval(self):
        return self

    def posterior(self, given, present=None):
        assert all(bool(torch.isfinite(x).all()) for x in given.values()), "a missing example reached the encoder"
        self.given.append(given)
        return SimpleNamespace(mean=torch.stack(list(given.values())).mean(0))


def gaussian_classes(means: torch.Tensor, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` latents ``(n, L)`` of classes drawn uniformly, each N(its mean, I); and the classes ``(n,)``."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(means.shape[0], (n,), generator=g)
    return means[labels] + torch.randn(n, means.shape[1], generator=g), labels


def probe_on(means: torch.Tensor, n_train: int, n_test: int = 20_000) -> float:
    z_train, y_train = gaussian_classes(means, 5000, seed=0)
    z_test, y_test = gaussian_classes(means, n_test, seed=1)
    out = latent_probe_report(MeanOfGiven(["a"]), {"a": z_train}, y_train, {"a": z_test}, y_test, n_train=n_train)
    return out["latent probe per subset"]["a"]


def test_two_classes_reach_the_bayes_accuracy_phi_of_half_the_distance():
    d, n_test = 2.0, 20_000
    means = torch.zeros(2, 3)
    means[0, 0], means[1, 0] = -d / 2, d / 2
    bayes = norm.cdf(d / 2)  # 0.841
    accuracy = probe_on(means, n_train=500, n_test=n_test)
    # 4 standard errors of a test accuracy over 20,000 examples (0.010), plus 0.01 for the classifier's own
    # error: fitted to 500 examples in 3 dimensions, its direction is off by about sqrt(3 / 500) rad, which
    # costs about 0.001 of accuracy at this distance.
    assert abs(accuracy - bayes) < 4 * math.sqrt(bayes * (1 - bayes) / n_test) + 0.01


def test_four_equidistant_classes_reach_their_bayes_accuracy():
    # Means a e_k (pairwise distance a sqrt 2): the Bayes rule picks the largest coordinate, right with
    # probability P(eps_y + a > eps_k for all k != y) = integral of phi(t) Phi(t + a)^3 dt.
    a, n_test = 2.0, 20_000
    bayes = quad(lambda t: norm.pdf(t) * norm.cdf(t + a) ** 3, -math.inf, math.inf)[0]  # 0.81
    accuracy = probe_on(a * torch.eye(4), n_train=2000, n_test=n_test)
    assert abs(accuracy - bayes) < 4 * math.sqrt(bayes * (1 - bayes) / n_test) + 0.015


def test_labels_independent_of_the_latents_give_chance():
    g = torch.Generator().manual_seed(0)
    n_test = 8000
    z_train, z_test = torch.randn(2000, 3, generator=g), torch.randn(n_test, 3, generator=g)
    y_train, y_test = torch.randint(4, (2000,), generator=g), torch.randint(4, (n_test,), generator=g)
    out = latent_probe_report(MeanOfGiven(["a"]), {"a": z_train}, y_train, {"a": z_test}, y_test)
    # Whatever a classifier predicts, each independent uniform label matches it with probability 1/4.
    assert abs(out["latent probe per subset"]["a"] - 0.25) < 4 * math.sqrt(0.25 * 0.75 / n_test)
    assert abs(out["latent probe settings"]["chance"] - 0.25) < 0.02


def test_a_tiny_model_has_one_accuracy_per_subset_and_their_means_by_size(toy_dataset):  # noqa: F811
    names = ["image", "label", "tag", "extra"]
    model = make_model(tuple(names), data=toy_dataset)
    train, test = make_batch(names, 60, seed=0), make_batch(names, 40, seed=1)
    out = latent_probe_report(model, train, train["label"], test, test["label"], exclude={"label"}, n_train=30)
    per_subset = out["latent probe per subset"]
    assert len(per_subset) == 2**3 - 1 and "label" not in ",".join(per_subset)
    assert set(out["latent probe"]) == {"1", "2", "3"}
    for k, mean in out["latent probe"].items():
        values = [v for s, v in per_subset.items() if len(s.split(",")) == int(k)]
        assert mean == pytest.approx(sum(values) / len(values))
    settings = out["latent probe settings"]
    assert settings["subsets"] == 7 and settings["n_train"] == 30 and settings["n_test"] == 40
    assert settings["examples"]["image,tag,extra"] == {"train": 30, "test": 40}
    assert json.loads(json.dumps(out)) == out
    everything = latent_probe_report(model, train, train["label"], test, test["label"], n_train=30)
    assert len(everything["latent probe per subset"]) == 2**4 - 1


def test_the_same_seed_gives_the_same_numbers_and_every_subset_the_same_examples():
    means = torch.tensor([[-1.0, 0.0], [1.0, 0.0]])
    z, y = gaussian_classes(means, 3000, seed=0)
    inputs = {"a": z, "b": z + 0.1}
    model = MeanOfGiven(["a", "b"])
    first = latent_probe_report(model, inputs, y, inputs, y, n_train=100, seed=3)
    assert latent_probe_report(MeanOfGiven(["a", "b"]), inputs, y, inputs, y, n_train=100, seed=3) == first
    # Calls alternate training (100 examples) and test (3000) encodings: a, then b, then a and b.
    trained = [g for g in model.given if next(iter(g.values())).shape[0] == 100]
    assert torch.equal(trained[0]["a"], trained[2]["a"]) and torch.equal(trained[1]["b"], trained[2]["b"])


def test_examples_that_lack_a_modality_are_left_out():
    z, y = gaussian_classes(torch.tensor([[-1.0, 0.0], [1.0, 0.0]]), 400, seed=0)
    present = {"a": torch.ones(400, dtype=torch.bool), "b": torch.arange(400) % 4 != 0}  # b: 300 of 400
    b = torch.where(present["b"][:, None], z, torch.nan)  # the encoder refuses what is missing
    inputs = {"a": z, "b": b}
    out = latent_probe_report(MeanOfGiven(["a", "b"]), inputs, y, inputs, y, n_train=350,
                              present_train=present, present_test=present)
    examples = out["latent probe settings"]["examples"]
    assert examples["a"] == {"train": 350, "test": 400}
    assert examples["b"] == examples["a,b"] == {"train": 300, "test": 300}


def test_nothing_to_probe_and_labels_that_are_not_classes_are_errors():
    z, y = torch.randn(10, 2), torch.randint(2, (10,))
    with pytest.raises(MmgenError, match="excluded"):
        latent_probe_report(MeanOfGiven(["a"]), {"a": z}, y, {"a": z}, y, exclude={"a"})
    with pytest.raises(MmgenError, match=r"labels \(N,\)"):
        latent_probe_report(MeanOfGiven(["a"]), {"a": z}, y[:, None], {"a": z}, y)
    assert probe_subsets(["a", "b", "c"], {"b"}) == [("a",), ("c",), ("a", "c")]


def test_prepare_train_prepares_only_the_examples_drawn_and_changes_no_number():
    z, y = gaussian_classes(torch.tensor([[-1.0, 0.0], [1.0, 0.0]]), 3000, seed=0)
    inputs = {"a": z, "b": z + 0.1}
    stored = {k: 8 * v for k, v in inputs.items()}  # as a split is stored: prepare_train divides by 8 (exactly)
    sizes = []

    def prepare(raw):
        sizes.append({k: v.shape[0] for k, v in raw.items()})
        return {k: v / 8 for k, v in raw.items()}

    prepared = latent_probe_report(MeanOfGiven(["a", "b"]), inputs, y, inputs, y, n_train=100)
    assert latent_probe_report(MeanOfGiven(["a", "b"]), stored, y, inputs, y, n_train=100,
                               prepare_train=prepare) == prepared
    assert sizes == [{"a": 100, "b": 100}]  # once, the 100 examples every subset shares

"""Conditional coherence: the average, over every target and every subset of the others of each size,
of how often the target generated from that subset reads as the examples' class."""

from __future__ import annotations

import itertools

import pytest
import torch

from mmgen.eval.conditional import conditional_coherence
from tests.plugins.test_mvae_family import toy_dataset  # noqa: F401 (the fixture registering the toy4 data set)
from tests.support.toy import make_batch, make_model


class ReadsBySubset:
    """A reader whose answer depends on which modalities were given: right only when 'label' was."""

    def __init__(self, truth, log):
        self.truth, self.log = truth, log

    def predict(self, means):
        return self.truth if self.log[-1] else torch.full_like(self.truth, -1)


def four_modalities(toy_dataset, monkeypatch):  # noqa: F811
    """A toy model of four modalities whose readers of image and tag are right only when given the label;
    returns (model, batch, readers, given), ``given`` logging whether each posterior call had the label."""
    model = make_model(("image", "label", "tag", "extra"), data=toy_dataset)
    batch = make_batch(["image", "label", "tag", "extra"], 6)
    given: list[bool] = []
    posterior = model.posterior
    monkeypatch.setattr(model, "posterior", lambda inputs, present=None: (given.append("label" in inputs),
                                                                           posterior(inputs))[1])
    return model, batch, {t: ReadsBySubset(batch["label"], given) for t in ("image", "tag")}, given


def test_the_average_is_over_targets_and_subsets_by_size(toy_dataset, monkeypatch):  # noqa: F811
    model, batch, readers, _ = four_modalities(toy_dataset, monkeypatch)
    out = conditional_coherence(model, readers, batch, batch["label"])
    # For a target, a subset of size k of the 3 others holds 'label' in C(2, k-1) of C(3, k) cases
    # (when the target is not 'label'): 1/3, 2/3 and 1 for k = 1, 2, 3.
    expected = {str(k): len([s for s in itertools.combinations(range(3), k) if 0 in s]) / len(
        list(itertools.combinations(range(3), k))) for k in (1, 2, 3)}
    assert out["conditional coherence"] == pytest.approx(expected)
    assert out["conditional coherence per target"]["image"] == pytest.approx(expected)
    assert set(out["conditional coherence per target"]) == {"image", "tag"}


def test_a_subset_conditions_only_on_the_examples_that_have_it(toy_dataset, monkeypatch):  # noqa: F811
    model, batch, readers, given = four_modalities(toy_dataset, monkeypatch)
    present = {n: torch.full((6,), n != "label") for n in batch}  # no example has its label
    out = conditional_coherence(model, readers, batch, batch["label"], present)
    # Every subset with the label is left out: the size-3 subsets entirely, and what remains never reads right.
    assert out["conditional coherence"] == {"1": 0.0, "2": 0.0}
    assert not any(given)

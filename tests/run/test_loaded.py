"""``mmgen.load_run``: encode and sample take one example or a batch (documented shapes); a value of
the wrong shape or dtype is a GivenError, never a RuntimeError."""

from __future__ import annotations

import pytest
import torch

import mmgen
from mmgen import GivenError


@pytest.fixture(scope="module")
def run(trained_run):
    return mmgen.load_run(trained_run, device="cpu")


def test_a_batch_of_images_encodes_to_a_batch_of_posteriors(run):
    images = torch.rand(5, 1, 28, 28)
    q = run.encode({"image": images})
    assert q.batch_shape == (5,) and q.mean.shape == (5, 8)
    torch.testing.assert_close(run.encode({"image": images[2]}).mean[0], q.mean[2])  # one image = a batch of one
    assert run.encode({"image": torch.rand(5, 28, 28)}).batch_shape == (5,)  # grey images without a channel


def test_sampling_given_a_batch_is_n_samples_per_example(run):
    out = run.sample(3, given={"label": torch.tensor([1, 2, 3, 4])}, seed=0)
    assert out["image"].shape == (3, 4, 1, 28, 28)
    assert run.sample(3, given={"label": 7}, seed=0)["image"].shape == (3, 1, 28, 28)
    both = run.sample(2, given={"image": torch.rand(4, 1, 28, 28), "label": torch.arange(4)}, names=["image"])
    assert both["image"].shape == (2, 4, 1, 28, 28)


@pytest.mark.parametrize(("given", "words"), [
    ({"image": torch.rand(3, 1, 14, 14)}, "expected a tensor of shape"),
    ({"image": torch.rand(2, 3, 28, 28)}, "expected a tensor of shape"),
    ({"image": torch.full((1, 28, 28), 3.0)}, "floats in [0, 1]"),
    ({"label": torch.tensor([[1, 2]])}, "batch (N,)"),
    ({"label": torch.tensor([1.5])}, "whole numbers"),
    ({"label": torch.tensor([3, 10])}, "out of range"),
    ({"label": torch.tensor([], dtype=torch.long)}, "batch (N,)"),
    ({"image": torch.rand(3, 1, 28, 28), "label": torch.tensor([1, 2])}, "different numbers of examples"),
])
def test_a_wrong_value_is_a_given_error(run, given, words):
    with pytest.raises(GivenError, match=None) as info:
        run.encode(given)
    assert words in str(info.value)

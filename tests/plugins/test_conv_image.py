"""The convolutional image modality: every size and likelihood, gradients, and given images."""

from __future__ import annotations

import pytest
import torch

from mmgen import GivenError, RecipeError, get_registry


def make(shape=(1, 28, 28), **cfg):
    cls = get_registry().lookup("modalities", "conv_image")
    return cls("img", cls.Config(kind="conv_image", shape=shape, **cfg), 6)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 50, 50), (3, 64, 64)])
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian", "laplace"])
def test_shapes_likelihoods_and_gradients(shape, likelihood):
    modality = make(shape, likelihood=likelihood, learn_scale=likelihood != "bernoulli")
    x = torch.rand(2, *shape)
    mu, logvar = modality.encode(x)
    assert mu.shape == logvar.shape == (2, 6)
    params = modality.decode(torch.randn(3, 2, 6))  # samples S = (3, 2)
    assert params.shape == (3, 2, *shape)
    ll = modality.log_likelihood(params, x)
    assert ll.shape == (3, 2) and torch.isfinite(ll).all()
    mean = modality.mean(params)
    assert bool(((mean >= 0) & (mean <= 1)).all())
    (-modality.log_likelihood(modality.decode(mu), x).sum()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in modality.parameters())


def test_the_learned_scale_is_a_parameter_and_the_densities_are_the_textbook_ones():
    x = torch.rand(1, 1, 28, 28)
    params = torch.zeros(1, 1, 28, 28)  # location sigmoid(0) = 0.5 everywhere
    gauss = make(likelihood="gaussian", scale=0.2).log_likelihood(params, x)
    torch.testing.assert_close(gauss, torch.distributions.Normal(0.5, 0.2).log_prob(x).sum().reshape(1))
    laplace = make(likelihood="laplace", scale=0.2, learn_scale=True)
    assert any(name == "log_scale" for name, _ in laplace.named_parameters())
    torch.testing.assert_close(laplace.log_likelihood(params, x),
                               torch.distributions.Laplace(0.5, 0.2).log_prob(x).sum().reshape(1))


@pytest.mark.parametrize(("cfg", "words"), [({"shape": (2, 28, 28)}, "1 or 3 channels"),
                                            ({"shape": (1, 16, 16), "channels": [8, 8, 8, 8, 8]}, "halvings"),
                                            ({"likelihood": "laplace", "binarize": True}, "binarize")])
def test_bad_configs_are_refused(cfg, words):
    from mmgen.recipe import validate_recipe

    with pytest.raises(RecipeError, match=words):
        validate_recipe({"name": "t", "modalities": {"image": {"kind": "conv_image", **cfg}},
                         "data": {"kind": "mnist"}})


def test_given_images_and_batches():
    modality = make((3, 32, 32))
    assert modality.parse_given(torch.rand(4, 3, 32, 32)).shape == (4, 3, 32, 32)
    with pytest.raises(GivenError, match="expected a tensor of shape"):
        modality.parse_given(torch.rand(1, 28, 28))

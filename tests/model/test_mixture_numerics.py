"""Mixture posteriors (MMVAE, MoPoE) have the guarantees of the product of experts: finite values and
gradients with log-variances of ±1e4 and components far apart, under every objective."""

from __future__ import annotations

import pytest
import torch

from mmgen import FusionConfig, get_registry
from mmgen.model import DiagonalGaussian, GaussianMixture
from mmgen.model.bounds import draw_latents, kl_part, reduce_bound
from mmgen.model.mixture import bound_logvar

M, B, D = 2, 4, 3


def fusion(kind: str):
    cls = get_registry().lookup("fusions", kind)
    return cls(cls.Config(kind=kind) if kind != "moe" else FusionConfig(kind="moe"), D, M)


def extreme_experts() -> tuple[torch.Tensor, torch.Tensor]:
    """Expert 0 is 1e4 times sharper than float32 can hold and sits at +1e3; expert 1 is 1e4 times
    wider and sits at -1e3; example by example the roles swap."""
    mu = torch.tensor([[1e3, -1e3, 0.0, 5.0], [-1e3, 1e3, 0.0, -5.0]])[..., None].expand(M, B, D).clone()
    logvar = torch.tensor([[-1e4, 1e4, -1e4, 0.0], [1e4, -1e4, 1e4, 0.0]])[..., None].expand(M, B, D).clone()
    return mu.requires_grad_(), logvar.requires_grad_()


@pytest.mark.parametrize("kind", ["moe", "mopoe", "poe"])
@pytest.mark.parametrize(("objective", "K"), [("elbo", 1), ("iwae", 4), ("dreg", 4)])
def test_extreme_experts_give_finite_values_and_gradients(kind, objective, K):
    torch.manual_seed(0)
    mu, logvar = extreme_experts()
    use = torch.ones(M, B, dtype=torch.bool)
    q = fusion(kind)(mu, logvar, use)  # batch_shape (B,)
    draw = draw_latents(q, K)
    kl = kl_part(q, draw.z, objective)
    recon = -draw.z.square().sum(-1)  # any smooth function of z stands for the log-likelihood
    bound = reduce_bound(recon - kl, draw, objective)
    assert torch.isfinite(bound).all() and torch.isfinite(q.log_prob(draw.z)).all()
    bound.sum().backward()
    assert torch.isfinite(mu.grad).all() and torch.isfinite(logvar.grad).all()


def test_a_point_far_from_a_sharp_component_scores_finite_with_a_zero_gradient():
    mu = torch.zeros(1, 1, requires_grad=True)
    logvar = torch.full((1, 1), -1e4, requires_grad=True)
    z = torch.tensor([[10.0]])
    logp = DiagonalGaussian(mu, logvar).log_prob(z)
    assert bool(logp < -1e30) and torch.isfinite(logp).all()
    logp.sum().backward()
    assert torch.isfinite(mu.grad).all() and torch.isfinite(logvar.grad).all()


def test_the_variance_bound_changes_nothing_ordinary_and_keeps_huge_ones_finite():
    ordinary = torch.linspace(-20, 20, 101)
    torch.testing.assert_close(bound_logvar(ordinary), ordinary, atol=5e-5, rtol=0)
    assert float(bound_logvar(torch.tensor(1e4))) == pytest.approx(30.0)
    q = GaussianMixture(torch.zeros(1, 1, 2), torch.full((1, 1, 2), 1e4), torch.ones(1, 1, dtype=torch.bool))
    assert torch.isfinite(q.rsample_components((3,))).all()
    assert torch.equal(q.detached().logvar, q.logvar)  # not bounded twice


def test_logged_terms_of_a_mixture_average_over_the_components_an_example_has():
    # An image-only example under MMVAE has one component (its own) plus an inactive placeholder:
    # the logged KL must be that component's, not diluted by the placeholder's zero weight.
    from mmgen.recipe import build_model, validate_recipe
    from tests.support.toy import IMAGE, LABEL, make_batch

    recipe = validate_recipe({"name": "t", "model": {"latent_dim": 8, "fusion": {"kind": "moe"}, "terms": "joint"},
                              "modalities": {"image": IMAGE, "label": LABEL}, "data": {"kind": "mnist"}})
    model = build_model(recipe)
    batch = make_batch(["image", "label"], 6)
    only_image = {"image": torch.ones(6, dtype=torch.bool), "label": torch.zeros(6, dtype=torch.bool)}
    torch.manual_seed(0)
    out = model(batch, present=only_image)
    q = model.posterior({"image": batch["image"]})  # the image expert alone
    torch.manual_seed(0)
    z = q.rsample_components((1,))[:, 0]  # the same draw the model took for the image component
    expected = (q.components.log_prob(z.unsqueeze(1))[:, 0] - torch.distributions.Normal(0, 1).log_prob(z).sum(-1))
    torch.testing.assert_close(out.terms["kl"], expected.mean(), rtol=1e-4, atol=1e-4)

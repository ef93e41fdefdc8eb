"""Mixture fusions: the mixture density, MoE and MoPoE components, and IWAE with a mixture proposal."""

from __future__ import annotations

import math

import pytest
import torch

from mmgen.eval.likelihood import iwae_log_marginal
from mmgen.model import DiagonalGaussian, GaussianMixture
from mmgen.model.mixture import live_components
from mmgen.plugin.registry import get_registry
from tests.support.linear_gaussian import D, make_model  # the linear-Gaussian model with known marginals


def fusion(kind: str, M: int, **cfg):
    cls = get_registry().lookup("fusions", kind)
    return cls(cls.Config(kind=kind, **cfg), 3, M)


def test_mixture_log_prob_matches_a_direct_sum():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(3, 4, 5, generator=g), torch.randn(3, 4, 5, generator=g)
    active = torch.tensor([[1, 1, 0, 1], [1, 0, 1, 1], [0, 0, 1, 1]], dtype=torch.bool)  # (C, B)
    q = GaussianMixture(mu, logvar, active)
    z = torch.randn(7, 4, 5, generator=g)
    direct = torch.zeros(7, 4)
    for b in range(4):
        comps = [c for c in range(3) if active[c, b]]
        dens = sum(torch.distributions.Normal(mu[c, b], (0.5 * logvar[c, b]).exp()).log_prob(z[:, b]).sum(-1).exp()
                   for c in comps)
        direct[:, b] = torch.log(dens / len(comps))
    torch.testing.assert_close(q.log_prob(z), direct, rtol=1e-5, atol=1e-5)


def test_mixture_samples_pick_active_components_uniformly():
    mu = torch.tensor([[-10.0], [0.0], [10.0]])[:, None].expand(3, 1, 1)  # (C=3, B=1, D=1)
    active = torch.tensor([[True], [False], [True]])
    q = GaussianMixture(mu, torch.full((3, 1, 1), -8.0), active)
    z = q.sample((4000,)).squeeze()  # (4000,)
    assert not ((z > -5) & (z < 5)).any()  # the inactive middle component is never drawn
    assert abs(float((z > 0).float().mean()) - 0.5) < 0.03
    torch.testing.assert_close(q.mean, torch.zeros(1, 1))


def test_moe_components_are_the_present_experts_and_the_prior_when_none():
    mu, logvar = torch.randn(2, 3, 3), torch.randn(2, 3, 3)
    use = torch.tensor([[True, False, False], [True, True, False]])  # example 2 has nothing
    q = fusion("moe", 2)(mu, logvar, use)
    # Example 2's first component becomes the prior N(0, I): no extra component for the whole batch.
    assert q.active.tolist() == [[True, False, True], [True, True, False]]
    torch.testing.assert_close(q.mu[:, :2][use[:, :2]], mu[:, :2][use[:, :2]])
    torch.testing.assert_close(q.mean[2], torch.zeros(3))  # the prior
    torch.testing.assert_close(q.variance[2], torch.ones(3))
    weights = q.component_weights
    torch.testing.assert_close(weights.sum(0), torch.ones(3))


@pytest.mark.parametrize("kind", ["moe", "mopoe"])
def test_mixtures_never_add_a_component(kind):
    use = torch.tensor([[True, True, False, False], [True, False, True, False]])  # example 3 has nothing
    for u in (torch.ones(2, 4, dtype=torch.bool), use):
        q = fusion(kind, 2)(torch.randn(2, 4, 3), torch.randn(2, 4, 3), u)
        assert q.num_components == (2 if kind == "moe" else 3)


def test_mopoe_enumerates_every_nonempty_subset():
    from mmgen_plugins.mopoe import nonempty_subsets

    subsets = nonempty_subsets(3)
    assert subsets.shape == (7, 3)
    expected = {(a, b, c) for a in (0, 1) for b in (0, 1) for c in (0, 1) if a or b or c}
    assert {tuple(int(v) for v in r) for r in subsets} == expected
    assert subsets.sum(1).tolist() == [1, 1, 1, 2, 2, 2, 3]


def test_mopoe_components_are_products_of_the_subsets_present():
    from mmgen_plugins.poe import product_of_experts

    mu, logvar = torch.randn(3, 2, 4), torch.randn(3, 2, 4)
    use = torch.tensor([[True, True], [True, False], [False, True]])  # example 0 lacks c, example 1 lacks b
    q = fusion("mopoe", 3)(mu, logvar, use)
    # Example 0 has {a, b}: the subsets {a}, {b}, {a, b} are active.
    assert q.active[:, 0].tolist() == [True, True, False, True, False, False, False]
    assert q.active[:, 1].tolist() == [True, False, True, False, True, False, False]
    ab_mu, ab_logvar = product_of_experts(mu[:2, :1], logvar[:2, :1], torch.ones(2, 1, dtype=torch.bool))
    torch.testing.assert_close(q.mu[3, 0], ab_mu[0])
    torch.testing.assert_close(q.logvar[3, 0], ab_logvar[0])


@pytest.mark.parametrize("kind", ["moe", "mopoe"])
def test_only_live_components_have_weight_where_a_term_counts(kind):
    # Joint, singles and a pair of 3 modalities; random examples. A component outside live_components
    # has weight 0 wherever the term counts (the example has all of the term's modalities, or for
    # the joint term at least two), so the model may skip decoding it there.
    M, B = 3, 64
    rows = torch.tensor([[1, 1, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1]], dtype=torch.bool)  # (T, M)
    has = torch.rand(M, B, generator=torch.Generator().manual_seed(0)) < 0.6  # (M, B)
    counted = (rows[:, :, None] <= has[None]).all(1)  # (T, B)
    counted[0] = has.sum(0) >= 2
    f = fusion(kind, M)
    q = f(torch.randn(M, 1, B, 3), torch.randn(M, 1, B, 3), (rows[:, :, None] & has[None]).transpose(0, 1))
    live = live_components(f.component_members(), rows)  # (C, T)
    assert live.shape == (q.num_components, 5) and live[:, 0].all()
    assert not (q.active & counted & ~live[..., None]).any()
    assert live.sum() < live.numel()  # there is something to skip: a single term has one live component


def test_mopoe_refuses_too_many_modalities_at_validation():
    cls = get_registry().lookup("fusions", "mopoe")
    problems = cls.check(cls.Config(kind="mopoe", max_modalities=3), ["a", "b", "c", "d"], None)
    assert problems and "2^M - 1 = 15" in problems[0]


@pytest.mark.parametrize("kind", ["moe", "mopoe"])
def test_iwae_with_a_mixture_proposal_converges_to_the_exact_marginal(kind):
    # The linear-Gaussian model of test_likelihood, with a mixture posterior: no component is the
    # exact posterior, but importance sampling from the mixture density is still consistent.
    model = make_model()
    model.fusion = fusion(kind, 2).double()
    model.fusion.latent_dim = D
    torch.manual_seed(0)
    z = torch.randn(6, D, dtype=torch.float64)
    x = {n: model.modalities[n].likelihood(model.modalities[n].decode(z)).sample() for n in model.names}
    exact = torch.stack([exact_log_marginal(model, {n: v[i] for n, v in x.items()}) for i in range(6)])
    estimate = iwae_log_marginal(model, x, ["a", "b"], K=200_000)
    torch.testing.assert_close(estimate, exact, atol=0.02, rtol=0)
    small = torch.stack([iwae_log_marginal(model, x, ["a", "b"], K=2) for _ in range(200)]).mean(0)
    assert (small < exact).all()  # a lower bound in expectation at small K


def exact_log_marginal(model, x: dict[str, torch.Tensor]) -> torch.Tensor:
    mods = [model.modalities[n] for n in model.names]
    W = torch.cat([m.W for m in mods])  # (sum sizes, D)
    b = torch.cat([m.b for m in mods])
    noise = torch.cat([torch.full((m.W.shape[0],), m.sigma**2, dtype=torch.float64) for m in mods])
    cov = W @ W.T + torch.diag(noise)
    return torch.distributions.MultivariateNormal(b, cov).log_prob(torch.cat([x[n] for n in model.names]))


def test_gaussian_detached_keeps_the_density():
    q = DiagonalGaussian(torch.randn(3, 2, requires_grad=True), torch.randn(3, 2, requires_grad=True))
    z = torch.randn(3, 2)
    assert not q.detached().log_prob(z).requires_grad
    torch.testing.assert_close(q.detached().log_prob(z), q.log_prob(z).detach())
    assert math.isfinite(float(q.log_prob(z).detach().sum()))

"""DReG on a mixture posterior (stratified, K > 1) is unbiased: its expected encoder gradient is IWAE's.

MMVAE's joint term on a linear-Gaussian model: z ~ N(0, I), x_m | z ~ N(c_m ⊙ z, σ_m² I) for m = a, b,
and q(z | x_a, x_b) = ½ q_a + ½ q_b with q_m the exact posterior p(z | x_m) moved by a learnable shift
and log-scale, a poor proposal for p(z | x_a, x_b). Every replicate has its own copy of the parameters,
so one backward gives all their gradients; DReG's and IWAE's come from the same draws, and the mean of
their paired difference must be zero within 4 standard errors. The old estimator (every draw scored by
a fully detached mixture, the factor (1 - β) + β w̃) fails the same test by 8 standard errors.
"""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Normal

from mmgen.errors import MmgenError
from mmgen.model import bounds
from mmgen.model.bounds import draw_latents, kl_part, reduce_bound
from mmgen.model.mixture import GaussianMixture
from mmgen.plugin.posterior import detached

D, C, K, B, R = 2, 2, 5, 4, 4000  # latent size, components, samples, examples, replicates
NORMS = torch.tensor([[1.5, 0.7], [0.8, 2.0]], dtype=torch.float64)  # (C, D): c_a, c_b
SIGMAS = torch.tensor([0.5, 0.8], dtype=torch.float64)[:, None]  # (C, 1)
SHIFT = torch.tensor([[0.3, -0.2], [-0.4, 0.25]], dtype=torch.float64)  # (C, D)
LOG_SCALE = torch.tensor([[0.4, -0.3], [0.2, 0.5]], dtype=torch.float64)  # (C, D)


def data() -> torch.Tensor:
    """``(C, B, D)``: x_a and x_b of B examples drawn from the model."""
    g = torch.Generator().manual_seed(20190101)
    z = torch.randn(B, D, generator=g, dtype=torch.float64)
    return NORMS[:, None] * z + SIGMAS[:, None] * torch.randn(C, B, D, generator=g, dtype=torch.float64)


def encoder_gradients(objective: str, beta: float) -> torch.Tensor:
    """``(R, 2 C D)``: the gradient of the bound in (shift, log_scale), one row per replicate."""
    x = data()  # (C, B, D)
    precision = 1 + NORMS.square() / SIGMAS.square()  # (C, D): of p(z | x_m)
    mean = NORMS[:, None] * x / SIGMAS[:, None].square() / precision[:, None]  # (C, B, D)
    shift = SHIFT.expand(R, C, D).clone().requires_grad_()  # (R, C, D)
    log_scale = LOG_SCALE.expand(R, C, D).clone().requires_grad_()  # (R, C, D)
    mu = mean[:, None] + shift.transpose(0, 1)[:, :, None]  # (C, R, B, D)
    logvar = (-precision.log()[:, None] + log_scale.transpose(0, 1))[:, :, None].expand(C, R, B, D)  # (C, R, B, D)
    q = GaussianMixture(mu, logvar, torch.ones(C, R, B, dtype=torch.bool))  # batch_shape (R, B)
    torch.manual_seed(0)  # the same draws for every objective
    draw = draw_latents(q, K)  # z: (K*C, R, B, D)
    kl = kl_part(q, draw.z, objective)  # (K*C, R, B)
    ll = Normal(NORMS[:, None, None] * draw.z[:, None], SIGMAS[:, None, None]).log_prob(x[:, None]).sum((1, -1))
    bound = reduce_bound(ll - beta * kl, draw, objective, beta)  # (R, B)
    bound.sum().backward()
    return torch.cat([shift.grad.flatten(1), log_scale.grad.flatten(1)], 1)


def paired_gap(beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    diff = encoder_gradients("dreg", beta) - encoder_gradients("iwae", beta)  # (R, 2 C D), the same draws
    return diff.mean(0), diff.std(0) / R**0.5


@pytest.mark.parametrize("beta", [0.3, 1.0])
def test_stratified_dreg_expected_encoder_gradient_is_iwaes(beta):
    gap, stderr = paired_gap(beta)
    assert bool((stderr > 0).all())  # the estimators do differ draw by draw
    assert bool((gap.abs() <= 4 * stderr).all()), (gap, stderr)


def test_the_old_estimator_is_biased(monkeypatch):
    """Every component detached at every draw, and no responsibility: the rule for a single Gaussian."""
    monkeypatch.setattr(bounds, "stratified_log_q", lambda q, z: detached(q).log_prob(z))
    monkeypatch.setattr(bounds, "own_responsibility", lambda draw: (1.0, torch.zeros(())))
    gap, stderr = paired_gap(1.0)
    assert bool((gap.abs() > 4 * stderr).any()), (gap, stderr)


class OpaqueMixture:
    """A stratified posterior that offers the protocol but not its components' densities."""

    def __init__(self, q: GaussianMixture):
        self.q, self.log_prob, self.rsample_components = q, q.log_prob, q.rsample_components
        self.rsample, self.sample, self.mean, self.component_weights = q.rsample, q.sample, q.mean, q.component_weights

    def detached(self) -> OpaqueMixture:
        return OpaqueMixture(self.q.detached())


def test_dreg_refuses_a_mixture_without_component_densities():
    mu = torch.zeros(C, B, D, requires_grad=True)  # (C, B, D)
    q = OpaqueMixture(GaussianMixture(mu, torch.zeros(C, B, D), torch.ones(C, B, dtype=torch.bool)))
    draw = draw_latents(q, K)  # z: (K*C, B, D)
    kl_part(q, draw.z, "iwae")  # iwae needs only the mixture density
    with pytest.raises(MmgenError, match="components. densities") as err:
        kl_part(q, draw.z, "dreg")
    assert "iwae" in err.value.hint

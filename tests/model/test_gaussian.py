"""KL(q || N(0, I)): the closed form against torch.distributions, and the Monte-Carlo branch's bias."""

import math

import pytest
import torch
from torch.distributions import Independent, Normal, kl_divergence

from mmgen.model import DiagonalGaussian, kl_standard_normal, kl_to_prior, standard_normal


def reference_kl(mu, logvar):
    q = Independent(Normal(mu.double(), (0.5 * logvar.double()).exp()), 1)
    p = Independent(Normal(torch.zeros_like(mu, dtype=torch.float64), 1.0), 1)
    return kl_divergence(q, p)


@pytest.mark.parametrize("shape", [(8,), (5, 8), (3, 4, 2)])
def test_closed_form_matches_torch(shape):
    torch.manual_seed(0)
    mu, logvar = torch.randn(shape) * 2, torch.randn(shape) * 3
    q = DiagonalGaussian(mu, logvar)
    assert q.batch_shape == shape[:-1] and q.event_shape == shape[-1:]
    expected = reference_kl(mu, logvar).float()
    torch.testing.assert_close(kl_standard_normal(q), expected, rtol=1e-5, atol=1e-5)
    # A DiagonalGaussian takes the closed-form branch: z must not matter.
    z = torch.full(shape, 1e6)
    torch.testing.assert_close(kl_to_prior(q, z), expected, rtol=1e-5, atol=1e-5)


def test_kl_is_zero_at_the_prior_and_positive_elsewhere():
    zeros = torch.zeros(4, 6)
    assert torch.equal(kl_standard_normal(DiagonalGaussian(zeros, zeros)), torch.zeros(4))
    assert torch.all(kl_standard_normal(DiagonalGaussian(zeros + 0.1, zeros - 0.1)) > 0)


def test_standard_normal_prior():
    p = standard_normal(torch.empty(7, 3))
    assert p.batch_shape == () and p.event_shape == (3,)
    expected = -1.5 * math.log(2 * math.pi)  # log N(0; 0, I) in three dimensions
    torch.testing.assert_close(p.log_prob(torch.zeros(3)), torch.tensor(expected))


def test_monte_carlo_branch_is_unbiased():
    # A plain Independent(Normal) is not a DiagonalGaussian, so kl_to_prior takes the sampling branch,
    # the one used for mixture posteriors. Its average over many samples must approach the analytic KL.
    torch.manual_seed(1)
    mu = torch.tensor([[0.5, -1.0, 2.0], [0.0, 0.3, -0.2]], dtype=torch.float64)
    logvar = torch.tensor([[-1.0, 0.5, 0.0], [1.0, -0.5, 0.2]], dtype=torch.float64)
    q = Independent(Normal(mu, (0.5 * logvar).exp()), 1)
    z = q.rsample((200_000,))  # (S, 2, 3)
    estimates = kl_to_prior(q, z)  # (S, 2)
    assert estimates.shape == (200_000, 2)
    exact = reference_kl(mu, logvar)
    stderr = estimates.std(0) / 200_000**0.5
    assert torch.all((estimates.mean(0) - exact).abs() < 5 * stderr)
    assert torch.all(estimates.std(0) > 0)  # it really is the sampling branch, not the closed form


def test_monte_carlo_branch_is_differentiable():
    mu = torch.zeros(4, requires_grad=True)
    q = Independent(Normal(mu + 1.0, torch.ones(4)), 1)
    kl_to_prior(q, q.rsample()).backward()
    assert mu.grad is not None and torch.isfinite(mu.grad).all()


def test_log_density_matches_torch_at_ordinary_values():
    torch.manual_seed(2)
    mu, logvar = torch.randn(4, 6), torch.randn(4, 6) * 2
    q = DiagonalGaussian(mu, logvar)
    z = torch.randn(3, 4, 6)  # (S, B, D), some far from mu
    expected = Independent(Normal(mu.double(), (0.5 * logvar.double()).exp()), 1).log_prob(z.double())
    torch.testing.assert_close(q.log_prob(z).double(), expected, rtol=1e-5, atol=1e-4)
    at_mean = -0.5 * (logvar + math.log(2 * math.pi)).sum(-1)  # the quadratic term vanishes at z = mu
    torch.testing.assert_close(q.log_prob(mu), at_mean)


@pytest.mark.parametrize("logvar", [-1e3, -1e4])
def test_log_density_finite_at_tiny_variance(logvar):
    # A confident PoE posterior (logvar -1e3) is legal: the fusion keeps it finite, so must log_prob.
    mu = torch.zeros(3, requires_grad=True)
    lv = torch.full((3,), logvar, requires_grad=True)
    q = DiagonalGaussian(mu, lv)
    z = q.rsample()  # the std underflows to 0, so z == mu exactly
    value = q.log_prob(z)
    value.backward()
    assert torch.isfinite(value) and value > 0  # a very peaked density
    assert torch.isfinite(mu.grad).all() and torch.isfinite(lv.grad).all()

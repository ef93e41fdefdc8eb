"""Diagonal Gaussians parameterized by log-variance, and the KL to the N(0, I) prior."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Distribution, Independent, Normal

from mmgen.plugin.posterior import Posterior, closed_form_kl

LOG_2PI = math.log(2 * math.pi)
MAX_EXPONENT = 80.0  # exp(88.7) is float32's largest


class DiagonalGaussian(Independent):
    """N(mu, diag(exp(logvar))) with ``batch_shape = mu.shape[:-1]`` and ``event_shape = (D,)``.

    Keeps ``logvar`` so the KL and log-density never take log(exp(.)) of a tiny variance.
    """

    def __init__(self, mu: Tensor, logvar: Tensor):
        super().__init__(Normal(mu, torch.exp(0.5 * logvar), validate_args=False), 1, validate_args=False)
        self.mu = mu
        self.logvar = logvar

    def detached(self) -> DiagonalGaussian:
        """The same density with parameters cut from the graph (DReG scores samples with it)."""
        return DiagonalGaussian(self.mu.detach(), self.logvar.detach())

    def kl_to_standard_normal(self) -> Tensor:
        """KL(q || N(0, I)) in closed form, shape ``batch_shape`` (the posterior protocol's optional KL)."""
        return kl_standard_normal(self)

    def log_prob(self, z: Tensor) -> Tensor:
        """log N(z; mu, exp(logvar)) summed over D, shape ``(*sample, *batch)``.

        The quadratic term is exp(2 log|z - mu| - logvar), so neither r^2 nor 1/var is formed:
        both under/overflow in float32 once logvar < -88, long before the density stops being
        representable. Where z == mu exactly (std underflowed to 0) the term is 0; the double
        ``where`` keeps that branch's gradient finite. The term is capped at e^80 per dimension.
        """
        r = z - self.mu
        exact = r == 0
        log_abs = torch.log(torch.where(exact, torch.ones_like(r), r).abs())
        exponent = torch.where(exact, torch.zeros_like(r), 2 * log_abs - self.logvar)
        # Capped at e^80 per dimension: a point that far out has log-density below -1e34, which no
        # sum or mixture can tell from -inf, and exp() of more would overflow float32 and turn the
        # backward pass into inf * 0 = NaN (a sample scored under a much sharper mixture component).
        quad = torch.where(exact, torch.zeros_like(r), torch.exp(exponent.clamp(max=MAX_EXPONENT)))
        return -0.5 * (quad + self.logvar + LOG_2PI).sum(-1)


def standard_normal(like: Tensor) -> Distribution:
    """The prior p(z) = N(0, I) with the latent size of ``like`` ``(..., D)``; batch_shape ``()``."""
    zeros = like.new_zeros(like.shape[-1])
    return Independent(Normal(zeros, torch.ones_like(zeros), validate_args=False), 1, validate_args=False)


def kl_standard_normal(q: DiagonalGaussian) -> Tensor:
    """KL(q || N(0, I)) in closed form: 0.5 * sum(exp(logvar) + mu^2 - 1 - logvar), shape batch_shape."""
    return 0.5 * (torch.exp(q.logvar) + q.mu.square() - 1.0 - q.logvar).sum(-1)


def kl_to_prior(q: Posterior, z: Tensor) -> Tensor:
    """KL(q || N(0, I)): in closed form when the posterior offers it, else the one-sample estimate at ``z``.

    A mixture posterior (MMVAE, MoPoE) has no closed-form KL; the estimate log q(z) - log p(z)
    at the reparameterized sample ``z`` is unbiased and differentiable.
    """
    kl = closed_form_kl(q)
    return kl if kl is not None else q.log_prob(z) - standard_normal(z).log_prob(z)

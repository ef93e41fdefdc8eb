"""A uniform mixture of diagonal Gaussians over the components that are active, per example.

The posterior of the mixture fusions (MMVAE: one component per unimodal expert; MoPoE: one per
product of a subset of experts). Which components exist differs by example when modalities are
missing, so the weights are uniform over the *active* components of each batch position.

Besides ``rsample`` and ``log_prob`` it offers ``rsample_components``, one reparameterized draw
per component, and ``component_weights``, which the model uses for the stratified objective of
Shi et al. (2019): E_q[f(z)] = Σ_c w_c E_{q_c}[f(z)] with each component's expectation estimated apart.
``with_prior_fallback`` gives a position without any component the prior N(0, I), without a host sync;
``live_components`` says on the host which component can have weight in which ELBO term.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor
from torch.distributions import Distribution, constraints

from mmgen.model.gaussian import DiagonalGaussian

MAX_LOGVAR = 30.0  # a component's std stays below e^15 ≈ 3e6, so it is always finite


def bound_logvar(logvar: Tensor) -> Tensor:
    """A soft upper bound at ``MAX_LOGVAR``: 30 - softplus(30 - logvar).

    A mixture has no prior expert to bound its components' variances as the product of experts
    does, so an expert's log-variance of 1e4 would make std = exp(5e3) = inf and every sample NaN.
    Below 20 the bound changes a log-variance by less than 5e-5 (at 0 by 1e-13), and its gradient
    never vanishes abruptly.
    """
    return MAX_LOGVAR - torch.nn.functional.softplus(MAX_LOGVAR - logvar)


class GaussianMixture(Distribution):
    """``mu, logvar``: ``(C, *batch, D)``; ``active``: bool ``(C, *batch)``, at least one True per position.

    The component log-variances are bounded softly from above (``bound_logvar``); scoring a point
    under a component far sharper than the one it came from stays finite, value and gradient, by
    ``DiagonalGaussian.log_prob``'s cap.
    """

    arg_constraints: ClassVar[dict] = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, mu: Tensor, logvar: Tensor, active: Tensor, bounded: bool = False):
        logvar = logvar if bounded else bound_logvar(logvar)  # bounded: already through bound_logvar
        self.mu, self.logvar, self.active = mu, logvar, active
        self.components = DiagonalGaussian(mu, logvar)  # batch_shape (C, *batch)
        count = active.sum(0, keepdim=True).clamp(min=1)  # (1, *batch)
        self.log_weights = torch.where(active, -torch.log(count.to(mu.dtype)), float("-inf"))  # (C, *batch)
        super().__init__(batch_shape=mu.shape[1:-1], event_shape=mu.shape[-1:], validate_args=False)

    @property
    def num_components(self) -> int:
        return self.mu.shape[0]

    @property
    def component_weights(self) -> Tensor:
        """``(C, *batch)``: 1 / (number of active components) where active, else 0."""
        return self.log_weights.exp()

    def detached(self) -> GaussianMixture:
        """The same density with parameters cut from the graph (DReG scores samples with it)."""
        return GaussianMixture(self.mu.detach(), self.logvar.detach(), self.active, bounded=True)

    def _component_dim(self) -> int:
        return -(len(self.batch_shape) + 2)  # position of C in (*sample, C, *batch, D)

    def log_prob(self, z: Tensor) -> Tensor:
        """log Σ_c w_c N(z; mu_c, var_c): ``(*sample, *batch, D)`` -> ``(*sample, *batch)``."""
        per = self.components.log_prob(z.unsqueeze(self._component_dim()))  # (*sample, C, *batch)
        return torch.logsumexp(per + self.log_weights, dim=self._component_dim() + 1)

    def rsample_components(self, sample_shape: torch.Size | tuple = ()) -> Tensor:
        """One reparameterized draw from every component: ``(*sample, C, *batch, D)``."""
        return self.components.rsample(torch.Size(sample_shape))

    def rsample(self, sample_shape: torch.Size | tuple = ()) -> Tensor:
        """Draw a component by its weight, then z from it: ``(*sample, *batch, D)``.

        The choice of component is discrete (not differentiable); training uses
        ``rsample_components`` instead, where every component is drawn.
        """
        sample_shape = torch.Size(sample_shape)
        every = self.rsample_components(sample_shape)  # (*S, C, *batch, D)
        logits = self.log_weights.movedim(0, -1)  # (*batch, C)
        pick = torch.distributions.Categorical(logits=logits).sample(sample_shape)  # (*S, *batch)
        index = pick.unsqueeze(self._component_dim() + 1).unsqueeze(-1).expand(
            *sample_shape, 1, *self.batch_shape, self.mu.shape[-1])  # (*S, 1, *batch, D)
        return every.gather(self._component_dim(), index).squeeze(self._component_dim())

    @property
    def mean(self) -> Tensor:
        return (self.component_weights[..., None] * self.mu).sum(0)  # (*batch, D)

    @property
    def variance(self) -> Tensor:
        # Law of total variance: E[var_c] + Var[mu_c].
        w = self.component_weights[..., None]
        m = self.mean
        return (w * (self.logvar.exp() + (self.mu - m).square())).sum(0)


def with_prior_fallback(mu: Tensor, logvar: Tensor, active: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Give N(0, I) to every position where no component is active, in component 0: ``C`` stays ``C``.

    ``mu, logvar``: ``(C, *batch, D)`` and ``active``: ``(C, *batch)``, broadcastable; the result has
    their broadcast shape. Where a position has a component (every position of a paired batch) the
    values pass through unchanged (``where`` selects them exactly); where it has none, all of its
    components are inactive, so they become zeros and the first one, now N(0, I), the only active one.
    Data-independent: no host sync, and no extra component of weight zero to draw and decode.
    """
    shape = torch.broadcast_shapes(mu.shape, logvar.shape, (*active.shape, 1))
    none = ~active.any(0, keepdim=True)  # (1, *batch_a): positions without any component
    mu = torch.where(none[..., None], 0.0, mu).expand(shape)  # (C, *batch, D)
    logvar = torch.where(none[..., None], 0.0, logvar).expand(shape)  # (C, *batch, D)
    active = torch.cat([active[:1] | none, active[1:]]).expand(shape[:-1])  # (C, *batch)
    return mu, logvar, active


def live_components(members: Tensor, rows: Tensor) -> Tensor:
    """Bool ``(C, T)`` on the host: component c can have weight in term t, i.e. its modalities are all in the term.

    ``members``: bool ``(C, M)``, the modalities each component is made of (a mixture fusion's
    ``component_members()``); ``rows``: bool ``(T, M)``, the ELBO terms. Elsewhere the component's
    weight is 0 for every example the term counts, so its draws need not be decoded there.
    """
    return (members[:, None] <= rows[None]).all(-1)  # (C, T): members[c] ⊆ rows[t]

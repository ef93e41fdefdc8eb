"""From a posterior to a bound per term and example: latent draws, the KL part, and the reduction
over samples (``elbo``, ``iwae``, ``dreg``).

Everything here asks the posterior what it can do (``mmgen.plugin.posterior``): a stratified
posterior (a mixture) is drawn component by component and its bound averaged with the component
weights; a closed-form KL is used when the posterior offers one and the bound is the plain ELBO.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor

from mmgen.model.gaussian import standard_normal
from mmgen.plugin.posterior import Posterior, closed_form_kl, detached, is_stratified


@dataclass
class Draw:
    """K latent draws per term and example, and per component for a stratified posterior."""

    z: Tensor  # (K*C, T, B, D): sample-major, component-minor
    K: int
    C: int  # components (1 unless stratified)
    weights: Tensor | None  # (C, T, B) component weights of a stratified posterior, else None


def draw_latents(q: Posterior, K: int) -> Draw:
    """Reparameterized draws from ``q`` (batch_shape ``(T, B)``)."""
    if is_stratified(q):
        z = q.rsample_components((K,))  # (K, C, T, B, D)
        return Draw(z.flatten(0, 1), K, z.shape[1], q.component_weights)
    return Draw(q.rsample((K,)), K, 1, None)


def kl_part(q: Posterior, z: Tensor, objective: str) -> Tensor:
    """KL(q || N(0, I)) per draw, ``(S | 1, T, B)``: closed form (broadcasting over samples) for
    the ELBO when q offers it, else log q(z) - log p(z) at the draws. DReG scores the draws with
    a detached q, so no score-function gradient reaches the encoder through log q."""
    if objective == "elbo":
        kl = closed_form_kl(q)
        if kl is not None:
            return kl[None]
    scorer = detached(q) if objective == "dreg" else q
    return scorer.log_prob(z) - standard_normal(z).log_prob(z)


def dreg_encoder_factor(w: Tensor, beta: float | Tensor) -> Tensor:
    """What the gradient reaching the encoder through z is multiplied by, beyond the w̃ of the surrogate.

    With log w = log p(x|z) + β (log p(z) - log q(z)), the score-function term of the IWAE
    gradient, -β Σ_k w̃_k ∂_φ log q(z_k), equals -β Σ_k w̃_k (1 - w̃_k) ∂_z log w_k ∂_φ z_k in
    expectation (Tucker et al.'s identity applied to w̃_k as a function of z_k), so the encoder's
    weight is (1 - β) w̃ + β w̃²: w̃ times (1 - β) + β w̃. At β = 1 it is DReG's w̃².
    """
    return (1 - beta) + beta * w


def reduce_bound(log_w: Tensor, draw: Draw, objective: str, beta: float | Tensor = 1.0) -> Tensor:
    """Reduce ``log_w`` ``(K*C | 1, T, B)`` over samples (and components) -> the bound ``(T, B)``."""
    K, C = draw.K, draw.C
    log_w = log_w.expand(K * C, *log_w.shape[1:]).unflatten(0, (K, C))  # (K, C, T, B)
    if objective == "elbo":
        per = log_w.mean(0)  # (C, T, B)
    else:
        per = log_w.logsumexp(0) - math.log(K)  # (C, T, B)
        if objective == "dreg" and draw.z.requires_grad:
            # Tucker et al.: the decoder's gradient is weighted by the normalized weights w̃ (the
            # surrogate), the encoder's through z by (1 - β) w̃ + β w̃² (the hook multiplies it in).
            w = log_w.detach().softmax(0)  # (K, C, T, B)
            factor = dreg_encoder_factor(w, beta).flatten(0, 1)[..., None]  # (K*C, T, B, 1)
            draw.z.register_hook(lambda g: g * factor)
            surrogate = (w * log_w).sum(0)
            per = surrogate + (per - surrogate).detach()  # the value of the bound, DReG's gradient
    if draw.weights is None:
        return per[0]
    return (draw.weights * per).sum(0)  # stratified: Σ_c w_c * bound_c


def mean_over_draws(x: Tensor, draw: Draw) -> Tensor:
    """``x`` ``(K*C | 1, T, B)`` averaged over the draws -> ``(T, B)``: over the samples, and for a mixture
    over its components with their weights, so a component an example does not have counts for nothing."""
    if draw.weights is None:
        return x.mean(0)
    per = x.expand(draw.K * draw.C, *x.shape[1:]).unflatten(0, (draw.K, draw.C)).mean(0)  # (C, T, B)
    return (draw.weights * per).sum(0)

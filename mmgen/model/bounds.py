"""From a posterior to a bound per term and example: latent draws, the KL part, and the reduction
over samples (``elbo``, ``iwae``, ``dreg``).

Everything here asks the posterior what it can do (``mmgen.plugin.posterior``): a stratified
posterior (a mixture) is drawn component by component and its bound averaged with the component
weights; a closed-form KL is used when the posterior offers one and the bound is the plain ELBO.
DReG on a stratified posterior also asks for its components' densities (``components``): only the
sampling component's part of the score can be swapped for a path term, the others' must stay.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.distributions import Distribution

from mmgen.errors import MmgenError
from mmgen.model.gaussian import standard_normal
from mmgen.plugin.posterior import Posterior, closed_form_kl, detached, is_stratified


@dataclass
class Draw:
    """K latent draws per term and example, and per component for a stratified posterior."""

    z: Tensor  # (K*C, T, B, D): sample-major, component-minor
    K: int
    C: int  # components (1 unless stratified)
    weights: Tensor | None  # (C, T, B) component weights of a stratified posterior, else None
    posterior: Posterior | None = None  # the stratified q: DReG asks it for its components' densities
    by_component: Tensor | None = None  # (K, C, T, B, D): z before flattening, reached past DReG's hook on z


def draw_latents(q: Posterior, K: int) -> Draw:
    """Reparameterized draws from ``q`` (batch_shape ``(T, B)``)."""
    if is_stratified(q):
        z = q.rsample_components((K,))  # (K, C, T, B, D)
        return Draw(z.flatten(0, 1), K, z.shape[1], q.component_weights, q, z)
    return Draw(q.rsample((K,)), K, 1, None)


def component_log_probs(q: Posterior, z: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    """log q_c(z) for every component c of a stratified q, inserted at ``dim``: ``(*S, T, B, D)`` ->
    ``(*S, C, T, B)``, and the log weights ``(C, T, B)``. Stratified DReG asks for ``q.components``
    (batch_shape ``(C, T, B)``): only the sampling component's score has a path form."""
    components = getattr(q, "components", None)
    if not isinstance(components, Distribution):
        raise MmgenError(
            f"model.objective = 'dreg' with a mixture posterior needs its components' densities "
            f"(a `components` distribution), and the fusion's {type(q).__name__} has none",
            hint="use objective 'iwae' with this fusion",
        )
    per = components.log_prob(z.unsqueeze(dim))  # (*S, C, T, B) or, coordinate by coordinate, (*S, C, T, B, D)
    return (per if components.event_shape else per.sum(-1)), q.component_weights.log()


def stratified_log_q(q: Posterior, z: Tensor) -> Tensor:
    """log q(z) at stratified draws ``z`` ``(K*C, T, B, D)`` -> ``(K*C, T, B)``, for DReG: at a draw of
    component c, c's parameters are detached (their score is replaced by a path term, see
    ``own_responsibility``) and the other components' kept, since their score has no such identity."""
    live, log_weights = component_log_probs(q, z, 1)  # (K*C, C, T, B)
    frozen, _ = component_log_probs(detached(q), z, 1)  # (K*C, C, T, B)
    C = log_weights.shape[0]
    own = torch.eye(C, dtype=torch.bool, device=z.device).repeat(z.shape[0] // C, 1)  # (K*C, C): row kC+c owns c
    own = own.reshape(*own.shape, *(1,) * (live.dim() - 2))  # (K*C, C, 1, 1)
    return (torch.where(own, frozen, live) + log_weights).logsumexp(1)  # (K*C, T, B)


def kl_part(q: Posterior, z: Tensor, objective: str) -> Tensor:
    """KL(q || N(0, I)) per draw, ``(S | 1, T, B)``: closed form (broadcasting over samples) for
    the ELBO when q offers it, else log q(z) - log p(z) at the draws. DReG scores the draws with
    a detached q, so no score-function gradient reaches the encoder through log q; for a stratified
    q only the sampling component is detached (``stratified_log_q``)."""
    if objective == "elbo":
        kl = closed_form_kl(q)
        if kl is not None:
            return kl[None]
    if objective == "dreg" and is_stratified(q):
        return stratified_log_q(q, z) - standard_normal(z).log_prob(z)
    scorer = detached(q) if objective == "dreg" else q
    return scorer.log_prob(z) - standard_normal(z).log_prob(z)


def own_responsibility(draw: Draw) -> tuple[Tensor, Tensor]:
    """At each draw z of component c, ``(K, C, T, B)`` each: r = w_c q_c(z) / q(z), detached, and
    log q_c(z) - log q(z) with q's parameters detached but differentiable in z (through
    ``draw.by_component``, so DReG's hook on ``draw.z`` does not scale it). Its z-gradient is
    that of log r; the log weight is left out, so an absent component (r = 0) gives 0, not 0 * -inf."""
    per, log_weights = component_log_probs(detached(draw.posterior), draw.by_component, 2)  # (K, C_draw, C, T, B)
    log_q = (per + log_weights).logsumexp(2)  # (K, C, T, B)
    log_r = per.diagonal(dim1=1, dim2=2).movedim(-1, 1) - log_q  # (K, C, T, B): the draw's own component
    return (log_r.detach() + log_weights).exp(), log_r


def dreg_encoder_factor(w: Tensor, beta: float | Tensor, r: float | Tensor = 1.0) -> Tensor:
    """What the gradient reaching the encoder through z is multiplied by, beyond the w̃ of the surrogate.

    With log w = log p(x|z) + β (log p(z) - log q(z)), the score-function term of the IWAE
    gradient, -β Σ_k w̃_k ∂_φ log q(z_k), equals -β Σ_k w̃_k (1 - w̃_k) ∂_z log w_k ∂_φ z_k in
    expectation (Tucker et al.'s identity applied to w̃_k as a function of z_k), so the encoder's
    weight is (1 - β) w̃ + β w̃²: w̃ times (1 - β) + β w̃. At β = 1 it is DReG's w̃².

    For a mixture only the sampling component's share of the score, r ∂ log q_c with r its
    responsibility, has the identity; applied to w̃_k r(z_k) it gives the factor 1 - β r (1 - w̃)
    here, and a term -β w̃ r ∂_z log r that ``reduce_bound`` adds (r = 1 without a mixture).
    """
    return (1 - beta * r) + beta * r * w


def reduce_bound(log_w: Tensor, draw: Draw, objective: str, beta: float | Tensor = 1.0,
                 chosen: Tensor | None = None) -> Tensor:
    """Reduce ``log_w`` ``(K*C | 1, T, B)`` over samples (and components) -> the bound ``(T, B)``.

    ``chosen`` (bool ``(T,)``): the terms that take ``objective``'s bound; the others take the K-sample
    ELBO of the same draws (their ``log_w`` should then hold the closed-form KL, see ``kl_part``). None: all.
    """
    K, C = draw.K, draw.C
    log_w = log_w.expand(K * C, *log_w.shape[1:]).unflatten(0, (K, C))  # (K, C, T, B)
    if objective == "elbo":
        per = log_w.mean(0)  # (C, T, B)
    else:
        per = log_w.logsumexp(0) - math.log(K)  # (C, T, B)
        if objective == "dreg" and draw.z.requires_grad:
            # Tucker et al.: the decoder's gradient is weighted by the normalized weights w̃ (the
            # surrogate), the encoder's through z by (1 - β) w̃ + β w̃² (the hook multiplies it in);
            # for a mixture by w̃ (1 - β r (1 - w̃)), plus -β w̃ r ∂_z log r past the hook.
            w = log_w.detach().softmax(0)  # (K, C, T, B)
            surrogate = (w * log_w).sum(0)  # (C, T, B)
            if draw.posterior is None:
                factor = dreg_encoder_factor(w, beta)  # (K, 1, T, B)
            else:  # the sampling component's score, -β w̃ r ∂ log q_c, as the path terms of w̃_k r(z_k)
                r, log_r = own_responsibility(draw)  # (K, C, T, B)
                factor = dreg_encoder_factor(w, beta, r)  # (K, C, T, B)
                surrogate = surrogate - beta * (w * r * log_r).sum(0)  # (C, T, B)
            if chosen is not None:  # an ELBO term's encoder gradient through z is the plain one
                factor = torch.where(chosen[:, None], factor, 1.0)  # (K, C, T, B)
            factor = factor.flatten(0, 1)[..., None]  # (K*C, T, B, 1)
            draw.z.register_hook(lambda g: g * factor)
            per = surrogate + (per - surrogate).detach()  # the value of the bound, DReG's gradient
        if chosen is not None:
            per = torch.where(chosen[:, None], per, log_w.mean(0))  # (C, T, B)
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

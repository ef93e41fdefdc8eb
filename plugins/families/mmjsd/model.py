"""mmJSD (Sutter, Daunhawer & Vogt, NeurIPS 2020): unimodal experts, a mixture to reconstruct from, and a
multimodal Jensen-Shannon divergence to a dynamic prior in place of the KL to p(z).

The objective of one example X = (x_1, ..., x_M), the paper's mmJSD objective (its Section 3: the multimodal JS
divergence with the dynamic prior as its "mean", in the ELBO's place of the KL; github.com/thomassutter/mmjsd:
divergence_measures/mm_div.py ``alpha_poe`` (l. 23-35) and ``calc_alphaJSD_modalities`` (l. 69-89),
networks/VAEtrimodalSVHNMNIST.py ``forward``, ``moe_fusion`` and ``inference`` (l. 63-103, 152-164, 189-227),
training/training_svhnmnist.py ``total_loss`` (l. 161-165)):

    L(X) = E_{q(z|X)}[ Σ_m λ_m log p(x_m | z) ] − β JS_π^{M+1}(q(z|x_1), ..., q(z|x_M), p(z))

    q(z|X)  = (1/M) Σ_j q(z|x_j)                         the mixture of the unimodal posteriors
    JS_π^{M+1} = Σ_{j=1}^{M+1} π_j KL(q_j ‖ f),   q_{M+1} = p(z) = N(0, I),   π_j = 1/(M+1)
    f(z) ∝ Π_j q_j(z)^{π_j}                               the dynamic prior: the geometric mean, a Gaussian with
                                                          precision Σ_j π_j/σ_j² and mean Σ_j (π_j/σ_j²) μ_j / that

Every KL is in closed form (diagonal Gaussians); the expectation takes one reparameterized draw from every
q(z|x_m), each reconstructing every modality, averaged over m (``estimator = "stratified"``), or from one
q(z|x_m) per example drawn uniformly (``"sampled"``, the cost of the paper's code). λ_m are the modalities'
weights and β is ``model.beta`` times the trainer's warm-up (the ``beta`` argument of ``forward``, 1/N to 1).
The loss is −L averaged over the batch. ``posterior(given)`` is the mixture of the given unimodal posteriors, as
the paper's code infers (``model.inference = "dynamic_prior"``: f of the given ones instead).

Where this departs from the paper and its code (github.com/thomassutter/mmjsd):
* weak supervision (``data.paired_fraction`` < 1): an example that lacks modalities is scored on those it has,
  A: the mixture is over q(z|x_m), m ∈ A, only the modalities in A are reconstructed, and the JS divergence is
  over {q(z|x_m) : m ∈ A} ∪ {p(z)} with π = 1/(|A| + 1) (how the MoPoE code, which also trains mmJSD, treats a
  subset of inputs); the paper and both codes train on complete examples only;
* π is uniform; the code's ``div_weight_*`` flags can weigh them otherwise (its scripts keep them equal);
* the code draws each example's component by its position in the batch (B/M examples per modality), where
  ``sampled`` draws it at random and ``stratified`` takes every component;
* the code weighs reconstructions by data size (the largest modality's size over each one's); here λ_m;
* the mixture's log-variances are bounded softly at 30 (``mmgen.GaussianMixture``; a change below 5e-5 for
  log-variances under 20), and the JS divergence is taken on the same bounded experts;
* the paper's variant with modality-specific latent subspaces (its code's ``factorized_representation``:
  a private s_m per modality with its own KL to N(0, I)) is not implemented: z is shared.

Shapes: B batch, D latent, M modalities.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import kl_divergence

from mmgen import (
    DiagonalGaussian,
    GaussianMixture,
    ModelOutput,
    UnimodalExpertsModel,
    product_of_experts,
    with_prior_fallback,
)
from mmgen_plugins.families.mmjsd.config import MMJSDConfig
from mmgen_plugins.families.mopoe import draw_one_component


def dynamic_prior(mu: Tensor, logvar: Tensor, use: Tensor) -> tuple[Tensor, Tensor]:
    """f: the geometric mean of the used experts ``(M, B, D)`` and N(0, I), each with weight π = 1/(n + 1) where
    n = ``use.sum(0)`` ``(B,)``: ``mu, logvar`` ``(B, D)``. With equal weights it is the product of experts with
    the prior expert (the same mean) and every precision times π (log-variance + log(n + 1))."""
    poe_mu, poe_logvar = product_of_experts(mu, logvar, use)  # (B, D): precision 1 + Σ_m 1/σ_m²
    n = use.sum(0).to(mu.dtype)[:, None]  # (B, 1)
    return poe_mu, poe_logvar + torch.log1p(n)


def js_divergence(mu: Tensor, logvar: Tensor, use: Tensor) -> tuple[Tensor, Tensor]:
    """JS_π^{n+1} of the used experts ``(M, B, D)`` and N(0, I), π = 1/(n + 1): ``(B,)``, and KL(q_m ‖ f) ``(M, B)``
    (0 where an expert is not used). Where no expert is used it is 0: f is then N(0, I) itself."""
    f = DiagonalGaussian(*dynamic_prior(mu, logvar, use))  # batch (B,)
    kl = torch.where(use, kl_divergence(DiagonalGaussian(mu, logvar), f), 0.0)  # (M, B); where: never 0 * inf
    prior = DiagonalGaussian(torch.zeros_like(f.mu), torch.zeros_like(f.logvar))
    n = use.sum(0).to(mu.dtype)  # (B,)
    return (kl_divergence(prior, f) + kl.sum(0)) / (n + 1), kl


class MMJSD(UnimodalExpertsModel):
    """Unimodal encoders and decoders over one shared latent z; no other networks."""

    Config = MMJSDConfig
    config: MMJSDConfig
    min_modalities = 2
    title = "mmJSD"
    why_more = "with one, its JS divergence is to a prior shrunk toward the posterior itself"

    def describe(self) -> str:
        return f"model {self.config.kind!r} (mmJSD, β = {self.config.beta}, estimator {self.config.estimator!r})"

    # ---- the posteriors (experts, presence: mmgen.UnimodalExpertsModel) ---------------------------
    def mixture(self, given: dict[str, Tensor], present: dict[str, Tensor] | None = None) -> GaussianMixture:
        """q(z | X): the uniform mixture of the unimodal posteriors each example has, batch ``(B,)``, components
        ``(M, B, D)``; an example with none has N(0, I) as its one component."""
        experts = self.unimodal_posteriors(given)  # (M, B, D), in full precision
        return GaussianMixture(*with_prior_fallback(experts.mu, experts.logvar, self.presence(given, present)))

    def posterior(self, given: dict[str, Tensor],
                  present: dict[str, Tensor] | None = None) -> GaussianMixture | DiagonalGaussian:
        """q(z | given), batch ``(B,)``: the mixture of the given unimodal posteriors (``inference = "mixture"``),
        or their dynamic prior f (``"dynamic_prior"``). Given one modality the mixture is q(z | x_m)."""
        q = self.mixture(given, present)
        if self.config.inference == "mixture":
            return q
        return DiagonalGaussian(*dynamic_prior(q.mu, q.logvar, q.active))

    # ---- the objective -----------------------------------------------------------------------
    def forward(self, batch: dict[str, Tensor], beta: float | Tensor = 1.0,
                present: dict[str, Tensor] | None = None, estimator: str | None = None) -> ModelOutput:
        """−L(X) averaged over the batch (the module docstring's equation). ``estimator`` overrides the config's."""
        q = self.mixture(batch, present)  # components (M, B, D); which ones each example has: q.active (M, B)
        has = self.presence(batch, present)  # (M, B): the modalities reconstructed
        if (estimator or self.config.estimator) == "stratified":
            z = q.rsample_components()  # (M, B, D): one draw from every q(z | x_m)
            weights = q.component_weights  # (M, B): 1/n for the components an example has, else 0
        else:
            z = draw_one_component(q, 1).z  # (1, B, D): from one q(z | x_m) per example, uniform over those it has
            weights = torch.ones_like(z[..., 0])  # (1, B)
        recon = self.reconstruction(z, batch, has)  # (M, S, B), S = M or 1; 0 where b lacks x_m
        expected = (weights * (self.lambdas[:, None, None] * recon).sum(0)).sum(0)  # (B,): E_q(z|X)[Σ_m λ_m log p]
        js, kl = js_divergence(q.mu, q.logvar, q.active)  # (B,), (M, B)
        bound = expected - beta * self.config.beta * js
        B = bound.shape[0]
        return ModelOutput(loss=-bound.sum() / max(B, 1), terms=self._terms(recon, weights, has, js, kl, q.active))

    def validation_output(self, batch: dict[str, Tensor], present: dict[str, Tensor] | None = None) -> ModelOutput:
        """The objective at β = 1 with every component drawn (the stratified estimator chooses nothing)."""
        return self(batch, beta=1.0, present=present, estimator="stratified")

    def _terms(self, recon: Tensor, weights: Tensor, has: Tensor, js: Tensor, kl: Tensor,
               active: Tensor) -> dict[str, Tensor]:
        """Logged: nll/m (E_q(z|X)[−log p(x_m | z)] over the examples with m), js, kl/m (KL(q(z|x_m) ‖ f) over
        the examples with m), all detached means."""
        terms = {"js": js.detach().mean()}
        for m, name in enumerate(self.names):
            ll = (weights * recon[m].detach()).sum(0)  # (B,)
            terms[f"nll/{name}"] = -ll.sum() / has[m].sum().clamp(min=1)
            terms[f"kl/{name}"] = kl[m].detach().sum() / active[m].sum().clamp(min=1)
        return terms

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

With modality-specific subspaces (``model.private_dim`` P > 0; the paper's Section 3.3, "mmJSD (MS)"; its code's
``factorized_representation``, networks/VAEtrimodalSVHNMNIST.py ``forward`` l. 63-103 and
training/training_svhnmnist.py l. 122-165), modality m's encoder also gives a style posterior q(s_m | x_m) over a
private s_m with p(s_m) = N(0, I), its decoder reads [c | s_m] (z above is now the shared content c), and

    L(X) = E_{q(c|X)}[ Σ_m λ_m E_{q(s_m|x_m)}[log p(x_m | c, s_m)] ] − β JS_π^{M+1}(...)
           − β_s Σ_m KL(q(s_m|x_m) ‖ p(s_m))

where the JS divergence is the one above, over the shared parts q(c | x_m), and β_s is ``model.beta_style`` times
the trainer's warm-up. Each x_m is reconstructed from its own s_m only (never another modality's), one draw of
s_m per modality and example, met by every draw of c. ``subspaces.py`` holds these pieces.

Every KL is in closed form (diagonal Gaussians); the expectation takes one reparameterized draw from every
q(z|x_m), each reconstructing every modality, averaged over m (``estimator = "stratified"``), or from one
q(z|x_m) per example drawn uniformly (``"sampled"``, the cost of the paper's code). λ_m are the modalities'
weights and β is ``model.beta`` times the trainer's warm-up (the ``beta`` argument of ``forward``, 1/N to 1).
The loss is −L averaged over the batch. ``posterior(given)`` is the mixture of the given unimodal posteriors, as
the paper's code infers (``model.inference = "dynamic_prior"``: f of the given ones instead); with P > 0 times
q(s_m | x_m) for each given m and p(s_m) for each other (``subspaces.with_styles``): a modality generated from
others takes its style from the prior, as the authors' conditional generation does.

Where this departs from the paper and its code (github.com/thomassutter/mmjsd):
* weak supervision (``data.paired_fraction`` < 1): an example that lacks modalities is scored on those it has,
  A: the mixture is over q(z|x_m), m ∈ A, only the modalities in A are reconstructed (and only their style KLs
  counted), and the JS divergence is over {q(z|x_m) : m ∈ A} ∪ {p(z)} with π = 1/(|A| + 1) (how the MoPoE code,
  which also trains mmJSD, treats a subset of inputs); the paper and both codes train on complete examples only;
* π is uniform; the code's ``div_weight_*`` flags can weigh them otherwise (its scripts keep them equal);
* the code draws each example's component by its position in the batch (B/M examples per modality), where
  ``sampled`` draws it at random and ``stratified`` takes every component;
* the code weighs reconstructions by data size (the largest modality's size over each one's); here λ_m;
* the mixture's log-variances are bounded softly at 30 (``mmgen.GaussianMixture``; a change below 5e-5 for
  log-variances under 20), and the JS divergence is taken on the same bounded experts; so are the styles';
* the style KLs: the paper's equation leaves them unweighted (β_s = 1, the default) while its code multiplies
  modality m's by β · beta_style · beta_m_style and its annealing (job_celeba.sh, its one script with subspaces:
  2.5 · 2 · 1 = 5 for the image, 2.5 · 2 · 5 = 25 for the text); here one β_s for every modality, independent of
  β, and one style width P for every modality (the code has one per modality: 4 by default, 32 on CelebA).

Shapes: B batch, D latent (the shared part), P private, M modalities.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import kl_divergence

from mmgen import (
    DiagonalGaussian,
    GaussianMixture,
    ModelOutput,
    PrivateLatentsModel,
    product_of_experts,
    with_prior_fallback,
)
from mmgen.plugin.posterior import Posterior
from mmgen_plugins.families.mmjsd.config import MMJSDConfig
from mmgen_plugins.families.mmjsd.subspaces import decoder_inputs, style_kl, with_styles
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


class MMJSD(PrivateLatentsModel):
    """Unimodal encoders and decoders over the shared latent c and, with ``private_dim`` > 0, each modality's style
    s_m: the latent vector is ``[c | s_1 | ... | s_M]`` (``layout``; just c at P = 0). No other networks."""

    Config = MMJSDConfig
    config: MMJSDConfig
    min_modalities = 2
    title = "mmJSD"
    why_more = "with one, its JS divergence is to a prior shrunk toward the posterior itself"

    def describe(self) -> str:
        c = self.config
        styles = f", style {c.private_dim} per modality, β_s = {c.beta_style}" if c.private_dim else ""
        return f"model {c.kind!r} (mmJSD, β = {c.beta}, estimator {c.estimator!r}{styles})"

    # ---- the posteriors (experts over [c | s_m], presence, decode: mmgen.PrivateLatentsModel) ------
    def shared_mixture(self, mu: Tensor, logvar: Tensor, use: Tensor) -> GaussianMixture:
        """q(c | X): the uniform mixture of the shared parts of the experts ``(M, B, D + P)`` that ``use``
        (``(M, B)``) marks, batch ``(B,)``; an example with none has N(0, I) as its one component."""
        D = self.layout.shared
        return GaussianMixture(*with_prior_fallback(mu[..., :D], logvar[..., :D], use))

    def mixture(self, given: dict[str, Tensor], present: dict[str, Tensor] | None = None) -> GaussianMixture:
        """q(c | X) of the modalities each example has, components ``(M, B, D)`` (``shared_mixture``)."""
        mu, logvar = self.experts(given)  # (M, B, D + P), in full precision
        return self.shared_mixture(mu, logvar, self.presence(given, present))

    def posterior(self, given: dict[str, Tensor], present: dict[str, Tensor] | None = None) -> Posterior:
        """q(latents | given), batch ``(B,)``: c from the mixture of the given unimodal posteriors
        (``inference = "mixture"``) or their dynamic prior f (``"dynamic_prior"``); given one modality the mixture
        is q(c | x_m). With P > 0, s_m from q(s_m | x_m) where x_m is given, else from p(s_m) = N(0, I)."""
        mu, logvar = self.experts(given)  # (M, B, D + P)
        use = self.presence(given, present)  # (M, B)
        q = self.shared_mixture(mu, logvar, use)
        shared = q if self.config.inference == "mixture" else DiagonalGaussian(*dynamic_prior(q.mu, q.logvar, q.active))
        return with_styles(shared, mu, logvar, use, self.layout)

    # ---- the objective -----------------------------------------------------------------------
    def forward(self, batch: dict[str, Tensor], beta: float | Tensor = 1.0,
                present: dict[str, Tensor] | None = None, estimator: str | None = None) -> ModelOutput:
        """−L(X) averaged over the batch (the module docstring's equation). ``estimator`` overrides the config's."""
        mu, logvar = self.experts(batch)  # (M, B, D + P), in full precision
        has = self.presence(batch, present)  # (M, B): the modalities reconstructed
        q = self.shared_mixture(mu, logvar, has)  # components (M, B, D); which ones each example has: q.active
        if (estimator or self.config.estimator) == "stratified":
            c = q.rsample_components()  # (M, B, D): one draw from every q(c | x_m)
            weights = q.component_weights  # (M, B): 1/n for the components an example has, else 0
        else:
            c = draw_one_component(q, 1).z  # (1, B, D): from one q(c | x_m) per example, uniform over those it has
            weights = torch.ones_like(c[..., 0])  # (1, B)
        s, kl_style = self.styles(mu, logvar, has)  # (M, B, P), (M, B): one draw of every s_m; its KL
        recon = self.reconstruct(c, s, batch, has)  # (M, S, B), S = M or 1; 0 where b lacks x_m
        expected = (weights * (self.lambdas[:, None, None] * recon).sum(0)).sum(0)  # (B,): E_q[Σ_m λ_m log p]
        js, kl = js_divergence(q.mu, q.logvar, q.active)  # (B,), (M, B)
        bound = expected - beta * self.config.beta * js
        if s is not None:
            bound = bound - beta * self.config.beta_style * kl_style.sum(0)
        B = bound.shape[0]
        terms = self._terms(recon, weights, has, js, kl, q.active, kl_style)
        return ModelOutput(loss=-bound.sum() / max(B, 1), terms=terms)

    def styles(self, mu: Tensor, logvar: Tensor, has: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """One reparameterized draw of every s_m ~ q(s_m | x_m), ``(M, B, P)``, and KL(q(s_m | x_m) ‖ N(0, I)),
        ``(M, B)``, 0 where the example lacks x_m; ``(None, None)`` without subspaces (P = 0)."""
        if self.layout.private == 0:
            return None, None
        with self._full_precision():
            q = self.private_experts(mu, logvar)  # batch (M, B), log-variances bounded softly at 30
            return q.rsample(), style_kl(q, has)

    def reconstruct(self, c: Tensor, s: Tensor | None, batch: dict[str, Tensor], has: Tensor) -> Tensor:
        """log p(x_m | c, s_m) of every modality, ``(M, *S, B)``, for ``c`` ``(*S, B, D)``: each modality decodes
        ``[c | s_m]`` with its own ``s`` ``(M, B, P)``; without subspaces (``s`` None) it decodes c."""
        if s is None:
            return self.reconstruction(c, batch, has)
        return self.reconstruction(decoder_inputs(c, s), batch, has, each=True)

    def validation_output(self, batch: dict[str, Tensor], present: dict[str, Tensor] | None = None) -> ModelOutput:
        """The objective at β = 1 with every component drawn (the stratified estimator chooses nothing)."""
        return self(batch, beta=1.0, present=present, estimator="stratified")

    def _terms(self, recon: Tensor, weights: Tensor, has: Tensor, js: Tensor, kl: Tensor, active: Tensor,
               kl_style: Tensor | None) -> dict[str, Tensor]:
        """Logged: nll/m (E_q[−log p(x_m | ·)] over the examples with m), js, kl/m (KL(q(c|x_m) ‖ f) over the
        examples with m) and, with subspaces, kl_style/m (KL(q(s_m|x_m) ‖ p(s_m)) likewise): detached means."""
        terms = {"js": js.detach().mean()}
        for m, name in enumerate(self.names):
            ll = (weights * recon[m].detach()).sum(0)  # (B,)
            terms[f"nll/{name}"] = -ll.sum() / has[m].sum().clamp(min=1)
            terms[f"kl/{name}"] = kl[m].detach().sum() / active[m].sum().clamp(min=1)
            if kl_style is not None:
                terms[f"kl_style/{name}"] = kl_style[m].detach().sum() / has[m].sum().clamp(min=1)
        return terms

"""MMVAE+ (Palumbo, Daunhawer & Vogt, ICLR 2023): MMVAE's mixture of experts over a shared latent z, plus a
private latent w_m per modality, whose stand-in in a cross-modal reconstruction is drawn from an auxiliary prior.

Latents, width L = D + M·P: ``[z (D) | w_1 (P) | ... | w_M (P)]`` (``mmgen.PrivateLayout``). Modality m's
encoder gives one Gaussian expert over ``[z | w_m]``, i.e. q(z | x_m) and q(w_m | x_m); its decoder reads
``[z | w_m]``. The posterior over z is MMVAE's mixture, q(z | X) = (1/M) Σ_m q(z | x_m).

The objective of one example X = (x_1, ..., x_M): the paper's MMVAE+ objective with the K-sample stratified
estimator its authors' code computes (epalu/mmvaeplus, src/objectives.py: ``_m_iwae`` lines 17-46
with ``m_elbo`` lines 48-56; ``_m_dreg``/``m_dreg`` lines 59-104; the cross-modal draws in src/models/mmvae.py,
``forward`` lines 25-53), which MultiVae's models/mmvaePlus computes too (``_compute_k_lws``):

    L(X) = (1/M) Σ_m log (1/K) Σ_k exp(log w_mk)          iwae, dreg;   elbo: (1/M) Σ_m (1/K) Σ_k log w_mk

    log w_mk = λ_m log p(x_m | z_mk, w_mk) + Σ_{n≠m} λ_n log p(x_n | z_mk, w̃_nmk)
               + β [log p(z_mk) + log p(w_mk) − log q(z_mk | X) − log q(w_mk | x_m)]

    z_mk ~ q(z | x_m),   w_mk ~ q(w_m | x_m),   w̃_nmk ~ r_n(w_n),   every draw reparameterized,

with p(z) = N(0, I_D), p(w_m) = N(0, I_P), r_n(w_n) = N(0, diag σ_n²) the auxiliary prior, σ_n = s · P · softmax(ρ_n)
with ρ_n learned (``aux_scale`` s, ``learn_aux``), β the recipe's ``model.beta`` times the trainer's warm-up and λ
the modalities' weights (1 in the paper). Component m reconstructs its own modality from its own private latent
and every other modality n from a stand-in w̃_n ~ r_n that is never scored (neither log r_n nor log p(w_n) enter
log w), so the cross-modal terms can only be met through z. ``elbo`` takes the private part of the β term in
closed form, −KL(q(w_m | x_m) ‖ p(w_m)). The loss is −L(X) averaged over the batch. Shapes in the code: K draws,
M modalities (= mixture components), B batch; log w is ``(K, M, B)``.

Departures from the paper and the authors' code, each deliberate:
* Gaussians throughout: posteriors, priors and r_n (the authors' PolyMNIST model uses Laplace ones, their scales
  made by softmax · width, src/models/vae_polymnist.py): mmgen's modality encoders give a mean and a
  log-variance, and the mixture machinery (``mmgen.GaussianMixture``, its DReG) is Gaussian. r_n keeps the
  authors' softmax · P parameterization.
* DReG: the authors' ``m_dreg`` keeps the score term (it scores the draws under the live posteriors) and
  weights the path gradient by w̃; MultiVae's ``_dreg_looser`` scores under a fully detached mixture and weights
  by w̃² whatever β. Here z takes mmgen's rule for a stratified mixture (only the sampling
  component detached, ``mmgen.model.bounds``; unbiased for this bound, docs/design.md "DReG on a mixture"), and
  w, a single Gaussian per component, Tucker et al.'s factor (1 − β) w̃ + β w̃² (``dreg_encoder_factor``).
* ``elbo`` with K > 1 averages the K draws (the authors' code sets K = 1 for its elbo).
* Weak supervision (not in the paper), as MultiVae handles it: an example's mixture is over the experts it has,
  a modality it lacks is neither a component nor reconstructed, and an example with none is not counted.

``posterior(given)``: z from the mixture of the given experts (N(0, I) given none), w_m from q(w_m | x_m) where
x_m is given, else from its prior p(w_m): the authors' cross-generation draws it from p, not r_n
(src/models/mmvae.py, ``reconstruct_and_cross_reconstruct_forw``), as MultiVae's default ``joint_prior`` does.
``prior`` is N(0, I_L) = p(z) Π_m p(w_m), and ``log_joint`` the default: log p(latents) + Σ log p(x_t | z, w_t).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import Normal

from mmgen import (
    DiagonalGaussian,
    GaussianMixture,
    IndependentBlocks,
    Modality,
    ModelOutput,
    PrivateLatentsModel,
    full_precision,
    private_posterior,
    with_prior_fallback,
)
from mmgen.model import Draw, draw_latents, kl_part, mean_over_draws, reduce_bound
from mmgen.model.bounds import dreg_encoder_factor
from mmgen_plugins.families.mmvaeplus.config import MMVAEPlusConfig


class MMVAEPlus(PrivateLatentsModel):
    """The modalities' encoders and decoders over ``[z | w_1 | ... | w_M]``, and the auxiliary priors r_n."""

    Config = MMVAEPlusConfig
    config: MMVAEPlusConfig
    min_modalities = 2
    title = "MMVAE+"
    why_more = "with one there is no cross-modal reconstruction, so the auxiliary prior is never used"

    def __init__(self, modalities: dict[str, Modality], config: MMVAEPlusConfig):
        super().__init__(modalities, config)  # λ, ``lambdas``; the layout of [z | w_1 | ... | w_M], ``layout``
        rho = torch.zeros(len(modalities), config.private_dim)  # ρ_n, (M, P): r_n's scales start equal
        if config.learn_aux:
            self.aux_logits = nn.Parameter(rho)
        else:
            self.register_buffer("aux_logits", rho)

    def describe(self) -> str:
        c = self.config
        return f"model {c.kind!r} (MMVAE+, objective {c.objective!r}, K = {c.samples}, β = {c.beta:.4g})"

    # ---- the posterior (experts over [z | w_m], presence, decode: mmgen.PrivateLatentsModel) -------
    def unimodal(self, mu: Tensor, logvar: Tensor, use: Tensor) -> tuple[GaussianMixture, DiagonalGaussian]:
        """q(z | X), the mixture of the experts ``use`` (``(M, B)``) marks, batch ``(B,)``; and q(w_m | x_m) of
        every modality, batch ``(M, B)`` (its log-variance bounded softly, as the mixture's are)."""
        D = self.layout.shared
        shared = GaussianMixture(*with_prior_fallback(mu[..., :D], logvar[..., :D], use))
        return shared, self.private_experts(mu, logvar)

    def posterior(self, given: dict[str, Tensor], present: dict[str, Tensor] | None = None) -> IndependentBlocks:
        """q(z, w_1, ..., w_M | given), batch ``(B,)``, event ``(L,)``: z from the mixture of the given experts,
        w_m from q(w_m | x_m) where given, else from p(w_m) = N(0, I)."""
        mu, logvar = self.experts(given)
        use = self.presence(given, present)  # (M, B)
        shared, _ = self.unimodal(mu, logvar, use)
        D = self.layout.shared
        return IndependentBlocks([shared, private_posterior(mu[..., D:], logvar[..., D:], use)])

    def aux_prior(self, n: int) -> Normal:
        """r_n(w_n) = N(0, diag σ_n²), σ_n = aux_scale · P · softmax(ρ_n): batch ``(P,)``."""
        scale = self.config.aux_scale * self.config.private_dim * self.aux_logits[n].softmax(-1)  # (P,)
        return Normal(torch.zeros_like(scale), scale, validate_args=False)

    # ---- the objective ---------------------------------------------------------------------------
    def reconstructions(self, z: Tensor, w: Tensor, batch: dict[str, Tensor],
                       use: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Σ_n λ_n log p(x_n | z, w_n) per draw, ``(K, M, B)``, and each log p(x_n | ·) unweighted.

        ``z`` ``(K, M, B, D)``: the draws of component m; ``w`` ``(K, M, B, P)``: w[:, m] ~ q(w_m | x_m).
        Component m decodes x_m from its own w_m and every other x_n from a fresh w̃_n ~ r_n. An example
        without x_n (``use``, ``(M, B)``) has no term for it.
        """
        own = torch.eye(len(self.names), dtype=torch.bool, device=z.device)  # own[n, m]: m is n's own component
        total, lls = 0.0, {}
        for n, name in enumerate(self.names):
            if name not in batch:  # no example has it: no term (``use`` is False), nothing to decode
                continue
            stand_in = self.aux_prior(n).rsample(w.shape[:-1])  # (K, M, B, P): w̃_n for every component
            w_n = torch.where(own[n][:, None, None], w, stand_in)  # (K, M, B, P)
            params = self.modalities[name].decode(torch.cat([z, w_n], -1))  # may run in bf16 under autocast
            with self._full_precision():
                ll = self.modalities[name].log_likelihood(full_precision(params), batch[name])  # (K, M, B)
            lls[name] = torch.where(use[n], ll, 0.0)  # where, not *: a placeholder's inf would make 0 * inf
            total = total + self.lambdas[n] * lls[name]
        return total, lls

    def forward(self, batch: dict[str, Tensor], beta: float | Tensor = 1.0,
                present: dict[str, Tensor] | None = None) -> ModelOutput:
        """−L(X) averaged over the batch (the module docstring's equation); ``beta`` is the trainer's warm-up."""
        objective, K, M = self.config.objective, self.config.samples, len(self.names)
        beta = beta * self.config.beta
        use = self.presence(batch, present)  # (M, B)
        mu, logvar = self.experts(batch)  # (M, B, D + P)
        with self._full_precision():  # the mixture, the draws and the densities: fp32
            shared, private = self.unimodal(mu, logvar, use)
            draw = draw_latents(shared, K)  # z: (K*M, B, D), sample-major, component-minor
            w = private.rsample((K,))  # (K, M, B, P)
            # log q(z | X) − log p(z) + log q(w_m | x_m) − log p(w_m) at the draws (elbo: the private KL in closed form)
            regularizer = kl_part(shared, draw.z, objective).unflatten(0, (K, M)) + kl_part(private, w, objective)
        recon, lls = self.reconstructions(draw.z.unflatten(0, (K, M)), w, batch, use)  # (K, M, B)
        with self._full_precision():
            log_w = recon - beta * regularizer  # (K, M, B)
            if objective == "dreg" and w.requires_grad:  # w's share of DReG; z's is reduce_bound's (a mixture)
                factor = dreg_encoder_factor(log_w.detach().softmax(0), beta)[..., None]  # (K, M, B, 1)
                w.register_hook(lambda g: g * factor)
            bound = reduce_bound(log_w.flatten(0, 1), draw, objective, beta)  # (B,): Σ_m (1/M) bound_m
            counted = use.any(0)  # (B,): an example with no modality has no term
            bound = torch.where(counted, bound, 0.0)
        B = bound.shape[0]
        return ModelOutput(loss=-bound.sum() / max(B, 1), terms=self._terms(lls, regularizer, draw, use))

    def _terms(self, lls: dict[str, Tensor], regularizer: Tensor, draw: Draw, use: Tensor) -> dict[str, Tensor]:
        """Logged means, each over the draws with the component weights: ``nll/n`` over the examples with x_n
        (self and cross reconstructions), ``kl`` (log q − log p of z and the own w_m) over the counted ones."""
        terms = {}
        for n, name in enumerate(self.names):
            if name not in lls:
                continue
            per = mean_over_draws(lls[name].detach().flatten(0, 1), draw)  # (B,)
            terms[f"nll/{name}"] = -per.sum() / use[n].sum().clamp(min=1)
        counted = use.any(0)
        kl = mean_over_draws(regularizer.detach().expand(draw.K, -1, -1).flatten(0, 1), draw)  # (B,)
        return terms | {"kl": torch.where(counted, kl, 0.0).sum() / counted.sum().clamp(min=1)}

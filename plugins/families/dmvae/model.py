"""DMVAE (Lee & Pavlovic, CVPR Workshops 2021, *Private-Shared Disentangled Multimodal VAE for Learning of Latent
Representations*): a shared latent w, inferred from any subset of the modalities by a product of experts, and a
private latent u_m per modality that only x_m's encoder infers and only x_m's decoder reads.

Latents, width L = D + Σ_m P_m: ``[w (D) | u_1 (P_1) | ... | u_M (P_M)]`` (``layout.PrivateWidths``: MMVAE+'s
layout, ``mmgen.PrivateLayout``, with a width per modality). Modality m's encoder gives one Gaussian expert over
``[w | u_m]``, i.e. q(w | x_m) and q(u_m | x_m); its decoder reads ``[w | u_m]``. A modality with P_m = 0 (a class
label: it has no style) has no u_m: its encoder gives q(w | x_m) alone, its decoder reads w alone, and its terms
have no private KL, as if u_m and its KL were dropped from the equation below.

The objective of one example X = (x_1, ..., x_M): every modality m is reconstructed, always with its own private
latent, from the shared latent of every source s: the joint posterior (s = J), its own (s = m) and every other
modality's (s = n ≠ m, a cross-modal term). Each pair (m, s) is an ELBO of log p(x_m):

    L(X) = Σ_m Σ_{s ∈ {J, 1, ..., M}} ELBO_ms

    ELBO_ms = λ_m E_{q_s(w) q(u_m|x_m)}[ log p(x_m | w, u_m) ] − β [ KL(q_s(w) ‖ p(w)) + KL(q(u_m|x_m) ‖ p(u_m)) ]

    q_J(w) = q(w | X) ∝ p(w) Π_n q(w | x_n)        (the product of experts with the prior expert)
    q_n(w) = q(w | x_n)

with p(w) = N(0, I_D), p(u_m) = N(0, I_{P_m}), λ_m the modalities' weights (the authors weigh MNIST 50 and SVHN 1) and
β the recipe's ``model.beta`` (1 in the authors' code) times the trainer's warm-up. Each expectation takes one
reparameterized draw per posterior, shared by every term that reads it: one w_s per source and one u_m per
modality (the authors' decoders read one draw of u_m for every source; their comment says it must be so). Both
KLs are in closed form. The loss is −L(X) averaged over the batch. Shapes in the code: S = M + 1 sources (J
first, then the modalities), M modalities, B batch.

Where the equation comes from: the paper's text was not readable here, so it is the sum the authors' code
computes (seqam-lab/DMVAE at df4defe: mnist_svhn/main.py ``elbo``, lines 165-206, the six ELBOs of two
modalities, called from ``train`` lines 410-438; mnist_svhn/model.py ``DecoderA.forward`` lines 97-127, one u per
decoder for every source; util.py ``apply_poe`` lines 18-50, the PoE with the prior expert;
probtorch/objectives/mws_tcvae.py line 6, whose β-TC weights at their default 1 reduce the KL to log q − log p
of [u_m, w] at the draw), written for M modalities as multi-view-AE does (alawryaguila/multi-view-AE,
multiviewae/models/DMVAE.py: Σ_m ELBO_mJ and Σ_m Σ_n ELBO_mn, which its docstrings call the paper's Equation 3).

Departures, each deliberate:
* ELBO_mJ reconstructs x_m: the released main.py sets ``reconst_loss_poeA/B`` to 0 (lines 198-199) and keeps only
  their KLs, an ablation left in the code; multi-view-AE and MultiVae keep the reconstruction, as here.
* KLs in closed form, where the authors' code takes log q − log p at the one draw (equal in expectation).
* A private width per modality (``model.private_dim`` as a table), as the authors' MNIST 1 and SVHN 4; a width of
  0, no u_m at all, is not in their code.
* One β for every KL; the authors' β-TCVAE split (``--beta1``/``--beta2``, default 1) is not offered.
* MultiVae 1.0.3 (models/dmvae/dmvae_model.py, ``forward``/``_compute_elbo``) sums another way: one ELBO per
  source of all modalities together, λ-weighted reconstructions less β KL(q_s(w) ‖ p) once and every private KL,
  so a shared KL counts once instead of once per reconstructed modality; and it draws u_m afresh in every term.
  This module keeps the authors' sum.
* Weak supervision (not in the paper; the authors' code trains on pairs), as MultiVae masks it: an example's q_J
  is the product of the experts it has (with the prior expert), and ELBO_ms counts when it has x_m and either
  s = J or it has x_s. So an example with x_m alone contributes ELBO_mJ + ELBO_mm; one with none, nothing.

``posterior(given)``: w from the product of the given shared experts with the prior expert (q_J of those), except
for an example given exactly one modality: w from that expert q(w | x_m) itself, the posterior its own and cross
terms train and the one the authors' cross-generation reads (main.py ``cross_acc_prior``, lines 306-315; MultiVae's
``encode`` multiplies it by the prior expert instead); u_m from q(u_m | x_m) where x_m is given, else from its prior
p(u_m) = N(0, I) (the same lines); given none, the prior. ``prior`` is N(0, I_L), ``log_joint`` the default.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mmgen import (
    DiagonalGaussian,
    LatentWidths,
    Modality,
    ModelConfig,
    ModelOutput,
    PrivateLatentsModel,
    full_precision,
    private_posterior,
    product_of_experts,
)
from mmgen.model.mixture import bound_logvar
from mmgen_plugins.families.dmvae.config import DMVAEConfig, width_problems
from mmgen_plugins.families.dmvae.layout import PrivateWidths


class DMVAE(PrivateLatentsModel):
    """The modalities' encoders and decoders over ``[w | u_1 | ... | u_M]``."""

    Config = DMVAEConfig
    config: DMVAEConfig
    layout: PrivateWidths
    min_modalities = 2
    title = "DMVAE"
    why_more = "with one, w and u are two halves of one latent and there is nothing to share"

    def __init__(self, modalities: dict[str, Modality], config: DMVAEConfig):
        problems = width_problems(config, list(modalities))
        if problems:  # a recipe's are refused by ``check`` first; this catches a model built by hand
            raise ValueError("; ".join(problems))
        super().__init__(modalities, config)
        self.layout = PrivateWidths(config.latent_dim, tuple(config.private_width(n) for n in self.names))
        # Made once and moved with the model, so no step copies the widths to the device or syncs on a mask.
        own = self.layout.own()  # (M, P̂)
        self.register_buffer("own_dims", own, persistent=False)
        self.register_buffer("own_index", own.flatten().nonzero().squeeze(1), persistent=False)  # (Σ_m P_m,)

    @classmethod
    def latent_widths(cls, config: DMVAEConfig, name: str, modality) -> LatentWidths:
        width = config.latent_dim + config.private_width(name)  # the expert covers [w | u_m]; the decoder reads it
        return LatentWidths(width, width)

    @classmethod
    def check(cls, config: ModelConfig, modalities: dict, lookup) -> list[str]:
        """Too few modalities, and a ``private_dim`` table that names a modality the recipe lacks or lacks one."""
        return super().check(config, modalities, lookup) + width_problems(config, list(modalities))

    def describe(self) -> str:
        c = self.config
        private = (f"{c.private_dim} each" if isinstance(c.private_dim, int)
                   else ", ".join(f"{n} {w}" for n, w in c.private_dim.items()))
        return f"model {c.kind!r} (DMVAE, shared {c.latent_dim} + private {private}, β = {c.beta:.4g})"

    # ---- the posteriors (experts over [w | u_m], presence, decode: mmgen.PrivateLatentsModel) --------
    def experts(self, given: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Every modality's expert, ``mu, logvar`` ``(M, B, D + P̂)`` in full precision, a narrower one padded with
        N(0, I) dims (zeros; ``layout`` module docstring); a modality not in ``given`` gets zeros, N(0, I),
        which ``presence`` marks absent."""
        B = next(iter(given.values())).shape[0]
        mus, logvars = [], []
        for name in self.names:
            if name in given:
                mu, logvar = self.modalities[name].encode(given[name])  # (B, D + P_m), may run in bf16
            else:
                mu = logvar = self._anchor().new_zeros(B, 0)  # all padding below
            pad = (0, self.layout.expert - mu.shape[-1])
            mus.append(F.pad(full_precision(mu), pad))
            logvars.append(F.pad(full_precision(logvar), pad))
        return torch.stack(mus), torch.stack(logvars)

    def private_experts(self, mu: Tensor, logvar: Tensor) -> DiagonalGaussian:
        """q(u_m | x_m) of every modality from the experts ``(M, B, D + P̂)``: batch ``(M, B)``, event ``(P̂,)``,
        log-variance bounded softly at 30; the padding exactly N(0, I) (the bound moves a 0 by 1e-13), so its KL
        is exactly 0."""
        q = super().private_experts(mu, logvar)
        own = self.own_dims[:, None]  # (M, 1, P̂)
        return DiagonalGaussian(torch.where(own, q.mu, 0.0), torch.where(own, q.logvar, 0.0))

    def sources(self, mu: Tensor, logvar: Tensor, use: Tensor) -> DiagonalGaussian:
        """q_s(w) of every source, batch ``(S, B)``: the product q_J of the experts ``use`` (``(M, B)``) marks with
        the prior expert, then each modality's own q(w | x_m). The experts' log-variances are bounded softly at
        30 (as ``private_posterior`` bounds u's): q(w | x_m) has no prior expert to bound it."""
        D = self.layout.shared
        mu_w, logvar_w = mu[..., :D], bound_logvar(logvar[..., :D])  # (M, B, D)
        joint_mu, joint_logvar = product_of_experts(mu_w, logvar_w, use)  # (B, D), N(0, I) where none is used
        return DiagonalGaussian(torch.cat([joint_mu[None], mu_w]), torch.cat([joint_logvar[None], logvar_w]))

    def posterior(self, given: dict[str, Tensor], present: dict[str, Tensor] | None = None) -> DiagonalGaussian:
        """q(w, u_1, ..., u_M | given), batch ``(B,)``, event ``(L,)``: w from q_J of the given modalities, or from
        q(w | x_m) for an example given x_m alone; u_m from q(u_m | x_m) where given, else from p(u_m) = N(0, I)."""
        mu, logvar = self.experts(given)  # (M, B, D + P)
        use = self.presence(given, present)  # (M, B)
        shared = self.sources(mu, logvar, use)  # (S, B)
        alone = use & (use.sum(0) == 1)  # (M, B): the one modality of an example given exactly one
        pick = torch.cat([~alone.any(0, keepdim=True), alone])[..., None]  # (S, B, 1): one source per example
        w_mu = torch.where(pick, shared.mu, 0.0).sum(0)  # (B, D)
        w_logvar = torch.where(pick, shared.logvar, 0.0).sum(0)  # (B, D)
        private = private_posterior(mu[..., self.layout.shared :], logvar[..., self.layout.shared :], use)  # (B, M·P̂)
        own = self.own_index  # of the (M·P̂) dims: the padding dropped, (B, Σ_m P_m) remain
        return DiagonalGaussian(torch.cat([w_mu, private.mu.index_select(-1, own)], -1),
                                torch.cat([w_logvar, private.logvar.index_select(-1, own)], -1))

    # ---- the objective ---------------------------------------------------------------------------
    def forward(self, batch: dict[str, Tensor], beta: float | Tensor = 1.0,
                present: dict[str, Tensor] | None = None) -> ModelOutput:
        """−L(X) averaged over the batch (the module docstring's equation); ``beta`` is the trainer's warm-up."""
        beta = beta * self.config.beta
        use = self.presence(batch, present)  # (M, B)
        mu, logvar = self.experts(batch)  # (M, B, D + P̂)
        with self._full_precision():  # the product, the draws and the KLs: fp32
            shared, private = self.sources(mu, logvar, use), self.private_experts(mu, logvar)  # (S, B), (M, B)
            w, u = shared.rsample(), private.rsample()  # (S, B, D), (M, B, P̂): one draw each, read by every term
            kl_w, kl_u = shared.kl_to_standard_normal(), private.kl_to_standard_normal()  # (S, B), (M, B): 0 if P_m = 0
        has_source = torch.cat([use.any(0, keepdim=True), use])  # (S, B): q_J needs any modality, q_n needs x_n
        bound, lls, actives = 0.0, {}, {}
        for m, name in enumerate(self.names):
            if name not in batch:  # no example has it: no term reconstructs it, nothing to decode
                continue
            active = use[m] & has_source  # (S, B): the terms ELBO_ms this example has
            u_m = u[m, :, : self.layout.private[m]]  # (B, P_m): the padding dropped
            latents = torch.cat([w, u_m.expand(len(w), -1, -1)], -1)  # (S, B, D + P_m): [w_s | u_m] for every s
            params = self.modalities[name].decode(latents)  # may run in bf16 under autocast
            with self._full_precision():
                ll = self.modalities[name].log_likelihood(full_precision(params), batch[name])  # (S, B)
                elbo = self.lambdas[m] * ll - beta * (kl_w + kl_u[m])  # (S, B): ELBO_ms
            # where, not *: a placeholder's inf would make 0 * inf
            bound = bound + torch.where(active, elbo, 0.0).sum(0)  # (B,)
            lls[name], actives[name] = torch.where(active, ll, 0.0), active
        B = use.shape[1]
        return ModelOutput(loss=-bound.sum() / max(B, 1), terms=self._terms(lls, actives, kl_w, kl_u, use))

    def _terms(self, lls: dict[str, Tensor], actives: dict[str, Tensor], kl_w: Tensor, kl_u: Tensor,
               use: Tensor) -> dict[str, Tensor]:
        """Logged means, unweighted: ``nll/m`` over the terms that reconstruct m, ``kl`` (shared) over the sources
        examples have, ``kl/private`` over the private latents they have (of the modalities with one)."""
        terms = {f"nll/{n}": -lls[n].detach().sum() / actives[n].sum().clamp(min=1) for n in lls}
        has_source = torch.cat([use.any(0, keepdim=True), use])  # (S, B)
        kl = torch.where(has_source, kl_w.detach(), 0.0).sum() / has_source.sum().clamp(min=1)
        has_private = use & self.own_dims.any(1)[:, None]  # (M, B)
        kl_private = torch.where(has_private, kl_u.detach(), 0.0).sum() / has_private.sum().clamp(min=1)
        return terms | {"kl": kl, "kl/private": kl_private}

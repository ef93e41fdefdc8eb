"""MVTCAE (Hwang, Kim, Hong & Kim 2021): a product of the unimodal experts, trained on a total-correlation bound.

The joint posterior is the product of the unimodal experts, without a prior expert:

    q(z | X) ∝ Π_m q(z | x_m)

and the objective of one example X = (x_1, ..., x_M), the paper's final MVTCAE objective as its authors' code
(gr8joo/MVTCAE, run_epochs.py, ``basic_routine_epoch``) and MultiVae 1.0 (models/mvtcae/mvtcae_model.py,
``forward``) compute it, is

    L(X) = (M − α)/M · E_q(z|X)[ Σ_m λ_m log p(x_m | z) ]
           − β [ (1 − α) KL(q(z|X) ‖ p(z)) + α/M · Σ_m KL(q(z|X) ‖ q(z|x_m)) ]

with one reparameterized draw z ~ q(z | X), both KLs in closed form, α ∈ [0, 1] the total-correlation ratio,
β the paper's weight of the regularization times the trainer's warm-up, and λ_m the modalities' weights (1 in
the paper). The loss is −L averaged over the batch. Every encoder learns from every term (through the product
and through its own KL); every decoder from the reconstruction.

``posterior`` of any subset of the modalities is the product of their experts, without a prior expert, as the
authors' code and MultiVae infer from a subset; given none, N(0, I).

Weak supervision (``data.paired_fraction`` < 1, not in the paper), as MultiVae handles missing modalities: an
example's q(z | X) is the product of the experts it has, a modality it lacks has neither a reconstruction term
nor a KL(q(z|X) ‖ q(z|x_m)) term, and the weights keep the recipe's M. So an example with x_m alone contributes
(M − α)/M λ_m log p(x_m | z) − β [(1 − α) KL(q(z|x_m) ‖ p(z)) + 0], a β-weighted unimodal ELBO.

Shapes: B batch, D latent, M modalities.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import kl_divergence

from mmgen import DiagonalGaussian, ModelOutput, UnimodalExpertsModel, product_of_experts
from mmgen_plugins.families.mvtcae.config import MVTCAEConfig


class MVTCAE(UnimodalExpertsModel):
    """Unimodal encoders and decoders (the modalities) over one latent z, fused by a product of experts."""

    Config = MVTCAEConfig
    config: MVTCAEConfig
    min_modalities = 2
    title = "MVTCAE"
    why_more = "with one, q(z|X) is that modality's expert and the total-correlation terms vanish"

    def describe(self) -> str:
        return f"model {self.config.kind!r} (MVTCAE, α = {self.config.alpha:.4g}, β = {self.config.beta:.4g})"

    # ---- the posterior (experts, presence: mmgen.UnimodalExpertsModel) -------------------------------
    @staticmethod
    def product(experts: DiagonalGaussian, use: Tensor) -> DiagonalGaussian:
        """Π_m q(z | x_m) over the experts ``use`` (bool ``(M, B)``) marks, no prior expert: batch ``(B,)``.
        An example with no expert gets N(0, I)."""
        return DiagonalGaussian(*product_of_experts(experts.mu, experts.logvar, use, prior=False))

    def posterior(self, given: dict[str, Tensor], present: dict[str, Tensor] | None = None) -> DiagonalGaussian:
        """q(z | given), batch_shape ``(B,)``: the product of the experts each example has among ``given``
        (``present`` masks examples per modality, as for weak supervision or ``data.missing_at_eval``)."""
        return self.product(self.unimodal_posteriors(given), self.presence(given, present))

    # ---- the objective ---------------------------------------------------------------------------
    def forward(self, batch: dict[str, Tensor], beta: float | Tensor = 1.0,
                present: dict[str, Tensor] | None = None) -> ModelOutput:
        """−L(X) averaged over the batch (the module docstring's equation); ``beta`` is the trainer's warm-up,
        which multiplies the paper's β. A modality an example lacks drops out of its product and its terms."""
        experts = self.unimodal_posteriors(batch)  # q(z | x_m), (M, B)
        use = self.presence(batch, present)  # (M, B)
        joint = self.product(experts, use)  # q(z | X), (B,)
        z = joint.rsample()  # (B, D)
        # where, not *: a term masked out need not be finite, and 0 * inf would be NaN.
        recon = self.reconstruction(z, batch, use)  # (M, B): log p(x_m | z), 0 where an example lacks x_m
        kl_prior = joint.kl_to_standard_normal()  # (B,): KL(q(z|X) ‖ p(z))
        kl_views = torch.where(use, kl_divergence(joint, experts), 0.0)  # (M, B): KL(q(z|X) ‖ q(z|x_m))
        M, alpha = len(self.names), self.config.alpha
        fit = (M - alpha) / M * (self.lambdas[:, None] * recon).sum(0)  # (B,)
        regularizer = (1 - alpha) * kl_prior + alpha / M * kl_views.sum(0)  # (B,)
        bound = fit - beta * self.config.beta * regularizer  # (B,)
        B = z.shape[0]
        return ModelOutput(loss=-bound.sum() / max(B, 1), terms=self._terms(recon, kl_prior, kl_views, use))

    def _terms(self, recon: Tensor, kl_prior: Tensor, kl_views: Tensor, use: Tensor) -> dict[str, Tensor]:
        """Logged means, unweighted: nll/m and kl/m (to q(z | x_m)) over the examples that have m, kl (to the
        prior) over every example."""
        has = use.sum(1).clamp(min=1)  # (M,)
        nll, kl_m = -recon.detach().sum(1) / has, kl_views.detach().sum(1) / has  # (M,)
        terms = {f"nll/{n}": nll[m] for m, n in enumerate(self.names)} | {"kl": kl_prior.detach().mean()}
        return terms | {f"kl/{n}": kl_m[m] for m, n in enumerate(self.names)}

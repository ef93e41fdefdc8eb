"""JMVAE-kl (Suzuki, Nakayama & Matsuo 2016): a joint encoder q(z | X) beside unimodal encoders q(z | x_m).

The objective of one paired example X = (x_1, ..., x_M), the paper's L_JMkl(α) written for M modalities:

    L(X) = E_q(z|X)[ Σ_m λ_m log p(x_m | z) ] − β KL(q(z|X) ‖ p(z)) − β α Σ_m KL(q(z|X) ‖ q(z|x_m))

with one reparameterized draw z ~ q(z | X), both KLs in closed form, λ_m the modalities' weights (1 in
the paper) and β the trainer's warm-up, which scales the whole regularization (both KL terms). The
unimodal encoders appear only in the α term, so that is all they learn from; the decoders and the
joint encoder learn from all of it. The loss is −L averaged over the batch.

The joint encoder, the unimodal encoders and the posterior that picks between them are
``mmgen_plugins.joint_encoder``, which TELBO shares.

Not in the paper, which has two modalities and paired data:
* ``posterior`` of 2 to M−1 of the modalities is the product of their unimodal posteriors (no prior expert);
* in training, an example that lacks a modality (``data.paired_fraction`` < 1) has no joint term; it
  adds, for each modality it has, that modality's own ELBO: λ_m log p(x_m | z_m) − β KL(q(z|x_m) ‖ p(z)).

Shapes: B batch, D latent, M modalities, F a branch's latent width.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import kl_divergence

from mmgen import ModelOutput
from mmgen_plugins.families.jmvae.config import JMVAEConfig
from mmgen_plugins.joint_encoder import JointEncoder, JointEncoderModel, encoder_branch

__all__ = ["JMVAE", "JointEncoder", "encoder_branch"]


class JMVAE(JointEncoderModel):
    """Unimodal encoders and decoders (the modalities), and the joint encoder (``joint``), over one latent z;
    the objective L_JMkl(α)."""

    Config = JMVAEConfig
    config: JMVAEConfig
    title = "JMVAE-kl"

    def describe(self) -> str:
        return f"model {self.config.kind!r} (JMVAE-kl, α = {self.config.alpha})"

    # ---- the objective -----------------------------------------------------------------------
    def forward(self, batch: dict[str, Tensor], beta: float | Tensor = 1.0,
                present: dict[str, Tensor] | None = None) -> ModelOutput:
        """−L(X) averaged over the batch (the module docstring's equation); an example that lacks a modality
        takes the sum of the unimodal ELBOs of the modalities it has instead."""
        joint = self.joint_posterior(batch)  # q(z | X), (B,)
        unimodal = self.unimodal_posteriors(batch)  # q(z | x_m), (M, B)
        z = joint.rsample()  # (B, D)
        recon = self.reconstruction(z, batch)  # (M, B): log p(x_m | z), unweighted
        kl_prior = joint.kl_to_standard_normal()  # (B,)
        kl_pull = kl_divergence(joint, unimodal)  # (M, B): KL(q(z|X) ‖ q(z|x_m)), joint broadcast over M
        bound = (self.lambdas[:, None] * recon).sum(0) - beta * (kl_prior + self.config.alpha * kl_pull.sum(0))
        use = self.presence(batch, present)  # (M, B)
        complete = use.all(0)  # (B,)
        if present is not None:  # weak supervision: the others take their unimodal ELBOs
            bound = torch.where(complete, bound, self.unimodal_elbos(batch, unimodal, use & ~complete, beta))
        B = z.shape[0]
        return ModelOutput(loss=-bound.sum() / max(B, 1), terms=self._terms(recon, kl_prior, kl_pull, complete))

    def _terms(self, recon: Tensor, kl_prior: Tensor, kl_pull: Tensor, complete: Tensor) -> dict[str, Tensor]:
        """Logged means over the examples with every modality: nll/m, kl (to the prior), kl/m (to q(z | x_m))."""
        n = complete.sum().clamp(min=1)
        pull = torch.where(complete, kl_pull.detach(), 0.0).sum(1) / n  # (M,)
        pulls = {f"kl/{name}": pull[m] for m, name in enumerate(self.names)}
        return self.joint_terms(recon, kl_prior, complete) | pulls

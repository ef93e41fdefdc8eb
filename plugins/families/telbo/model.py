"""TELBO (Vedantam, Fischer, Huang & Murphy 2018, "Generative Models of Visually Grounded Imagination").

The triple ELBO of one paired example X = (x_1, ..., x_M), the paper's equation written for M modalities:

    L(X) = elbo(X | q(z|X)) + Σ_m elbo_m(x_m | q(z|x_m))
    elbo(X | q)     = E_q[ Σ_m λ_m log p(x_m | z) ] − β KL(q ‖ p(z))
    elbo_m(x_m | q) = E_q[ λ'_m log p(x_m | z) ] − β KL(q ‖ p(z))

with one reparameterized draw from each posterior, the KLs in closed form, λ_m the modalities' weights, λ'_m
``unimodal_weights`` (λ_m unless named) and β the trainer's warm-up. The decoders p(x_m | z) are shared by
every term. As in the paper it trains in two stages (``training_stage``): first the joint encoder and the
decoders on elbo(X); then, with the decoders (and the joint encoder) frozen, the unimodal encoders on
Σ_m elbo_m, so that they learn to reach the latent space the joint stage made without distorting it. The
loss of a stage is minus its part of L averaged over the batch; validation scores the whole of L at β = 1,
so epochs of both stages compare. The joint encoder and the posterior eval uses are
``mmgen_plugins.joint_encoder`` (as JMVAE's: the joint encoder given everything, one unimodal encoder given
one modality).

Not in the paper, which has two modalities and paired data: an example that lacks a modality
(``data.paired_fraction`` < 1) has no joint term; its unimodal terms are those of the modalities it has.

Shapes: B batch, D latent, M modalities.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mmgen import Modality, ModelOutput
from mmgen_plugins.families.telbo.config import TELBOConfig
from mmgen_plugins.joint_encoder import JointEncoder, JointEncoderModel, decoder_parameters

JOINT, UNIMODAL, TRIPLE = "joint", "unimodal", "triple"


class TELBO(JointEncoderModel):
    """The joint encoder, the unimodal encoders and the decoders, trained on the triple ELBO in two stages;
    ``stage`` is the part of it ``forward`` trains (``triple``, the whole, outside the trainer)."""

    Config = TELBOConfig
    config: TELBOConfig
    title = "TELBO"

    def __init__(self, modalities: dict[str, Modality], joint: JointEncoder, config: TELBOConfig):
        super().__init__(modalities, joint, config)
        weights = [config.unimodal_weights.get(n, m.config.weight) for n, m in modalities.items()]
        self.register_buffer("unimodal_lambdas", torch.tensor(weights), persistent=False)  # (M,): λ'_m
        self.stage = TRIPLE
        # What each stage trains, by parameter name, found once while everything but the joint encoder's
        # branch decoders (frozen for good) can take a gradient.
        decoders = {id(p) for m in modalities.values() for p in decoder_parameters(m, config.kind)}
        named = list(self.named_parameters())
        self.trains = {
            JOINT: {n for n, p in named if (n.startswith("joint.") and p.requires_grad) or id(p) in decoders},
            UNIMODAL: {n for n, p in named if n.startswith("modalities.") and id(p) not in decoders},
        }

    @classmethod
    def check(cls, config: TELBOConfig, modalities: dict, lookup) -> list[str]:
        unknown = sorted(set(config.unimodal_weights) - set(modalities))
        problems = [f"model.unimodal_weights: no modality {n!r}; the modalities are {', '.join(modalities)}"
                    for n in unknown]
        problems += [f"model.unimodal_weights.{n}: {w} is negative; a weight is 0 or more"
                     for n, w in config.unimodal_weights.items() if w < 0]
        return super().check(config, modalities, lookup) + problems

    def describe(self) -> str:
        return f"model {self.config.kind!r} (TELBO)"

    # ---- the two stages ------------------------------------------------------------------------------
    @classmethod
    def training_stage(cls, config: TELBOConfig, epoch: int, epochs: int) -> str:
        return JOINT if epoch < config.joint_epochs(epochs) else UNIMODAL

    def enter_stage(self, stage: str) -> None:
        """joint: the joint encoder and the decoders train; unimodal: the unimodal encoders train. What a stage
        does not train is frozen (the joint encoder's branch decoders always are)."""
        trains = self.trains[stage]
        for name, p in self.named_parameters():
            p.requires_grad_(name in trains)
        self.stage = stage

    # ---- the objective ---------------------------------------------------------------------------------
    def forward(self, batch: dict[str, Tensor], beta: float | Tensor = 1.0,
                present: dict[str, Tensor] | None = None) -> ModelOutput:
        """Minus the stage's part of L(X) (the module docstring's equation), averaged over the batch."""
        return self._objective(batch, beta, present, self.stage)

    def validation_output(self, batch: dict[str, Tensor], present: dict[str, Tensor] | None = None) -> ModelOutput:
        """The whole triple ELBO at β = 1, whatever the stage: epochs of both stages compare."""
        return self._objective(batch, 1.0, present, TRIPLE)

    def _objective(self, batch: dict[str, Tensor], beta: float | Tensor, present: dict[str, Tensor] | None,
                   stage: str) -> ModelOutput:
        use = self.presence(batch, present)  # (M, B)
        B = use.shape[1]
        parts, terms = [], {}
        if stage in (JOINT, TRIPLE):
            joint_bound, terms = self._joint(batch, beta, use.all(0))
            parts.append(joint_bound)
        if stage in (UNIMODAL, TRIPLE):
            unimodal = self.unimodal_posteriors(batch)  # q(z | x_m), (M, B)
            parts.append(self.unimodal_elbos(batch, unimodal, use, beta, self.unimodal_lambdas))
            n = use.sum(1).clamp(min=1)  # (M,)
            kl = torch.where(use, unimodal.kl_to_standard_normal().detach(), 0.0).sum(1) / n  # (M,)
            terms |= {f"kl/{name}": kl[m] for m, name in enumerate(self.names)}
        return ModelOutput(loss=-sum(parts).sum() / max(B, 1), terms=terms)

    def _joint(self, batch: dict[str, Tensor], beta: float | Tensor, complete: Tensor) -> tuple[Tensor, dict]:
        """elbo(X | q(z|X)) of the examples with every modality, 0 for the others: ``(B,)``, and logged means."""
        joint = self.joint_posterior(batch)  # q(z | X), (B,)
        z = joint.rsample()  # (B, D)
        recon = self.reconstruction(z, batch)  # (M, B): log p(x_m | z), unweighted
        kl = joint.kl_to_standard_normal()  # (B,)
        bound = torch.where(complete, (self.lambdas[:, None] * recon).sum(0) - beta * kl, 0.0)
        return bound, self.joint_terms(recon, kl, complete)

"""JMVAE-kl (Suzuki, Nakayama & Matsuo 2016): a joint encoder q(z | X) beside unimodal encoders q(z | x_m).

The objective of one paired example X = (x_1, ..., x_M), the paper's L_JMkl(α) written for M modalities:

    L(X) = E_q(z|X)[ Σ_m λ_m log p(x_m | z) ] − β KL(q(z|X) ‖ p(z)) − β α Σ_m KL(q(z|X) ‖ q(z|x_m))

with one reparameterized draw z ~ q(z | X), both KLs in closed form, λ_m the modalities' weights (1 in
the paper) and β the trainer's warm-up, which scales the whole regularization (both KL terms). The
unimodal encoders appear only in the α term, so that is all they learn from; the decoders and the
joint encoder learn from all of it. The loss is −L averaged over the batch.

The joint encoder is built from the modality plugins, so any modalities serve: each modality has a
branch, a second network of its own plugin built with latent width F (``joint_features``), whose
encoder outputs (2F numbers) are that modality's features; an MLP (``joint_hidden``) on the
concatenated features of every branch gives q(z | X). A branch is read only through ``encode``.

Not in the paper, which has two modalities and paired data:
* ``posterior`` of 2 to M−1 of the modalities is the product of their unimodal posteriors (no prior expert);
* in training, an example that lacks a modality (``data.paired_fraction`` < 1) has no joint term; it
  adds, for each modality it has, that modality's own ELBO: λ_m log p(x_m | z_m) − β KL(q(z|x_m) ‖ p(z)).

Shapes: B batch, D latent, M modalities, F a branch's latent width.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import kl_divergence

from mmgen import (
    DiagonalGaussian,
    MmgenError,
    Modality,
    ModalityConfig,
    ModelOutput,
    UnimodalExpertsModel,
    full_precision,
    product_of_experts,
)
from mmgen_plugins.families.jmvae.config import JMVAEConfig
from mmgen_plugins.mlp import GaussianHead, mlp


def encoder_branch(cls: type[Modality], name: str, config: ModalityConfig, width: int) -> Modality:
    """A second network of a modality's plugin, with latent width ``width``, to be read only through ``encode``.

    Its decoder and likelihood are never used, so their parameters are frozen: found as those that get a
    gradient when a sample decoded from z = 0 is scored (the RNG is left as it was). Left trainable, they would
    hold DistributedDataParallel waiting for gradients that never come. A plugin whose encoder and decoder
    share a parameter would have it frozen here too.
    """
    branch = cls(name, config, width)
    try:
        with torch.enable_grad(), torch.random.fork_rng(devices=[]):
            likelihood = branch.likelihood(branch.decode(torch.zeros(1, branch.decode_dim)))
            score = likelihood.log_prob(likelihood.sample()).sum()
    except (NotImplementedError, RuntimeError) as exc:
        raise MmgenError(f"modalities.{name}: the jmvae family cannot find which parameters of its joint-encoder "
                         f"branch the decoder uses, since scoring a decoded sample fails: {exc}",
                         hint="the modality's likelihood must offer sample() and log_prob(), as torch's do")
    params = [p for p in branch.parameters() if p.requires_grad]
    for p, grad in zip(params, torch.autograd.grad(score, params, allow_unused=True)):
        if grad is not None:
            p.requires_grad_(False)
    return branch


class JointEncoder(nn.Module):
    """q(z | X) from every modality: each branch's features, concatenated, then an MLP and a Gaussian head."""

    def __init__(self, branches: dict[str, Modality], config: JMVAEConfig):
        super().__init__()
        self.branches = nn.ModuleDict(branches)
        width = 2 * config.joint_features * len(branches)
        self.body = mlp([width, *config.joint_hidden], final_activation=True)  # no hidden widths: the identity
        self.head = GaussianHead(config.joint_hidden[-1] if config.joint_hidden else width, config.latent_dim)

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Every modality's prepared batch ``(B, *event)`` -> ``mu, logvar`` ``(B, D)``."""
        features = torch.cat([torch.cat(branch.encode(batch[n]), -1) for n, branch in self.branches.items()], -1)
        return self.head(self.body(nn.functional.silu(features)))  # (B, M * 2F) -> 2 x (B, D)


class JMVAE(UnimodalExpertsModel):
    """Unimodal encoders and decoders (the modalities), and the joint encoder (``joint``), over one latent z."""

    Config = JMVAEConfig
    config: JMVAEConfig
    min_modalities = 2
    title = "JMVAE-kl"
    why_more = "with one, the joint encoder is a second unimodal one"

    def __init__(self, modalities: dict[str, Modality], joint: JointEncoder, config: JMVAEConfig):
        super().__init__(modalities, config)
        self.joint = joint

    @classmethod
    def create(cls, modalities: dict[str, Modality], config: JMVAEConfig, lookup) -> JMVAE:
        branches = {n: encoder_branch(lookup("modalities", m.config.kind), n, m.config, config.joint_features)
                    for n, m in modalities.items()}
        return cls(modalities, JointEncoder(branches, config), config)

    def describe(self) -> str:
        return f"model {self.config.kind!r} (JMVAE-kl, α = {self.config.alpha})"

    # ---- the encoders (the unimodal ones and presence: mmgen.UnimodalExpertsModel) -----------
    def joint_posterior(self, batch: dict[str, Tensor]) -> DiagonalGaussian:
        """q(z | X) of the joint encoder, batch_shape ``(B,)``; ``batch`` holds every modality."""
        mu, logvar = self.joint(batch)  # (B, D); in bf16/fp16 under autocast
        return DiagonalGaussian(full_precision(mu), full_precision(logvar))

    def posterior(self, given: dict[str, Tensor], present: dict[str, Tensor] | None = None) -> DiagonalGaussian:
        """q(z | given), batch_shape ``(B,)``, chosen per example by the modalities it has among ``given``
        (``present`` masks examples per modality, as for weak supervision or ``data.missing_at_eval``):

        * every modality: the joint encoder q(z | X);
        * one modality: its unimodal encoder q(z | x_m);
        * 2 to M−1 modalities: the product of their unimodal posteriors, without a prior expert (not in the paper);
        * none: the prior N(0, I).
        """
        everything = set(given) == set(self.names)
        if everything and present is None:
            return self.joint_posterior(given)
        use = self.presence(given, present)  # (M, B)
        unimodal = self.unimodal_posteriors(given)
        mu, logvar = product_of_experts(unimodal.mu, unimodal.logvar, use, prior=False)  # (B, D)
        if everything:
            complete = use.all(0)[:, None]  # (B, 1): these examples have every modality
            joint = self.joint_posterior(given)
            mu, logvar = torch.where(complete, joint.mu, mu), torch.where(complete, joint.logvar, logvar)
        return DiagonalGaussian(mu, logvar)

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
            bound = torch.where(complete, bound, self._unimodal_elbos(batch, unimodal, use & ~complete, beta))
        B = z.shape[0]
        return ModelOutput(loss=-bound.sum() / max(B, 1), terms=self._terms(recon, kl_prior, kl_pull, complete))

    def _unimodal_elbos(self, batch: dict[str, Tensor], unimodal: DiagonalGaussian, active: Tensor,
                        beta: float | Tensor) -> Tensor:
        """Σ_m over ``active`` (bool ``(M, B)``) of λ_m log p(x_m | z_m) − β KL(q(z|x_m) ‖ p(z)): ``(B,)``."""
        z = unimodal.rsample()  # (M, B, D): one draw from each modality's own posterior
        recon = self.reconstruction(z, batch, each=True)  # (M, B): each x_m from its own z_m
        elbo = self.lambdas[:, None] * recon - beta * unimodal.kl_to_standard_normal()
        return torch.where(active, elbo, 0.0).sum(0)  # where, not *: a placeholder's inf would make 0 * inf

    def _terms(self, recon: Tensor, kl_prior: Tensor, kl_pull: Tensor, complete: Tensor) -> dict[str, Tensor]:
        """Logged means over the examples with every modality: nll/m, kl (to the prior), kl/m (to q(z | x_m))."""
        n = complete.sum().clamp(min=1)

        def mean(x: Tensor) -> Tensor:
            return torch.where(complete, x.detach(), 0.0).sum() / n

        terms = {f"nll/{name}": -mean(recon[m]) for m, name in enumerate(self.names)}
        return terms | {"kl": mean(kl_prior)} | {f"kl/{name}": mean(kl_pull[m]) for m, name in enumerate(self.names)}

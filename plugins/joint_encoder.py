"""What the families with a joint encoder share (JMVAE-kl, TELBO): q(z | X) from every modality at once, beside
one unimodal encoder q(z | x_m) per modality, and the posterior that picks between them by what is given.

The joint encoder is built from the modality plugins, so any modalities serve: each modality has a branch, a
second network of its own plugin built with latent width F (``joint_features``), whose encoder outputs (2F
numbers) are that modality's features; an MLP (``joint_hidden``) on the concatenated features of every branch
gives q(z | X). A branch is read only through ``encode``.

Shapes: B batch, D latent, M modalities, F a branch's latent width.
"""

from __future__ import annotations

import torch
from pydantic import Field, PositiveInt
from torch import Tensor, nn

from mmgen import (
    DiagonalGaussian,
    MmgenError,
    Modality,
    ModalityConfig,
    ModelConfig,
    UnimodalExpertsModel,
    full_precision,
    product_of_experts,
)
from mmgen_plugins.mlp import GaussianHead, mlp


class JointEncoderConfig(ModelConfig):
    """The joint encoder q(z | X), built from the modalities."""

    joint_features: PositiveInt = Field(
        256,
        description="F: the joint encoder reads each modality with a branch of its own, an encoder network of "
        "that modality's plugin built with latent width F; the branch's two outputs (2F numbers) are its features.",
    )
    joint_hidden: list[PositiveInt] = Field(
        [512], description="Hidden widths of the joint encoder's MLP on the concatenated features of every branch."
    )


def decoder_parameters(modality: Modality, family: str) -> list[nn.Parameter]:
    """The trainable parameters of ``modality``'s decoder and likelihood: those that get a gradient when a sample
    decoded from z = 0 is scored (the RNG is left as it was). A parameter the encoder shares is among them."""
    try:
        with torch.enable_grad(), torch.random.fork_rng(devices=[]):
            anchor = next((p for p in modality.parameters() if p.is_floating_point()), torch.zeros(()))
            likelihood = modality.likelihood(modality.decode(anchor.new_zeros(1, modality.decode_dim)))
            score = likelihood.log_prob(likelihood.sample()).sum()
    except (NotImplementedError, RuntimeError) as exc:
        raise MmgenError(f"modalities.{modality.name}: the {family} family cannot find which parameters the "
                         f"decoder uses, since scoring a decoded sample fails: {exc}",
                         hint="the modality's likelihood must offer sample() and log_prob(), as torch's do")
    params = [p for p in modality.parameters() if p.requires_grad]
    grads = torch.autograd.grad(score, params, allow_unused=True)
    return [p for p, grad in zip(params, grads) if grad is not None]


def encoder_branch(cls: type[Modality], name: str, config: ModalityConfig, width: int, family: str) -> Modality:
    """A second network of a modality's plugin, with latent width ``width``, to be read only through ``encode``.

    Its decoder and likelihood are never used, so their parameters are frozen (``decoder_parameters``). Left
    trainable, they would hold DistributedDataParallel waiting for gradients that never come.
    """
    branch = cls(name, config, width)
    for p in decoder_parameters(branch, family):
        p.requires_grad_(False)
    return branch


class JointEncoder(nn.Module):
    """q(z | X) from every modality: each branch's features, concatenated, then an MLP and a Gaussian head."""

    def __init__(self, branches: dict[str, Modality], config: JointEncoderConfig):
        super().__init__()
        self.branches = nn.ModuleDict(branches)
        width = 2 * config.joint_features * len(branches)
        self.body = mlp([width, *config.joint_hidden], final_activation=True)  # no hidden widths: the identity
        self.head = GaussianHead(config.joint_hidden[-1] if config.joint_hidden else width, config.latent_dim)

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Every modality's prepared batch ``(B, *event)`` -> ``mu, logvar`` ``(B, D)``."""
        features = torch.cat([torch.cat(branch.encode(batch[n]), -1) for n, branch in self.branches.items()], -1)
        return self.head(self.body(nn.functional.silu(features)))  # (B, M * 2F) -> 2 x (B, D)


class JointEncoderModel(UnimodalExpertsModel):
    """Unimodal encoders and decoders (the modalities), and the joint encoder (``joint``), over one latent z.
    A family derives from it and writes its objective (``forward``)."""

    config: JointEncoderConfig
    min_modalities = 2
    why_more = "with one, the joint encoder is a second unimodal one"

    def __init__(self, modalities: dict[str, Modality], joint: JointEncoder, config: JointEncoderConfig):
        super().__init__(modalities, config)
        self.joint = joint

    @classmethod
    def create(cls, modalities: dict[str, Modality], config: JointEncoderConfig, lookup) -> JointEncoderModel:
        branches = {n: encoder_branch(lookup("modalities", m.config.kind), n, m.config, config.joint_features,
                                      config.kind) for n, m in modalities.items()}
        return cls(modalities, JointEncoder(branches, config), config)

    def joint_posterior(self, batch: dict[str, Tensor]) -> DiagonalGaussian:
        """q(z | X) of the joint encoder, batch_shape ``(B,)``; ``batch`` holds every modality."""
        mu, logvar = self.joint(batch)  # (B, D); in bf16/fp16 under autocast
        return DiagonalGaussian(full_precision(mu), full_precision(logvar))

    def posterior(self, given: dict[str, Tensor], present: dict[str, Tensor] | None = None) -> DiagonalGaussian:
        """q(z | given), batch_shape ``(B,)``, chosen per example by the modalities it has among ``given``
        (``present`` masks examples per modality, as for weak supervision or ``data.missing_at_eval``):

        * every modality: the joint encoder q(z | X);
        * one modality: its unimodal encoder q(z | x_m);
        * 2 to M−1 modalities: the product of their unimodal posteriors, without a prior expert (not in the papers);
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

    def joint_terms(self, recon: Tensor, kl: Tensor, complete: Tensor) -> dict[str, Tensor]:
        """Logged means over the examples with every modality (bool ``complete`` ``(B,)``) of the joint term's
        parts: ``nll/<m>`` from ``recon`` ``(M, B)`` and ``kl`` from ``kl`` ``(B,)``, detached."""
        n = complete.sum().clamp(min=1)

        def mean(x: Tensor) -> Tensor:
            return torch.where(complete, x.detach(), 0.0).sum() / n

        return {f"nll/{name}": -mean(recon[m]) for m, name in enumerate(self.names)} | {"kl": mean(kl)}

    def unimodal_elbos(self, batch: dict[str, Tensor], unimodal: DiagonalGaussian, active: Tensor,
                       beta: float | Tensor, lambdas: Tensor | None = None) -> Tensor:
        """Σ_m over ``active`` (bool ``(M, B)``) of λ_m log p(x_m | z_m) − β KL(q(z|x_m) ‖ p(z)) with one draw
        z_m ~ q(z | x_m) each: ``(B,)``. λ is the modalities' weights unless ``lambdas`` (``(M,)``) is given."""
        lambdas = self.lambdas if lambdas is None else lambdas
        z = unimodal.rsample()  # (M, B, D): one draw from each modality's own posterior
        recon = self.reconstruction(z, batch, each=True)  # (M, B): each x_m from its own z_m
        elbo = lambdas[:, None] * recon - beta * unimodal.kl_to_standard_normal()
        return torch.where(active, elbo, 0.0).sum(0)  # where, not *: a placeholder's inf would make 0 * inf

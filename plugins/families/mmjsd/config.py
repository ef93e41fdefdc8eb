"""``[model]`` of the mmJSD family (Sutter, Daunhawer & Vogt 2020): β, the estimator of the reconstruction term,
which distribution ``posterior`` returns, and the optional modality-specific subspaces (``private_dim``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mmgen import ModelConfig


class MMJSDConfig(ModelConfig):
    """The weight of the JS divergence, how the mixture's reconstruction term is estimated, inference, and the
    modality-specific subspaces. ``latent_dim`` is the shared content c (D); ``private_dim`` each modality's style
    s_m (P), 0 for none."""

    kind: str = Field("mmjsd", description="Registered model family.")
    beta: float = Field(
        2.5, ge=0,
        description="β: the weight of the multimodal JS divergence to the dynamic prior (the paper's code: "
        "--beta, 2.5 on MNIST-SVHN-Text and, in the MoPoE paper, on PolyMNIST). The trainer's warm-up "
        "(train.anneal_epochs) multiplies it.",
    )
    estimator: Literal["stratified", "sampled"] = Field(
        "stratified",
        description="How E over the mixture q(z | X) = (1/M) Σ_m q(z | x_m) of the reconstruction is estimated. "
        "stratified: one draw from every unimodal posterior the example has, each reconstructing every modality "
        "it has, averaged (M decoder passes per modality). sampled: one unimodal posterior per example, drawn "
        "uniformly among those it has (one decoder pass per modality; the paper's code assigns them by batch "
        "position). Both have the same expectation; validation always takes the stratified one.",
    )
    inference: Literal["mixture", "dynamic_prior"] = Field(
        "mixture",
        description="What posterior(given) returns, for eval and sampling. mixture: the uniform mixture of the "
        "given unimodal posteriors, the q(z | X) the objective reconstructs from (the paper's code infers so; "
        "given one modality it is q(z | x_m)). dynamic_prior: the geometric mean of the given unimodal "
        "posteriors and p(z) with equal weights, the f the JS divergence is taken to.",
    )
    private_dim: int = Field(
        0, ge=0,
        description="P: the width of each modality's own style latent s_m, the paper's modality-specific subspaces "
        "(its Section 3.3, 'mmJSD (MS)'; the authors' code: --factorized_representation with --style_*_dim, 4 per "
        "modality by default on MNIST-SVHN-Text, 32 on CelebA; one width per modality there, one for all here). "
        "Modality m's encoder then gives q(c | x_m) and q(s_m | x_m), its decoder reads [c | s_m], and the objective "
        "adds −KL(q(s_m|x_m) ‖ N(0, I)) per modality. 0: one shared latent only, the paper's main model (its code's "
        "non_factorized runs).",
    )
    beta_style: float = Field(
        1.0, ge=0,
        description="The weight of Σ_m KL(q(s_m | x_m) ‖ p(s_m)) when private_dim > 0; the trainer's warm-up "
        "(train.anneal_epochs) multiplies it, β does not. 1 is the paper's objective (the style KLs unweighted). "
        "The authors' code weighs modality m's by --beta × --beta_style × --beta_m*_style (its one factorized "
        "script, job_celeba.sh: 2.5 × 2 × 1 = 5 for the image, 2.5 × 2 × 5 = 25 for the text): set beta_style to "
        "that product to follow it (one value for every modality here).",
    )

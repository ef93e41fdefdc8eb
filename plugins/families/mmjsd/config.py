"""``[model]`` of the mmJSD family (Sutter, Daunhawer & Vogt 2020): β, the estimator of the reconstruction term,
and which distribution ``posterior`` returns."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mmgen import ModelConfig


class MMJSDConfig(ModelConfig):
    """The weight of the JS divergence, how the mixture's reconstruction term is estimated, and inference."""

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

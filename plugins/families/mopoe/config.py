"""``[model]`` of the MoPoE family: the MVAE family's settings with MoPoE's defaults, and the estimator of
the mixture bound (every subset per example, or one drawn subset per example)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SerializeAsAny

from mmgen import FusionConfig
from mmgen_plugins.families.mvae import MVAEConfig


class MoPoEConfig(MVAEConfig):
    """The MVAE family's settings with MoPoE's defaults: the mixture of products and the joint term alone."""

    kind: str = Field("mopoe", description="Registered model family.")
    fusion: SerializeAsAny[FusionConfig] = Field(
        default_factory=lambda: FusionConfig(kind="mopoe"), description="How experts are combined (MoPoE: 'mopoe')."
    )
    terms: Literal["subsampled", "joint"] = Field("joint", description="MoPoE trains on the joint term alone.")
    estimator: Literal["stratified", "sampled"] = Field(
        "stratified",
        description="stratified: each example's bound is taken on every non-empty subset it has and averaged "
        "(2^M - 1 decoder passes per modality and example; Shi et al. 2019). sampled: one subset per example, "
        "drawn uniformly among the non-empty subsets it has, z from its product of experts (the MoPoE paper's "
        "code): an unbiased estimate of the same bound at one decoder pass; its K samples share the subset. "
        "Takes objective 'elbo' or 'iwae'; 'dreg' needs the stratified draws.",
    )

"""MoPoE-VAE (Sutter, Daunhawer & Vogt 2021), registered as ``[model] kind = "mopoe"``.

q(z | X) is the uniform mixture, over every non-empty subset of the modalities, of the product of
experts of that subset (eq. 5 of the paper), trained on the joint ELBO with the stratified
estimator. That is the MVAE family's objective with the ``mopoe`` fusion and ``terms = "joint"``,
so this family reuses it and only changes the defaults.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SerializeAsAny

from mmgen import FusionConfig, hookimpl
from mmgen_plugins.families.mvae import MultimodalVAE, MVAEConfig


class MoPoEConfig(MVAEConfig):
    """The MVAE family's settings with MoPoE's defaults: the mixture of products and the joint term alone."""

    kind: str = Field("mopoe", description="Registered model family.")
    fusion: SerializeAsAny[FusionConfig] = Field(
        default_factory=lambda: FusionConfig(kind="mopoe"), description="How experts are combined (MoPoE: 'mopoe')."
    )
    terms: Literal["subsampled", "joint"] = Field("joint", description="MoPoE trains on the joint term alone.")


class MoPoE(MultimodalVAE):
    Config = MoPoEConfig


@hookimpl
def register_models(register):
    register("mopoe", MoPoE)

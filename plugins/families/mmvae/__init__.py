"""MMVAE (Shi, Siddharth, Paige & Torr 2019), registered as ``[model] kind = "mmvae"``.

q(z | X) = (1/M) Σ_m q(z | x_m), a mixture of the unimodal experts, trained on the joint term alone
with the stratified estimator: one draw per component, each reconstructing every modality (eq. 3 of
the paper with its K-sample bound; ``objective`` elbo, iwae or dreg). That is exactly the MVAE
family's objective with the ``moe`` fusion and ``terms = "joint"``, so this family reuses it and
only changes the defaults; the objective is not written twice.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SerializeAsAny

from mmgen import FusionConfig, hookimpl
from mmgen_plugins.families.mvae import MultimodalVAE, MVAEConfig


class MMVAEConfig(MVAEConfig):
    """The MVAE family's settings with MMVAE's defaults: the mixture of experts and the joint term alone."""

    kind: str = Field("mmvae", description="Registered model family.")
    fusion: SerializeAsAny[FusionConfig] = Field(
        default_factory=lambda: FusionConfig(kind="moe"), description="How experts are combined (MMVAE: 'moe')."
    )
    terms: Literal["subsampled", "joint"] = Field("joint", description="MMVAE trains on the joint term alone.")


class MMVAE(MultimodalVAE):
    Config = MMVAEConfig


@hookimpl
def register_models(register):
    register("mmvae", MMVAE)

"""``[model]`` of the MVAE family: the fusion, the ELBO's terms and the bound (Wu & Goodman 2018;
with a mixture fusion and ``terms = "joint"``, the objectives of MMVAE and MoPoE)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SerializeAsAny

from mmgen import FusionConfig, ModelConfig


class MVAEConfig(ModelConfig):
    """The latent space, the fusion and the ELBO's sub-sampling."""

    fusion: SerializeAsAny[FusionConfig] = Field(
        default_factory=FusionConfig, description="How experts are combined: a registered fusion kind."
    )
    subsets: int = Field(
        0, ge=0, description="k random subsets added to the ELBO each step; used only with more than two modalities."
    )
    terms: Literal["subsampled", "joint"] = Field(
        "subsampled",
        description="subsampled: the joint term, one per modality and the k subsets (the MVAE paper). joint: the "
        "joint term alone (the MMVAE and MoPoE papers); it then counts for every example with any modality.",
    )
    objective: Literal["elbo", "iwae", "dreg"] = Field(
        "elbo",
        description="elbo: the K-sample average ELBO. iwae: the importance-weighted bound of Burda et al. with K "
        "samples. dreg: the same bound with doubly-reparameterized encoder gradients (Tucker et al.). A mixture "
        "posterior is stratified: each estimate is taken per component and averaged (Shi et al. 2019).",
    )
    samples: int = Field(1, ge=1, le=4096, description="K: latent samples per term and example (per component).")
    objective_terms: list[str] | None = Field(
        None,
        description="The terms that take `objective`'s bound; the others take the K-sample ELBO of the same draws "
        "(with the KL in closed form). Entries: \"joint\", a modality's name (its single term), \"subsets\" (the "
        "random ones). Unset: every term. E.g. [\"joint\", \"image\"] trains q(z | label) on the ELBO, since an "
        "importance-weighted bound widens the posterior a conditional sample is drawn from.",
    )
    reconstruct: Literal["subset", "all"] = Field(
        "subset",
        description="subset: each term reconstructs its own modalities (the paper). all: every term reconstructs "
        "every modality the example has, a valid ELBO of the joint with that term's posterior (cross-modal).",
    )
    cross_from: list[str] = Field(
        [], description="Modalities whose single-modality term also reconstructs every other modality the example "
        "has (a cross term: the ELBO of the whole example with q(z | that modality)), the others' terms keeping "
        "reconstruct = subset; e.g. [\"image\"] makes q(z | image) predict the label.",
    )

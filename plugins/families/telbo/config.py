"""``[model]`` of the TELBO family (Vedantam et al. 2018): the two training stages, the unimodal terms' weights,
and the joint encoder's shape."""

from __future__ import annotations

from pydantic import Field

from mmgen_plugins.joint_encoder import JointEncoderConfig


class TELBOConfig(JointEncoderConfig):
    """The share of the epochs that train the joint stage, and λ of the unimodal ELBOs."""

    kind: str = Field("telbo", description="Registered model family.")
    joint_share: float = Field(
        0.5, gt=0, lt=1,
        description="The share of train.epochs in the first stage, which trains the joint encoder and the decoders "
        "on the joint ELBO; the rest trains the unimodal encoders on their ELBOs with the decoders frozen. Rounded "
        "to whole epochs (halves up), at least one in each stage (a run of one epoch has only the first). Only the "
        "last stage's epochs can be the best checkpoint; a resume may change train.epochs only where every epoch "
        "begun keeps its stage.",
    )
    unimodal_weights: dict[str, float] = Field(
        {},
        description="λ of modality m in its own unimodal ELBO (the paper's λ^m_m), by modality name; a modality "
        "not named uses its weight, as in the joint ELBO.",
    )

    def joint_epochs(self, epochs: int) -> int:
        """How many of ``epochs`` the first stage trains."""
        return min(max(1, int(self.joint_share * epochs + 0.5)), max(1, epochs - 1))  # halves round up

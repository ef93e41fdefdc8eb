"""``[model]`` of the JMVAE-kl family (Suzuki, Nakayama & Matsuo 2016): α, and the joint encoder's shape."""

from __future__ import annotations

from pydantic import Field

from mmgen_plugins.joint_encoder import JointEncoderConfig


class JMVAEConfig(JointEncoderConfig):
    """The weight α of the unimodal encoders' KL terms, and the joint encoder q(z | X) built from the modalities."""

    kind: str = Field("jmvae", description="Registered model family.")
    alpha: float = Field(
        0.1, ge=0,
        description="α: the weight of Σ_m KL(q(z | X) ‖ q(z | x_m)), which pulls each unimodal encoder to the "
        "joint one (0.1 in the paper's MNIST comparison, as MultiVae reproduces it).",
    )

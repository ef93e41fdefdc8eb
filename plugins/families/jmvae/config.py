"""``[model]`` of the JMVAE-kl family (Suzuki, Nakayama & Matsuo 2016): α, and the joint encoder's shape."""

from __future__ import annotations

from pydantic import Field, PositiveInt

from mmgen import ModelConfig


class JMVAEConfig(ModelConfig):
    """The weight α of the unimodal encoders' KL terms, and the joint encoder q(z | X) built from the modalities."""

    kind: str = Field("jmvae", description="Registered model family.")
    alpha: float = Field(
        0.1, ge=0,
        description="α: the weight of Σ_m KL(q(z | X) ‖ q(z | x_m)), which pulls each unimodal encoder to the "
        "joint one (0.1 in the paper's MNIST comparison, as MultiVae reproduces it).",
    )
    joint_features: PositiveInt = Field(
        256,
        description="F: the joint encoder reads each modality with a branch of its own, an encoder network of "
        "that modality's plugin built with latent width F; the branch's two outputs (2F numbers) are its features.",
    )
    joint_hidden: list[PositiveInt] = Field(
        [512], description="Hidden widths of the joint encoder's MLP on the concatenated features of every branch."
    )

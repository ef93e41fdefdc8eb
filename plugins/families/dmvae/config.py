"""``[model]`` of the DMVAE family (Lee & Pavlovic 2021): the private latents and β."""

from __future__ import annotations

from pydantic import Field

from mmgen import ModelConfig


class DMVAEConfig(ModelConfig):
    """``latent_dim`` is the shared w (D); ``private_dim`` each modality's own u_m (P)."""

    kind: str = Field("dmvae", description="Registered model family.")
    private_dim: int = Field(
        4, gt=0,
        description="P: the width of each modality's private latent u_m, the same for every modality (the authors' "
        "MNIST-SVHN code gives MNIST 1 and SVHN 4).",
    )
    beta: float = Field(
        1.0, gt=0,
        description="β: the weight of every KL term, shared and private (1 in the authors' code, where their β-TC "
        "weights all default to 1). The trainer's warm-up (train.anneal_epochs) multiplies it.",
    )

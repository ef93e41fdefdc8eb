"""``[model]`` of the MVTCAE family (Hwang, Kim, Hong & Kim 2021): the paper's α and β."""

from __future__ import annotations

from pydantic import Field

from mmgen import ModelConfig


class MVTCAEConfig(ModelConfig):
    """α shares the regularization between the prior and the unimodal experts; β weighs all of it."""

    kind: str = Field("mvtcae", description="Registered model family.")
    alpha: float = Field(
        5 / 6, ge=0, le=1,
        description="α, the total-correlation ratio, in [0, 1]: the reconstruction weighs (M − α)/M, "
        "KL(q(z|X) ‖ p(z)) weighs 1 − α and each KL(q(z|X) ‖ q(z|x_m)) α/M (5/6 in the authors' PolyMNIST code, "
        "as MultiVae reproduces it).",
    )
    beta: float = Field(
        2.5, gt=0,
        description="β: the weight of the whole regularization, both kinds of KL (2.5 in the authors' PolyMNIST "
        "code). The trainer's warm-up (train.anneal_epochs) multiplies it.",
    )

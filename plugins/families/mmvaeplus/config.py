"""``[model]`` of the MMVAE+ family (Palumbo, Daunhawer & Vogt 2023): the private latents, the auxiliary
priors r_n of cross-modal reconstruction, β and the bound."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mmgen import ModelConfig


class MMVAEPlusConfig(ModelConfig):
    """``latent_dim`` is the shared z (D); ``private_dim`` each modality's own w_m (P)."""

    kind: str = Field("mmvaeplus", description="Registered model family.")
    private_dim: int = Field(
        32, gt=0, description="P: the width of each modality's private latent w_m (32 in the authors' PolyMNIST code).")
    beta: float = Field(
        1.0, gt=0,
        description="β: the weight of log p(z) p(w_m) − log q(z|X) q(w_m|x_m) in every log-weight (the authors' "
        "code defaults to 1; 2.5 in MultiVae's reproduction of the paper's PolyMNIST runs). The trainer's warm-up "
        "(train.anneal_epochs) multiplies it.",
    )
    objective: Literal["elbo", "iwae", "dreg"] = Field(
        "elbo",
        description="elbo: the K-sample average of each component's log-weights (the private KL in closed form). "
        "iwae: log-mean-exp over the K draws of each component (the authors' m_elbo; at K = 1 the ELBO with its "
        "private KL sampled). dreg: the iwae value with doubly-reparameterized encoder gradients (the authors' "
        "m_dreg). Every bound is stratified: taken per mixture component and averaged with the component weights.",
    )
    samples: int = Field(1, ge=1, le=4096, description="K: draws per mixture component and example.")
    aux_scale: float = Field(
        1.0, gt=0,
        description="The mean scale of each auxiliary prior r_n(w_n) = N(0, diag σ_n²) that the private latent of a "
        "cross-reconstructed modality is drawn from: σ_n = aux_scale · P · softmax(ρ_n), ρ_n starting at 0 (the "
        "authors' parameterization, with their Laplace's scale 1 at aux_scale = 1).",
    )
    learn_aux: bool = Field(
        True, description="Learn ρ_n, how r_n shares its scale among the P dimensions (the authors' code does).")

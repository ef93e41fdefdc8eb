"""A linear-Gaussian model whose marginals and posteriors are known exactly, for testing estimators.

The model: z ~ N(0, I_D); for each modality m, x_m | z ~ N(W_m z + b_m, σ_m² I). Every marginal is
Gaussian, log p(x_T) = log N(x_T; b_T, W_T W_Tᵀ + Σ_T), and so is every posterior p(z | x_S). Each W_m
has orthogonal columns, so W_mᵀW_m = diag(c_m²) and the posterior precision I + Σ_m W_mᵀW_m / σ_m² is
diagonal: the product of experts (the N(0, I) prior times one expert per modality, with the expert
N((W_mᵀ(x_m - b_m)) / c_m², σ_m² / c_m²), the likelihood term alone) is the *exact* posterior for every
subset of modalities. Then every importance weight equals p(x), and the estimate is exact for every K.
A deliberately wrong encoder makes the estimate random; its statistics are known in closed form too.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Independent, MultivariateNormal, Normal

from mmgen import FusionConfig, Modality, ModalityConfig
from mmgen.plugin.registry import get_registry
from mmgen_plugins.families.mvae import MultimodalVAE, MVAEConfig

D = 2
SPECS = {  # name: (data size, column norms c, noise σ)
    "a": (3, [1.5, 0.7], 0.5),
    "b": (2, [0.8, 2.0], 0.8),
}
SHIFT, INFLATE = 0.2, 2.0  # the wrong encoder: expert mean + 0.2, expert variance x 2


class LinearGaussian(Modality):
    """x | z ~ N(W z + b, σ² I), with W = Q diag(c) for orthonormal Q; the encoder is the exact expert."""

    def __init__(self, name: str, size: int, norms: list[float], sigma: float, seed: int):
        super().__init__(name, ModalityConfig(kind="linear-gaussian"), D)
        g = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(size, D, generator=g, dtype=torch.float64))  # (size, D), orthonormal
        norms_t = torch.tensor(norms, dtype=torch.float64)
        self.register_buffer("W", q * norms_t)  # (size, D), WᵀW = diag(c²)
        self.register_buffer("b", torch.randn(size, generator=g, dtype=torch.float64))
        self.register_buffer("c2", norms_t.square())  # (D,)
        self.sigma = sigma

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu = (x - self.b) @ self.W / self.c2  # (B, D)
        logvar = (2 * math.log(self.sigma) - torch.log(self.c2)).expand_as(mu)  # (B, D)
        return mu, logvar

    def decode(self, z: Tensor) -> Tensor:
        return z @ self.W.T + self.b  # (*S, size)

    def likelihood(self, params: Tensor) -> Independent:
        return Independent(Normal(params, self.sigma), 1)

    def parse_given(self, value):
        return torch.as_tensor(value, dtype=torch.float64).reshape(1, -1)


class WrongEncoder(LinearGaussian):
    """The same generative model with a shifted, over-wide expert: a valid but poor proposal."""

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = super().encode(x)
        return mu + SHIFT, logvar + math.log(INFLATE)


def make_model(names=("a", "b"), wrong=()) -> MultimodalVAE:
    modalities = {
        n: (WrongEncoder if n in wrong else LinearGaussian)(n, *SPECS[n], seed=i) for i, n in enumerate(names)
    }
    poe = get_registry().lookup("fusions", "poe")(FusionConfig(kind="poe"), D, len(names))
    return MultimodalVAE(modalities, poe, MVAEConfig(latent_dim=D)).double()


DATA_SEED = 20180517  # far from the small seeds of the global RNG: the proposal's noise must not be the data's


def sample_data(model: MultimodalVAE, n: int, seed: int = DATA_SEED) -> dict[str, Tensor]:
    """Draws from the model itself: z ~ N(0, I), x_m = W_m z + b_m + σ_m ε."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, D, generator=g, dtype=torch.float64)
    out = {}
    for name, m in model.modalities.items():
        out[name] = m.decode(z) + m.sigma * torch.randn(n, m.W.shape[0], generator=g, dtype=torch.float64)
    return out


def exact_log_marginal(model: MultimodalVAE, data: dict[str, Tensor], names: list[str]) -> Tensor:
    """log N(x_T; b_T, W_T W_Tᵀ + Σ_T) per example ``(B,)``, for the stacked targets T = ``names``."""
    mods = [model.modalities[n] for n in names]
    W = torch.cat([m.W for m in mods])  # (sum sizes, D)
    b = torch.cat([m.b for m in mods])
    noise = torch.cat([torch.full((m.W.shape[0],), m.sigma**2, dtype=torch.float64) for m in mods])
    x = torch.cat([data[n] for n in names], dim=1)  # (B, sum sizes)
    return MultivariateNormal(b, W @ W.T + torch.diag(noise)).log_prob(x)


def exact_posterior(model: MultimodalVAE, data: dict[str, Tensor], names: list[str]) -> tuple[Tensor, Tensor]:
    """p(z | x_S): mean ``(B, D)`` and (diagonal) variance ``(D,)``, from the textbook formula."""
    precision = torch.eye(D, dtype=torch.float64)
    shift = 0
    for n in names:
        m = model.modalities[n]
        precision = precision + m.W.T @ m.W / m.sigma**2
        shift = shift + (data[n] - m.b) @ m.W / m.sigma**2  # (B, D)
    cov = torch.linalg.inv(precision)
    assert torch.allclose(cov, torch.diag(torch.diagonal(cov)), atol=1e-12)  # orthogonal columns: diagonal
    return shift @ cov, torch.diagonal(cov)


def chi2_plus_one(mu_p, var_p, mu_q, var_q) -> Tensor:
    """E_q[(p/q)²] = ∫ p²/q for diagonal Gaussians p, q (finite when var_q > var_p / 2), per example ``(B,)``.

    Per dimension it is var_q / sqrt(var_p (2 var_q - var_p)) * exp((mu_p - mu_q)² / (2 var_q - var_p)).
    """
    assert bool((2 * var_q > var_p).all())
    per_dim = var_q / torch.sqrt(var_p * (2 * var_q - var_p)) * torch.exp((mu_p - mu_q).square() / (2 * var_q - var_p))
    return per_dim.prod(-1)


def kl_gauss(mu_q, var_q, mu_p, var_p) -> Tensor:
    """KL(q || p) for diagonal Gaussians, per example ``(B,)``."""
    return 0.5 * (var_q / var_p + (mu_q - mu_p).square() / var_p - 1 + torch.log(var_p / var_q)).sum(-1)


def iwae_tolerance(model: MultimodalVAE, data: dict[str, Tensor], names: list[str], K: int) -> Tensor:
    """How far a K-sample estimate with proposal q(z | x_names) may stray from log p(x), per example ``(B,)``.

    With u_k = w_k / p(x): E[u] = 1 and Var[u] = χ²(p(z|x) ‖ q), so log mean_k u_k ≈ mean u - 1 has bias
    ≈ -χ²/(2K) and standard deviation ≈ sqrt(χ²/K) (delta method). Both q and p(z|x) are Gaussian, so χ² is
    exact, and q is wider than p(z|x) in every direction, so every moment of u is finite and the normal
    approximation holds. Allowed: 5 standard deviations plus the bias.
    """
    q = model.posterior({n: data[n] for n in names})
    mean, var = exact_posterior(model, data, names)
    assert bool((q.logvar.exp() > var).all())
    chi2 = chi2_plus_one(mean, var, q.mu, q.logvar.exp()) - 1  # (B,)
    return 5 * torch.sqrt(chi2 / K) + chi2 / K

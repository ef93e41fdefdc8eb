"""Small MLP builders shared by the first-party modality plugins."""

from __future__ import annotations

import itertools

from torch import nn


def mlp(sizes: list[int], final_activation: bool = False) -> nn.Sequential:
    """Linear layers ``sizes[0] -> ... -> sizes[-1]`` with SiLU (Swish) between them."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or final_activation:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


class GaussianHead(nn.Module):
    """Hidden features ``(B, H)`` -> expert ``(mu, logvar)``, each ``(B, D)``, from one fused Linear."""

    def __init__(self, hidden: int, latent_dim: int):
        super().__init__()
        self.linear = nn.Linear(hidden, 2 * latent_dim)

    def forward(self, h):
        mu, logvar = self.linear(h).chunk(2, dim=-1)
        return mu, logvar

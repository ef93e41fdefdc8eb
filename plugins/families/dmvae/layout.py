"""DMVAE's latent vector with a private width per modality: ``[w (D) | u_1 (P_1) | ... | u_M (P_M)]``, a P_m of 0
meaning no u_m. ``mmgen.PrivateLayout`` (MMVAE+'s) has one P for every modality; this is the same layout with the
same methods where every P_m is equal.

The experts are stacked ``(M, B, D + P̂)``, P̂ the widest P_m: a narrower expert is padded with N(0, I) dims
(mean and log-variance 0), which no decoder reads and whose KL is 0. ``own`` marks the dims that are not padding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class PrivateWidths:
    """Where each part sits in the latent vector: ``shared`` = D, ``private`` = (P_1, ..., P_M)."""

    shared: int
    private: tuple[int, ...]

    @property
    def count(self) -> int:
        return len(self.private)

    @property
    def widest(self) -> int:
        """P̂: the widest private latent, the padded width of every expert's private part."""
        return max(self.private)

    @property
    def width(self) -> int:
        """L = D + Σ_m P_m: the whole latent vector."""
        return self.shared + sum(self.private)

    @property
    def expert(self) -> int:
        """D + P̂: what one (padded) expert covers."""
        return self.shared + self.widest

    def private_part(self, latents: Tensor, m: int) -> Tensor:
        """u_m of ``latents`` ``(*S, L)`` -> ``(*S, P_m)``; ``(*S, 0)`` for a modality without one."""
        start = self.shared + sum(self.private[:m])
        return latents[..., start : start + self.private[m]]

    def decoder_input(self, latents: Tensor, m: int) -> Tensor:
        """``[w | u_m]`` of ``latents`` ``(*S, L)`` -> ``(*S, D + P_m)``: what modality m's decoder reads."""
        return torch.cat([latents[..., : self.shared], self.private_part(latents, m)], -1)

    def own(self) -> Tensor:
        """Bool ``(M, P̂)``: dim p of the padded private part is modality m's own (p < P_m), not padding."""
        return torch.arange(self.widest) < torch.tensor(self.private)[:, None]

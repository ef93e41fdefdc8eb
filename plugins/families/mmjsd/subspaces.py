"""mmJSD's modality-specific subspaces (the paper's Section 3.3, "mmJSD (MS)"): what ``model.private_dim`` > 0
adds to the shared-latent model of ``model.py``.

Latents, width L = D + M·P: ``[c (D) | s_1 (P) | ... | s_M (P)]`` (``mmgen.PrivateLayout``, MMVAE+'s and DMVAE's
layout). Modality m's encoder gives one Gaussian expert over ``[c | s_m]``, i.e. q(c | x_m) and q(s_m | x_m); its
decoder reads ``[c | s_m]`` (the authors' decoders read ``[s_m, c]``: the same model, another order). The shared
part c is the shared-latent model's: the mixture, the JS divergence to the dynamic prior. The style s_m of
modality m is only ever inferred from x_m: in the objective each x_m is reconstructed from its own s_m, and a
modality not given to ``posterior`` takes p(s_m) = N(0, I), so cross-modal generation draws the target's style
from the prior (as the authors' conditional generation, ``get_random_styles``).

Shapes: M modalities, B batch, D shared, P private, ``*S`` sample dims.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mmgen import DiagonalGaussian, IndependentBlocks, PrivateLayout, private_posterior
from mmgen.plugin.posterior import Posterior


def decoder_inputs(c: Tensor, s: Tensor) -> Tensor:
    """``[c | s_m]`` for every modality m: ``c`` ``(*S, B, D)`` and ``s`` ``(M, B, P)`` -> ``(M, *S, B, D + P)``,
    the m-th read by modality m's decoder. Every draw of c meets the same draw of s_m."""
    M, P = s.shape[0], s.shape[-1]
    styles = s.reshape(M, *([1] * (c.dim() - 2)), *s.shape[1:])  # (M, 1.., B, P)
    styles = styles.expand(M, *c.shape[:-1], P)  # (M, *S, B, P)
    return torch.cat([c.expand(M, *c.shape), styles], -1)


def style_kl(styles: DiagonalGaussian, has: Tensor) -> Tensor:
    """KL(q(s_m | x_m) ‖ N(0, I)) in closed form, ``(M, B)``; 0 where the example lacks x_m (``has``, bool
    ``(M, B)``: a placeholder expert has no style to regularize). With P = 0 it is 0 everywhere."""
    return torch.where(has, styles.kl_to_standard_normal(), 0.0)


def with_styles(shared: Posterior, mu: Tensor, logvar: Tensor, use: Tensor, layout: PrivateLayout) -> Posterior:
    """q(c, s_1, ..., s_M | given), batch ``(B,)``, event ``(L,)``: c from ``shared``, s_m from q(s_m | x_m) where
    ``use`` (``(M, B)``) marks x_m given, else from p(s_m) = N(0, I). ``mu, logvar``: the experts ``(M, B, D + P)``.
    With P = 0 it is ``shared`` itself; a Gaussian ``shared`` gives one Gaussian over the whole vector."""
    if layout.private == 0:
        return shared
    D = layout.shared
    styles = private_posterior(mu[..., D:], logvar[..., D:], use)  # (B, M·P)
    if isinstance(shared, DiagonalGaussian):
        return DiagonalGaussian(torch.cat([shared.mu, styles.mu], -1), torch.cat([shared.logvar, styles.logvar], -1))
    return IndependentBlocks([shared, styles])

"""The product of Gaussian experts with a N(0, I) prior expert, in log-precision space (Wu & Goodman 2018).

The precision of a product of Gaussians is the sum of the precisions. Summing in log space,
log T = logsumexp(0, -logvar_1, ..., -logvar_M), keeps it finite however confident an expert
becomes; each expert's weight in the mean is T_i / T = softmax of the log-precisions, always in
[0, 1]. The prior expert bounds the joint variance by 1, so sampling never overflows. The PoE
fusion and MoPoE (a product per subset) both use it.
"""

from __future__ import annotations

import torch
from torch import Tensor


def product_of_experts(mu: Tensor, logvar: Tensor, use: Tensor, prior: bool = True) -> tuple[Tensor, Tensor]:
    """Experts ``(M, *batch, D)`` (broadcastable against ``use`` ``(M, *batch)``) -> joint ``mu, logvar``.

    ``prior=False`` drops the prior expert except where no expert is used at all, which keeps N(0, I).
    """
    # Unused experts get log-precision -inf.
    mask = use[..., None]  # (M, *batch, 1)
    log_prec = torch.where(mask, -logvar, float("-inf"))  # (M, *batch, D)
    # Zero the unused means too: their share is 0, but backward would still form g * mu there.
    mu = torch.where(mask, mu, 0.0)
    prior_log_prec = torch.zeros_like(log_prec[:1])  # (1, *batch, D): N(0, I) has precision 1
    if not prior:  # keep the prior only where no expert is present
        prior_log_prec = torch.where(mask.any(0, keepdim=True), float("-inf"), prior_log_prec)
    log_prec = torch.cat([prior_log_prec, log_prec])  # (M + 1, *batch, D)
    log_total = torch.logsumexp(log_prec, dim=0)  # (*batch, D)
    share = torch.exp(log_prec[1:] - log_total)  # (M, *batch, D), zero for unused experts
    return (share * mu).sum(0), -log_total  # the prior's mean is 0

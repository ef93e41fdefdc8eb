"""The step structure of the published MVAE code, on mmgen's own modules, for a like-for-like timing.

The published training loop calls the model three times per step (image+label, image, label);
each call encodes the modalities it is given and decodes *both* modalities, and the loss then
uses only the reconstructions its term needs. mmgen encodes each modality once and decodes only
what each term reconstructs. Same layers, same data, same optimizer: only the structure differs.
"""

from __future__ import annotations

import time

import torch

from mmgen.model import kl_to_prior
from mmgen_plugins.families.mvae import MultimodalVAE


def reference_step_loss(model: MultimodalVAE, batch: dict[str, torch.Tensor], beta: float) -> torch.Tensor:
    B = next(iter(batch.values())).shape[0]
    loss = 0.0
    for given in (model.names, *([n] for n in model.names)):  # joint, then one term per modality
        q = model.posterior({n: batch[n] for n in given})  # re-encodes the given modalities
        z = q.rsample()
        params = model.decode(z)  # decodes every modality, as the published model's forward does
        nll = sum(model.lambdas[i] * -model.modalities[n].log_likelihood(params[n], batch[n])
                  for i, n in enumerate(model.names) if n in given)
        loss = loss + (nll + beta * kl_to_prior(q, z)).sum() / B
    return loss


def time_steps(step, steps: int = 60, warmup: int = 10) -> float:
    """Median seconds per call of ``step()``."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]

"""Per-position accuracy of sequences decoded from another modality (MultiMNIST: the digits read from
the image). For every modality t with ``tokens_of`` and every other modality s: t decoded at the mean
of q(z | the real s), its tokens compared with t's stored tokens position by position; also the
fraction of examples whose whole sequence is right, and, to read them against, the accuracy of always
guessing each position's most frequent token (MultiMNIST's later positions are mostly padding)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mmgen.plugin.model import Model


@torch.no_grad()
def _decoded_tokens(model: Model, inputs: dict[str, Tensor], target: str, batch_size: int = 2000) -> Tensor:
    modality = model.modalities[target]
    n = next(iter(inputs.values())).shape[0]
    out = []
    for i in range(0, n, batch_size):
        z = model.posterior({k: v[i : i + batch_size] for k, v in inputs.items()}).mean  # (b, D)
        out.append(modality.tokens_of(modality.mean(model.decode(z, [target])[target])))
    return torch.cat(out)


def majority_accuracy(tokens: Tensor) -> list[float]:
    """Per position of ``tokens`` ``(n, L)``: the fraction of rows holding that position's most frequent token."""
    n = tokens.shape[0]
    return [float(torch.bincount(tokens[:, p]).max()) / n for p in range(tokens.shape[1])]


def sequence_targets(model: Model) -> list[str]:
    """Modalities that read their decoded means as tokens."""
    z = model.prior().mean  # (1, L)
    return [n for n in model.names
            if model.modalities[n].tokens_of(model.modalities[n].mean(model.decode(z, [n])[n])) is not None]


def token_accuracy(model: Model, inputs: dict[str, Tensor], stored: dict[str, Tensor],
                   present: dict[str, Tensor] | None = None) -> dict[str, Any]:
    """``{"token accuracy s->t": [per position], "token accuracy s->t mean": ..., "sequence accuracy s->t": ...,
    "token accuracy majority s->t": [per position]}``; the last scores the same examples.

    ``inputs``: prepared examples; ``stored``: each target's stored tokens ``(N, L)``. An accuracy
    from s counts the examples that have s and t (``present``).
    """
    model.eval()
    out: dict[str, Any] = {}
    for t in sequence_targets(model):
        for s in model.names:
            if s == t:
                continue
            keep = torch.ones(stored[t].shape[0], dtype=torch.bool, device=stored[t].device)
            if present is not None:
                keep = present[s] & present[t]
            if not keep.any():
                continue
            right = _decoded_tokens(model, {s: inputs[s][keep]}, t) == stored[t][keep]  # (n, L)
            per = right.float().mean(0)
            out[f"token accuracy {s}->{t}"] = [float(p) for p in per]
            out[f"token accuracy {s}->{t} mean"] = float(per.mean())
            out[f"sequence accuracy {s}->{t}"] = float(right.all(1).float().mean())
            out[f"token accuracy majority {s}->{t}"] = majority_accuracy(stored[t][keep])
    return out

"""Which example has which modality: weak supervision in training, missing modalities at evaluation.

Masks are bool ``(N,)`` per modality name; a False entry means the example lacks that modality.
The model reads them inside each batch (``Model.forward(present=...)``), so an unpaired
example costs the same step as a paired one and contributes only its own term.

* training: ``data.paired_fraction`` of the examples keep every modality; each of the others
  keeps exactly one, drawn uniformly. The draw depends only on ``data.pairing_seed``.
* evaluation: ``data.missing_at_eval = {name = fraction}`` drops each named modality from that
  fraction of the validation and test examples, independently per modality.
"""

from __future__ import annotations

import torch
from torch import Tensor

Presence = dict[str, Tensor]  # modality name -> bool (N,)


def training_presence(names: list[str], n: int, paired_fraction: float, seed: int) -> Presence | None:
    """None when every example is paired; else the masks described above."""
    if paired_fraction >= 1.0 or len(names) < 2:
        return None
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=g)
    paired = torch.zeros(n, dtype=torch.bool)
    paired[order[: max(1, round(paired_fraction * n))]] = True
    kept = torch.randint(len(names), (n,), generator=g)  # the one modality an unpaired example keeps
    return {name: paired | (kept == m) for m, name in enumerate(names)}


def evaluation_presence(names: list[str], n: int, missing: dict[str, float], seed: int) -> Presence | None:
    """None when nothing is dropped; else, per named modality, exactly round(fraction * n) examples lack it."""
    if not any(missing.values()):
        return None
    out = {}
    for m, name in enumerate(names):
        keep = torch.ones(n, dtype=torch.bool)
        fraction = missing.get(name, 0.0)
        if fraction:
            # Each modality's own draw; wrapped, since a 64-bit seed times 1000 overflows the generator's seed.
            g = torch.Generator().manual_seed((seed * 1000 + m) % 2**64)
            keep[torch.randperm(n, generator=g)[: round(fraction * n)]] = False
        out[name] = keep
    return out


def describe(presence: Presence | None, n: int) -> dict[str, int]:
    """Counts for the run directory: examples per modality, and fully paired ones."""
    if presence is None:
        return {"examples": n, "paired": n}
    stacked = torch.stack(list(presence.values()))  # (M, N)
    return {"examples": n, "paired": int(stacked.all(0).sum()),
            **{f"with {name}": int(mask.sum()) for name, mask in presence.items()}}


def having(present: Presence | None, names: list[str], n: int, device: torch.device | str | None = None) -> Tensor:
    """Bool ``(n,)``: the examples that have every modality in ``names`` (all of them when ``present`` is None).

    Every number that needs some modalities (a likelihood, a validation ELBO, an accuracy) is
    averaged over exactly these examples.
    """
    keep = torch.ones(n, dtype=torch.bool, device=device)
    for name in names if present is not None else []:
        keep &= present[name].to(keep.device)
    return keep

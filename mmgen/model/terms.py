"""The terms of the sub-sampled ELBO as rows of a boolean ``(T, M)`` matrix, and their masks per example.

Row 0 is the joint term, then one row per modality, then ``k`` distinct random subsets of size
2..M-1 (only when M > 2). With a single modality, or ``terms = "joint"``, there is only the joint row.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import torch
from torch import Tensor


def fixed_terms(num_modalities: int, joint_only: bool) -> Tensor:
    """The deterministic terms, joint plus singles, bool ``(T, M)`` (validation must not be random)."""
    M = num_modalities
    if M == 1 or joint_only:
        return torch.ones(1, M, dtype=torch.bool)
    return torch.cat([torch.ones(1, M), torch.eye(M)]).bool()


ENUMERATE_UP_TO = 10  # modalities; beyond, subsets are drawn, not listed (2^19 of them for CelebA's 19)


@functools.cache
def _candidates(num_modalities: int) -> Tensor:
    """Every subset of size 2..M-1, bool ``(N, M)``, listed once per M (not every step)."""
    M = num_modalities
    subsets = [s for r in range(2, M) for s in itertools.combinations(range(M), r)]
    return torch.tensor([[i in s for i in range(M)] for s in subsets], dtype=torch.bool).reshape(-1, M)


def random_terms(num_modalities: int, k: int, generator: torch.Generator | None = None) -> Tensor:
    """Joint, singles and ``k`` distinct random subsets of size 2..M-1 (uniformly), bool ``(T, M)``."""
    M = num_modalities
    rows = torch.cat([torch.ones(1, M, dtype=torch.bool), torch.eye(M, dtype=torch.bool)])
    if M > 2 and k > 0 and M <= ENUMERATE_UP_TO:
        candidates = _candidates(M)
        order = torch.randperm(len(candidates), generator=generator)[:k]
        return torch.cat([rows, candidates[order]])
    if M > 2 and k > 0:
        return torch.cat([rows, torch.tensor(_drawn_subsets(M, k, generator), dtype=torch.bool)])
    return rows


def _drawn_subsets(M: int, k: int, generator: torch.Generator | None) -> list[list[bool]]:
    """k distinct subsets of size 2..M-1, uniformly: random masks, keeping those of an allowed size."""
    chosen: dict[tuple[bool, ...], None] = {}
    while len(chosen) < k:
        masks = torch.rand(4 * k, M, generator=generator) < 0.5  # (4k, M): each subset equally likely
        for mask in masks.tolist():
            if 2 <= sum(mask) <= M - 1 and len(chosen) < k:
                chosen.setdefault(tuple(mask))
    return [list(m) for m in chosen]


@dataclass
class TermMasks:
    """Which term fuses, reconstructs and counts which example.

    ``use[t, m, b]``: term t fuses and reconstructs modality m for example b (m is in the term and
    b has it). ``counted[t, b]``: the term counts for b. For a fully paired batch nothing depends
    on the example: ``use`` is ``(T, M, 1)`` and ``counted``/``has`` are None.
    """

    rows: Tensor  # (T, M) bool, on the host: row lookups need no device sync
    use: Tensor  # (T, M, B | 1) bool, on the device
    counted: Tensor | None  # (T, B) bool
    has: Tensor | None  # (M, B) bool: which example has which modality

    @classmethod
    def of(cls, rows: Tensor, rows_dev: Tensor, has: Tensor | None) -> TermMasks:
        """A term counts when the example has all of its modalities; the joint term (row 0) instead
        fuses what each example has and counts when it has at least two (one when it is the only term)."""
        if has is None:
            return cls(rows, rows_dev[:, :, None], None, None)
        use = rows_dev[:, :, None] & has[None]  # (T, M, B)
        counted = (rows_dev[:, :, None] <= has[None]).all(1)  # (T, B): all the term's modalities present
        counted[0] = has.sum(0) >= (2 if rows.shape[0] > 1 else 1)
        return cls(rows, use, counted, has)


@dataclass(frozen=True)
class Selection:
    """The terms that reconstruct one modality: their indices on the device, and the same as a slice
    (a view of the latents, no copy) when they are contiguous."""

    index: Tensor  # (T_m,) long, on the device
    window: slice | None
    count: int


@dataclass(frozen=True)
class TermPlan:
    """What a step needs of its term matrix, made once per distinct matrix (a step then does no Python
    work per term): the rows on the host and the device, and per modality the terms reconstructing it."""

    rows: Tensor  # (T, M) bool, on the host
    rows_dev: Tensor  # (T, M) bool, on the device
    reconstructed: tuple[Selection | None, ...]  # per modality; None when no term reconstructs it
    bound_terms: Tensor | None = None  # (T,) bool on the device: the terms taking an objective's bound; None: all

    @classmethod
    def of(cls, rows: Tensor, reconstructs: Tensor, device: torch.device,
           bound_terms: Tensor | None = None) -> TermPlan:
        """``rows`` and ``reconstructs`` bool ``(T, M)`` on the host; ``bound_terms`` ``(T,)`` on the host."""
        selections = []
        for m in range(rows.shape[1]):
            found = reconstructs[:, m].nonzero().squeeze(1).tolist()
            if not found:
                selections.append(None)
                continue
            contiguous = found == list(range(found[0], found[-1] + 1))
            window = slice(found[0], found[-1] + 1) if contiguous else None
            selections.append(Selection(torch.tensor(found, device=device), window, len(found)))
        chosen = None if bound_terms is None else bound_terms.to(device)
        return cls(rows, rows.to(device), tuple(selections), chosen)

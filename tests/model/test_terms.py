"""The terms of a step: the random subsets are drawn as the listing of every subset would draw them (the
same rows for the same generator, so runs of before and after the listing was cached are identical), and
a term matrix's plan says which terms reconstruct which modality."""

from __future__ import annotations

import itertools

import pytest
import torch

from mmgen.model.terms import TermPlan, fixed_terms, random_terms


def listed(M: int, k: int, generator: torch.Generator) -> torch.Tensor:
    """The rows written out in plain Python from the definition: joint, singles, k subsets of size 2..M-1."""
    rows = [[True] * M] + [[i == m for i in range(M)] for m in range(M)]
    candidates = [s for r in range(2, M) for s in itertools.combinations(range(M), r)]
    order = torch.randperm(len(candidates), generator=generator)[:k].tolist()
    rows += [[i in candidates[j] for i in range(M)] for j in order]
    return torch.tensor(rows, dtype=torch.bool)


@pytest.mark.parametrize(("M", "k"), [(3, 1), (4, 3), (5, 10), (6, 40)])
def test_random_terms_are_the_listed_ones_for_the_same_generator(M, k):
    for seed in range(5):
        got = random_terms(M, k, torch.Generator().manual_seed(seed))
        assert torch.equal(got, listed(M, k, torch.Generator().manual_seed(seed)))


def test_a_plan_names_the_terms_that_reconstruct_each_modality():
    rows = torch.tensor([[1, 1, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1]], dtype=torch.bool)  # (T, M)
    plan = TermPlan.of(rows, rows, torch.device("cpu"))
    first, second, third = plan.reconstructed
    assert first.index.tolist() == [0, 1, 4] and first.window is None and first.count == 3  # not contiguous
    assert second.index.tolist() == [0, 2] and second.window is None
    assert third.index.tolist() == [0, 3, 4] and third.window is None
    joint_only = TermPlan.of(fixed_terms(2, True), fixed_terms(2, True), torch.device("cpu"))
    assert [s.window for s in joint_only.reconstructed] == [slice(0, 1), slice(0, 1)]  # a view, no copy
    nobody = TermPlan.of(rows, torch.zeros_like(rows), torch.device("cpu"))
    assert nobody.reconstructed == (None, None, None)

"""Importance-weighted (IWAE) estimates of log-marginal likelihoods, in nats.

    log p(X_T) ≈ log (1/K) Σ_k p(X_T | z_k) p(z_k) / q(z_k | X_P),   z_k ~ q(z | X_P)

for target modalities T and proposal modalities P (by default P = T). The estimate is a lower
bound in expectation that tightens as K grows, and is exact for K -> ∞. Conditionals are
differences of two estimates per example, e.g. log p(x | y) = log p(x, y) - log p(y): a difference
of two lower bounds is **not** a bound. A loose log p(y) inflates it, so the conditioning set (the
rest) is estimated with more samples, ``K_rest``; with log p(rest) tight the difference errs low in
expectation, like log p(x, y) alone. Batched over K and over examples; no Python loop over either.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from mmgen.model.presence import having
from mmgen.plugin.model import Model

MAX_ELEMENTS = 2**25  # floats one chunk of iwae_log_marginal may hold: K * examples * width
REST_FACTOR = 10  # the automatic K_rest is at most this many times K


@torch.no_grad()
def iwae_log_marginal(model: Model, batch: dict[str, Tensor], targets: list[str],
                      proposal: list[str] | None = None, K: int = 1000, max_elements: int = MAX_ELEMENTS) -> Tensor:
    """Per-example IWAE estimate of log p(X_targets) with proposal q(z | X_proposal): ``(B,)``.

    Examples are processed in chunks so that K * chunk * width stays under ``max_elements``, where
    width is the larger of a scored modality's event size and its widest parameter dimension (a
    decoder's hidden layer): a label's event is 1, but its decoder's activations are 512 wide.
    """
    proposal = proposal or targets
    B = next(iter(batch.values())).shape[0]
    event = max(_activation_width(model, n, batch[n]) for n in targets)
    chunk = max(1, min(B, max_elements // (K * event)))
    out = []
    for start in range(0, B, chunk):
        part = {n: v[start : start + chunk] for n, v in batch.items()}
        q = model.posterior({n: part[n] for n in proposal})  # batch_shape (b,)
        z = q.sample((K,))  # (K, b, D)
        log_w = model.log_joint(z, part, targets) - q.log_prob(z)  # (K, b)
        out.append(torch.logsumexp(log_w, dim=0) - math.log(K))
    return torch.cat(out)


def _activation_width(model: Model, name: str, data: Tensor) -> int:
    """Elements per sample that decoding and scoring ``name`` holds at once, roughly."""
    widest = max((max(p.shape) for p in model.modalities[name].parameters() if p.dim()), default=1)
    return max(math.prod(data.shape[1:]), widest, 1)


def rest_K(model: Model, data: dict[str, Tensor], rest: list[str], K: int) -> int:
    """The automatic K for log p(rest), the conditioning set of a conditional: up to ``REST_FACTOR`` K.

    A cheap rest (a label) gets the full factor; an expensive one no more than the joint's work per
    example, measured by the modalities' parameter counts (a proxy for decoding cost), so an image as
    the rest stays near K. It never exceeds what one example's chunk may hold, nor goes below K.
    """
    def cost(names: list[str]) -> int:
        return sum(max(1, sum(p.numel() for p in model.modalities[n].parameters())) for n in names)

    by_cost = K * cost(model.names) // cost(rest)
    by_memory = MAX_ELEMENTS // max(_activation_width(model, n, data[n]) for n in rest)
    return max(K, min(REST_FACTOR * K, by_cost, by_memory))


@dataclass(frozen=True)
class Estimate:
    """A mean over examples with its standard error, and how it was obtained: the proposal and the K
    (for a conditional, ``K`` of the joint and ``K_rest`` of the rest, with a ``note`` that it is no bound)."""

    value: float | None  # None when no example had what the estimate needs
    stderr: float | None
    proposal: str
    n: int
    K: int
    K_rest: int | None = None  # a conditional's: the K of log p(rest)
    note: str | None = None

    @classmethod
    def of(cls, per_example: Tensor, proposal: str, K: int, K_rest: int | None = None,
           note: str | None = None) -> Estimate:
        x = per_example.double()
        n = x.numel()
        if n == 0:
            return cls(None, None, proposal, 0, K, K_rest, note)
        stderr = float(x.std(unbiased=True) / math.sqrt(n)) if n > 1 else None  # JSON has no NaN
        return cls(float(x.mean()), stderr, proposal, n, K, K_rest, note)

    def to_dict(self) -> dict:
        out = {"value": self.value, "stderr": self.stderr, "proposal": self.proposal, "n": self.n, "K": self.K}
        if self.K_rest is not None:
            out["K rest"] = self.K_rest
        if self.note is not None:
            out["note"] = self.note
        return out


def q_name(names: list[str]) -> str:
    return f"q(z|{','.join(names)})"


def conditional_note(joint: str, rest: str, K: int, K_rest: int) -> str:
    """What eval.json says of each conditional: how it is made, and that it is not a bound."""
    return (f"log p({joint}) - log p({rest}), a difference of two IWAE lower bounds: an estimate, not a bound "
            f"(a loose log p({rest}) inflates it); log p({joint}) used K={K}, log p({rest}) K={K_rest}")


def likelihood_report(model: Model, data: dict[str, Tensor], K: int = 1000,
                      proposal: list[str] | None = None, batch_size: int = 500,
                      on_batch: Callable[[int, int], None] | None = None,
                      present: dict[str, Tensor] | None = None, K_rest: int | None = None) -> dict[str, Estimate]:
    """Marginals of every single modality and of all of them, plus each conditional of one
    modality given the rest, for two or more modalities.

    ``proposal=None`` uses q(z | the modalities being scored) for each marginal; a fixed list
    (the paper's caption: q(z | x_1)) uses that proposal for every estimate.
    Keys: ``"log p(image)"``, ``"log p(image,label)"``, ``"log p(image|label)"``, ...

    Every estimate uses K samples, except log p(rest) of each conditional: ``K_rest``, by default
    :func:`rest_K` (more for a cheap rest, whose looseness the conditional would inherit with a plus sign).

    ``present`` (bool ``(N,)`` per modality): an estimate averages over the examples that have
    every modality it scores or conditions on; a conditional uses those that have them all.
    """
    names = model.names
    rests = [[m for m in names if m != n] for n in names] if len(names) > 1 else []  # for p(n | the rest)
    groups = [[n] for n in names] + ([names] if len(names) > 1 else []) + [r for r in rests if len(r) > 1]
    ks = {",".join(g): K for g in groups}
    ks.update({",".join(r): K_rest or rest_K(model, data, r, K) for r in rests})
    est = _per_example(model, data, groups, ks, proposal, batch_size, on_batch)
    n_examples = next(iter(data.values())).shape[0]
    device = next(iter(est.values())).device
    report: dict[str, Estimate] = {}
    for g in groups:
        key = ",".join(g)
        keep = having(present, sorted(set(g) | set(proposal or [])), n_examples, device)
        report[f"log p({key})"] = Estimate.of(est[key][keep], q_name(proposal or g), ks[key])
    joint = ",".join(names)
    keep = having(present, names, n_examples, device)
    for n, rest in zip(names, rests):  # log p(n | rest) = log p(all) - log p(rest), per example
        r = ",".join(rest)
        how = f"{q_name(proposal or names)} - {q_name(proposal or rest)}"
        report[f"log p({n}|{r})"] = Estimate.of((est[joint] - est[r])[keep], how, K, ks[r],
                                                conditional_note(joint, r, K, ks[r]))
    return report


def _per_example(model: Model, data: dict[str, Tensor], groups: list[list[str]], ks: dict[str, int],
                 proposal: list[str] | None, batch_size: int,
                 on_batch: Callable[[int, int], None] | None) -> dict[str, Tensor]:
    """Each group's per-example estimate ``(N,)`` with its own K, batch by batch."""
    n_examples = next(iter(data.values())).shape[0]
    per: dict[str, list[Tensor]] = {",".join(g): [] for g in groups}
    for start in range(0, n_examples, batch_size):
        batch = {k: v[start : start + batch_size] for k, v in data.items()}
        for g in groups:
            key = ",".join(g)
            per[key].append(iwae_log_marginal(model, batch, g, proposal or g, ks[key]))
        if on_batch:
            on_batch(min(start + batch_size, n_examples), n_examples)
    return {key: torch.cat(v) for key, v in per.items()}

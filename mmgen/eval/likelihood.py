"""Importance-weighted (IWAE) estimates of log-marginal likelihoods, in nats.

    log p(X_T) ≈ log (1/K) Σ_k p(X_T | z_k) p(z_k) / q(z_k | X_P),   z_k ~ q(z | X_P)

for target modalities T and proposal modalities P (by default P = T). The estimate is a lower
bound in expectation that tightens as K grows, and is exact for K -> ∞. Conditionals are
differences of two estimates per example, e.g. log p(x | y) = log p(x, y) - log p(y).
Batched over K and over examples; no Python loop over either.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from mmgen.model.gaussian import standard_normal
from mmgen.model.presence import having
from mmgen.model.vae import MultimodalVAE


@torch.no_grad()
def iwae_log_marginal(model: MultimodalVAE, batch: dict[str, Tensor], targets: list[str],
                      proposal: list[str] | None = None, K: int = 1000, max_elements: int = 2**25) -> Tensor:
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
        log_w = standard_normal(z).log_prob(z) - q.log_prob(z)  # (K, b)
        for n in targets:
            modality = model.modalities[n]
            log_w = log_w + modality.log_likelihood(modality.decode(z), part[n])  # (K, b)
        out.append(torch.logsumexp(log_w, dim=0) - math.log(K))
    return torch.cat(out)


def _activation_width(model: MultimodalVAE, name: str, data: Tensor) -> int:
    """Elements per sample that decoding and scoring ``name`` holds at once, roughly."""
    widest = max((max(p.shape) for p in model.modalities[name].parameters() if p.dim()), default=1)
    return max(math.prod(data.shape[1:]), widest, 1)


@dataclass(frozen=True)
class Estimate:
    """A mean over examples with its standard error, and how it was obtained."""

    value: float | None  # None when no example had what the estimate needs
    stderr: float | None
    proposal: str
    n: int

    @classmethod
    def of(cls, per_example: Tensor, proposal: str) -> Estimate:
        x = per_example.double()
        n = x.numel()
        if n == 0:
            return cls(None, None, proposal, 0)
        stderr = float(x.std(unbiased=True) / math.sqrt(n)) if n > 1 else None  # JSON has no NaN
        return cls(float(x.mean()), stderr, proposal, n)

    def to_dict(self) -> dict:
        return {"value": self.value, "stderr": self.stderr, "proposal": self.proposal, "n": self.n}


def q_name(names: list[str]) -> str:
    return f"q(z|{','.join(names)})"


def likelihood_report(model: MultimodalVAE, data: dict[str, Tensor], K: int = 1000,
                      proposal: list[str] | None = None, batch_size: int = 500,
                      on_batch: Callable[[int, int], None] | None = None,
                      present: dict[str, Tensor] | None = None) -> dict[str, Estimate]:
    """Marginals of every single modality and of all of them, plus each conditional of one
    modality given the rest, for two or more modalities.

    ``proposal=None`` uses q(z | the modalities being scored) for each marginal; a fixed list
    (the paper's caption: q(z | x_1)) uses that proposal for every estimate.
    Keys: ``"log p(image)"``, ``"log p(image,label)"``, ``"log p(image|label)"``, ...

    ``present`` (bool ``(N,)`` per modality): an estimate averages over the examples that have
    every modality it scores or conditions on; a conditional uses those that have them all.
    """
    names = model.names
    rests = [[m for m in names if m != n] for n in names] if len(names) > 2 else []  # for p(n | the rest)
    groups = [[n] for n in names] + ([names] if len(names) > 1 else []) + rests
    n_examples = next(iter(data.values())).shape[0]
    per: dict[str, list[Tensor]] = {",".join(g): [] for g in groups}
    for start in range(0, n_examples, batch_size):
        batch = {k: v[start : start + batch_size] for k, v in data.items()}
        for g in groups:
            per[",".join(g)].append(iwae_log_marginal(model, batch, g, proposal or g, K))
        if on_batch:
            on_batch(min(start + batch_size, n_examples), n_examples)
    est = {key: torch.cat(v) for key, v in per.items()}
    device = next(iter(est.values())).device
    report: dict[str, Estimate] = {}
    for g in groups:
        key = ",".join(g)
        keep = having(present, sorted(set(g) | set(proposal or [])), n_examples, device)
        report[f"log p({key})"] = Estimate.of(est[key][keep], q_name(proposal or g))
    if len(names) > 1:
        joint = ",".join(names)
        for n in names:  # log p(n | rest) = log p(all) - log p(rest), per example
            rest = [m for m in names if m != n]
            how = f"{q_name(proposal or names)} - {q_name(proposal or rest)}"
            keep = having(present, names, n_examples, device)
            report[f"log p({n}|{','.join(rest)})"] = Estimate.of((est[joint] - est[",".join(rest)])[keep], how)
    return report

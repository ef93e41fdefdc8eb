"""The multimodal VAE: named modalities, a fusion, and the sub-sampled ELBO of Wu & Goodman (2018).

Per step each modality is encoded once; its expert is reused in every ELBO term. The terms are
the joint term, one term per single modality, and (with more than two modalities) ``subsets``
random subsets. All terms are fused in one batched call, and each decoder runs once on the
latents of every term that reconstructs its modality.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny
from torch import Tensor, nn
from torch.distributions import Distribution

from mmgen.fusion import Fusion, FusionConfig
from mmgen.gaussian import DiagonalGaussian, kl_standard_normal, kl_to_prior, standard_normal
from mmgen.mixture import GaussianMixture
from mmgen.modality import Modality


class ModelConfig(BaseModel):
    """The latent space, the fusion and the ELBO's sub-sampling."""

    model_config = ConfigDict(extra="forbid")

    latent_dim: int = Field(64, gt=0, description="Size D of the shared latent z.")
    fusion: SerializeAsAny[FusionConfig] = Field(
        default_factory=FusionConfig, description="How experts are combined: a registered fusion kind."
    )
    subsets: int = Field(
        0, ge=0, description="k random subsets added to the ELBO each step; used only with more than two modalities."
    )
    terms: Literal["subsampled", "joint"] = Field(
        "subsampled",
        description="subsampled: the joint term, one per modality and the k subsets (the MVAE paper). joint: the "
        "joint term alone (the MMVAE and MoPoE papers); it then counts for every example with any modality.",
    )
    objective: Literal["elbo", "iwae", "dreg"] = Field(
        "elbo",
        description="elbo: the K-sample average ELBO. iwae: the importance-weighted bound of Burda et al. with K "
        "samples. dreg: the same bound with doubly-reparameterized encoder gradients (Tucker et al.). A mixture "
        "posterior is stratified: each estimate is taken per component and averaged (Shi et al. 2019).",
    )
    samples: int = Field(1, ge=1, le=4096, description="K: latent samples per term and example (per component).")
    reconstruct: Literal["subset", "all"] = Field(
        "subset",
        description="subset: each term reconstructs its own modalities (the paper). all: every term reconstructs "
        "every modality the example has, a valid ELBO of the joint with that term's posterior (cross-modal).",
    )


@dataclass
class ModelOutput:
    """What the trainer reads: the loss to minimize plus named detached terms for logging."""

    loss: Tensor  # scalar
    terms: dict[str, Tensor] = field(default_factory=dict)  # scalars, per-example means


class MultimodalVAE(nn.Module):
    """Encoders, decoders and fusion for ``M`` named modalities sharing a ``D``-dimensional latent."""

    def __init__(self, modalities: dict[str, Modality], fusion: Fusion, config: ModelConfig):
        super().__init__()
        self.config = config
        self.names = list(modalities)
        self.modalities = nn.ModuleDict(modalities)
        self.fusion = fusion
        self.register_buffer("weights", torch.tensor([m.config.weight for m in modalities.values()]), persistent=False)
        # Joint + singles never change: keep them on the device instead of copying them every step.
        self.register_buffer("fixed_terms", self.fixed_subsets(), persistent=False)
        self._row_cache: dict[tuple, Tensor] = {}

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    # ---- building blocks -----------------------------------------------------------------
    def experts(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Encode every modality in ``batch`` once -> ``mu, logvar`` ``(M, B, D)``.

        A modality absent from ``batch`` gets a zero expert; callers mask it out of the fusion.
        """
        B = next(iter(batch.values())).shape[0]
        mus, logvars = [], []
        for name in self.names:
            if name in batch:
                mu, logvar = self.modalities[name].encode(batch[name])
            else:
                mu = logvar = torch.zeros(B, self.latent_dim, device=self.weights.device)
            mus.append(mu)
            logvars.append(logvar)
        return torch.stack(mus), torch.stack(logvars)

    def posterior(self, batch: dict[str, Tensor], present: dict[str, Tensor] | None = None) -> Distribution:
        """q(z | the modalities in ``batch``), batch_shape ``(B,)``; ``present`` masks examples per modality."""
        mu, logvar = self.experts(batch)
        return self.fusion(mu, logvar, self.presence(batch, present))

    def presence(self, batch: dict[str, Tensor], present: dict[str, Tensor] | None = None) -> Tensor:
        """Bool ``(M, B)``: which example has which modality (a modality not in ``batch`` is absent)."""
        B = next(iter(batch.values())).shape[0]
        device = self.weights.device
        rows = []
        for name in self.names:
            if name not in batch:
                rows.append(torch.zeros(B, dtype=torch.bool, device=device))
            elif present is not None and name in present:
                rows.append(present[name].to(device=device, dtype=torch.bool))
            else:
                rows.append(torch.ones(B, dtype=torch.bool, device=device))
        return torch.stack(rows)

    def decode(self, z: Tensor, names: list[str] | None = None) -> dict[str, Tensor]:
        """Latents ``(*S, D)`` -> likelihood parameters per modality."""
        return {n: self.modalities[n].decode(z) for n in (names or self.names)}

    # ---- the ELBO --------------------------------------------------------------------------
    def fixed_subsets(self) -> Tensor:
        """The deterministic terms, joint plus singles, for scoring (validation must not be random)."""
        M = len(self.names)
        if M == 1 or self.config.terms == "joint":
            return torch.ones(1, M, dtype=torch.bool)
        return torch.cat([torch.ones(1, M), torch.eye(M)]).bool()

    def subsets(self, generator: torch.Generator | None = None) -> Tensor:
        """Bool ``(T, M)``: the ELBO terms of one step. Row 0 is the joint term, then one row per
        modality, then ``k`` distinct random subsets of size 2..M-1 (only when M > 2). With a single
        modality, or ``terms = "joint"``, there is only the joint row."""
        M = len(self.names)
        if M == 1 or self.config.terms == "joint":
            return torch.ones(1, M, dtype=torch.bool)
        rows = [[True] * M] + [[i == m for i in range(M)] for m in range(M)]
        k = self.config.subsets
        if M > 2 and k > 0:
            candidates = [s for r in range(2, M) for s in itertools.combinations(range(M), r)]
            order = torch.randperm(len(candidates), generator=generator)[:k].tolist()
            rows += [[i in candidates[j] for i in range(M)] for j in order]
        return torch.tensor(rows, dtype=torch.bool)

    def forward(
        self,
        batch: dict[str, Tensor],
        beta: float | Tensor = 1.0,
        present: dict[str, Tensor] | None = None,
        subsets: Tensor | None = None,
        weighted: bool = True,
    ) -> ModelOutput:
        """The sub-sampled objective, negated and averaged over the batch.

        Per term t and example b, with K samples z_s ~ q_t (one set per component for a mixture):

            log w_s = sum_m λ_m * use[t,m,b] * log p(x_m | z_s) - β * (log q_t(z_s) - log p(z_s))

        ``elbo`` averages log w over the samples (with the KL in closed form for a Gaussian q),
        ``iwae``/``dreg`` take log-mean-exp. ``loss = -sum_t mean_b counted[t,b] * bound[t,b]``.

        ``use[t,m,b]``: term t fuses and reconstructs modality m for example b (m in the term and
        present). A term counts for an example when the example has all of the term's modalities;
        the joint term instead fuses whatever the example has and counts when it has at least two
        (or at least one when it is the only term). With ``weighted=False`` every λ is 1.
        """
        random_terms = len(self.names) > 2 and self.config.subsets > 0 and self.config.terms == "subsampled"
        if subsets is None and not random_terms:
            subsets, subsets_dev = self.fixed_subsets(), self.fixed_terms
        else:
            subsets = (self.subsets() if subsets is None else subsets).cpu()  # row lookups stay on the host
            subsets_dev = subsets.to(self.weights.device, non_blocking=True)
        mu, logvar = self.experts(batch)  # (M, B, D)
        B, T = mu.shape[1], subsets.shape[0]
        if present is None and all(n in batch for n in self.names):
            # Fully paired batch: the masks do not depend on the example, so they broadcast.
            use = subsets_dev[:, :, None]  # (T, M, 1)
            counted = None
        else:
            has = self.presence(batch, present)  # (M, B)
            use = subsets_dev[:, :, None] & has[None]  # (T, M, B)
            counted = (subsets_dev[:, :, None] <= has[None]).all(1)  # (T, B): all the term's modalities present
            # The joint term (row 0, all modalities) fuses what each example has.
            counted[0] = has.sum(0) >= (2 if T > 1 else 1)

        q = self.fusion(mu[:, None], logvar[:, None], use.transpose(0, 1))  # batch_shape (T, B)
        K, objective = self.config.samples, self.config.objective
        stratified = isinstance(q, GaussianMixture)
        z = q.rsample_components((K,)) if stratified else q.rsample((K,))  # (K, [C,] T, B, D)
        if stratified:
            C = z.shape[1]
            z = z.flatten(0, 1)  # (K*C, T, B, D): sample-major, component-minor
        if objective == "elbo" and isinstance(q, DiagonalGaussian):
            kl = kl_standard_normal(q)[None]  # (1, T, B): closed form, broadcasts over samples
        else:
            scorer = q.detached() if objective == "dreg" else q  # DReG: no score-function path through q
            kl = scorer.log_prob(z) - standard_normal(z).log_prob(z)  # (S, T, B): one-sample estimates
        if counted is not None:
            kl = torch.where(counted, kl, 0.0)  # where, not *: 0 * inf from a placeholder would be NaN
        terms: dict[str, Tensor] = {}
        log_w = -beta * kl  # (S | 1, T, B)
        cross = self.config.reconstruct == "all"
        for m, name in enumerate(self.names):
            # Terms that reconstruct modality m: those that contain it, or (cross) every term.
            rows = list(range(T)) if cross else subsets[:, m].nonzero().squeeze(1).tolist()
            if name not in batch or not rows:
                continue
            modality = self.modalities[name]
            contiguous = rows == list(range(rows[0], rows[-1] + 1))
            zm = z[:, rows[0] : rows[-1] + 1] if contiguous else z[:, rows]  # (S, T_m, B, D); a slice is a view
            ll = modality.log_likelihood(modality.decode(zm), batch[name])  # (S, T_m, B)
            slots = B * len(rows)  # (term, example) pairs that reconstruct m: the mean's denominator
            if counted is not None:
                present_m = has[m][None] if cross else use[rows, m]  # (T_m | 1, B)
                active = present_m & counted[rows]  # (T_m, B)
                ll = torch.where(active, ll, 0.0)
                slots = active.sum().clamp(min=1)
            weight = self.weights[m] if weighted else 1.0
            if len(rows) < T:
                ll = torch.zeros_like(ll[:, :1]).expand(-1, T, -1).index_add(1, self._rows(rows), ll)  # (S, T, B)
            log_w = log_w + weight * ll
            terms[f"nll/{name}"] = -ll.detach().sum() / (slots * ll.shape[0])
        bound = self._bound(log_w, z, K, C if stratified else 1, q if stratified else None, objective)  # (T, B)
        kl_slots = kl.shape[0] * (T * B if counted is None else counted.sum().clamp(min=1))
        terms["kl"] = kl.detach().sum() / kl_slots
        return ModelOutput(loss=-bound.sum() / B, terms=terms)

    def _rows(self, rows: list[int]) -> Tensor:
        """Row indices on the device, made once per distinct set (no host-to-device copy per step)."""
        key = (tuple(rows), self.weights.device)
        if key not in self._row_cache:
            self._row_cache[key] = torch.tensor(rows, device=self.weights.device)
        return self._row_cache[key]

    @staticmethod
    def _bound(log_w: Tensor, z: Tensor, K: int, C: int, mixture: GaussianMixture | None, objective: str) -> Tensor:
        """Reduce ``log_w`` ``(K*C | 1, T, B)`` over samples (and components) -> ``(T, B)``."""
        log_w = log_w.expand(K * C, *log_w.shape[1:]).unflatten(0, (K, C))  # (K, C, T, B)
        if objective == "elbo":
            per = log_w.mean(0)  # (C, T, B)
        else:
            per = torch.logsumexp(log_w, 0) - math.log(K)  # (C, T, B)
            if objective == "dreg" and z.requires_grad:
                # Tucker et al.: the encoder's gradient through z is weighted by the squared
                # normalized weights, the decoder's by the weights themselves.
                w = torch.softmax(log_w.detach(), 0)  # (K, C, T, B)
                z.register_hook(lambda g: g * w.flatten(0, 1)[..., None])
                surrogate = (w * log_w).sum(0)
                per = surrogate + (per - surrogate).detach()  # the value of the bound, DReG's gradient
        if mixture is None:
            return per[0]
        return (mixture.weights * per).sum(0)  # stratified: Σ_c w_c * bound_c


def elbo(model: MultimodalVAE, batch: dict[str, Tensor], names: list[str]) -> Tensor:
    """The honest single-sample ELBO (β = 1, every λ = 1) of the modalities ``names``, per example ``(B,)``.

    q(z | names) is the fusion of those experts; only those modalities are reconstructed.
    """
    sub = {n: batch[n] for n in names}
    q = model.posterior(sub)
    z = q.rsample()  # (B, D)
    ll = sum(model.modalities[n].log_likelihood(model.modalities[n].decode(z), sub[n]) for n in names)
    return ll - kl_to_prior(q, z)

"""The multimodal VAE: named modalities, a fusion, and the sub-sampled ELBO of Wu & Goodman (2018).

Per step each modality is encoded once; its expert is reused in every ELBO term. The terms are
the joint term, one term per single modality, and (with more than two modalities) ``subsets``
random subsets (``mmgen.model.terms``). All terms are fused in one batched call, and each
decoder runs once on the latents of every term that reconstructs its modality.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from mmgen.config import ModelConfig
from mmgen.model.bounds import Draw, draw_latents, kl_part, mean_over_draws, reduce_bound
from mmgen.model.gaussian import kl_to_prior
from mmgen.model.terms import TermMasks, fixed_terms, random_terms
from mmgen.plugin.fusion import Fusion
from mmgen.plugin.modality import Modality
from mmgen.plugin.posterior import Posterior


def full_precision(x: Tensor) -> Tensor:
    """fp32 for what autocast made bf16 or fp16; fp32 and fp64 stay as they are."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


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

    def posterior(self, batch: dict[str, Tensor], present: dict[str, Tensor] | None = None) -> Posterior:
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

    # ---- the ELBO terms --------------------------------------------------------------------
    def fixed_subsets(self) -> Tensor:
        """The deterministic terms, joint plus singles, bool ``(T, M)`` (validation must not be random)."""
        return fixed_terms(len(self.names), self.config.terms == "joint")

    def subsets(self, generator: torch.Generator | None = None) -> Tensor:
        """Bool ``(T, M)``: the ELBO terms of one step (``mmgen.model.terms``)."""
        if len(self.names) == 1 or self.config.terms == "joint":
            return self.fixed_subsets()
        return random_terms(len(self.names), self.config.subsets, generator)

    def term_masks(self, batch: dict[str, Tensor], present: dict[str, Tensor] | None,
                   subsets: Tensor | None) -> TermMasks:
        """The terms of this step (fixed ones stay on the device) and their masks per example."""
        random_terms_on = len(self.names) > 2 and self.config.subsets > 0 and self.config.terms == "subsampled"
        if subsets is None and not random_terms_on:
            rows, rows_dev = self.fixed_subsets(), self.fixed_terms
        else:
            rows = (self.subsets() if subsets is None else subsets).cpu()  # row lookups stay on the host
            rows_dev = rows.to(self.weights.device, non_blocking=True)
        paired = present is None and all(n in batch for n in self.names)
        # A fully paired batch: the masks do not depend on the example, so they broadcast.
        return TermMasks.of(rows, rows_dev, None if paired else self.presence(batch, present))

    # ---- the objective ---------------------------------------------------------------------
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

        ``elbo`` averages log w over the samples (with the KL in closed form when q offers it),
        ``iwae``/``dreg`` take log-mean-exp. ``loss = -sum_t mean_b counted[t,b] * bound[t,b]``
        (``mmgen.model.terms.TermMasks`` says which term uses and counts what). With
        ``weighted=False`` every λ is 1.
        """
        masks = self.term_masks(batch, present, subsets)
        mu, logvar = self.experts(batch)  # (M, B, D); in bf16/fp16 under autocast
        B = mu.shape[1]
        with self._full_precision():  # the fusion, the draws and the KL are numerically delicate: fp32
            mu, logvar = full_precision(mu), full_precision(logvar)
            q = self.fusion(mu[:, None], logvar[:, None], masks.use.transpose(0, 1))  # batch_shape (T, B)
            draw = draw_latents(q, self.config.samples)  # z: (S, T, B, D)
            kl = kl_part(q, draw.z, self.config.objective)  # (S | 1, T, B)
        if masks.counted is not None:
            kl = torch.where(masks.counted, kl, 0.0)  # where, not *: 0 * inf from a placeholder would be NaN
        terms: dict[str, Tensor] = {}
        log_w = self._add_reconstructions(-beta * kl, batch, draw, masks, weighted, terms)  # (S, T, B)
        bound = reduce_bound(log_w, draw, self.config.objective, beta)  # (T, B)
        T = masks.rows.shape[0]
        kl_slots = T * B if masks.counted is None else masks.counted.sum().clamp(min=1)
        terms["kl"] = mean_over_draws(kl.detach(), draw).sum() / kl_slots
        return ModelOutput(loss=-bound.sum() / B, terms=terms)

    def _add_reconstructions(self, log_w: Tensor, batch: dict[str, Tensor], draw: Draw, masks: TermMasks,
                             weighted: bool, terms: dict[str, Tensor]) -> Tensor:
        """``log_w`` ``(S | 1, T, B)`` plus λ_m log p(x_m | z) of every term that reconstructs m; logs ``nll/m``
        (for a mixture, averaged over the components each example has, as the bound weights them)."""
        z = draw.z
        T, B = masks.rows.shape[0], z.shape[2]
        recon = self._reconstructs(masks.rows)  # (T, M) on the host
        for m, name in enumerate(self.names):
            rows = recon[:, m].nonzero().squeeze(1).tolist()  # the terms that reconstruct modality m
            if name not in batch or not rows:
                continue
            modality = self.modalities[name]
            contiguous = rows == list(range(rows[0], rows[-1] + 1))
            zm = z[:, rows[0] : rows[-1] + 1] if contiguous else z[:, rows]  # (S, T_m, B, D); a slice is a view
            params = modality.decode(zm)  # the decoder may run in bf16/fp16 under autocast
            with self._full_precision():
                ll = modality.log_likelihood(full_precision(params), batch[name])  # (S, T_m, B), in fp32
            slots = B * len(rows)  # (term, example) pairs that reconstruct m: the mean's denominator
            if masks.counted is not None:
                # A term reconstructs m for the examples that have m (for its own modalities this is use[t, m]).
                active = masks.has[m][None] & masks.counted[rows]  # (T_m, B)
                ll = torch.where(active, ll, 0.0)
                slots = active.sum().clamp(min=1)
            weight = self.weights[m] if weighted else 1.0
            if len(rows) < T:
                ll = torch.zeros_like(ll[:, :1]).expand(-1, T, -1).index_add(1, self._rows(rows), ll)  # (S, T, B)
            log_w = log_w + weight * ll
            terms[f"nll/{name}"] = -mean_over_draws(ll.detach(), draw).sum() / slots
        return log_w

    def _reconstructs(self, rows: Tensor) -> Tensor:
        """Bool ``(T, M)``: term t reconstructs modality m (its own modalities; every one for a cross term)."""
        if self.config.reconstruct == "all":
            return torch.ones_like(rows)
        recon = rows.clone()
        M = len(self.names)
        for name in self.config.cross_from:  # its single term is row 1 + its index (after the joint row)
            if rows.shape[0] > M:
                recon[1 + self.names.index(name)] = True
        return recon

    def _full_precision(self):
        """Autocast off for the block, when it is on (``train.precision``); else nothing to do."""
        device_type = self.weights.device.type
        if torch.is_autocast_enabled(device_type):
            return torch.autocast(device_type, enabled=False)
        return contextlib.nullcontext()

    def _rows(self, rows: list[int]) -> Tensor:
        """Row indices on the device, made once per distinct set (no host-to-device copy per step)."""
        key = (tuple(rows), self.weights.device)
        if key not in self._row_cache:
            self._row_cache[key] = torch.tensor(rows, device=self.weights.device)
        return self._row_cache[key]


def elbo(model: MultimodalVAE, batch: dict[str, Tensor], names: list[str]) -> Tensor:
    """The honest single-sample ELBO (β = 1, every λ = 1) of the modalities ``names``, per example ``(B,)``.

    q(z | names) is the fusion of those experts; only those modalities are reconstructed.
    """
    sub = {n: batch[n] for n in names}
    q = model.posterior(sub)
    z = q.rsample()  # (B, D)
    ll = sum(model.modalities[n].log_likelihood(model.modalities[n].decode(z), sub[n]) for n in names)
    return ll - kl_to_prior(q, z)

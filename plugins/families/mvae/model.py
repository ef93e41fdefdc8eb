"""The MVAE family: named modalities, a fusion, and the sub-sampled ELBO of Wu & Goodman (2018).

Per step each modality is encoded once; its expert is reused in every ELBO term. The terms are
the joint term, one term per single modality, and (with more than two modalities) ``subsets``
random subsets (``mmgen.model.terms``). All terms are fused in one batched call, and each
decoder runs once on the latents of every term that reconstructs its modality. With a mixture
fusion and ``terms = "joint"`` the same objective is MMVAE's (``moe``) or MoPoE's (``mopoe``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from mmgen import Fusion, Modality, Model, ModelOutput, Posterior, UnimodalExpertsModel, full_precision
from mmgen.model import (
    Draw,
    TermMasks,
    TermPlan,
    draw_latents,
    fixed_terms,
    kl_part,
    kl_to_prior,
    mean_over_draws,
    random_terms,
    reduce_bound,
)
from mmgen_plugins.families.mvae.config import MVAEConfig


class MultimodalVAE(UnimodalExpertsModel):
    """Encoders, decoders and fusion for ``M`` named modalities sharing a ``D``-dimensional latent."""

    Config = MVAEConfig
    config: MVAEConfig

    def __init__(self, modalities: dict[str, Modality], fusion: Fusion, config: MVAEConfig):
        super().__init__(modalities, config)
        self.fusion = fusion
        self._plans: dict[tuple, TermPlan] = {}  # per distinct term matrix and device
        # Joint plus singles never change: made once, so a step with them does no work to find its plan.
        self._fixed_rows = fixed_terms(len(self.names), config.terms == "joint")  # (T, M) on the host

    @classmethod
    def create(cls, modalities: dict[str, Modality], config: MVAEConfig, lookup) -> MultimodalVAE:
        fusion = lookup("fusions", config.fusion.kind)(config.fusion, config.latent_dim, len(modalities))
        return cls(modalities, fusion, config)

    @classmethod
    def check(cls, config: MVAEConfig, modalities, lookup) -> list[str]:
        """Cross-modal terms need modalities and single terms; k subsets need that many to exist; the
        fusion's own check."""
        errors = [f"model.cross_from: {n!r} is not a modality of this recipe" for n in config.cross_from
                  if n not in modalities]
        if config.cross_from and config.terms == "joint":
            errors.append("model.cross_from: the joint-only objective has no single-modality terms to extend")
        M = len(modalities)
        possible = 2**M - M - 2  # subsets of size 2..M-1: all but the empty set, the M singles and the whole
        if M > 2 and config.subsets > possible:  # with two, subsets are documented as unused
            errors.append(f"model.subsets: {config.subsets} random subsets asked for, but {M} modalities have "
                          f"only {possible} subsets of size 2 to {M - 1}")
        for entry in config.objective_terms or []:
            if entry not in ("joint", "subsets", *modalities):
                errors.append(f"model.objective_terms: {entry!r} is not 'joint', 'subsets' or a modality "
                              "of this recipe")
        if config.objective_terms is not None and config.objective == "elbo":
            errors.append("model.objective_terms: names the terms of an importance-weighted bound; "
                          "set model.objective to 'iwae' or 'dreg'")
        fusion_cls = lookup("fusions", config.fusion.kind)
        return errors + [f"model.fusion: {m}" for m in fusion_cls.check(config.fusion, list(modalities), config)]

    def describe(self) -> str:
        return f"model {self.config.kind!r} (fusion {self.fusion.config.kind!r}, objective {self.config.objective!r})"

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    # ---- building blocks (experts, presence: ``mmgen.UnimodalExpertsModel``) ----------------------
    def posterior(self, given: dict[str, Tensor], present: dict[str, Tensor] | None = None) -> Posterior:
        """q(z | the modalities in ``given``), batch_shape ``(B,)``; ``present`` masks examples per modality."""
        mu, logvar = self.experts(given)
        return self.fusion(mu, logvar, self.presence(given, present))

    # ---- the ELBO terms --------------------------------------------------------------------
    def fixed_rows(self) -> Tensor:
        """The deterministic terms, joint plus singles, bool ``(T, M)`` (validation must not be random)."""
        return self._fixed_rows

    def step_rows(self, generator: torch.Generator | None = None) -> Tensor:
        """Bool ``(T, M)``: the ELBO terms of one step (``mmgen.model.terms``)."""
        if len(self.names) <= 2 or self.config.terms == "joint" or self.config.subsets == 0:
            return self.fixed_rows()
        return random_terms(len(self.names), self.config.subsets, generator)

    def plan(self, rows: Tensor) -> TermPlan:
        """The plan of a term matrix, made once per distinct matrix and device."""
        device = self.lambdas.device
        key = ("fixed", device) if rows is self._fixed_rows else (rows.shape, rows.numpy().tobytes(), device)
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) >= 4096:  # random subsets of many modalities: keep the cache bounded
                self._plans.clear()
            plan = self._plans[key] = TermPlan.of(rows, self._reconstructs(rows), device, self.bound_terms(rows))
        return plan

    def bound_terms(self, rows: Tensor) -> Tensor | None:
        """Bool ``(T,)`` on the host: the terms of ``rows`` (``(T, M)``, host) that take ``model.objective``'s
        bound (``model.objective_terms``); None when every term does. Made once per plan."""
        names = self.config.objective_terms
        if names is None or self.config.objective == "elbo":
            return None
        M = rows.shape[1]
        size = rows.sum(1)  # (T,): modalities per term
        picked = torch.zeros(rows.shape[0], dtype=torch.bool)
        for entry in names:
            if entry == "joint":
                picked |= size == M
            elif entry == "subsets":
                picked |= (size > 1) & (size < M)
            else:
                picked |= (size == 1) & rows[:, self.names.index(entry)]
        return picked

    def term_masks(self, batch: dict[str, Tensor], present: dict[str, Tensor] | None,
                   rows: Tensor | None) -> tuple[TermMasks, TermPlan]:
        """The terms of this step and their masks per example."""
        plan = self.plan(self.step_rows() if rows is None else rows.cpu())  # row lookups stay on the host
        paired = present is None and all(n in batch for n in self.names)
        # A fully paired batch: the masks do not depend on the example, so they broadcast.
        return TermMasks.of(plan.rows, plan.rows_dev, None if paired else self.presence(batch, present)), plan

    def validation_output(self, batch: dict[str, Tensor], present: dict[str, Tensor] | None = None) -> ModelOutput:
        return self(batch, beta=1.0, present=present, rows=self.fixed_rows())

    def elbo(self, batch: dict[str, Tensor], names: list[str]) -> Tensor:
        """The honest single-sample ELBO (β = 1, every λ = 1) of the modalities ``names``, per example ``(B,)``,
        with the KL in closed form when the posterior offers it.

        q(z | names) is the fusion of those experts; only those modalities are reconstructed.
        """
        sub = {n: batch[n] for n in names}
        q = self.posterior(sub)
        z = q.rsample()  # (B, D)
        ll = sum(self.modalities[n].log_likelihood(self.modalities[n].decode(z), sub[n]) for n in names)
        return ll - kl_to_prior(q, z)

    def draw(self, q: Posterior) -> Draw:
        """K reparameterized draws per term and example from ``q`` (batch_shape ``(T, B)``); from every
        component of a mixture (stratified). MoPoE's sampled estimator draws one component instead."""
        return draw_latents(q, self.config.samples)

    # ---- the objective ---------------------------------------------------------------------
    def forward(
        self,
        batch: dict[str, Tensor],
        beta: float | Tensor = 1.0,
        present: dict[str, Tensor] | None = None,
        rows: Tensor | None = None,
        weighted: bool = True,
    ) -> ModelOutput:
        """The sub-sampled objective, negated and averaged over the batch.

        Per term t and example b, with K samples z_s ~ q_t (one set per component for a mixture):

            log w_s = sum_m λ_m * use[t,m,b] * log p(x_m | z_s) - β * (log q_t(z_s) - log p(z_s))

        ``elbo`` averages log w over the samples (with the KL in closed form when q offers it),
        ``iwae``/``dreg`` take log-mean-exp. ``loss = -sum_t mean_b counted[t,b] * bound[t,b]``
        (``mmgen.model.terms.TermMasks`` says which term uses and counts what). With
        ``weighted=False`` every λ is 1. ``rows`` (bool ``(T, M)``) fixes the terms; by default the step draws them.
        """
        masks, plan = self.term_masks(batch, present, rows)
        mu, logvar = self.experts(batch)  # (M, B, D), in full precision
        B = mu.shape[1]
        with self._full_precision():  # the fusion, the draws and the KL are numerically delicate: fp32
            q = self.fusion(mu[:, None], logvar[:, None], masks.use.transpose(0, 1))  # batch_shape (T, B)
            draw = self.draw(q)  # z: (S, T, B, D)
            kl = kl_part(q, draw.z, self.config.objective)  # (S | 1, T, B)
            chosen = plan.bound_terms  # (T,) or None: every term takes the objective
            if chosen is not None:  # the ELBO's terms: the KL in closed form when q offers it
                kl = torch.where(chosen[:, None], kl, kl_part(q, draw.z, "elbo"))  # (S, T, B)
        if masks.counted is not None:
            kl = torch.where(masks.counted, kl, 0.0)  # where, not *: 0 * inf from a placeholder would be NaN
        terms: dict[str, Tensor] = {}
        log_w = self._add_reconstructions(-beta * kl, batch, draw, masks, plan, weighted, terms)  # (S, T, B)
        bound = reduce_bound(log_w, draw, self.config.objective, beta, chosen)  # (T, B)
        T = masks.rows.shape[0]
        kl_slots = T * B if masks.counted is None else masks.counted.sum().clamp(min=1)
        terms["kl"] = mean_over_draws(kl.detach(), draw).sum() / kl_slots
        return ModelOutput(loss=-bound.sum() / B, terms=terms)

    def _add_reconstructions(self, log_w: Tensor, batch: dict[str, Tensor], draw: Draw, masks: TermMasks,
                             plan: TermPlan, weighted: bool, terms: dict[str, Tensor]) -> Tensor:
        """``log_w`` ``(S | 1, T, B)`` plus λ_m log p(x_m | z) of every term that reconstructs m; logs ``nll/m``
        (for a mixture, averaged over the components each example has, as the bound weights them)."""
        z = draw.z
        T, B = masks.rows.shape[0], z.shape[2]
        for m, name in enumerate(self.names):
            terms_m = plan.reconstructed[m]  # the terms that reconstruct modality m
            if name not in batch or terms_m is None:
                continue
            modality = self.modalities[name]
            window = terms_m.window
            zm = z[:, window] if window else z.index_select(1, terms_m.index)  # (S, T_m, B, D); a slice is a view
            params = modality.decode(zm)  # the decoder may run in bf16/fp16 under autocast
            with self._full_precision():
                ll = modality.log_likelihood(full_precision(params), batch[name])  # (S, T_m, B), in fp32
            slots = B * terms_m.count  # (term, example) pairs that reconstruct m: the mean's denominator
            if masks.counted is not None:
                # A term reconstructs m for the examples that have m (for its own modalities this is use[t, m]).
                counted = masks.counted[window] if window else masks.counted.index_select(0, terms_m.index)
                active = masks.has[m][None] & counted  # (T_m, B)
                ll = torch.where(active, ll, 0.0)
                slots = active.sum().clamp(min=1)
            weight = self.lambdas[m] if weighted else 1.0
            if terms_m.count < T:
                ll = torch.zeros_like(ll[:, :1]).expand(-1, T, -1).index_add(1, terms_m.index, ll)  # (S, T, B)
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


def elbo(model: Model, batch: dict[str, Tensor], names: list[str]) -> Tensor:
    """``model.elbo(batch, names)``, under the name mmgen 0.1 exported (``mmgen.model.elbo``)."""
    return model.elbo(batch, names)

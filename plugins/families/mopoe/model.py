"""MoPoE's sampled estimator: one mixture component per example instead of all of them.

The mixture bound of a uniform mixture q = Σ_c w_c q_c (w_c = 1 / the number of subsets the example has)
is, per example, Σ_c w_c E_{q_c}[f(z)] with f(z) = Σ_m λ_m log p(x_m | z) - β (log q(z) - log p(z)) for the
ELBO, and Σ_c w_c E_{q_c}[log mean_k exp f(z_k)] for the IWAE (the stratified objective of Shi et al. 2019,
which the MVAE family computes by drawing and decoding every component). Drawing one c ~ w per example and
its K draws from q_c alone gives an estimate of the same number with expectation exactly that sum: w does not
depend on the parameters, so the reparameterized gradient is unbiased too. Only log q(z), the mixture's
density, still reads every component; it needs no decoder.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor
from torch.distributions import Categorical

from mmgen import MmgenError, Posterior
from mmgen.model import Draw
from mmgen.plugin.posterior import is_stratified
from mmgen_plugins.families.mopoe.config import MoPoEConfig
from mmgen_plugins.families.mvae import MultimodalVAE

SAMPLED_DREG = ("model.estimator: 'sampled' draws one subset per example, and DReG on a mixture needs every "
                "subset's draws; use objective 'elbo' or 'iwae', or estimator 'stratified'")


@dataclass
class ComponentDraw(Draw):
    """Draws from one component per term and example; ``component`` says which."""

    component: Tensor | None = None  # (T, B) long: the component the draws of (t, b) came from


def draw_one_component(q: Posterior, K: int) -> ComponentDraw:
    """K reparameterized draws per term and example from one component of the stratified ``q`` (batch_shape
    ``(T, B)``), chosen by its weight; the K draws share it. Only the ``Stratified`` protocol is asked for."""
    every = q.rsample_components((K,))  # (K, C, T, B, D): noise for every component (no decoding, cheap)
    weights = q.component_weights  # (C, T, B): 0 for a subset the example does not have
    pick = Categorical(probs=weights.movedim(0, -1), validate_args=False).sample()  # (T, B)
    index = pick[None, None, ..., None].expand(K, 1, *pick.shape, every.shape[-1])  # (K, 1, T, B, D)
    z = every.gather(1, index).squeeze(1)  # (K, T, B, D)
    return ComponentDraw(z, K, 1, None, component=pick)


class MoPoE(MultimodalVAE):
    """The MVAE family's objective with MoPoE's defaults, and ``estimator = "sampled"``."""

    Config = MoPoEConfig
    config: MoPoEConfig

    @classmethod
    def check(cls, config: MoPoEConfig, modalities, lookup) -> list[str]:
        errors = super().check(config, modalities, lookup)
        if config.estimator == "sampled" and config.objective == "dreg":
            errors.append(SAMPLED_DREG)
        return errors

    def describe(self) -> str:
        return (f"model {self.config.kind!r} (fusion {self.fusion.config.kind!r}, objective "
                f"{self.config.objective!r}, estimator {self.config.estimator!r})")

    def draw(self, q: Posterior) -> Draw:
        """Every component's draws (stratified), or one component's per example (sampled)."""
        if self.config.estimator == "stratified" or not is_stratified(q):  # one component: nothing to choose
            return super().draw(q)
        if self.config.objective == "dreg":  # a model built past the recipe's check
            raise MmgenError(SAMPLED_DREG)
        return draw_one_component(q, self.config.samples)

"""What the model asks of the posterior q(z | X) a fusion returns: a protocol, not a type.

A fusion may return any ``torch.distributions.Distribution`` over z with ``batch_shape == batch``
and ``event_shape == (D,)`` that offers the required part; the model finds the optional
capabilities by asking for them (the functions below), never by checking the posterior's class,
so a fusion plugin can bring its own distribution and still train with every objective and be
scored by ``mmgen eval``.

Required: ``rsample(sample_shape) -> (*S, *batch, D)``, ``sample``, ``log_prob(z) -> (*S, *batch)``
and ``mean -> (*batch, D)`` (cross-modal accuracy decodes the posterior mean).

Optional:
* ``kl_to_standard_normal() -> (*batch)``: KL(q || N(0, I)) in closed form. Without it the ELBO
  uses the unbiased estimate log q(z) - log p(z) at its samples.
* ``rsample_components(sample_shape) -> (*S, C, *batch, D)`` with ``component_weights -> (C, *batch)``:
  q is a mixture of C components; every bound is then taken per component and averaged with
  the weights (stratified, Shi et al. 2019), so no discrete choice of component is needed.
* ``detached() -> Posterior``: the same density with its parameters cut from the graph;
  ``model.objective = "dreg"`` scores its samples with it and refuses a posterior without it.
* ``components``: for a stratified posterior, its components as one distribution with the component
  axis first in its batch shape; ``dreg`` on a mixture needs it (it detaches only the sampling
  component's parameters, ``mmgen.model.bounds``) and refuses a mixture without it.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from mmgen.errors import MmgenError


@runtime_checkable
class Posterior(Protocol):
    """The required part: reparameterized samples, a density and a mean."""

    def rsample(self, sample_shape: torch.Size | tuple = ()) -> Tensor: ...

    def sample(self, sample_shape: torch.Size | tuple = ()) -> Tensor: ...

    def log_prob(self, value: Tensor) -> Tensor: ...

    @property
    def mean(self) -> Tensor: ...


class ClosedFormKL(Protocol):
    def kl_to_standard_normal(self) -> Tensor:
        """KL(q || N(0, I)), shape ``batch``."""


class Stratified(Protocol):
    def rsample_components(self, sample_shape: torch.Size | tuple = ()) -> Tensor:
        """One reparameterized draw per component: ``(*S, C, *batch, D)``."""

    @property
    def component_weights(self) -> Tensor:
        """``(C, *batch)``, summing to 1 over C (0 for a component an example does not have)."""


class Detachable(Protocol):
    def detached(self) -> Posterior:
        """The same density with parameters cut from the graph."""


def closed_form_kl(q: Posterior) -> Tensor | None:
    """KL(q || N(0, I)) when the posterior knows it in closed form, else None."""
    kl = getattr(q, "kl_to_standard_normal", None)
    return kl() if callable(kl) else None


def is_stratified(q: Posterior) -> bool:
    """True when q is a mixture that draws from every component (``Stratified``)."""
    return callable(getattr(q, "rsample_components", None)) and hasattr(q, "component_weights")


def detached(q: Posterior) -> Posterior:
    """``q.detached()``; a posterior without it cannot be used with the DReG objective."""
    cut = getattr(q, "detached", None)
    if not callable(cut):
        raise MmgenError(
            f"model.objective = 'dreg' needs a posterior with detached(), and the fusion's "
            f"{type(q).__name__} has none",
            hint="use objective 'iwae' with this fusion, or give its posterior a detached() method",
        )
    return cut()

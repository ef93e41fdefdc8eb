"""What the families built on unimodal experts share: one Gaussian expert q(· | x_m) per modality, which example
has which modality, log p(x_m | z) of every modality, the λ weights, and full precision under autocast.

A family derives from :class:`UnimodalExpertsModel` (itself a :class:`mmgen.Model`) and writes only its
objective: the MVAE family (and with it MMVAE and MoPoE), JMVAE, MVTCAE, mmJSD, and through
``mmgen.model.private`` MMVAE+ and DMVAE. Every helper reads the same rules, so they are written once:

* a modality not given gets an N(0, I) placeholder expert (zeros), which the presence mask marks absent;
* masks live on the model's device (where ``lambdas`` is);
* decoders and encoders may run in bf16/fp16 under autocast; what they give is read in full precision.

Shapes: M modalities, B batch, W an expert's width, ``*S`` sample dims.
"""

from __future__ import annotations

import contextlib
from typing import ClassVar

import torch
from torch import Tensor

from mmgen.config import ModelConfig
from mmgen.model.gaussian import DiagonalGaussian
from mmgen.plugin.modality import Modality
from mmgen.plugin.model import Lookup, Model

COUNTS = {2: "two", 3: "three", 4: "four"}


def full_precision(x: Tensor) -> Tensor:
    """fp32 for what autocast made bf16 or fp16; fp32 and fp64 stay as they are."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def modality_weights(modalities: dict[str, Modality]) -> Tensor:
    """λ per modality, ``(M,)``, in the order of ``modalities``: each one's ``weight`` from its config."""
    return torch.tensor([m.config.weight for m in modalities.values()])


class UnimodalExpertsModel(Model):
    """A model family whose modalities each encode one Gaussian expert and decode from a latent.

    It holds ``lambdas`` (λ, ``(M,)``, not saved with the weights) and refuses a recipe with fewer than
    ``min_modalities`` modalities, saying why with ``title`` and ``why_more`` (``check``).
    """

    min_modalities: ClassVar[int] = 1
    title: ClassVar[str] = ""  # the paper's name of the family, for messages
    why_more: ClassVar[str] = ""  # what goes wrong with fewer modalities, for the message

    def __init__(self, modalities: dict[str, Modality], config: ModelConfig):
        super().__init__(modalities, config)
        self.register_buffer("lambdas", modality_weights(modalities), persistent=False)  # (M,)

    @classmethod
    def check(cls, config: ModelConfig, modalities: dict, lookup: Lookup) -> list[str]:
        """A recipe with fewer than ``min_modalities`` modalities is refused, with the reason."""
        least = cls.min_modalities
        if len(modalities) >= least:
            return []
        return [f"model.kind: {config.kind!r} ({cls.title or config.kind}) needs {COUNTS.get(least, least)} or more "
                f"modalities; {cls.why_more} (use the mvae family for a single-modality VAE)"]

    # ---- the experts -----------------------------------------------------------------------------
    def experts(self, given: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Every modality's expert, ``mu, logvar`` ``(M, B, W)`` in full precision (W from ``latent_widths``);
        a modality not in ``given`` gets zeros, N(0, I), which ``presence`` marks absent."""
        B = next(iter(given.values())).shape[0]
        mus, logvars = [], []
        for name in self.names:
            if name in given:
                mu, logvar = self.modalities[name].encode(given[name])  # may run in bf16 under autocast
            else:
                width = self.latent_widths(self.config, name, self.modalities[name].config).encode
                mu = logvar = self._anchor().new_zeros(B, width)
            mus.append(full_precision(mu))
            logvars.append(full_precision(logvar))
        return torch.stack(mus), torch.stack(logvars)

    def unimodal_posteriors(self, given: dict[str, Tensor]) -> DiagonalGaussian:
        """q(· | x_m) of every modality, batch_shape ``(M, B)``; a modality not in ``given`` gets N(0, I)."""
        return DiagonalGaussian(*self.experts(given))

    def presence(self, given: dict[str, Tensor], present: dict[str, Tensor] | None = None) -> Tensor:
        """Bool ``(M, B)`` on the model's device: example b has modality m, i.e. m is in ``given`` and, where
        ``present`` names m, ``present[m][b]`` (weak supervision, ``data.missing_at_eval``)."""
        B = next(iter(given.values())).shape[0]
        device = self.lambdas.device
        rows = []
        for name in self.names:
            if name not in given:
                rows.append(torch.zeros(B, dtype=torch.bool, device=device))
            elif present is not None and name in present:
                rows.append(present[name].to(device=device, dtype=torch.bool))
            else:
                rows.append(torch.ones(B, dtype=torch.bool, device=device))
        return torch.stack(rows)

    # ---- the decoders ----------------------------------------------------------------------------
    def reconstruction(self, z: Tensor, batch: dict[str, Tensor], use: Tensor | None = None,
                       each: bool = False) -> Tensor:
        """log p(x_m | z) of every modality, unweighted, in full precision: ``(M, *S, B)``.

        ``z`` is ``(*S, B, L)``, decoded by every modality, or with ``each`` ``(M, *S, B, L)``, ``z[m]`` decoded
        by modality m. A modality not in ``batch`` is not decoded and gives 0, as does every example that
        ``use`` (bool ``(M, B)``) marks as lacking it (by ``where``: a placeholder's inf never makes 0 * inf).
        """
        rows = []
        for m, name in enumerate(self.names):
            zm = z[m] if each else z
            if name not in batch:
                rows.append(zm.new_zeros(zm.shape[:-1]))
                continue
            params = self.modalities[name].decode(zm)  # may run in bf16/fp16 under autocast
            ll = self.modalities[name].log_likelihood(full_precision(params), batch[name])  # (*S, B)
            rows.append(ll if use is None else torch.where(use[m], ll, 0.0))
        return torch.stack(rows)

    def _full_precision(self):
        """Autocast off for the block, when it is on (``train.precision``); else nothing to do."""
        device_type = self.lambdas.device.type
        if torch.is_autocast_enabled(device_type):
            return torch.autocast(device_type, enabled=False)
        return contextlib.nullcontext()

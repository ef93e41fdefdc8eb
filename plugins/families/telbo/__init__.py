"""TELBO, the triple ELBO (Vedantam, Fischer, Huang & Murphy 2018), registered as ``[model] kind = "telbo"``.

A joint encoder q(z | X) and the decoders are trained first on the joint ELBO; then, with the decoders
frozen, each unimodal encoder q(z | x_m) on its own ELBO. The objective is written once, in ``model.py``;
the settings are ``config.py``.
"""

from mmgen import hookimpl
from mmgen_plugins.families.telbo.config import TELBOConfig
from mmgen_plugins.families.telbo.model import TELBO

__all__ = ["TELBO", "TELBOConfig"]


@hookimpl
def register_models(register):
    register("telbo", TELBO)

"""MoPoE-VAE (Sutter, Daunhawer & Vogt 2021), registered as ``[model] kind = "mopoe"``.

q(z | X) is the uniform mixture, over every non-empty subset of the modalities, of the product of
experts of that subset (eq. 5 of the paper), trained on the joint term. That is the MVAE family's
objective with the ``mopoe`` fusion and ``terms = "joint"``, so this family reuses it and changes the
defaults (``config.py``). ``estimator = "sampled"`` (``model.py``) estimates the same bound from one
subset per example, as the paper's code does, instead of from all 2^M - 1 (stratified, the default).
"""

from mmgen import hookimpl
from mmgen_plugins.families.mopoe.config import MoPoEConfig
from mmgen_plugins.families.mopoe.model import MoPoE, draw_one_component

__all__ = ["MoPoE", "MoPoEConfig", "draw_one_component"]


@hookimpl
def register_models(register):
    register("mopoe", MoPoE)

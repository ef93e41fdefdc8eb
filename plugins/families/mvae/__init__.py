"""The MVAE family (Wu & Goodman 2018), registered as ``[model] kind = "mvae"``, the default.

Its objective is written once, in ``model.py``; its settings are ``config.py``. MMVAE and MoPoE
are this family with a mixture fusion and the joint term alone (``families/mmvae``, ``families/mopoe``).
"""

from mmgen import hookimpl
from mmgen_plugins.families.mvae.config import MVAEConfig
from mmgen_plugins.families.mvae.model import MultimodalVAE

__all__ = ["MVAEConfig", "MultimodalVAE"]


@hookimpl
def register_models(register):
    register("mvae", MultimodalVAE)

"""MMVAE+ (Palumbo, Daunhawer & Vogt, ICLR 2023), registered as ``[model] kind = "mmvaeplus"``.

MMVAE's mixture of experts over a shared z, and a private w_m per modality; a cross-modal reconstruction reads
the shared z of another modality's expert with a private stand-in drawn from an auxiliary prior r_n(w_n). The
objective is written once, in ``model.py``; the settings are ``config.py``. The layout of the latent vector
``[z | w_1 | ... | w_M]`` and its posterior are mmgen's (``mmgen.PrivateLatentsModel``, shared with DMVAE).
"""

from mmgen import hookimpl
from mmgen_plugins.families.mmvaeplus.config import MMVAEPlusConfig
from mmgen_plugins.families.mmvaeplus.model import MMVAEPlus

__all__ = ["MMVAEPlus", "MMVAEPlusConfig"]


@hookimpl
def register_models(register):
    register("mmvaeplus", MMVAEPlus)

"""DMVAE (Lee & Pavlovic, CVPR Workshops 2021), registered as ``[model] kind = "dmvae"``.

A shared latent w, the product of the given modalities' experts with the prior expert, and a private latent u_m per
modality; every modality is reconstructed with its own u_m from the joint w, its own w and every other modality's
w, each pair an ELBO of that modality. The objective is written once, in ``model.py``; the settings are
``config.py``; the latent layout ``[w | u_1 | ... | u_M]`` is MMVAE+'s (``mmgen.PrivateLatentsModel``) with a width
per modality, 0 for none (``layout.py``).
"""

from mmgen import hookimpl
from mmgen_plugins.families.dmvae.config import DMVAEConfig
from mmgen_plugins.families.dmvae.model import DMVAE

__all__ = ["DMVAE", "DMVAEConfig"]


@hookimpl
def register_models(register):
    register("dmvae", DMVAE)

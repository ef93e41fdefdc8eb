"""JMVAE-kl (Suzuki, Nakayama & Matsuo 2016), registered as ``[model] kind = "jmvae"``.

A joint encoder q(z | X) is trained on the ELBO of the whole example, and each unimodal encoder
q(z | x_m) is pulled to it by α KL(q(z | X) ‖ q(z | x_m)), so that one modality alone can infer z.
The objective is written once, in ``model.py``; the settings are ``config.py``.
"""

from mmgen import hookimpl
from mmgen_plugins.families.jmvae.config import JMVAEConfig
from mmgen_plugins.families.jmvae.model import JMVAE, JointEncoder

__all__ = ["JMVAE", "JMVAEConfig", "JointEncoder"]


@hookimpl
def register_models(register):
    register("jmvae", JMVAE)

"""MVTCAE (Hwang, Kim, Hong & Kim 2021), registered as ``[model] kind = "mvtcae"``.

q(z | X) is the product of the unimodal experts without a prior expert, trained on the total-correlation bound:
(M − α)/M of the reconstruction, less β [(1 − α) KL(q(z|X) ‖ p(z)) + α/M Σ_m KL(q(z|X) ‖ q(z|x_m))].
The objective is written once, in ``model.py``; the settings are ``config.py``.
"""

from mmgen import hookimpl
from mmgen_plugins.families.mvtcae.config import MVTCAEConfig
from mmgen_plugins.families.mvtcae.model import MVTCAE

__all__ = ["MVTCAE", "MVTCAEConfig"]


@hookimpl
def register_models(register):
    register("mvtcae", MVTCAE)

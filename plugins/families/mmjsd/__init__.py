"""mmJSD (Sutter, Daunhawer & Vogt 2020), registered as ``[model] kind = "mmjsd"``.

Unimodal encoders q(z | x_m); the reconstruction is taken under their mixture, and the KL to the prior is
replaced by the multimodal Jensen-Shannon divergence of the unimodal posteriors and p(z) to their dynamic prior,
the geometric mean of all of them (a product of experts, in closed form). With ``model.private_dim`` > 0 each
modality also has its own style latent (the paper's modality-specific subspaces, ``subspaces.py``). The objective
is written once, in ``model.py``; the settings are ``config.py``.
"""

from mmgen import hookimpl
from mmgen_plugins.families.mmjsd.config import MMJSDConfig
from mmgen_plugins.families.mmjsd.model import MMJSD, dynamic_prior, js_divergence

__all__ = ["MMJSD", "MMJSDConfig", "dynamic_prior", "js_divergence"]


@hookimpl
def register_models(register):
    register("mmjsd", MMJSD)

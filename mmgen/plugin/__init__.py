"""The plugin API: the Model, Modality, Fusion and Dataset interfaces, the posterior protocol, the hooks,
entry-point discovery, the registry of kinds, the plugin report and the ``mmgen new-plugin`` scaffold.

Owns everything a plugin implements or mmgen needs to find one. May import: mmgen.errors,
mmgen.config (and pluggy, torch).
"""

from mmgen.plugin.dataset import SPLITS, Dataset, Split
from mmgen.plugin.fusion import Fusion
from mmgen.plugin.hookspecs import hookimpl
from mmgen.plugin.logger import Logger
from mmgen.plugin.modality import ClassSpace, Modality
from mmgen.plugin.model import LatentWidths, Model, ModelOutput, diagonal_normal
from mmgen.plugin.posterior import Posterior
from mmgen.plugin.registry import get_registry

__all__ = [
    "SPLITS", "ClassSpace", "Dataset", "Fusion", "LatentWidths", "Logger", "Modality", "Model", "ModelOutput",
    "Posterior", "Split", "diagonal_normal", "get_registry", "hookimpl",
]

"""The plugin API: the Model, Modality, Fusion and Dataset interfaces, the posterior protocol, the hooks,
entry-point discovery, the registry of kinds, the plugin report and the ``mmgen new-plugin`` scaffold.

Owns everything a plugin implements or mmgen needs to find one. May import: mmgen.errors,
mmgen.config (and pluggy, torch).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names' homes, for type checkers and the import graph (tests/test_architecture.py)
    from mmgen.plugin.dataset import SPLITS, Dataset, Split
    from mmgen.plugin.fusion import Fusion
    from mmgen.plugin.hookspecs import hookimpl
    from mmgen.plugin.logger import Logger
    from mmgen.plugin.modality import ClassSpace, Modality
    from mmgen.plugin.model import LatentWidths, Model, ModelOutput, diagonal_normal
    from mmgen.plugin.posterior import Posterior
    from mmgen.plugin.registry import get_registry

# Imported on first use (PEP 562): the interfaces import torch, and discovery, which lives in this
# package too, must not (``mmgen --help`` and ``mmgen plugins`` start without it).
_HOMES = {
    "SPLITS": "dataset", "Dataset": "dataset", "Split": "dataset", "Fusion": "fusion", "hookimpl": "hookspecs",
    "Logger": "logger", "ClassSpace": "modality", "Modality": "modality", "LatentWidths": "model",
    "Model": "model", "ModelOutput": "model", "diagonal_normal": "model", "Posterior": "posterior",
    "get_registry": "registry",
}

__all__ = [
    "SPLITS", "ClassSpace", "Dataset", "Fusion", "LatentWidths", "Logger", "Modality", "Model", "ModelOutput",
    "Posterior", "Split", "diagonal_normal", "get_registry", "hookimpl",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

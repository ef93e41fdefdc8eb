"""mmgen: a plugin-based toolkit for multimodal generative models.

The public surface: the plugin interfaces (Modality, Fusion, Dataset and their configs), the
``hookimpl`` marker, the error types, and ``load_run`` for using a trained run from Python.
"""

from mmgen.dataset import Dataset, DatasetConfig
from mmgen.errors import (
    CheckpointError,
    DataError,
    GivenError,
    MmgenError,
    PluginError,
    RecipeError,
    TrainingDiverged,
)
from mmgen.fusion import Fusion, FusionConfig
from mmgen.hookspecs import hookimpl
from mmgen.modality import Modality, ModalityConfig

__all__ = [
    "CheckpointError",
    "DataError",
    "Dataset",
    "DatasetConfig",
    "Fusion",
    "FusionConfig",
    "GivenError",
    "MmgenError",
    "Modality",
    "ModalityConfig",
    "PluginError",
    "RecipeError",
    "TrainingDiverged",
    "hookimpl",
    "load_run",
]


def load_run(run_dir=None, device: str = "auto", which: str = "best"):
    """Load a trained run directory (default: the newest under ``runs/``) as a :class:`mmgen.run.Run`."""
    from mmgen.run import Run

    return Run.load(run_dir, device=device, which=which)

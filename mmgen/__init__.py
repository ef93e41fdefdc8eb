"""mmgen: a plugin-based toolkit for multimodal generative models.

The public surface, for users and for plugin authors (``docs/writing-plugins.md``):

* the plugin interfaces and their configs: ``Model`` (a model family, with ``ModelOutput``,
  ``LatentWidths``), ``Modality``, ``Fusion``, ``Dataset`` (with ``Split``, ``SPLITS``), ``ModelConfig``,
  ``ModalityConfig``, ``FusionConfig``, ``DatasetConfig``, the ``hookimpl`` marker,
  and the ``Posterior`` protocol a fusion's result follows;
* posteriors and their parts a fusion can build on: ``DiagonalGaussian``, ``GaussianMixture``,
  ``standard_normal``, ``product_of_experts``, ``with_prior_fallback``;
* a data set to derive from: ``IdxImageDataset`` / ``IdxImageConfig`` (torchvision's MNIST-family
  layout with a seeded validation split) and ``read_idx_gz``;
* the error types, ``get_registry``, ``load_recipe``, ``build_model`` (a recipe's model, seeded), and
  ``load_run`` to use a trained run;
* ``save_tensors`` and ``load_tensors``: safetensors files written atomically (a plugin's data cache).

This module only gathers names; nothing inside mmgen imports it, so it sits above every layer.
"""

from mmgen.config import DatasetConfig, FusionConfig, ModalityConfig, ModelConfig, Recipe
from mmgen.data import IdxImageConfig, IdxImageDataset, read_idx_gz
from mmgen.errors import (
    CheckpointError,
    DataError,
    GivenError,
    MmgenError,
    PluginError,
    RecipeError,
    TrainingDiverged,
    TrainingInterrupted,
)
from mmgen.model import DiagonalGaussian, GaussianMixture, product_of_experts, standard_normal, with_prior_fallback
from mmgen.plugin import (
    SPLITS,
    ClassSpace,
    Dataset,
    Fusion,
    LatentWidths,
    Logger,
    Modality,
    Model,
    ModelOutput,
    Posterior,
    Split,
    diagonal_normal,
    get_registry,
    hookimpl,
)
from mmgen.recipe import load_recipe
from mmgen.recipe.build import build_model
from mmgen.run import Run, RunDir
from mmgen.storage import load_tensors, save_tensors

__all__ = [
    "SPLITS",
    "CheckpointError",
    "ClassSpace",
    "DataError",
    "Dataset",
    "DatasetConfig",
    "DiagonalGaussian",
    "Fusion",
    "FusionConfig",
    "GaussianMixture",
    "GivenError",
    "IdxImageConfig",
    "IdxImageDataset",
    "LatentWidths",
    "Logger",
    "MmgenError",
    "Modality",
    "ModalityConfig",
    "Model",
    "ModelConfig",
    "ModelOutput",
    "PluginError",
    "Posterior",
    "Recipe",
    "RecipeError",
    "Run",
    "RunDir",
    "Split",
    "TrainingDiverged",
    "TrainingInterrupted",
    "build_model",
    "diagonal_normal",
    "get_registry",
    "hookimpl",
    "load_recipe",
    "load_run",
    "load_tensors",
    "product_of_experts",
    "read_idx_gz",
    "save_tensors",
    "standard_normal",
    "with_prior_fallback",
]


def load_run(run_dir=None, device: str = "auto", which: str = "best") -> Run:
    """Load a trained run directory (default: the newest under ``runs/``) as a :class:`mmgen.Run`."""
    return Run.load(run_dir, device=device, which=which)

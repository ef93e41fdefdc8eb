"""mmgen: a plugin-based toolkit for multimodal generative models.

The public surface, for users and for plugin authors (``docs/writing-plugins.md``):

* the plugin interfaces and their configs: ``Model`` (a model family, with ``ModelOutput``,
  ``LatentWidths``), ``Modality``, ``Fusion``, ``Dataset`` (with ``Split``, ``SPLITS``), ``ModelConfig``,
  ``ModalityConfig``, ``FusionConfig``, ``DatasetConfig``, the ``hookimpl`` marker,
  and the ``Posterior`` protocol a fusion's result follows;
* posteriors and their parts a fusion can build on: ``DiagonalGaussian``, ``GaussianMixture``,
  ``standard_normal``, ``product_of_experts``, ``with_prior_fallback``;
* what a model family built on unimodal experts shares (``mmgen/model/experts.py``): ``UnimodalExpertsModel``
  (the experts with N(0, I) placeholders, presence masks, log p(x_m | z), λ, full precision),
  ``modality_weights``, ``full_precision``; and private latents beside a shared one (``mmgen/model/private.py``):
  ``PrivateLatentsModel``, ``PrivateLayout``, ``private_posterior``, ``IndependentBlocks``;
* a data set to derive from: ``IdxImageDataset`` / ``IdxImageConfig`` (torchvision's MNIST-family
  layout with a seeded validation split) and ``read_idx_gz``;
* the error types, ``get_registry``, ``load_recipe``, ``build_model`` (a recipe's model, seeded), and
  ``load_run`` to use a trained run;
* ``save_tensors`` and ``load_tensors``: safetensors files written atomically (a plugin's data cache).

This module only gathers names, importing each on first use (``import mmgen`` does not import torch);
nothing inside mmgen imports it, so it sits above every layer.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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
from mmgen.plugin import moved as _moved  # noqa: F401  (installs the aliases of moved names, as import mmgen did)

if TYPE_CHECKING:  # the names' homes, for type checkers and the import graph (tests/test_architecture.py)
    from mmgen.config import DatasetConfig, FusionConfig, ModalityConfig, ModelConfig, Recipe
    from mmgen.data import IdxImageConfig, IdxImageDataset, read_idx_gz
    from mmgen.data.svhn import MnistSvhnConfig, MnistSvhnDataset
    from mmgen.model import (
        DiagonalGaussian,
        GaussianMixture,
        IndependentBlocks,
        PrivateLatentsModel,
        PrivateLayout,
        UnimodalExpertsModel,
        full_precision,
        modality_weights,
        private_posterior,
        product_of_experts,
        standard_normal,
        with_prior_fallback,
    )
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

# The rest is imported on first use (PEP 562), so that `import mmgen` (and with it every command's
# start, `mmgen --help` included) does not import torch.
_HOMES = {
    **dict.fromkeys(["DatasetConfig", "FusionConfig", "ModalityConfig", "ModelConfig", "Recipe"], "mmgen.config"),
    **dict.fromkeys(["IdxImageConfig", "IdxImageDataset", "read_idx_gz"], "mmgen.data"),
    **dict.fromkeys(["MnistSvhnConfig", "MnistSvhnDataset"], "mmgen.data.svhn"),
    **dict.fromkeys(["DiagonalGaussian", "GaussianMixture", "IndependentBlocks", "PrivateLatentsModel",
                     "PrivateLayout", "UnimodalExpertsModel", "full_precision", "modality_weights",
                     "private_posterior", "product_of_experts", "standard_normal", "with_prior_fallback"],
                    "mmgen.model"),
    **dict.fromkeys(["SPLITS", "ClassSpace", "Dataset", "Fusion", "LatentWidths", "Logger", "Modality", "Model",
                     "ModelOutput", "Posterior", "Split", "diagonal_normal", "get_registry", "hookimpl"],
                    "mmgen.plugin"),
    "load_recipe": "mmgen.recipe", "build_model": "mmgen.recipe.build",
    **dict.fromkeys(["Run", "RunDir"], "mmgen.run"),
    **dict.fromkeys(["load_tensors", "save_tensors"], "mmgen.storage"),
}

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
    "IndependentBlocks",
    "LatentWidths",
    "Logger",
    "MmgenError",
    "MnistSvhnConfig",
    "MnistSvhnDataset",
    "Modality",
    "ModalityConfig",
    "Model",
    "ModelConfig",
    "ModelOutput",
    "PluginError",
    "Posterior",
    "PrivateLatentsModel",
    "PrivateLayout",
    "Recipe",
    "RecipeError",
    "Run",
    "RunDir",
    "Split",
    "TrainingDiverged",
    "TrainingInterrupted",
    "UnimodalExpertsModel",
    "build_model",
    "diagonal_normal",
    "full_precision",
    "get_registry",
    "hookimpl",
    "load_recipe",
    "load_run",
    "load_tensors",
    "modality_weights",
    "private_posterior",
    "product_of_experts",
    "read_idx_gz",
    "save_tensors",
    "standard_normal",
    "with_prior_fallback",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


def load_run(run_dir=None, device: str = "auto", which: str = "best") -> Run:
    """Load a trained run directory, an export's folder, or ``hf://ORG/NAME[@REVISION]`` from the Hugging Face
    Hub (default: the newest run under ``runs/``) as a :class:`mmgen.Run`."""
    return __getattr__("Run").load(run_dir, device=device, which=which)

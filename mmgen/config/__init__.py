"""Every schema of a recipe, as pydantic models: the leaf layer, importing nothing else of mmgen.

Owns the recipe head (``name``, ``seed``...), ``[model]``, ``[train]``, and the base configs that
every modality, fusion and dataset plugin subclasses. May import: pydantic (and the standard library).
"""

from mmgen.config.model import ModelConfig
from mmgen.config.parts import DatasetConfig, FusionConfig, ModalityConfig
from mmgen.config.recipe import Recipe, RecipeHead
from mmgen.config.train import TrainConfig

__all__ = ["DatasetConfig", "FusionConfig", "ModalityConfig", "ModelConfig", "Recipe", "RecipeHead", "TrainConfig"]

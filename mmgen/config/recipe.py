"""A whole recipe: mmgen's own head (name, seed, model, train) and the plugin-configured parts."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny

from mmgen.config.model import ModelConfig
from mmgen.config.parts import DatasetConfig, ModalityConfig
from mmgen.config.train import TrainConfig


class RecipeHead(BaseModel):
    """The parts of a recipe that belong to mmgen itself."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Name of the recipe; the default run directory is runs/<name>-<timestamp>.")
    description: str = Field("", description="What the recipe trains.")
    seed: int = Field(0, description="Seed of parameter initialization, batches and sampling.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="Latent size, fusion, ELBO sub-sampling.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="The optimization schedule.")


class Recipe(RecipeHead):
    """A whole, validated recipe (built by ``mmgen.recipe.validate_recipe``, which checks each part
    against the Config of the kind it names)."""

    modalities: dict[str, SerializeAsAny[ModalityConfig]] = Field(
        description="One table per modality, named like the dataset field it reads; each names a kind."
    )
    data: SerializeAsAny[DatasetConfig] = Field(description="The dataset: a registered kind and its settings.")

    def to_dict(self) -> dict[str, Any]:
        """The resolved recipe as plain data; ``validate_recipe(recipe.to_dict())`` gives it back."""
        return self.model_dump(mode="json")

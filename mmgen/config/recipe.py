"""A whole recipe: mmgen's own head (name, seed, model, train) and the plugin-configured parts."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, field_validator

from mmgen.config.model import ModelConfig
from mmgen.config.parts import DatasetConfig, ModalityConfig
from mmgen.config.train import TrainConfig

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
SEEDS = 2**63  # a seed is 0 to 2**63 - 1: torch's generators take 64 bits, and offsets are added to it


class RecipeHead(BaseModel):
    """The parts of a recipe that belong to mmgen itself."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        description="Name of the recipe: up to 100 letters, digits, '_', '.' and '-', starting with a letter or "
        "digit (it names the default run directory, runs/<name>-<timestamp>, so it cannot hold a path).",
    )
    description: str = Field("", description="What the recipe trains.")
    seed: int = Field(0, ge=0, lt=SEEDS, description="Seed of parameter initialization, batches and sampling.")
    model: SerializeAsAny[ModelConfig] = Field(
        default_factory=ModelConfig, description="The model family (a registered kind) and its settings."
    )
    train: TrainConfig = Field(default_factory=TrainConfig, description="The optimization schedule.")

    @field_validator("name")
    @classmethod
    def _a_file_name(cls, name: str) -> str:
        if not NAME.fullmatch(name):
            raise ValueError("must be 1 to 100 letters, digits, '_', '.' or '-', starting with a letter or digit "
                             "(it names the run directory, so it cannot be a path)")
        return name


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

"""Recipes: TOML files validated by pydantic, with ``key.path=value`` overrides.

Validation collects every problem, each with its dotted key, into one RecipeError before any
tensor is allocated. Plugin parts (``modalities.*``, ``model.fusion``, ``data``) are validated
against the Config class of the kind they name.
"""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError

from mmgen.dataset import DatasetConfig
from mmgen.errors import MmgenError, RecipeError
from mmgen.modality import ModalityConfig
from mmgen.model import ModelConfig
from mmgen.plugins import get_registry
from mmgen.trainer import TrainConfig


class RecipeHead(BaseModel):
    """The parts of a recipe that belong to mmgen itself."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Name of the recipe; the default run directory is runs/<name>-<timestamp>.")
    description: str = Field("", description="What the recipe trains.")
    seed: int = Field(0, description="Seed of parameter initialization, batches and sampling.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="Latent size, fusion, ELBO sub-sampling.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="The optimization schedule.")


class Recipe(RecipeHead):
    """A whole, validated recipe."""

    modalities: dict[str, SerializeAsAny[ModalityConfig]] = Field(
        description="One table per modality, named like the dataset field it reads; each names a kind."
    )
    data: SerializeAsAny[DatasetConfig] = Field(description="The dataset: a registered kind and its settings.")

    def to_dict(self) -> dict[str, Any]:
        """The resolved recipe as plain data; ``validate_recipe(recipe.to_dict())`` gives it back."""
        return self.model_dump(mode="json")


def _format(exc: ValidationError, prefix: str) -> list[str]:
    lines = []
    for err in exc.errors():
        key = ".".join([prefix, *map(str, err["loc"])] if prefix else map(str, err["loc"]))
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        if err["type"] not in ("extra_forbidden", "missing"):
            msg += f" (got {err['input']!r})"
        lines.append(f"{key}: {msg}")
    return lines


def _plugin_part(category: str, raw: Any, prefix: str, errors: list[str]):
    """Validate one plugin-configured table against the Config of the kind it names."""
    if not isinstance(raw, dict):
        errors.append(f"{prefix}: expected a table, got {raw!r}")
        return None
    if "kind" not in raw:
        errors.append(f"{prefix}.kind: Field required")
        return None
    try:
        cls = get_registry().lookup(category, str(raw["kind"]))
    except MmgenError as exc:
        errors.append(f"{prefix}.kind: {exc}")
        return None
    try:
        return cls.Config.model_validate(raw)
    except ValidationError as exc:
        errors.extend(_format(exc, prefix))
        return None


def validate_recipe(data: dict[str, Any], source: str = "recipe") -> Recipe:
    """Validate plain recipe data; every problem goes into one RecipeError."""
    data = copy.deepcopy(data)
    errors: list[str] = []
    modalities_raw = data.pop("modalities", None)
    data_raw = data.pop("data", None)
    model_raw = data.get("model", {})
    fusion_raw = {"kind": "poe"}
    if isinstance(model_raw, dict):
        fusion_raw = model_raw.pop("fusion", fusion_raw)

    head = None
    try:
        head = RecipeHead.model_validate(data)
    except ValidationError as exc:
        errors.extend(_format(exc, ""))

    fusion = _plugin_part("fusions", fusion_raw, "model.fusion", errors)
    modalities: dict[str, ModalityConfig] = {}
    if not isinstance(modalities_raw, dict) or not modalities_raw:
        errors.append("modalities: at least one [modalities.NAME] table is required")
    else:
        for name, raw in modalities_raw.items():
            cfg = _plugin_part("modalities", raw, f"modalities.{name}", errors)
            if cfg is not None:
                modalities[name] = cfg
    dataset = None
    if data_raw is None:
        errors.append("data: a [data] table with a kind is required")
    else:
        dataset = _plugin_part("datasets", data_raw, "data", errors)
    if dataset is not None:
        fields = get_registry().lookup("datasets", dataset.kind).fields
        for name in modalities:
            if name not in fields:
                errors.append(
                    f"modalities.{name}: dataset {dataset.kind!r} has no field {name!r} (fields: {', '.join(fields)})"
                )

    if dataset is not None:
        for name in dataset.missing_at_eval:
            if name not in modalities:
                errors.append(f"data.missing_at_eval: {name!r} is not a modality of this recipe")
    if fusion is not None and head is not None and modalities:
        fusion_cls = get_registry().lookup("fusions", fusion.kind)
        errors.extend(f"model.fusion: {msg}" for msg in fusion_cls.check(fusion, list(modalities), head.model))

    if errors:
        raise RecipeError(f"{source}: {len(errors)} problem(s): " + "; ".join(errors))
    assert head is not None and fusion is not None and dataset is not None
    head.model.fusion = fusion
    return Recipe.model_construct(**dict(head), modalities=modalities, data=dataset)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.epochs=3"`` -> (["train", "epochs"], 3). Values are TOML values; bare words are strings."""
    key, sep, value = text.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(p.strip() for p in parts):
        raise RecipeError(f"override {text!r} is not of the form key.path=value (for example train.epochs=3)")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()
    return [p.strip() for p in parts], parsed


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    data = copy.deepcopy(data)
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for i, part in enumerate(path[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise RecipeError(f"override {text!r}: {'.'.join(path[: i + 1])} is not a table")
            node = child
        node[path[-1]] = value
    return data


def read_recipe_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise RecipeError(f"recipe file not found: {path}", hint="`ls recipes/` shows the shipped recipes")
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RecipeError(f"{path}: not valid TOML: {exc}")


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read a TOML recipe, apply ``key.path=value`` overrides, validate everything at once."""
    path = Path(path)
    data = apply_overrides(read_recipe_file(path), list(overrides))
    return validate_recipe(data, source=str(path))

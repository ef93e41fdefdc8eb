"""Recipes: TOML files and ``key.path=value`` overrides, validated at once; the objects a recipe
builds (model, dataset, device); the shipped-recipe catalog; the generated recipe reference.

Owns turning text into validated configs and configs into objects. May import: mmgen.errors,
mmgen.config, mmgen.plugin, mmgen.model.
"""

from mmgen.recipe.build import build_dataset, build_model, check_fits, class_field_of, resolve_device
from mmgen.recipe.load import apply_overrides, load_recipe, parse_override, read_recipe_file
from mmgen.recipe.validate import validate_recipe

__all__ = [
    "apply_overrides",
    "build_dataset",
    "build_model",
    "check_fits",
    "class_field_of",
    "load_recipe",
    "parse_override",
    "read_recipe_file",
    "resolve_device",
    "validate_recipe",
]

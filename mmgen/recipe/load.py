"""Recipe files: TOML read from disk, ``key.path=value`` overrides applied, then validated at once."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

from mmgen.config import Recipe
from mmgen.errors import RecipeError
from mmgen.recipe.validate import validate_recipe


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
    except RecursionError:
        raise RecipeError(f"override {key.strip()}=...: the value is nested too deeply to read")
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
    except RecursionError:
        raise RecipeError(f"{path}: nested too deeply to read (a recipe needs a few levels of tables)")
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read it: {exc.strerror or exc}")


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read a TOML recipe, apply ``key.path=value`` overrides, validate everything at once."""
    path = Path(path)
    data = apply_overrides(read_recipe_file(path), list(overrides))
    return validate_recipe(data, source=str(path), overrides=list(overrides))

"""Shipped recipes by name: find one (``mmgen train NAME``), copy one (``mmgen recipes cp``), summarize one.

Names come from ``mmgen.plugin.recipes``: a file stem, or ``PLUGIN:STEM`` when two plugins ship
the same stem. Recipes in the current folder are ordinary files, taken by path.
"""

from __future__ import annotations

import os
from pathlib import Path

from mmgen.config import Recipe
from mmgen.errors import MmgenError, RecipeError
from mmgen.plugin.discovery import PluginSet
from mmgen.plugin.recipes import ShippedRecipe, shipped_recipes
from mmgen.plugin.registry import get_registry

LS_HINT = "`mmgen recipes ls` lists the recipes plugins ship"


def find_recipe(name: str, plugins: PluginSet | None = None) -> ShippedRecipe:
    """A shipped recipe by name (``mnist_mvae``, ``mnist_mvae.toml`` or ``PLUGIN:mnist_mvae``)."""
    recipes = shipped_recipes(plugins)
    wanted = name.removesuffix(".toml")
    for recipe in recipes:
        if wanted in (recipe.name, recipe.qualified):
            return recipe
    clashes = [r.qualified for r in recipes if r.stem == wanted]
    if clashes:
        raise RecipeError(f"recipe {wanted!r} is shipped by {len(clashes)} plugins: name one of {', '.join(clashes)}",
                          hint=LS_HINT)
    known = ", ".join(r.name for r in recipes) or "none"
    raise RecipeError(f"no plugin ships a recipe named {wanted!r} (shipped: {known})", hint=LS_HINT)


def recipe_path(recipe: str | Path) -> Path:
    """The file a command-line RECIPE names: an existing path as it is, else a shipped recipe's name.

    Anything that looks like a path (a slash, ``.toml``) stays a path, so a mistyped file name is
    reported as a missing file rather than as an unknown recipe name.
    """
    path = Path(recipe)
    text = str(recipe)
    if path.exists() or "/" in text or os.sep in text or text.endswith(".toml"):
        return path
    return find_recipe(text).path


def copy_recipe(name: str, dest: str | Path, plugins: PluginSet | None = None) -> tuple[ShippedRecipe, Path]:
    """Copy a shipped recipe to ``dest``, a file or a folder (existing, or written with a trailing slash)
    to put ``NAME.toml`` in; ``.toml`` is added to a file name without it. Never overwrites a file."""
    if not str(dest).strip():  # Path("") is the working folder: an empty DEST is a slip, not a choice
        raise MmgenError("DEST is empty: name a file or a folder", hint="for example: mmgen recipes cp NAME my.toml")
    recipe = find_recipe(name, plugins)
    folder = Path(dest).is_dir() or str(dest).endswith(("/", os.sep))
    target = Path(dest) / f"{recipe.stem}.toml" if folder else Path(dest)
    if target.suffix != ".toml":
        target = target.with_name(target.name + ".toml")
    if not target.parent.is_dir():
        raise MmgenError(f"cannot copy to {target}: the folder {target.parent} does not exist")
    _write_new(target, recipe.path.read_text())
    return recipe, target


def _write_new(target: Path, text: str) -> None:
    """Write a file that must not exist yet; a failed write (a folder that cannot be written, a full
    disk) is one line and leaves no partial file."""
    try:
        f = target.open("x")  # "x": fails if the file exists, even when it appears meanwhile
    except FileExistsError:
        raise MmgenError(f"{target} already exists; not overwriting it", hint="choose another DEST or delete that file")
    except OSError as exc:
        raise MmgenError(f"cannot copy to {target}: {exc.strerror or exc}", hint="choose a folder you can write to")
    try:
        with f:
            f.write(text)
    except OSError as exc:
        target.unlink(missing_ok=True)  # ours: made by the open above
        raise MmgenError(f"cannot copy to {target}: {exc.strerror or exc}; nothing was written",
                         hint="free some space, or choose another DEST")


def summarize(recipe: Recipe, model=None) -> list[tuple[str, str]]:
    """``(what, value)`` rows describing a validated recipe (and its built model) for ``recipes validate``."""
    fields = get_registry().datasets[recipe.data.kind].cls.fields
    rows = [("name", recipe.name)]
    if recipe.description:
        rows.append(("description", recipe.description))
    for name, cfg in recipe.modalities.items():
        size = ""
        if model is not None:
            size = f", {sum(p.numel() for p in model.modalities[name].parameters()):,} parameters"
        rows.append((f"modality {name}", f"kind {cfg.kind!r}, λ = {cfg.weight:g}{size}"))
    total = "" if model is None else f", {sum(p.numel() for p in model.parameters()):,} parameters in all"
    fusion = getattr(recipe.model, "fusion", None)  # a family may have no fusion
    how = f", fusion {fusion.kind!r}" if fusion is not None else ""
    rows.append(("model", f"family {recipe.model.kind!r}, latent {recipe.model.latent_dim}{how}{total}"))
    rows.append(("data", f"kind {recipe.data.kind!r}, fields {', '.join(fields)} (not read by validate)"))
    t = recipe.train
    rows.append(("train", f"{t.epochs} epochs, batch {t.batch_size}, lr {t.lr:g}, β over {t.anneal_epochs:g} epochs, "
                 f"device {t.device}"))
    return rows

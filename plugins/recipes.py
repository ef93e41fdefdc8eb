"""Registers the repository's ``recipes/`` folder, so ``mmgen recipes ls`` lists mmgen's own recipes.

The folder sits beside ``plugins/`` in a source checkout, which is what the README's editable
install uses. A wheel carries ``mmgen_plugins`` but not that folder; there this plugin registers
nothing rather than a path that does not exist (docs/writing-plugins.md, "Recipes").
"""

from __future__ import annotations

from pathlib import Path

from mmgen import hookimpl

HERE = Path(__file__).resolve().parent
RECIPES = HERE.parent / "recipes"


def source_checkout() -> bool:
    """True when this module runs from the repository (``plugins/`` beside ``recipes/``), not a wheel."""
    return HERE.name == "plugins" and RECIPES.is_dir()


@hookimpl
def register_recipes(register):
    if source_checkout():
        register(RECIPES)

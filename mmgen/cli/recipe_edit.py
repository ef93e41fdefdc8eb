"""``mmgen recipes cp | validate``: a copy of a shipped recipe to edit, a check of a recipe without training."""

from __future__ import annotations

import typer
from rich.text import Text

from mmgen.cli.app import err_console, out_console, recipes_app, reports_errors
from mmgen.cli.recipe_commands import RECIPES_EPILOG
from mmgen.recipe.build import build_model, check_probe_size
from mmgen.recipe.catalog import copy_recipe, recipe_path, summarize
from mmgen.recipe.load import load_recipe


@recipes_app.command("cp", epilog=RECIPES_EPILOG)
@reports_errors
def recipes_cp(
    name: str = typer.Argument(..., help="A recipe name from `mmgen recipes ls` (PLUGIN:NAME when two share it)."),
    dest: str = typer.Argument(..., help="A new file, or a folder to put NAME.toml in; an existing file is kept."),
) -> None:
    """Copy a shipped recipe to edit; never overwrites a file."""
    recipe, target = copy_recipe(name, dest)
    out_console.print(f"copied {recipe.name} ({recipe.package}) to {target}", highlight=False)
    err_console.print(Text(f"next: edit it, then `mmgen recipes validate {target}` and `mmgen train {target}`",
                           style="dim"), highlight=False)


@recipes_app.command("validate", epilog=RECIPES_EPILOG)
@reports_errors
def recipes_validate(
    recipe: str = typer.Argument(..., help="A TOML recipe file, or the name of a shipped recipe."),
    overrides: list[str] | None = typer.Argument(None, help="key.path=value overrides, e.g. train.epochs=3."),
) -> None:
    """Validate a recipe and build its model, without reading data or training; prints a summary."""
    path = recipe_path(recipe)
    resolved = load_recipe(path, overrides or [])
    model = build_model(resolved)
    check_probe_size(resolved, model)
    out_console.print(Text.assemble(("OK ", "bold green"), str(path)), highlight=False)
    for what, value in summarize(resolved, model):
        out_console.print(f"  {what}: {value}", highlight=False, markup=False, soft_wrap=True)

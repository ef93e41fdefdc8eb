"""``mmgen recipes ls | cp | validate``: the recipes plugins ship, a copy to edit, a check without training."""

from __future__ import annotations

import typer
from rich.table import Column, Table
from rich.text import Text

from mmgen.cli.app import app, err_console, out_console, reports_errors
from mmgen.plugin.recipes import shipped_recipes
from mmgen.recipe.build import build_model
from mmgen.recipe.catalog import copy_recipe, recipe_path, summarize
from mmgen.recipe.load import load_recipe

recipes_app = typer.Typer(
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="List the recipes plugins ship, copy one to edit, validate a recipe without training.",
)
app.add_typer(recipes_app, name="recipes")

RECIPES_EPILOG = """Examples:

  mmgen recipes ls

  mmgen recipes cp mnist_mvae my_mvae.toml

  mmgen recipes validate my_mvae.toml train.epochs=3
"""


@recipes_app.command("ls", epilog=RECIPES_EPILOG)
@reports_errors
def recipes_ls(as_json: bool = typer.Option(False, "--json", help="Print the list as JSON.")) -> None:
    """List the recipes installed plugins ship: name, package (plugin), path, description."""
    rows = [{"name": r.name, "package": r.package, "plugin": r.plugin, "path": str(r.path),
             "description": r.description()} for r in shipped_recipes()]
    if as_json:
        out_console.print_json(data=rows)
        return
    table = Table(Column("name", no_wrap=True), "source", Column("path", overflow="fold"), "description")
    for row in rows:  # Text, not markup: a description may contain [brackets]
        table.add_row(*map(Text, (row["name"], f"{row['package']} ({row['plugin']})", row["path"], row["description"])))
    out_console.print(table)


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
    out_console.print(Text.assemble(("OK ", "bold green"), str(path)), highlight=False)
    for what, value in summarize(resolved, model):
        out_console.print(f"  {what}: {value}", highlight=False, markup=False, soft_wrap=True)

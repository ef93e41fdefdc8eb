"""``mmgen recipes ls``: the recipes plugins ship. ``cp`` and ``validate`` are in mmgen.cli.recipe_edit, which
imports torch; listing does not (it reads the plugin list's cache, mmgen.plugin.report)."""

from __future__ import annotations

import typer
from rich.table import Column, Table
from rich.text import Text

from mmgen.cli.app import out_console, recipes_app, reports_errors
from mmgen.errors import PluginError
from mmgen.plugin.recipes import shipped_recipes
from mmgen.plugin.report import listing

RECIPES_EPILOG = """Examples:

  mmgen recipes ls

  mmgen recipes cp mnist_mvae my_mvae.toml

  mmgen recipes validate my_mvae.toml train.epochs=3
"""


@recipes_app.command("ls", epilog=RECIPES_EPILOG)
@reports_errors
def recipes_ls(as_json: bool = typer.Option(False, "--json", help="Print the list as JSON.")) -> None:
    """List the recipes installed plugins ship: name, package (plugin), path, description."""
    try:
        recipes = listing().recipes
    except PluginError:  # two plugins register one kind (`mmgen plugins` says which): the recipes still list
        recipes = shipped_recipes()
    rows = [{"name": r.name, "package": r.package, "plugin": r.plugin, "path": str(r.path),
             "description": r.description()} for r in recipes]
    if as_json:
        out_console.print_json(data=rows)
        return
    table = Table(Column("name", no_wrap=True), "source", Column("path", overflow="fold"), "description")
    for row in rows:  # Text, not markup: a description may contain [brackets]
        table.add_row(*map(Text, (row["name"], f"{row['package']} ({row['plugin']})", row["path"], row["description"])))
    out_console.print(table)

"""``mmgen plugins`` (what is installed) and ``mmgen new-plugin`` (a working plugin package to edit)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from mmgen.cli.app import app, err_console, out_console, reports_errors
from mmgen.errors import MmgenError
from mmgen.plugin.report import listing
from mmgen.plugin.scaffold import new_plugin as scaffold

PLUGINS_EPILOG = """Examples:

  mmgen plugins

  mmgen plugins --json

  MMGEN_PLUGINS=mmgen mmgen plugins            # load only mmgen's own plugins

  MMGEN_PLUGINS_BLOCK=text mmgen plugins       # load all but the entry point (or package) named text
"""


@app.command(epilog=PLUGINS_EPILOG)
@reports_errors
def plugins(as_json: bool = typer.Option(False, "--json", help="Print the list as JSON.")) -> None:
    """List the plugins: package, version, and what each registers (or why it did not load)."""
    rows = listing().rows
    if as_json:
        out_console.print_json(data=[row.to_dict() for row in rows])
        return
    table = Table("plugin", "package", "version", "registers")
    for row in rows:
        what = Text(", ".join(f"{category} {kind!r}" for category, kinds in row.registers.items()
                              if category != "recipe" for kind in kinds))
        if row.registers.get("recipe"):
            what.append(("; " if what else "") + "recipes: " + ", ".join(row.registers["recipe"]))
        if row.status != "loaded":
            what.append(("; " if what else "") + f"{row.status}: {row.reason}",
                        style="red" if row.status == "failed" else "dim")
        table.add_row(Text(row.plugin), Text(row.package), Text(row.version), what or Text("nothing", style="dim"))
    out_console.print(table)


NEW_PLUGIN_EPILOG = """Examples:

  mmgen new-plugin wave

  mmgen new-plugin eeg_signal --dir ~/src

  mmgen new-plugin jmvae --model               # a model family instead of a modality

Then: cd mmgen-wave && python3 -m pip install -e ".\\[dev]" && python3 -m pytest -q && mmgen plugins
"""


@app.command("new-plugin", epilog=NEW_PLUGIN_EPILOG)
@reports_errors
def new_plugin(
    name: str = typer.Argument(..., help="Plugin name: lowercase words joined by _ or - (the kind it registers)."),
    dest: str = typer.Option(".", "--dir", "-d", metavar="<path>", help="Folder to create mmgen-NAME in."),
    model: bool = typer.Option(False, "--model", help="Scaffold a model family instead of a modality."),
) -> None:
    """Write a working plugin package: a modality or (--model) a model family, a toy dataset, a recipe, tests."""
    if not dest.strip():  # Path("") is the working folder: an empty --dir is a slip, not a choice
        raise MmgenError("--dir is empty: name a folder", hint="leave --dir out to write into the working folder")
    names, target = scaffold(name, Path(dest), model=model)
    what = "model family" if model else "modality"
    out_console.print(str(target), highlight=False)
    err_console.print(Text(
        f"wrote plugin {names.dist}: {what} {names.kind!r}, dataset {names.dataset!r}, recipe {names.recipe!r}. "
        f'Next: cd {target} && python3 -m pip install -e ".[dev]" && python3 -m pytest -q && mmgen plugins',
        style="dim",
    ), highlight=False)

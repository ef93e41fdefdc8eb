"""The ``mmgen`` command line: thin typer commands over the library.

Progress goes to stderr, results to stdout. A library error becomes one red line on stderr and
exit code 1; MMGEN_DEBUG=1 shows the traceback instead.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Column, Table
from rich.text import Text

from mmgen.errors import GivenError, MmgenError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="mmgen: train, sample and inspect multimodal generative models (MVAE) built from plugins.",
)
out_console = Console()
err_console = Console(stderr=True)

def reports_errors(command):
    """Library errors become one line on stderr and exit 1, also under typer's CliRunner."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except MmgenError as exc:
            if _debug():
                raise
            _fail(f"{exc}" + (f" (hint: {exc.hint})" if exc.hint else ""))
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:  # a bug, not bad input: still one line unless debugging
            if _debug():
                raise
            _fail(f"internal error: {exc.__class__.__name__}: {exc} (set MMGEN_DEBUG=1 for the traceback)")

    return wrapper


def _debug() -> bool:
    return os.environ.get("MMGEN_DEBUG", "") not in ("", "0")


def _fail(message: str, code: int = 1) -> None:
    err_console.print(Text.assemble(("error: ", "bold red"), message.replace("\n", " ")), soft_wrap=True)
    raise typer.Exit(code)


TRAIN_EPILOG = """Examples:

  mmgen train recipes/mnist_mvae.toml

  mmgen train recipes/mnist_mvae.toml train.epochs=3 --out runs/quick

  mmgen train mnist_mvae_crossmodal          (a shipped recipe, by name: mmgen recipes ls)

  mmgen train runs/quick --resume train.epochs=10
"""


@app.command(epilog=TRAIN_EPILOG)
@reports_errors
def train(
    recipe: str = typer.Argument(
        ..., help="A TOML recipe (recipes/mnist_mvae.toml), a shipped recipe's name, or a run directory."
    ),
    overrides: list[str] | None = typer.Argument(None, help="key.path=value overrides, e.g. train.epochs=3."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Run directory [default: runs/<name>-<time>]."),
    device: str | None = typer.Option(None, "--device", help="auto, cpu, cuda or mps [default: the recipe's]."),
    resume: bool = typer.Option(False, "--resume", help="Continue a run: RECIPE is its directory, or --out names it."),
) -> None:
    """Train the model a recipe describes, validating every epoch, into a run directory."""
    from mmgen.progress import RichProgress
    from mmgen.recipe_catalog import recipe_path
    from mmgen.trainer import train_recipe

    # --resume without --out: RECIPE is the run directory; otherwise a file or a shipped recipe's name.
    source = Path(recipe) if resume and out is None else recipe_path(recipe)
    if resume and out is None and not source.is_dir():
        raise MmgenError("--resume needs the run directory: `mmgen train RUN_DIR --resume` or --out RUN_DIR")
    with RichProgress(err_console) as progress:
        run_dir = train_recipe(source, overrides or [], out, device, resume, progress.on_step, progress.on_epoch)
    out_console.print(str(run_dir))


SAMPLE_EPILOG = """Examples:

  mmgen sample --given label=3 --out threes.png

  mmgen sample runs/mnist_mvae-20261125-120000 --given image=digit.png

  mmgen sample -n 100 --out samples.npy --seed 1
"""


@app.command(epilog=SAMPLE_EPILOG)
@reports_errors
def sample(
    run_dir: Path | None = typer.Argument(None, help="A run directory [default: the newest under runs/]."),
    given: list[str] | None = typer.Option(None, "--given", "-g", help="MOD=VALUE, e.g. label=3 or image=x.png."),
    n: int = typer.Option(64, "-n", min=1, help="Number of samples."),
    out: Path | None = typer.Option(None, "--out", "-o", help="x.png (image grid) or x.npy (decoded means)."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed for reproducible samples."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or mps."),
    which: str = typer.Option("best", "--weights", help="best (by validation) or last."),
) -> None:
    """Draw z from q(z | given) (or p(z)), decode it, and write or print the result."""
    from mmgen.sample_output import sample_and_write

    pairs = {}
    for item in given or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise GivenError(f"--given {item!r} is not of the form MOD=VALUE (for example label=3)")
        pairs[name.strip()] = value
    for line in sample_and_write(run_dir, pairs, n, out, seed, device, which):
        out_console.print(line, highlight=False, markup=False, soft_wrap=True)


EVAL_EPILOG = """Examples:

  mmgen eval runs/quick

  mmgen eval runs/quick --split val -K 100 --json

  mmgen eval runs/quick --proposal image     # every estimate with q(z|image), as the paper's Table 2
"""


@app.command(name="eval", epilog=EVAL_EPILOG)
@reports_errors
def eval_(
    run_dir: Path | None = typer.Argument(None, help="A run directory [default: the newest under runs/]."),
    split: str = typer.Option("test", "--split", help="test or val."),
    K: int = typer.Option(1000, "-K", min=1, help="Importance samples per example."),
    proposal: list[str] | None = typer.Option(
        None, "--proposal", help="Use q(z|these) for every estimate (repeatable) [default: the modalities scored]."
    ),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Evaluate only the first N examples."),
    per_class: int = typer.Option(100, "--per-class", min=1, help="Samples per class for coherence."),
    as_json: bool = typer.Option(False, "--json", help="Print eval.json to stdout instead of a table."),
    pictures: bool = typer.Option(True, "--pictures/--no-pictures", help="Write the PNG pictures."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or mps."),
    which: str = typer.Option("best", "--weights", help="best (by validation) or last."),
) -> None:
    """Honest IWAE likelihoods, cross-modal accuracy and coherence, and pictures; writes eval.json."""
    import json

    from mmgen.checkpoint import atomic_write_text
    from mmgen.evaluate import evaluate, write_pictures
    from mmgen.run import Run

    run = Run.load(run_dir, device=device, which=which)
    say = (lambda msg: None) if as_json else (lambda msg: err_console.print(f"[dim]{msg}[/]"))
    report = evaluate(run, split=split, K=K, proposal=proposal, per_class=per_class, limit=limit, on_stage=say)
    if pictures:
        say("pictures")
        report["pictures"] = [str(p) for p in write_pictures(run, split=split)]
    path = run.run.path / "eval.json"
    atomic_write_text(path, json.dumps(report, indent=2) + "\n")
    if as_json:
        out_console.print_json(data=report)
        return
    table = Table("quantity", "value", "± s.e.", "how", title=f"{run.run.path} (epoch {run.epoch}), {split} split")
    for key, value in report.items():
        if isinstance(value, dict) and "value" in value:
            stderr = "" if value["stderr"] is None else f"{value['stderr']:.2f}"
            shown = "n/a" if value["value"] is None else f"{value['value']:.2f}"
            table.add_row(key, shown, stderr, f"{value['proposal']}, K={K}, n={value['n']}")
        elif isinstance(value, float) and not key.startswith("seconds"):
            table.add_row(key, f"{value:.4f}", "", "")
        elif value is None and not key.startswith("seconds"):
            table.add_row(key, "n/a", "", "no example has the source modality")
    out_console.print(table)
    for name, note in report["conventions"].items():
        out_console.print(f"{name}: {note}", highlight=False)
    out_console.print(f"{report['examples']} examples in {report['seconds total']:.0f} s "
                      f"(likelihoods {report['seconds likelihood']:.0f} s); wrote {path}", highlight=False)


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
    from mmgen.plugin_report import plugin_rows

    rows = plugin_rows()
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
    from mmgen.recipe_catalog import shipped_recipes

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
    from mmgen.recipe_catalog import copy_recipe

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
    from mmgen.build import build_model
    from mmgen.recipe import load_recipe
    from mmgen.recipe_catalog import recipe_path, summarize

    path = recipe_path(recipe)
    resolved = load_recipe(path, overrides or [])
    model = build_model(resolved)
    out_console.print(Text.assemble(("OK ", "bold green"), str(path)), highlight=False)
    for what, value in summarize(resolved, model):
        out_console.print(f"  {what}: {value}", highlight=False, markup=False, soft_wrap=True)


NEW_PLUGIN_EPILOG = """Examples:

  mmgen new-plugin wave

  mmgen new-plugin eeg_signal --dir ~/src

Then: cd mmgen-wave && python3 -m pip install -e ".[dev]" && python3 -m pytest -q && mmgen plugins
"""


@app.command("new-plugin", epilog=NEW_PLUGIN_EPILOG)
@reports_errors
def new_plugin(
    name: str = typer.Argument(..., help="Plugin name: lowercase words joined by _ or - (the modality kind)."),
    dest: Path = typer.Option(Path("."), "--dir", "-d", help="Folder to create mmgen-NAME in."),
) -> None:
    """Write a working plugin package: a modality, a toy dataset, a recipe, tests, README."""
    from mmgen.scaffold import new_plugin as scaffold

    names, target = scaffold(name, dest)
    out_console.print(str(target), highlight=False)
    err_console.print(Text(
        f"wrote plugin {names.dist}: modality {names.kind!r}, dataset {names.dataset!r}, recipe {names.recipe!r}. "
        f'Next: cd {target} && python3 -m pip install -e ".[dev]" && python3 -m pytest -q && mmgen plugins',
        style="dim",
    ), highlight=False)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        err_console.print(Text.assemble(("error: ", "bold red"), "interrupted"))
        sys.exit(130)

"""``mmgen train``: a recipe (file, shipped name, or the recipe.json of a run directory, an export or a Hub
model) into a run directory."""

from __future__ import annotations

from pathlib import Path

import typer

from mmgen.cli.app import app, err_console, out_console, reports_errors
from mmgen.cli.progress import RichProgress
from mmgen.errors import MmgenError
from mmgen.recipe.catalog import recipe_path
from mmgen.recipe.load import load_recipe
from mmgen.run.directory import RunDir
from mmgen.run.exported import is_export
from mmgen.run.hub import local_folder, parse_reference
from mmgen.train.distributed import Distributed
from mmgen.train.session import train_recipe

TRAIN_EPILOG = """Examples:

  mmgen train recipes/mnist_mvae.toml

  mmgen train recipes/mnist_mvae.toml train.epochs=3 --out runs/quick

  mmgen train mnist_mvae_crossmodal          (a shipped recipe, by name: mmgen recipes ls)

  mmgen train runs/quick --resume train.epochs=10

  mmgen train exports/mnist_best --out runs/again    (an export's recipe.json; or hf://ORG/NAME, downloaded first)

Data: the recipe's data.root, else $MMGEN_DATA_ROOT, else ~/.cache/mmgen/data; a data set that is not there \
is downloaded there (unless the recipe sets data.download = false).
"""


@app.command(epilog=TRAIN_EPILOG)
@reports_errors
def train(
    recipe: str = typer.Argument(
        ..., help="A TOML recipe (recipes/mnist_mvae.toml), a shipped recipe's name, or the recipe.json of a run "
        "directory, an export or hf://ORG/NAME\\[@REVISION]."
    ),
    overrides: list[str] | None = typer.Argument(None, help="key.path=value overrides, e.g. train.epochs=3."),
    out_text: str | None = typer.Option(None, "--out", "-o", metavar="<path>",
                                        help="Run directory \\[default: runs/<name>-<time>]."),
    device: str | None = typer.Option(None, "--device", help="auto, cpu, cuda or mps \\[default: the recipe's]."),
    resume: bool = typer.Option(False, "--resume", help="Continue a run: RECIPE is its directory, or --out names it."),
    from_weights: bool = typer.Option(False, "--from-weights", help="With --resume, when the resume file is lost: "
                                      "go on from the last finished epoch's weights with a fresh optimizer state."),
) -> None:
    """Train the model a recipe describes, validating every epoch, into a run directory."""
    out = run_dir_option(out_text)
    source = recipe_source(recipe, resume, out)
    if resume and is_export(RunDir(out or source)):  # its files stay as exported
        refuse_resuming_an_export(str(out_text or recipe))
    if resume and out is None and not source.is_dir():
        raise MmgenError("--resume needs the run directory: `mmgen train RUN_DIR --resume` or --out RUN_DIR")
    out = out or planned_run_dir(source, overrides or [], resume)
    main = Distributed.from_env().main  # read once: a second look-up of MASTER_ADDR could fail after training
    with RichProgress(err_console) as progress:
        if out is not None and main:
            progress.run_directory(out)  # the first line: where to look, and what to --resume
        run_dir = train_recipe(source, overrides or [], out, device, resume, progress.on_step, progress.on_epoch,
                               say=progress.say, from_weights=from_weights)
    if main:
        out_console.print(str(run_dir))


def recipe_source(recipe: str, resume: bool, out: Path | None) -> Path:
    """What RECIPE names: with --resume and no --out, the run directory; otherwise a file, a shipped recipe's
    name, a folder with a recipe.json, or a Hub model's export (downloaded into the Hub's cache)."""
    if parse_reference(recipe) is not None:
        if resume and out is None:  # an export: refused before it is downloaded
            refuse_resuming_an_export(recipe)
        return local_folder(recipe)
    return Path(recipe) if resume and out is None else recipe_path(recipe)


def refuse_resuming_an_export(name: str) -> None:
    raise MmgenError(f"{name} is an export, not a run to resume",
                     hint=f"train its recipe into a new run: mmgen train {name} --out NEW_RUN")


def run_dir_option(text: str | None) -> Path | None:
    """--out as a path, refused when it cannot be a run directory: empty (which would be the working
    folder), a file, or a path through a file."""
    if text is None:
        return None
    if not text.strip():
        raise MmgenError("--out is empty: name the run directory", hint="for example --out runs/quick")
    out = Path(text)
    try:
        existing = next(p for p in (out, *out.parents) if p.exists())
    except (OSError, StopIteration):  # not allowed to look: making the directory will say why
        return out
    if not existing.is_dir():
        raise MmgenError(f"--out {text} is a file, not a run directory" if existing == out else
                         f"--out {text}: {existing} is a file, not a folder",
                         hint="name a new folder, or an existing run with --resume")
    return out


def planned_run_dir(source: Path, overrides: list[str], resume: bool) -> Path | None:
    """The run directory ``train_recipe`` will write when no --out is given: the run itself for a run
    directory, else ``runs/<name>-<time>`` (for an export too: its files stay as exported); None for a recipe
    that does not load (``train_recipe`` says why)."""
    exported = source.is_dir() and is_export(RunDir(source))
    if resume or (source.is_dir() and not exported):
        return source
    try:
        recipe = RunDir.open(source).recipe(overrides) if exported else load_recipe(source, overrides)
    except MmgenError:
        return None
    return RunDir.default_path(recipe.name)

"""``mmgen train``: a recipe (file, shipped name or run directory) into a run directory."""

from __future__ import annotations

from pathlib import Path

import typer

from mmgen.cli.app import app, err_console, out_console, reports_errors
from mmgen.cli.progress import RichProgress
from mmgen.errors import MmgenError
from mmgen.recipe.catalog import recipe_path
from mmgen.train.distributed import Distributed
from mmgen.train.session import train_recipe

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
    # --resume without --out: RECIPE is the run directory; otherwise a file or a shipped recipe's name.
    source = Path(recipe) if resume and out is None else recipe_path(recipe)
    if resume and out is None and not source.is_dir():
        raise MmgenError("--resume needs the run directory: `mmgen train RUN_DIR --resume` or --out RUN_DIR")
    with RichProgress(err_console) as progress:
        run_dir = train_recipe(source, overrides or [], out, device, resume, progress.on_step, progress.on_epoch,
                               say=progress.say)
    if Distributed.from_env().main:
        out_console.print(str(run_dir))

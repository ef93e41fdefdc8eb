"""``mmgen export`` and ``mmgen push``: a run into a folder another machine loads, and that folder to the
Hugging Face Hub."""

from __future__ import annotations

from pathlib import Path

import typer

from mmgen.cli.app import app, out_console, reports_errors
from mmgen.share.export import export_run
from mmgen.share.push import push as push_to_hub

EXPORT_EPILOG = """Examples:

  mmgen export runs/mnist_best-20261125-120000 exports/mnist_best

  mmgen export runs/quick exports/quick --weights last

Then, on any machine with mmgen and the plugins the card lists: mmgen sample exports/mnist_best --given label=3, \
mmgen eval exports/mnist_best, or mmgen.load_run("exports/mnist_best") in Python.

DEST holds the weights (safetensors), recipe.json, versions.json, export.json (the plugins it needs, the \
weights' SHA-256 and the recipe's model and modalities, checked when it loads), eval.json when the run has one, \
samples.png and a model card, README.md, in the Hugging Face Hub's format. Nothing in it is pickled. DEST may be \
an empty folder, the working folder too: it is filled in place.
"""

PUSH_EPILOG = """Examples:

  mmgen push exports/mnist_best my-lab/mnist-mvae

  mmgen push runs/quick my-lab/mnist-quick --private     # a run is exported on the way

Then anyone loads it with mmgen sample hf://my-lab/mnist-mvae --given label=3, mmgen eval hf://my-lab/mnist-mvae, \
or mmgen.load_run("hf://my-lab/mnist-mvae"); add @REVISION for a branch, tag or commit.

Needs the hub extra (pip install 'mmgen\\[hub]') and a Hugging Face token that may write to REPO_ID \
(hf auth login, or HF_TOKEN).
"""

RUN_HELP = "A run directory, an export, or hf://ORG/NAME\\[@REVISION]"  # \\[: not rich markup


@app.command(epilog=EXPORT_EPILOG)
@reports_errors
def export(
    run_dir: str = typer.Argument(..., metavar="RUN", help=f"{RUN_HELP}."),
    dest: Path = typer.Argument(..., metavar="DEST", help="A new (or empty) folder to write the export into."),
    which: str = typer.Option("best", "--weights", help="best (by validation) or last."),
    repo_id: str | None = typer.Option(None, "--repo-id", help="The Hub model (ORG/NAME) the card's commands name "
                                       "\\[default: THIS_FOLDER]."),
    device: str = typer.Option("cpu", "--device", help="Where the sample grid is drawn: auto, cpu, cuda or mps."),
) -> None:
    """Write a run as a self-contained folder: weights, recipe, versions, eval.json, samples and a model card."""
    out_console.print(str(export_run(run_dir, dest, which=which, device=device, repo_id=repo_id)), highlight=False)


@app.command(epilog=PUSH_EPILOG)
@reports_errors
def push(
    run_dir: str = typer.Argument(..., metavar="RUN_OR_EXPORT", help=f"{RUN_HELP}; a run is exported on the way."),
    repo_id: str = typer.Argument(..., metavar="REPO_ID", help="The Hub model repository, ORG/NAME (made if new)."),
    private: bool = typer.Option(False, "--private", help="Make a new repository private."),
    which: str = typer.Option("best", "--weights", help="Which weights a run is exported with: best or last."),
    message: str | None = typer.Option(None, "--message", "-m", help="The commit message on the Hub."),
    device: str = typer.Option("cpu", "--device", help="Where an export's checks and sample grid run."),
) -> None:
    """Upload an export (a run is exported first) to a model repository on the Hugging Face Hub."""
    url = push_to_hub(run_dir, repo_id, private=private, which=which, device=device, message=message)
    out_console.print(f"pushed to {repo_id}: {url}", highlight=False, soft_wrap=True)

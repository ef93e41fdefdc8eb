"""``mmgen sample``: decode samples, then write a PNG grid or .npy arrays and describe the rest."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import typer
from torchvision.utils import save_image

from mmgen.cli.app import app, out_console, reports_errors
from mmgen.errors import GivenError, MmgenError
from mmgen.run.loaded import Run


def output_paths(out: Path, names: list[str]) -> dict[str, Path]:
    """One file per modality: the first gets ``out`` itself, the others ``<stem>.<name><suffix>`` beside it."""
    return {n: out if i == 0 else out.with_name(f"{out.stem}.{n}{out.suffix}") for i, n in enumerate(names)}


def write_file(path: Path, write: Callable[[Path], None]) -> None:
    """``write(path)`` after making its folder; an unwritable place is one line naming it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(path)
    except OSError as exc:
        raise MmgenError(f"--out {path}: cannot write it: {exc.strerror or exc}", hint="choose a writable file name")


def sample_and_write(run_dir: Path | None, given: dict[str, str], n: int, out: Path | None,
                     seed: int | None, device: str, which: str) -> list[str]:
    """Returns the lines to print: a description per modality and the paths written."""
    if out is not None and out.suffix not in (".png", ".npy"):
        raise MmgenError(f"--out {out}: use a .png (image grid) or .npy (decoded means) file name")
    run = Run.load(run_dir, device=device, which=which)
    decoded = run.sample(n, given, seed=seed)  # {name: means (n, *event)} on the device
    decoded = {k: v.float().cpu() for k, v in decoded.items()}
    what = "p(z)" if not given else f"q(z | {', '.join(f'{k}={v}' for k, v in given.items())})"
    lines = [f"{n} samples from {what}, run {run.run_dir.path} (epoch {run.epoch})"]
    for name, mean in decoded.items():
        text = run.model.modalities[name].describe(mean)
        if text:
            lines.append(text)

    if out is not None and out.suffix == ".npy":
        # Modalities that render as images come first, so `x.npy` holds the images when there are any.
        order = sorted(decoded, key=lambda k: run.model.modalities[k].to_image(decoded[k][:1]) is None)
        for name, path in output_paths(out, order).items():
            write_file(path, lambda p, x=decoded[name].numpy(): np.save(p, x))
            lines.append(f"wrote {path} {tuple(decoded[name].shape)}")
        return lines

    images = {k: img for k, v in decoded.items() if (img := run.model.modalities[k].to_image(v)) is not None}
    if not images:
        if out is not None:
            raise MmgenError(f"--out {out}: nothing decoded here renders as an image; use a .npy file")
        return lines
    if out is None:
        tag = re.sub(r"[^A-Za-z0-9._-]", "_", "-".join(f"{k}{v}" for k, v in given.items() if len(v) < 16)) or "prior"
        out = run.run_dir.path / f"samples-{tag}-{time.strftime('%Y%m%d-%H%M%S')}.png"
    for name, path in output_paths(out, list(images)).items():
        grid = images[name].clamp(0, 1)
        write_file(path, lambda p, g=grid: save_image(g, p, nrow=max(1, math.ceil(math.sqrt(n))), padding=2))
        lines.append(f"wrote {path}")
    return lines


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
    pairs = {}
    for item in given or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise GivenError(f"--given {item!r} is not of the form MOD=VALUE (for example label=3)")
        pairs[name.strip()] = value
    for line in sample_and_write(run_dir, pairs, n, out, seed, device, which):
        out_console.print(line, highlight=False, markup=False, soft_wrap=True)

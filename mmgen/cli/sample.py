"""``mmgen sample``: decode samples, then write a PNG grid or .npy arrays and describe the rest."""

from __future__ import annotations

import io
import re
import time
from pathlib import Path

import numpy as np
import typer

from mmgen.cli.app import app, err_console, out_console, reports_errors
from mmgen.cli.progress import plural
from mmgen.config.recipe import SEEDS
from mmgen.errors import GivenError, MmgenError
from mmgen.eval.pictures import sample_grid_png
from mmgen.recipe.memory import refuse_if_too_big
from mmgen.run.loaded import Run
from mmgen.run.posthoc import PRIOR, SAMPLERS, sample_latents
from mmgen.storage.atomic import atomic_write_many, no_space


def output_paths(out: Path, names: list[str]) -> dict[str, Path]:
    """One file per modality: the first gets ``out`` itself, the others ``<stem>.<name><suffix>`` beside it."""
    return {n: out if i == 0 else out.with_name(f"{out.stem}.{n}{out.suffix}") for i, n in enumerate(names)}


def write_files(payloads: dict[Path, bytes]) -> None:
    """Every file or none, each written atomically (a temporary file, fsynced, renamed) after making its
    folder: an unwritable place or a full disk is one line naming the file, and leaves no partial file."""
    try:
        for path in payloads:
            path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_many(payloads)
    except OSError as exc:
        path = next((p for p in payloads if str(p) == exc.filename), next(iter(payloads)))
        if no_space(exc):
            raise MmgenError(f"--out {path}: cannot write it: {exc.strerror}; nothing was written",
                             hint="free some space, or choose another --out") from exc
        raise MmgenError(f"--out {path}: cannot write it: {exc.strerror or exc}", hint="choose a writable file name")


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def sample_and_write(run_dir: Path | None, given: dict[str, str], n: int, out: Path | None,
                     seed: int | None, device: str, which: str, sampler: str = PRIOR) -> list[str]:
    """Returns the lines to print: a description per modality and the paths written."""
    if out is not None and out.suffix not in (".png", ".npy"):
        raise MmgenError(f"--out {out}: use a .png (image grid) or .npy (decoded means) file name")
    run = Run.load(run_dir, device=device, which=which)
    if sampler == PRIOR:
        decoded = run.sample(n, given, seed=seed)  # {name: means (n, *event)} on the device
    else:  # a post-hoc sampler's latents (n, L), decoded to every modality
        refuse_if_too_big(f"{n:,} samples", n * run.bytes_per_sample(), run.device, hint="ask for fewer samples (-n)")
        decoded = run.decode(sample_latents(run, n, sampler, seed=seed, on_stage=say_quietly))
    decoded = {k: v.float().cpu() for k, v in decoded.items()}
    what = (f"q(z | {', '.join(f'{k}={v}' for k, v in given.items())})" if given else
            "p(z)" if sampler == PRIOR else f"the {sampler} sampler fitted to the training split's posterior means")
    lines = [f"{plural(n, 'sample')} from {what}, run {run.run_dir.path} (epoch {run.epoch})"]
    for name, mean in decoded.items():
        text = run.model.modalities[name].describe(mean)
        if text:
            lines.append(text)

    if out is not None and out.suffix == ".npy":
        # Modalities that render as images come first, so `x.npy` holds the images when there are any.
        order = sorted(decoded, key=lambda k: run.model.modalities[k].to_image(decoded[k][:1]) is None)
        paths = output_paths(out, order)
        write_files({path: npy_bytes(decoded[name].numpy()) for name, path in paths.items()})
        return lines + [f"wrote {path} {tuple(decoded[name].shape)}" for name, path in paths.items()]

    images = {k: img for k, v in decoded.items() if (img := run.model.modalities[k].to_image(v)) is not None}
    if not images:
        if out is not None:
            raise MmgenError(f"--out {out}: nothing decoded here renders as an image; use a .npy file")
        return lines
    if out is None:
        tag = re.sub(r"[^A-Za-z0-9._-]", "_", "-".join(f"{k}{v}" for k, v in given.items() if len(v) < 16)) or "prior"
        out = run.outputs / f"samples-{tag}-{time.strftime('%Y%m%d-%H%M%S')}.png"  # a Hub model's: here
    paths = output_paths(out, list(images))
    # Captioned grids: what was given, each row's given label, given images framed (mmgen.eval.pictures).
    write_files({path: sample_grid_png(run, name, images[name], given) for name, path in paths.items()})
    return lines + [f"wrote {path}" for path in paths.values()]


def check_sampler(sampler: str, given: dict[str, str]) -> None:
    """--sampler is prior or a post-hoc kind, and a post-hoc sampler draws unconditional samples only."""
    if sampler != PRIOR and sampler not in SAMPLERS:
        raise MmgenError(f"--sampler {sampler!r}: choose one of {', '.join([PRIOR, *SAMPLERS])}")
    if sampler != PRIOR and given:
        raise GivenError(f"--sampler {sampler} draws z without conditioning: leave out --given, or use "
                         "--sampler prior (the default) with it")


def say_quietly(line: str) -> None:
    """A post-hoc sampler's fitting stages, on stderr (stdout holds the samples' description)."""
    err_console.print(line, style="dim", highlight=False)


def check_seed(seed: int | None) -> None:
    """--seed takes what a recipe's ``seed`` takes: torch's generators hold 64 bits."""
    if seed is not None and not 0 <= seed < SEEDS:
        raise MmgenError(f"--seed {seed}: a seed is a whole number from 0 to 2**63 - 1")


def parse_given(items: list[str], extra: list[str], run_dir: Path | None) -> dict[str, str]:
    """``--given MOD=VALUE`` items -> {MOD: VALUE}. ``extra``: the words typer found no place for. A
    ``--given label 3`` leaves its 3 there, or in RUN when no run was named: the error shows ``label=3``."""
    words = list(extra)
    if run_dir is not None and not run_dir.is_dir():  # a path-like RUN is likelier a mistyped run than the value
        words = [*words, str(run_dir)] if "/" in str(run_dir) else [str(run_dir), *words]
    meant = next((w for w in words if not Path(w).is_dir()), None)
    pairs = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep and name.strip() and meant is not None:
            raise GivenError(f"--given {item} {meant}: write it as --given {item.strip()}={meant} "
                             "(MOD=VALUE, one word)")
        if not sep or not name.strip():
            raise GivenError(f"--given {item!r} is not of the form MOD=VALUE (for example label=3)")
        pairs[name.strip()] = value
    if extra:
        raise MmgenError(f"unexpected argument {extra[0]!r}: mmgen sample takes one RUN directory",
                         hint="`mmgen sample --help` shows its options")
    return pairs


SAMPLE_EPILOG = """Examples:

  mmgen sample --given label=3 --out threes.png

  mmgen sample runs/mnist_mvae-20261125-120000 --given image=digit.png

  mmgen sample -n 100 --out samples.npy --seed 1

  mmgen sample --sampler gmm --out unconditional.png   (z from a Gaussian mixture fitted to the posterior means)

RUN defaults to the newest run under runs/. Without --out, what renders as an image is drawn as a PNG grid \
in RUN (samples-GIVEN-TIME.png), and the rest is described on the screen.

RUN may also be an export (mmgen export) or hf://ORG/NAME\\[@REVISION] on the Hugging Face Hub, whose grid goes \
into the working folder.
"""


@app.command(epilog=SAMPLE_EPILOG, context_settings={"allow_extra_args": True})  # extra words: see parse_given
@reports_errors
def sample(
    ctx: typer.Context,
    run_dir: Path | None = typer.Argument(None, metavar="RUN", help="A run directory, an export, or "
                                          "hf://ORG/NAME\\[@REVISION] \\[default: the newest under runs/]."),
    given: list[str] | None = typer.Option(None, "--given", "-g", help="MOD=VALUE, e.g. label=3 or image=x.png."),
    n: int = typer.Option(64, "-n", min=1, help="Number of samples."),
    out: Path | None = typer.Option(None, "--out", "-o", help="x.png (image grid) or x.npy (decoded means) "
                                     "\\[default: a PNG grid in RUN, samples-GIVEN-TIME.png]."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed for reproducible samples."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or mps."),
    which: str = typer.Option("best", "--weights", help="best (by validation) or last."),
    sampler: str = typer.Option("prior", "--sampler", help="Where z comes from without --given: prior (p(z)) "
                                "or gmm (a Gaussian mixture fitted to the training split's posterior means; "
                                "fitted once, then cached beside the run's outputs)."),
) -> None:
    """Draw z from q(z | given) (or p(z), or a post-hoc sampler), decode it, and write or print the result."""
    check_seed(seed)
    pairs = parse_given(given or [], ctx.args, run_dir)
    check_sampler(sampler, pairs)
    for line in sample_and_write(run_dir, pairs, n, out, seed, device, which, sampler):
        out_console.print(line, highlight=False, markup=False, soft_wrap=True)

"""``mmgen sample``: decode samples, then write a PNG grid or .npy arrays and describe the rest."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
from torchvision.utils import save_image

from mmgen.errors import MmgenError
from mmgen.run import Run


def output_paths(out: Path, names: list[str]) -> dict[str, Path]:
    """One file per modality: the first gets ``out`` itself, the others ``<stem>.<name><suffix>`` beside it."""
    return {n: out if i == 0 else out.with_name(f"{out.stem}.{n}{out.suffix}") for i, n in enumerate(names)}


def sample_and_write(run_dir: Path | None, given: dict[str, str], n: int, out: Path | None,
                     seed: int | None, device: str, which: str) -> list[str]:
    """Returns the lines to print: a description per modality and the paths written."""
    if out is not None and out.suffix not in (".png", ".npy"):
        raise MmgenError(f"--out {out}: use a .png (image grid) or .npy (decoded means) file name")
    run = Run.load(run_dir, device=device, which=which)
    decoded = run.sample(n, given, seed=seed)  # {name: means (n, *event)} on the device
    decoded = {k: v.float().cpu() for k, v in decoded.items()}
    what = "p(z)" if not given else f"q(z | {', '.join(f'{k}={v}' for k, v in given.items())})"
    lines = [f"{n} samples from {what}, run {run.run.path} (epoch {run.epoch})"]
    for name, mean in decoded.items():
        text = run.model.modalities[name].describe(mean)
        if text:
            lines.append(text)

    if out is not None and out.suffix == ".npy":
        # Modalities that render as images come first, so `x.npy` holds the images when there are any.
        order = sorted(decoded, key=lambda k: run.model.modalities[k].to_image(decoded[k][:1]) is None)
        for name, path in output_paths(out, order).items():
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, decoded[name].numpy())
            lines.append(f"wrote {path} {tuple(decoded[name].shape)}")
        return lines

    images = {k: img for k, v in decoded.items() if (img := run.model.modalities[k].to_image(v)) is not None}
    if not images:
        if out is not None:
            raise MmgenError(f"--out {out}: nothing decoded here renders as an image; use a .npy file")
        return lines
    if out is None:
        tag = "-".join(f"{k}{v}" for k, v in given.items() if len(v) < 16) or "prior"
        out = run.run.path / f"samples-{tag}-{time.strftime('%Y%m%d-%H%M%S')}.png"
    for name, path in output_paths(out, list(images)).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image(images[name].clamp(0, 1), path, nrow=max(1, math.ceil(math.sqrt(n))), padding=2)
        lines.append(f"wrote {path}")
    return lines

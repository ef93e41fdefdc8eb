"""Pictures of a run: the four sampling modes, reconstructions, and the training curves.

Every grid is captioned: a title, a label for each row, and the columns of given inputs framed. The
grid is torchvision's ``make_grid`` of the tiles, pasted unchanged into the bottom-right corner of
the picture: the captions take a margin on the left (row labels) and on the top (title, and "given"
over the framed columns), and a frame is drawn in the padding around each given tile, so no tile's
pixels change. The PNG carries the captions as text too (``Title`` and ``Rows``).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo
from torch import Tensor
from torchvision.utils import make_grid

from mmgen.eval.crossmodal import image_modalities
from mmgen.model.inputs import prepare_fixed
from mmgen.run.loaded import Run

GIVEN = (214, 96, 0)  # the frame and the header of given inputs
INK, PAPER = (0, 0, 0), (255, 255, 255)
GAP = 4  # pixels between a caption and the grid or the picture's edge


@dataclass
class Captions:
    """``title`` above the grid, ``rows[r]`` left of row r, the first ``given`` columns framed."""

    title: str = ""
    rows: list[str] = field(default_factory=list)
    given: int = 0


def font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=11)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def grid_image(tiles: Tensor, nrow: int, padding: int = 2, pad_value: float = 0.0) -> Image.Image:
    """The tiles ``(N, C, H, W)`` in [0, 1] as torchvision's ``save_image`` would draw them (one tile
    alone as itself, with no padding)."""
    grid = make_grid(tiles.detach().clamp(0, 1).float().cpu(), nrow=nrow, padding=padding, pad_value=pad_value)
    pixels = grid.mul(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0).to("cpu", torch.uint8).numpy()
    return Image.fromarray(np.ascontiguousarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels))


def captioned(grid: Image.Image, captions: Captions, tile: tuple[int, int], padding: int = 2) -> Image.Image:
    """``grid`` (of tiles ``tile`` = (height, width)) with its captions around it; see the module."""
    face = font()
    draw = ImageDraw.Draw(grid)  # only to measure text

    def size(text: str) -> tuple[int, int]:
        left, top, right, bottom = draw.textbbox((0, 0), text, font=face)
        return right - left, bottom - top

    line = size("Ag")[1] + GAP
    pitch_y, pitch_x = tile[0] + padding, tile[1] + padding
    rows = (grid.height - padding) // pitch_y
    labels = captions.rows[:rows]
    left = max((size(t)[0] + 2 * GAP for t in labels), default=0)
    if captions.title:
        left = max(left, size(captions.title)[0] + 2 * GAP - grid.width)
    heads = [(captions.title, INK, GAP)] if captions.title else []
    if captions.given:
        heads.append(("given", GIVEN, left + padding))
    top = len(heads) * line + (GAP if heads else 0)
    picture = Image.new("RGB", (left + grid.width, top + grid.height), PAPER)
    picture.paste(grid.convert("RGB"), (left, top))
    pen = ImageDraw.Draw(picture)
    for i, (text, colour, x) in enumerate(heads):
        pen.text((x, GAP // 2 + i * line), text, fill=colour, font=face)
    for r, text in enumerate(labels):
        w, h = size(text)
        pen.text((left - GAP - w, top + padding + r * pitch_y + (tile[0] - h) // 2), text, fill=INK, font=face)
    if captions.given:
        for r in range(rows):
            for c in range(captions.given):
                x, y = left + padding + c * pitch_x, top + padding + r * pitch_y
                pen.rectangle((x - padding, y - padding, x + tile[1] + padding - 1, y + tile[0] + padding - 1),
                              outline=GIVEN, width=padding)
    return picture


def grid_png(tiles: Tensor, nrow: int, captions: Captions | None = None, padding: int = 2,
             pad_value: float = 0.0) -> bytes:
    """The PNG of a grid of ``tiles`` ``(N, C, H, W)``, captioned unless ``captions`` is None."""
    picture = grid_image(tiles, nrow, padding, pad_value)
    info = PngInfo()
    if captions is not None:
        picture = captioned(picture, captions, (tiles.shape[-2], tiles.shape[-1]), padding)
        info.add_text("Title", captions.title)
        info.add_text("Rows", "\n".join(captions.rows))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def save_grid(tiles: Tensor, path: Path, nrow: int, captions: Captions | None = None, padding: int = 2,
              pad_value: float = 0.0) -> Path:
    path.write_bytes(grid_png(tiles, nrow, captions, padding, pad_value))
    return path


def sample_grid_png(run: Run, name: str, samples: Tensor, given: dict[str, Any]) -> bytes:
    """``mmgen sample``'s grid of ``name``'s ``samples`` ``(n, C, H, W)``: one sample alone is a plain
    picture (usable as a given image again); more are captioned with what was given, each row with the
    given values that are no images, and the given images of the same size framed in the first columns."""
    n = samples.shape[0]
    nrow = max(1, math.ceil(math.sqrt(n)))
    if n == 1:
        return grid_png(samples, nrow)
    shown, words, labels = [], [], []
    for key, value in given.items():
        picture = run.model.modalities[key].to_image(run.prepare_given({key: value})[key][:1].float())
        if picture is None:  # a label, say: every row shows it
            words.append(f"{key}={value}")
            labels.append(f"{key}={value}")
        elif picture.shape[2:] == samples.shape[2:] and picture.shape[1] in (1, samples.shape[1]):
            shown.append(picture.cpu().expand(1, samples.shape[1], *samples.shape[2:]))
            words.append(f"{key} (framed)")
        else:  # an image of another size: named only
            words.append(f"{key}={Path(str(value)).name}")
    tiles = []
    for start in range(0, n, nrow):
        tiles += [*shown, samples[start : start + nrow].cpu()]
    title = f"{n} samples of {name} " + (f"given {', '.join(words)}" if given else "from p(z)")
    rows = [", ".join(labels)] * math.ceil(n / nrow) if labels else []
    return grid_png(torch.cat(tiles), nrow + len(shown), Captions(title, rows, len(shown)))


def _first_of_each_class(labels: Tensor, num_classes: int) -> list[int]:
    return [int((labels == k).nonzero()[0]) for k in range(num_classes) if (labels == k).any()]


def showcased(run: Run) -> tuple[str | None, str | None]:
    """The modalities the sampling pictures show: the first that renders as an image (None: no picture),
    and the first class label (None: none), which the images are drawn given."""
    images = image_modalities(run.model)
    labels = [n for n in run.model.names if run.model.modalities[n].num_classes]
    return (images[0] if images else None), (labels[0] if labels else None)


def prior_grid(run: Run, img: str, per_row: int) -> tuple[Tensor, Captions]:
    """``per_row`` x ``per_row`` samples of ``img`` from p(z): the tiles ``(N, C, H, W)`` and their captions."""
    tiles = run.model.modalities[img].to_image(run.sample(per_row * per_row, {})[img])
    return tiles, Captions(f"{img}: samples from the prior p(z)")


def label_grid(run: Run, img: str, lab: str, per_row: int) -> tuple[Tensor, Captions]:
    """A row of ``per_row`` samples of ``img`` given each class of ``lab``: the tiles and their captions."""
    k = run.model.modalities[lab].num_classes
    to_image = run.model.modalities[img].to_image
    tiles = torch.cat([to_image(run.sample(per_row, {lab: c}, names=[img])[img]) for c in range(k)])
    return tiles, Captions(f"{img} given the row's {lab}", [f"{lab}={c}" for c in range(k)])


def showcase_png(run: Run, seed: int = 0, per_row: int = 10) -> bytes | None:
    """One picture of what the model makes, from no data: its images given each class (``samples-given-label.png``
    of ``mmgen eval``), or from p(z) when it has no class label; None when nothing renders as an image."""
    img, lab = showcased(run)
    if img is None:
        return None
    torch.manual_seed(seed)
    tiles, captions = prior_grid(run, img, per_row) if lab is None else label_grid(run, img, lab, per_row)
    return grid_png(tiles, per_row, captions, pad_value=0.5)


def save_sampling_pictures(run: Run, split: dict[str, Tensor], out_dir: Path, seed: int = 0,
                           per_row: int = 10) -> list[Path]:
    """Grids of decoded images: from p(z), given a label, given an image, given both; reconstructions.

    Uses the first image-rendering modality and the first class-label modality of the run.
    """
    img, lab = showcased(run)
    if img is None:
        return []
    to_image = run.model.modalities[img].to_image
    written: list[Path] = []

    def save(grid: Tensor, captions: Captions, name: str, nrow: int) -> None:
        written.append(save_grid(grid, out_dir / name, nrow, captions, pad_value=0.5))

    torch.manual_seed(seed)
    save(*prior_grid(run, img, per_row), "samples-prior.png", per_row)
    if lab is None:
        return written
    k = run.model.modalities[lab].num_classes
    save(*label_grid(run, img, lab, per_row), "samples-given-label.png", per_row)

    # One test example per class: the given image first in each row, then decoded samples.
    rows = _first_of_each_class(split[lab], k)
    given_x = [split[img][i : i + 1] for i in rows]
    # Shown as the model sees it: prepare_given's fixed binarization, the one run.sample conditions on.
    originals = [to_image(run.prepare_given({img: x})[img]) for x in given_x]
    classes = [int(split[lab][i]) for i in rows]
    for name, with_label in (("samples-given-image.png", False), ("samples-given-both.png", True)):
        grid = []
        for i, x, original in zip(rows, given_x, originals):
            given = {img: x, **({lab: int(split[lab][i])} if with_label else {})}
            grid += [original, to_image(run.sample(per_row - 1, given, names=[img])[img])]
        captions = (Captions(f"{img} given the framed test {img} and its {lab}", [f"{lab}={c}" for c in classes], 1)
                    if with_label else Captions(f"{img} given the framed test {img} (its {lab} by the row)",
                                                [f"{lab} {c}" for c in classes], 1))
        save(torch.cat(grid), captions, name, per_row)

    # Reconstructions at the posterior mean of q(z | image, label): originals over reconstructions.
    idx = torch.arange(min(per_row * 2, split[img].shape[0]))
    x = prepare_fixed(run.model.modalities, {img: split[img][idx]}, seed, run.device)[img]
    y = split[lab][idx].to(run.device)
    with torch.no_grad():
        z = run.model.posterior({img: x, lab: y}).mean
        recon = to_image(run.decode(z, [img])[img])
    pairs = torch.cat([torch.cat([to_image(x[j : j + per_row]), recon[j : j + per_row]])
                       for j in range(0, idx.numel(), per_row)])
    save(pairs, Captions(f"test {img}s over their reconstructions at the mean of q(z | {img}, {lab})",
                         ["input", "reconstr."] * math.ceil(idx.numel() / per_row)), "reconstructions.png", per_row)
    return written


def save_training_curves(rows: list[dict[str, Any]], path: Path) -> Path:
    """Loss terms, β, validation ELBOs and any logged cross-modal metrics against the epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in rows]

    def series(prefix: str) -> dict[str, list[float]]:
        keys = sorted({k for r in rows for k in r if k.startswith(prefix)})
        return {k: [r.get(k, float("nan")) for r in rows] for k in keys}

    panels = [
        ("training loss terms", {**series("train/loss"), **series("train/nll"), **series("train/kl")}),
        ("validation (nats per example)", {**series("val/loss"), **series("val/elbo")}),
        ("β", {"beta": [r.get("beta", float("nan")) for r in rows]}),
        ("cross-modal (validation subset)", {**series("val/accuracy"), **series("val/coherence")}),
    ]
    panels = [p for p in panels if p[1]]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.6))
    for ax, (title, curves) in zip(axes if len(panels) > 1 else [axes], panels):
        for name, values in curves.items():
            ax.plot(epochs, values, label=name, linewidth=1.2)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

"""Pictures of a run: the four sampling modes, reconstructions, and the training curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torchvision.utils import save_image

from mmgen.eval.crossmodal import image_modalities
from mmgen.model.inputs import prepare_fixed
from mmgen.run.loaded import Run


def _first_of_each_class(labels: Tensor, num_classes: int) -> list[int]:
    return [int((labels == k).nonzero()[0]) for k in range(num_classes) if (labels == k).any()]


def save_sampling_pictures(run: Run, split: dict[str, Tensor], out_dir: Path, seed: int = 0,
                           per_row: int = 10) -> list[Path]:
    """Grids of decoded images: from p(z), given a label, given an image, given both; reconstructions.

    Uses the first image-rendering modality and the first class-label modality of the run.
    """
    images = image_modalities(run.model)
    if not images:
        return []
    img = images[0]
    labels = [n for n in run.model.names if run.model.modalities[n].num_classes]
    lab = labels[0] if labels else None
    to_image = run.model.modalities[img].to_image
    written: list[Path] = []

    def save(grid: Tensor, name: str, nrow: int) -> None:
        path = out_dir / name
        save_image(grid.clamp(0, 1).float().cpu(), path, nrow=nrow, padding=2, pad_value=0.5)
        written.append(path)

    torch.manual_seed(seed)
    save(to_image(run.sample(per_row * per_row, {})[img]), "samples-prior.png", per_row)
    if lab is None:
        return written
    k = run.model.modalities[lab].num_classes
    save(torch.cat([to_image(run.sample(per_row, {lab: c}, names=[img])[img]) for c in range(k)]),
         "samples-given-label.png", per_row)

    # One test example per class: the given image first in each row, then decoded samples.
    rows = _first_of_each_class(split[lab], k)
    given_x = [split[img][i : i + 1] for i in rows]
    # Shown as the model sees it: prepare_given's fixed binarization, the one run.sample conditions on.
    originals = [to_image(run.prepare_given({img: x})[img]) for x in given_x]
    for name, with_label in (("samples-given-image.png", False), ("samples-given-both.png", True)):
        grid = []
        for i, x, original in zip(rows, given_x, originals):
            given = {img: x, **({lab: int(split[lab][i])} if with_label else {})}
            grid += [original, to_image(run.sample(per_row - 1, given, names=[img])[img])]
        save(torch.cat(grid), name, per_row)

    # Reconstructions at the posterior mean of q(z | image, label): originals over reconstructions.
    idx = torch.arange(min(per_row * 2, split[img].shape[0]))
    x = prepare_fixed(run.model.modalities, {img: split[img][idx]}, seed, run.device)[img]
    y = split[lab][idx].to(run.device)
    with torch.no_grad():
        z = run.model.posterior({img: x, lab: y}).mean
        recon = to_image(run.decode(z, [img])[img])
    pairs = torch.cat([torch.cat([to_image(x[j : j + per_row]), recon[j : j + per_row]])
                       for j in range(0, idx.numel(), per_row)])
    save(pairs, "reconstructions.png", per_row)
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

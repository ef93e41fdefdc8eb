"""A tiny CelebA folder in torchvision's layout, for the tests of the celeba data set and its recipes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from mmgen_plugins.celeba import ALL_ATTRIBUTES


def write_tiny_celeba(root: Path, n: int = 30, seed: int = 0) -> Path:
    """``<root>/celeba/`` in torchvision's layout: ``n`` 178x218 JPEGs and the two attribute and partition
    files, 60 % train, 20 % val, 20 % test. Each face is flat colour blocks whose shade follows two of
    its attributes (Male, Smiling), so a model can learn something. Returns ``root``."""
    folder = Path(root) / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 2, size=(n, len(ALL_ATTRIBUTES)))
    lines, parts = [str(n), " ".join(ALL_ATTRIBUTES)], []
    for i in range(n):
        name = f"{i + 1:06d}.jpg"
        male, smiling = values[i, ALL_ATTRIBUTES.index("Male")], values[i, ALL_ATTRIBUTES.index("Smiling")]
        pixels = np.zeros((218, 178, 3), dtype=np.uint8)
        pixels[:, :] = (60 + 150 * male, 80, 60 + 150 * smiling)
        pixels[80:140, 50:130] = rng.integers(0, 255, size=3)
        Image.fromarray(pixels).save(folder / "img_align_celeba" / name, quality=95)
        lines.append(name + " " + " ".join("1" if v else "-1" for v in values[i]))
        parts.append(f"{name} {0 if i < 0.6 * n else 1 if i < 0.8 * n else 2}")
    (folder / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    (folder / "list_eval_partition.txt").write_text("\n".join(parts) + "\n")
    return Path(root)

"""PolyMNIST as released by Sutter, Daunhawer & Vogt (2021, the MoPoE paper): kind ``polymnist``.

Reads the unzipped release under ``data.root``::

    <root>/PolyMNIST/train/m0 .. m4/<index>.<label>.png    60,000 examples
    <root>/PolyMNIST/test/m0 .. m4/<index>.<label>.png     10,000 examples

(``MMNIST/`` in place of ``PolyMNIST/`` is read too: MoPoE's job script names the folder so.) Each
PNG is a 28x28 RGB image; ``<index>`` counts the examples of one class, so an example is named by the
whole ``<index>.<label>`` and the same name in m0..m4 is one example seen five ways, its digit class
the ``<label>`` of the name. The release has no validation split: ``val_size`` training examples are
held out by a permutation seeded by ``split_seed``. Fields are those of ``polymnist_style``
(plugins/polymnist.py): ``m0``..``m4`` uint8 ``(N, 3, 28, 28)`` and ``label`` int64 ``(N,)``, so every
PolyMNIST-style recipe trains on the release with ``data.kind=polymnist``. Nothing is downloaded.

Listing and decoding all 350,000 PNGs with Pillow takes about 20 s of one core's time (30-48 s of wall
time on a 2-core VM shared with other jobs), so nothing is cached: a cache would hold 820 MB to save
less than a minute. (torchvision.io's decode_png is twice as fast but deprecated since torchvision 0.29.)
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import ClassVar

import torch
from pydantic import Field
from torch import Tensor

from mmgen import DataError, Dataset, DatasetConfig, hookimpl

MODALITIES = tuple(f"m{i}" for i in range(5))
FOLDERS = ("PolyMNIST", "MMNIST")  # the release's folder name, then the name MoPoE's job script uses
SIDE = 28
FILE_NAME = re.compile(r"(\d+)\.(\d)\.png")  # <index within its class>.<digit class>.png
LAYOUT_HINT = "the release holds train/ and test/, each with m0..m4 of the same <index>.<label>.png files"


class PolyMnistReleasedConfig(DatasetConfig):
    """The released PolyMNIST PNGs under ``<root>/PolyMNIST/{train,test}/m0..m4``; nothing is downloaded."""

    # root and download restated: the base's descriptions speak of torchvision, which has no PolyMNIST.
    root: str | None = Field(
        None, description="Folder holding PolyMNIST/train and PolyMNIST/test; defaults to $MMGEN_DATA_ROOT, "
        "then a cache folder."
    )
    download: bool = Field(
        True, description="Unused: the release is never downloaded, as no download address can be trusted."
    )
    val_size: int = Field(10_000, ge=1, description="Examples of the released training set held out for validation.")
    split_seed: int = Field(
        0, ge=0, lt=2**63, description="Seed of the permutation that picks the validation examples."
    )
    train_size: int | None = Field(
        None, ge=1, description="Keep only the first N training examples (a smaller budget); None keeps all."
    )


def find_release(root: Path) -> Path:
    """The folder holding ``train/`` and ``test/``; a missing release is one DataError saying where it belongs."""
    for name in FOLDERS:
        if (root / name / "train").is_dir() or (root / name / "test").is_dir():
            return root / name
    # A root that is itself the release's folder is the likeliest slip: say so.
    inside = f" ({root / 'train'} exists: data.root names the folder above it)" if (root / "train").is_dir() else ""
    raise DataError(
        f"PolyMNIST not found: expected {root / FOLDERS[0]}/train/m0..m4 and {root / FOLDERS[0]}/test/m0..m4 "
        f"holding <index>.<label>.png (the release of Sutter et al. 2021, unzipped){inside}; mmgen downloads "
        "nothing for it, as there is no download address to trust",
        hint='unzip the release under data.root, or set data.kind = "polymnist_style" for a stand-in made from MNIST',
    )


def list_modality(folder: Path) -> dict[str, int]:
    """File name -> digit class for every PNG of one modality folder, each name checked against the release's."""
    if not folder.is_dir():
        raise DataError(f"{folder} is missing: expected a folder of <index>.<label>.png files", hint=LAYOUT_HINT)
    labels = {}
    for name in os.listdir(folder):  # listdir: ~60k names, much faster than Path.glob
        if not name.endswith(".png"):
            continue
        match = FILE_NAME.fullmatch(name)
        if match is None:
            raise DataError(f"{folder / name}: expected a name <index>.<label>.png with a label 0-9", hint=LAYOUT_HINT)
        labels[name] = int(match[2])
    if not labels:
        raise DataError(f"{folder} holds no <index>.<label>.png files", hint=LAYOUT_HINT)
    return labels


def _difference(split: Path, first: set[str], other: set[str], modality: str) -> str:
    """One line saying how ``modality``'s file names differ from m0's, a label disagreement named as such."""
    only_first, only_other = sorted(first - other), sorted(other - first)
    parts = [f"{only_first[0]} is in m0 only"] if only_first else []
    parts += [f"{only_other[0]} is in {modality} only"] if only_other else []
    labels_by_index = {name.split(".")[0]: name.split(".")[1] for name in only_other}
    for name in only_first:
        index, label = name.split(".")[:2]
        if index in labels_by_index:
            parts.append(f"example {index} has label {label} in m0 but {labels_by_index[index]} in {modality}")
            break
    count = len(only_first) + len(only_other)
    return (f"{split / modality} does not hold the same examples as {split / 'm0'}: "
            f"{'; '.join(parts)} ({count} difference{'s' if count > 1 else ''} in all)")


def list_split(split: Path) -> tuple[list[str], Tensor]:
    """The file names of one split, ordered by index then label, and their classes int64 ``(N,)``.

    Ordered so, the first N examples (``mmgen eval --limit N``) hold every class about equally.
    """
    by_modality = {m: list_modality(split / m) for m in MODALITIES}
    first = set(by_modality["m0"])
    for m in MODALITIES[1:]:
        if set(by_modality[m]) != first:
            raise DataError(_difference(split, first, set(by_modality[m]), m), hint=LAYOUT_HINT)
    names = sorted(first, key=lambda name: tuple(int(part) for part in name.split(".")[:2]))
    return names, torch.tensor([by_modality["m0"][n] for n in names], dtype=torch.int64)


def decode_modality(folder: Path, names: list[str]) -> Tensor:
    """The PNGs ``folder/name`` decoded, in order, as uint8 ``(N, 3, 28, 28)``; each checked to be RGB 28x28."""
    import numpy as np
    from PIL import Image

    out = np.empty((len(names), SIDE, SIDE, 3), dtype=np.uint8)  # (N, H, W, C), PIL's order
    for i, name in enumerate(names):
        path = folder / name
        try:
            with Image.open(path, formats=("PNG",)) as image:
                if image.mode != "RGB" or image.size != (SIDE, SIDE):
                    raise DataError(f"{path}: decodes to {image.mode} {image.size[0]}x{image.size[1]}, expected "
                                    f"RGB {SIDE}x{SIDE}", hint="the release's images are 28x28 RGB PNGs")
                out[i] = image  # numpy reads PIL's array interface: faster than a tensor per image
        except (OSError, SyntaxError, ValueError) as exc:  # Pillow raises all three for damaged files
            raise DataError(f"{path}: cannot read it as a PNG ({' '.join(str(exc).split())[:200]})")
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()  # (N, 3, 28, 28)


def read_examples(split: Path, names: list[str], labels: Tensor, rows: Tensor) -> dict[str, Tensor]:
    """The examples ``rows`` ``(n,)`` of a listed split: ``m0``..``m4`` uint8 ``(n, 3, 28, 28)``, ``label`` ``(n,)``."""
    chosen = [names[i] for i in rows.tolist()]
    return {**{m: decode_modality(split / m, chosen) for m in MODALITIES}, "label": labels[rows]}


class PolyMnistReleasedDataset(Dataset):
    """The released PolyMNIST: five aligned RGB views ``m0``..``m4`` of one digit and its ``label``."""

    Config = PolyMnistReleasedConfig
    config: PolyMnistReleasedConfig
    fields: ClassVar[dict[str, str]] = {**dict.fromkeys(MODALITIES, "conv_image"), "label": "label"}
    class_field: ClassVar[str | None] = "label"

    def load(self) -> dict[str, dict[str, Tensor]]:
        release = find_release(self.root)
        train_names, train_labels = list_split(release / "train")
        test_names, test_labels = list_split(release / "test")  # listed before decoding: a bad tree fails fast
        n, val_size = len(train_names), self.config.val_size
        if val_size >= n:
            raise DataError(f"data.val_size={val_size} leaves no training examples out of {n} in {release / 'train'}")
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.config.split_seed))  # (n,)
        val, train = order[:val_size], order[val_size:][: self.config.train_size]  # only these are decoded
        return {
            "train": read_examples(release / "train", train_names, train_labels, train),
            "val": read_examples(release / "train", train_names, train_labels, val),
            "test": read_examples(release / "test", test_names, test_labels, torch.arange(len(test_names))),
        }


@hookimpl
def register_datasets(register):
    register("polymnist", PolyMnistReleasedDataset)

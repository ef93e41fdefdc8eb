"""CelebA (the MVAE paper's): aligned face images, 64x64, with the paper's 18 binary attributes.

Reads torchvision's layout under ``<root>/celeba/``: ``img_align_celeba/*.jpg``,
``list_attr_celeba.txt`` and ``list_eval_partition.txt`` (the official train/val/test split). Each
image is cropped to a centred ``crop`` x ``crop`` square and resized to ``size`` x ``size``. Fields:
``image`` uint8 ``(3, size, size)``, ``attributes`` uint8 ``(K,)`` (the recipe's ``attributes``, by
default the paper's 18), and every one of the 40 attributes as its own 0/1 field (the paper's
19-modality variant makes each attribute a modality).

The training split (162,770 images) is read image by image through ``reader`` when it streams
(``data.on_device = false``); ``load`` gives each split whole, decoded once and cached as safetensors
under ``<root>/celeba/mmgen-cache/``. CelebA cannot be downloaded on a machine without Google Drive:
a missing file is one error naming every file expected.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import ClassVar

import torch
from pydantic import Field, model_validator
from torch import Tensor

from mmgen import DataError, Dataset, DatasetConfig, hookimpl, load_tensors, save_tensors

ALL_ATTRIBUTES = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs", "Big_Lips", "Big_Nose",
    "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby", "Double_Chin", "Eyeglasses",
    "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache",
    "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks",
    "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick",
    "Wearing_Necklace", "Wearing_Necktie", "Young",
)
# The 18 "visually distinctive" attributes the MVAE paper keeps (after Perarnau et al. 2016).
PAPER_ATTRIBUTES = ("Bald", "Bangs", "Black_Hair", "Blond_Hair", "Brown_Hair", "Bushy_Eyebrows", "Eyeglasses",
                    "Gray_Hair", "Heavy_Makeup", "Male", "Mouth_Slightly_Open", "Mustache", "Pale_Skin",
                    "Receding_Hairline", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Hat")
FILES = ("img_align_celeba/", "list_attr_celeba.txt", "list_eval_partition.txt")
PARTITIONS = {"train": 0, "val": 1, "test": 2}


class CelebAConfig(DatasetConfig):
    """CelebA in torchvision's layout: ``<root>/celeba/`` with img_align_celeba/ and the two lists."""

    size: int = Field(64, ge=8, le=256, description="Side of the square images after resizing.")
    crop: int = Field(178, ge=8, le=178, description="Side of the centred square cropped from each 178x218 image.")
    attributes: list[str] = Field(list(PAPER_ATTRIBUTES), min_length=1,
                                  description="The attributes of the `attributes` field, in order (the paper's 18).")
    cache: bool = Field(True, description="Keep each split, decoded, under <root>/celeba/mmgen-cache/.")

    @model_validator(mode="after")
    def _known(self) -> CelebAConfig:
        unknown = [a for a in self.attributes if a not in ALL_ATTRIBUTES]
        if unknown:
            raise ValueError(f"unknown attribute(s) {', '.join(unknown)}")
        return self


def read_table(folder: Path) -> tuple[list[str], Tensor, Tensor]:
    """File names, attributes int8 ``(N, 40)`` of 0 and 1, and partitions ``(N,)`` from the two text files."""
    try:
        attr_lines = (folder / "list_attr_celeba.txt").read_text().splitlines()
        partition = dict(line.split() for line in (folder / "list_eval_partition.txt").read_text().splitlines()
                         if line.strip())
        header = attr_lines[1].split()
        rows = [line.split() for line in attr_lines[2:] if line.strip()]
        names = [r[0] for r in rows]
        values = torch.tensor([[int(v) for v in r[1:]] for r in rows], dtype=torch.int8)
        order = [header.index(a) for a in ALL_ATTRIBUTES]
        parts = torch.tensor([int(partition[n]) for n in names])
    except (OSError, IndexError, ValueError, KeyError) as exc:
        raise DataError(f"{folder}: list_attr_celeba.txt or list_eval_partition.txt is not in CelebA's format "
                        f"({exc.__class__.__name__}: {exc})")
    return names, (values[:, order] > 0).to(torch.int8), parts


class FaceReader:
    """Per-example reads of one split: the JPEG cropped and resized, with its attributes (picklable)."""

    def __init__(self, folder: Path, names: list[str], attrs: Tensor, chosen: list[int], size: int, crop: int):
        self.folder, self.names, self.attrs, self.chosen = folder, names, attrs, chosen
        self.size, self.crop = size, crop

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        from PIL import Image

        with Image.open(self.folder / "img_align_celeba" / self.names[i]) as img:
            img = img.convert("RGB")
            w, h = img.size
            left, top = (w - self.crop) // 2, (h - self.crop) // 2
            img = img.crop((left, top, left + self.crop, top + self.crop)).resize((self.size, self.size),
                                                                                   Image.BILINEAR)
            pixels = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
        row = self.attrs[i]
        return {"image": pixels.reshape(self.size, self.size, 3).permute(2, 0, 1).contiguous(),
                "attributes": row[self.chosen].to(torch.uint8),
                **{a: row[k].long() for k, a in enumerate(ALL_ATTRIBUTES)}}


class CachedSplits(Mapping):
    """The splits of ``load()``, each decoded (or read from the cache) only when asked for."""

    def __init__(self, dataset: CelebADataset):
        self.dataset, self.done = dataset, {}

    def __getitem__(self, split: str) -> dict[str, Tensor]:
        if split not in PARTITIONS:
            raise KeyError(split)
        if split not in self.done:
            self.done[split] = self.dataset.whole(split)
        return self.done[split]

    def __iter__(self) -> Iterator[str]:
        return iter(PARTITIONS)

    def __len__(self) -> int:
        return len(PARTITIONS)


class CelebADataset(Dataset):
    Config = CelebAConfig
    config: CelebAConfig
    fields: ClassVar[dict[str, str]] = {"image": "conv_image", "attributes": "attributes",
                                        **dict.fromkeys(ALL_ATTRIBUTES, "label")}
    class_field: ClassVar[str | None] = None

    @property
    def folder(self) -> Path:
        return self.root / "celeba"

    def _table(self) -> tuple[list[str], Tensor, Tensor]:
        if not hasattr(self, "_parsed"):
            self._parsed = read_table(self._present())
        return self._parsed

    def _present(self) -> Path:
        """The folder, after checking every file is there (or downloading it, when allowed)."""
        missing = [f for f in FILES if not (self.folder / f).exists()]
        if missing and self.config.download:
            with contextlib.suppress(Exception), contextlib.redirect_stdout(sys.stderr):
                from torchvision.datasets import CelebA

                CelebA(str(self.root), download=True)  # Google Drive: fails offline and behind most firewalls
            missing = [f for f in FILES if not (self.folder / f).exists()]
        if missing:
            raise DataError(f"CelebA not found: {self.folder} must hold {', '.join(FILES)} (torchvision's layout); "
                            f"missing: {', '.join(missing)}" + ("; the download failed" if self.config.download
                                                               else "; download is off"))
        return self.folder

    def reader(self, split: str) -> FaceReader:
        names, attrs, parts = self._table()
        keep = (parts == PARTITIONS[split]).nonzero().squeeze(1).tolist()
        chosen = [ALL_ATTRIBUTES.index(a) for a in self.config.attributes]
        return FaceReader(self.folder, [names[i] for i in keep], attrs[keep], chosen, self.config.size,
                          self.config.crop)

    def whole(self, split: str) -> dict[str, Tensor]:
        """One split decoded whole, from the cache when it is there (then written to it)."""
        key = hashlib.sha256(json.dumps([self.config.size, self.config.crop, self.config.attributes, 1]).encode())
        path = self.folder / "mmgen-cache" / key.hexdigest()[:16] / f"{split}.safetensors"
        if self.config.cache and path.is_file():
            return load_tensors(path)[0]
        reader = self.reader(split)
        rows = [reader[i] for i in range(len(reader))]
        out = {k: torch.stack([r[k] for r in rows]) for k in rows[0]} if rows else {}
        if self.config.cache and rows:
            path.parent.mkdir(parents=True, exist_ok=True)
            save_tensors(path, out)
        return out

    def load(self) -> Mapping[str, dict[str, Tensor]]:
        self._present()
        return CachedSplits(self)


@hookimpl
def register_datasets(register):
    register("celeba", CelebADataset)

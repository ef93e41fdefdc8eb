"""SVHN in torchvision's layout, and MNIST-SVHN: pairs of an MNIST and an SVHN image of the same digit.

SVHN is read from ``<root>/SVHN/train_32x32.mat`` and ``<root>/SVHN/test_32x32.mat``: the files
``torchvision.datasets.SVHN`` reads and downloads into the folder it is given (mmgen gives it
``<root>/SVHN``). They are read here with ``scipy.io`` as torchvision reads them, because torchvision
also checks each file's MD5 sum, which only the published files pass. Label 10 is the digit 0.

The pairing is that of Shi et al. (2019, ``bin/make-mnist-svhn-idx.py`` of iffsid/mmvae), which the
MoPoE code repeats: within each digit class, the first ``n`` instances of each data set (``n`` the
smaller class size) are matched by ``k`` independent random permutations of each side, so each of
them is in exactly ``k`` pairs. Training pairs come from the training files, test pairs from the test
files. The official code has no validation split; here seeded shares of the MNIST and of the SVHN
training images are held out *before* pairing and paired among themselves, so no validation pair
shares an image with a training pair. Every draw is seeded and the pairs of a split are shuffled, so
any prefix of a split (``mmgen eval --limit``) is a uniform sample of it.
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from pydantic import Field
from torch import Tensor

from mmgen.data.torchvision_layout import IdxImageConfig, IdxImageDataset
from mmgen.errors import DataError
from mmgen.plugin.dataset import SPLITS, Split

SVHN_FOLDER = "SVHN"  # under the data root; torchvision's SVHN class reads the files directly in it
SVHN_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}
Pairs = tuple[Tensor, Tensor]  # (mnist index, svhn index), each (P,) int64, into the official files


def read_svhn_mat(path: Path) -> tuple[Tensor, Tensor]:
    """One SVHN ``.mat`` file -> uint8 images ``(N, 3, 32, 32)`` and int64 labels ``(N,)`` in 0..9.

    The file holds ``X`` uint8 ``(32, 32, 3, N)`` (height, width, channel, example) and ``y`` ``(N, 1)``
    with 10 for the digit 0, which becomes 0 here as in torchvision.
    """
    import scipy.io  # only needed for SVHN

    try:
        mat = scipy.io.loadmat(str(path), variable_names=["X", "y"])
    except Exception as exc:  # scipy raises several types for a truncated or foreign file
        raise DataError(f"could not read SVHN from {path}: {' '.join(str(exc).split())[:200] or type(exc).__name__}")
    X, y = mat.get("X"), mat.get("y")
    if X is None or y is None or X.ndim != 4 or X.shape[:3] != (32, 32, 3) or y.size != X.shape[3]:
        got = "no X or y" if X is None or y is None else f"X {X.shape}, y {y.shape}"
        raise DataError(f"{path} is not in SVHN's layout: expected X (32, 32, 3, N) and y (N, 1), got {got}")
    labels = torch.from_numpy(y.astype(np.int64).reshape(-1))
    labels[labels == 10] = 0  # SVHN's 10 is the digit 0
    if labels.numel() and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{path}: labels must be 1..10 (10 for the digit 0), found {sorted(set(y.reshape(-1)))[:12]}")
    images = np.ascontiguousarray(X.astype(np.uint8, copy=False).transpose(3, 2, 0, 1))  # (N, 3, 32, 32)
    return torch.from_numpy(images), labels


def match_by_class(labels_a: Tensor, labels_b: Tensor, per_instance: int, generator: torch.Generator) -> Pairs:
    """Positions ``(P,)`` into ``labels_a`` and into ``labels_b`` of pairs of the same class.

    Per class of ``labels_a`` (ascending), the first ``n`` positions of each side in the given order,
    ``n`` the smaller count, are matched ``per_instance`` times, each time by a fresh permutation of
    each side (the MMVAE script's ``rand_match_on_idx``), so each is in ``per_instance`` pairs. The
    pairs are then shuffled.
    """
    parts_a, parts_b = [], []
    for c in labels_a.unique().tolist():
        of_a = (labels_a == c).nonzero().squeeze(1)  # (n_a,) positions in ascending order
        of_b = (labels_b == c).nonzero().squeeze(1)  # (n_b,)
        n = min(of_a.numel(), of_b.numel())
        of_a, of_b = of_a[:n], of_b[:n]
        for _ in range(per_instance):
            parts_a.append(of_a[torch.randperm(n, generator=generator)])
            parts_b.append(of_b[torch.randperm(n, generator=generator)])
    a = torch.cat(parts_a) if parts_a else torch.zeros(0, dtype=torch.long)
    b = torch.cat(parts_b) if parts_b else torch.zeros(0, dtype=torch.long)
    order = torch.randperm(a.numel(), generator=generator)  # any prefix is a uniform sample of the pairs
    return a[order], b[order]


def held_out(n: int, size: int, generator: torch.Generator, what: str) -> tuple[Tensor, Tensor]:
    """A seeded cut of ``n`` examples: (validation positions, training positions), each ascending."""
    if size >= n:
        raise DataError(f"{what}={size} leaves no training examples out of {n}")
    order = torch.randperm(n, generator=generator)
    return order[:size].sort().values, order[size:].sort().values


def digest(*tensors: Tensor) -> Tensor:
    """SHA-256 of the tensors' bytes and shapes, as uint8 ``(32,)``: a fingerprint of the files read."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(str((tuple(t.shape), str(t.dtype))).encode())
        h.update(t.contiguous().numpy())
    return torch.frombuffer(bytearray(h.digest()), dtype=torch.uint8)


class MnistSvhnConfig(IdxImageConfig):
    """MNIST (``<root>/MNIST/raw``) paired with SVHN (``<root>/SVHN/*_32x32.mat``) by digit class."""

    val_size: int = Field(
        10_000, ge=1, description="MNIST training images held out for validation before pairing (those of "
        "the mnist data set with the same split_seed)."
    )
    svhn_val_size: int = Field(10_000, ge=1, description="SVHN training images held out for validation before pairing.")
    pairs_per_instance: int = Field(
        20, ge=1, le=100, description="k: the pairs each used image of a class is in, in the training and test "
        "splits (MoPoE's data_multiplications and the MMVAE README: 20; the MMVAE script: 30). About 215 MB "
        "of training pairs per unit on the full data.",
    )
    val_pairs_per_instance: int = Field(1, ge=1, le=100, description="k of the validation split.")
    match_seed: int = Field(
        0, ge=0, lt=2**63, description="Seed of the pairing (which images meet) and of the order of the pairs."
    )


class MnistSvhnDataset(IdxImageDataset):
    """Pairs of MNIST and SVHN images of one digit: ``mnist`` uint8 ``(N, 1, 28, 28)``, ``svhn`` uint8
    ``(N, 3, 32, 32)``, ``label`` int64 ``(N,)``, the digit both show."""

    Config = MnistSvhnConfig
    config: MnistSvhnConfig
    fields: ClassVar[dict[str, str]] = {"mnist": "conv_image", "svhn": "conv_image", "label": "label"}
    class_field: ClassVar[str | None] = "label"
    folder: ClassVar[str] = "MNIST"

    def __init__(self, config: MnistSvhnConfig):
        super().__init__(config)
        self._sources: dict[str, dict[str, tuple[Tensor, Tensor]]] | None = None
        self._pairs: dict[str, Pairs] | None = None

    # ---- the official files ------------------------------------------------------------
    @property
    def svhn_folder(self) -> Path:
        return self.root / SVHN_FOLDER

    def read_svhn(self) -> dict[str, tuple[Tensor, Tensor]]:
        """``{"train", "test"}`` -> (uint8 images (N, 3, 32, 32), int64 labels (N,)): local files, else a
        download through torchvision when ``data.download`` allows."""
        folder = self.svhn_folder
        missing = [name for name in SVHN_FILES.values() if not (folder / name).is_file()]
        if missing:
            where = f"SVHN not found: {folder} lacks {', '.join(missing)} (torchvision's layout, <data.root>/SVHN/)"
            if not self.config.download:
                raise DataError(f"{where}; download is off")
            self._download_svhn(where)
        return {split: read_svhn_mat(folder / name) for split, name in SVHN_FILES.items()}

    def _download_svhn(self, where: str) -> None:
        """Both files through torchvision; a failed download leaves no empty folders behind."""
        import torchvision.datasets

        folder = self.svhn_folder
        made = [p for p in (self.root, folder) if not p.exists()]
        try:
            with contextlib.redirect_stdout(sys.stderr):  # torchvision prints its progress: keep stdout for results
                for split in SVHN_FILES:
                    torchvision.datasets.SVHN(str(folder), split=split, download=True)
        except Exception as exc:  # offline, server down, read-only folder...
            for path in reversed(made):
                with contextlib.suppress(OSError):
                    path.rmdir()  # only if empty
            raise DataError(f"{where}; downloading it failed: {' '.join(str(exc).split())[:400] or type(exc).__name__}")

    def sources(self) -> dict[str, dict[str, tuple[Tensor, Tensor]]]:
        """``{"mnist" | "svhn": {"train" | "test": (images (N, C, H, W) uint8, labels (N,) int64)}}``, read once."""
        if self._sources is None:
            mnist = {}
            for split, train in (("train", True), ("test", False)):
                images, labels = self.read(train=train)  # (N, 28, 28), (N,)
                mnist[split] = (images.unsqueeze(1), labels)
            self._sources = {"mnist": mnist, "svhn": self.read_svhn()}
        return self._sources

    # ---- the pairing -------------------------------------------------------------------
    def pairs(self) -> dict[str, Pairs]:
        """Split -> (MNIST index, SVHN index) of each pair, into the official training files for train and
        val and into the test files for test; computed once."""
        if self._pairs is None:
            self._pairs = self._match()
        return self._pairs

    def _match(self) -> dict[str, Pairs]:
        cfg, src = self.config, self.sources()
        mnist_labels, svhn_labels = src["mnist"]["train"][1], src["svhn"]["train"][1]
        cut = torch.Generator().manual_seed(cfg.split_seed)  # MNIST's cut first: the mnist data set's own
        mnist_val, mnist_train = held_out(mnist_labels.numel(), cfg.val_size, cut, "data.val_size")
        svhn_val, svhn_train = held_out(svhn_labels.numel(), cfg.svhn_val_size, cut, "data.svhn_val_size")
        n_test = src["mnist"]["test"][1].numel(), src["svhn"]["test"][1].numel()
        chosen = {  # split -> (MNIST positions, SVHN positions, k), positions into the official files
            "train": (mnist_train, svhn_train, cfg.pairs_per_instance),
            "val": (mnist_val, svhn_val, cfg.val_pairs_per_instance),
            "test": (torch.arange(n_test[0]), torch.arange(n_test[1]), cfg.pairs_per_instance),
        }
        # One seed per split from match_seed, so each split's pairs depend on its own settings alone.
        seeds = torch.randint(0, 2**62, (len(SPLITS),), generator=torch.Generator().manual_seed(cfg.match_seed))
        pairs = {}
        for split, seed in zip(SPLITS, seeds.tolist(), strict=True):
            of_mnist, of_svhn, k = chosen[split]
            official = "test" if split == "test" else "train"
            a, b = match_by_class(src["mnist"][official][1][of_mnist], src["svhn"][official][1][of_svhn], k,
                                  torch.Generator().manual_seed(seed))
            if a.numel() == 0:
                raise DataError(f"MNIST-SVHN: no digit class has images in both data sets' {split} split")
            pairs[split] = (of_mnist[a], of_svhn[b])
        return pairs

    # ---- the Dataset interface ---------------------------------------------------------
    def labels(self) -> dict[str, Tensor]:
        """Split -> the digit of each pair, int64 ``(P,)`` (both images show it)."""
        src = self.sources()
        return {split: src["mnist"]["test" if split == "test" else "train"][1][a]
                for split, (a, _b) in self.pairs().items()}

    def load(self) -> dict[str, Split]:
        src, labels = self.sources(), self.labels()
        splits = {}
        for split, (a, b) in self.pairs().items():
            official = "test" if split == "test" else "train"
            splits[split] = {"mnist": src["mnist"][official][0][a],  # (P, 1, 28, 28) uint8
                             "svhn": src["svhn"][official][0][b],  # (P, 3, 32, 32) uint8
                             "label": labels[split]}  # (P,) int64
        return splits

    def record(self) -> dict[str, Tensor]:
        """The pairs of every split (int32 indices into the official files) and a SHA-256 of each data set."""
        src = self.sources()
        out = {f"{split}/{name}": index.to(torch.int32)
               for split, pair in self.pairs().items() for name, index in zip(("mnist", "svhn"), pair, strict=True)}
        for name in ("mnist", "svhn"):
            out[f"files/{name}"] = digest(*src[name]["train"], *src[name]["test"])
        return out

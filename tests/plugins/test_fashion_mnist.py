"""The fashion_mnist dataset: torchvision's layout, Debian's gzipped folder, the error, the split.

Tiny IDX files are written per test; the real-data test reads $MMGEN_DATA_ROOT at import and is
skipped without it: MMGEN_DATA_ROOT=/work/shared/data python -m pytest tests/test_fashion.py
"""

from __future__ import annotations

import gzip
import os
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

from mmgen import DataError
from mmgen.data import RAW_FILES
from mmgen.plugin.registry import get_registry
from mmgen.testing import idx_bytes
from mmgen_plugins.fashion_mnist import CLASSES, FashionMnistConfig, FashionMnistDataset
from mmgen_plugins.mnist import MnistConfig, MnistDataset
from tests.support import RECIPES_DIR

DATA_ROOT = os.environ.get("MMGEN_DATA_ROOT")  # read at import: conftest removes it while tests run
HAS_FASHION = bool(DATA_ROOT) and (Path(DATA_ROOT) / "FashionMNIST" / "raw").is_dir()
RECIPE = RECIPES_DIR / "fashion_mvae.toml"
N_TRAIN, N_TEST, VAL = 30, 10, 10


def write_split_files(folder: Path, gz: bool, offset: int = 0) -> None:
    """The four files, each image filled with 20 * its label + offset, so pairing and source are checkable."""
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", N_TRAIN), ("t10k", N_TEST)):
        labels = np.random.default_rng(n).permutation(np.arange(n) % 10)
        images = np.broadcast_to((20 * labels + offset)[:, None, None], (n, 28, 28))
        for name, array in ((f"{prefix}-images-idx3-ubyte", images), (f"{prefix}-labels-idx1-ubyte", labels)):
            data = idx_bytes(np.ascontiguousarray(array))
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (folder / name).write_bytes(data)


def fashion(root: Path, **kw) -> FashionMnistDataset:
    return FashionMnistDataset(FashionMnistConfig(kind="fashion_mnist", root=str(root), **{"download": False, **kw}))


@pytest.fixture
def debian(tmp_path, monkeypatch) -> Path:
    """Where the Debian package's files are looked for in this test (empty until a test writes there)."""
    folder = tmp_path / "usr-share-datasets-fashion-mnist"
    monkeypatch.setattr(FashionMnistDataset, "system_dirs", (folder,))
    return folder


def check_splits(splits, offset: int = 0) -> None:
    sizes = {name: split["label"].shape[0] for name, split in splits.items()}
    assert sizes == {"train": N_TRAIN - VAL, "val": VAL, "test": N_TEST}
    for split in splits.values():
        image, label = split["image"], split["label"]
        assert image.dtype == torch.uint8 and image.shape[1:] == (1, 28, 28) and label.dtype == torch.int64
        assert torch.equal(image[:, 0, 14, 14].long(), 20 * label + offset)  # each image still has its own label


def test_reads_torchvision_layout(tmp_path, debian):
    write_split_files(tmp_path / "FashionMNIST" / "raw", gz=False)
    write_split_files(tmp_path / "MNIST" / "raw", gz=False, offset=1)  # a neighbour it must not read
    write_split_files(debian, gz=True, offset=2)  # root comes first
    check_splits(fashion(tmp_path, val_size=VAL).load())


def test_reads_debian_gzipped_files(tmp_path, debian):
    write_split_files(debian, gz=True)
    check_splits(fashion(tmp_path / "empty", val_size=VAL).load())


def test_debian_and_torchvision_layouts_give_the_same_splits(tmp_path, debian):
    write_split_files(tmp_path / "FashionMNIST" / "raw", gz=False)
    write_split_files(debian, gz=True)
    a, b = fashion(tmp_path, val_size=VAL).load(), fashion(tmp_path / "empty", val_size=VAL).load()
    assert all(torch.equal(a[s][f], b[s][f]) for s in a for f in a[s])


def test_truncated_gz_file_is_a_data_error(tmp_path, debian):
    write_split_files(debian, gz=True)
    path = debian / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-5]))
    with pytest.raises(DataError, match="truncated"):
        fashion(tmp_path / "empty", val_size=VAL).load()


@pytest.mark.parametrize("download", [False, True], ids=["download-off", "download-fails"])
def test_missing_everywhere_names_every_place_and_file(tmp_path, debian, download):
    (debian / "train-images-idx3-ubyte.gz").parent.mkdir(parents=True)
    (debian / "train-images-idx3-ubyte.gz").write_bytes(b"")  # only one of the four: still not usable
    root = tmp_path / "empty"
    with pytest.raises(DataError) as err:
        fashion(root, download=download).load()  # conftest blocks the network, so a download fails
    message = str(err.value)
    assert "\n" not in message
    places, why = message.split("; ", 1)  # where it looked; then why no download helped
    assert str(root / "FashionMNIST" / "raw") in places and str(debian) in places
    assert all(name in places for name in RAW_FILES)
    assert all(f"{name}.gz" in places for name in RAW_FILES[1:])
    assert "train-images-idx3-ubyte.gz" not in places  # the one that is there is not called missing
    assert why.startswith("downloading it failed" if download else "download is off")


def test_cli_reports_missing_data_in_one_line(cli, cli_error, tmp_path, debian):
    result = cli("train", RECIPE, f"data.root='{tmp_path.as_posix()}'", "data.download=false", "--out", tmp_path / "r")
    line = cli_error(result)
    assert "FashionMNIST not found" in line and str(debian) in line


def test_split_is_deterministic_and_the_same_as_mnist(tiny_mnist_root):
    """The tiny root holds the same files under MNIST/ and FashionMNIST/: the splits must agree."""
    kw = {"root": str(tiny_mnist_root), "download": False, "val_size": 50}
    first, again = (FashionMnistDataset(FashionMnistConfig(kind="fashion_mnist", **kw)).load() for _ in range(2))
    mnist = MnistDataset(MnistConfig(kind="mnist", **kw)).load()
    other = FashionMnistDataset(FashionMnistConfig(kind="fashion_mnist", split_seed=1, **kw)).load()
    for s in first:
        for f in first[s]:
            assert torch.equal(first[s][f], again[s][f]) and torch.equal(first[s][f], mnist[s][f])
    assert not torch.equal(first["val"]["image"], other["val"]["image"])  # the seed picks the validation set
    assert first["train"]["label"].shape[0] + first["val"]["label"].shape[0] == 300


def test_registered_with_class_names_matching_torchvision_and_the_recipe():
    from torchvision.datasets import FashionMNIST

    reg = get_registry().datasets["fashion_mnist"]
    assert reg.cls is FashionMnistDataset and reg.package == "mmgen"
    assert FashionMnistDataset.fields == {"image": "image", "label": "label"}
    assert FashionMnistDataset.class_field == "label"
    assert list(CLASSES) == FashionMNIST.classes
    assert tomllib.loads(RECIPE.read_text())["modalities"]["label"]["classes"] == list(CLASSES)


@pytest.mark.skipif(not HAS_FASHION, reason="set MMGEN_DATA_ROOT to a folder with FashionMNIST/raw")
def test_real_fashion_splits():
    splits = fashion(Path(DATA_ROOT)).load()
    assert {s: v["label"].shape[0] for s, v in splits.items()} == {"train": 50_000, "val": 10_000, "test": 10_000}
    for split in splits.values():
        assert split["image"].dtype == torch.uint8 and split["image"].shape[1:] == (1, 28, 28)
        assert split["label"].dtype == torch.int64
        assert int(split["label"].min()) == 0 and int(split["label"].max()) == 9
    # Fashion-MNIST (unlike MNIST) has exactly 6000 training and 1000 test images per class.
    counts = torch.bincount(torch.cat([splits["train"]["label"], splits["val"]["label"]]), minlength=10)
    assert counts.tolist() == [6000] * 10
    assert torch.bincount(splits["test"]["label"], minlength=10).tolist() == [1000] * 10

"""Data sets made from MNIST by a seed (PolyMNIST-style, MultiMNIST) are byte-identical for the same seed
on any machine, differ for another seed, and are never downloaded; CelebA reads torchvision's layout
and names every file it expects when one is missing."""

from __future__ import annotations

import hashlib

import pytest
import torch

from mmgen import DataError, get_registry
from tests.support.celeba import write_tiny_celeba

# sha256 of the first 16 examples of every field of every split, made from mmgen.testing's tiny
# MNIST (seed 0). torch's CPU generator and integer arithmetic are the same everywhere, so these
# are the bytes on every machine; a change means the data sets changed (bump their cache keys too).
POLYMNIST_SHA = "156a90a8c6c0681c044b86909575fe44ac1a105652b757f356e1781191565990"
MULTIMNIST_SHA = "6f8c560b76409391d6797878d50901db5a90b810f82e8591a318f422d711262e"


def digest(splits) -> str:
    h = hashlib.sha256()
    for name in ("train", "val", "test"):
        for field in sorted(splits[name]):
            h.update(splits[name][field][:16].contiguous().numpy().tobytes())
    return h.hexdigest()


def dataset(kind: str, root, **cfg):
    cls = get_registry().datasets[kind].cls
    return cls(cls.Config(kind=kind, root=str(root), download=False, val_size=50, **cfg))


def test_polymnist_style_is_deterministic_and_distinct(tiny_mnist_root):
    a, b = dataset("polymnist_style", tiny_mnist_root).load(), dataset("polymnist_style", tiny_mnist_root).load()
    assert digest(a) == digest(b) == EXPECTED["polymnist_style"]
    assert digest(dataset("polymnist_style", tiny_mnist_root, texture_seed=1).load()) != digest(a)
    train = a["train"]
    assert set(train) == {"m0", "m1", "m2", "m3", "m4", "label"} and train["m0"].shape[1:] == (3, 28, 28)
    means = torch.stack([train[f"m{i}"].float().mean((0, 2, 3)) for i in range(5)])  # (5, 3)
    assert torch.cdist(means, means).triu(1)[torch.triu(torch.ones(5, 5), 1) > 0].min() > 1.0  # 5 backgrounds


@pytest.mark.parametrize(("kind", "settings"), [("polymnist_style", {"sample_seed": 2**63 - 1}),
                                               ("multimnist", {"seed": 2**63 - 1, "cache": False})])
def test_the_largest_seed_makes_a_data_set(tiny_mnist_root, kind, settings):
    """The seed times a prime plus the split's offset passes 64 bits: it wraps, as torch's generator takes 64."""
    splits = dataset(kind, tiny_mnist_root, **settings).load()
    assert digest(splits) != EXPECTED[kind]  # another seed, other data
    assert digest(dataset(kind, tiny_mnist_root, **settings).load()) == digest(splits)  # and the same each time


def test_multimnist_is_deterministic_cached_and_readable(tiny_mnist_root, tmp_path):
    import shutil

    root = shutil.copytree(tiny_mnist_root, tmp_path / "data")
    first = dataset("multimnist", root).load()
    assert digest(first) == EXPECTED["multimnist"]
    assert list((root / "MultiMNIST").glob("*/train.safetensors"))  # cached on disk
    again = dataset("multimnist", root).load()  # from the cache
    assert digest(again) == digest(first)
    train = first["train"]
    assert train["image"].shape[1:] == (1, 50, 50) and train["digits"].shape[1:] == (4,)
    counts = (train["digits"] > 0).sum(1)
    assert int(counts.min()) >= 1 and int(counts.max()) <= 4
    # the text holds the digits' classes, padding after: no digit after a pad
    assert bool(((train["digits"][:, 1:] > 0) <= (train["digits"][:, :-1] > 0)).all())


def test_celeba_reads_the_layout_and_names_missing_files(tmp_path):
    root = write_tiny_celeba(tmp_path / "data", n=20)
    splits = dataset_celeba(root).load()
    assert {k: splits[k]["image"].shape[0] for k in splits} == {"train": 12, "val": 4, "test": 4}
    assert splits["train"]["image"].shape[1:] == (3, 64, 64) and splits["train"]["attributes"].shape[1:] == (18,)
    reader = dataset_celeba(root).reader("train")
    torch.testing.assert_close(reader[3]["image"], splits["train"]["image"][3])  # the reader and the cache agree
    (root / "celeba" / "list_eval_partition.txt").unlink()
    with pytest.raises(DataError, match="missing: list_eval_partition.txt"):
        dataset_celeba(root, cache=False).load()


def dataset_celeba(root, **cfg):
    cls = get_registry().datasets["celeba"].cls
    return cls(cls.Config(kind="celeba", root=str(root), download=False, **cfg))


EXPECTED = {"polymnist_style": POLYMNIST_SHA, "multimnist": MULTIMNIST_SHA}

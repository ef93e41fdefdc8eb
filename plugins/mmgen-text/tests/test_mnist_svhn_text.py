"""MNIST-SVHN-Text: mmgen's MNIST-SVHN pairs plus the digit's name, and the three shipped recipes trained and
scored end to end on tiny files written in the published layouts (no SVHN copy exists here)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from mmgen import DataError, get_registry, load_tensors
from mmgen.cli import app
from mmgen.run.data_record import DATA_RECORD, check_data_record
from mmgen.testing import write_tiny_mnist
from typer.testing import CliRunner

from mmgen_text import dataset as text_plugin
from mmgen_text.spelling import DEFAULT_ALPHABET, DEFAULT_PAD, DIGIT_NAMES, to_strings

RECIPES = ["mnist_svhn_text_mvae", "mnist_svhn_text_mmvae", "mnist_svhn_text_mopoe"]
TINY_DATA = ["data.download=false", "data.val_size=20", "data.svhn_val_size=30", "data.pairs_per_instance=2"]
TINY_NETS = ["model.latent_dim=4", "modalities.mnist.channels=[4]", "modalities.svhn.channels=[4]",
             "modalities.text.channels=[4]", "modalities.text.embedding_dim=4"]


def write_svhn(root: Path, per_class: int = 14, seed: int = 0) -> None:
    """``<root>/SVHN/{train,test}_32x32.mat`` as published: X uint8 (32, 32, 3, N), y (N, 1), 10 for zero."""
    rng = np.random.default_rng(seed)
    (root / "SVHN").mkdir(parents=True, exist_ok=True)
    for split, count in (("train", per_class), ("test", per_class // 2)):
        digits = np.repeat(np.arange(10), count)
        rng.shuffle(digits)
        X = rng.integers(0, 256, (32, 32, 3, digits.size), dtype=np.uint8)
        y = np.where(digits == 0, 10, digits).astype(np.uint8).reshape(-1, 1)
        scipy.io.savemat(root / "SVHN" / f"{split}_32x32.mat", {"X": X, "y": y})


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = write_tiny_mnist(tmp_path_factory.mktemp("mnist_svhn_text"), n_train=120, n_test=40)
    write_svhn(root)
    return root


def dataset(kind: str, root: Path, **cfg):
    cls = get_registry().datasets[kind].cls
    settings = {"download": False, "val_size": 20, "svhn_val_size": 30, "pairs_per_instance": 2, **cfg}
    return cls(cls.Config(kind=kind, root=str(root), **settings))


def test_the_pairs_are_mnist_svhns_and_each_text_spells_its_pairs_digit(data_root):
    plain, texts = dataset("mnist_svhn", data_root).load(), dataset("mnist_svhn_text", data_root).load()
    vocabulary = DEFAULT_PAD + DEFAULT_ALPHABET
    for split in ("train", "val", "test"):
        for field in ("mnist", "svhn", "label"):
            assert torch.equal(texts[split][field], plain[split][field]), (split, field)
        text, labels = texts[split]["text"], texts[split]["label"]
        assert text.shape == (labels.shape[0], 8) and text.dtype == torch.int64
        strings = to_strings(text, vocabulary)
        assert [s.strip("_") for s in strings] == [DIGIT_NAMES[c] for c in labels.tolist()]
    # Placed at random: "one" takes every offset from 0 to 8 - 3 among the training texts.
    ones = [s.index("one") for s, c in zip(to_strings(texts["train"]["text"], vocabulary),
                                           texts["train"]["label"].tolist(), strict=True) if c == 1]
    assert set(ones) == set(range(6))


def test_the_texts_are_seeded_and_recorded_with_the_pairs(data_root):
    first = dataset("mnist_svhn_text", data_root).record()
    assert torch.equal(first["train/text_offset"], dataset("mnist_svhn_text", data_root).record()["train/text_offset"])
    other = dataset("mnist_svhn_text", data_root, text_seed=1)
    assert not torch.equal(other.load()["train"]["text"], dataset("mnist_svhn_text", data_root).load()["train"]["text"])
    record = other.record()
    assert torch.equal(record["train/mnist"], first["train/mnist"])  # the same pairs, other offsets
    assert not torch.equal(record["train/text_offset"], first["train/text_offset"])
    text = other.load()["test"]["text"]
    assert torch.equal(record["test/text_offset"].long(), (text != 0).long().argmax(1))  # the first letter


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("name", RECIPES)
def test_the_recipe_trains_and_eval_scores_coherence_with_svhn(name, data_root, tmp_path):
    recipe = text_plugin.RECIPES / f"{name}.toml"
    assert recipe.read_text().startswith("# ") and f"mmgen train {name}" in recipe.read_text().split("\n\n")[0]
    run = tmp_path / "run"
    result = cli("train", name, *TINY_NETS, *TINY_DATA, f"data.root='{data_root.as_posix()}'", "train.epochs=1",
                 "train.batch_size=64", "--out", run, "--device", "cpu")
    assert result.exit_code == 0, result.output
    saved, _ = load_tensors(run / DATA_RECORD)  # the pairs and the texts' offsets, saved when the run began
    assert {"train/mnist", "train/svhn", "test/text_offset", "files/svhn"} <= set(saved)
    result = cli("eval", run, "-K", "2", "--limit", "40", "--per-class", "2", "--no-pictures", "--device", "cpu")
    assert result.exit_code == 0, result.output
    report = json.loads((run / "eval.json").read_text())
    # SVHN read by the CNN judge eval trains on the svhn field, and SVHN read into text by the model.
    for key in ("classifier accuracy svhn (test)", "coherence text->svhn", "accuracy svhn->text"):
        assert 0 <= report[key] <= 1, (key, sorted(report))
    assert set(report["conditional coherence per target"]) == {"mnist", "svhn", "text"}
    assert 0 <= report["conditional coherence per target"]["svhn"]["2"] <= 1  # svhn from {mnist, text}
    ours = dataset("mnist_svhn_text", data_root)
    check_data_record(run, ours)  # the data the run was trained on
    with pytest.raises(DataError, match="train/text_offset.* differ"):
        check_data_record(run, dataset("mnist_svhn_text", data_root, text_seed=3))

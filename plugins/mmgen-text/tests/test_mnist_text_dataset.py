"""The mnist_text dataset on a tiny MNIST written by conftest.py: texts spell labels, reproducibly."""

from __future__ import annotations

import pytest
import torch
from mmgen import DataError, get_registry

from mmgen_text.dataset import MnistTextConfig, MnistTextDataset
from mmgen_text.spelling import DIGIT_NAMES, to_strings

VOCABULARY = "_abcdefghijklmnopqrstuvwxyz"


def load(root, **overrides):
    config = MnistTextConfig(kind="mnist_text", root=str(root), download=False, val_size=20, **overrides)
    return MnistTextDataset(config).load()


def test_every_text_spells_its_label_padded_to_the_length(tiny_mnist):
    splits = load(tiny_mnist, text_length=10)
    assert {k: len(v["text"]) for k, v in splits.items()} == {"train": 100, "val": 20, "test": 40}
    for split in splits.values():
        text, label = split["text"], split["label"]
        assert text.dtype == torch.long and text.shape == (len(label), 10)
        strings = to_strings(text, VOCABULARY)
        assert [s.strip("_") for s in strings] == [DIGIT_NAMES[k] for k in label.tolist()]


def test_offsets_are_random_but_fixed_by_the_seed(tiny_mnist):
    first, again, other = load(tiny_mnist), load(tiny_mnist), load(tiny_mnist, text_seed=1)
    for name in first:
        assert torch.equal(first[name]["text"], again[name]["text"])
    assert not torch.equal(first["train"]["text"], other["train"]["text"])
    ones = [s for s in to_strings(first["train"]["text"], VOCABULARY) if s.strip("_") == "one"]
    assert len({s.index("o") for s in ones}) > 2  # "one" sits at several of its 6 offsets


def test_images_labels_and_splits_are_mnists(tiny_mnist):
    ours = load(tiny_mnist)
    MnistDataset = get_registry().datasets["mnist"].cls  # mmgen's own MNIST, as any plugin finds it
    mnist = MnistDataset(MnistDataset.Config(kind="mnist", root=str(tiny_mnist), download=False, val_size=20)).load()
    for name in mnist:
        assert torch.equal(ours[name]["image"], mnist[name]["image"])
        assert torch.equal(ours[name]["label"], mnist[name]["label"])
    assert MnistTextDataset.fields == {"image": "image", "label": "label", "text": "text"}
    assert MnistTextDataset.class_field == "label"


def test_missing_files_are_a_data_error_naming_the_folder(tmp_path, monkeypatch):
    # mmgen's MNIST may also look in system folders; none here, so this root is all there is.
    monkeypatch.setattr(MnistTextDataset, "system_dirs", (), raising=False)
    with pytest.raises(DataError) as info:
        load(tmp_path)
    message = str(info.value)
    assert str(tmp_path / "MNIST" / "raw") in message and "train-images-idx3-ubyte" in message


def test_a_text_length_too_short_for_the_names_is_refused():
    with pytest.raises(ValueError, match="greater than or equal to 5"):
        MnistTextConfig(kind="mnist_text", text_length=4)

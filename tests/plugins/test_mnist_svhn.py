"""MNIST-SVHN: SVHN read in its published layout, pairs matched by class as the MMVAE code does, the pairing
saved in the run and a changed one refused. No SVHN copy exists here: every file is a tiny one written in
the published layout (``X`` uint8 (32, 32, 3, N), ``y`` (N, 1) with 10 for the digit 0)."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from mmgen import DataError, get_registry, load_tensors
from mmgen.data.svhn import match_by_class, read_svhn_mat
from mmgen.run.data_record import DATA_RECORD, check_data_record, save_data_record
from mmgen.testing import write_tiny_mnist
from tests.conftest import run_cli

SVHN_COUNTS = {"train": [6 + 2 * c for c in range(10)], "test": [3 + c for c in range(10)]}  # per digit 0..9
# sha256 of the record of the tiny data below (seeds 0): torch's CPU generator is the same on every machine,
# so a change means the pairing changed and runs trained before would no longer be scored.
RECORD_SHA = "0daba498715f30941b54c9cb795b4619e21de7d4c5846ad185e904584a7887d7"


def write_svhn(root: Path, seed: int = 0, counts: dict[str, list[int]] = SVHN_COUNTS) -> dict[str, dict]:
    """``<root>/SVHN/{train,test}_32x32.mat`` as published; pixel (0, 0) of each image holds its index."""
    rng = np.random.default_rng(seed)
    (root / "SVHN").mkdir(parents=True, exist_ok=True)
    written = {}
    for split, per_class in counts.items():
        digits = np.repeat(np.arange(10), per_class)
        rng.shuffle(digits)
        n = digits.size
        X = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)  # (H, W, C, N)
        X[0, 0, 0], X[0, 0, 1] = np.arange(n) % 256, np.arange(n) // 256
        y = np.where(digits == 0, 10, digits).astype(np.uint8).reshape(n, 1)  # SVHN's 10 is the digit 0
        scipy.io.savemat(root / "SVHN" / f"{split}_32x32.mat", {"X": X, "y": y})
        written[split] = {"X": X, "y": y}
    return written


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = write_tiny_mnist(tmp_path_factory.mktemp("mnist_svhn"), n_train=120, n_test=40)
    write_svhn(root)
    return root


def dataset(root, kind="mnist_svhn", **cfg):
    cls = get_registry().datasets[kind].cls
    settings = {"download": False, "val_size": 20, "svhn_val_size": 30, "pairs_per_instance": 3, **cfg}
    return cls(cls.Config(kind=kind, root=str(root), **settings))


def test_svhn_is_read_as_published_with_ten_as_zero(tmp_path):
    raw = write_svhn(tmp_path)["train"]
    images, labels = read_svhn_mat(tmp_path / "SVHN" / "train_32x32.mat")
    n = raw["X"].shape[3]
    assert images.shape == (n, 3, 32, 32) and images.dtype == torch.uint8 and labels.dtype == torch.int64
    assert torch.equal(images[5, 2, 7, 3], torch.tensor(raw["X"][7, 3, 2, 5]))  # (N, C, H, W) from (H, W, C, N)
    assert torch.equal(images.permute(2, 3, 1, 0), torch.from_numpy(raw["X"]))
    assert torch.equal(labels, torch.from_numpy(raw["y"].reshape(-1).astype(np.int64) % 10))
    assert int((labels == 0).sum()) == SVHN_COUNTS["train"][0] and int(labels.max()) == 9


def test_fields_and_shapes_and_every_pair_shows_one_digit(data_root):
    ds = dataset(data_root)
    splits, src, pairs = ds.load(), ds.sources(), ds.pairs()
    assert set(splits) == {"train", "val", "test"} and ds.class_field == "label"
    for split, fields in splits.items():
        n = fields["label"].shape[0]
        assert set(fields) == {"mnist", "svhn", "label"} and n > 0
        assert fields["mnist"].shape == (n, 1, 28, 28) and fields["mnist"].dtype == torch.uint8
        assert fields["svhn"].shape == (n, 3, 32, 32) and fields["svhn"].dtype == torch.uint8
        assert fields["label"].dtype == torch.int64
        official = "test" if split == "test" else "train"
        (mnist_images, mnist_labels), (svhn_images, svhn_labels) = src["mnist"][official], src["svhn"][official]
        a, b = pairs[split]
        assert torch.equal(mnist_labels[a], fields["label"]) and torch.equal(svhn_labels[b], fields["label"])
        assert torch.equal(mnist_images[a], fields["mnist"]) and torch.equal(svhn_images[b], fields["svhn"])
    # The index in pixel (0, 0) says which test file image each test pair holds.
    test_svhn = splits["test"]["svhn"][:, :2, 0, 0].long()
    assert torch.equal(test_svhn[:, 0] + 256 * test_svhn[:, 1], pairs["test"][1])


def test_each_used_image_is_in_k_pairs_and_the_first_n_of_each_class_are_used():
    labels_a = torch.tensor([3, 1, 3, 1, 1, 3, 7])  # class 1: 3 images, class 3: 3, class 7: 1
    labels_b = torch.tensor([1, 3, 3, 1, 9, 1, 1, 1])  # class 1: 5 images, class 3: 2, class 7: none
    a, b = match_by_class(labels_a, labels_b, 4, torch.Generator().manual_seed(0))
    assert torch.equal(labels_a[a], labels_b[b])
    # Per class n = the smaller count; the first n of each side in file order, each in exactly k = 4 pairs.
    assert Counter(a.tolist()) == {1: 4, 3: 4, 4: 4, 0: 4, 2: 4}
    assert Counter(b.tolist()) == {0: 4, 3: 4, 5: 4, 1: 4, 2: 4}


def test_in_the_data_set_every_used_image_is_in_k_pairs_of_its_split(data_root):
    ds = dataset(data_root, pairs_per_instance=3, val_pairs_per_instance=2)
    labels = {name: ds.sources()[name]["train"][1] for name in ("mnist", "svhn")}
    for split, k in (("train", 3), ("val", 2)):
        a, b = ds.pairs()[split]
        assert set(Counter(a.tolist()).values()) == {k} and set(Counter(b.tolist()).values()) == {k}
        for c in range(10):  # n per class: the smaller of the two classes' counts among the split's images
            n = min(len(set(a[labels["mnist"][a] == c].tolist())), len(set(b[labels["svhn"][b] == c].tolist())))
            assert int((labels["mnist"][a] == c).sum()) == k * n
    test_a, _ = ds.pairs()["test"]
    assert len(test_a) == 3 * sum(min(4, SVHN_COUNTS["test"][c]) for c in range(10))  # 40 MNIST test images: 4 a class


def test_no_validation_pair_shares_an_image_with_a_training_pair(data_root):
    ds = dataset(data_root)
    (train_a, train_b), (val_a, val_b) = ds.pairs()["train"], ds.pairs()["val"]
    assert not set(train_a.tolist()) & set(val_a.tolist()) and not set(train_b.tolist()) & set(val_b.tolist())
    # The held-out MNIST images are those of the mnist data set's validation split (same split_seed).
    mnist = get_registry().datasets["mnist"].cls
    val_images = mnist(mnist.Config(kind="mnist", root=str(data_root), download=False, val_size=20)).load()["val"]
    images = ds.sources()["mnist"]["train"][0]
    held_out = {bytes(x) for x in val_images["image"].numpy()}
    assert {bytes(x) for x in images[val_a].numpy()} <= held_out  # validation pairs: held-out images only
    assert not {bytes(x) for x in images[train_a].numpy()} & held_out  # training pairs: none of them


def record_sha(record) -> str:
    h = hashlib.sha256()
    for name in sorted(record):
        h.update(name.encode() + record[name].contiguous().numpy().tobytes())
    return h.hexdigest()


def test_the_pairing_is_seeded_and_another_seed_gives_another(data_root):
    first, again = dataset(data_root).record(), dataset(data_root).record()
    assert record_sha(first) == record_sha(again) == RECORD_SHA
    other = dataset(data_root, match_seed=1).record()
    assert not torch.equal(other["train/mnist"], first["train/mnist"])
    assert torch.equal(other["files/svhn"], first["files/svhn"])  # the same files
    assert not torch.equal(dataset(data_root, split_seed=1).record()["val/mnist"], first["val/mnist"])


def test_missing_svhn_files_are_one_line_naming_them(tmp_path):
    root = write_tiny_mnist(tmp_path, n_train=40, n_test=20)
    with pytest.raises(DataError) as info:
        dataset(root).load()
    line = str(info.value)
    assert "\n" not in line and "train_32x32.mat, test_32x32.mat" in line and str(root / "SVHN") in line
    assert line.endswith("download is off")
    write_svhn(root)
    (root / "SVHN" / "test_32x32.mat").unlink()
    with pytest.raises(DataError, match=r"lacks test_32x32\.mat \(torchvision's layout"):
        dataset(root).load()


def test_a_failed_download_is_one_line_and_leaves_no_empty_folder(tmp_path):
    root = write_tiny_mnist(tmp_path, n_train=40, n_test=20)
    with pytest.raises(DataError, match="lacks train_32x32.mat, test_32x32.mat .*; downloading it failed"):
        dataset(root, download=True).load()  # the tests' sockets refuse every connection
    assert not (root / "SVHN").exists()


def test_a_file_in_another_layout_is_one_line(tmp_path):
    root = write_tiny_mnist(tmp_path, n_train=40, n_test=20)
    write_svhn(root)
    scipy.io.savemat(root / "SVHN" / "train_32x32.mat", {"X": np.zeros((28, 28, 5), np.uint8), "y": np.ones((5, 1))})
    with pytest.raises(DataError, match=r"not in SVHN's layout: expected X \(32, 32, 3, N\)"):
        dataset(root).load()
    (root / "SVHN" / "train_32x32.mat").write_bytes(b"not a mat file")
    with pytest.raises(DataError, match="could not read SVHN from"):
        dataset(root).load()


TINY = """\
name = "tiny_mnist_svhn"
seed = 0

[model]
latent_dim = 4

[modalities.mnist]
kind = "conv_image"
shape = [1, 28, 28]
channels = [4]
likelihood = "laplace"
scale = 0.75

[modalities.svhn]
kind = "conv_image"
shape = [3, 32, 32]
channels = [4]
likelihood = "laplace"
scale = 0.75

[data]
kind = "mnist_svhn"
root = "{root}"
download = false
val_size = 20
svhn_val_size = 30
pairs_per_instance = 2

[train]
epochs = 1
batch_size = 64
anneal_epochs = 0
device = "cpu"
"""


@pytest.fixture(scope="module")
def trained(data_root, tmp_path_factory):
    folder = tmp_path_factory.mktemp("mnist_svhn_run")
    recipe = folder / "tiny.toml"
    recipe.write_text(TINY.format(root=data_root.as_posix()))
    result = run_cli("train", recipe, "--out", folder / "run")
    assert result.exit_code == 0, result.output
    return folder / "run"


def test_the_run_saves_the_pairing_and_refuses_another(trained, data_root):
    saved, meta = load_tensors(trained / DATA_RECORD)
    ds = dataset(data_root, pairs_per_instance=2)
    assert torch.equal(saved["train/mnist"].long(), ds.pairs()["train"][0]) and meta == {"dataset": "MnistSvhnDataset"}
    check_data_record(trained, ds)  # the same pairing: nothing to say
    with pytest.raises(DataError) as info:
        check_data_record(trained, dataset(data_root, pairs_per_instance=2, match_seed=5))
    line = str(info.value)
    assert "\n" not in line and "test/mnist, test/svhn, train/mnist, train/svhn, val/mnist, val/svhn differ" in line


def test_other_files_are_refused_and_runs_or_data_sets_without_a_record_pass(trained, data_root, tmp_path):
    other = write_tiny_mnist(tmp_path / "other", n_train=120, n_test=40)
    raw = write_svhn(other)["train"]
    raw["X"][9, 9, 1, 0] ^= 1  # one pixel changed: the same labels, so the same pairs, from other files
    scipy.io.savemat(other / "SVHN" / "train_32x32.mat", raw)
    with pytest.raises(DataError, match=r"\(files/svhn differ\)"):
        check_data_record(trained, dataset(other, pairs_per_instance=2))
    mnist = get_registry().datasets["mnist"].cls
    plain = mnist(mnist.Config(kind="mnist", root=str(data_root), download=False))
    assert plain.record() == {} and not save_data_record(tmp_path, plain) and not (tmp_path / DATA_RECORD).exists()
    check_data_record(trained, plain)  # a data set that records nothing
    check_data_record(tmp_path, dataset(other))  # a run without a record


def test_a_resume_on_files_that_now_pair_otherwise_is_refused(tmp_path, cli, cli_error):
    root = write_tiny_mnist(tmp_path / "data", n_train=120, n_test=40)
    write_svhn(root)
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(TINY.format(root=root.as_posix()))
    assert cli("train", recipe, "--out", tmp_path / "run").exit_code == 0
    write_svhn(root, counts={"train": [9] * 10, "test": [3] * 10})  # the same place, other files
    line = cli_error(cli("train", tmp_path / "run", "--resume", "train.epochs=2"))
    assert "differ): another data seed or other data files than the run was trained on" in line


def test_a_run_that_diverges_before_its_first_checkpoint_leaves_nothing(data_root, tmp_path, cli, cli_error):
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(TINY.format(root=data_root.as_posix()))
    out = tmp_path / "run"
    line = cli_error(cli("train", recipe, "--out", out, "train.max_loss=1e-9", "train.log_every=1"))
    assert "diverged at epoch 1" in line and not out.exists()  # the data record went with the rest

"""The released PolyMNIST (kind ``polymnist``) read from tiny trees written in the release's layout:
``<root>/PolyMNIST/{train,test}/m0..m4/<index>.<label>.png``, 28x28 RGB. Each image carries its own
identity in its first pixels (label, index, modality), so a test sees exactly which file landed where."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from mmgen import DataError, get_registry
from mmgen_plugins.polymnist_released import PolyMnistReleasedDataset

RECIPE = Path(__file__).parents[2] / "recipes" / "polymnist_mvae.toml"
TRAIN_COUNTS = (4, 4, 4, 4, 4, 4, 4, 4, 3, 4)  # examples per class; class 8 has one fewer (its indices 0..2)
TEST_COUNTS = (2,) * 10


def image(label: int, index: int, modality: int, side: int = 28, channels: int = 3) -> torch.Tensor:
    """uint8 ``(C, side, side)``: noise whose pixel (0, 0) holds label, index and modality in its channels."""
    g = torch.Generator().manual_seed(1000 * modality + 10 * index + label)
    pixels = torch.randint(0, 256, (channels, side, side), dtype=torch.uint8, generator=g)
    pixels[:, 0, 0] = torch.tensor([label, index, modality][:channels], dtype=torch.uint8)
    return pixels


def write_png(pixels: torch.Tensor, path: str) -> None:
    """uint8 ``(C, H, W)`` -> a PNG through Pillow (as the release was written): RGB for 3 channels, grey for 1."""
    Image.fromarray(pixels.permute(1, 2, 0).squeeze(-1).numpy()).save(path)


def write_release(root: Path, train=TRAIN_COUNTS, test=TEST_COUNTS) -> Path:
    """The release's layout under ``root``; each modality's files written in another order."""
    for split, counts in (("train", train), ("test", test)):
        for m in range(5):
            folder = root / "PolyMNIST" / split / f"m{m}"
            folder.mkdir(parents=True)
            files = [(label, i) for label, n in enumerate(counts) for i in range(n)]
            for label, i in files[m:] + files[:m]:
                write_png(image(label, i, m), str(folder / f"{i}.{label}.png"))
    return root


def dataset(root: Path, **settings) -> PolyMnistReleasedDataset:
    cls = get_registry().datasets["polymnist"].cls
    return cls(cls.Config(kind="polymnist", root=str(root), val_size=settings.pop("val_size", 8), **settings))


def identities(split: dict[str, torch.Tensor]) -> list[tuple[int, int]]:
    """(label, index) of every example, read from m0's first pixel."""
    return [tuple(p) for p in split["m0"][:, :2, 0, 0].tolist()]


@pytest.fixture
def release(tmp_path) -> Path:
    return write_release(tmp_path / "data")


def test_registered_with_the_fields_of_polymnist_style():
    registry = get_registry().datasets
    assert registry["polymnist"].cls is PolyMnistReleasedDataset
    assert PolyMnistReleasedDataset.fields == registry["polymnist_style"].cls.fields
    assert PolyMnistReleasedDataset.class_field == "label"


def test_load_gives_aligned_modalities_and_the_labels_of_the_file_names(release):
    splits = dataset(release).load()
    assert {k: len(v["label"]) for k, v in splits.items()} == {"train": 31, "val": 8, "test": 20}
    for split in splits.values():
        assert set(split) == {"m0", "m1", "m2", "m3", "m4", "label"} and split["label"].dtype == torch.int64
        for m in range(5):
            x = split[f"m{m}"]
            assert x.dtype == torch.uint8 and x.shape[1:] == (3, 28, 28)
            assert torch.equal(x[:, 2, 0, 0], torch.full_like(x[:, 2, 0, 0], m))  # modality m's own file
            assert torch.equal(x[:, :2, 0, 0], split["m0"][:, :2, 0, 0])  # the same (label, index) in every view
        assert torch.equal(split["m0"][:, 0, 0, 0].long(), split["label"])  # the label parsed from the name
    for m in range(5):  # the pixels themselves, not only the tags
        label, index = identities(splits["test"])[7]
        assert torch.equal(splits["test"][f"m{m}"][7], image(label, index, m))


def test_the_test_split_interleaves_the_classes(release):
    """Ordered by index, then label: ``mmgen eval --limit 10`` sees every class once."""
    test = dataset(release).load()["test"]
    assert test["label"][:10].tolist() == list(range(10))
    assert identities(test)[:12] == [(k, 0) for k in range(10)] + [(0, 1), (1, 1)]


def test_validation_is_a_seeded_disjoint_part_of_the_training_files(release):
    a, b = dataset(release).load(), dataset(release).load()
    other = dataset(release, split_seed=1).load()
    assert identities(a["val"]) == identities(b["val"]) and identities(a["train"]) == identities(b["train"])
    assert set(identities(other["val"])) != set(identities(a["val"]))
    every_file = {(label, i) for label, n in enumerate(TRAIN_COUNTS) for i in range(n)}
    train, val = set(identities(a["train"])), set(identities(a["val"]))
    assert not train & val and train | val == every_file and len(val) == 8
    small = dataset(release, train_size=5).load()
    assert identities(small["train"]) == identities(a["train"])[:5] and identities(small["val"]) == identities(a["val"])


def test_a_val_size_as_large_as_the_training_set_is_refused(release):
    with pytest.raises(DataError, match=r"data.val_size=39 leaves no training examples out of 39"):
        dataset(release, val_size=39).load()


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_a_missing_release_says_where_it_belongs_and_downloads_nothing(tmp_path):
    with pytest.raises(DataError) as exc:
        dataset(tmp_path / "empty").load()
    message = one_line(exc)
    assert f"{tmp_path / 'empty' / 'PolyMNIST'}/train/m0..m4" in message and "downloads nothing" in message
    assert "polymnist_style" in exc.value.hint
    assert not (tmp_path / "empty").exists()  # nothing made, nothing fetched


def test_a_root_that_is_the_release_folder_itself_is_pointed_out(release):
    with pytest.raises(DataError, match=r"PolyMNIST/train exists: data.root names the folder above it"):
        dataset(release / "PolyMNIST").load()


def test_the_folder_name_of_moPoEs_job_script_is_read_too(release):
    (release / "PolyMNIST").rename(release / "MMNIST")
    assert len(dataset(release).load()["test"]["label"]) == 20


def rename(path: Path, name: str) -> None:
    path.rename(path.with_name(name))


# Each breaks one thing of the tree; the error names the path and what was expected.
BREAKAGES = {
    "a missing modality folder": (
        lambda split: shutil.rmtree(split / "m3"),
        "train/m3 is missing: expected a folder of <index>.<label>.png files"),
    "a file missing from one modality": (
        lambda split: (split / "m2" / "1.5.png").unlink(),
        "train/m2 does not hold the same examples as .*train/m0: 1.5.png is in m0 only"),
    "an extra file in one modality": (
        lambda split: write_png(image(7, 9, 4), str(split / "m4" / "9.7.png")),
        "train/m4 does not hold the same examples .*9.7.png is in m4 only"),
    "a label that disagrees": (
        lambda split: rename(split / "m1" / "3.3.png", "3.8.png"),
        "train/m1 does not hold .*example 3 has label 3 in m0 but 8 in m1"),
    "an image not 28x28": (
        lambda split: write_png(image(5, 0, 4, side=32), str(split / "m4" / "0.5.png")),
        r"train/m4/0.5.png: decodes to RGB 32x32, expected RGB 28x28"),
    "a grey image": (
        lambda split: write_png(image(5, 0, 0, channels=1), str(split / "m0" / "0.5.png")),
        r"train/m0/0.5.png: decodes to L 28x28, expected RGB 28x28"),
    "a file that is not a PNG": (
        lambda split: (split / "m2" / "2.2.png").write_bytes(b"not a png"),
        r"train/m2/2.2.png: cannot read it as a PNG"),
    "a truncated PNG": (
        lambda split: (split / "m3" / "1.1.png").write_bytes((split / "m3" / "1.1.png").read_bytes()[:200]),
        r"train/m3/1.1.png: cannot read it as a PNG \(image file is truncated"),
    "a name without a label": (
        lambda split: (split / "m0" / "notes.png").write_bytes(b""),
        r"train/m0/notes.png: expected a name <index>.<label>.png"),
}


@pytest.mark.parametrize("breakage", BREAKAGES)
def test_a_broken_tree_is_one_line_naming_the_path(release, breakage):
    damage, expected = BREAKAGES[breakage]
    damage(release / "PolyMNIST" / "train")
    with pytest.raises(DataError) as exc:
        dataset(release, val_size=38).load()  # every training file is decoded: 38 for validation, 1 to train
    assert str(release / "PolyMNIST") in one_line(exc)
    assert exc.match(expected)


def overrides(root: Path) -> list[str]:
    """recipes/polymnist_mvae.toml shrunk to seconds: the released data, tiny networks, one short epoch."""
    shrink = [f"modalities.m{m}.channels=[4,8]" for m in range(5)]
    return ["data.kind=polymnist", f"data.root={root.as_posix()}", "data.val_size=10", "train.epochs=1",
            "train.batch_size=10", "train.anneal_epochs=1", *shrink]


def test_the_cli_reports_a_missing_release_in_one_line(cli, cli_error, workdir):
    result = cli("train", RECIPE, *overrides(workdir / "nowhere"), "--out", workdir / "run", "--device", "cpu")
    line = cli_error(result)
    assert "PolyMNIST not found" in line and "polymnist_style" in line


def test_a_polymnist_recipe_trains_and_evaluates_on_the_release(cli, workdir, monkeypatch):
    monkeypatch.setenv("MMGEN_CACHE", str(workdir / "cache"))  # the judges trained here stay here
    root = write_release(workdir / "data")
    run = workdir / "run"
    result = cli("train", RECIPE, *overrides(root), "--out", run, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert json.loads((run / "recipe.json").read_text())["data"]["kind"] == "polymnist"
    result = cli("eval", run, "-K", "2", "--limit", "10", "--per-class", "2", "--device", "cpu", "--json",
                 "--no-pictures")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["examples"] == 10 and report["split"] == "test"
    assert set(report["conditional coherence"]) == {"1", "2", "3", "4"}  # given 1 to 4 of the 5 views
    assert 0 <= report["coherence joint"] <= 1

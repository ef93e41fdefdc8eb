"""End to end on the tiny IDX data: train through the CLI, inspect the run directory, sample it,
resume it, make it diverge, and use it from Python. One epoch is 5 steps (250 examples, batch 50)."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file

import mmgen
from mmgen_plugins.label import CategoricalLabel


def read_metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def digit_png(path: Path, label: int) -> Path:
    """A 28x28 grey PNG drawn like the tiny data set's digit ``label``."""
    x = np.zeros((28, 28), np.uint8)
    x[3 + 2 * label : 5 + 2 * label, 4:24] = 230
    col = 6 if label % 2 == 0 else 20
    x[4:24, col : col + 2] = 200
    Image.fromarray(x, "L").save(path)
    return path


def label_probs(stdout: str) -> list[float]:
    """The ``label: most likely K (p=..)  [0:p0  1:p1 ...]`` line -> [p0, ..., p9]."""
    cells = re.search(r"^label: most likely \d.*\[(.*)\]$", stdout, re.MULTILINE)
    assert cells, stdout
    return [float(c.split(":")[1]) for c in cells.group(1).split()]


# ---- training ----------------------------------------------------------------------------------
def test_train_writes_a_self_describing_run(trained_run):
    for name in ("best", "last", "trainer_state"):
        assert (trained_run / f"{name}.safetensors").stat().st_size > 0
    recipe = json.loads((trained_run / "recipe.json").read_text())
    # The resolved recipe: the override-free file plus defaults filled in (lr is not in the file).
    assert recipe["model"]["latent_dim"] == 8 and recipe["train"]["lr"] == 1e-3

    (row,) = read_metrics(trained_run)
    assert (row["epoch"], row["step"]) == (1, 5)
    val = {k: v for k, v in row.items() if k.startswith("val/")}
    assert {"val/loss", "val/elbo(image,label)", "val/elbo(image)", "val/elbo(label)"} <= set(val)
    assert all(math.isfinite(v) for k, v in row.items() if isinstance(v, float))

    versions = json.loads((trained_run / "versions.json").read_text())
    assert versions["torch"] == torch.__version__
    for plugin in ("image", "label", "poe", "mnist"):
        assert versions["plugins"][plugin]["package"] == "mmgen"


# ---- sampling ----------------------------------------------------------------------------------
def test_sample_png_is_a_grid(cli, trained_run, tmp_path):
    result = cli("sample", trained_run, "--given", "label=3", "-n", "16", "--out", tmp_path / "x.png")
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "x.png") as img:  # 4x4 tiles of 28 pixels, 2 of padding, captions left and above
        width, height = img.size
        assert width > 4 * 30 + 2 and 4 * 30 + 2 < height < 4 * 30 + 2 + 40
        assert img.text["Rows"].split("\n") == ["label=3"] * 4 and "given label=3" in img.text["Title"]


def test_sample_npy_holds_image_means(cli, trained_run, tmp_path):
    result = cli("sample", trained_run, "--given", "label=3", "-n", "5", "--out", tmp_path / "x.npy")
    assert result.exit_code == 0, result.output
    x = np.load(tmp_path / "x.npy")
    assert x.shape == (5, 1, 28, 28) and x.min() >= 0 and x.max() <= 1


def test_sample_prior_writes_images_to_out_and_labels_beside_it(cli, trained_run, tmp_path):
    result = cli("sample", trained_run, "-n", "6", "--out", tmp_path / "y.npy")
    assert result.exit_code == 0, result.output
    assert "p(z)" in result.stdout
    images = np.load(tmp_path / "y.npy")  # the file the user named holds the images
    assert images.shape == (6, 1, 28, 28) and images.min() >= 0 and images.max() <= 1
    labels = np.load(tmp_path / "y.label.npy")
    assert labels.shape == (6, 10)
    np.testing.assert_allclose(labels.sum(1), 1, atol=1e-5)
    assert not (tmp_path / "y.image.npy").exists()


def test_sample_given_image_to_npy_holds_label_probabilities(cli, trained_run, tmp_path):
    png = digit_png(tmp_path / "d.png", 3)
    result = cli("sample", trained_run, "--given", f"image={png}", "-n", "4", "--out", tmp_path / "p.npy")
    assert result.exit_code == 0, result.output
    probs = np.load(tmp_path / "p.npy")
    assert probs.shape == (4, 10)
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)


def test_sample_without_seed_differs_between_calls(cli, trained_run, tmp_path):
    # Loading a run must not reseed the global RNG (model building seeds a forked RNG).
    for name in ("a.npy", "b.npy"):
        assert cli("sample", trained_run, "--given", "label=2", "-n", "3", "--out", tmp_path / name).exit_code == 0
    assert not np.array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"))


def test_sample_given_image_prints_a_label_distribution(cli, trained_run, tmp_path):
    result = cli("sample", trained_run, "--given", f"image={digit_png(tmp_path / 'd.png', 3)}")
    assert result.exit_code == 0, result.output
    assert math.isclose(sum(label_probs(result.stdout)), 1, abs_tol=0.01)  # printed with 3 decimals


def test_the_readmes_round_trip_a_sampled_digit_given_back_as_an_image(cli, trained_run, tmp_path):
    # README: `sample --given label=7 -n 1 --out digit.png`, then `sample --given image=digit.png`.
    made = cli("sample", trained_run, "--given", "label=7", "-n", "1", "--seed", "0", "--out", tmp_path / "digit.png")
    assert made.exit_code == 0, made.output
    with Image.open(tmp_path / "digit.png") as img:
        assert img.size == (28, 28)  # one digit, not a grid with padding: usable as --given image=
    read = cli("sample", trained_run, "--given", f"image={tmp_path / 'digit.png'}")
    assert read.exit_code == 0, read.output
    assert math.isclose(sum(label_probs(read.stdout)), 1, abs_tol=0.01)


def test_sample_given_both_decodes_both(cli, trained_run, tmp_path):
    png = digit_png(tmp_path / "d.png", 3)
    result = cli(
        "sample", trained_run, "-g", "label=3", "-g", f"image={png}", "-n", "3", "--out", tmp_path / "z.npy"
    )
    assert result.exit_code == 0, result.output
    assert np.load(tmp_path / "z.npy").shape == (3, 1, 28, 28)  # images in the named file, labels beside it
    assert np.load(tmp_path / "z.label.npy").shape == (3, 10)


def test_sample_defaults_to_the_newest_run(cli, trained_run, workdir):
    old, new = workdir / "runs" / "old", workdir / "runs" / "new"
    shutil.copytree(trained_run, old)
    shutil.copytree(trained_run, new)
    os.utime(old, (time.time() - 3600,) * 2)
    os.utime(new, (time.time() - 60,) * 2)  # created second, but make the order explicit anyway
    result = cli("sample", "--given", "label=1", "--out", "s.npy")
    assert result.exit_code == 0, result.output
    assert f"run {Path('runs', 'new')} " in result.stdout
    assert (workdir / "s.npy").is_file()


def test_sample_seed_is_reproducible(cli, trained_run, tmp_path):
    def draw(seed, name):
        cli("sample", trained_run, "-g", "label=3", "-n", "4", "--seed", seed, "--out", tmp_path / name)
        return np.load(tmp_path / name)

    a, b, c = draw(7, "a.npy"), draw(7, "b.npy"), draw(8, "c.npy")
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_failed_train_does_not_hide_the_good_run(cli, trained_run, tiny_recipe, workdir):
    good = Path(shutil.copytree(trained_run, workdir / "runs" / "good"))
    os.utime(good, (time.time() - 3600,) * 2)
    failed = cli("train", tiny_recipe, f"data.root='{workdir / 'nodata'}'")  # no data there: fails
    assert failed.exit_code != 0
    result = cli("sample", "-g", "label=1", "--out", "s.npy")
    assert result.exit_code == 0, result.output


def test_python_api(trained_run):
    run = mmgen.load_run(trained_run, device="cpu")
    assert run.epoch == 1
    out = run.sample(4, given={"label": 3})
    assert list(out) == ["image"] and out["image"].shape == (4, 1, 28, 28)
    q = run.encode({"label": 3})
    assert q.batch_shape == (1,) and q.event_shape == (8,)
    decoded = run.decode(q.sample((5,)).reshape(5, 8))
    assert decoded["image"].shape == (5, 1, 28, 28)
    torch.testing.assert_close(decoded["label"].sum(-1), torch.ones(5))


# ---- resume and divergence ---------------------------------------------------------------------
def test_resume_matches_an_uninterrupted_run(cli, trained_run, tiny_recipe, tmp_path):
    resumed = Path(shutil.copytree(trained_run, tmp_path / "resumed"))
    result = cli("train", tiny_recipe, "--out", resumed, "--resume", "train.epochs=2")
    assert result.exit_code == 0, result.output
    rows = read_metrics(resumed)
    assert [(r["epoch"], r["step"]) for r in rows] == [(1, 5), (2, 10)]
    assert rows[1]["val/loss"] < rows[0]["val/loss"]  # the tiny data is learnable

    straight = tmp_path / "straight"
    assert cli("train", tiny_recipe, "--out", straight, "train.epochs=2").exit_code == 0
    a, b = load_file(resumed / "last.safetensors"), load_file(straight / "last.safetensors")
    assert a.keys() == b.keys()
    for key in a:  # same seed, same data order, same noise: bit for bit
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def test_nan_keeps_the_last_good_checkpoint(cli, cli_error, trained_run, tiny_recipe, tmp_path, monkeypatch):
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    before = (run / "last.safetensors").read_bytes()
    # Epoch 2 goes bad: the label decoder returns NaN logits.
    monkeypatch.setattr(CategoricalLabel, "decode", lambda self, z: self.decoder(z) * float("nan"))
    line = cli_error(cli("train", tiny_recipe, "--out", run, "--resume", "train.epochs=2"))
    assert "diverged at epoch 2" in line and "epoch 1" in line
    assert (run / "last.safetensors").read_bytes() == before
    assert len(read_metrics(run)) == 1
    monkeypatch.undo()
    assert mmgen.load_run(run, device="cpu", which="last").epoch == 1


def test_huge_learning_rate_diverges_in_the_first_epoch(cli, cli_error, tiny_recipe, tmp_path):
    line = cli_error(cli("train", tiny_recipe, "--out", tmp_path / "run", "train.lr=1e30"))
    assert "diverged at epoch 1" in line and "no checkpoint had been written yet" in line
    assert not (tmp_path / "run" / "last.safetensors").exists()


def test_resume_from_the_run_directory_alone(cli, trained_run, tmp_path):
    # trainer_state.safetensors is self-contained: even without last.safetensors the run continues.
    run = Path(shutil.copytree(trained_run, tmp_path / "alone"))
    (run / "last.safetensors").unlink()
    result = cli("train", run, "--resume", "train.epochs=2")
    assert result.exit_code == 0, result.output
    assert [r["epoch"] for r in read_metrics(run)] == [1, 2]
    assert (run / "last.safetensors").is_file()


def test_model_that_does_not_fit_the_data_fails_before_any_run_dir(cli, cli_error, tiny_recipe, workdir):
    line = cli_error(cli("train", tiny_recipe, "modalities.image.shape=[1,14,14]", "--out", "misfit"))
    assert "modalities.image" in line and "does not fit" in line
    assert not (workdir / "misfit").exists()


def test_resume_a_run_recorded_before_a_field_existed(cli, cli_error, trained_run, tmp_path):
    # An older mmgen wrote recipe.json without fields that now have defaults: that is no difference.
    run = Path(shutil.copytree(trained_run, tmp_path / "old"))
    data = json.loads((run / "recipe.json").read_text())
    del data["model"]["reconstruct"], data["train"]["crossmodal_every"]
    (run / "recipe.json").write_text(json.dumps(data))
    result = cli("train", run, "--resume", "train.epochs=2")
    assert result.exit_code == 0, result.output
    # A real change is still refused.
    line = cli_error(cli("train", run, "--resume", "train.epochs=3", "train.lr=0.5"))
    assert "recipe differs" in line

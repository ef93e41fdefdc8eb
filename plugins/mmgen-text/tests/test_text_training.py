"""The shipped three-modality recipe trains on tiny data: one step through the API, one epoch through the CLI.

Only the network widths, the data and the schedule shrink; the objective (k random pairs, every term
reconstructing every modality) is the shipped one.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from mmgen.cli import app
from mmgen.recipe import build_dataset, build_model, load_recipe
from PIL import Image
from typer.testing import CliRunner

from mmgen_text import dataset as plugin
from mmgen_text.modality import CharText

RECIPE = plugin.RECIPES / "mnist_text_mvae.toml"
SMALL = [
    "modalities.image.encoder_hidden=[32]", "modalities.image.decoder_hidden=[32]",
    "modalities.label.encoder_hidden=[16]", "modalities.label.decoder_hidden=[16]",
    "modalities.text.channels=[8]", "modalities.text.embedding_dim=4", "model.latent_dim=8",
]


def tiny(root) -> list[str]:
    return [*SMALL, f"data.root='{root.as_posix()}'", "data.download=false", "data.val_size=20"]


def test_the_recipe_is_shipped_through_register_recipes():
    found = []
    plugin.register_recipes(found.append)
    assert [p.name for p in sorted(found[0].glob("*.toml"))] == [
        "mnist_svhn_text_mmvae.toml", "mnist_svhn_text_mopoe.toml", "mnist_svhn_text_mvae.toml",
        "mnist_text_mvae.toml", "multimnist_mvae.toml"]
    assert RECIPE.read_text().startswith("# The MVAE")


def test_one_step_of_the_three_modality_model_uses_every_modality(tiny_mnist):
    recipe = load_recipe(RECIPE, tiny(tiny_mnist))
    model = build_model(recipe)
    assert isinstance(model.modalities["text"], CharText) and model.config.subsets == 1
    # Joint, three singles, and one random pair: over a few steps every pair is drawn.
    gen = torch.Generator().manual_seed(0)
    pairs = {tuple(model.step_rows(gen)[4].tolist()) for _ in range(30)}
    assert pairs == {(True, True, False), (True, False, True), (False, True, True)}

    train = build_dataset(recipe).load()["train"]
    batch = {n: model.modalities[n].prepare(train[n][:16]) for n in model.names}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    out = model(batch, beta=1.0)
    assert math.isfinite(float(out.loss.detach())) and {"nll/image", "nll/label", "nll/text", "kl"} <= set(out.terms)
    out.loss.backward()
    text = model.modalities["text"]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in text.parameters())
    before = text.embedding.weight.detach().clone()
    optimizer.step()
    assert not torch.equal(before, text.embedding.weight)


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def trained(tiny_mnist, tmp_path_factory):
    run = tmp_path_factory.mktemp("text_run") / "run"
    result = cli("train", RECIPE, *tiny(tiny_mnist), "train.epochs=1", "train.batch_size=50",
                 "train.crossmodal_every=0", "--out", run, "--device", "cpu")
    assert result.exit_code == 0, result.output
    return run


def test_sampling_given_a_text_draws_images(trained, tmp_path):
    result = cli("sample", trained, "--given", "text=seven", "-n", "4", "--out", tmp_path / "sevens.png")
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "sevens.png") as img:
        # A 2x2 grid of 28-pixel digits (62 pixels a side with its padding), in the bottom-right corner
        # under its caption, which says what was given (also kept as the PNG's text).
        assert img.size[0] >= 2 * 30 + 2 and img.size[1] >= 2 * 30 + 2 and img.size != (62, 62)
        assert "seven" in img.text["Title"], img.text


def test_sampling_given_an_image_prints_the_decoded_text(trained, tmp_path):
    digit = tmp_path / "digit.png"
    Image.fromarray(np.zeros((28, 28), np.uint8), "L").save(digit)
    result = cli("sample", trained, "--given", f"image={digit}", "-n", "8")
    assert result.exit_code == 0, result.output
    assert any(line.startswith("text: ") for line in result.stdout.splitlines()), result.stdout


def test_an_unusable_given_text_is_one_error_line(trained):
    result = cli("sample", trained, "--given", "text=Seven")
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "outside the alphabet: 'S'" in result.stderr


def test_the_multimnist_recipe_trains_and_scores_the_digits_per_position(tiny_mnist, tmp_path):
    from typer.testing import CliRunner

    out = tmp_path / "run"
    recipe = RECIPE.with_name("multimnist_mvae.toml")
    overrides = [f"data.root='{tiny_mnist.as_posix()}'", "data.download=false", "data.val_size=20", "train.epochs=1"]
    result = CliRunner().invoke(app, ["train", str(recipe), *overrides, "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(app, ["eval", str(out), "-K", "3", "--no-pictures", "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    import json

    report = json.loads((out / "eval.json").read_text())
    per = report["token accuracy image->digits"]
    assert len(per) == 4 and all(0 <= p <= 1 for p in per)
    assert report["token accuracy image->digits mean"] == pytest.approx(sum(per) / 4)
    assert 0 <= report["sequence accuracy image->digits"] <= min(per)
    baseline = report["token accuracy majority image->digits"]
    assert len(baseline) == 4 and all(0 < b <= 1 for b in baseline)

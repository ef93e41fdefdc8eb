"""Text sizes that cannot fit are refused before anything is allocated, with the estimate: the modality's
length (its model is counted on torch's meta device), the data set's text length, and the cross-modal
probe's example count. The machine's memory is fixed at 16 GB, so the lines do not depend on it."""

from __future__ import annotations

import pytest
from mmgen.cli import app
from mmgen.recipe import load_recipe, memory
from mmgen.recipe.build import _build, _parts
from typer.testing import CliRunner

from mmgen_text import dataset as plugin

RECIPE = plugin.RECIPES / "mnist_text_mvae.toml"


@pytest.fixture
def recipe_args(tiny_mnist, monkeypatch) -> list[str]:
    monkeypatch.setattr(memory, "memory_of", lambda device="cpu": 16 * 10**9)
    return [RECIPE, f"data.root='{tiny_mnist.as_posix()}'", "data.download=false", "data.val_size=20"]


def error_line(*args) -> tuple[str, int]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit), result.output
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    return line, result.exit_code


def test_the_text_modality_is_counted_on_the_meta_device(tiny_mnist):
    sizes = memory.part_sizes(lambda: _parts(_build(load_recipe(RECIPE))), "the model")
    assert sizes is not None and sizes["modalities.text"].parameters > 0


def test_a_text_length_that_cannot_fit_is_refused_by_validate(recipe_args):
    line, code = error_line("recipes", "validate", *recipe_args, "modalities.text.length=1000000000",
                            "data.text_length=1000000000")
    assert line == ("error: the model of recipe 'mnist_text_mvae', with 12,352,002,621,845 parameters (most in "
                    "modalities.text), needs about 49.5 TB, more than the 16 GB of memory of cpu "
                    "(hint: check model.latent_dim and the modalities' sizes)")
    assert code == 1


def test_a_data_text_length_that_cannot_fit_is_refused_before_the_texts_are_made(recipe_args, tmp_path):
    line, code = error_line("train", *recipe_args, "data.text_length=1000000000", "--out", tmp_path / "run")
    assert line == ("error: data.text_length = 1,000,000,000, for the texts of 160 examples, needs about 1.36 TB, "
                    "more than the 16 GB of memory of cpu "
                    "(hint: data.text_length is the text modality's length: 8 in the shipped recipe)")
    assert code == 1 and not (tmp_path / "run").exists()


def test_a_probe_example_count_that_cannot_fit_is_refused_before_training(recipe_args, tmp_path):
    line, code = error_line("train", *recipe_args, "train.crossmodal_examples=1000000000", "--out", tmp_path / "run")
    # One decoded sample: the latent (64), and the image's (784), label's (10) and text's (8 x 27) parameters
    # and means: 4 * (64 + 2 * 1010) = 8336 bytes, for each of the 100,000,000.
    assert line == ("error: train.crossmodal_examples = 1,000,000,000 (the probe decodes 100,000,000 samples of a "
                    "class at once) needs about 834 GB, more than the 16 GB of memory of cpu "
                    "(hint: use a smaller train.crossmodal_examples; the default is 1,000)")
    assert code == 1 and not (tmp_path / "run").exists()

"""Every recipe in recipes/ validates and trains one short epoch on tiny data, unchanged but for the data."""


import pytest

from mmgen.recipe import load_recipe
from tests.support import RECIPES_DIR

RECIPES = sorted(RECIPES_DIR.glob("*.toml"))


def test_there_are_recipes():
    assert len(RECIPES) >= 2


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_validates_and_opens_with_its_command(path):
    recipe = load_recipe(path)
    header = path.read_text().split("\n\n")[0]
    assert header.startswith("#") and f"mmgen train recipes/{path.name}" in header  # says how to run it
    assert recipe.name == path.stem


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_trains_one_epoch_on_tiny_data(path, cli, tiny_mnist_root, workdir):
    # The shipped model and objective, unchanged; only the data and the schedule shrink.
    result = cli("train", path, f"data.root='{tiny_mnist_root.as_posix()}'", "data.download=false",
                 "data.val_size=100", "train.epochs=1", "--out", "run", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert (workdir / "run" / "last.safetensors").is_file()

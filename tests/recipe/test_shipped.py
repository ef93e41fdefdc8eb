"""Every recipe in recipes/ validates and trains one short epoch on tiny data, unchanged but for the data."""


import pytest

from mmgen.recipe import load_recipe
from tests.support import RECIPES_DIR
from tests.support.celeba import write_tiny_celeba

RECIPES = sorted(RECIPES_DIR.glob("*.toml"))


def test_there_are_recipes():
    assert len(RECIPES) >= 2


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_validates_and_opens_with_its_command(path):
    recipe = load_recipe(path)
    header = path.read_text().split("\n\n")[0]
    assert header.startswith("#") and f"mmgen train recipes/{path.name}" in header  # says how to run it
    assert recipe.name == path.stem


@pytest.fixture(scope="module")
def tiny_celeba(tmp_path_factory):
    return write_tiny_celeba(tmp_path_factory.mktemp("celeba"), n=20)


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_trains_one_epoch_on_tiny_data(path, cli, tiny_mnist_root, tiny_celeba, workdir):
    # The shipped model and objective, unchanged; only the data and the schedule shrink.
    celeba = load_recipe(path).data.kind == "celeba"
    data = ([f"data.root='{tiny_celeba.as_posix()}'", "train.batch_size=6"] if celeba else
            [f"data.root='{tiny_mnist_root.as_posix()}'", "data.val_size=100"])
    result = cli("train", path, *data, "data.download=false", "train.epochs=1", "--out", "run", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert (workdir / "run" / "last.safetensors").is_file()

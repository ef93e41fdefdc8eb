"""Recipes: the shipped file validates, overrides parse as TOML values, and every problem is reported at once."""

import tomllib

import pytest

from mmgen import RecipeError
from mmgen.recipe import apply_overrides, load_recipe, parse_override, read_recipe_file, validate_recipe
from tests.support import RECIPES_DIR

SHIPPED = RECIPES_DIR / "mnist_mvae.toml"


@pytest.fixture
def shipped_data():
    return tomllib.loads(SHIPPED.read_text())


def test_shipped_recipe_validates():
    recipe = load_recipe(SHIPPED)
    assert recipe.name == "mnist_mvae"
    assert list(recipe.modalities) == ["image", "label"]
    assert recipe.modalities["label"].weight == 50.0 and recipe.modalities["label"].num_classes == 10
    assert recipe.model.latent_dim == 64 and recipe.model.fusion.kind == "poe"
    assert recipe.data.kind == "mnist" and recipe.data.val_size == 10_000
    assert recipe.train.epochs == 500 and recipe.train.lr == 1e-3


def test_overrides_change_only_their_keys():
    recipe = load_recipe(SHIPPED, ["train.epochs=3", "modalities.image.binarize=true"])
    assert recipe.train.epochs == 3
    assert recipe.modalities["image"].binarize is True
    assert recipe.train.batch_size == 100 and recipe.modalities["label"].weight == 50.0


@pytest.mark.parametrize(
    "text,path,value",
    [
        ("train.epochs=3", ["train", "epochs"], 3),
        ("train.lr=1e-4", ["train", "lr"], 1e-4),
        ("modalities.image.binarize=true", ["modalities", "image", "binarize"], True),
        ("name=quick", ["name"], "quick"),  # a bare word is a string
        ('name="3"', ["name"], "3"),  # a quoted number stays a string
        ("data.root=/tmp/mnist data", ["data", "root"], "/tmp/mnist data"),  # not TOML: kept verbatim
        (" train.epochs = 7 ", ["train", "epochs"], 7),  # spaces around key and value are ignored
        ("modalities.image.shape=[1, 8, 8]", ["modalities", "image", "shape"], [1, 8, 8]),
    ],
)
def test_parse_override(text, path, value):
    parsed_path, parsed = parse_override(text)
    assert parsed_path == path
    assert parsed == value and type(parsed) is type(value)


def test_string_override_of_a_number_field_is_reported(shipped_data):
    data = apply_overrides(shipped_data, ["train.epochs=three"])
    with pytest.raises(RecipeError, match=r"train\.epochs"):
        validate_recipe(data)


@pytest.mark.parametrize("text", ["foo", "=3", "train..epochs=3", ".epochs=3", "train.=3"])
def test_malformed_override(text):
    with pytest.raises(RecipeError, match="key.path=value"):
        parse_override(text)


def test_override_through_a_non_table(shipped_data):
    with pytest.raises(RecipeError, match="train.epochs is not a table"):
        apply_overrides(shipped_data, ["train.epochs.value=3"])


def test_overrides_do_not_mutate_their_input(shipped_data):
    apply_overrides(shipped_data, ["train.epochs=3"])
    assert shipped_data["train"]["epochs"] == 500


def test_every_problem_in_one_error(shipped_data):
    bad = dict(shipped_data, colour="blue")  # unknown top-level key
    bad["model"] = {**bad["model"], "fusion": {"kind": "sum"}}  # unknown fusion kind
    bad["modalities"] = {
        "image": bad["modalities"]["image"],
        "label": {**bad["modalities"]["label"], "weight": "heavy"},  # wrong type
        "audio": {"kind": "waveform"},  # unknown modality kind
        "caption": {"kind": "label"},  # a valid kind, but MNIST has no 'caption' field
    }
    with pytest.raises(RecipeError) as info:
        validate_recipe(bad, source="bad.toml")
    message = str(info.value)
    assert message.startswith("bad.toml: 5 problem(s)")
    for key in (
        "colour: unknown key",
        "modalities.label.weight:",
        "modalities.audio.kind:",
        "model.fusion.kind:",
        "modalities.caption: dataset 'mnist' has no field 'caption'",
    ):
        assert key in message
    assert "'waveform'" in message and "'sum'" in message  # the bad kinds are named


def test_missing_tables_are_reported():
    with pytest.raises(RecipeError) as info:
        validate_recipe({"name": "x"})
    assert "modalities:" in str(info.value) and "data:" in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(tmp_path / "nope.toml")


@pytest.mark.parametrize("content", [b"name = \n[model", b"\xff\xfe not utf-8"])
def test_invalid_toml(tmp_path, content):
    path = tmp_path / "bad.toml"
    path.write_bytes(content)
    with pytest.raises(RecipeError, match="not valid TOML"):
        read_recipe_file(path)


def test_to_dict_round_trips():
    recipe = load_recipe(SHIPPED, ["train.epochs=3", "modalities.image.binarize=true", "model.latent_dim=16"])
    data = recipe.to_dict()
    again = validate_recipe(data)
    assert again.to_dict() == data
    assert again == recipe
    # Plugin configs keep their own fields (not just the base class's kind and weight).
    assert data["modalities"]["image"]["binarize"] is True and data["data"]["val_size"] == 10_000


@pytest.mark.parametrize(
    ("override", "key"),
    [("train.device=gpu", "train.device"), ("modalities.label.classes=['a','b']", "modalities.label")],
)
def test_values_checked_at_validation_time(shipped_data, override, key):
    with pytest.raises(RecipeError, match=key):
        validate_recipe(apply_overrides(shipped_data, [override]))


def test_cuda_index_is_a_valid_device(shipped_data):
    assert validate_recipe(apply_overrides(shipped_data, ["train.device=cuda:1"])).train.device == "cuda:1"

"""The card's commands that reproduce a model: the shipped recipe of its name with the overrides that make
it the run's recipe, and the ``mmgen eval`` flags eval.json records."""

from __future__ import annotations

import copy
import shlex

import pytest
import typer

from mmgen.cli import app
from mmgen.cli.evaluate import fast_settings
from mmgen.recipe.catalog import find_recipe
from mmgen.recipe.load import load_recipe
from mmgen.run.exported import shareable
from mmgen.share.reproduce import eval_command, shipped_overrides, train_commands


@pytest.fixture(scope="module")
def quick() -> dict:
    """recipes/mnist_quick.toml resolved, as an export of a run of it holds it."""
    return shareable(load_recipe(find_recipe("mnist_quick").path).to_dict())


def test_a_shipped_recipe_as_it_is_needs_no_override(quick):
    assert shipped_overrides(quick) == ("mnist_quick", [])


def test_changed_settings_become_overrides(quick):
    changed = copy.deepcopy(quick)
    changed["train"]["epochs"] = 7
    changed["modalities"]["image"]["encoder_hidden"] = [64, 32]
    changed["description"] = "my run's words"
    name, overrides = shipped_overrides(changed)
    assert (name, overrides) == ("mnist_quick", ["'description=\"my run'\"'\"'s words\"'",
                                                 "'modalities.image.encoder_hidden=[64,32]'",  # [ is a glob
                                                 "train.epochs=7"])
    # What the shell hands `mmgen train` makes the shipped recipe the run's.
    words = [word for text in overrides for word in shlex.split(text)]
    assert shareable(load_recipe(find_recipe(name).path, words).to_dict()) == changed
    (shipped, folder) = train_commands(changed, "runs/again")
    assert shipped.startswith("mmgen train mnist_quick 'description=") and "--out runs/again" in shipped
    assert folder.startswith("mmgen train THIS_FOLDER --out runs/again")


@pytest.mark.parametrize("change", [
    lambda r: r.update(name="not_shipped"),                    # no such shipped recipe
    lambda r: r["modalities"].pop("label"),                    # a key the shipped recipe has and the run has not
    lambda r: r["train"].update({f"k{i}": i for i in range(7)}),  # keys it has not, and too many of them
])
def test_without_a_close_shipped_recipe_the_folders_recipe_is_the_command(quick, change):
    other = copy.deepcopy(quick)
    change(other)
    assert shipped_overrides(other) is None
    assert train_commands(other, "runs/x") == [
        "mmgen train THIS_FOLDER --out runs/x   # this folder's recipe.json: every setting of the run"]


SETTINGS = {"split": "test", "K": 1000, "K_rest": None, "proposal": None, "limit": None, "per_class": 100}


def parsed(command: str) -> dict:
    """What ``mmgen eval`` makes of ``command``'s flags: its own parser's values, --fast applied as it applies it."""
    words = shlex.split(command)
    assert words[:3] == ["mmgen", "eval", "runs/x"], command
    group = typer.main.get_command(app)
    params = group.get_command(typer.Context(group), "eval").make_context("eval", words[2:]).params
    K, limit, per_class = params["K"], params["limit"], params["per_class"]
    if params["fast"]:
        K, limit, per_class = fast_settings(K, limit, per_class)
    return {"split": params["split"], "K": K, "K_rest": params["K_rest"], "proposal": params["proposal"] or None,
            "limit": limit, "per_class": per_class}


QUICK = {**SETTINGS, "split": "val", "K": 3, "limit": 20, "per_class": 2}
FAST = {**SETTINGS, "K": 50, "K_rest": 7, "proposal": ["image", "label"], "limit": 1000, "per_class": 20}


@pytest.mark.parametrize(("settings", "fast"), [
    (SETTINGS, False), (QUICK, False), (FAST, False),
    (QUICK, True), (FAST, True),  # --fast never records K 1000, --per-class 100 or no --limit: it sets them
])
def test_the_eval_command_gives_mmgen_eval_the_settings_eval_json_records(settings, fast):
    report = {"split": settings["split"], "K": settings["K"], "settings": settings,
              **({"evaluation": "fast (--fast): ..."} if fast else {})}
    command = eval_command(report, "runs/x")
    assert parsed(command) == settings
    assert ("--fast" in command.split()) == fast  # the new eval.json says it was a quick look too


def test_the_eval_command_of_an_older_eval_json_repeats_what_it_records():
    """Before eval.json recorded its settings: the examples are a prefix of the split, K rest is said."""
    report = {"split": "test", "examples": 20, "K": 3, "K rest": 30, "proposal": "q(z|image)"}
    assert eval_command(report, "runs/x") == "mmgen eval runs/x --split test -K 3 --K-rest 30 --proposal image " \
                                             "--limit 20"


@pytest.mark.parametrize(("report", "command"), [
    ({"split": "test", "K": 1000, "proposal": "per estimate (the modalities scored)"},
     "mmgen eval runs/x --split test -K 1000"),
    ({"split": "val", "K": 50, "proposal": "per estimate (the modalities scored)", "evaluation": "fast (--fast): ..."},
     "mmgen eval runs/x --split val -K 50 --fast"),
    ({"split": "test", "K": 100, "proposal": "q(z|image,label)"},
     "mmgen eval runs/x --split test -K 100 --proposal image --proposal label"),
])
def test_the_eval_command_of_an_older_eval_json_without_examples(report, command):
    assert eval_command(report, "runs/x") == command

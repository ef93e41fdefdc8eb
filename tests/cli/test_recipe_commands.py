"""``mmgen recipes ls|cp|validate``: recipes plugins ship (register_recipes), copied for editing, validated dry."""

from __future__ import annotations

import contextlib
import json
import logging
import tomllib
import types
from pathlib import Path

import pytest

import mmgen
from mmgen.testing import registered_plugin
from tests.support import RECIPES_DIR

REPO_RECIPES = RECIPES_DIR
RECIPE = """\
# {name}: a copy of the tiny test recipe
name = "{name}"
description = "{description}"

[modalities.label]
kind = "label"
encoder_hidden = [8]
decoder_hidden = [8]

[data]
kind = "mnist"
"""


@contextlib.contextmanager
def shipping(name: str, *paths: Path, error: Exception | None = None):
    """An ad-hoc plugin ``name`` whose register_recipes registers ``paths`` (or raises ``error``)."""
    plugin = types.ModuleType(name)

    @mmgen.hookimpl
    def register_recipes(register):
        if error is not None:
            raise error
        for path in paths:
            register(path)

    plugin.register_recipes = register_recipes
    with registered_plugin(name, plugin, refresh=False):
        yield


def write_recipe(folder: Path, name: str, description: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(RECIPE.format(name=name, description=description or f"the {name} recipe"))
    return path


def listing(cli) -> dict[str, dict]:
    result = cli("recipes", "ls", "--json")
    assert result.exit_code == 0, result.output
    return {row["name"]: row for row in json.loads(result.stdout)}


# ---- ls ------------------------------------------------------------------------------------------
def test_ls_lists_the_repository_recipes_with_package_path_and_description(cli):
    rows = listing(cli)
    for path in REPO_RECIPES.glob("*.toml"):
        if path.is_symlink():  # a link to another plugin's recipe is listed under that plugin
            continue
        row = rows[path.stem]
        assert (row["package"], row["plugin"], row["path"]) == ("mmgen", "recipes", str(path))
        assert row["description"] == tomllib.loads(path.read_text())["description"]
    table = cli("recipes", "ls")
    assert table.exit_code == 0 and "mnist_mvae" in table.stdout and "mmgen (recipes)" in table.stdout


def test_ls_lists_what_a_plugin_registers_folder_or_file(cli, tmp_path, caplog):
    folder = tmp_path / "shipped"
    write_recipe(folder, "alpha", "first [bold]one")  # brackets are text, not rich markup
    single = write_recipe(tmp_path / "elsewhere", "beta")
    (folder / "notes.txt").write_text("not a recipe")
    with shipping("shipper", folder, single, tmp_path / "missing"), caplog.at_level(logging.WARNING):
        rows = listing(cli)
        table = cli("recipes", "ls").stdout
    assert rows["alpha"]["description"] == "first [bold]one" and rows["alpha"]["plugin"] == "shipper"
    assert "[bold]" in table  # shown as text, not taken as markup (the column may wrap the rest)
    assert rows["alpha"]["package"] == "(not installed)" and rows["beta"]["path"] == str(single)
    assert "notes" not in rows
    assert any("plugin 'shipper'" in r.getMessage() and "does not exist" in r.getMessage() for r in caplog.records)


def test_ls_survives_a_plugin_whose_hook_raises_and_plugins_shows_it(cli, caplog):
    with shipping("crashy", error=RuntimeError("no recipes today")), caplog.at_level(logging.WARNING):
        rows = listing(cli)
        plugins = {row["plugin"]: row for row in json.loads(cli("plugins", "--json").stdout)}
    assert "mnist_mvae" in rows
    assert plugins["crashy"]["status"] == "failed"
    assert "register_recipes raised RuntimeError: no recipes today" in plugins["crashy"]["reason"]
    assert any("crashy" in r.getMessage() and "no recipes today" in r.getMessage() for r in caplog.records)


def test_plugins_lists_the_recipes_a_plugin_registers(cli, tmp_path):
    with shipping("shipper", write_recipe(tmp_path, "alpha")):
        rows = {row["plugin"]: row for row in json.loads(cli("plugins", "--json").stdout)}
    assert rows["shipper"]["registers"] == {"recipe": ["alpha"]}
    assert "mnist_mvae" in rows["recipes"]["registers"]["recipe"]


def test_an_unreadable_recipe_is_listed_with_the_reason(cli, tmp_path):
    bad = tmp_path / "broken.toml"
    bad.write_text("name = [unclosed")
    with shipping("shipper", bad):
        rows = listing(cli)
    assert rows["broken"]["description"].startswith("(unreadable: ")


# ---- name clashes --------------------------------------------------------------------------------
def test_a_name_two_plugins_ship_is_qualified_and_the_bare_name_refused(cli, cli_error, tmp_path):
    mine = write_recipe(tmp_path / "mine", "mnist_mvae", "my own mnist_mvae")
    with shipping("mine", mine.parent):
        rows = listing(cli)
        assert "mnist_mvae" not in rows
        assert rows["mine:mnist_mvae"]["path"] == str(mine)
        assert rows["recipes:mnist_mvae"]["package"] == "mmgen"
        line = cli_error(cli("recipes", "cp", "mnist_mvae", tmp_path / "out.toml"))
        assert "recipe 'mnist_mvae' is shipped by 2 plugins: name one of" in line
        assert "recipes:mnist_mvae" in line and "mine:mnist_mvae" in line
        assert cli("recipes", "cp", "mine:mnist_mvae", tmp_path / "out.toml").exit_code == 0
    assert (tmp_path / "out.toml").read_text() == mine.read_text()


# ---- cp ------------------------------------------------------------------------------------------
def test_cp_into_a_folder_copies_the_file_verbatim(cli, tmp_path):
    result = cli("recipes", "cp", "mnist_mvae", tmp_path)
    assert result.exit_code == 0, result.output
    copy = tmp_path / "mnist_mvae.toml"
    assert copy.read_bytes() == (REPO_RECIPES / "mnist_mvae.toml").read_bytes()
    assert str(copy) in result.stdout


def test_cp_to_a_file_name_adds_toml_and_accepts_the_suffixed_name(cli, tmp_path):
    assert cli("recipes", "cp", "mnist_mvae.toml", tmp_path / "mine").exit_code == 0
    assert (tmp_path / "mine.toml").read_bytes() == (REPO_RECIPES / "mnist_mvae.toml").read_bytes()


def test_cp_never_overwrites(cli, cli_error, tmp_path):
    target = tmp_path / "mine.toml"
    target.write_text("# my edits\n")
    line = cli_error(cli("recipes", "cp", "mnist_mvae", target))
    assert f"{target} already exists; not overwriting it" in line
    assert target.read_text() == "# my edits\n"
    (tmp_path / "mnist_mvae.toml").write_text("# mine too\n")
    assert "already exists" in cli_error(cli("recipes", "cp", "mnist_mvae", tmp_path))
    assert (tmp_path / "mnist_mvae.toml").read_text() == "# mine too\n"


@pytest.mark.parametrize("dest", ["nowhere/x.toml", "nowhere/"])
def test_cp_into_a_missing_folder_is_an_error(cli, cli_error, workdir, dest):
    assert "the folder nowhere does not exist" in cli_error(cli("recipes", "cp", "mnist_mvae", dest))
    assert not (workdir / "nowhere").exists()


def test_cp_an_unknown_name_lists_the_shipped_ones(cli, cli_error, tmp_path):
    line = cli_error(cli("recipes", "cp", "mnsit_mvae", tmp_path))
    assert "no plugin ships a recipe named 'mnsit_mvae' (shipped: " in line and "mnist_mvae" in line
    assert "`mmgen recipes ls`" in line  # the hint


# ---- validate ------------------------------------------------------------------------------------
def test_validate_prints_ok_and_a_summary_without_reading_data(cli, tiny_recipe, tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text(tiny_recipe.read_text())
    # The data folder does not exist: validate must not need it.
    result = cli("recipes", "validate", recipe, "train.epochs=7", f"data.root='{tmp_path / 'no-data'}'")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"OK {recipe}"
    summary = dict(line.strip().split(": ", 1) for line in lines[1:])
    assert summary["name"] == "tiny"
    assert summary["modality image"].startswith("kind 'image', λ = 1, ") and "parameters" in summary["modality image"]
    assert summary["modality label"].startswith("kind 'label', λ = 50, ")
    assert summary["train"].startswith("7 epochs, batch 50")
    assert summary["data"].startswith("kind 'mnist', fields image, label")


def test_validate_takes_a_shipped_recipe_by_name(cli):
    result = cli("recipes", "validate", "mnist_mvae")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"OK {REPO_RECIPES / 'mnist_mvae.toml'}")
    assert "modality image: kind 'image', λ = 1" in result.stdout and "parameters in all" in result.stdout


def test_validate_reports_every_problem_in_one_line(cli, cli_error, tiny_recipe):
    line = cli_error(cli("recipes", "validate", tiny_recipe, "train.epochs=0", "modalities.label.weight=heavy"))
    assert "2 problem(s)" in line and "train.epochs" in line and "modalities.label.weight" in line


@pytest.mark.parametrize("arg", ["missing.toml", "some/dir/missing.toml"])
def test_validate_a_missing_file_is_an_error(cli, cli_error, workdir, arg):
    assert f"recipe file not found: {arg}" in cli_error(cli("recipes", "validate", arg))


def test_validate_an_unknown_name_is_an_error(cli, cli_error, workdir):
    assert "no plugin ships a recipe named 'nope'" in cli_error(cli("recipes", "validate", "nope"))


def test_train_takes_a_shipped_recipe_by_name(cli, tiny_recipe, tmp_path):
    shipped = tmp_path / "ship" / "tinyship.toml"
    shipped.parent.mkdir()
    shipped.write_text(tiny_recipe.read_text())
    with shipping("tinyship_plugin", shipped):
        result = cli("train", "tinyship", "--out", tmp_path / "run", "--device", "cpu")
        assert result.exit_code == 0, result.output
        assert (tmp_path / "run" / "last.safetensors").is_file()
        assert json.loads((tmp_path / "run" / "recipe.json").read_text())["train"]["epochs"] == 1
        resumed = cli("train", "tinyship", "train.epochs=2", "--resume", "--out", tmp_path / "run", "--device", "cpu")
    assert resumed.exit_code == 0, resumed.output
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 2


def test_train_a_missing_recipe_file_stays_a_missing_file(cli, cli_error, workdir):
    assert "recipe file not found: nope.toml" in cli_error(cli("train", "nope.toml"))
    assert "no plugin ships a recipe named 'nope'" in cli_error(cli("train", "nope"))


def test_recipes_help(cli):
    for args in (["recipes"], ["recipes", "-h"]):
        result = cli(*args)
        assert result.exit_code in (0, 2), result.output  # click exits 2 for a group shown without a command
        assert all(command in result.output for command in ("ls", "cp", "validate"))
    result = cli("recipes", "cp", "-h")
    assert result.exit_code == 0 and "existing file is kept" in result.output
    assert "mmgen recipes cp mnist_mvae my_mvae.toml" in result.output


def test_top_level_help_lists_the_new_commands(cli):
    result = cli("-h")
    assert result.exit_code == 0
    assert "recipes" in result.stdout and "new-plugin" in result.stdout

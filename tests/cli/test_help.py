"""``--help`` a newcomer can read: no text lost to rich markup, flags without a type, ``--version``,
where RUN and the output are, MMGEN_DATA_ROOT, and one line naming the nearest command for a typo."""

from __future__ import annotations

import importlib.metadata
import re

import pytest
import typer

from mmgen.cli import app
from mmgen.cli.app import recipes_app

COMMANDS = [[], ["train"], ["sample"], ["eval"], ["export"], ["push"], ["plugins"], ["new-plugin"], ["recipes"],
            ["recipes", "ls"], ["recipes", "cp"], ["recipes", "validate"]]


@pytest.fixture
def help_of(cli, monkeypatch):
    """``help_of("train")`` -> the lines of ``mmgen train --help`` at 200 columns, box and padding removed,
    runs of spaces made one."""
    monkeypatch.setenv("COLUMNS", "200")

    def run(*args: str) -> list[str]:
        result = cli(*args, "--help")
        assert result.exit_code == 0, result.output
        lines = [" ".join(line.strip(" │╭╮╰╯─").split()) for line in result.stdout.splitlines()]
        return [line for line in lines if line]

    return run


def row(lines: list[str], start: str) -> str:
    (found,) = [line for line in lines if line.startswith(start)]
    return found


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a) or "mmgen")
def test_no_help_text_is_lost_and_flags_show_no_type(help_of, args):
    text = "\n".join(help_of(*args))
    assert " ." not in text.replace("[default: .]", "")  # "[default: ...]" in a help string was eaten as markup
    assert "<bool>" not in text


def test_train_help_lines(help_of):
    lines = help_of("train")
    assert row(lines, "--out") == "--out -o <path> Run directory [default: runs/<name>-<time>]."
    assert row(lines, "--device") == "--device <str> auto, cpu, cuda or mps [default: the recipe's]."
    assert row(lines, "--resume") == "--resume Continue a run: RECIPE is its directory, or --out names it."
    assert row(lines, "Data:") == ("Data: the recipe's data.root, else $MMGEN_DATA_ROOT, else ~/.cache/mmgen/data; "
                                   "a data set that is not there is downloaded there (unless the recipe sets "
                                   "data.download = false).")


def test_sample_and_eval_say_where_run_and_the_output_are(help_of):
    sample = help_of("sample")
    assert row(sample, "RUN <path>") == ("RUN <path> A run directory, an export, or hf://ORG/NAME[@REVISION] "
                                         "[default: the newest under runs/].")
    assert row(sample, "--out") == ("--out -o <path> x.png (image grid) or x.npy (decoded means) "
                                    "[default: a PNG grid in RUN, samples-GIVEN-TIME.png].")
    assert row(sample, "RUN defaults") == ("RUN defaults to the newest run under runs/. Without --out, what renders "
                                           "as an image is drawn as a PNG grid in RUN (samples-GIVEN-TIME.png), "
                                           "and the rest is described on the screen.")
    assert row(sample, "RUN may") == ("RUN may also be an export (mmgen export) or hf://ORG/NAME[@REVISION] on the "
                                      "Hugging Face Hub, whose grid goes into the working folder.")
    evaluate = help_of("eval")
    assert row(evaluate, "RUN <path>") == ("RUN <path> A run directory, an export, or hf://ORG/NAME[@REVISION] "
                                           "[default: the newest under runs/].")
    assert row(evaluate, "RUN defaults") == ("RUN defaults to the newest run under runs/. eval.json and the PNG "
                                             "pictures (unless --no-pictures) go into RUN; for an export or "
                                             "hf://ORG/NAME[@REVISION], into the working folder.")
    assert row(evaluate, "An export") == ("An export's own files, its eval.json among them, stay as exported: the "
                                          "numbers its card shows.")
    assert row(evaluate, "--pictures") == ("--pictures --no-pictures Write the PNG pictures beside eval.json. "
                                           "[default: pictures]")


def test_train_takes_an_export_or_a_hub_model(help_of):
    lines = help_of("train")
    assert row(lines, "* recipe") == ("* recipe <str> A TOML recipe (recipes/mnist_mvae.toml), a shipped recipe's "
                                      "name, or the recipe.json of a run directory, an export or "
                                      "hf://ORG/NAME[@REVISION]. [required]")


def test_top_level_help_lists_the_commands_and_the_environment(help_of):
    lines = help_of()
    assert [line.split()[0] for line in lines[lines.index("Commands") + 1:][:8]] == \
        ["train", "sample", "eval", "export", "push", "plugins", "new-plugin", "recipes"]
    assert row(lines, "--version") == "--version Print mmgen's version and exit."
    assert row(lines, "Environment:").startswith(
        "Environment: MMGEN_DATA_ROOT is the data folder of a recipe that sets no data.root (data sets are "
        "downloaded there when missing; default ~/.cache/mmgen/data).")


def test_new_plugin_help_keeps_the_extra_in_brackets(help_of):
    assert row(help_of("new-plugin"), "Then:") == ('Then: cd mmgen-wave && python3 -m pip install -e ".[dev]" '
                                                   "&& python3 -m pytest -q && mmgen plugins")


def test_version(cli):
    result = cli("--version")
    assert result.exit_code == 0
    assert result.stdout == f"mmgen {importlib.metadata.version('mmgen')}\n"


@pytest.mark.parametrize(("args", "line"), [
    (["trian"], "error: unknown command 'trian'; did you mean 'train'?"),
    (["trian", "recipes/mnist_mvae.toml"], "error: unknown command 'trian'; did you mean 'train'?"),
    (["recipes", "lss"], "error: unknown command 'recipes lss'; did you mean 'recipes ls'?"),
    (["zzz"], "error: unknown command 'zzz'; the commands are train, sample, eval, export, push, plugins, "
              "new-plugin, recipes"),
])
def test_an_unknown_command_is_one_line_naming_the_nearest(cli, cli_error, args, line):
    result = cli(*args)
    assert cli_error(result) == line
    assert result.exit_code == 2  # a usage error, as click's own


@pytest.mark.parametrize("instance", [app, recipes_app], ids=["mmgen", "recipes"])
def test_the_table_lists_each_command_as_its_own_help_does(instance):
    """The line a group's --help shows before importing a command is its docstring's first paragraph."""
    group = typer.main.get_command(app)
    if instance is recipes_app:
        group = group.commands["recipes"]
    ctx = typer.Context(group)
    assert group.lazy, "the table is empty: the test would pass vacuously"
    for name, lazy in group.lazy.items():
        command = group.get_command(ctx, name)
        assert re.sub(r"\s+", " ", command.help.split("\n\n")[0]).strip() == lazy.help, name

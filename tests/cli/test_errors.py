"""The CLI's contract: help and plugin listing on stdout; every bad input is one ``error:`` line
on stderr, a non-zero exit and no traceback (typer's CliRunner keeps stdout and stderr apart)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image

from mmgen.errors import GivenError


def test_help_lists_commands(cli):
    result = cli("--help")
    assert result.exit_code == 0
    for command in ("train", "sample", "plugins"):
        assert command in result.stdout


def test_plugins_lists_builtins_with_their_package(cli):
    result = cli("plugins")
    assert result.exit_code == 0, result.output
    rows = {line.split()[1]: line for line in result.stdout.splitlines() if line.count("│") >= 4}
    for plugin in ("image", "label", "poe", "mnist"):
        assert plugin in rows, result.stdout
        assert rows[plugin].split("│")[2].strip() == "mmgen"  # the package column
    assert "fusion 'poe'" in rows["poe"] and "dataset 'mnist'" in rows["mnist"]


def test_result_keeps_stderr_apart(cli, tmp_path):
    # The error tests below rely on this: stdout empty, the message only in stderr.
    result = cli("sample", tmp_path / "missing")
    assert result.stdout == "" and "error:" in result.stderr


# ---- bad input ---------------------------------------------------------------------------------
def png(path: Path, size: int) -> Path:
    Image.new("L", (size, size), 128).save(path)
    return path


def case_unknown_key_in_file(c):
    bad = c.tmp / "bad.toml"
    bad.write_text(c.recipe.read_text().replace('kind = "image"', 'kind = "image"\ncolour = "red"'))
    return ["train", bad]


def case_corrupt_checkpoint(c):
    run = c.copy_run()
    for name in ("best.safetensors", "last.safetensors"):
        (run / name).write_bytes(b"this is not a safetensors file" * 10)
    return ["sample", run, "--given", "label=1"]


def case_no_weights(c):
    run = c.tmp / "noweights"
    run.mkdir()
    shutil.copy(c.run / "recipe.json", run)
    return ["sample", run]


def case_existing_out(c):
    return ["train", c.recipe, "--out", c.copy_run()]


CASES = {  # id: (args built from the context, a piece of the expected message)
    "unknown recipe key": (lambda c: ["train", c.recipe, "train.colour=1"], "override train.colour=1: unknown key"),
    "unknown key in file": (case_unknown_key_in_file, "modalities.image.colour: unknown key"),
    "wrong type": (lambda c: ["train", c.recipe, "train.epochs=many"], "train.epochs"),
    "missing recipe": (lambda c: ["train", c.tmp / "nope.toml"], "recipe file not found"),
    "malformed override": (lambda c: ["train", c.recipe, "train.epochs"], "not of the form key.path=value"),
    "missing data": (lambda c: ["train", c.recipe, f"data.root='{c.tmp}'"], "download is off"),
    "offline download": (
        lambda c: ["train", c.recipe, f"data.root='{c.tmp}'", "data.download=true"],
        "downloading it failed",
    ),
    "given unknown modality": (lambda c: ["sample", c.run, "--given", "foo=1"], "unknown modality 'foo'"),
    "given label out of range": (lambda c: ["sample", c.run, "--given", "label=11"], "out of range"),
    "given label not int": (lambda c: ["sample", c.run, "--given", "label=abc"], "expected an integer"),
    "given without =": (lambda c: ["sample", c.run, "--given", "label"], "MOD=VALUE"),
    "missing png": (lambda c: ["sample", c.run, "--given", f"image={c.tmp / 'no.png'}"], "no such file"),
    "png not 28x28": (
        lambda c: ["sample", c.run, "--given", f"image={png(c.tmp / 'small.png', 10)}"],
        "expected a 28x28 image",
    ),
    "text as png": (lambda c: ["sample", c.run, "--given", f"image={c.text_png()}"], "not a readable image"),
    "empty dir as run": (lambda c: ["sample", c.tmp], "not a mmgen run directory"),
    "missing run dir": (lambda c: ["sample", c.tmp / "gone"], "run directory not found"),
    "no runs at all": (lambda c: ["sample"], "no trained run under runs"),
    "corrupt checkpoint": (case_corrupt_checkpoint, "corrupt checkpoint"),
    "run without weights": (case_no_weights, "has no best weights"),
    "out not png or npy": (lambda c: ["sample", c.run, "--out", c.tmp / "x.txt"], "use a .png"),
    "resume without out": (lambda c: ["train", c.recipe, "--resume"], "--resume needs the run directory"),
    "train into non-empty out": (case_existing_out, "already exists and is not empty"),
}


class Context:
    def __init__(self, tmp: Path, recipe: Path, run: Path):
        self.tmp, self.recipe, self.run = tmp, recipe, run

    def copy_run(self) -> Path:
        return Path(shutil.copytree(self.run, self.tmp / "copy"))

    def text_png(self) -> Path:
        path = self.tmp / "fake.png"
        path.write_text("not an image\n")
        return path


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_error_line(case, cli, cli_error, workdir, tiny_recipe, trained_run):
    make_args, expected = CASES[case]
    work = workdir / "work"  # empty, and no runs/ in the working directory
    work.mkdir()
    line = cli_error(cli(*make_args(Context(work, tiny_recipe, trained_run))))
    assert expected in line


def test_debug_shows_the_exception(cli, trained_run, monkeypatch):
    monkeypatch.setenv("MMGEN_DEBUG", "1")
    result = cli("sample", trained_run, "--given", "label=11")
    assert result.exit_code != 0 and isinstance(result.exception, GivenError)


def test_train_error_has_no_blank_line_before_it(cli, tmp_path):
    result = cli("train", tmp_path / "nope.toml")
    assert result.exit_code != 0 and result.stderr.startswith("error: ")

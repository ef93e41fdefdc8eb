"""Errors with a way forward: the exact line each prints, naming what was typed and what to type instead."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest

TOML_HINT = ('(hint: override values are TOML: 3, 1e-3, true, "text", [1, 2], ["a", "b"]; '
             '`mmgen train --help` shows more)')


# ---- overrides: blamed on the override, not on the recipe file ------------------------------------
@pytest.mark.parametrize(("override", "line"), [
    ("train.epochs=abc", f"error: override train.epochs=abc: Input should be a valid integer (got 'abc') {TOML_HINT}"),
    ("train.lr=inf", f"error: override train.lr=inf: must be a finite number (got inf) {TOML_HINT}"),
    ("train.loggers=[jsonl,tensorboard]",
     "error: override train.loggers=[jsonl,tensorboard]: Input should be a valid array (got '[jsonl,tensorboard]') "
     "(hint: override values are TOML: quote the strings in a list, and the whole override for the shell: "
     """'train.loggers=["jsonl","tensorboard"]')"""),
    ("train.epoch=3",
     "error: override train.epoch=3: unknown key; did you mean 'train.epochs'? "
     "(hint: docs/recipe-reference.md lists every key)"),
    ("trian.epochs=3",
     "error: override trian.epochs=3: trian: unknown key; did you mean 'train'? "
     "(hint: docs/recipe-reference.md lists every key)"),
    ("modalities.image.encoder_hiden=[32]",
     "error: override modalities.image.encoder_hiden=[32]: unknown key; did you mean "
     "'modalities.image.encoder_hidden'? (hint: docs/recipe-reference.md lists every key)"),
])
def test_an_override_error_names_the_override(cli, cli_error, tiny_recipe, workdir, override, line):
    assert cli_error(cli("train", tiny_recipe, override, "--out", "run")) == line
    assert not (workdir / "run").exists()


def test_the_list_the_hint_suggests_is_valid(cli, tiny_recipe):
    result = cli("recipes", "validate", tiny_recipe, 'train.loggers=["jsonl"]')
    assert result.exit_code == 0, result.output


def test_an_override_of_a_run_is_blamed_on_the_override(cli, cli_error, trained_run, tmp_path):
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    assert cli_error(cli("train", run, "--resume", "train.epochs=abc")) == (
        f"error: override train.epochs=abc: Input should be a valid integer (got 'abc') {TOML_HINT}")


def test_an_error_in_the_file_is_blamed_on_the_file(cli, cli_error, tiny_recipe, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(tiny_recipe.read_text().replace("encoder_hidden", "encoder_hiden", 1))  # the image's
    assert cli_error(cli("train", bad, "train.epochs=2")) == (
        f"error: {bad}: 1 problem(s): modalities.image.encoder_hiden: unknown key; did you mean "
        "'modalities.image.encoder_hidden'? (hint: fix the recipe; `mmgen train --help` shows the override syntax)")


def test_a_problem_of_file_and_override_together_names_both(cli, cli_error, tiny_recipe):
    line = cli_error(cli("train", tiny_recipe, 'modalities.label.classes=["a","a","b","c","d","e","f","g","h","i"]'))
    assert line.startswith(f"error: {tiny_recipe}: 1 problem(s): modalities.label: classes names 'a' more than once")
    assert line.endswith("""(with override modalities.label.classes=["a","a","b","c","d","e","f","g","h","i"]) """
                         f"(hint: fix the recipe or the override; {TOML_HINT.removeprefix('(hint: ')}")


# ---- sample: --given, and outputs written whole or not at all -------------------------------------
@pytest.mark.parametrize("args", [["RUN", "--given", "label", "3"], ["--given", "label", "3"],
                                  ["--given", "label", "3", "RUN"]])
def test_a_given_value_after_a_space_gets_the_mod_value_form(cli, cli_error, trained_run, workdir, args):
    args = [trained_run if a == "RUN" else a for a in args]
    line = cli_error(cli("sample", *args))
    assert line == "error: --given label 3: write it as --given label=3 (MOD=VALUE, one word)"


def test_an_extra_argument_to_sample_is_one_line(cli, cli_error, trained_run):
    assert cli_error(cli("sample", trained_run, "--given", "label=3", "extra")) == (
        "error: unexpected argument 'extra': mmgen sample takes one RUN directory "
        "(hint: `mmgen sample --help` shows its options)")


@pytest.fixture
def full_disk_for(monkeypatch):
    """``full_disk_for("x.npy")``: writing that file fails with ENOSPC, as a full disk does."""
    real = os.fsync

    def plan(name: str) -> None:
        def fsync(fd):
            if Path(os.readlink(f"/proc/self/fd/{fd}")).name.startswith(f".{name}."):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real(fd)

        monkeypatch.setattr(os, "fsync", fsync)

    return plan


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="finds a file by its descriptor")
@pytest.mark.parametrize(("out", "fails"), [("x.npy", "x.npy"), ("x.npy", "x.label.npy"), ("x.png", "x.png")])
def test_sampling_onto_a_full_disk_leaves_no_partial_file(cli, cli_error, trained_run, tmp_path, full_disk_for,
                                                          out, fails):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / out).write_bytes(b"an earlier result")
    full_disk_for(fails)
    line = cli_error(cli("sample", trained_run, "-n", "16", "--out", folder / out))
    assert line == (f"error: --out {folder / fails}: cannot write it: No space left on device; nothing was written "
                    "(hint: free some space, or choose another --out)")
    assert sorted(p.name for p in folder.iterdir()) == [out]  # no temporary file, no half of the outputs
    assert (folder / out).read_bytes() == b"an earlier result"


def test_sample_outputs_are_complete_files(cli, trained_run, tmp_path):
    import numpy as np
    from PIL import Image

    result = cli("sample", trained_run, "-n", "16", "--out", tmp_path / "x.npy")
    assert result.exit_code == 0, result.output
    assert np.load(tmp_path / "x.npy").shape == (16, 1, 28, 28) and np.load(tmp_path / "x.label.npy").shape[0] == 16
    assert cli("sample", trained_run, "-n", "16", "--out", tmp_path / "x.png").exit_code == 0
    Image.open(tmp_path / "x.png").load()  # a whole PNG
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.label.npy", "x.npy", "x.png"]

"""Input that was an internal error, or was accepted though it should not be (the second hostile round):
the exact line each now prints, its exit code, and that nothing was written.

Size checks compare with the machine's memory; ``memory_of_16_gb`` fixes it at 16 GB, so the lines do not
depend on the machine.
"""

from __future__ import annotations

import errno
import io
from pathlib import Path

import pytest
import torch

from mmgen.recipe import catalog, memory

TOML_HINT = ('(hint: override values are TOML: 3, 1e-3, true, "text", [1, 2], ["a", "b"]; '
             '`mmgen train --help` shows more)')
SIZES_HINT = "(hint: check model.latent_dim and the modalities' sizes)"


@pytest.fixture
def memory_of_16_gb(monkeypatch):
    monkeypatch.setattr(memory, "memory_of", lambda device="cpu": 16 * 10**9)


# ---- sizes: refused before anything is allocated ---------------------------------------------------
def test_a_probe_that_cannot_fit_is_refused_before_training(cli, cli_error, tiny_recipe, workdir, memory_of_16_gb):
    result = cli("train", tiny_recipe, "train.crossmodal_every=1", "train.crossmodal_examples=1000000000",
                 "--out", "run")
    # The tiny model decodes a latent of 8 and 784 + 10 parameters twice: 1596 floats a sample.
    assert cli_error(result) == (
        "error: train.crossmodal_examples = 1,000,000,000 (the probe decodes 100,000,000 samples of a class at once) "
        "needs about 638 GB, more than the 16 GB of memory of cpu "
        "(hint: use a smaller train.crossmodal_examples; the default is 1,000)")
    assert result.exit_code == 1 and not (workdir / "run").exists()


@pytest.mark.parametrize("override", [f"model.latent_dim={2**62}", f"modalities.label.num_classes={2**62}",
                                      f"modalities.image.encoder_hidden=[{2**62}]",
                                      f"modalities.image.shape=[1,{2**32},{2**32}]"])
def test_a_size_past_64_bits_is_refused_without_building(cli, cli_error, tiny_recipe, override):
    result = cli("recipes", "validate", tiny_recipe, override)
    assert cli_error(result) == ("error: the model of recipe 'tiny' needs a tensor of more than 2**63 bytes, "
                                 f"more than any memory holds {SIZES_HINT}")
    assert result.exit_code == 1


# ---- seeds -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [2**63, 2**64, 10**20, -1, -(2**64)])
def test_a_seed_out_of_64_bits_is_one_line(cli, cli_error, trained_run, tmp_path, seed):
    result = cli("sample", trained_run, "--seed", seed, "-n", "2", "--out", tmp_path / "x.npy")
    assert cli_error(result) == f"error: --seed {seed}: a seed is a whole number from 0 to 2**63 - 1"
    assert result.exit_code == 1 and not (tmp_path / "x.npy").exists()


def test_the_largest_seed_samples(cli, trained_run, tmp_path):
    result = cli("sample", trained_run, "--seed", 2**63 - 1, "-n", "2", "--out", tmp_path / "x.npy")
    assert result.exit_code == 0, result.output


# ---- devices -----------------------------------------------------------------------------------------
INDEX = "a CUDA device index is a number from 0 to 127, without leading zeros"


@pytest.mark.parametrize("device", ["cuda:99999999999999999999", "cuda:128", "cuda:01", "cuda:٣"])
def test_a_device_index_torch_cannot_take_is_refused_by_validate(cli, cli_error, tiny_recipe, device):
    result = cli("recipes", "validate", tiny_recipe, f'train.device="{device}"')
    assert cli_error(result) == f"error: override train.device=\"{device}\": {INDEX} (got '{device}') {TOML_HINT}"
    assert result.exit_code == 1


def test_a_device_index_in_the_recipe_file_is_blamed_on_the_file(cli, cli_error, tiny_recipe, tmp_path):
    path = tmp_path / "r.toml"
    path.write_text(tiny_recipe.read_text().replace('device = "cpu"', 'device = "cuda:99999999999999999999"'))
    result = cli("recipes", "validate", path)
    assert cli_error(result) == (
        f"error: {path}: 1 problem(s): train.device: {INDEX} (got 'cuda:99999999999999999999') "
        "(hint: fix the recipe; `mmgen train --help` shows the override syntax)")
    assert result.exit_code == 1


def test_the_largest_device_index_validates(cli, tiny_recipe):
    result = cli("recipes", "validate", tiny_recipe, 'train.device="cuda:127"')
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("command", ["train", "sample"])
@pytest.mark.parametrize("device", ["cuda:99999999999999999999", "cuda:٣"])
def test_a_device_option_torch_cannot_take_is_one_line(cli, cli_error, tiny_recipe, trained_run, workdir,
                                                       command, device):
    args = ("train", tiny_recipe, "--out", "run") if command == "train" else ("sample", trained_run, "-n", "2")
    result = cli(*args, "--device", device)
    assert cli_error(result) == f"error: --device {device}: {INDEX}"
    assert result.exit_code == 1 and not (workdir / "run").exists()


# ---- torch.compile's backend, at validation -----------------------------------------------------------
def test_an_unknown_compile_backend_is_refused_by_validate(cli, cli_error, tiny_recipe):
    result = cli("recipes", "validate", tiny_recipe, 'train.compile_backend="nope"')
    usual = ", ".join(torch.compiler.list_backends())
    assert cli_error(result) == (f"error: override train.compile_backend=\"nope\": torch.compile has no backend "
                                 f"'nope'; the usual ones are {usual} {TOML_HINT}")
    assert result.exit_code == 1


def test_a_misspelt_compile_backend_gets_the_nearest(cli, cli_error, tiny_recipe, workdir):
    result = cli("train", tiny_recipe, 'train.compile_backend="aot_eagr"', "--out", "run")
    assert cli_error(result) == (f"error: override train.compile_backend=\"aot_eagr\": torch.compile has no backend "
                                 f"'aot_eagr'; did you mean 'aot_eager'? {TOML_HINT}")
    assert result.exit_code == 1 and not (workdir / "run").exists()


def test_a_debugging_compile_backend_validates(cli, tiny_recipe):
    result = cli("recipes", "validate", tiny_recipe, 'train.compile_backend="aot_eager"')
    assert result.exit_code == 0, result.output


# ---- where things are written --------------------------------------------------------------------------
@pytest.mark.parametrize("dest", ["", " "])
def test_cp_to_an_empty_dest_is_refused(cli, cli_error, workdir, dest):
    result = cli("recipes", "cp", "mnist_mvae", dest)
    assert cli_error(result) == ("error: DEST is empty: name a file or a folder "
                                 "(hint: for example: mmgen recipes cp NAME my.toml)")
    assert result.exit_code == 1 and list(workdir.iterdir()) == []


@pytest.mark.parametrize(("dest", "target"), [("/proc/x.toml", "/proc/x.toml"), ("/proc", "/proc/mnist_mvae.toml")])
def test_cp_into_a_folder_that_cannot_be_written_is_one_line(cli, cli_error, dest, target):
    try:
        open("/proc/.mmgen-probe", "x")  # noqa: SIM115
    except OSError as exc:  # what the kernel says here: ENOENT as root, EACCES otherwise
        why = exc.strerror
    result = cli("recipes", "cp", "mnist_mvae", dest)
    assert cli_error(result) == f"error: cannot copy to {target}: {why} (hint: choose a folder you can write to)"
    assert result.exit_code == 1


def test_cp_on_a_full_disk_leaves_no_partial_file(cli, cli_error, tmp_path, monkeypatch):
    class Full(io.StringIO):
        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

    real_open = Path.open

    def open_full(self, mode="r", *args, **kwargs):
        if mode != "x":
            return real_open(self, mode, *args, **kwargs)
        real_open(self, "x").close()  # the file is made, then the disk fills
        return Full()

    monkeypatch.setattr(catalog.Path, "open", open_full)
    target = tmp_path / "x.toml"
    result = cli("recipes", "cp", "mnist_mvae", target)
    assert cli_error(result) == (f"error: cannot copy to {target}: No space left on device; nothing was written "
                                 "(hint: free some space, or choose another DEST)")
    assert result.exit_code == 1 and not target.exists()


def test_train_out_naming_a_file_is_refused_and_the_file_kept(cli, cli_error, tiny_recipe, workdir):
    (workdir / "notes.txt").write_text("mine\n")
    result = cli("train", tiny_recipe, "--out", "notes.txt")
    assert cli_error(result) == ("error: --out notes.txt is a file, not a run directory "
                                 "(hint: name a new folder, or an existing run with --resume)")
    assert result.exit_code == 1 and (workdir / "notes.txt").read_text() == "mine\n"


def test_train_out_through_a_file_is_refused(cli, cli_error, tiny_recipe, workdir):
    (workdir / "notes.txt").write_text("mine\n")
    result = cli("train", tiny_recipe, "--out", "notes.txt/run")
    assert cli_error(result) == ("error: --out notes.txt/run: notes.txt is a file, not a folder "
                                 "(hint: name a new folder, or an existing run with --resume)")
    assert result.exit_code == 1


@pytest.mark.parametrize("out", ["", "  "])
def test_train_out_empty_is_refused_rather_than_training_in_the_working_folder(cli, cli_error, tiny_recipe,
                                                                              workdir, out):
    result = cli("train", tiny_recipe, "--out", out)
    assert cli_error(result) == "error: --out is empty: name the run directory (hint: for example --out runs/quick)"
    assert result.exit_code == 1 and list(workdir.iterdir()) == []


@pytest.mark.parametrize("world_size", ["abc", "", "2x"])
def test_an_internal_error_under_a_garbled_world_size_is_still_one_line(monkeypatch, capsys, world_size):
    # The handler of internal errors read WORLD_SIZE with int(): garbage there turned one line into a traceback.
    import typer

    from mmgen.cli.app import reports_errors

    monkeypatch.setenv("WORLD_SIZE", world_size)
    monkeypatch.delenv("MMGEN_DEBUG", raising=False)

    @reports_errors
    def broken() -> None:
        raise RuntimeError("injected")

    with pytest.raises((SystemExit, typer.Exit)) as stop:
        broken()
    assert getattr(stop.value, "exit_code", getattr(stop.value, "code", None)) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: internal error: RuntimeError: injected (set MMGEN_DEBUG=1 for the traceback)")

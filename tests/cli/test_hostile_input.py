"""Every bad input a hostile tester found, one test each: a non-zero exit, one line naming the problem,
no traceback, and no run directory left behind by a recipe error."""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

TEN_NAMES = "[" + ",".join(['"a"'] * 2 + [f'"c{i}"' for i in range(8)]) + "]"

BAD_VALUES = [  # override, the key the message must name, a word it must contain
    ("seed=true", "seed", "integer"),
    ("model.latent_dim=true", "model.latent_dim", "integer"),
    ('data.download="yes"', "data.download", "boolean"),
    ("train.lr=inf", "train.lr", "finite"),
    ("train.lr=nan", "train.lr", "finite"),
    ("train.lr=1e999", "train.lr", "finite"),
    ("modalities.image.weight=inf", "modalities.image.weight", "finite"),
    ("seed=99999999999999999999", "seed", "64-bit"),
    ("seed=-1", "seed", "greater than or equal"),
    ("train.epochs=1e3", "train.epochs", "integer"),
    ('train.epochs="3"', "train.epochs", "integer"),
    ("modalities.image.shape=[0,28,28]", "modalities.image.shape", "greater than 0"),
    ("modalities.image.encoder_hidden=[-5]", "modalities.image.encoder_hidden", "greater than 0"),
    (f"modalities.label.classes={TEN_NAMES}", "modalities.label", "more than once"),
    ('name=""', "name", "cannot be a path"),
    ('name="../../x"', "name", "cannot be a path"),
    ('name="a/b"', "name", "cannot be a path"),
    ("model.latent_dim=1000000000", "model", "needs about"),
    ("modalities.label.num_classes=10000000000", "model", "needs about"),
    ("modalities.image.shape=[1000,1000,1000]", "model", "needs about"),
]


@pytest.mark.parametrize(("override", "key", "word"), BAD_VALUES)
def test_a_bad_value_is_refused_naming_its_key_and_leaves_no_run(cli, cli_error, tiny_recipe, workdir,
                                                                  override, key, word):
    line = cli_error(cli("train", tiny_recipe, override, "--out", "run"))
    assert key in line and word in line, line
    assert not (workdir / "run").exists() and not (workdir / "runs").exists()


def test_a_deeply_nested_recipe_file_is_one_line(cli, cli_error, tmp_path):
    for text in ("a = " + "[" * 3000 + "]" * 3000, "a = " + "{b = " * 40 + "1" + "}" * 40):
        path = tmp_path / "deep.toml"
        path.write_text(text)
        line = cli_error(cli("recipes", "validate", path))
        assert "nested" in line


def test_a_toml_date_is_not_a_recipe_value(cli, cli_error, tiny_recipe):
    assert "is not a recipe value" in cli_error(cli("recipes", "validate", tiny_recipe, "seed=1979-05-27"))


@pytest.mark.parametrize(("option", "value"), [("-n", "1000000000000")])
def test_sampling_too_many_is_refused_with_the_estimate(cli, cli_error, trained_run, tmp_path, option, value):
    line = cli_error(cli("sample", trained_run, option, value, "--out", tmp_path / "x.npy"))
    assert "needs about" in line and "PB" in line
    assert not (tmp_path / "x.npy").exists()


@pytest.mark.parametrize(("option", "value"), [("-K", "1000000000"), ("--per-class", "1000000000")])
def test_evaluating_too_much_is_refused_with_the_estimate(cli, cli_error, trained_run, tmp_path, option, value):
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    line = cli_error(cli("eval", run, option, value))
    assert "needs about" in line and option in line
    assert not (run / "eval.json").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:3"])
def test_a_cuda_device_without_a_driver_is_one_line(cli, cli_error, trained_run, device):
    assert "no CUDA device" in cli_error(cli("sample", trained_run, "--device", device, "-n", "2"))


def test_an_unknown_device_is_one_line(cli, cli_error, trained_run):
    assert "unknown device 'tpu'" in cli_error(cli("sample", trained_run, "--device", "tpu", "-n", "2"))


def png_bomb(path: Path, side: int = 40_000) -> Path:
    """A PNG whose header declares side x side pixels, with almost no data: decoding it would need GBs."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)  # 8-bit grey
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("side", [40_000, 15_000])  # above twice PIL's limit (an error), above it (a warning)
def test_a_decompression_bomb_png_is_refused_without_decoding(cli, cli_error, trained_run, tmp_path, side):
    line = cli_error(cli("sample", trained_run, "--given", f"image={png_bomb(tmp_path / 'bomb.png', side)}"))
    assert "bomb.png" in line and ("expected a 28x28 image" in line or "not a readable image" in line)


@pytest.mark.parametrize("out", ["/proc/x.png", "/proc/x.npy", "DIR/x.png"])
def test_an_unwritable_out_is_one_line(cli, cli_error, trained_run, tmp_path, out):
    if out.startswith("DIR"):
        (tmp_path / "x.png").mkdir()
        out = str(tmp_path / "x.png")
    line = cli_error(cli("sample", trained_run, "-n", "4", "--out", out))
    assert "cannot write" in line and out in line


def test_an_unwritable_run_directory_is_one_line(cli, cli_error, tiny_recipe):
    assert "cannot make the run directory" in cli_error(cli("train", tiny_recipe, "--out", "/proc/mmgen-run"))


@pytest.mark.parametrize("content", [bytes(range(256)) * 4, b"[1, 2, 3]", b'"a string"', b"{" * 5000 + b"}" * 5000])
def test_a_garbage_recipe_json_is_one_line(cli, cli_error, trained_run, tmp_path, content):
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    (run / "recipe.json").write_bytes(content)
    for command in (("sample", run, "-n", "2"), ("eval", run, "-K", "2"), ("train", run, "--resume")):
        line = cli_error(cli(*command))
        assert "recipe.json" in line, (command, line)


def weights_variants(run: Path) -> dict[str, bytes]:
    good = (run / "best.safetensors").read_bytes()
    weights = load_file(run / "best.safetensors")
    wrong = {k: torch.zeros(3) for k in weights}
    save_file(wrong, run / "wrong.safetensors")
    nan = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in weights.items()}
    save_file(nan, run / "nan.safetensors")
    return {"zero-length": b"", "truncated": good[: len(good) // 2], "random": bytes(range(256)) * 64,
            "wrong shapes": (run / "wrong.safetensors").read_bytes(), "nan": (run / "nan.safetensors").read_bytes(),
            "a json file": json.dumps({"not": "weights"}).encode()}


@pytest.mark.parametrize("variant", ["zero-length", "truncated", "random", "wrong shapes", "nan", "a json file"])
def test_broken_weights_are_one_line_for_sample_and_eval(cli, cli_error, trained_run, tmp_path, variant):
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    (run / "best.safetensors").write_bytes(weights_variants(run)[variant])
    for command in (("sample", run, "-n", "2", "--out", tmp_path / "s.npy"), ("eval", run, "-K", "2")):
        line = cli_error(cli(*command))
        assert "best.safetensors" in line, (command, line)
    assert not (tmp_path / "s.npy").exists() and not (run / "eval.json").exists()


def test_a_broken_resume_file_is_one_line(cli, cli_error, trained_run, tmp_path):
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    (run / "trainer_state.safetensors").write_bytes(b"\x00" * 100)
    assert "trainer_state.safetensors" in cli_error(cli("train", run, "--resume", "train.epochs=2"))


def test_a_failed_download_leaves_no_empty_folders(tmp_path):
    from mmgen import DataError, get_registry

    mnist = get_registry().datasets["mnist"].cls
    root = tmp_path / "data"
    with pytest.raises(DataError, match="downloading it failed"):
        mnist(mnist.Config(kind="mnist", root=str(root), download=True)).load()  # the tests have no network
    assert not (root / "MNIST" / "raw").exists() and not root.exists()

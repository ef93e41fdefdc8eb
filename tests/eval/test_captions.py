"""Captions on every grid: a title, a label per row, the given inputs framed in the first column; the
grid itself unchanged in the bottom-right corner, and the captions kept in the PNG's text."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmgen.eval.pictures import Captions, grid_png

GRID = 10 * 30 + 2  # 10 tiles of 28 pixels with 2 of padding


def picture(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    image.load()
    return image


def tiles(n: int = 20) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def test_a_captioned_grid_is_the_grid_with_captions_left_and_above():
    plain = picture(grid_png(tiles(), 10, pad_value=0.5))
    labels = ["label=0", "label=1"]
    captioned = picture(grid_png(tiles(), 10, Captions("image given the row's label", labels), pad_value=0.5))
    assert plain.size == (GRID, 2 * 30 + 2)
    width, height = captioned.size
    assert width > GRID and 2 * 30 + 2 + 10 < height < 2 * 30 + 2 + 40  # a margin for the labels, a line above
    corner = captioned.crop((width - GRID, height - plain.height, width, height))
    assert np.array_equal(np.array(corner.convert("RGB")), np.array(plain.convert("RGB")))  # the grid, untouched
    margin = np.array(captioned.convert("L"))[height - plain.height :, : width - GRID]
    assert (margin < 128).any()  # ink: the row labels are drawn
    assert captioned.text["Rows"].split("\n") == labels and captioned.text["Title"] == "image given the row's label"


def test_the_given_column_is_framed_in_the_padding_and_headed_given():
    plain = np.array(picture(grid_png(tiles(), 10)).convert("RGB"))
    framed = picture(grid_png(tiles(), 10, Captions("", ["a", "b"], given=1)))
    width, height = framed.size
    grid = np.array(framed.convert("RGB"))[height - plain.shape[0] :, width - plain.shape[1] :]
    assert not np.array_equal(grid, plain)  # the frame changed the padding around the first column
    for row in range(2):  # but no tile's pixels
        for col in range(10):
            y, x = 2 + row * 30, 2 + col * 30
            assert np.array_equal(grid[y : y + 28, x : x + 28], plain[y : y + 28, x : x + 28])
    assert tuple(grid[1, 1]) == (214, 96, 0) and tuple(grid[1, 40]) == tuple(plain[1, 40])  # only column 0
    assert height - plain.shape[0] > 10  # the "given" header above it


def test_one_tile_alone_is_a_plain_picture():
    image = picture(grid_png(tiles(1), 1))
    assert image.size == (28, 28) and "Rows" not in image.text


@pytest.fixture(scope="module", autouse=True)
def _classifier_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MMGEN_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


def test_eval_pictures_say_which_label_each_row_shows_and_frame_the_given_image(cli, trained_run, tmp_path):
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    result = cli("eval", run, "-K", "2", "--limit", "10", "--per-class", "2", "--device", "cpu")
    assert result.exit_code == 0, result.output
    texts = {}
    for name in ("samples-prior.png", "samples-given-label.png", "samples-given-image.png", "samples-given-both.png",
                 "reconstructions.png"):
        with Image.open(run / name) as image:
            texts[name] = (image.text["Title"], image.text["Rows"].split("\n") if image.text["Rows"] else [])
    classes = range(10)  # the tiny test split has every digit
    assert texts["samples-prior.png"] == ("image: samples from the prior p(z)", [])
    assert texts["samples-given-label.png"][1] == [f"label={k}" for k in classes]
    assert texts["samples-given-image.png"][1] == [f"label {k}" for k in classes]  # the given image's class
    assert "framed" in texts["samples-given-image.png"][0]
    assert texts["samples-given-both.png"][1] == [f"label={k}" for k in classes]
    assert texts["reconstructions.png"][1] == ["input", "reconstr."] * 2


def test_sample_grids_are_captioned_but_one_sample_stays_a_plain_image(cli, trained_run, tmp_path):
    given = tmp_path / "seven.png"
    assert cli("sample", trained_run, "-g", "label=7", "-n", "1", "--out", given).exit_code == 0
    with Image.open(given) as image:
        assert image.size == (28, 28) and "Title" not in image.text  # usable as --given image= again
    out = tmp_path / "both.png"
    result = cli("sample", trained_run, "-g", f"image={given}", "-g", "label=7", "-n", "4", "--out", out)
    assert result.exit_code == 0, result.output
    assert "4 samples from" in result.stdout
    with Image.open(out) as image:
        assert image.text["Title"] == "4 samples of image given image (framed), label=7"
        assert image.text["Rows"].split("\n") == ["label=7", "label=7"]
        assert image.width > 3 * 30 + 2  # the given image, framed, then two samples a row
        rgb = np.array(image.convert("RGB"))
        assert (rgb == (214, 96, 0)).all(-1).any()
    one = cli("sample", trained_run, "-g", "label=2", "-n", "1", "--out", tmp_path / "two.npy")
    assert "1 sample from" in one.stdout

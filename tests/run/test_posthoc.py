"""A run's post-hoc latent sampler: fitted to its training split, cached in the run directory under the SHA-256
of the weights it was fitted to and its settings, reused for the same, fitted again for other weights or
settings or when the file is corrupt; draws on the run's device."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil

import pytest
import torch

import mmgen
from mmgen.errors import MmgenError
from mmgen.model.posthoc import GaussianMixtureSampler
from mmgen.run.posthoc import (
    draw_latents,
    fit_posthoc_sampler,
    sample_latents,
    sampler_path,
    training_latents,
    weights_digest,
)
from mmgen.storage.tensors import read_metadata
from tests.conftest import N_TRAIN

VAL_SIZE = 50  # the tiny recipe's data.val_size: the training split is the rest of N_TRAIN


@pytest.fixture
def run(trained_run, tmp_path):
    """The shared tiny run (one epoch on 300 MNIST-shaped examples), copied so that its cache is this test's."""
    shutil.copytree(trained_run, tmp_path / "run")
    return mmgen.load_run(tmp_path / "run", device="cpu")


@pytest.fixture
def fits(monkeypatch):
    """Counts the mixtures fitted (the real fit still runs)."""
    calls = []
    real = GaussianMixtureSampler.fit.__func__

    def counted(cls, latents, **kwargs):
        calls.append(latents.shape)
        return real(cls, latents, **kwargs)

    monkeypatch.setattr(GaussianMixtureSampler, "fit", classmethod(counted))
    return calls


def test_the_sampler_is_fitted_once_then_read_from_its_cache(run, fits):
    lines = []
    first = fit_posthoc_sampler(run, components=3, on_stage=lines.append)
    path = sampler_path(run, "gmm")
    assert path == run.run_dir.path / "sampler-gmm.safetensors" and path.is_file()
    assert fits == [(N_TRAIN - VAL_SIZE, 8)]  # every training example (fully paired), latent width 8
    assert read_metadata(path)["cache key parts"]["weights sha256"] == weights_digest(run.model)
    again = fit_posthoc_sampler(run, components=3, on_stage=lines.append)
    assert len(fits) == 1 and "cached" in lines[-1]
    assert torch.equal(again.means, first.means) and torch.equal(again.covariances, first.covariances)
    reloaded = mmgen.load_run(run.run_dir.path, device="cpu", which="last")  # one epoch: the same weights
    fit_posthoc_sampler(reloaded, components=3)
    assert len(fits) == 1


def test_other_weights_or_settings_are_fitted_again(run, fits):
    fit_posthoc_sampler(run, components=3)
    lines = []
    fit_posthoc_sampler(run, components=2, on_stage=lines.append)
    assert len(fits) == 2 and any("other settings" in line for line in lines)
    with torch.no_grad():
        next(run.model.parameters()).add_(1e-3)  # other weights, as another epoch's would be
    lines.clear()
    refit = fit_posthoc_sampler(run, components=2, on_stage=lines.append)
    assert len(fits) == 3 and any("other weights" in line for line in lines)
    assert refit.components == 2
    assert read_metadata(sampler_path(run, "gmm"))["cache key parts"]["weights sha256"] == weights_digest(run.model)


@pytest.mark.parametrize("damage", ["garbage", "flipped byte"])
def test_a_corrupt_cache_is_fitted_again_with_a_warning(run, fits, caplog, damage):
    fit_posthoc_sampler(run, components=3)
    path = sampler_path(run, "gmm")
    data = bytearray(path.read_bytes())
    if damage == "garbage":
        data = bytearray(b"not a safetensors file")
    else:  # a byte of the means: the header still reads, and the mixture is still a valid one
        header_size = int.from_bytes(data[:8], "little")
        start = json.loads(data[8 : 8 + header_size])["means"]["data_offsets"][0]
        data[8 + header_size + start + 6] ^= 0x01
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="mmgen.run"):
        fit_posthoc_sampler(run, components=3)
    assert len(fits) == 2 and "unusable" in caplog.text
    fit_posthoc_sampler(run, components=3)  # the rewritten file is a good cache again
    assert len(fits) == 2


def test_an_unknown_kind_is_one_line_naming_the_kinds(run):
    with pytest.raises(MmgenError) as info:
        fit_posthoc_sampler(run, kind="flow")
    assert "\n" not in str(info.value) and "'flow'" in str(info.value) and "gmm" in str(info.value)


def test_draws_are_latents_on_the_runs_device_that_decode(run):
    sampler = fit_posthoc_sampler(run, components=3)
    z = draw_latents(run, sampler, 5, seed=0)
    assert z.shape == (5, run.model.latent_size) and z.device == run.device and z.dtype == torch.float32
    assert torch.equal(draw_latents(run, sampler, 5, seed=0), z)
    assert run.decode(z)["image"].shape == (5, 1, 28, 28)
    assert sample_latents(run, 4, seed=1).shape == (4, run.model.latent_size)  # default settings: 10 components


def test_only_fully_paired_training_examples_are_encoded(run):
    data = run.recipe.data.model_copy(update={"paired_fraction": 0.5})
    weakly = dataclasses.replace(run, recipe=run.recipe.model_copy(update={"data": data}))
    assert training_latents(weakly).shape == (round(0.5 * (N_TRAIN - VAL_SIZE)), 8)
    whole = training_latents(run)
    torch.testing.assert_close(training_latents(run, batch_size=64), whole)  # batching changes nothing (no binarizing)

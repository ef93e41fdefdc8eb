"""Cross-modal metrics are computed only within one class space, against the right ground truth.

A plugin modality with a class space of its own (the parity of the digit, 2 classes, in a field
``parity``) must be scored against parity, not against the digit: image->parity accuracy equals a
direct computation through the public API, and pairs across spaces are absent with a reason.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import pytest
import torch

import mmgen
from mmgen import ClassSpace, IdxImageDataset, hookimpl
from mmgen.model import prepare_fixed
from mmgen.recipe import build_dataset
from mmgen.testing import registered_plugin
from tests.conftest import run_cli


class DigitsWithParity(IdxImageDataset):
    """MNIST's image and label, plus the parity of the label as a field of its own."""

    fields: ClassVar[dict[str, str]] = {"image": "image", "label": "label", "parity": "label"}

    def load(self):
        splits = super().load()
        for split in splits.values():
            split["parity"] = split["label"] % 2
        return splits


@hookimpl
def _register_datasets(register):
    register("digits_parity", DigitsWithParity)


@pytest.fixture(scope="module")
def parity_run(tiny_recipe, tmp_path_factory):
    """Two epochs of image + label + parity (a label modality with 2 classes), evaluated once; the data set
    stays registered while the module's tests run."""
    with registered_plugin("mmgen-test-parity", register_datasets=_register_datasets):
        out = tmp_path_factory.mktemp("parity") / "run"
        result = run_cli("train", tiny_recipe, "data.kind=digits_parity", "train.epochs=2",
                                           "modalities.parity={kind='label',num_classes=2,encoder_hidden=[16],"
                                           "decoder_hidden=[16]}", "--out", out, "--device", "cpu")
        assert result.exit_code == 0, result.output
        result = run_cli("eval", out, "-K", "3", "--per-class", "4", "--no-pictures", "--device", "cpu")
        assert result.exit_code == 0, result.output
        yield out, json.loads((out / "eval.json").read_text()), result.stdout


def direct_accuracy(run_dir: Path, source: str, target: str) -> float:
    """Decode ``target`` at the mean of q(z | source) for every test example; compare with its own field."""
    run = mmgen.load_run(run_dir, device="cpu")
    test = build_dataset(run.recipe).load()["test"]
    x = prepare_fixed(run.model.modalities, {source: test[source]}, seed=0, device="cpu")  # as mmgen eval does
    with torch.no_grad():
        z = run.model.posterior(x).mean
        read = run.model.modalities[target].decode(z).argmax(-1)
    return float((read == test[target]).float().mean())


def test_parity_is_scored_against_parity(parity_run):
    run_dir, report, _ = parity_run
    assert report["accuracy image->parity"] == pytest.approx(direct_accuracy(run_dir, "image", "parity"), abs=1e-6)
    assert report["accuracy image->label"] == pytest.approx(direct_accuracy(run_dir, "image", "label"), abs=1e-6)
    assert report["accuracy label->parity"] == pytest.approx(direct_accuracy(run_dir, "label", "parity"), abs=1e-6)


def test_pairs_across_class_spaces_are_absent_with_a_reason(parity_run):
    _, report, table = parity_run
    for pair in ("label->parity", "parity->label", "parity->image"):
        assert f"coherence {pair}" not in report
        why = report["skipped"][f"coherence {pair}"]
        assert "2 classes of field 'parity'" in why and "10 classes of field 'label'" in why
    assert 0 <= report["coherence label->image"] <= 1  # one space: measured
    assert "coherence joint" in report  # over label and image, the readers of the data set's classes
    assert "not measured" in table and "label->parity" in table  # the table says so too


def test_a_modality_that_reads_classes_without_declaring_a_space_is_left_out(parity_run, monkeypatch):
    from mmgen.eval.class_spaces import crossmodal_setup

    run = mmgen.load_run(parity_run[0], device="cpu")
    train = build_dataset(run.recipe).load()["train"]  # the fixture keeps the data set registered
    monkeypatch.setattr(type(run.model.modalities["parity"]), "class_space", lambda self: None)
    setup = crossmodal_setup(run.model, train, "label", torch.device("cpu"), "digits_parity")
    assert "parity" not in setup.targets and "parity" not in setup.sources
    assert setup.skipped["reader parity"] == "parity declares no class space (Modality.class_space)"


def test_class_space_defaults():
    label = mmgen.get_registry().lookup("modalities", "label")
    cfg = label.Config(kind="label", num_classes=2, encoder_hidden=[4], decoder_hidden=[4])
    assert label("parity", cfg, 3).class_space() == ClassSpace(2, "parity")  # a label's truth is its own field
    assert ClassSpace(10).resolved("label") == ClassSpace(10, "label")
    assert ClassSpace(10).resolved(None) is None

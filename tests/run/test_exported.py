"""A tampered export is refused with one line before it is used: weights cut short, changed or not the ones
exported, a recipe whose model or modalities changed (or that does not fit the weights), a plugin it needs
that is not installed, a manifest that is not one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import mmgen
from mmgen import CheckpointError, PluginError
from mmgen.plugin import discovery
from mmgen.plugin import registry as registry_module
from mmgen.plugin.discovery import PluginSet
from mmgen.run.exported import canonical, digest, recipe_record
from mmgen.share.export import export_run


@pytest.fixture(scope="module")
def pristine(trained_run, tmp_path_factory) -> Path:
    return export_run(trained_run, tmp_path_factory.mktemp("exports") / "tiny")


@pytest.fixture
def export(pristine, tmp_path) -> Path:
    """A private copy to tamper with."""
    return Path(shutil.copytree(pristine, tmp_path / "export"))


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_the_untouched_export_loads(export):
    assert mmgen.load_run(export, device="cpu").epoch == 1


def test_truncated_weights_are_refused(cli, cli_error, export):
    weights = export / "best.safetensors"
    size = weights.stat().st_size
    weights.write_bytes(weights.read_bytes()[: size // 2])
    line = cli_error(cli("sample", export, "--given", "label=3", "--out", export.parent / "x.png"))
    assert line == (f"error: {weights} has {size // 2:,} bytes, the export wrote {size:,}: it was truncated since "
                    "(hint: export the run again, or download or copy the export again)")
    assert not (export.parent / "x.png").exists()


def test_weights_of_the_same_size_but_other_bytes_are_refused(export):
    weights = export / "best.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # the last byte of the last tensor: still a readable safetensors file
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="its SHA-256 differs from export.json's"):
        mmgen.load_run(export, device="cpu")


@pytest.mark.parametrize(("change", "said"), [
    (lambda r: r["model"]["fusion"].update(prior_expert=False),
     "model.fusion.prior_expert is false, the export's true"),
    (lambda r: r["modalities"]["image"].update(binarize=True), "modalities.image.binarize is true, the export's false"),
    (lambda r: r["modalities"]["image"].update(encoder_hidden=[16]), "modalities.image.encoder_hidden is [16], the "
                                                                      "export's [32]"),
    (lambda r: r["modalities"].pop("label"), 'modalities.label.kind is absent, the export\'s "label"'),
])
def test_a_change_to_the_model_or_modalities_of_the_recipe_is_refused(cli, cli_error, export, change, said):
    """Two of these keep every tensor's shape: the weights alone would load, and sample otherwise."""
    edit_json(export / "recipe.json", change)
    line = cli_error(cli("sample", export, "--given", "label=3", "--out", export.parent / "x.png"))
    assert line == (f"error: {export / 'recipe.json'} is not the recipe exported with these weights: {said} "
                    "(hint: the model and modalities sections must stay as exported, data and train may change; "
                    "undo the change, or export the run again, or download or copy the export again)")
    assert not (export.parent / "x.png").exists()


def test_data_and_train_stay_editable_and_the_layout_of_recipe_json_is_free(export):
    edit_json(export / "recipe.json", lambda r: (r["data"].update(val_size=10, download=True),
                                                 r["train"].update(epochs=9, batch_size=7, loggers=["tensorboard"])))
    recipe = json.loads((export / "recipe.json").read_text())
    (export / "recipe.json").write_text(json.dumps(recipe, sort_keys=True, indent=1))  # the same values, laid out anew
    run = mmgen.load_run(export, device="cpu")
    assert run.recipe.train.epochs == 9 and run.recipe.data.val_size == 10


def reseal(export: Path) -> None:
    """export.json's record of the model made to match an edited recipe.json, as a forger would."""
    recipe = json.loads((export / "recipe.json").read_text())
    edit_json(export / "export.json", lambda m: m.update(recipe=recipe_record(recipe).model_dump(mode="json")))


def test_a_recipe_that_does_not_fit_the_weights_is_refused_even_with_its_record_forged(cli, cli_error, export):
    """The model the recipe builds and the weights are compared tensor by tensor, for an export as for a run."""
    edit_json(export / "recipe.json", lambda r: r["modalities"]["image"].update(encoder_hidden=[16]))
    reseal(export)
    line = cli_error(cli("sample", export))
    assert line == (f"error: {export / 'best.safetensors'} does not fit the recipe's model: "
                    "modalities.image.encoder.0.weight has shape (32, 784), the model's (16, 784) "
                    "(hint: recipe.json and the weights come from different runs)")


def test_a_recipe_with_another_modality_is_refused_even_with_its_record_forged(export):
    edit_json(export / "recipe.json", lambda r: r["modalities"].pop("label"))
    edit_json(export / "export.json", lambda m: m.update(needs=[n for n in m["needs"] if n["kind"] != "label"]))
    reseal(export)
    with pytest.raises(CheckpointError, match=r"does not fit the recipe's model: it holds \d+ tensor\(s\) the model "
                                              r"has not \(the first: modalities\.label\."):
        mmgen.load_run(export, device="cpu")


def test_weights_the_manifest_does_not_list_are_refused(cli, cli_error, export):
    """A last.safetensors put into an export of the best weights has no checksum to be held to."""
    shutil.copy(export / "best.safetensors", export / "last.safetensors")
    line = cli_error(cli("sample", export, "--weights", "last", "--out", export.parent / "x.png"))
    assert line == (f"error: {export / 'last.safetensors'} is not the weights file this export was made with "
                    "(best.safetensors): export.json holds no checksum of it (hint: load the exported weights, "
                    "--weights best, or remove last.safetensors)")
    assert mmgen.load_run(export, device="cpu").epoch == 1  # the exported weights still load


@pytest.fixture
def without(monkeypatch):
    """``without("label,mnist")``: the process's plugins rediscovered with those blocked (as uninstalled);
    the real ones come back after the test."""

    def block(names: str) -> None:
        monkeypatch.setenv("MMGEN_PLUGINS_BLOCK", names)
        monkeypatch.setattr(discovery, "_plugins", PluginSet())
        monkeypatch.setattr(registry_module, "_registry", None)

    return block


def test_missing_plugins_are_named_in_one_line(cli, cli_error, export, without):
    without("label,mnist")
    line = cli_error(cli("sample", export, "--given", "label=3"))
    assert line == (f"error: {export} needs 2 plugin part(s) that are not installed or did not load: "
                    "modality 'label' (plugin 'label', package mmgen 0.2.0); dataset 'mnist' (plugin 'mnist', "
                    "package mmgen 0.2.0) (hint: pip install mmgen; `mmgen plugins` lists what is installed and "
                    "what failed to load)")


def test_a_missing_plugin_of_another_package_names_that_package(export, without):
    edit_json(export / "export.json", lambda m: m["needs"].append(
        {"category": "modalities", "kind": "text", "plugin": "text", "package": "mmgen-text", "version": "0.1.0"}))
    without("text")
    with pytest.raises(PluginError, match="modality 'text' \\(plugin 'text', package mmgen-text 0.1.0\\)") as info:
        mmgen.load_run(export, device="cpu")
    assert info.value.hint.startswith("pip install mmgen-text;")


@pytest.mark.parametrize(("manifest", "words"), [
    ("{not json", "is unreadable: JSONDecodeError"),
    ('{"format": 1, "run": "tiny"}', "is not an export manifest: exported_by: Field required"),
    ('{"format": 99, "exported_by": "9.0"}', "was exported by mmgen 9.0 in a newer format (99; this mmgen reads 1)"),
])
def test_a_manifest_that_is_not_one_is_refused(export, manifest, words):
    (export / "export.json").write_text(manifest)
    with pytest.raises(CheckpointError) as info:
        mmgen.load_run(export, device="cpu")
    assert words in str(info.value)


def test_a_run_directory_is_not_held_to_an_exports_checks(trained_run):
    """No export.json: nothing recorded to check against, and the run loads as before."""
    assert not (trained_run / "export.json").exists()
    assert mmgen.load_run(trained_run, device="cpu").epoch == 1


def test_the_sha256_recorded_is_the_files(pristine):
    manifest = json.loads((pristine / "export.json").read_text())
    assert manifest["weights"]["sha256"] == digest((pristine / "best.safetensors").read_bytes())
    recipe = json.loads((pristine / "recipe.json").read_text())
    fixed = {"model": recipe["model"], "modalities": recipe["modalities"]}
    assert manifest["recipe"] == {"sha256": digest(canonical(fixed)), **fixed}
    assert canonical({"b": [2.0, True, 0.5], "a": {"c": None}}) == b'{"a":{"c":null},"b":[2,true,0.5]}'

"""Plugin discovery: built-ins arrive through entry points; ad-hoc plugins register, clash and clean up."""


import pytest
import torch

import mmgen
from mmgen import PluginError
from mmgen.plugin.discovery import current, plugin_versions
from mmgen.plugin.registry import get_registry
from mmgen.recipe import build_model, validate_recipe
from mmgen.testing import registered_plugin
from mmgen_plugins.label import CategoricalLabel


class TinyLabel(CategoricalLabel):
    """A third-party modality kind; subclassing a built-in keeps the test short."""


@mmgen.hookimpl
def _register_tiny(register):
    register("tiny", TinyLabel)


@mmgen.hookimpl
def _register_second_image(register):
    register("image", TinyLabel)


def registered(name, hook):
    """A module-like plugin registered under ``name``; unregistered, and the registry rebuilt, on exit."""
    return registered_plugin(name, refresh=False, register_modalities=hook)


@pytest.fixture
def tiny_plugin():
    with registered("mmgen-test-tiny", _register_tiny) as plugin:
        yield plugin


def test_builtin_kinds_come_from_entry_points():
    registry = get_registry(refresh=True)
    found = {
        (category, kind): getattr(registry, category)[kind]
        for category, kind in [
            ("modalities", "image"),
            ("modalities", "label"),
            ("fusions", "poe"),
            ("datasets", "mnist"),
        ]
    }
    for (_, kind), reg in found.items():
        assert reg.package == "mmgen"  # the distribution that declares the entry point
        assert reg.plugin == kind  # the entry-point name from pyproject.toml
        assert reg.cls.__module__ == f"mmgen_plugins.{kind}"
    assert plugin_versions()["poe"]["package"] == "mmgen"


def test_unknown_kind_lists_the_registered_ones():
    registered = r"unknown modality kind 'nope' \(registered: attributes, conv_image, image, label"
    with pytest.raises(PluginError, match=registered):
        get_registry().lookup("modalities", "nope")


def test_adhoc_plugin_is_registered_and_usable(tiny_plugin):
    registry = get_registry(refresh=True)
    reg = registry.modalities["tiny"]
    assert reg.cls is TinyLabel and reg.plugin == "mmgen-test-tiny" and reg.package == "(not installed)"
    # A recipe can name the new kind, and the model is built from it.
    recipe = validate_recipe(
        {
            "name": "t",
            "model": {"latent_dim": 4},
            "modalities": {"label": {"kind": "tiny", "encoder_hidden": [8], "decoder_hidden": [8]}},
            "data": {"kind": "mnist"},
        }
    )
    model = build_model(recipe)
    assert isinstance(model.modalities["label"], TinyLabel)
    assert torch.isfinite(model({"label": torch.tensor([1, 2, 3])}).loss)


def test_unregistering_removes_the_kind():
    # Other tests must not see a test's plugin once it is gone.
    with registered("mmgen-test-tiny", _register_tiny):
        assert "tiny" in get_registry(refresh=True).modalities
    assert "tiny" not in get_registry().modalities
    assert "mmgen-test-tiny" not in dict(current().pm.list_name_plugin())
    assert "image" in get_registry().modalities  # the built-ins stay


def test_duplicate_kind_names_both_plugins():
    with registered("mmgen-test-dup", _register_second_image), pytest.raises(PluginError) as info:
        get_registry(refresh=True)
    message = str(info.value)
    assert "'image' is registered twice" in message
    assert "plugin 'image' (mmgen)" in message and "plugin 'mmgen-test-dup' ((not installed))" in message

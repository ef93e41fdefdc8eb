"""The register_models hook and ``[model] kind``: families come from entry points, a recipe without
a kind is the MVAE, a family's own keys are validated by its Config, and MMVAE and MoPoE are the
MVAE's objective with their papers' defaults (the same losses as the recipes that name the fusion)."""

from __future__ import annotations

import pytest
import torch

import mmgen
from mmgen import RecipeError
from mmgen.plugin.registry import get_registry
from mmgen.recipe import build_model, validate_recipe
from mmgen.testing import registered_plugin
from mmgen_plugins.families.mvae import MultimodalVAE


def recipe(**model) -> dict:
    return {
        "name": "t",
        "model": {"latent_dim": 4, **model},
        "modalities": {"image": {"kind": "image", "shape": [1, 4, 4], "encoder_hidden": [8], "decoder_hidden": [8]},
                       "label": {"kind": "label", "encoder_hidden": [8], "decoder_hidden": [8]}},
        "data": {"kind": "mnist"},
    }


def test_the_first_party_families_come_from_entry_points():
    models = get_registry(refresh=True).models
    assert {k: (r.package, r.plugin) for k, r in models.items() if r.package == "mmgen"} == {
        "mvae": ("mmgen", "mvae"), "mmvae": ("mmgen", "mmvae"), "mopoe": ("mmgen", "mopoe_family"),
        "jmvae": ("mmgen", "jmvae"), "mvtcae": ("mmgen", "mvtcae"), "mmjsd": ("mmgen", "mmjsd"),
        "mmvaeplus": ("mmgen", "mmvaeplus"), "dmvae": ("mmgen", "dmvae"), "telbo": ("mmgen", "telbo")}
    assert all(issubclass(r.cls, mmgen.Model) for r in models.values())


def test_a_recipe_without_kind_is_the_mvae_and_says_so_when_saved():
    validated = validate_recipe(recipe())
    assert validated.model.kind == "mvae" and validated.to_dict()["model"]["fusion"] == {"kind": "poe",
                                                                                      "prior_expert": True}
    assert isinstance(build_model(validated), MultimodalVAE)
    assert validate_recipe(validated.to_dict()).to_dict() == validated.to_dict()  # a run's recipe.json reads back


def test_an_unknown_family_and_a_key_of_another_family_are_one_error_each():
    with pytest.raises(RecipeError) as info:
        validate_recipe(recipe(kind="nope"))
    assert "recipe: 1 problem(s): model.kind: unknown model kind 'nope' (registered: " in str(info.value)
    assert {"mmvae", "mopoe", "mvae"} <= set(str(info.value).split("registered: ")[1].split(")")[0].split(", "))
    with pytest.raises(RecipeError, match=r"model.private_dim: unknown key"):
        validate_recipe(recipe(private_dim=3))  # the MVAE has no private latents


@pytest.mark.parametrize(("family", "fusion"), [("mmvae", "moe"), ("mopoe", "mopoe")])
def test_mmvae_and_mopoe_are_the_mvae_objective_with_their_defaults(family, fusion):
    by_family = build_model(validate_recipe(recipe(kind=family)))
    by_fusion = build_model(validate_recipe(recipe(terms="joint", fusion={"kind": fusion})))
    assert by_family.fusion.config.kind == fusion and by_family.config.terms == "joint"
    batch = {"image": torch.rand(5, 1, 4, 4), "label": torch.randint(0, 10, (5,))}
    torch.manual_seed(0)
    a = by_family(batch, beta=0.5).loss
    torch.manual_seed(0)
    b = by_fusion(batch, beta=0.5).loss
    assert torch.equal(a, b)


class Constant(mmgen.Model):
    """The smallest family: a fixed posterior; enough to show a third party's kind is found and built."""

    def forward(self, batch, beta=1.0, present=None):
        return mmgen.ModelOutput(loss=torch.zeros(()))

    def posterior(self, given, present=None):
        B = next(iter(given.values())).shape[0]
        return mmgen.diagonal_normal(torch.zeros(B, self.latent_size))


@mmgen.hookimpl
def _register_constant(register):
    register("constant", Constant)


@mmgen.hookimpl
def _register_as_mvae(register):
    register("mvae", Constant)


def test_a_third_party_family_is_found_and_built_and_a_duplicate_names_both():
    with registered_plugin("mmgen-test-constant", register_models=_register_constant):
        model = build_model(validate_recipe(recipe(kind="constant")))
        assert isinstance(model, Constant) and model.latent_size == 4
        assert model.prior((2,)).sample().shape == (2, 4)
    with pytest.raises(mmgen.PluginError, match="model kind 'mvae' is registered twice"), \
            registered_plugin("mmgen-test-dup-family", register_models=_register_as_mvae):
        get_registry(refresh=True)
    assert get_registry(refresh=True).models["mvae"].cls is MultimodalVAE  # the clash left nothing behind

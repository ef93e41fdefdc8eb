"""model.objective_terms: the importance-weighted bound for some terms, the K-sample ELBO for the rest."""

from __future__ import annotations

import pytest
import torch

from mmgen.errors import MmgenError
from mmgen.recipe import build_model, validate_recipe
from tests.support.toy import IMAGE, LABEL, make_batch

ALL = ["joint", "image", "label"]


def recipe(objective="iwae", samples=4, terms=None, fusion="poe"):
    model = {"latent_dim": 8, "fusion": {"kind": fusion}, "objective": objective, "samples": samples}
    if terms is not None:
        model["objective_terms"] = terms
    return {"name": "t", "model": model, "modalities": {"image": IMAGE, "label": LABEL}, "data": {"kind": "mnist"}}


def models(*variants, fusion="poe"):
    built = [build_model(validate_recipe(recipe(*v, fusion=fusion))) for v in variants]
    for m in built[1:]:
        m.load_state_dict(built[0].state_dict())
    return built


def loss_and_grads(model, batch, seed=0):
    torch.manual_seed(seed)  # the same draws for every model: they share weights and K
    model.zero_grad()
    loss = model(batch, beta=0.7).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("fusion", ["poe", "moe"])
def test_naming_every_term_is_the_objective_and_naming_none_is_the_k_sample_elbo(fusion):
    batch = make_batch(["image", "label"], 6)
    iwae, every, none_, elbo = models(("iwae", 4), ("iwae", 4, ALL), ("iwae", 4, []), ("elbo", 4), fusion=fusion)
    torch.testing.assert_close(loss_and_grads(every, batch)[0], loss_and_grads(iwae, batch)[0], rtol=0, atol=0)
    torch.testing.assert_close(loss_and_grads(none_, batch)[0], loss_and_grads(elbo, batch)[0], rtol=1e-6, atol=1e-6)
    assert loss_and_grads(iwae, batch)[0] < loss_and_grads(elbo, batch)[0]  # K = 4: a tighter bound on these draws


def test_each_term_takes_its_own_bound_so_the_mixed_losses_add_up():
    # The loss is a sum over terms, each either IWAE or ELBO on the same draws: swapping which terms
    # are importance-weighted between two models must leave the sum of their losses unchanged.
    batch = make_batch(["image", "label"], 6)
    image, rest, every, none_ = models(("iwae", 4, ["image"]), ("iwae", 4, ["joint", "label"]),
                                       ("iwae", 4, ALL), ("iwae", 4, []))
    mixed = loss_and_grads(image, batch)[0] + loss_and_grads(rest, batch)[0]
    pure = loss_and_grads(every, batch)[0] + loss_and_grads(none_, batch)[0]
    torch.testing.assert_close(mixed, pure, rtol=1e-6, atol=1e-5)
    assert not torch.allclose(loss_and_grads(image, batch)[0], loss_and_grads(every, batch)[0])


def test_dreg_leaves_the_elbo_terms_gradients_as_the_elbo_has_them():
    batch = make_batch(["image", "label"], 6)
    dreg_none, elbo = models(("dreg", 4, []), ("elbo", 4))
    _, g_d = loss_and_grads(dreg_none, batch)
    _, g_e = loss_and_grads(elbo, batch)
    assert g_d.keys() == g_e.keys()
    for n in g_e:  # no DReG factor on z, no detached score: the ELBO's gradient exactly
        torch.testing.assert_close(g_d[n], g_e[n], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("objective", "terms", "says"), [
    ("iwae", ["joint", "text"], "'text' is not 'joint', 'subsets' or a modality"),
    ("elbo", ["image"], "set model.objective to 'iwae' or 'dreg'"),
])
def test_a_wrong_objective_terms_is_one_line(objective, terms, says):
    with pytest.raises(MmgenError, match=says):
        build_model(validate_recipe(recipe(objective, 2, terms)))

"""The objectives beyond the ELBO (IWAE, DReG), the stratified mixture objective, and the joint-only terms."""

from __future__ import annotations

import pytest
import torch

from mmgen.recipe import build_model, validate_recipe
from tests.support.toy import IMAGE, LABEL, make_batch


def model_with(fusion="poe", objective="elbo", samples=1, terms="subsampled"):
    recipe = validate_recipe({
        "name": "t", "model": {"latent_dim": 8, "fusion": {"kind": fusion}, "objective": objective,
                               "samples": samples, "terms": terms},
        "modalities": {"image": IMAGE, "label": LABEL}, "data": {"kind": "mnist"}})
    return build_model(recipe)


def loss_and_grads(model, batch, seed=0, **kw):
    torch.manual_seed(seed)
    model.zero_grad()
    out = model(batch, **kw)
    out.loss.backward()
    return float(out.loss.detach()), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("fusion", ["poe", "moe", "mopoe"])
def test_dreg_has_the_iwae_value_and_decoder_gradient_but_its_own_encoder_gradient(fusion):
    batch = make_batch(["image", "label"], 6)
    iwae, dreg = model_with(fusion, "iwae", 5), model_with(fusion, "dreg", 5)
    loss_i, g_i = loss_and_grads(iwae, batch)
    loss_d, g_d = loss_and_grads(dreg, batch)
    assert loss_i == pytest.approx(loss_d, rel=1e-6)
    decoders = [n for n in g_i if ".decoder." in n]
    encoders = [n for n in g_i if ".encoder." in n or ".head." in n]
    assert decoders and encoders
    for n in decoders:  # d/dθ of Σ w̃ log w = d/dθ log Σ w: the IWAE gradient
        torch.testing.assert_close(g_d[n], g_i[n], rtol=1e-4, atol=1e-5)
    assert any(not torch.allclose(g_d[n], g_i[n], rtol=1e-3, atol=1e-6) for n in encoders)


@pytest.mark.parametrize("fusion", ["poe", "moe"])
def test_iwae_bound_is_at_least_the_elbo_on_average(fusion):
    batch = make_batch(["image", "label"], 8)
    elbo_m, iwae_m = model_with(fusion, "elbo", 1), model_with(fusion, "iwae", 32)
    iwae_m.load_state_dict(elbo_m.state_dict())
    with torch.no_grad():
        torch.manual_seed(0)
        elbo_loss = sum(float(elbo_m(batch).loss) for _ in range(30)) / 30
        iwae_loss = float(iwae_m(batch).loss)
    assert iwae_loss < elbo_loss  # a tighter bound: smaller negative bound


def test_iwae_with_one_sample_is_the_elbo_for_a_mixture():
    # With K = 1 both estimate the same expectation from the same draws: exactly equal values.
    batch = make_batch(["image", "label"], 5)
    a, b = model_with("moe", "elbo", 1), model_with("moe", "iwae", 1)
    b.load_state_dict(a.state_dict())
    assert loss_and_grads(a, batch)[0] == pytest.approx(loss_and_grads(b, batch)[0], rel=1e-6)


def test_stratified_objective_draws_every_component_of_the_joint():
    model = model_with("moe", "elbo", 1, terms="joint")
    calls = []
    decode = model.modalities["label"].decode
    model.modalities["label"].decode = lambda z: calls.append(z.shape) or decode(z)
    model(make_batch(["image", "label"], 4))
    assert calls == [torch.Size([2, 1, 4, 8])]  # (K*C = 2 components, T = 1 joint term, B, D)


def test_joint_terms_count_single_modality_examples():
    model = model_with("moe", "elbo", 1, terms="joint")
    batch = make_batch(["image", "label"], 4)
    present = {"image": torch.tensor([True, True, False, True]), "label": torch.tensor([True, False, True, True])}
    torch.manual_seed(0)
    out = model(batch, present=present)
    out.loss.backward()
    # Example 1 has only its image: the label decoder learns from examples 0, 2, 3 only, and
    # changing example 1's label changes nothing.
    changed = {k: v.clone() for k, v in batch.items()}
    changed["label"][1] = (changed["label"][1] + 1) % 10
    torch.manual_seed(0)
    assert float(model(changed, present=present).loss.detach()) == pytest.approx(float(out.loss.detach()), rel=1e-6)
    assert model.fixed_rows().tolist() == [[True, True]]


def test_mixture_fusions_train_on_tiny_images():
    for fusion in ("moe", "mopoe"):
        model = model_with(fusion, "elbo", 1, terms="joint")
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        batch = make_batch(["image", "label"], 16)
        torch.manual_seed(0)
        first = float(model(batch).loss.detach())
        for _ in range(30):
            opt.zero_grad()
            model(batch).loss.backward()
            opt.step()
        assert float(model(batch).loss.detach()) < first

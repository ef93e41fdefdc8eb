"""mmJSD with modality-specific subspaces (``model.private_dim`` > 0, the paper's "mmJSD (MS)"): the loss against
the paper's objective written out example by example, weak supervision, private_dim 0 as the shared-only model,
cross-modal generation with the target's style from the prior, and the recipes through the CLI and torchrun.

The reference is tests/families/test_mmjsd.py's, with styles (``paper_objective(..., styles, beta_style)``): for one
example with modalities A, q(c | x_m) the first D numbers of each expert and q(s_m | x_m) the rest,

    L = (1/|A|) Σ_{j∈A} Σ_{m∈A} λ_m log p(x_m | c_j, s_m) − β JS − β_s Σ_{m∈A} KL(q(s_m|x_m) ‖ N(0, I)),
    c_j ~ q(c | x_j),   s_m ~ q(s_m | x_m)   (one draw per modality, shared by every c_j)
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from torch.distributions import Categorical, Normal

from mmgen.recipe import build_model, load_recipe
from mmgen_plugins.families.mmjsd import MMJSD
from tests.families.test_mmjsd import (
    PRESENT,
    THREE,
    encode_one,
    js_by_hand,
    make_model,
    paper_objective,
    prior_expert,
    recon_of,
    style_kl_by_hand,
)
from tests.support import RECIPES_DIR
from tests.support.families import D, make_batch, scored_completely, tiny_overrides

P = 2  # the style width of the tiny models


def styles_of(model, batch, b, names, eps):
    """s_n = mu + σ eps[n] of q(s_n | x_n), the experts' numbers after the first D; n indexes model.names."""
    q = encode_one(model, batch, b, names)
    return {n: q[n][0][D:] + (0.5 * q[n][1][D:]).exp() * eps[model.names.index(n)] for n in names}


def expected_loss(model, batch, eps, eps_style, beta, beta_style, having):
    """−(1/B) Σ_b L(b), example b having the modalities ``having[b]``."""
    B = eps.shape[1]
    return -sum(paper_objective(model, batch, b, eps[:, b], beta, having[b],
                                styles_of(model, batch, b, having[b], eps_style[:, b]), beta_style)
                for b in range(B)) / B


# ---- the paper's objective, by hand -----------------------------------------------------------------
@pytest.mark.parametrize("names", [("image", "label"), THREE], ids=["two", "three"])
@pytest.mark.parametrize(("js_weight", "style_weight", "warmup"), [(2.5, 1.0, 1.0), (0.7, 3.0, 0.3)])
def test_the_loss_is_the_papers_ms_objective_example_by_example(names, js_weight, style_weight, warmup):
    model, batch = make_model(names, private_dim=P, beta=js_weight, beta_style=style_weight), make_batch(names)
    torch.manual_seed(0)
    loss = model(batch, beta=warmup).loss
    torch.manual_seed(0)  # a draw of c from every q(c | x_m), (M, B, D), then of every s_m, (M, B, P)
    eps, eps_style = torch.randn(len(names), 6, D, dtype=torch.float64), torch.randn(len(names), 6, P,
                                                                                    dtype=torch.float64)
    expected = expected_loss(model, batch, eps, eps_style, warmup * js_weight, warmup * style_weight, [names] * 6)
    torch.testing.assert_close(loss, expected, rtol=0, atol=1e-5)


def test_an_example_without_every_modality_is_scored_on_those_it_has():
    model, batch = make_model(THREE, private_dim=P, beta_style=2.0), make_batch(THREE, B=5)
    present = {n: torch.tensor(v) for n, v in PRESENT.items()}
    having = [[n for n in THREE if PRESENT[n][b]] for b in range(5)]
    torch.manual_seed(1)
    loss = model(batch, beta=0.6, present=present).loss
    torch.manual_seed(1)
    eps, eps_style = torch.randn(3, 5, D, dtype=torch.float64), torch.randn(3, 5, P, dtype=torch.float64)
    torch.testing.assert_close(loss, expected_loss(model, batch, eps, eps_style, 0.6 * 2.5, 0.6 * 2.0, having),
                               rtol=0, atol=1e-5)
    torch.manual_seed(1)  # a modality no example has: out of the batch altogether, neither decoded nor regularized
    loss = model({n: batch[n] for n in ("image", "label")}, beta=0.6).loss
    torch.testing.assert_close(loss, expected_loss(model, batch, eps, eps_style, 0.6 * 2.5, 0.6 * 2.0,
                                                   [("image", "label")] * 5), rtol=0, atol=1e-5)


def test_the_sampled_estimator_reconstructs_from_one_drawn_posterior_per_example():
    model, batch = make_model(THREE, private_dim=P, estimator="sampled"), make_batch(THREE, B=5)
    present = {n: torch.tensor(v) for n, v in PRESENT.items()}
    torch.manual_seed(2)
    loss = model(batch, beta=1.0, present=present).loss
    torch.manual_seed(2)  # a draw of c from every posterior (1, M, B, D), which one each example keeps, the styles
    eps = torch.randn(1, 3, 5, D, dtype=torch.float64)
    has = torch.tensor([PRESENT[n] for n in THREE]).T.double()  # (B, M)
    pick = Categorical(probs=has / has.sum(1, keepdim=True)).sample()  # (B,)
    eps_style = torch.randn(3, 5, P, dtype=torch.float64)
    expected = 0.0
    for b in range(5):
        names = [n for n in THREE if PRESENT[n][b]]
        q = {n: (mu[:D], lv[:D]) for n, (mu, lv) in encode_one(model, batch, b, names).items()}
        chosen = THREE[pick[b]]
        assert chosen in names
        c = q[chosen][0] + (0.5 * q[chosen][1]).exp() * eps[0, pick[b], b]
        styles = styles_of(model, batch, b, names, eps_style[:, b])
        expected = expected + recon_of(model, batch, b, names, c, styles) - 2.5 * js_by_hand(
            [*q.values(), prior_expert()]) - style_kl_by_hand(model, batch, b, names, styles)
    torch.testing.assert_close(loss, -expected / 5, rtol=0, atol=1e-5)


def test_private_dim_0_is_the_shared_only_model():
    default, batch = make_model(THREE), make_batch(THREE)
    zero = make_model(THREE, private_dim=0, beta_style=7.0)  # no styles: β_s weighs nothing
    assert {k: v.shape for k, v in zero.state_dict().items()} == {k: v.shape for k, v in default.state_dict().items()}
    zero.load_state_dict(default.state_dict())  # a run saved before the option loads as it was
    assert zero.latent_size == default.latent_size == D
    for estimator in ("stratified", "sampled"):
        torch.manual_seed(5)
        want = default(batch, beta=0.5, estimator=estimator)
        torch.manual_seed(5)
        got = zero(batch, beta=0.5, estimator=estimator)
        assert torch.equal(got.loss, want.loss) and got.terms.keys() == want.terms.keys()
        assert not any(k.startswith("kl_style") for k in got.terms)


def test_the_styles_widen_the_experts_and_the_decoders_and_every_part_gets_a_gradient():
    for estimator in ("stratified", "sampled"):
        model = make_model(THREE, private_dim=P, estimator=estimator)
        assert model.latent_size == D + 3 * P
        out = model(make_batch(THREE))
        assert {f"kl_style/{n}" for n in THREE} <= set(out.terms)
        out.loss.backward()
        params = dict(model.named_parameters())
        assert [n for n, p in params.items() if p.grad is None or p.grad.abs().sum() == 0] == []


# ---- the posteriors eval and sampling use -----------------------------------------------------------
def standard(x):
    return Normal(torch.zeros_like(x), torch.ones_like(x)).log_prob(x).sum(-1)


@pytest.mark.parametrize("inference", ["mixture", "dynamic_prior"])
def test_generating_from_other_modalities_draws_the_targets_style_from_the_prior(inference):
    model, batch = make_model(THREE, private_dim=P, inference=inference), make_batch(THREE, B=4)
    block = {n: slice(D + m * P, D + (m + 1) * P) for m, n in enumerate(THREE)}  # s_n in [c | s_1 | s_2 | s_3]
    with torch.no_grad():
        mu, lv = model.modalities["label"].encode(batch["label"])
        q = model.posterior({"label": batch["label"]})  # the image and the tag are to be generated
        z = torch.randn(4, D + 3 * P, dtype=torch.float64)
        shared = Normal(mu[:, :D], (0.5 * lv[:, :D]).exp()).log_prob(z[:, :D]).sum(-1)
        if inference == "dynamic_prior":  # f of q(c | label) and p(c): precision (1/σ² + 1)/2
            precision = (1 / lv[:, :D].exp() + 1) / 2
            shared = Normal(mu[:, :D] / lv[:, :D].exp() / 2 / precision, precision.rsqrt()).log_prob(z[:, :D]).sum(-1)
        label_style = Normal(mu[:, D:], (0.5 * lv[:, D:]).exp()).log_prob(z[:, block["label"]]).sum(-1)
        want = shared + label_style + standard(z[:, block["image"]]) + standard(z[:, block["tag"]])
        torch.testing.assert_close(q.log_prob(z), want)
        seen = []  # what the image's decoder reads when the image is generated from the label, as eval does
        decode = model.modalities["image"].decode
        model.modalities["image"].decode = lambda latents: seen.append(latents) or decode(latents)
        torch.manual_seed(0)
        model.decode(model.posterior({"label": batch["label"].repeat(2000)}).sample(), ["image"])
    style = seen[0][:, D:]  # (8000, P): its style, drawn from p(s_image) = N(0, I), whatever the image was
    assert seen[0].shape == (8000, D + P) and style.mean(0).abs().max() < 0.05 and (style.std(0) - 1).abs().max() < 0.05


def test_given_its_modality_a_style_is_its_own_posteriors_and_missing_the_priors():
    model, batch = make_model(THREE, private_dim=P), make_batch(THREE, B=4)
    present = {"image": torch.tensor([True, False, True, False])}  # examples 1 and 3 lack the image
    with torch.no_grad():
        q = model.posterior(batch, present)
        for m, n in enumerate(THREE):
            mu, lv = model.modalities[n].encode(batch[n])
            has = present.get(n, torch.ones(4, dtype=torch.bool))[:, None]
            mean, var = torch.where(has, mu[:, D:], 0.0), torch.where(has, lv[:, D:].exp(), 1.0)
            torch.testing.assert_close(q.mean[:, D + m * P : D + (m + 1) * P], mean)
            torch.testing.assert_close(q.variance[:, D + m * P : D + (m + 1) * P], var)


def test_under_bf16_autocast_the_loss_is_fp32_and_close():
    model, batch = make_model(THREE, private_dim=P), make_batch(THREE)
    model.float()
    batch = {n: v.float() if v.is_floating_point() else v for n, v in batch.items()}
    for estimator in ("stratified", "sampled"):
        torch.manual_seed(6)
        want = model(batch, estimator=estimator).loss
        torch.manual_seed(6)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = model(batch, estimator=estimator).loss
        got.backward()
        assert got.dtype == torch.float32 and torch.isfinite(got)
        torch.testing.assert_close(got, want, rtol=5e-2, atol=0)


# ---- the recipes, the CLI and torchrun --------------------------------------------------------------
def test_the_shipped_recipe_builds():
    model = build_model(load_recipe(RECIPES_DIR / "polymnist_mmjsd_ms.toml"))
    assert isinstance(model, MMJSD) and (model.config.latent_dim, model.config.private_dim) == (32, 4)
    assert model.latent_size == 32 + 5 * 4
    assert (model.config.beta, model.config.beta_style, model.config.estimator) == (2.5, 5.0, "sampled")


# No MNIST image+label recipe: with one style width for every modality the label gets a style, which takes the
# class (docs/models.md); these tiny MNIST runs check the CLI and torchrun paths, not that.
def test_mmgen_train_and_eval_score_it(cli, tiny_mnist_root, workdir):
    trained = cli("train", *tiny_overrides("mnist_mmjsd", tiny_mnist_root, "model.estimator=sampled",
                                           "model.private_dim=4"), "--out", "run")
    assert trained.exit_code == 0, trained.output
    scored_completely(cli, "run")


def test_the_polymnist_recipe_trains_one_tiny_epoch(cli, tiny_mnist_root, workdir):
    shrink = [f"modalities.m{m}.channels=[4]" for m in range(5)]
    trained = cli("train", RECIPES_DIR / "polymnist_mmjsd_ms.toml", f"data.root={tiny_mnist_root.as_posix()}",
                  "data.download=false", "data.val_size=20", "train.epochs=1", "train.batch_size=20", *shrink,
                  "--out", "run", "--device", "cpu")
    assert trained.exit_code == 0, trained.output
    assert (workdir / "run" / "last.safetensors").is_file()


def test_two_processes_under_torchrun_train_it(tiny_mnist_root, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "mmgen"]
    recipe, *overrides = tiny_overrides("mnist_mmjsd", tiny_mnist_root, "model.private_dim=2")
    done = subprocess.run([*launcher, "train", str(recipe), *overrides, "--out", str(tmp_path / "run")], env=env,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "run" / "last.safetensors").is_file()

"""mmJSD: the loss against the paper's equation written out example by example, the JS divergence where its value
is known, gradients, the posteriors eval uses, and one CLI train + eval.

The reference objective below is written from Sutter, Daunhawer & Vogt (2020), for one example with modalities A:

    L = (1/|A|) Σ_{m∈A} E_{q(z|x_m)}[Σ_{m'∈A} λ_m' log p(x_m' | z)] − β JS,
    JS = (1/(|A|+1)) Σ_{j ∈ A ∪ {prior}} KL(q_j ‖ f),   f ∝ Π_j q_j^{1/(|A|+1)}

It uses the family's networks (encoders and decoders) but none of its objective code: the geometric mean is made
from precisions by hand, KLs come from torch.distributions.Normal, log-likelihoods are written out.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch.distributions import Categorical, Normal, kl_divergence

from mmgen import RecipeError
from mmgen.plugin.registry import get_registry
from mmgen_plugins.families.mmjsd import MMJSD, js_divergence
from tests.support.families import SPECS, D, build_family, log_p, make_batch, scored_completely, weight

THREE = ("image", "label", "tag")


def make_model(names=("image", "label"), specs=SPECS, **model) -> MMJSD:
    return build_family("mmjsd", names, specs, **model)


# ---- the paper's equation, by hand ---------------------------------------------------------------
def gaussian(mu, lv):
    return Normal(mu, (0.5 * lv).exp())


def geometric_mean(experts):
    """Π_j q_j^π with π = 1/len: precision Σ π/σ_j², mean Σ (π/σ_j²) μ_j / precision; returns (mu, logvar)."""
    pi = 1.0 / len(experts)
    precision = sum(pi / lv.exp() for _, lv in experts)
    mean = sum(pi / lv.exp() * mu for mu, lv in experts) / precision
    return mean, -precision.log()


def js_by_hand(experts):
    """The JS divergence of the experts (the prior among them) to their geometric mean, equal weights."""
    f = gaussian(*geometric_mean(experts))
    return sum(kl_divergence(gaussian(mu, lv), f).sum() for mu, lv in experts) / len(experts)


def encode_one(model, batch, b, names):
    return {n: tuple(t[0] for t in model.modalities[n].encode(batch[n][b : b + 1])) for n in names}


def recon_of(model, batch, b, names, z, styles=None):
    """Σ_n λ_n log p(x_n | z); with ``styles`` (the subspaces, tests/families/test_mmjsd_ms.py) x_n reads [z | s_n]."""
    return sum(weight(model, n) * log_p(model, n, z if styles is None else torch.cat([z, styles[n]]), batch[n][b])
               for n in names)


def prior_expert():
    return torch.zeros(D, dtype=torch.float64), torch.zeros(D, dtype=torch.float64)


def paper_objective(model, batch, b, eps, beta, names, styles=None, beta_style=0.0):
    """L of example b having the modalities ``names``; z_m = mu_m + σ_m eps[m] with m indexing model.names.
    With ``styles`` (s_n of each n in names: the subspaces) each expert's first D numbers are q(c | x_n), the rest
    q(s_n | x_n); x_n is reconstructed from [z | s_n], and beta_style Σ_n KL(q(s_n | x_n) ‖ N(0, I)) is taken off."""
    q = {n: (mu[:D], lv[:D]) for n, (mu, lv) in encode_one(model, batch, b, names).items()}
    draws = {n: q[n][0] + (0.5 * q[n][1]).exp() * eps[model.names.index(n)] for n in names}
    recon = sum(recon_of(model, batch, b, names, draws[n], styles) for n in names) / len(names)
    return recon - beta * js_by_hand([*q.values(), prior_expert()]) - beta_style * style_kl_by_hand(model, batch, b,
                                                                                                    names, styles)


def style_kl_by_hand(model, batch, b, names, styles):
    """Σ_n KL(q(s_n | x_n) ‖ N(0, I)) of example b, q(s_n | x_n) the experts' numbers after the first D; 0 if
    ``styles`` is None."""
    if styles is None:
        return 0.0
    experts = encode_one(model, batch, b, names)
    standard = (torch.zeros(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64))
    return sum(kl_divergence(gaussian(mu[D:], lv[D:]), gaussian(*standard)).sum() for mu, lv in experts.values())


@pytest.mark.parametrize("names", [("image", "label"), THREE], ids=["two", "three"])
@pytest.mark.parametrize(("js_weight", "warmup"), [(2.5, 1.0), (0.7, 0.3)])
def test_the_loss_is_the_papers_equation_example_by_example(names, js_weight, warmup):
    model, batch = make_model(names, beta=js_weight), make_batch(names)
    torch.manual_seed(0)
    loss = model(batch, beta=warmup).loss
    torch.manual_seed(0)  # the same draws: one standard normal per modality and example, (M, B, D)
    eps = torch.randn(len(names), 6, D, dtype=torch.float64)
    expected = -sum(paper_objective(model, batch, b, eps[:, b], warmup * js_weight, names) for b in range(6)) / 6
    torch.testing.assert_close(loss, expected, rtol=0, atol=1e-5)


PRESENT = {"image": [True, True, False, True, False], "label": [True, False, True, True, True],
           "tag": [True, False, False, False, True]}


def test_an_example_without_every_modality_is_scored_on_those_it_has():
    model, batch = make_model(THREE), make_batch(THREE, B=5)
    present = {n: torch.tensor(v) for n, v in PRESENT.items()}
    torch.manual_seed(1)
    loss = model(batch, beta=0.6, present=present).loss
    torch.manual_seed(1)
    eps = torch.randn(3, 5, D, dtype=torch.float64)
    per_example = [paper_objective(model, batch, b, eps[:, b], 0.6 * 2.5, [n for n in THREE if PRESENT[n][b]])
                   for b in range(5)]
    torch.testing.assert_close(loss, -sum(per_example) / 5, rtol=0, atol=1e-5)


def test_the_sampled_estimator_reconstructs_from_one_drawn_posterior_per_example():
    model, batch = make_model(THREE, estimator="sampled"), make_batch(THREE, B=5)
    present = {n: torch.tensor(v) for n, v in PRESENT.items()}
    torch.manual_seed(2)
    loss = model(batch, beta=1.0, present=present).loss
    torch.manual_seed(2)  # a draw from every posterior (1, M, B, D), then which one each example keeps
    eps = torch.randn(1, 3, 5, D, dtype=torch.float64)
    has = torch.tensor([PRESENT[n] for n in THREE]).T.double()  # (B, M)
    pick = Categorical(probs=has / has.sum(1, keepdim=True)).sample()  # (B,)
    expected = 0.0
    for b in range(5):
        names = [n for n in THREE if PRESENT[n][b]]
        q = encode_one(model, batch, b, names)
        chosen = THREE[pick[b]]
        assert chosen in names
        z = q[chosen][0] + (0.5 * q[chosen][1]).exp() * eps[0, pick[b], b]
        expected = expected + recon_of(model, batch, b, names, z) - 2.5 * js_by_hand([*q.values(), prior_expert()])
    torch.testing.assert_close(loss, -expected / 5, rtol=0, atol=1e-5)


def test_validation_takes_every_component_whatever_the_estimator():
    sampled, batch = make_model(estimator="sampled"), make_batch()
    stratified = make_model()
    stratified.load_state_dict(sampled.state_dict())
    torch.manual_seed(3)
    got = sampled.validation_output(batch).loss
    torch.manual_seed(3)
    torch.testing.assert_close(got, stratified(batch).loss, rtol=0, atol=0)


# ---- the JS divergence where its value is known ----------------------------------------------------------
def js_of(mus, variances, use=None):
    """js_divergence of 1-D experts given by their means and variances (one example)."""
    mu = torch.tensor(mus, dtype=torch.float64).reshape(-1, 1, 1)  # (M, B=1, D=1)
    lv = torch.tensor(variances, dtype=torch.float64).log().reshape(-1, 1, 1)
    use = torch.ones(len(mus), 1, dtype=torch.bool) if use is None else torch.tensor(use).reshape(-1, 1)
    js, kl = js_divergence(mu, lv, use)
    return js.item(), kl[:, 0]


def test_identical_experts_and_prior_have_no_divergence():
    mu, lv = torch.zeros(3, 4, 5, dtype=torch.float64), torch.zeros(3, 4, 5, dtype=torch.float64)
    js, kl = js_divergence(mu, lv, torch.ones(3, 4, dtype=torch.bool))
    assert js.shape == (4,) and kl.shape == (3, 4)
    torch.testing.assert_close(js, torch.zeros(4, dtype=torch.float64), rtol=0, atol=1e-12)


def test_the_js_divergence_in_closed_form():
    # One expert N(2, 1) with the prior N(0, 1): f = N(1, 1); both KLs are 1/2, so JS = 1/2.
    assert js_of([2.0], [1.0])[0] == pytest.approx(0.5, abs=1e-12)
    # N(3, 1) and N(-3, 1) with the prior: f = N(0, 1); KLs 9/2, 9/2 and 0, so JS = 3.
    js, kl = js_of([3.0, -3.0], [1.0, 1.0])
    assert js == pytest.approx(3.0, abs=1e-12)
    torch.testing.assert_close(kl, torch.tensor([4.5, 4.5], dtype=torch.float64))
    # N(0, 4) with the prior: f has precision (1/4 + 1)/2, variance 8/5.
    kl_q = 0.5 * (4 / 1.6 - 1 + math.log(1.6 / 4))
    kl_p = 0.5 * (1 / 1.6 - 1 + math.log(1.6))
    assert js_of([0.0], [4.0])[0] == pytest.approx(0.5 * (kl_q + kl_p), abs=1e-12)  # 0.1696...


def test_an_expert_an_example_lacks_takes_no_part():
    js, kl = js_of([3.0, -3.0, 100.0], [1.0, 1.0, 0.01], use=[True, True, False])
    assert js == pytest.approx(3.0, abs=1e-12) and kl[2] == 0
    assert js_of([5.0, 7.0], [2.0, 3.0], use=[False, False])[0] == 0  # nothing but the prior: f is the prior


# ---- gradients ---------------------------------------------------------------------------------
CONV = {**SPECS, "image": {"kind": "conv_image", "shape": [1, 8, 8], "channels": [4], "likelihood": "laplace",
                           "learn_scale": True}}  # a likelihood with a parameter of its own: the scale


@pytest.mark.parametrize("estimator", ["stratified", "sampled"])
@pytest.mark.parametrize("specs", [SPECS, CONV], ids=["mlp", "conv-laplace"])
def test_every_encoder_and_decoder_gets_a_gradient(specs, estimator):
    model = make_model(THREE, specs, estimator=estimator)
    batch = make_batch(THREE) | ({"image": torch.rand(6, 1, 8, 8, dtype=torch.float64)} if specs is CONV else {})
    model(batch).loss.backward()
    params = dict(model.named_parameters())
    assert {n.split(".")[1] for n in params} == set(THREE)  # the modalities' networks are all there is
    assert any(".decoder." in n for n in params) and any(".encoder." in n for n in params)
    assert [n for n, p in params.items() if p.grad is None or p.grad.abs().sum() == 0] == []


def test_the_encoders_feel_the_js_term_and_the_decoders_do_not():
    batch = make_batch()
    grads = {}
    for js_weight in (0.0, 4.0):
        model = make_model(beta=js_weight)
        torch.manual_seed(0)
        loss = model(batch).loss
        grads[js_weight] = dict(zip([n for n, _ in model.named_parameters()],
                                    torch.autograd.grad(loss, list(model.parameters())), strict=True))
    for name, g in grads[0.0].items():
        if ".decoder." in name:
            torch.testing.assert_close(g, grads[4.0][name], rtol=0, atol=0)
        else:
            assert not torch.allclose(g, grads[4.0][name])


# ---- the posteriors eval uses ----------------------------------------------------------------------
def test_given_one_modality_the_posterior_is_its_encoder_and_given_more_the_mixture():
    model, batch = make_model(THREE), make_batch(THREE, B=4)
    with torch.no_grad():
        z = torch.randn(4, D, dtype=torch.float64)
        experts = {n: model.modalities[n].encode(batch[n]) for n in THREE}
        for n in THREE:
            q = model.posterior({n: batch[n]})
            mu, lv = experts[n]
            torch.testing.assert_close(q.mean, mu)
            torch.testing.assert_close(q.log_prob(z), gaussian(mu, lv).log_prob(z).sum(-1))
        q = model.posterior({n: batch[n] for n in ("image", "tag")})
        density = sum(gaussian(*experts[n]).log_prob(z).sum(-1).exp() for n in ("image", "tag")) / 2
        torch.testing.assert_close(q.log_prob(z), density.log())
        present = {"image": torch.tensor([True, False, False, True]), "label": torch.tensor([True, True, False, False]),
                   "tag": torch.tensor([True, True, False, False])}
        q = model.posterior(batch, present)
        torch.testing.assert_close(q.mean[3], experts["image"][0][3])  # image alone
        assert torch.equal(q.mean[2], torch.zeros(D, dtype=torch.float64))  # none: N(0, I)


def test_the_dynamic_prior_inference_is_the_geometric_mean_of_the_given_and_the_prior():
    model, batch = make_model(THREE, inference="dynamic_prior"), make_batch(THREE, B=3)
    with torch.no_grad():
        q = model.posterior({n: batch[n] for n in ("label", "tag")})
        for b in range(3):
            experts = encode_one(model, batch, b, ("label", "tag"))
            mu, lv = geometric_mean([*experts.values(), prior_expert()])
            torch.testing.assert_close((q.mu[b], q.logvar[b]), (mu, lv))


def test_registered_through_the_entry_point():
    registration = get_registry().models["mmjsd"]
    assert registration.cls is MMJSD and (registration.package, registration.plugin) == ("mmgen", "mmjsd")


def test_a_recipe_with_one_modality_is_refused_with_its_key():
    with pytest.raises(RecipeError, match=r"model.kind: 'mmjsd' \(mmJSD\) needs two or more modalities"):
        make_model(("image",))


# ---- through the CLI ---------------------------------------------------------------------------------
TINY = """\
# recipes/mnist_mmjsd.toml shrunk: tiny MLPs, one short epoch on the tiny data, offline.
name = "tiny_mmjsd"
seed = 0

[model]
kind = "mmjsd"
latent_dim = 8
beta = 2.5
estimator = "sampled"

[modalities.image]
kind = "image"
encoder_hidden = [32]
decoder_hidden = [32]

[modalities.label]
kind = "label"
weight = 50.0
encoder_hidden = [32]
decoder_hidden = [32]

[data]
kind = "mnist"
root = "{root}"
download = false
val_size = 50

[train]
epochs = 1
batch_size = 50
device = "cpu"
"""


def test_mmgen_train_and_eval_score_it(cli, tiny_mnist_root, workdir):
    (workdir / "tiny.toml").write_text(TINY.format(root=tiny_mnist_root.as_posix()))
    trained = cli("train", "tiny.toml", "--out", "run")
    assert trained.exit_code == 0, trained.output
    metrics = [json.loads(line) for line in (workdir / "run" / "metrics.jsonl").read_text().splitlines()]
    logged = set().union(*metrics)
    assert {"train/js", "train/nll/image", "train/kl/label", "val/loss", "val/elbo(image,label)"} <= logged
    scored_completely(cli, "run")


@pytest.mark.parametrize(("override", "key"), [("model.estimator=mixture", "model.estimator"),
                                               ("model.beta=-1", "model.beta"),
                                               ("model.inference=poe", "model.inference")])
def test_a_bad_setting_is_one_line_naming_its_key(cli, cli_error, tiny_mnist_root, workdir, override, key):
    (workdir / "tiny.toml").write_text(TINY.format(root=tiny_mnist_root.as_posix()))
    line = cli_error(cli("recipes", "validate", "tiny.toml", override))
    assert key in line

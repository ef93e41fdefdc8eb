"""MVTCAE: the loss against the paper's equation written out example by example, the same on a linear-Gaussian
model in closed form, the posteriors eval uses, where gradients go, and one CLI train + eval.

The reference objective below is written from Hwang et al. (2021), as the authors' code computes it:

    q(z | X) ∝ Π_m q(z | x_m)                      (no prior expert)
    L(X) = (M − α)/M E_q(z|X)[Σ_m λ_m log p(x_m | z)] − β [(1 − α) KL(q(z|X) ‖ p(z)) + α/M Σ_m KL(q(z|X) ‖ q(z|x_m))]

with β the recipe's β times the trainer's warm-up; a modality an example lacks leaves its product and its terms
(MultiVae's rule). It uses the family's networks (encoders, decoders) but none of its objective code: the
product is formed from precisions by hand, the densities and KLs are torch.distributions'.
"""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Bernoulli, Categorical, Normal, kl_divergence

from mmgen import DiagonalGaussian, RecipeError
from mmgen.eval.likelihood import likelihood_report
from mmgen.plugin.registry import get_registry
from mmgen.recipe import build_model, load_recipe
from mmgen_plugins.families.mvtcae import MVTCAE, MVTCAEConfig
from tests.support import RECIPES_DIR
from tests.support import linear_gaussian as lg
from tests.support.families import SPECS, D, build_family, make_batch, scored_completely, tiny_overrides

THREE = ("image", "label", "tag")


def make_model(names=("image", "label"), specs=SPECS, **model) -> MVTCAE:
    return build_family("mvtcae", names, specs, **model)


# ---- the paper's equation, by hand ---------------------------------------------------------------
def expert(model, name, x) -> Normal:
    """q(z | x_m) of one example as a torch Normal over D dimensions."""
    mu, logvar = (t[0] for t in model.modalities[name].encode(x[None]))
    return Normal(mu, (0.5 * logvar).exp())


def product(experts: list[Normal]) -> Normal:
    """Π_m N(mu_m, var_m) normalized: precisions add, the mean is precision-weighted; no prior expert."""
    precision = sum(1 / q.variance for q in experts)  # (D,)
    mean = sum(q.loc / q.variance for q in experts) / precision
    return Normal(mean, precision.rsqrt())


def log_p(model, name, z, x):
    """log p(x_m | z) of one example: Bernoulli on grey values for the image, categorical for a label."""
    params = model.modalities[name].decode(z[None])[0]
    if name == "image":
        return Bernoulli(logits=params, validate_args=False).log_prob(x).sum()
    return Categorical(logits=params).log_prob(x)


def paper_objective(model, batch, b, eps, alpha, beta, has=None):
    """L of example b with z = mu + σ eps from its product; ``has``: the modalities example b has (all by default)."""
    M = len(batch)
    names = [n for n in batch if has is None or n in has]
    experts = {n: expert(model, n, batch[n][b]) for n in names}
    joint = product(list(experts.values()))
    z = joint.loc + joint.scale * eps
    weight = {n: model.modalities[n].config.weight for n in names}
    fit = sum(weight[n] * log_p(model, n, z, batch[n][b]) for n in names)
    prior = Normal(torch.zeros_like(z), torch.ones_like(z))
    kl_prior = kl_divergence(joint, prior).sum()
    kl_views = sum(kl_divergence(joint, experts[n]).sum() for n in names)
    return (M - alpha) / M * fit - beta * ((1 - alpha) * kl_prior + alpha / M * kl_views)


@pytest.mark.parametrize("names", [("image", "label"), THREE], ids=["two", "three"])
@pytest.mark.parametrize(("alpha", "beta", "warmup"), [(5 / 6, 2.5, 1.0), (0.1, 1.0, 0.3), (1.0, 0.7, 0.5)])
def test_the_loss_is_the_papers_equation_example_by_example(names, alpha, beta, warmup):
    model, batch = make_model(names, alpha=alpha, beta=beta), make_batch(names)
    torch.manual_seed(0)
    loss = model(batch, beta=warmup).loss
    torch.manual_seed(0)  # the same draws: one standard normal (B, D) for z ~ q(z | X)
    eps = torch.randn(6, D, dtype=torch.float64)
    expected = -sum(paper_objective(model, batch, b, eps[b], alpha, warmup * beta) for b in range(6)) / 6
    torch.testing.assert_close(loss, expected, rtol=0, atol=1e-5)


def test_an_example_lacking_a_modality_drops_it_from_its_product_and_its_terms():
    model, batch = make_model(THREE, alpha=0.4, beta=1.5), make_batch(THREE, B=5)
    has = [THREE, ("image",), ("label", "tag"), ("image", "tag"), ("tag",)]
    present = {n: torch.tensor([n in h for h in has]) for n in THREE}
    torch.manual_seed(1)
    loss = model(batch, beta=0.7, present=present).loss
    torch.manual_seed(1)
    eps = torch.randn(5, D, dtype=torch.float64)
    expected = -sum(paper_objective(model, batch, b, eps[b], 0.4, 0.7 * 1.5, has[b]) for b in range(5)) / 5
    torch.testing.assert_close(loss, expected, rtol=0, atol=1e-5)


# ---- a linear-Gaussian model: every term in closed form --------------------------------------------
def linear_gaussian_model(alpha, beta) -> MVTCAE:
    modalities = {n: lg.LinearGaussian(n, *lg.SPECS[n], seed=i) for i, n in enumerate(lg.SPECS)}
    return MVTCAE(modalities, MVTCAEConfig(latent_dim=lg.D, alpha=alpha, beta=beta)).double()


def flat_prior_posterior(model, data, names):
    """The posterior of z under a flat prior given x_names (what the product of these experts is, exactly):
    precision Σ WᵀW/σ², mean its inverse times Σ Wᵀ(x − b)/σ², from matrices, not the experts."""
    precision = sum(model.modalities[n].W.T @ model.modalities[n].W / model.modalities[n].sigma ** 2 for n in names)
    shift = sum((data[n] - model.modalities[n].b) @ model.modalities[n].W / model.modalities[n].sigma ** 2
                for n in names)  # (B, D)
    cov = torch.linalg.inv(precision)  # (D, D)
    return shift @ cov, cov


def kl_closed_form(mu_q, cov_q, mu_p, cov_p):
    """KL(N(mu_q, cov_q) ‖ N(mu_p, cov_p)), full covariances, per example ``(B,)``."""
    inv_p = torch.linalg.inv(cov_p)
    diff = mu_p - mu_q  # (B, D)
    return 0.5 * (torch.trace(inv_p @ cov_q) + ((diff @ inv_p) * diff).sum(-1) - mu_q.shape[-1]
                  + torch.logdet(cov_p) - torch.logdet(cov_q))


def expected_log_likelihood(modality, mu, cov, x):
    """E_{z ~ N(mu, cov)} log N(x; W z + b, σ² I) = log N(x; W mu + b, σ² I) − tr(W cov Wᵀ) / (2σ²): ``(B,)``."""
    mean = mu @ modality.W.T + modality.b
    at_mean = Normal(mean, modality.sigma).log_prob(x).sum(-1)
    return at_mean - torch.trace(modality.W @ cov @ modality.W.T) / (2 * modality.sigma ** 2)


@pytest.mark.parametrize(("alpha", "beta"), [(5 / 6, 2.5), (0.3, 1.0)])
def test_on_a_linear_gaussian_model_the_kls_and_the_expected_loss_are_the_closed_forms(alpha, beta, monkeypatch):
    model = linear_gaussian_model(alpha, beta)
    data = lg.sample_data(model, 4)
    names = list(lg.SPECS)
    mu, cov = flat_prior_posterior(model, data, names)
    kl_prior = kl_closed_form(mu, cov, torch.zeros_like(mu), torch.eye(lg.D, dtype=torch.float64))
    kl_views = {n: kl_closed_form(mu, cov, *flat_prior_posterior(model, data, [n])) for n in names}
    fit = sum(expected_log_likelihood(model.modalities[n], mu, cov, data[n]) for n in names)  # λ = 1
    M = len(names)
    bound = (M - alpha) / M * fit - beta * ((1 - alpha) * kl_prior + alpha / M * sum(kl_views.values()))

    # The loss is quadratic in z, so its mean over the 2D points mu ± sqrt(D) σ_d e_d is its expectation exactly:
    # each example is repeated 2D times, each copy with one of those draws.
    points = (lg.D ** 0.5) * torch.cat([torch.eye(lg.D), -torch.eye(lg.D)]).double()  # (2D, D)
    repeated = {n: x.repeat_interleave(2 * lg.D, 0) for n, x in data.items()}  # (4 * 2D, size)
    monkeypatch.setattr(DiagonalGaussian, "rsample",
                        lambda q, sample_shape=(): q.mean + q.stddev * points.repeat(4, 1))
    out = model(repeated)
    torch.testing.assert_close(out.loss, -bound.mean(), rtol=0, atol=1e-9)
    torch.testing.assert_close(out.terms["kl"], kl_prior.mean(), rtol=0, atol=1e-9)
    for n in names:
        torch.testing.assert_close(out.terms[f"kl/{n}"], kl_views[n].mean(), rtol=0, atol=1e-9)
    assert float(kl_views["a"].min()) > 0.01  # the unimodal experts really differ from q(z | X)


# ---- the posteriors eval uses ----------------------------------------------------------------------
def test_the_posterior_of_any_subset_is_the_product_of_its_experts_without_a_prior():
    model, data = linear_gaussian_model(0.5, 1.0), None
    data = lg.sample_data(model, 3)
    with torch.no_grad():
        for names in (["a"], ["b"], ["a", "b"]):
            q = model.posterior({n: data[n] for n in names})
            mu, cov = flat_prior_posterior(model, data, names)
            torch.testing.assert_close((q.mean, q.variance), (mu, torch.diagonal(cov).expand_as(mu)))
        with_prior, _ = lg.exact_posterior(model, data, ["a", "b"])  # the product with a N(0, I) expert differs
        assert not torch.allclose(model.posterior(data).mean, with_prior)


def test_present_chooses_the_experts_of_each_example_and_none_gives_the_prior():
    model, batch = make_model(THREE), make_batch(THREE, B=3)
    present = {"image": torch.tensor([True, True, False]), "label": torch.tensor([True, False, False]),
               "tag": torch.tensor([False, False, False])}
    with torch.no_grad():
        q = model.posterior(batch, present)
        both = product([expert(model, n, batch[n][0]) for n in ("image", "label")])
        image = expert(model, "image", batch["image"][1])
        torch.testing.assert_close((q.mean[0], q.stddev[0]), (both.loc, both.scale))
        torch.testing.assert_close((q.mean[1], q.stddev[1]), (image.loc, image.scale))
        assert torch.equal(q.mean[2], torch.zeros(D, dtype=torch.float64))
        assert torch.equal(q.stddev[2], torch.ones(D, dtype=torch.float64))


def test_the_likelihood_report_scores_it_with_each_estimates_own_proposal():
    model, data = make_model(), make_batch(B=8)
    torch.manual_seed(0)
    report = likelihood_report(model, data, K=16, batch_size=4)
    assert set(report) == {"log p(image)", "log p(label)", "log p(image,label)", "log p(image|label)",
                           "log p(label|image)"}
    assert report["log p(image,label)"].proposal == "q(z|image,label)"
    assert all(torch.isfinite(torch.tensor(e.value)) for e in report.values())


# ---- gradients -----------------------------------------------------------------------------------
CONV = {**SPECS, "image": {"kind": "conv_image", "shape": [1, 8, 8], "channels": [4], "likelihood": "laplace",
                           "learn_scale": True}}  # a likelihood with a parameter of its own: the scale


@pytest.mark.parametrize("specs", [SPECS, CONV], ids=["mlp", "conv-laplace"])
def test_every_encoder_and_decoder_parameter_gets_a_gradient(specs):
    model = make_model(THREE, specs)
    batch = make_batch(THREE) | ({"image": torch.rand(6, 1, 8, 8, dtype=torch.float64)} if specs is CONV else {})
    model(batch, beta=0.5).loss.backward()
    assert {n.split(".")[1] for n, _ in model.named_parameters()} == set(THREE)  # nothing but the modalities
    assert [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0] == []


def test_a_modality_no_example_has_gets_no_gradient():
    model, batch = make_model(THREE), make_batch(THREE)
    present = {"image": torch.ones(6, dtype=torch.bool), "label": torch.ones(6, dtype=torch.bool),
               "tag": torch.zeros(6, dtype=torch.bool)}
    model(batch, present=present).loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is None or g.abs().sum() == 0 for n, g in grads.items() if n.startswith("modalities.tag."))
    assert all(g.abs().sum() > 0 for n, g in grads.items() if not n.startswith("modalities.tag."))


# ---- registration and settings --------------------------------------------------------------------
def test_registered_through_the_entry_point():
    registration = get_registry().models["mvtcae"]
    assert registration.cls is MVTCAE and (registration.package, registration.plugin) == ("mmgen", "mvtcae")


def test_a_recipe_with_one_modality_is_refused_with_its_key():
    with pytest.raises(RecipeError, match=r"model.kind: 'mvtcae' \(MVTCAE\) needs two or more modalities"):
        make_model(("image",))


@pytest.mark.parametrize("recipe", ["mnist_mvtcae", "polymnist_mvtcae"])
def test_the_shipped_recipes_build(recipe):
    model = build_model(load_recipe(RECIPES_DIR / f"{recipe}.toml"))
    assert isinstance(model, MVTCAE) and model.config.alpha == pytest.approx(5 / 6) and model.config.beta == 2.5


# ---- through the CLI ---------------------------------------------------------------------------------
def tiny(root) -> list:
    """recipes/mnist_mvtcae.toml shrunk to tiny MLPs and one short epoch on the tiny data, offline."""
    return tiny_overrides("mnist_mvtcae", root)


def test_mmgen_train_and_eval_score_it(cli, tiny_mnist_root, workdir):
    trained = cli("train", *tiny(tiny_mnist_root), "--out", "run")
    assert trained.exit_code == 0, trained.output
    scored_completely(cli, "run")


@pytest.mark.parametrize(("override", "message"), [
    ("model.alpha=1.5", "model.alpha"), ("model.beta=0", "model.beta"), ("model.gamma=1", "model.gamma"),
])
def test_a_bad_setting_is_one_line_naming_its_key(cli, cli_error, tiny_mnist_root, workdir, override, message):
    line = cli_error(cli("train", *tiny(tiny_mnist_root), override, "--out", "run"))
    assert message in line
    assert not (workdir / "run").exists()

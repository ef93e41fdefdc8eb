"""JMVAE-kl: the loss against the paper's equation written out example by example, where the unimodal
encoders get their gradient from, the joint and unimodal posteriors eval uses, and one CLI train + eval.

The reference objective below is written from Suzuki et al. (2016), JMVAE-kl:

    L(x, w) = E_q(z|x,w)[log p(x|z) + log p(w|z)] − KL(q(z|x,w) ‖ p(z))
              − α [KL(q(z|x,w) ‖ q(z|x)) + KL(q(z|x,w) ‖ q(z|w))]

summed over M modalities, with λ_m on each log-likelihood and β on both KL terms (the warm-up). It uses
the family's networks (encoders, decoders, the joint encoder's output) but none of its objective code:
Gaussians, Bernoulli and categorical log-probabilities and the KLs are written by hand.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch.distributions import Categorical

from mmgen import MmgenError, RecipeError, hookimpl
from mmgen.eval.likelihood import likelihood_report
from mmgen.plugin.registry import get_registry
from mmgen.testing import registered_plugin
from mmgen_plugins.families.jmvae import JMVAE
from mmgen_plugins.families.jmvae.model import encoder_branch
from mmgen_plugins.label import CategoricalLabel
from tests.support.families import SPECS, D, build_family, log_p, make_batch, weight


def make_model(names=("image", "label"), specs=SPECS, **model) -> JMVAE:
    return build_family("jmvae", names, specs, joint_features=2, joint_hidden=[5], **model)


# ---- the paper's equation, by hand ---------------------------------------------------------------
def kl_gauss(mu1, lv1, mu2, lv2):
    """KL(N(mu1, e^lv1) ‖ N(mu2, e^lv2)), diagonal, summed over dimensions."""
    return 0.5 * (lv2 - lv1 + (lv1.exp() + (mu1 - mu2) ** 2) / lv2.exp() - 1).sum()


def kl_standard(mu, lv):
    return 0.5 * (lv.exp() + mu**2 - 1 - lv).sum()


def paper_objective(model, batch, b, eps, alpha, beta):
    """L of example b with z = mu + σ eps drawn from the joint encoder q(z | X)."""
    x = {n: v[b : b + 1] for n, v in batch.items()}
    mu, lv = (t[0] for t in model.joint(x))  # q(z | X) of this example alone
    z = mu + (0.5 * lv).exp() * eps
    L = sum(weight(model, n) * log_p(model, n, z, x[n][0]) for n in batch) - beta * kl_standard(mu, lv)
    for n in batch:
        mu_n, lv_n = (t[0] for t in model.modalities[n].encode(x[n]))  # q(z | x_n)
        L = L - beta * alpha * kl_gauss(mu, lv, mu_n, lv_n)
    return L


def unimodal_elbo(model, batch, b, name, eps, beta):
    """λ_m log p(x_m | z) − β KL(q(z|x_m) ‖ p(z)) with z = mu + σ eps from q(z | x_m)."""
    x = batch[name][b : b + 1]
    mu, lv = (t[0] for t in model.modalities[name].encode(x))
    z = mu + (0.5 * lv).exp() * eps
    return weight(model, name) * log_p(model, name, z, x[0]) - beta * kl_standard(mu, lv)


@pytest.mark.parametrize("names", [("image", "label"), ("image", "label", "tag")], ids=["two", "three"])
@pytest.mark.parametrize(("alpha", "beta"), [(0.1, 1.0), (2.5, 0.3)])
def test_the_loss_is_the_papers_equation_example_by_example(names, alpha, beta):
    model, batch = make_model(names, alpha=alpha), make_batch(names)
    torch.manual_seed(0)
    loss = model(batch, beta=beta).loss
    torch.manual_seed(0)  # the same draws: one standard normal (B, D) for z ~ q(z | X)
    eps = torch.randn(6, D, dtype=torch.float64)
    expected = -sum(paper_objective(model, batch, b, eps[b], alpha, beta) for b in range(6)) / 6
    torch.testing.assert_close(loss, expected, rtol=0, atol=1e-5)


def test_an_example_without_every_modality_takes_its_unimodal_elbos():
    model, batch = make_model(alpha=0.4), make_batch(B=4)
    present = {"image": torch.tensor([True, True, False, True]), "label": torch.tensor([True, False, True, True])}
    torch.manual_seed(1)
    loss = model(batch, beta=0.7, present=present).loss
    torch.manual_seed(1)  # joint draw (B, D) first, then one draw per modality (M, B, D)
    eps, eps_uni = torch.randn(4, D, dtype=torch.float64), torch.randn(2, 4, D, dtype=torch.float64)
    per_example = [
        paper_objective(model, batch, 0, eps[0], 0.4, 0.7),
        unimodal_elbo(model, batch, 1, "image", eps_uni[0, 1], 0.7),  # image only
        unimodal_elbo(model, batch, 2, "label", eps_uni[1, 2], 0.7),  # label only
        paper_objective(model, batch, 3, eps[3], 0.4, 0.7),
    ]
    torch.testing.assert_close(loss, -sum(per_example) / 4, rtol=0, atol=1e-5)


# ---- gradients -----------------------------------------------------------------------------------
def unimodal_encoder_params(model):
    return [p for name, p in model.modalities.named_parameters() if ".decoder." not in name]


def decoder_params(model):
    return [p for name, p in model.modalities.named_parameters() if ".decoder." in name]


def test_the_unimodal_encoders_learn_only_from_the_alpha_term():
    model, batch = make_model(alpha=0.6), make_batch()
    torch.manual_seed(0)
    loss = model(batch, beta=0.5).loss
    got = torch.autograd.grad(loss, unimodal_encoder_params(model))
    mu, lv = model.joint(batch)  # (B, D)
    pull = sum(kl_gauss(mu[b], lv[b], *(t[b] for t in model.modalities[n].encode(batch[n])))
               for n in batch for b in range(6))
    want = torch.autograd.grad(0.5 * 0.6 * pull / 6, unimodal_encoder_params(model))  # β α mean_b Σ_m KL
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-12)
    assert any(g.abs().sum() > 0 for g in got)  # the α term does reach them


def test_without_alpha_the_unimodal_encoders_get_nothing_and_the_decoders_do_not_notice():
    batch = make_batch()
    grads = {}
    for alpha in (0.0, 0.8):
        model = make_model(alpha=alpha)
        torch.manual_seed(0)
        loss = model(batch).loss
        grads[alpha] = torch.autograd.grad(loss, [*unimodal_encoder_params(model), *decoder_params(model)])
    n = len(unimodal_encoder_params(make_model()))
    assert all(g.abs().sum() == 0 for g in grads[0.0][:n])
    assert all(g.abs().sum() > 0 for g in grads[0.8][:n])
    for a, b in zip(grads[0.0][n:], grads[0.8][n:], strict=True):  # the decoders see the joint draw only
        torch.testing.assert_close(a, b, rtol=0, atol=0)


CONV = {**SPECS, "image": {"kind": "conv_image", "shape": [1, 8, 8], "channels": [4], "likelihood": "laplace",
                           "learn_scale": True}}  # a likelihood with a parameter of its own: the scale


@pytest.mark.parametrize("specs", [SPECS, CONV], ids=["mlp", "conv-laplace"])
def test_every_trainable_parameter_gets_a_gradient_and_only_the_branch_decoders_are_frozen(specs):
    """The joint encoder's branches are whole modality networks; their decoders and likelihoods are never used,
    so they are frozen (DistributedDataParallel waits for a gradient of every trainable parameter)."""
    names = ("image", "label", "tag")
    model = make_model(names, specs)
    batch = make_batch(names) | ({"image": torch.rand(6, 1, 8, 8, dtype=torch.float64)} if specs is CONV else {})
    model(batch).loss.backward()
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    generative = (".decoder.", ".expand.", ".log_scale")
    assert frozen == {n for n, _ in model.named_parameters()
                      if n.startswith("joint.branches.") and any(part in n for part in generative)}
    assert [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0)
            ] == []


class NoSampler(Categorical):
    def sample(self, sample_shape=torch.Size()):
        raise NotImplementedError("no sampler")


class Unsampled(CategoricalLabel):
    """A label whose likelihood cannot draw a sample."""

    def likelihood(self, params):
        return NoSampler(logits=params, validate_args=False)


@hookimpl
def _register_unsampled(register):
    register("unsampled-label", Unsampled)


def test_a_branch_whose_likelihood_cannot_sample_is_one_error_naming_the_modality():
    specs = {**SPECS, "label": {**SPECS["label"], "kind": "unsampled-label"}}
    with registered_plugin("mmgen-test-unsampled", register_modalities=_register_unsampled), \
            pytest.raises(MmgenError, match=r"^modalities.label: the jmvae family cannot find which") as info:
        make_model(specs=specs)
    assert "no sampler" in str(info.value) and "sample() and log_prob()" in info.value.hint


def test_building_a_branch_draws_no_more_than_building_its_modality():
    """Its decoder is probed with a random sample; the weights built after it must not depend on that."""
    image = get_registry().lookup("modalities", "image")
    config = make_model().modalities["image"].config
    torch.manual_seed(3)
    image("image", config, 2)
    plain = torch.rand(3)
    torch.manual_seed(3)
    encoder_branch(image, "image", config, 2, "jmvae")
    assert torch.equal(torch.rand(3), plain)


# ---- the posteriors eval uses ----------------------------------------------------------------------
def test_the_posterior_is_the_joint_encoder_given_all_and_the_unimodal_one_given_one():
    model, batch = make_model(), make_batch()
    with torch.no_grad():
        q, (mu, lv) = model.posterior(batch), model.joint(batch)
        torch.testing.assert_close((q.mu, q.logvar), (mu, lv), rtol=0, atol=0)
        for n in batch:
            q_n, (mu_n, lv_n) = model.posterior({n: batch[n]}), model.modalities[n].encode(batch[n])
            torch.testing.assert_close((q_n.mu, q_n.logvar), (mu_n, lv_n), rtol=0, atol=1e-12)
        assert not torch.allclose(q.mu, model.posterior({"image": batch["image"]}).mu)


def test_a_subset_is_the_product_of_its_unimodal_posteriors_and_present_chooses_per_example():
    names = ("image", "label", "tag")
    model, batch = make_model(names), make_batch(names, B=4)
    with torch.no_grad():
        (mu_i, lv_i), (mu_l, lv_l) = model.modalities["image"].encode(batch["image"]), \
            model.modalities["label"].encode(batch["label"])
        q = model.posterior({"image": batch["image"], "label": batch["label"]})
        var = 1 / (1 / lv_i.exp() + 1 / lv_l.exp())  # precisions add; no prior expert
        torch.testing.assert_close((q.mu, q.logvar), (var * (mu_i / lv_i.exp() + mu_l / lv_l.exp()), var.log()))
        present = {"image": torch.tensor([True, True, False, False]), "label": torch.tensor([True, False, False, True]),
                   "tag": torch.tensor([True, False, False, True])}
        q = model.posterior(batch, present)
        joint = model.joint(batch)
        torch.testing.assert_close((q.mu[0], q.logvar[0]), (joint[0][0], joint[1][0]))  # all three: joint
        torch.testing.assert_close((q.mu[1], q.logvar[1]), (mu_i[1], lv_i[1]))  # image alone
        assert torch.equal(q.mu[2], torch.zeros(D)) and torch.equal(q.logvar[2], torch.zeros(D))  # none: N(0, I)
        assert not torch.allclose(q.mu[3], joint[0][3])  # label and tag: their product, not the joint encoder


def test_log_joint_minus_log_q_is_the_importance_weight_by_hand():
    model, batch = make_model(), make_batch(B=2)
    with torch.no_grad():
        q = model.posterior(batch)
        z = q.mean + 0.3  # (B, D): any point
        got = model.log_joint(z, batch, ["image", "label"]) - q.log_prob(z)
        for b in range(2):
            log_prior = -0.5 * (z[b] ** 2).sum() - 0.5 * D * torch.log(torch.tensor(2 * torch.pi, dtype=z.dtype))
            log_q = -0.5 * (((z[b] - q.mu[b]) ** 2) / q.logvar[b].exp() + q.logvar[b]
                            + torch.log(torch.tensor(2 * torch.pi, dtype=z.dtype))).sum()
            want = log_prior + sum(log_p(model, n, z[b], batch[n][b]) for n in batch) - log_q
            torch.testing.assert_close(got[b], want, rtol=0, atol=1e-9)


def test_the_likelihood_report_scores_it_with_each_estimates_own_proposal():
    model, data = make_model(), make_batch(B=8)
    torch.manual_seed(0)
    report = likelihood_report(model, data, K=16, batch_size=4)
    assert set(report) == {"log p(image)", "log p(label)", "log p(image,label)", "log p(image|label)",
                           "log p(label|image)"}
    assert report["log p(image,label)"].proposal == "q(z|image,label)" and report["log p(image)"].n == 8
    assert all(torch.isfinite(torch.tensor(e.value)) for e in report.values())


def test_registered_through_the_entry_point():
    registration = get_registry().models["jmvae"]
    assert registration.cls is JMVAE and (registration.package, registration.plugin) == ("mmgen", "jmvae")


def test_a_recipe_with_one_modality_is_refused_with_its_key():
    with pytest.raises(RecipeError, match=r"model.kind: 'jmvae' \(JMVAE-kl\) needs two or more modalities"):
        make_model(("image",))


# ---- through the CLI ---------------------------------------------------------------------------------
TINY = """\
# recipes/mnist_jmvae.toml shrunk: tiny MLPs, one short epoch on the tiny data, offline.
name = "tiny_jmvae"
seed = 0

[model]
kind = "jmvae"
latent_dim = 8
joint_features = 8
joint_hidden = [16]

[modalities.image]
kind = "image"
encoder_hidden = [32]
decoder_hidden = [32]
binarize = true

[modalities.label]
kind = "label"
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
    result = cli("eval", "run", "-K", "5", "--limit", "20", "--per-class", "5", "--device", "cpu", "--no-pictures",
                 "--json")
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)
    estimates = {k: v for k, v in scores.items() if k.startswith("log p(")}
    assert len(estimates) == 5 and estimates["log p(image,label)"]["proposal"] == "q(z|image,label)"
    assert all(e["value"] is not None and e["value"] < 0 for e in estimates.values())
    assert scores["skipped"] == {}
    fractions = {k: v for k, v in scores.items() if k.startswith(("accuracy", "coherence"))}
    assert {"accuracy image->label", "coherence label->image", "coherence joint"} <= set(fractions)

"""A fusion plugin may return a posterior of its own: the model asks what it can do, never its type.

Two fusions are registered ad hoc, each returning a class that is none of mmgen's (nor a subclass):
``ForeignGaussian``, the product of experts as a plain ``Distribution`` (closed-form KL and
``detached``), and ``ForeignMixture``, the mixture of the present experts (stratified draws). Both
draw their noise through the same torch calls as mmgen's own posteriors, so every objective must
give exactly the numbers of the built-in ``poe`` and ``moe`` fusions: a capability the model did
not ask for would change them.
"""

from __future__ import annotations

import json
from typing import ClassVar

import pytest
import torch
from torch import Tensor
from torch.distributions import Distribution, Normal, constraints

from mmgen import DiagonalGaussian, Fusion, GaussianMixture, MmgenError, hookimpl, product_of_experts
from mmgen.eval.likelihood import iwae_log_marginal
from mmgen.model import with_prior_fallback
from mmgen.recipe import build_model, validate_recipe
from mmgen.testing import registered_plugin
from tests.support.toy import IMAGE, LABEL, make_batch


class ForeignGaussian(Distribution):
    """N(mu, exp(logvar)) over the last dimension, written without mmgen's classes."""

    arg_constraints: ClassVar[dict] = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, mu: Tensor, logvar: Tensor, with_kl: bool = True, with_detached: bool = True):
        self.mu, self.logvar = mu, logvar
        self.normal = Normal(mu, torch.exp(0.5 * logvar), validate_args=False)
        if with_kl:
            self.kl_to_standard_normal = lambda: 0.5 * (logvar.exp() + mu.square() - 1 - logvar).sum(-1)
        if with_detached:
            self.detached = lambda: ForeignGaussian(mu.detach(), logvar.detach())
        super().__init__(batch_shape=mu.shape[:-1], event_shape=mu.shape[-1:], validate_args=False)

    def rsample(self, sample_shape=()):
        return self.normal.rsample(torch.Size(sample_shape))

    def log_prob(self, z):
        return self.normal.log_prob(z).sum(-1)

    @property
    def mean(self):
        return self.mu


class ForeignMixture(Distribution):
    """The uniform mixture of the active components ``(C, *batch, D)``, without mmgen's classes."""

    arg_constraints: ClassVar[dict] = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, mu: Tensor, logvar: Tensor, active: Tensor):
        self.mu, self.logvar, self.active = mu, logvar, active
        self.components = Normal(mu, torch.exp(0.5 * logvar), validate_args=False)
        weights = active / active.sum(0, keepdim=True).clamp(min=1)  # (C, *batch)
        self.component_weights = weights.to(mu.dtype)
        super().__init__(batch_shape=mu.shape[1:-1], event_shape=mu.shape[-1:], validate_args=False)

    def rsample_components(self, sample_shape=()):
        return self.components.rsample(torch.Size(sample_shape))  # (*S, C, *batch, D)

    def rsample(self, sample_shape=()):
        """A component by its weight, then z from it (the required part: sampling and the ELBO of validation)."""
        shape = torch.Size(sample_shape)
        every = self.rsample_components(shape)  # (*S, C, *batch, D)
        pick = torch.distributions.Categorical(probs=self.component_weights.movedim(0, -1)).sample(shape)
        one_hot = torch.nn.functional.one_hot(pick, self.mu.shape[0]).movedim(-1, len(shape))  # (*S, C, *batch)
        return (every * one_hot[..., None]).sum(len(shape))

    def log_prob(self, z):
        c_dim = -(len(self.batch_shape) + 2)
        per = self.components.log_prob(z.unsqueeze(c_dim)).sum(-1)  # (*S, C, *batch)
        return torch.logsumexp(per + self.component_weights.log(), dim=c_dim + 1)

    def detached(self):
        return ForeignMixture(self.mu.detach(), self.logvar.detach(), self.active)

    @property
    def mean(self):
        return (self.component_weights[..., None] * self.mu).sum(0)


class ForeignProduct(Fusion):
    def forward(self, mu, logvar, use):
        return ForeignGaussian(*product_of_experts(mu, logvar, use))


class ForeignProductNoKL(Fusion):
    def forward(self, mu, logvar, use):
        return ForeignGaussian(*product_of_experts(mu, logvar, use), with_kl=False, with_detached=False)


class ForeignExperts(Fusion):
    def forward(self, mu, logvar, use):
        return ForeignMixture(*with_prior_fallback(mu, logvar, use))


@hookimpl
def _register_fusions(register):
    register("foreign_poe", ForeignProduct)
    register("foreign_poe_bare", ForeignProductNoKL)
    register("foreign_moe", ForeignExperts)


@pytest.fixture(autouse=True)
def foreign_fusions():
    with registered_plugin("mmgen-test-foreign", register_fusions=_register_fusions):
        yield


def recipe(fusion: str, objective: str = "elbo", samples: int = 1, **data) -> dict:
    return {"name": "foreign", "model": {"latent_dim": 8, "fusion": {"kind": fusion}, "objective": objective,
                                         "samples": samples},
            "modalities": {"image": IMAGE, "label": LABEL}, "data": {"kind": "mnist", **data}}


def model(fusion: str, objective: str = "elbo", samples: int = 1):
    return build_model(validate_recipe(recipe(fusion, objective, samples)))  # same seed: same weights


def loss_and_grads(m, batch, seed=0):
    torch.manual_seed(seed)
    m.zero_grad()
    out = m(batch)
    out.loss.backward()
    return out, {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}


def test_the_foreign_posteriors_are_none_of_mmgens_classes():
    batch = make_batch(["image", "label"], 3)
    for kind in ("foreign_poe", "foreign_moe"):
        q = model(kind).posterior(batch)
        assert not isinstance(q, DiagonalGaussian | GaussianMixture)


@pytest.mark.parametrize(("ours", "theirs"), [("foreign_poe", "poe"), ("foreign_moe", "moe")])
@pytest.mark.parametrize(("objective", "samples"), [("elbo", 1), ("iwae", 4), ("dreg", 4)])
def test_every_objective_asks_the_posterior_and_matches_the_builtin_fusion(ours, theirs, objective, samples):
    batch = make_batch(["image", "label"], 6)
    out_a, grads_a = loss_and_grads(model(ours, objective, samples), batch)
    out_b, grads_b = loss_and_grads(model(theirs, objective, samples), batch)
    torch.testing.assert_close(out_a.loss, out_b.loss, rtol=1e-5, atol=1e-4)
    for key in ("kl", "nll/image", "nll/label"):
        torch.testing.assert_close(out_a.terms[key], out_b.terms[key], rtol=1e-5, atol=1e-4)
    assert grads_a.keys() == grads_b.keys() and grads_a
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], rtol=1e-4, atol=1e-5)


def test_without_a_closed_form_kl_the_elbo_estimates_it():
    # The same density without kl_to_standard_normal: the KL term is now log q(z) - log p(z) at z,
    # unbiased but not equal to the closed form on one draw.
    batch = make_batch(["image", "label"], 6)
    bare, closed = loss_and_grads(model("foreign_poe_bare"), batch)[0], loss_and_grads(model("poe"), batch)[0]
    assert float(bare.terms["kl"]) != pytest.approx(float(closed.terms["kl"]), rel=1e-3)
    torch.testing.assert_close(bare.terms["nll/image"], closed.terms["nll/image"])  # same draws


def test_dreg_refuses_a_posterior_without_detached_in_one_line():
    batch = make_batch(["image", "label"], 2)
    with pytest.raises(MmgenError, match="dreg.*detached"):
        model("foreign_poe_bare", "dreg", 2)(batch)


def test_iwae_likelihoods_use_any_posterior():
    batch = make_batch(["image", "label"], 4)
    torch.manual_seed(1)
    a = iwae_log_marginal(model("foreign_moe"), batch, ["image", "label"], K=50)
    torch.manual_seed(1)
    b = iwae_log_marginal(model("moe"), batch, ["image", "label"], K=50)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("fusion", ["foreign_poe", "foreign_moe"])
def test_train_and_mmgen_eval_with_a_foreign_posterior(cli, tiny_recipe, tmp_path, fusion):
    out = tmp_path / "run"
    result = cli("train", tiny_recipe, f"model.fusion.kind={fusion}", "model.objective=dreg", "model.samples=2",
                 "--out", out, "--device", "cpu")
    assert result.exit_code == 0, result.output
    result = cli("eval", out, "-K", "5", "--limit", "20", "--per-class", "2", "--no-pictures")
    assert result.exit_code == 0, result.output
    report = json.loads((out / "eval.json").read_text())
    assert report["log p(image,label)"]["value"] < 0 and report["log p(image,label)"]["n"] == 20
    assert 0 <= report["accuracy image->label"] <= 1 and 0 <= report["coherence label->image"] <= 1


def test_a_dreg_recipe_with_a_posterior_without_detached_fails_before_any_run_dir(cli, cli_error, tiny_recipe,
                                                                                    tmp_path):
    out = tmp_path / "run"
    result = cli("train", tiny_recipe, "model.fusion.kind=foreign_poe_bare", "model.objective=dreg",
                 "--out", out, "--device", "cpu")
    assert "detached" in cli_error(result)
    assert not out.exists()

"""Mixture posteriors (MMVAE, MoPoE) have the guarantees of the product of experts: finite values and
gradients with log-variances of ±1e4 and components far apart, under every objective. Their prior
fallback reads no value on the host (no device sync per step) and gives paired batches bit for bit
the numbers of the fallback it replaced."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor

import mmgen_plugins.moe
import mmgen_plugins.mopoe
from mmgen import FusionConfig, get_registry
from mmgen.model import DiagonalGaussian, GaussianMixture
from mmgen.model.bounds import draw_latents, kl_part, reduce_bound
from mmgen.model.mixture import bound_logvar, with_prior_fallback
from mmgen.recipe import build_model, load_recipe, validate_recipe
from tests.support.toy import IMAGE, LABEL, make_batch

M, B, D = 2, 4, 3


def fusion(kind: str):
    cls = get_registry().lookup("fusions", kind)
    return cls(cls.Config(kind=kind) if kind != "moe" else FusionConfig(kind="moe"), D, M)


def extreme_experts() -> tuple[torch.Tensor, torch.Tensor]:
    """Expert 0 is 1e4 times sharper than float32 can hold and sits at +1e3; expert 1 is 1e4 times
    wider and sits at -1e3; example by example the roles swap."""
    mu = torch.tensor([[1e3, -1e3, 0.0, 5.0], [-1e3, 1e3, 0.0, -5.0]])[..., None].expand(M, B, D).clone()
    logvar = torch.tensor([[-1e4, 1e4, -1e4, 0.0], [1e4, -1e4, 1e4, 0.0]])[..., None].expand(M, B, D).clone()
    return mu.requires_grad_(), logvar.requires_grad_()


@pytest.mark.parametrize("kind", ["moe", "mopoe", "poe"])
@pytest.mark.parametrize(("objective", "K"), [("elbo", 1), ("iwae", 4), ("dreg", 4)])
def test_extreme_experts_give_finite_values_and_gradients(kind, objective, K):
    torch.manual_seed(0)
    mu, logvar = extreme_experts()
    use = torch.ones(M, B, dtype=torch.bool)
    q = fusion(kind)(mu, logvar, use)  # batch_shape (B,)
    draw = draw_latents(q, K)
    kl = kl_part(q, draw.z, objective)
    recon = -draw.z.square().sum(-1)  # any smooth function of z stands for the log-likelihood
    bound = reduce_bound(recon - kl, draw, objective)
    assert torch.isfinite(bound).all() and torch.isfinite(q.log_prob(draw.z)).all()
    bound.sum().backward()
    assert torch.isfinite(mu.grad).all() and torch.isfinite(logvar.grad).all()


def test_a_point_far_from_a_sharp_component_scores_finite_with_a_zero_gradient():
    mu = torch.zeros(1, 1, requires_grad=True)
    logvar = torch.full((1, 1), -1e4, requires_grad=True)
    z = torch.tensor([[10.0]])
    logp = DiagonalGaussian(mu, logvar).log_prob(z)
    assert bool(logp < -1e30) and torch.isfinite(logp).all()
    logp.sum().backward()
    assert torch.isfinite(mu.grad).all() and torch.isfinite(logvar.grad).all()


def test_the_variance_bound_changes_nothing_ordinary_and_keeps_huge_ones_finite():
    ordinary = torch.linspace(-20, 20, 101)
    torch.testing.assert_close(bound_logvar(ordinary), ordinary, atol=5e-5, rtol=0)
    assert float(bound_logvar(torch.tensor(1e4))) == pytest.approx(30.0)
    q = GaussianMixture(torch.zeros(1, 1, 2), torch.full((1, 1, 2), 1e4), torch.ones(1, 1, dtype=torch.bool))
    assert torch.isfinite(q.rsample_components((3,))).all()
    assert torch.equal(q.detached().logvar, q.logvar)  # not bounded twice


def test_logged_terms_of_a_mixture_average_over_the_components_an_example_has():
    # An image-only example under MMVAE has one component (its own) plus an inactive placeholder:
    # the logged KL must be that component's, not diluted by the placeholder's zero weight.
    recipe = validate_recipe({"name": "t", "model": {"latent_dim": 8, "fusion": {"kind": "moe"}, "terms": "joint"},
                              "modalities": {"image": IMAGE, "label": LABEL}, "data": {"kind": "mnist"}})
    model = build_model(recipe)
    batch = make_batch(["image", "label"], 6)
    only_image = {"image": torch.ones(6, dtype=torch.bool), "label": torch.zeros(6, dtype=torch.bool)}
    torch.manual_seed(0)
    out = model(batch, present=only_image)
    q = model.posterior({"image": batch["image"]})  # the image expert alone
    torch.manual_seed(0)
    z = q.rsample_components((1,))[:, 0]  # the same draw the model took for the image component
    expected = (q.components.log_prob(z.unsqueeze(1))[:, 0] - torch.distributions.Normal(0, 1).log_prob(z).sum(-1))
    torch.testing.assert_close(out.terms["kl"], expected.mean(), rtol=1e-4, atol=1e-4)


def old_with_prior_fallback(mu: Tensor, logvar: Tensor, active: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The fallback before the sync-free one, verbatim (a host check per call, then C -> C + 1): the reference."""
    shape = torch.broadcast_shapes(mu.shape, logvar.shape, (*active.shape, 1))
    mu, logvar, active = mu.expand(shape), logvar.expand(shape), active.expand(shape[:-1])
    if bool(active.any(0).all()):
        return mu, logvar, active
    mu, logvar = torch.where(active[..., None], mu, 0.0), torch.where(active[..., None], logvar, 0.0)
    none = ~active.any(0, keepdim=True)  # (1, *batch)
    zeros = torch.zeros_like(mu[:1])
    return torch.cat([mu, zeros]), torch.cat([logvar, zeros]), torch.cat([active, none])


def toy_recipe(kind: str, objective: str, samples: int):
    """Tiny networks; the terms are joint plus singles, so a mixture has inactive components in a paired batch."""
    return validate_recipe({"name": "t", "model": {"latent_dim": 8, "fusion": {"kind": kind}, "objective": objective,
                                                   "samples": samples, "terms": "subsampled"},
                            "modalities": {"image": IMAGE, "label": LABEL}, "data": {"kind": "mnist"}})


def train_steps(recipe, batches, fallback, monkeypatch) -> list[tuple[Tensor, list[Tensor]]]:
    """Adam steps with ``fallback`` in both mixture fusions -> (loss, gradients) of every step."""
    monkeypatch.setattr(mmgen_plugins.moe, "with_prior_fallback", fallback)
    monkeypatch.setattr(mmgen_plugins.mopoe, "with_prior_fallback", fallback)
    model = build_model(recipe)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    torch.manual_seed(0)
    steps = []
    for batch in batches:
        opt.zero_grad()
        loss = model(batch, beta=0.5).loss
        loss.backward()
        opt.step()
        steps.append((loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    return steps


SHIPPED = Path(__file__).resolve().parents[2] / "recipes"


@pytest.mark.parametrize("case", ["mnist_mmvae", "mnist_mopoe", "moe-dreg", "mopoe-iwae"])
def test_paired_training_steps_are_bit_identical_to_the_old_fallback(case, monkeypatch):
    # The shipped recipes (every component active), and subsampled terms whose paired batches have
    # inactive components (a single-modality term of a mixture), under the sampled objectives.
    if case.startswith("mnist"):
        recipe = load_recipe(SHIPPED / f"{case}.toml")
        g = torch.Generator().manual_seed(0)
        raw = [{"image": torch.randint(0, 256, (8, 1, 28, 28), dtype=torch.uint8, generator=g),
                "label": torch.randint(0, 10, (8,), generator=g)} for _ in range(3)]
        prepare = build_model(recipe).modalities
        batches = [{n: prepare[n].prepare(v) for n, v in r.items()} for r in raw]
    else:
        kind, objective = case.split("-")
        recipe = toy_recipe(kind, objective, 3 if objective == "dreg" else 2)
        batches = [make_batch(["image", "label"], 6, seed=s) for s in range(3)]
    before = train_steps(recipe, batches, old_with_prior_fallback, monkeypatch)
    after = train_steps(recipe, batches, with_prior_fallback, monkeypatch)
    for (loss_a, grads_a), (loss_b, grads_b) in zip(before, after, strict=True):
        assert torch.equal(loss_a, loss_b)
        assert len(grads_a) == len(grads_b) and all(torch.equal(a, b) for a, b in zip(grads_a, grads_b))


@pytest.mark.parametrize("kind", ["moe", "mopoe"])
@pytest.mark.parametrize("objective", ["elbo", "iwae", "dreg"])
def test_the_mixture_path_reads_no_value_on_the_host(kind, objective):
    # On the meta device every read of a value (bool(), .item(), a data-dependent shape) raises,
    # so a fusion and bound that run there cannot make the host wait for the device.
    mu = torch.randn(M, 1, B, D, device="meta", requires_grad=True)  # (M, T, B, D): one term
    logvar = torch.randn(M, 1, B, D, device="meta", requires_grad=True)
    for use in (torch.ones(M, 1, 1, dtype=torch.bool), torch.zeros(M, 1, B, dtype=torch.bool)):
        q = fusion(kind).to("meta")(mu, logvar, use.to("meta"))  # paired (M, T, 1), then nothing present (M, T, B)
        draw = draw_latents(q, 2)
        bound = reduce_bound(-kl_part(q, draw.z, objective), draw, objective)  # (T, B)
        bound.sum().backward()
        assert q.num_components == (M if kind == "moe" else 2**M - 1) and bound.shape == (1, B)


@pytest.mark.parametrize("kind", ["moe", "mopoe"])
def test_a_position_without_any_modality_gets_the_prior_in_its_first_component(kind):
    mu, logvar = torch.randn(M, B, D) * 100, torch.randn(M, B, D) * 100
    use = torch.tensor([[True, False, True, False], [True, True, False, False]])  # example 3 has nothing
    q = fusion(kind)(mu, logvar, use)
    assert q.num_components == (M if kind == "moe" else 2**M - 1)  # no extra component
    assert q.active[:, 3].tolist() == [True] + [False] * (q.num_components - 1)
    assert torch.equal(q.mu[:, 3], torch.zeros_like(q.mu[:, 3])) and torch.equal(q.logvar[:, 3], q.mu[:, 3])
    z = torch.randn(5, B, D)
    prior = torch.distributions.Normal(0.0, 1.0).log_prob(z[:, 3]).sum(-1)  # (5,)
    torch.testing.assert_close(q.log_prob(z)[:, 3], prior)
    torch.testing.assert_close(q.component_weights.sum(0), torch.ones(B))


@pytest.mark.parametrize("kind", ["moe", "mopoe"])
@pytest.mark.parametrize(("objective", "K"), [("elbo", 1), ("dreg", 3)])
def test_examples_without_any_modality_train_finite_and_count_for_nothing(kind, objective, K):
    recipe = toy_recipe(kind, objective, K)
    model = build_model(recipe)
    batch = make_batch(["image", "label"], 6)
    present = {"image": torch.tensor([1, 1, 0, 1, 0, 0]).bool(), "label": torch.tensor([1, 0, 1, 1, 0, 0]).bool()}
    torch.manual_seed(0)
    out = model(batch, present=present)
    out.loss.backward()
    assert torch.isfinite(out.loss) and all(torch.isfinite(v).all() for v in out.terms.values())
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    # Examples 4 and 5 have nothing: whatever their inputs, the loss does not change.
    other = {n: v.clone() for n, v in batch.items()}
    other["image"][4:], other["label"][4:] = 1 - other["image"][4:], (other["label"][4:] + 3) % 10
    torch.manual_seed(0)
    assert torch.equal(model(other, present=present).loss, out.loss)

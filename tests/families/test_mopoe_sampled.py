"""MoPoE's sampled estimator (``model.estimator = "sampled"``): one subset per example instead of all of them.

The bound both estimators estimate, per example b with modalities A_b and the n_b non-empty subsets S ⊆ A_b:

    L_b = (1 / n_b) Σ_S E_{z ~ q_S}[ Σ_{m ∈ A_b} λ_m log p(x_m | z) - β (log q(z) - log p(z)) ]

with q_S the product of the experts of S and the N(0, I) prior expert, q = (1 / n_b) Σ_S q_S the mixture and
p = N(0, I); for the IWAE, E_{z_1..K ~ q_S}[log mean_k exp(...)]. The stratified estimator draws and decodes
every S; the sampled one draws one S uniformly and decodes its draws. The reference below is written from
that equation: products of experts, Gaussian, Bernoulli and categorical log-densities by hand, with the
family's encoders and decoders as the networks and none of its objective code.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

import mmgen_plugins.families.mvae.model as mvae_model
from mmgen import MmgenError, RecipeError
from mmgen.recipe import load_recipe
from mmgen_plugins.families.mopoe import MoPoE, MoPoEConfig
from tests.support import RECIPES_DIR
from tests.support.families import SHAPE, SPECS, D, build_family

NAMES = ("image", "label", "tag")
# Who has what: all three, two of three (each pair once), one, and none (counted for nothing).
PRESENT = {"image": [1, 1, 1, 0, 0, 1, 0], "label": [1, 1, 0, 1, 0, 0, 0], "tag": [1, 0, 1, 1, 1, 0, 0]}


def make_model(estimator="sampled", objective="elbo", samples=1) -> MoPoE:
    return build_family("mopoe", NAMES, estimator=estimator, objective=objective, samples=samples)


def make_batch(repeats=1, seed=0) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The seven examples of PRESENT, the whole batch ``repeats`` times over (independent draws per copy)."""
    B = len(PRESENT["image"])
    g = torch.Generator().manual_seed(seed)
    batch = {"image": torch.rand(B, *SHAPE, generator=g, dtype=torch.float64),
             "label": torch.randint(0, 10, (B,), generator=g), "tag": torch.randint(0, 4, (B,), generator=g)}
    present = {n: torch.tensor(v, dtype=torch.bool) for n, v in PRESENT.items()}
    return ({n: x.repeat(repeats, *[1] * (x.dim() - 1)) for n, x in batch.items()},
            {n: p.repeat(repeats) for n, p in present.items()})


# ---- the bound of one example, by hand --------------------------------------------------------------------
SUBSETS = [s for r in range(1, len(NAMES) + 1) for s in itertools.combinations(range(len(NAMES)), r)]


def log_normal(z, mu, var):
    return (-0.5 * ((z - mu) ** 2 / var + var.log() + math.log(2 * math.pi))).sum(-1)


def product(mus, logvars):
    """The product of the experts ``mus, logvars`` (lists of ``(D,)``) and N(0, I): mean and variance."""
    precision = 1 + sum(torch.exp(-lv) for lv in logvars)
    return sum(mu * torch.exp(-lv) for mu, lv in zip(mus, logvars, strict=True)) / precision, 1 / precision


def log_likelihood(model, name, z, x):
    """log p(x | z) for ``z`` ``(K, D)``: Bernoulli pixels or a categorical class, written out."""
    out = model.modalities[name].decode(z)
    if name == "image":
        return (x * F.logsigmoid(out) + (1 - x) * F.logsigmoid(-out)).flatten(1).sum(1)
    return out.log_softmax(-1)[:, x]


def reference_bound(model, batch, has, b, subset, eps, objective, beta):
    """L_b's estimate from K draws ``mu_S + sd_S * eps`` (``eps`` ``(K, D)``) of the product of ``subset``."""
    M = len(NAMES)
    own = [m for m in range(M) if has[m]]
    experts = [model.modalities[NAMES[m]].encode(batch[NAMES[m]][b:b + 1]) for m in range(M)]
    products = {s: product([experts[m][0][0] for m in s], [experts[m][1][0] for m in s])
                for s in SUBSETS if set(s) <= set(own)}
    mu, var = products[subset]
    z = mu + var.sqrt() * eps  # (K, D)
    log_q = torch.stack([log_normal(z, m, v) for m, v in products.values()]).logsumexp(0) - math.log(len(products))
    log_p = log_normal(z, torch.zeros(D, dtype=z.dtype), torch.ones(D, dtype=z.dtype))
    ll = sum(SPECS[NAMES[m]]["weight"] * log_likelihood(model, NAMES[m], z, batch[NAMES[m]][b]) for m in own)
    f = ll - beta * (log_q - log_p)  # (K,)
    return z, (f.mean() if objective == "elbo" else f.logsumexp(0) - math.log(len(f)))


def capture(model, monkeypatch):
    """Record the family's draw (``model.draw``) and its per-example bound (``reduce_bound``)."""
    seen = {}
    draw = model.draw
    model.draw = lambda q: seen.setdefault("draw", draw(q))
    reduce = mvae_model.reduce_bound
    monkeypatch.setattr(mvae_model, "reduce_bound", lambda *a, **k: seen.setdefault("bound", reduce(*a, **k)))
    return seen


# ---- the tests --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("objective", "K"), [("elbo", 1), ("elbo", 3), ("iwae", 4)])
def test_the_bound_of_each_example_is_the_mixture_bound_at_draws_of_its_drawn_subset(objective, K, monkeypatch):
    model = make_model("sampled", objective, K)
    batch, present = make_batch()
    B, beta = len(PRESENT["image"]), 0.7
    seen = capture(model, monkeypatch)
    torch.manual_seed(5)
    loss = model(batch, beta=beta, present=present).loss
    # The same noise: the family draws every component's standard normals, (K, C, T, B, D), before its choice.
    torch.manual_seed(5)
    eps = torch.randn(K, len(SUBSETS), 1, B, D, dtype=torch.float64)
    component, z, bound = seen["draw"].component[0], seen["draw"].z[:, 0], seen["bound"][0]  # (B,), (K, B, D), (B,)
    total = 0.0
    for b in range(B):
        has = [bool(present[n][b]) for n in NAMES]
        if not any(has):  # counted for nothing
            assert bound[b] == 0
            continue
        subset = SUBSETS[int(component[b])]
        assert all(has[m] for m in subset), f"example {b} drew {subset}, which it does not have"
        z_ref, ref = reference_bound(model, batch, has, b, subset, eps[:, component[b], 0, b], objective, beta)
        torch.testing.assert_close(z[:, b], z_ref, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(bound[b], ref, rtol=1e-10, atol=1e-10)
        total = total + ref
    torch.testing.assert_close(loss, -total / B, rtol=1e-10, atol=1e-10)


def test_a_subset_is_drawn_uniformly_among_the_non_empty_subsets_the_example_has():
    model = make_model("sampled")
    R = 4000
    batch, present = make_batch(repeats=R)
    with torch.no_grad():
        picks = model.draw(model.posterior(batch, present)).component.reshape(R, -1)  # (R, B)
    for b in range(picks.shape[1]):
        own = {m for m, n in enumerate(NAMES) if PRESENT[n][b]}
        counts = torch.bincount(picks[:, b], minlength=len(SUBSETS)).double() / R  # (C,)
        if not own:  # no subset: the prior, in component 0 (the stratified weights say the same)
            assert counts[0] == 1
            continue
        allowed = torch.tensor([set(s) <= own for s in SUBSETS])
        p = 1 / int(allowed.sum())
        assert (counts[~allowed] == 0).all()
        # Each allowed frequency is a binomial proportion: 5 standard errors, sqrt(p (1 - p) / R) <= 0.008.
        assert (counts[allowed] - p).abs().max() <= 5 * math.sqrt(p * (1 - p) / R)


@pytest.mark.parametrize(("objective", "K"), [("elbo", 1), ("iwae", 3)])
def test_its_average_over_draws_is_the_stratified_value(objective, K):
    # Fixed weights, one batch of the seven examples. One forward pass on R copies of the batch gives the mean
    # of R independent losses; G such passes per estimator give a mean and its standard error. The stratified
    # loss is random too (its z), so the difference is compared with the standard error of the difference:
    # under unbiasedness it is within 4 of them with probability 0.99994 (the seeds are fixed besides).
    stratified = make_model("stratified", objective, K)
    sampled = make_model("sampled", objective, K)
    sampled.load_state_dict(stratified.state_dict())
    batch, present = make_batch(repeats=100)
    G = 40
    torch.manual_seed(0)
    with torch.no_grad():
        values = {name: torch.stack([m(batch, beta=0.7, present=present).loss for _ in range(G)])
                  for name, m in (("stratified", stratified), ("sampled", sampled))}
    mean = {k: v.mean() for k, v in values.items()}
    se = math.sqrt(sum(float(v.var()) / G for v in values.values()))
    assert se < 0.01  # nats, of a loss near 10.6: 4 standard errors resolve a bias of 0.4%
    assert abs(float(mean["sampled"] - mean["stratified"])) < 4 * se, (mean, se)


def test_its_average_gradient_over_draws_is_the_stratified_gradient():
    # The weights of the draw do not depend on the parameters, so the reparameterized gradient is unbiased too.
    # As above, G gradients of R copies each; compared along a fixed random direction in the encoders' and in
    # the decoders' parameters (one scalar each, so one 4-standard-error test each).
    stratified, sampled = make_model("stratified"), make_model("sampled")
    sampled.load_state_dict(stratified.state_dict())
    batch, present = make_batch(repeats=100)
    G, g = 40, torch.Generator().manual_seed(1)
    decoder = torch.cat([torch.full((p.numel(),), ".decoder." in n) for n, p in stratified.named_parameters()])
    directions = torch.randn(2, decoder.numel(), generator=g, dtype=torch.float64) * torch.stack([~decoder, decoder])
    torch.manual_seed(0)
    along = {}
    for name, model in (("stratified", stratified), ("sampled", sampled)):
        grads = []
        for _ in range(G):
            model.zero_grad()
            model(batch, beta=0.7, present=present).loss.backward()
            grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
        along[name] = torch.stack(grads) @ directions.T  # (G, 2): encoders, decoders
    se = sum(v.var(0) / G for v in along.values()).sqrt()  # (2,)
    assert se[0] < 0.1 * along["stratified"][:, 0].mean().abs()  # the encoders' gradient is resolved
    assert ((along["sampled"].mean(0) - along["stratified"].mean(0)).abs() < 4 * se).all(), (along, se)


def test_one_decoder_pass_per_example_instead_of_one_per_subset():
    shapes = {}
    for estimator in ("stratified", "sampled"):
        model = make_model(estimator, samples=2)
        decode = model.modalities["label"].decode
        model.modalities["label"].decode = lambda z, decode=decode, e=estimator: shapes.setdefault(e, z.shape) \
            and decode(z)
        batch, present = make_batch()
        model(batch, present=present)
    B = len(PRESENT["image"])
    assert shapes == {"stratified": (2 * len(SUBSETS), 1, B, D), "sampled": (2, 1, B, D)}  # (K*C | K, T, B, D)


def test_dreg_with_the_sampled_estimator_is_refused_in_one_line():
    with pytest.raises(RecipeError, match=r"1 problem\(s\): model.estimator: 'sampled' draws one subset per "
                                          r"example, and DReG on a mixture needs every subset's draws"):
        make_model("sampled", "dreg", 2)
    model = make_model("stratified", "dreg", 2)  # past the recipe's check: the model refuses too
    model.config = model.config.model_copy(update={"estimator": "sampled"})
    batch, present = make_batch()
    with pytest.raises(MmgenError, match="model.estimator: 'sampled'"):
        model(batch, present=present)


def test_the_default_stays_stratified_and_the_recipe_names_the_sampled_one():
    assert MoPoEConfig().estimator == "stratified"
    recipe = load_recipe(RECIPES_DIR / "polymnist_mopoe_sampled.toml")
    assert (recipe.model.kind, recipe.model.estimator, len(recipe.modalities)) == ("mopoe", "sampled", 5)
    stratified = load_recipe(RECIPES_DIR / "polymnist_mopoe_sampled.toml", ["model.estimator=stratified"])
    twin = load_recipe(RECIPES_DIR / "polymnist_mopoe.toml")  # the stratified recipe, as the MVAE family + mopoe
    assert stratified.to_dict()["modalities"] == twin.to_dict()["modalities"]
    assert stratified.to_dict()["train"] == twin.to_dict()["train"]

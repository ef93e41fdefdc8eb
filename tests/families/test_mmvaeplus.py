"""MMVAE+: the loss against the paper's equation written out example by example, which private latent each
reconstruction reads, the posterior eval uses, where the gradients go (DReG too), and one CLI train + eval.

The reference objective below is written from Palumbo, Daunhawer & Vogt (2023), the MMVAE+ objective with the
K-sample stratified estimator of the authors' code (src/objectives.py, ``_m_iwae``), for one example X:

    L(X) = (1/M) Σ_m  log (1/K) Σ_k w_mk        (elbo: (1/M) Σ_m (1/K) Σ_k log w_mk)
    log w_mk = λ_m log p(x_m | z, w_m) + Σ_{n≠m} λ_n log p(x_n | z, w̃_n)
               + β [log p(z) + log p(w_m) − log (1/M) Σ_j q(z | x_j) − log q(w_m | x_m)]

with z ~ q(z | x_m), w_m ~ q(w_m | x_m), w̃_n ~ r_n = N(0, (s · P · softmax(ρ_n))²), and for elbo the private part
of the β term in closed form. It uses the modalities' networks (encode, decode) and the auxiliary prior's ρ, but
none of the family's code: Gaussians and their KL from torch.distributions, the likelihoods written by hand
(tests/support/families.py), one loop per example, component and draw.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from mmgen import RecipeError
from mmgen.plugin.registry import get_registry
from mmgen.recipe import build_model, load_recipe
from mmgen_plugins.families.mmvaeplus import MMVAEPlus
from tests.support import RECIPES_DIR
from tests.support.families import (
    SHAPE,
    D,
    build_family,
    log_p,
    make_batch,
    scored_completely,
    tiny_overrides,
    weight,
)

P = 2  # each modality's private latent; D is the shared one


def make_model(names=("image", "label"), **model) -> MMVAEPlus:
    built = build_family("mmvaeplus", names, **{"private_dim": P, **model})
    if built.config.learn_aux:
        with torch.no_grad():  # r_n's scales unequal across dimensions and modalities, so a mix-up shows
            built.aux_logits.copy_(torch.randn(built.aux_logits.shape, generator=torch.Generator().manual_seed(5)))
    return built


# ---- the paper's equation, by hand ---------------------------------------------------------------
def paper_bound(model, batch, b, eps, objective, beta, has):
    """L(X) of example b; ``eps`` = (z noise (K, M, B, D), w noise (K, M, B, P), r_n noise [(K, M, B, P)] per n);
    ``has[n]``: the example has modality n (the mixture and the reconstructions are over those)."""
    names, (eps_z, eps_w, eps_r) = model.names, eps
    K, s = eps_z.shape[0], model.config.aux_scale
    experts = [model.modalities[n].encode(batch[n][b : b + 1]) for n in names]  # (1, D + P) each
    q_z = [Normal(mu[0, :D], (0.5 * lv[0, :D]).exp()) for mu, lv in experts]
    q_w = [Normal(mu[0, D:], (0.5 * lv[0, D:]).exp()) for mu, lv in experts]
    sigma_r = [s * P * torch.softmax(model.aux_logits[n], -1) for n in range(len(names))]
    standard = Normal(torch.zeros(P, dtype=torch.float64), torch.ones(P, dtype=torch.float64))
    active = [m for m in range(len(names)) if has[m]]
    total = 0.0
    for m in active:
        log_ws = []
        for k in range(K):
            z = q_z[m].loc + q_z[m].scale * eps_z[k, m, b]
            w = q_w[m].loc + q_w[m].scale * eps_w[k, m, b]
            recon = 0.0
            for n in active:
                w_n = w if n == m else sigma_r[n] * eps_r[n][k, m, b]
                x_n = batch[names[n]][b]
                recon = recon + weight(model, names[n]) * log_p(model, names[n], torch.cat([z, w_n]), x_n)
            log_q_j = torch.stack([q_z[j].log_prob(z).sum() for j in active])  # log q(z | x_j)
            log_q_z = torch.logsumexp(log_q_j, 0) - math.log(len(active))
            log_p_z = Normal(torch.zeros_like(z), torch.ones_like(z)).log_prob(z).sum()
            if objective == "elbo":
                private = -kl_divergence(q_w[m], standard).sum()
            else:
                private = standard.log_prob(w).sum() - q_w[m].log_prob(w).sum()
            log_ws.append(recon + beta * (log_p_z - log_q_z + private))
        log_ws = torch.stack(log_ws)
        bound = log_ws.mean() if objective == "elbo" else torch.logsumexp(log_ws, 0) - math.log(K)
        total = total + bound / len(active)
    return total


def same_noise(model, B, K):
    """The standard normals the family draws, in its order: z per component, w per component, then r_n per n."""
    M = len(model.names)
    shape = (K, M, B)
    return (torch.randn(*shape, D, dtype=torch.float64), torch.randn(*shape, P, dtype=torch.float64),
            [torch.randn(*shape, P, dtype=torch.float64) for _ in range(M)])


@pytest.mark.parametrize("names", [("image", "label"), ("image", "label", "tag")], ids=["two", "three"])
@pytest.mark.parametrize(("objective", "K", "beta"), [("elbo", 1, 1.0), ("elbo", 3, 0.4), ("iwae", 3, 2.5),
                                                     ("dreg", 2, 0.7)])
def test_the_loss_is_the_papers_equation_example_by_example(names, objective, K, beta):
    model, batch = make_model(names, objective=objective, samples=K, beta=beta, aux_scale=0.7), make_batch(names, B=4)
    torch.manual_seed(0)
    loss = model(batch, beta=1.0).loss
    torch.manual_seed(0)
    eps = same_noise(model, 4, K)
    has = [True] * len(names)
    expected = -sum(paper_bound(model, batch, b, eps, objective, beta, has) for b in range(4)) / 4
    torch.testing.assert_close(loss, expected, rtol=0, atol=1e-5)


def test_an_example_mixes_and_reconstructs_only_the_modalities_it_has():
    names = ("image", "label", "tag")
    model, batch = make_model(names, objective="iwae", samples=2, beta=0.6), make_batch(names, B=4)
    present = {"image": torch.tensor([True, True, False, True]), "label": torch.tensor([True, False, True, True]),
               "tag": torch.tensor([False, True, True, True])}
    torch.manual_seed(3)
    loss = model(batch, beta=0.5, present=present).loss  # β = 0.6 · the warm-up's 0.5
    torch.manual_seed(3)
    eps = same_noise(model, 4, 2)
    per_example = [paper_bound(model, batch, b, eps, "iwae", 0.3, [bool(present[n][b]) for n in names])
                   for b in range(4)]
    torch.testing.assert_close(loss, -sum(per_example) / 4, rtol=0, atol=1e-5)


def test_what_an_example_lacks_changes_nothing():
    model, batch = make_model(), make_batch(B=4)
    present = {"image": torch.tensor([True, True, True, True]), "label": torch.tensor([True, False, True, False])}
    other = {**batch, "label": batch["label"].clone()}
    other["label"][[1, 3]] = (other["label"][[1, 3]] + 1) % 10
    losses = []
    for b in (batch, other):
        torch.manual_seed(0)
        losses.append(model(b, present=present).loss)
    assert torch.equal(losses[0], losses[1])
    torch.manual_seed(0)
    assert not torch.equal(model(other).loss, losses[0])  # without the mask the changed labels do count


def test_a_batch_without_a_modality_is_a_batch_where_no_example_has_it():
    model, batch = make_model(objective="iwae", samples=2), make_batch(B=4)
    torch.manual_seed(0)
    alone = model({"image": batch["image"]})
    torch.manual_seed(0)
    masked = model(batch, present={"label": torch.zeros(4, dtype=torch.bool)})
    torch.testing.assert_close(alone.loss, masked.loss, rtol=0, atol=1e-12)
    assert "nll/label" not in alone.terms and masked.terms["nll/label"] == 0


# ---- which private latent each reconstruction reads -----------------------------------------------
def recognizable(model, B):
    """Encoders that give z ≈ 10 (m + 1) and w_m ≈ 100 + m (std e^-20) for modality m; decoders that record what
    they read. Returns the records: per modality, the decoder inputs ``(K, M, B, D + P)`` of the training step."""
    seen = {}
    for m, name in enumerate(model.names):
        modality = model.modalities[name]
        mu = torch.cat([torch.full((D,), 10.0 * (m + 1)), torch.full((P,), 100.0 + m)]).double()
        modality.encode = lambda x, mu=mu: (mu.expand(x.shape[0], -1), torch.full((x.shape[0], D + P), -40.0).double())
        decode = modality.decode

        def record(latents, name=name, decode=decode):
            seen.setdefault(name, []).append(latents.detach())
            return decode(latents)

        modality.decode = record
    return seen


def test_a_cross_reconstruction_reads_a_stand_in_from_r_and_the_self_reconstruction_its_own_private_latent():
    names = ("image", "label", "tag")
    model, batch = make_model(names, samples=400, learn_aux=False, aux_scale=5.0), make_batch(names, B=3)
    seen = recognizable(model, 3)
    torch.manual_seed(0)
    model(batch)
    for n, name in enumerate(names):
        (latents,) = seen[name]  # (K, M, B, D + P): decoder n reads every component m's draws
        for m in range(3):
            z, w = latents[:, m, :, :D], latents[:, m, :, D:]
            torch.testing.assert_close(z, torch.full_like(z, 10.0 * (m + 1)))  # the shared z of component m
            if m == n:  # its own: w_n ~ q(w_n | x_n)
                torch.testing.assert_close(w, torch.full_like(w, 100.0 + n))
            else:  # a stand-in from r_n = N(0, 5²), drawn afresh for every draw and example
                assert abs(w.mean()) < 0.5 and 4.6 < w.std() < 5.4
                assert w[:, 0].ne(w[:, 1]).all()


def test_the_stand_ins_are_not_scored():
    """Neither log r_n nor log p(w_n) of a stand-in enters the loss: with every decoder ignoring w, r's scale
    changes nothing."""
    losses = []
    for scale in (0.1, 30.0):
        model, batch = make_model(learn_aux=False, aux_scale=scale), make_batch()
        for name in model.names:
            modality, decode = model.modalities[name], model.modalities[name].decode
            modality.decode = lambda latents, decode=decode: decode(
                torch.cat([latents[..., :D], 0 * latents[..., D:]], -1))
        torch.manual_seed(0)
        losses.append(model(batch).loss)
    torch.testing.assert_close(losses[0], losses[1], rtol=0, atol=1e-12)


# ---- the posterior, prior and density eval uses ------------------------------------------------------
def test_the_posterior_mixes_the_given_shared_parts_and_draws_a_missing_private_part_from_its_prior():
    names = ("image", "label", "tag")
    model, batch = make_model(names), make_batch(names, B=4)
    with torch.no_grad():
        q = model.posterior({"image": batch["image"], "tag": batch["tag"]})
        assert q.mean.shape == (4, D + 3 * P) and q.batch_shape == (4,)
        (mu_i, lv_i), (mu_t, lv_t) = model.modalities["image"].encode(batch["image"]), \
            model.modalities["tag"].encode(batch["tag"])
        torch.testing.assert_close(q.mean[:, :D], (mu_i[:, :D] + mu_t[:, :D]) / 2)  # the mixture of the two
        private = {"image": (mu_i[:, D:], lv_i[:, D:]), "label": (torch.zeros(4, P), torch.zeros(4, P)),
                   "tag": (mu_t[:, D:], lv_t[:, D:])}  # the label is not given: N(0, I)
        for m, name in enumerate(names):
            block = slice(D + m * P, D + (m + 1) * P)
            torch.testing.assert_close(q.mean[:, block], private[name][0].double())
            torch.testing.assert_close(q.variance[:, block], private[name][1].double().exp())
        z = q.sample((6,))  # (6, B, L)
        mixture = torch.stack([Normal(mu[:, :D], (0.5 * lv[:, :D]).exp()).log_prob(z[..., :D]).sum(-1)
                               for mu, lv in ((mu_i, lv_i), (mu_t, lv_t))]).logsumexp(0) - math.log(2)
        blocks = [Normal(*(t.double() for t in (private[n][0], (0.5 * private[n][1]).exp())))
                  .log_prob(z[..., D + m * P : D + (m + 1) * P]).sum(-1) for m, n in enumerate(names)]
        torch.testing.assert_close(q.log_prob(z), mixture + sum(blocks))


def test_present_masks_a_given_modality_per_example_in_both_parts():
    model, batch = make_model(), make_batch(B=4)
    present = {"image": torch.tensor([True, False, True, False]), "label": torch.tensor([True, True, False, False])}
    with torch.no_grad():
        q = model.posterior(batch, present)
        (mu_i, _), (mu_l, _) = (model.modalities[n].encode(batch[n]) for n in ("image", "label"))
        torch.testing.assert_close(q.mean[0, :D], (mu_i[0, :D] + mu_l[0, :D]) / 2)  # both
        torch.testing.assert_close(q.mean[1], torch.cat([mu_l[1, :D], torch.zeros(P).double(), mu_l[1, D:]]))
        torch.testing.assert_close(q.variance[1, D : D + P], torch.ones(P).double())  # the image's w: its prior
        torch.testing.assert_close(q.mean[2], torch.cat([mu_i[2, :D], mu_i[2, D:], torch.zeros(P).double()]))
        torch.testing.assert_close(q.variance[2, D + P :], torch.ones(P).double())  # the label's w: its prior
        torch.testing.assert_close(q.mean[3], torch.zeros(D + 2 * P).double())  # none: the prior N(0, I)
        torch.testing.assert_close(q.variance[3], torch.ones(D + 2 * P).double())


def test_log_joint_is_the_prior_of_every_latent_and_each_target_read_from_its_own_private_part():
    model, batch = make_model(), make_batch(B=2)
    with torch.no_grad():
        latents = torch.randn(2, D + 2 * P, dtype=torch.float64)  # (B, L)
        got = model.log_joint(latents, batch, ["image", "label"])
        for b in range(2):
            z, w = latents[b, :D], (latents[b, D : D + P], latents[b, D + P :])
            want = Normal(0.0, 1.0).log_prob(latents[b]).sum() + log_p(model, "image", torch.cat([z, w[0]]),
                                                                        batch["image"][b])
            want = want + log_p(model, "label", torch.cat([z, w[1]]), batch["label"][b])
            torch.testing.assert_close(got[b], want, rtol=0, atol=1e-9)


# ---- gradients -------------------------------------------------------------------------------------
@pytest.mark.parametrize("objective", ["elbo", "iwae", "dreg"])
def test_every_encoder_decoder_and_auxiliary_prior_gets_a_gradient(objective):
    names = ("image", "label", "tag")
    model, batch = make_model(names, objective=objective, samples=2), make_batch(names)
    model(batch, beta=0.5).loss.backward()
    params = dict(model.named_parameters())
    assert "aux_logits" in params
    for name in names:  # encoder and decoder of every modality
        assert any(".decoder." in p for p in params if p.startswith(f"modalities.{name}."))
    assert [n for n, p in params.items() if p.grad is None or p.grad.abs().sum() == 0] == []


def test_a_fixed_auxiliary_prior_is_a_buffer():
    model = make_model(learn_aux=False)
    assert "aux_logits" not in dict(model.named_parameters()) and "aux_logits" in dict(model.named_buffers())


def head_bias_grads(model, batch, runs):
    """The gradients of the loss for each modality's encoder head bias (every mean and log-variance), one row a run."""
    params = [model.modalities[n].head.linear.bias for n in model.names]
    return torch.stack([torch.cat(torch.autograd.grad(model(batch).loss, params)) for _ in range(runs)])


def test_dreg_has_the_iwae_value_and_decoder_gradients_and_its_encoder_gradients_in_expectation(monkeypatch):
    """With the same draws DReG's value and decoder gradients are IWAE's exactly; its encoder gradients differ
    but agree in expectation (β = 0.3, K = 5, one example repeated 200 times a run, 20 runs, within 4 standard
    errors). w's rule (1 − β) w̃ + β w̃² matters: DReG's w̃² whatever β is caught by the same statistic."""
    g = torch.Generator().manual_seed(1)
    batch = {"image": torch.rand(1, *SHAPE, generator=g, dtype=torch.float64).expand(200, -1, -1, -1),
             "label": torch.tensor([4]).expand(200)}
    models = {obj: make_model(objective=obj, samples=5, beta=0.3) for obj in ("iwae", "dreg")}
    decoders = {obj: [p for n, p in m.named_parameters() if ".decoder." in n] for obj, m in models.items()}
    torch.manual_seed(0)
    loss_iwae = models["iwae"](batch).loss
    grads_iwae = torch.autograd.grad(loss_iwae, decoders["iwae"])
    torch.manual_seed(0)
    loss_dreg = models["dreg"](batch).loss
    torch.testing.assert_close(loss_dreg, loss_iwae, rtol=0, atol=1e-12)
    for a, b in zip(torch.autograd.grad(loss_dreg, decoders["dreg"]), grads_iwae, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)

    torch.manual_seed(1)
    runs = {obj: head_bias_grads(m, batch, 20) for obj, m in models.items()}

    def z_scores(a, b):
        return (a.mean(0) - b.mean(0)) / (a.var(0) / len(a) + b.var(0) / len(b)).sqrt()

    assert z_scores(runs["dreg"], runs["iwae"]).abs().max() < 4
    assert not torch.allclose(runs["dreg"].mean(0), runs["iwae"].mean(0), rtol=1e-6)  # not the same estimator
    monkeypatch.setattr("mmgen_plugins.families.mmvaeplus.model.dreg_encoder_factor", lambda w, beta, r=1.0: w)
    torch.manual_seed(1)
    wrong = head_bias_grads(models["dreg"], batch, 20)
    assert z_scores(wrong, runs["iwae"]).abs().max() > 8


# ---- the recipes and the registration ----------------------------------------------------------------
def test_registered_through_the_entry_point():
    registration = get_registry().models["mmvaeplus"]
    assert registration.cls is MMVAEPlus and (registration.package, registration.plugin) == ("mmgen", "mmvaeplus")


@pytest.mark.parametrize(("recipe", "widths", "beta"), [("mnist_mmvaeplus", (64, 16), 1.0),
                                                        ("polymnist_mmvaeplus", (32, 32), 2.5)])
def test_the_shipped_recipes_build(recipe, widths, beta):
    model = build_model(load_recipe(RECIPES_DIR / f"{recipe}.toml"))
    assert isinstance(model, MMVAEPlus) and (model.config.latent_dim, model.config.private_dim) == widths
    assert model.latent_size == widths[0] + len(model.names) * widths[1] and model.config.beta == beta


def test_a_bad_setting_is_refused_with_its_key():
    with pytest.raises(RecipeError, match=r"model.private_dim"):
        make_model(private_dim=0)
    with pytest.raises(RecipeError, match=r"model.kind: 'mmvaeplus' \(MMVAE\+\) needs two or more modalities"):
        make_model(("image",))


# ---- through the CLI ---------------------------------------------------------------------------------
def tiny(root) -> list:
    """recipes/mnist_mmvaeplus.toml shrunk to tiny MLPs and one short epoch on the tiny data, offline."""
    return tiny_overrides("mnist_mmvaeplus", root, "train.crossmodal_every=0", "model.private_dim=4")


def test_mmgen_train_and_eval_score_it(cli, tiny_mnist_root, workdir):
    trained = cli("train", *tiny(tiny_mnist_root), "model.objective=dreg", "model.samples=2", "--out", "run")
    assert trained.exit_code == 0, trained.output
    scored_completely(cli, "run")


@pytest.mark.parametrize(("override", "message"), [
    ("model.private_dim=0", "model.private_dim"), ("model.objective=vimco", "model.objective"),
    ("model.aux_scale=-1", "model.aux_scale"), ("model.gamma=1", "model.gamma"),
])
def test_a_bad_setting_is_one_line_naming_its_key(cli, cli_error, tiny_mnist_root, workdir, override, message):
    line = cli_error(cli("train", *tiny(tiny_mnist_root), override, "--out", "run"))
    assert message in line
    assert not (workdir / "run").exists()


@pytest.mark.parametrize("recipe", ["mnist_mmvaeplus", "polymnist_mmvaeplus"])
def test_mmgen_recipes_validate_accepts_the_shipped_recipes(cli, recipe):
    result = cli("recipes", "validate", RECIPES_DIR / f"{recipe}.toml")
    assert result.exit_code == 0, result.output
    assert "family 'mmvaeplus'" in result.stdout

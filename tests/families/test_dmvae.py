"""DMVAE: the loss against the equation written out example by example, which private latent each decoder reads in
each term, the posterior eval uses, where the gradients go, and one CLI train + eval.

The reference objective below is written from Lee & Pavlovic (2021) as the authors' code computes it (seqam-lab/DMVAE,
mnist_svhn/main.py ``elbo``), for one example X with the modalities A it has:

    L(X) = Σ_{m ∈ A} Σ_{s ∈ {J} ∪ A} λ_m log p(x_m | w_s, u_m) − β [KL(q_s(w) ‖ N(0, I)) + KL(q(u_m|x_m) ‖ N(0, I))]
    q_J(w) ∝ N(0, I) Π_{n ∈ A} q(w | x_n),   q_n(w) = q(w | x_n)

with one draw w_s = mean + σ ε per source and one u_m per modality, read by every term. A modality whose private
width P_m is 0 has no u_m: its decoder reads w_s alone and its private KL, over no dimension, is 0. It uses the
modalities' networks (encode, decode) but none of the family's code: the product of Gaussians is formed by hand from
precisions, the Gaussians and their KL are torch.distributions', the likelihoods hand-written
(tests/support/families.py), one loop per example, modality and source.
"""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from mmgen import RecipeError
from mmgen.plugin.registry import get_registry
from mmgen.recipe import build_model, load_recipe
from mmgen_plugins.families.dmvae import DMVAE
from tests.support import RECIPES_DIR
from tests.support.families import D, build_family, log_p, make_batch, scored_completely, tiny_overrides, weight

P = 2  # each modality's private latent u_m; D is the shared w
THREE = ("image", "label", "tag")


def make_model(names=("image", "label"), **model) -> DMVAE:
    return build_family("dmvae", names, **{"private_dim": P, **model})


# ---- the equation, by hand -------------------------------------------------------------------------
def parts(model, name, x) -> tuple[Normal, Normal]:
    """q(w | x_m) and q(u_m | x_m) of one example, as torch Normals over D and P_m dimensions (P_m may be 0)."""
    mu, logvar = (t[0] for t in model.modalities[name].encode(x[None]))
    scale = (0.5 * logvar).exp()
    return Normal(mu[:D], scale[:D]), Normal(mu[D:], scale[D:])


def product_with_prior(experts: list[Normal]) -> Normal:
    """N(0, I) Π_n N(mu_n, var_n), normalized: precisions add (the prior's is 1), the mean is precision-weighted."""
    zero = torch.zeros(D, dtype=torch.float64)  # none given: the prior alone
    precision = 1 + sum((1 / q.variance for q in experts), zero)  # (D,)
    mean = sum((q.loc / q.variance for q in experts), zero) / precision
    return Normal(mean, precision.rsqrt())


def paper_bound(model, batch, b, eps, beta, has):
    """L(X) of example b; ``eps`` = (w noise (S, B, D) for the sources J, 1..M; u noise (M, B, P̂), P̂ the widest
    P_m, of which u_m reads the first P_m); ``has[m]``: the example has modality m."""
    names, (eps_w, eps_u) = model.names, eps
    active = [m for m in range(len(names)) if has[m]]
    q = {m: parts(model, names[m], batch[names[m]][b]) for m in active}
    sources = {0: product_with_prior([q[n][0] for n in active])} | {1 + n: q[n][0] for n in active}
    standard = Normal(torch.zeros(D, dtype=torch.float64), torch.ones(D, dtype=torch.float64))
    total = 0.0
    for m in active:
        q_u = q[m][1]  # (P_m,): empty for a modality without a private latent
        standard_u = Normal(torch.zeros_like(q_u.loc), torch.ones_like(q_u.scale))
        u = q_u.loc + q_u.scale * eps_u[m, b, : len(q_u.loc)]
        for s, q_w in sources.items():
            w = q_w.loc + q_w.scale * eps_w[s, b]
            fit = weight(model, names[m]) * log_p(model, names[m], torch.cat([w, u]), batch[names[m]][b])
            total = total + fit - beta * (kl_divergence(q_w, standard).sum() + kl_divergence(q_u, standard_u).sum())
    return total


def same_noise(model, B, widest=P):
    """The standard normals the family draws, in its order: w per source (J first), then u per modality, each
    ``widest`` wide (the family pads a narrower u_m to the widest P_m)."""
    M = len(model.names)
    return torch.randn(M + 1, B, D, dtype=torch.float64), torch.randn(M, B, widest, dtype=torch.float64)


@pytest.mark.parametrize("names", [("image", "label"), THREE], ids=["two", "three"])
@pytest.mark.parametrize(("beta", "warmup"), [(1.0, 1.0), (2.5, 0.4)])
def test_the_loss_is_the_equation_example_by_example(names, beta, warmup):
    model, batch = make_model(names, beta=beta), make_batch(names, B=4)
    torch.manual_seed(0)
    loss = model(batch, beta=warmup).loss
    torch.manual_seed(0)
    eps = same_noise(model, 4)
    expected = -sum(paper_bound(model, batch, b, eps, beta * warmup, [True] * len(names)) for b in range(4)) / 4
    torch.testing.assert_close(loss, expected, rtol=0, atol=1e-5)


def test_an_example_fuses_and_reconstructs_only_the_modalities_it_has():
    model, batch = make_model(THREE, beta=0.7), make_batch(THREE, B=5)
    present = {"image": torch.tensor([True, True, False, True, False]),
               "label": torch.tensor([True, False, True, False, False]),
               "tag": torch.tensor([False, True, True, False, False])}  # 4th: the image alone; 5th: nothing
    torch.manual_seed(3)
    loss = model(batch, present=present).loss
    torch.manual_seed(3)
    eps = same_noise(model, 5)
    per_example = [paper_bound(model, batch, b, eps, 0.7, [bool(present[n][b]) for n in THREE]) for b in range(5)]
    torch.testing.assert_close(loss, -sum(per_example) / 5, rtol=0, atol=1e-5)


WIDTHS = {"two": {"image": 2, "label": 0}, "image without": {"image": 0, "label": 3},
          "three": {"image": 1, "label": 0, "tag": 2}}


@pytest.mark.parametrize("widths", WIDTHS.values(), ids=WIDTHS)
def test_the_loss_is_the_equation_with_a_private_width_per_modality(widths):
    names = tuple(widths)
    model, batch = make_model(names, private_dim=widths, beta=1.5), make_batch(names, B=4)
    present = {names[0]: torch.tensor([True, True, False, True])}  # the 3rd example lacks the first modality
    torch.manual_seed(1)
    loss = model(batch, beta=0.5, present=present).loss
    torch.manual_seed(1)
    eps = same_noise(model, 4, widest=max(widths.values()))
    has = [[n not in present or bool(present[n][b]) for n in names] for b in range(4)]
    expected = -sum(paper_bound(model, batch, b, eps, 1.5 * 0.5, has[b]) for b in range(4)) / 4
    torch.testing.assert_close(loss, expected, rtol=0, atol=1e-5)


def test_what_an_example_lacks_changes_nothing():
    model, batch = make_model(), make_batch(B=4)
    present = {"image": torch.ones(4, dtype=torch.bool), "label": torch.tensor([True, False, True, False])}
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
    model, batch = make_model(), make_batch(B=4)
    torch.manual_seed(0)
    alone = model({"image": batch["image"]})
    torch.manual_seed(0)
    masked = model(batch, present={"label": torch.zeros(4, dtype=torch.bool)})
    torch.testing.assert_close(alone.loss, masked.loss, rtol=0, atol=1e-12)
    assert "nll/label" not in alone.terms and masked.terms["nll/label"] == 0


# ---- which latents each decoder reads in each term ---------------------------------------------------
def recognizable(model, private_logvar=-40.0):
    """Encoders that give w ≈ 10 (m + 1) (std e^-20) and u_m ≈ 100 + m for modality m; decoders that record what
    they read. Returns the records: per modality, the decoder inputs ``(S, B, D + P)`` of the training step."""
    seen = {}
    for m, name in enumerate(model.names):
        modality = model.modalities[name]
        mu = torch.cat([torch.full((D,), 10.0 * (m + 1)), torch.full((P,), 100.0 + m)]).double()
        logvar = torch.cat([torch.full((D,), -40.0), torch.full((P,), private_logvar)]).double()
        modality.encode = lambda x, mu=mu, logvar=logvar: (mu.expand(x.shape[0], -1), logvar.expand(x.shape[0], -1))
        decode = modality.decode

        def record(latents, name=name, decode=decode):
            seen.setdefault(name, []).append(latents.detach())
            return decode(latents)

        modality.decode = record
    return seen


def test_every_decoder_reads_its_own_private_latent_with_the_joint_its_own_and_every_other_shared_latent():
    model, batch = make_model(THREE), make_batch(THREE, B=3)
    seen = recognizable(model)
    model(batch)
    joint = (10.0 + 20.0 + 30.0) / 3  # three experts of equal precision e^40; the prior expert's weight is e^-40
    for n, name in enumerate(THREE):
        (latents,) = seen[name]  # (S, B, D + P): sources J, image, label, tag
        assert latents.shape == (4, 3, D + P)
        for s, want in enumerate([joint, 10.0, 20.0, 30.0]):
            w, u = latents[s, :, :D], latents[s, :, D:]
            torch.testing.assert_close(w, torch.full_like(w, want))  # source s's shared latent
            torch.testing.assert_close(u, torch.full_like(u, 100.0 + n))  # always modality n's own u_n


def test_one_draw_of_each_latent_serves_every_term_that_reads_it():
    """The authors' decoders read one draw of u_m for every source; every decoder reads the same draw of w_s."""
    model, batch = make_model(THREE), make_batch(THREE, B=3)
    seen = recognizable(model, private_logvar=0.0)  # u_m ~ N(100 + m, 1): draws differ visibly
    model(batch)
    latents = {name: seen[name][0] for name in THREE}  # (S, B, D + P) each
    for name in THREE:
        u = latents[name][..., D:]  # (S, B, P)
        assert torch.equal(u, u[:1].expand_as(u))  # the same u_m for the joint, own and cross terms
        assert u[0, 0].ne(u[0, 1]).all()  # a draw per example
    w = [latents[name][..., :D] for name in THREE]
    assert torch.equal(w[0], w[1]) and torch.equal(w[0], w[2])  # every target reads the same w_s


# ---- the posterior, prior and density eval uses ------------------------------------------------------
def test_the_posterior_is_the_product_given_several_the_expert_given_one_and_the_prior_for_the_rest():
    model, batch = make_model(THREE), make_batch(THREE, B=4)
    present = {"image": torch.tensor([True, True, False, False]), "tag": torch.tensor([True, False, True, False])}
    with torch.no_grad():
        q = model.posterior({"image": batch["image"], "tag": batch["tag"]}, present)
        assert q.mean.shape == (4, D + 3 * P) and q.batch_shape == (4,)
        image, tag = (model.modalities[n].encode(batch[n]) for n in ("image", "tag"))
        prior = (torch.zeros(P, dtype=torch.float64), torch.zeros(P, dtype=torch.float64))
        for b, given in enumerate([("image", "tag"), ("image",), ("tag",), ()]):
            experts = {"image": (image[0][b], image[1][b]), "tag": (tag[0][b], tag[1][b])}
            shared = [Normal(experts[n][0][:D], (0.5 * experts[n][1][:D]).exp()) for n in given]
            w = shared[0] if len(given) == 1 else product_with_prior(shared)  # none: the product is N(0, I)
            torch.testing.assert_close(q.mean[b, :D], w.loc)
            torch.testing.assert_close(q.variance[b, :D], w.variance)
            for m, name in enumerate(THREE):  # the label is never given: its u from N(0, I)
                mu, logvar = (t[D:] for t in experts[name]) if name in given else prior
                block = slice(D + m * P, D + (m + 1) * P)
                torch.testing.assert_close(q.mean[b, block], mu)
                torch.testing.assert_close(q.variance[b, block], logvar.exp())


def test_log_joint_is_the_prior_of_every_latent_and_each_target_read_from_its_own_private_part():
    model, batch = make_model(), make_batch(B=2)
    with torch.no_grad():
        latents = torch.randn(2, D + 2 * P, dtype=torch.float64)  # (B, L)
        got = model.log_joint(latents, batch, ["image", "label"])
        for b in range(2):
            w, u = latents[b, :D], (latents[b, D : D + P], latents[b, D + P :])
            want = Normal(0.0, 1.0).log_prob(latents[b]).sum()
            want = want + log_p(model, "image", torch.cat([w, u[0]]), batch["image"][b])
            want = want + log_p(model, "label", torch.cat([w, u[1]]), batch["label"][b])
            torch.testing.assert_close(got[b], want, rtol=0, atol=1e-9)


def test_a_modality_without_a_private_latent_has_no_private_head_and_decodes_from_w_alone():
    model = make_model(private_dim={"image": 2, "label": 0})
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    assert shapes["modalities.image.head.linear.weight"][0] == 2 * (D + 2)  # mu and logvar over [w | u_image]
    assert shapes["modalities.label.head.linear.weight"][0] == 2 * D  # over w alone
    assert shapes["modalities.image.decoder.0.weight"][1] == D + 2  # the decoders' first layers read
    assert shapes["modalities.label.decoder.0.weight"][1] == D  # [w | u_image] and w
    plain = build_family("mvae").modalities["label"]  # a label of a VAE with one latent of D, nothing private
    assert {n: p.shape for n, p in model.modalities["label"].named_parameters()} == {
        n: p.shape for n, p in plain.named_parameters()}
    assert model.latent_size == D + 2


def test_cross_modal_generation_reads_the_given_modality_and_draws_the_image_style_from_its_prior():
    model, batch = make_model(private_dim={"image": 2, "label": 0}), make_batch(B=5)
    with torch.no_grad():
        q = model.posterior({"label": batch["label"]})  # label -> image: w from q(w | label), u_image from N(0, I)
        mu, logvar = model.modalities["label"].encode(batch["label"])  # (B, D): nothing private
        torch.testing.assert_close(q.mean, torch.cat([mu, torch.zeros_like(mu[:, :2])], -1))
        torch.testing.assert_close(q.variance, torch.cat([logvar.exp(), torch.ones_like(mu[:, :2])], -1))
        z = q.sample((3,))  # (3, B, D + 2)
        images = model.decode(z, ["image"])["image"]
        torch.testing.assert_close(images, model.modalities["image"].decode(z))  # [w | u_image] is all of z
        q = model.posterior({"image": batch["image"]})  # image -> label: the label's decoder reads w alone
        torch.testing.assert_close(q.mean, model.modalities["image"].encode(batch["image"])[0])
        z = q.sample((3,))
        labels = model.decode(z, ["label"])["label"]  # (3, B, 10)
        torch.testing.assert_close(labels, model.modalities["label"].decode(z[..., :D]))
    assert images.shape == (3, 5, 1, 3, 3) and labels.shape == (3, 5, 10)


def test_an_int_width_is_that_width_for_every_modality_as_runs_saved_with_it_were_built():
    """A run saved before widths per modality has an int: it builds the old layout, D + M·P, whose weights are those
    of the table giving every modality P, and the same loss at the same draws."""
    old, table = make_model(private_dim=P), make_model(private_dim={"image": P, "label": P})
    assert old.latent_size == D + 2 * P and old.modalities["label"].head.linear.out_features == 2 * (D + P)
    assert {n: t.shape for n, t in old.state_dict().items()} == {n: t.shape for n, t in table.state_dict().items()}
    table.load_state_dict(old.state_dict())  # strict: no key more or less
    batch, losses = make_batch(B=4), []
    for model in (old, table):
        torch.manual_seed(0)
        losses.append(model(batch).loss)
    assert torch.equal(losses[0], losses[1])


# ---- gradients -------------------------------------------------------------------------------------
def test_every_encoder_and_decoder_gets_a_gradient():
    model, batch = make_model(THREE), make_batch(THREE)
    model(batch, beta=0.5).loss.backward()
    params = dict(model.named_parameters())
    for name in THREE:  # an encoder (its expert's head) and a decoder of every modality
        assert {".head.", ".decoder."} <= {part for p in params if p.startswith(f"modalities.{name}.")
                                          for part in (".head.", ".decoder.") if part in p}
    assert [n for n, p in params.items() if p.grad is None or p.grad.abs().sum() == 0] == []


# ---- the recipes and the registration ----------------------------------------------------------------
def test_registered_through_the_entry_point():
    registration = get_registry().models["dmvae"]
    assert registration.cls is DMVAE and (registration.package, registration.plugin) == ("mmgen", "dmvae")


@pytest.mark.parametrize(("recipe", "private", "latent"), [
    ("mnist_dmvae", {"image": 16, "label": 0}, 64 + 16), ("polymnist_dmvae", 32, 32 + 5 * 32),
])
def test_the_shipped_recipes_build(recipe, private, latent):
    model = build_model(load_recipe(RECIPES_DIR / f"{recipe}.toml"))
    assert isinstance(model, DMVAE) and model.config.private_dim == private
    assert model.latent_size == latent and model.config.beta == 1.0


def test_a_bad_setting_is_refused_with_its_key():
    with pytest.raises(RecipeError, match=r"model.private_dim"):
        make_model(private_dim=0)
    with pytest.raises(RecipeError, match=r"model.kind: 'dmvae' \(DMVAE\) needs two or more modalities"):
        make_model(("image",))
    with pytest.raises(RecipeError, match=r"model.private_dim: 'lable' is not a modality of this recipe"):
        make_model(private_dim={"image": 2, "label": 0, "lable": 1})
    with pytest.raises(RecipeError, match=r"model.private_dim: no width for modality 'label'"):
        make_model(private_dim={"image": 2})


# ---- through the CLI ---------------------------------------------------------------------------------
def tiny(root, widths="model.private_dim.image=4") -> list:
    """recipes/mnist_dmvae.toml shrunk to tiny MLPs and one short epoch on the tiny data, offline."""
    return tiny_overrides("mnist_dmvae", root, "train.crossmodal_every=0", widths)


@pytest.mark.parametrize("widths", ["model.private_dim.image=4", "model.private_dim=4"], ids=["table", "int"])
def test_mmgen_train_and_eval_score_it(cli, tiny_mnist_root, workdir, widths):
    trained = cli("train", *tiny(tiny_mnist_root, widths), "--out", "run")
    assert trained.exit_code == 0, trained.output
    scored_completely(cli, "run")


@pytest.mark.parametrize(("override", "message"), [
    ("model.private_dim=0", "model.private_dim"), ("model.beta=-1", "model.beta"), ("model.gamma=1", "model.gamma"),
    ("model.private_dim.lable=1", "model.private_dim: 'lable' is not a modality of this recipe (modalities: image, "
     "label)"),
    ("model.private_dim={image=4}", "no width for modality 'label'; a table needs one for every modality"),
    ("model.private_dim.image=-1", "model.private_dim: every width must be ≥ 0"),
    ("model.private_dim.image=0", "model.private_dim: at least one modality needs a private latent"),
])
def test_a_bad_setting_is_one_line_naming_its_key(cli, cli_error, tiny_mnist_root, workdir, override, message):
    line = cli_error(cli("train", *tiny(tiny_mnist_root), override, "--out", "run"))
    assert message in line
    assert not (workdir / "run").exists()


@pytest.mark.parametrize("recipe", ["mnist_dmvae", "polymnist_dmvae"])
def test_mmgen_recipes_validate_accepts_the_shipped_recipes(cli, recipe):
    result = cli("recipes", "validate", RECIPES_DIR / f"{recipe}.toml")
    assert result.exit_code == 0, result.output
    assert "family 'dmvae'" in result.stdout

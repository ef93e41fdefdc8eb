"""MultimodalVAE: the ELBO's terms, the loss against a term-by-term reimplementation, and missing modalities."""

import itertools
from typing import ClassVar

import pytest
import torch

from mmgen import Dataset, RecipeError, hookimpl
from mmgen.model.terms import random_terms
from mmgen.testing import registered_plugin
from mmgen_plugins.families.mvae.model import elbo
from tests.support.toy import SHAPE, D, make_batch, make_model


class ToyDataset(Dataset):
    """Four fields, so the model can have more than two modalities (MNIST has only image and label)."""

    fields: ClassVar[dict[str, str]] = {"image": "image", "label": "label", "tag": "label", "extra": "label"}

    def load(self):
        split = {
            "image": torch.zeros(2, *SHAPE, dtype=torch.uint8),
            "label": torch.zeros(2, dtype=torch.long),
        }
        split["tag"] = split["extra"] = split["label"]
        return {"train": split, "val": split, "test": split}


@hookimpl
def _register_datasets(register):
    register("toy4", ToyDataset)


@pytest.fixture
def toy_dataset():
    """Register the 'toy4' dataset kind for one test, then restore the registry."""
    with registered_plugin("mmgen-test-toy4", register_datasets=_register_datasets):
        yield "toy4"


@pytest.fixture
def model():
    return make_model()


def reference_losses(model, batch, subsets, has, beta=1.0, weighted=True):
    """Per-example loss ``(B,)``, written out term by term and example by example.

    Draws the same standard-normal noise ``(T, B, D)`` as the model's single ``rsample``, so the caller
    seeds torch identically before both.
    """
    mu, logvar = model.experts(batch)  # (M, B, D)
    T, M = subsets.shape
    B = mu.shape[1]
    eps = torch.randn(T, B, D)
    out = torch.zeros(B)
    for t, b in itertools.product(range(T), range(B)):
        if t == 0 and T > 1:  # the joint term fuses what the example has; it needs at least two
            fused, counted = has[:, b], int(has[:, b].sum()) >= 2
        else:  # any other term needs all its modalities
            fused, counted = subsets[t] & has[:, b], bool((has[:, b] | ~subsets[t]).all())
        if not counted:
            continue
        prec = 1.0 + sum(torch.exp(-logvar[m, b]) for m in range(M) if fused[m])  # prior N(0, I) + experts
        mean = sum(mu[m, b] * torch.exp(-logvar[m, b]) for m in range(M) if fused[m]) / prec
        var = 1.0 / prec
        z = mean + var.sqrt() * eps[t, b]
        out[b] += beta * 0.5 * (var + mean.square() - 1.0 - var.log()).sum()
        for m, name in enumerate(model.names):
            if fused[m]:
                mod = model.modalities[name]
                weight = mod.config.weight if weighted else 1.0
                out[b] -= weight * mod.likelihood(mod.decode(z)).log_prob(batch[name][b])
    return out


def run_both(model, batch, subsets, has, seed=0, **kwargs):
    """(model loss, reference loss) under the same noise."""
    present = kwargs.pop("present", None)
    torch.manual_seed(seed)
    loss = model(batch, present=present, rows=subsets, **kwargs).loss
    torch.manual_seed(seed)
    with torch.no_grad():
        ref = reference_losses(model, batch, subsets, has, **kwargs).mean()
    return loss, ref


# ---- the terms of the ELBO -------------------------------------------------------------------


def test_one_modality_has_one_term():
    assert torch.equal(make_model(("image",)).step_rows(), torch.ones(1, 1, dtype=torch.bool))


@pytest.mark.parametrize("k", [0, 3])
def test_two_modalities_joint_plus_singles(k):
    # k is ignored with two modalities: there is no subset of size 2..M-1.
    rows = make_model(subsets=k).step_rows()
    assert rows.tolist() == [[True, True], [True, False], [False, True]]


@pytest.mark.parametrize(
    "names,k,expected_extra",
    [
        (("image", "label", "tag"), 2, 2),
        (("image", "label", "tag"), 3, 3),  # all three subsets of size 2
        (("image", "label", "tag", "extra"), 3, 3),
    ],
)
def test_more_modalities_add_k_distinct_subsets(toy_dataset, names, k, expected_extra):
    M = len(names)
    rows = make_model(names, subsets=k, data=toy_dataset).step_rows(torch.Generator().manual_seed(0))
    assert rows.shape == (1 + M + expected_extra, M)
    assert rows[0].all() and torch.equal(rows[1 : M + 1], torch.eye(M, dtype=torch.bool))
    extra = rows[M + 1 :]
    assert all(2 <= int(r.sum()) <= M - 1 for r in extra)
    assert len({tuple(r.tolist()) for r in extra}) == expected_extra  # distinct


def test_more_subsets_than_exist_are_refused_with_the_count(toy_dataset):
    with pytest.raises(RecipeError, match="10 random subsets asked for, but 3 modalities have only 3 subsets"):
        make_model(("image", "label", "tag"), subsets=10, data=toy_dataset)


def test_subsets_follow_the_generator(toy_dataset):
    model = make_model(("image", "label", "tag", "extra"), subsets=3, data=toy_dataset)
    draws = [model.step_rows(torch.Generator().manual_seed(s)) for s in (1, 1, 2, 3, 4)]
    assert torch.equal(draws[0], draws[1])
    assert any(not torch.equal(draws[0], d) for d in draws[2:])  # 5 seeds, 120 orderings of 10 candidates


# ---- the loss ---------------------------------------------------------------------------------


@pytest.mark.parametrize("beta", [1.0, 0.25])
def test_paired_loss_is_the_three_term_elbo(model, beta):
    batch = make_batch(model.names, B=5)
    loss, ref = run_both(model, batch, model.step_rows(), torch.ones(2, 5, dtype=torch.bool), beta=beta)
    torch.testing.assert_close(loss, ref, rtol=1e-4, atol=1e-3)


def test_unweighted_loss_sets_every_lambda_to_one(model):
    batch = make_batch(model.names, B=5)
    has = torch.ones(2, 5, dtype=torch.bool)
    loss, ref = run_both(model, batch, model.step_rows(), has, weighted=False)
    torch.testing.assert_close(loss, ref, rtol=1e-4, atol=1e-3)
    weighted, _ = run_both(model, batch, model.step_rows(), has)
    assert weighted > loss + 1  # λ_label = 50 really does change the loss


def test_all_present_mask_equals_paired_path(model):
    # Two code paths (broadcast masks vs per-example masks) must give the same number.
    batch = make_batch(model.names, B=4)
    torch.manual_seed(3)
    paired = model(batch).loss
    torch.manual_seed(3)
    masked = model(batch, present={"label": torch.ones(4, dtype=torch.bool)}).loss
    torch.testing.assert_close(paired, masked)


def test_masked_loss_matches_reference(model):
    batch = make_batch(model.names, B=6)
    present = {"label": torch.tensor([True, False, True, False, False, True])}
    has = torch.stack([torch.ones(6, dtype=torch.bool), present["label"]])
    loss, ref = run_both(model, batch, model.step_rows(), has, beta=0.5, present=present)
    torch.testing.assert_close(loss, ref, rtol=1e-4, atol=1e-3)


def test_three_modalities_with_subsets_and_masks(toy_dataset):
    # Examples with 3, 2 and 1 modalities; an explicit subset {image, label} and {label, tag}.
    model = make_model(("image", "label", "tag"), data=toy_dataset)
    batch = make_batch(model.names, B=3)
    has = torch.tensor([[True, True, True], [True, True, False], [True, False, False]])
    present = dict(zip(model.names, has))
    subsets = torch.cat([model.step_rows(), torch.tensor([[True, True, False], [False, True, True]])])
    loss, ref = run_both(model, batch, subsets, has, beta=0.7, present=present)
    torch.testing.assert_close(loss, ref, rtol=1e-4, atol=1e-3)


def test_image_only_example_is_its_single_image_term(model):
    batch = make_batch(model.names, B=1)
    image = model.modalities["image"]
    torch.manual_seed(5)
    loss = model(batch, present={"label": torch.tensor([False])}).loss
    torch.manual_seed(5)
    eps = torch.randn(3, 1, D)[1]  # the noise of term 1, the image-only term
    with torch.no_grad():
        mu, logvar = image.encode(batch["image"])
        prec = 1.0 + torch.exp(-logvar)
        mean, var = mu * torch.exp(-logvar) / prec, 1.0 / prec
        z = mean + var.sqrt() * eps
        kl = 0.5 * (var + mean.square() - 1.0 - var.log()).sum(-1)
        nll = -image.likelihood(image.decode(z)).log_prob(batch["image"])
    torch.testing.assert_close(loss, (kl + image.config.weight * nll).squeeze(0), rtol=1e-5, atol=1e-4)
    # A masked label is the same as no label at all.
    torch.manual_seed(5)
    torch.testing.assert_close(model({"image": batch["image"]}).loss, loss)


def label_encoder_grads(model, batch, present):
    model.zero_grad()
    torch.manual_seed(7)
    model(batch, present=present).loss.backward()
    label = model.modalities["label"]
    return {n: p.grad.clone() for n, p in label.named_parameters() if not n.startswith("decoder")}


def test_unlabelled_examples_do_not_train_the_label_encoder(model):
    batch = make_batch(model.names, B=6)
    present = {"label": torch.tensor([True, True, True, False, False, False])}
    batch["label"][:3] = torch.tensor([0, 1, 2])
    batch["label"][3:] = 9  # placeholders for missing labels
    grads_9 = label_encoder_grads(model, batch, present)
    assert torch.all(grads_9["embedding.weight"][9] == 0)  # only unlabelled examples use row 9
    assert grads_9["embedding.weight"][:3].abs().sum() > 0  # labelled ones do train the encoder
    batch["label"][3:] = 8  # other placeholders: nothing else may change
    grads_8 = label_encoder_grads(model, batch, present)
    assert torch.all(grads_8["embedding.weight"][8] == 0)
    for name in grads_9:
        torch.testing.assert_close(grads_9[name], grads_8[name], rtol=0, atol=0)


@pytest.mark.parametrize("extreme", [-1e4, 1e4])
def test_runaway_expert_keeps_loss_and_gradients_finite(model, extreme):
    # The failure seen in training: one encoder's log-variance runs away. The whole step must stay finite.
    with torch.no_grad():
        model.modalities["label"].head.linear.bias[D:] = extreme  # the logvar half of the head
    batch = make_batch(model.names, B=4)
    loss = model(batch, present={"label": torch.tensor([True, True, False, True])}).loss
    loss.backward()
    assert torch.isfinite(loss)
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


# ---- the honest ELBO ----------------------------------------------------------------------------


def test_elbo_of_one_modality_only_reconstructs_it(model, monkeypatch):
    batch = make_batch(model.names, B=4)
    label = model.modalities["label"]
    monkeypatch.setattr(label, "decode", lambda z: pytest.fail("the label must not be decoded"))
    monkeypatch.setattr(label, "encode", lambda y: pytest.fail("the label must not be encoded"))
    torch.manual_seed(11)
    value = elbo(model, batch, ["image"])
    torch.manual_seed(11)
    # Same seed: λ = 1 and β = 1, one term, one modality.
    ref = -reference_losses(
        model,
        {"image": batch["image"]},
        torch.tensor([[True, False]]),
        torch.tensor([[True] * 4, [False] * 4]),
        weighted=False,
    )
    assert value.shape == (4,)
    torch.testing.assert_close(value.detach(), ref, rtol=1e-5, atol=1e-4)


def test_cross_from_makes_a_single_term_reconstruct_every_modality():
    from mmgen.recipe import build_model, validate_recipe
    from tests.support.toy import IMAGE, LABEL

    def model(**kw):
        return build_model(validate_recipe({"name": "t", "model": {"latent_dim": D, **kw},
                                            "modalities": {"image": IMAGE, "label": LABEL}, "data": {"kind": "mnist"}}))

    cross = model(cross_from=["image"])
    assert cross._reconstructs(cross.fixed_rows()).tolist() == [[True, True], [True, True], [False, True]]
    plain = model()
    plain.load_state_dict(cross.state_dict())
    batch = make_batch(["image", "label"], 5)
    torch.manual_seed(0)
    a = cross(batch)
    torch.manual_seed(0)
    b = plain(batch)
    # The image term now also pays λ_label · (-log p(label | z ~ q(z | image))): a larger loss.
    assert float(a.loss.detach()) > float(b.loss.detach())
    assert float(a.terms["nll/image"]) == pytest.approx(float(b.terms["nll/image"]))


def test_cross_from_is_validated():
    from mmgen import RecipeError
    from mmgen.recipe import validate_recipe
    from tests.support.toy import IMAGE, LABEL

    with pytest.raises(RecipeError, match="'text' is not a modality"):
        validate_recipe({"name": "t", "model": {"cross_from": ["text"]}, "modalities": {"image": IMAGE, "label": LABEL},
                         "data": {"kind": "mnist"}})


def test_many_modalities_draw_distinct_subsets_without_listing_them():
    rows = random_terms(19, 6, torch.Generator().manual_seed(0))  # CelebA's 19: 2^19 subsets, none listed
    extra = rows[20:]
    assert rows.shape == (20 + 6, 19)
    assert all(2 <= int(r.sum()) <= 18 for r in extra) and len({tuple(r.tolist()) for r in extra}) == 6
    assert torch.equal(rows, random_terms(19, 6, torch.Generator().manual_seed(0)))

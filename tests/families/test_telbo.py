"""TELBO: the triple ELBO against the paper's equation written out example by example, stage by stage; which
parameters each stage trains; the two stages through the trainer (resumed mid-stage, and under torchrun); and
one CLI train + eval.

The reference objective below is written from Vedantam et al. (2018), the triple ELBO:

    L(x, y) = elbo(x, y | q(z|x,y)) + elbo(x | q(z|x)) + elbo(y | q(z|y))
    elbo(X | q) = E_q[ Σ_m λ_m log p(x_m | z) ] − β KL(q ‖ p(z))

summed over M modalities, λ'_m in the unimodal terms. The first stage trains the first term, the second the
unimodal terms with the decoders frozen. It uses the family's networks but none of its objective code:
Gaussians, Bernoulli and categorical log-probabilities and the KLs are written by hand.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from mmgen import RecipeError, TrainingInterrupted
from mmgen.plugin.registry import get_registry
from mmgen.train.session import train_recipe
from mmgen.train.trainer import Trainer
from mmgen_plugins.families.telbo import TELBO, TELBOConfig
from tests.support.families import SPECS, D, build_family, log_p, make_batch, scored_completely, tiny_overrides, weight

STAGES = ("joint", "unimodal", "triple")


def make_model(names=("image", "label"), specs=SPECS, **model) -> TELBO:
    return build_family("telbo", names, specs, joint_features=2, joint_hidden=[5], **model)


# ---- the paper's equation, by hand ---------------------------------------------------------------
def kl_standard(mu, lv):
    return 0.5 * (lv.exp() + mu**2 - 1 - lv).sum()


def elbo(model, mu, lv, eps, x, lambdas, beta):
    """Σ_n λ_n log p(x_n | z) − β KL(N(mu, e^lv) ‖ N(0, I)) of one example, z = mu + σ eps."""
    z = mu + (0.5 * lv).exp() * eps
    return sum(lam * log_p(model, n, z, x[n][0]) for n, lam in lambdas.items()) - beta * kl_standard(mu, lv)


def paper_objective(model, batch, b, eps_joint, eps_alone, beta, stage, alone_weights):
    """The stage's part of L for example b: the joint term (z from q(z|X) with ``eps_joint``), the unimodal
    terms (z_m from q(z|x_m) with ``eps_alone[m]``), or both."""
    x = {n: v[b : b + 1] for n, v in batch.items()}
    L = 0.0
    if stage in ("joint", "triple"):
        mu, lv = (t[0] for t in model.joint(x))
        L = L + elbo(model, mu, lv, eps_joint, x, {n: weight(model, n) for n in batch}, beta)
    if stage in ("unimodal", "triple"):
        for m, n in enumerate(batch):
            mu, lv = (t[0] for t in model.modalities[n].encode(x[n]))
            L = L + elbo(model, mu, lv, eps_alone[m], x, {n: alone_weights.get(n, weight(model, n))}, beta)
    return L


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("names", [("image", "label"), ("image", "label", "tag")], ids=["two", "three"])
@pytest.mark.parametrize(("beta", "alone"), [(1.0, {}), (0.3, {"label": 7.0, "image": 0.5})])
def test_the_loss_is_the_papers_triple_elbo_stage_by_stage_example_by_example(stage, names, beta, alone):
    model, batch = make_model(names, unimodal_weights=alone), make_batch(names)
    model.stage = stage
    torch.manual_seed(0)
    loss = model(batch, beta=beta).loss
    torch.manual_seed(0)  # the same draws: (B, D) for q(z | X) where the joint term is, then (M, B, D)
    eps_joint = torch.randn(6, D, dtype=torch.float64) if stage != "unimodal" else torch.zeros(6, D)
    eps_alone = torch.randn(len(names), 6, D, dtype=torch.float64)
    expected = -sum(paper_objective(model, batch, b, eps_joint[b], eps_alone[:, b], beta, stage, alone)
                    for b in range(6)) / 6
    torch.testing.assert_close(loss, expected, rtol=0, atol=1e-5)


def test_validation_scores_the_whole_triple_elbo_at_beta_one_in_either_stage():
    model, batch = make_model(), make_batch()
    model.stage = "triple"
    torch.manual_seed(1)
    whole = model(batch, beta=1.0).loss
    for stage in ("joint", "unimodal"):
        model.enter_stage(stage)
        torch.manual_seed(1)
        torch.testing.assert_close(model.validation_output(batch).loss, whole, rtol=0, atol=0)


def test_an_example_without_every_modality_has_no_joint_term_and_the_unimodal_terms_it_has():
    model, batch = make_model(), make_batch(B=4)
    present = {"image": torch.tensor([True, True, False, True]), "label": torch.tensor([True, False, True, True])}
    model.stage = "triple"
    torch.manual_seed(0)
    loss = model(batch, present=present).loss
    torch.manual_seed(0)
    eps_joint, eps_alone = torch.randn(4, D, dtype=torch.float64), torch.randn(2, 4, D, dtype=torch.float64)
    total = 0.0
    for b in range(4):
        has = [n for n in batch if present[n][b]]
        x = {n: batch[n][b : b + 1] for n in has}
        if len(has) == 2:
            total = total + paper_objective(model, batch, b, eps_joint[b], eps_alone[:, b], 1.0, "joint", {})
        for m, n in enumerate(batch):
            if n in has:
                mu, lv = (t[0] for t in model.modalities[n].encode(x[n]))
                total = total + elbo(model, mu, lv, eps_alone[m, b], x, {n: weight(model, n)}, 1.0)
    torch.testing.assert_close(loss, -total / 4, rtol=0, atol=1e-5)


# ---- the stages ---------------------------------------------------------------------------------------
def test_each_stage_trains_its_own_parameters_and_the_decoders_are_frozen_in_the_second():
    model, batch = make_model(), make_batch()
    named = dict(model.named_parameters())
    joint, alone = model.trains["joint"], model.trains["unimodal"]
    assert joint and alone and not joint & alone
    never = set(named) - joint - alone  # the joint encoder's branch decoders, frozen when built
    assert never and all(n.startswith("joint.branches.") and not named[n].requires_grad for n in never)
    decoders = {n for n in named if n.startswith(("modalities.image.decoder.", "modalities.label.decoder."))}
    assert len(decoders) == 8 and {n for n in joint if n.startswith("modalities.")} == decoders  # listed by hand
    assert alone == {n for n in named if n.startswith("modalities.")} - decoders
    for stage, trains in (("joint", joint), ("unimodal", alone)):
        model.enter_stage(stage)
        model.zero_grad(set_to_none=True)
        model(batch).loss.backward()
        got = {n for n, p in named.items() if p.grad is not None and p.grad.abs().sum() > 0}
        assert got == trains, stage
        assert {n for n, p in named.items() if p.requires_grad} == trains


@pytest.mark.parametrize(("share", "epochs", "first"), [(0.5, 1, 1), (0.5, 2, 1), (0.5, 5, 3), (0.3, 10, 3),
                                                         (0.9, 4, 3), (0.01, 4, 1)])
def test_the_first_stage_takes_its_share_of_the_epochs_and_each_stage_at_least_one(share, epochs, first):
    config = TELBOConfig(latent_dim=2, joint_share=share)
    assert config.joint_epochs(epochs) == first
    assert [TELBO.training_stage(config, e, epochs) for e in range(epochs)] == \
        ["joint"] * first + ["unimodal"] * (epochs - first)


@pytest.mark.parametrize(("weights", "message"), [({"sound": 1.0}, r"model.unimodal_weights: no modality 'sound'"),
                                                  ({"label": -1.0}, r"model.unimodal_weights.label: -1.0 is negative")])
def test_unimodal_weights_of_no_modality_or_below_zero_are_refused_with_their_key(weights, message):
    with pytest.raises(RecipeError, match=message):
        make_model(unimodal_weights=weights)


def test_registered_through_the_entry_point():
    registration = get_registry().models["telbo"]
    assert registration.cls is TELBO and (registration.package, registration.plugin) == ("mmgen", "telbo")


# ---- through the trainer ---------------------------------------------------------------------------------
TINY = ["model.kind=telbo", "model.joint_features=8", "model.joint_hidden=[16]", "train.epochs=2"]  # 5 steps/epoch


def weights(run) -> dict[str, torch.Tensor]:
    return load_file(run / "last.safetensors")


@pytest.fixture(scope="module")
def straight(tiny_recipe, tmp_path_factory):
    """Epoch 1 alone (the joint stage), and epochs 1-2 (joint, then unimodal) without interruption."""
    root = tmp_path_factory.mktemp("telbo")
    one = train_recipe(tiny_recipe, [*TINY, "train.epochs=1"], root / "one", "cpu", resume=False)
    two = train_recipe(tiny_recipe, TINY, root / "two", "cpu", resume=False)
    return one, two


def test_the_second_stage_moves_only_the_unimodal_encoders(straight):
    one, two = (weights(run) for run in straight)
    moved = {k for k in one if not torch.equal(one[k], two[k])}
    assert moved and moved <= make_model().trains["unimodal"]  # the same names as a tiny model's


@pytest.mark.parametrize("at", [3, 7], ids=["mid-joint-stage", "mid-unimodal-stage"])
def test_a_run_stopped_in_a_stage_resumes_in_it_and_equals_the_straight_one(tiny_recipe, tmp_path, straight,
                                                                              monkeypatch, at):
    original = Trainer._step

    def step(self, *args, **kwargs):
        beta = original(self, *args, **kwargs)
        if self.state.step == at:
            os.kill(os.getpid(), signal.SIGTERM)
        return beta

    monkeypatch.setattr(Trainer, "_step", step)
    with pytest.raises(TrainingInterrupted):
        train_recipe(tiny_recipe, TINY, tmp_path / "run", "cpu", resume=False)
    monkeypatch.setattr(Trainer, "_step", original)
    train_recipe(tmp_path / "run", [], None, "cpu", resume=True)
    got, want = weights(tmp_path / "run"), weights(straight[1])
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)


def test_two_processes_under_torchrun_freeze_the_decoders_in_the_second_stage(tiny_recipe, tiny_mnist_root, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MMGEN_DATA_ROOT": str(tiny_mnist_root)}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "mmgen"]
    runs = {}
    for epochs in (1, 2):
        runs[epochs] = tmp_path / f"e{epochs}"
        done = subprocess.run([*launcher, "train", str(tiny_recipe), *TINY, f"train.epochs={epochs}", "--out",
                               str(runs[epochs]), "--device", "cpu"], env=env, capture_output=True, text=True,
                              timeout=240)
        assert done.returncode == 0, done.stderr
    one, two = weights(runs[1]), weights(runs[2])
    moved = {k for k in one if not torch.equal(one[k], two[k])}
    alone = make_model().trains["unimodal"]
    assert moved and moved <= alone


# ---- through the CLI -----------------------------------------------------------------------------------
def test_mmgen_train_and_eval_score_it(cli, tiny_mnist_root, workdir):
    extra = ["model.joint_features=8", "model.joint_hidden=[16]", "train.epochs=2"]
    trained = cli("train", *tiny_overrides("mnist_telbo", tiny_mnist_root, *extra), "--out", "run")
    assert trained.exit_code == 0, trained.output
    scored_completely(cli, "run")


def test_a_resume_that_would_move_a_begun_epoch_to_another_stage_is_refused(cli, cli_error, tiny_recipe, tmp_path):
    quarter = [*TINY, "model.joint_share=0.25", "train.epochs=4"]  # J U U U
    said = []
    run = train_recipe(tiny_recipe, quarter, tmp_path / "run", "cpu", resume=False, say=said.append)
    assert "telbo trains in stages, epochs 1: the joint stage; 2-4: the unimodal stage" in said
    assert "epoch 2, trained in the unimodal stage, would belong to the joint stage" in \
        cli_error(cli("train", run, "--resume", "train.epochs=10"))  # J J J U ...
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert not rows[0]["best"] and rows[1]["best"]  # the best checkpoint: the last stage's epochs only
    done = cli("train", run, "--resume", "train.epochs=5")  # J U U U U: every begun epoch keeps its stage
    assert done.exit_code == 0, done.output


@pytest.mark.parametrize("fast", [["train.precision=bf16"], ["train.compile=true", "train.compile_backend=aot_eager"]],
                         ids=["bf16", "compiled"])
def test_both_stages_train_under_bf16_and_compiled_as_in_fp32_eager(tiny_recipe, tmp_path, straight, fast):
    """The compiled step sees the stage switch (the model's stage and its parameters' requires_grad change)."""
    run = train_recipe(tiny_recipe, [*TINY, *fast], tmp_path / "run", "cpu", resume=False)
    got, want = ([json.loads(line) for line in (r / "metrics.jsonl").read_text().splitlines()]
                 for r in (run, straight[1]))
    for a, b in zip(got, want, strict=True):
        assert a["train/loss"] == pytest.approx(b["train/loss"], rel=0.05 if "bf16" in fast[0] else 1e-3)
    one, two = weights(straight[0]), weights(run)
    if "compile" in fast[0]:  # the second stage left the decoders and the joint encoder as the first made them
        assert all(torch.equal(one[k], two[k]) for k in one if k not in make_model().trains["unimodal"])

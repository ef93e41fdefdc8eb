"""The accelerator path (CUDA, else MPS): every family trains, estimates the same loss as on the CPU, and is
trained, scored and sampled through the CLI there; a run trained there is scored on the CPU.

Skipped on a machine without one (CI's); run where there is one with ``pytest tests/device``.
``MMGEN_TEST_DEVICE=cpu`` runs them against the CPU itself, to check the tests where there is no accelerator.
"""

from __future__ import annotations

import json
import math
import os

import pytest
import torch

from mmgen.plugin.registry import get_registry
from tests.support.families import build_family, make_batch, scored_completely, tiny_overrides

ACCEL = os.environ.get("MMGEN_TEST_DEVICE") or (
    "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else None)
pytestmark = pytest.mark.skipif(ACCEL is None, reason="no CUDA or MPS device on this machine")
ACCEL_TYPE = ACCEL and torch.device(ACCEL).type  # "cuda" for cuda:1 too
FIRST_PARTY = sorted(k for k, r in get_registry().models.items() if r.package == "mmgen")
# MPS has no float64: compare there in float32, at a looser tolerance.
DTYPE, RTOL = (torch.float32, 1e-4) if ACCEL == "mps" else (torch.float64, 1e-9)


def on(device, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {n: x.to(device=device, dtype=DTYPE) if x.is_floating_point() else x.to(device) for n, x in batch.items()}


def twins(kind: str):
    """The same weights on the CPU and on the accelerator, in DTYPE."""
    cpu = build_family(kind).to(DTYPE)
    accel = build_family(kind).to(DTYPE)
    accel.load_state_dict(cpu.state_dict())
    return cpu, accel.to(ACCEL)


@pytest.mark.parametrize("kind", FIRST_PARTY)
def test_the_posterior_is_the_same_function_on_the_accelerator(kind):
    cpu, accel = twins(kind)
    batch = make_batch(B=6)
    z = torch.randn(6, cpu.latent_size, generator=torch.Generator().manual_seed(1), dtype=DTYPE)
    for given in (("image",), ("label",), ("image", "label")):
        want = cpu.posterior(on("cpu", {n: batch[n] for n in given})).log_prob(z)
        got = accel.posterior(on(ACCEL, {n: batch[n] for n in given})).log_prob(z.to(ACCEL))
        assert got.device.type == ACCEL_TYPE
        torch.testing.assert_close(got.cpu(), want, rtol=RTOL, atol=RTOL)


@pytest.mark.parametrize("kind", FIRST_PARTY)
def test_the_loss_estimate_agrees_with_the_cpu_within_its_noise(kind):
    """The loss is a Monte Carlo estimate whose draws differ by device: 20 estimates on each, over a batch of
    384 examples, must agree within 5 standard errors of the difference of their means."""
    cpu, accel = twins(kind)
    batch = {n: x.repeat(64, *[1] * (x.dim() - 1)) for n, x in make_batch(B=6).items()}

    def estimates(model, device):
        with torch.no_grad():
            return torch.stack([model(on(device, batch), beta=1.0).loss.cpu() for _ in range(20)])

    a, b = estimates(cpu, "cpu"), estimates(accel, ACCEL)
    se = math.sqrt(a.var() / len(a) + b.var() / len(b))
    assert abs(float(a.mean() - b.mean())) <= 5 * se + 1e-6 * abs(float(a.mean())), (a.mean(), b.mean(), se)


@pytest.mark.parametrize("kind", FIRST_PARTY)
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_training_step_on_the_accelerator_moves_every_weight_there(kind, precision):
    model = build_family(kind).float().to(ACCEL)
    batch = {n: x.float() if x.is_floating_point() else x for n, x in make_batch(B=8).items()}
    batch = {n: x.to(ACCEL) for n, x in batch.items()}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    with torch.autocast(ACCEL_TYPE, dtype=torch.bfloat16, enabled=precision == "bf16"):
        loss = model(batch, beta=1.0).loss
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    graded = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert graded and all(g.device.type == ACCEL_TYPE and torch.isfinite(g).all() for g in graded.values())
    moved = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert moved == set(graded)  # Adam moved exactly the parameters with a gradient


@pytest.mark.parametrize("kind", FIRST_PARTY)
def test_the_cli_trains_scores_and_samples_on_the_accelerator(cli, tiny_mnist_root, workdir, kind):
    precision = "bf16" if kind == "mvae" else "fp32"
    # mnist_mmvae and mnist_mopoe train the MVAE family with their fusion: the kind makes each its own family
    trained = cli("train", *tiny_overrides(f"mnist_{kind}", tiny_mnist_root, f"train.device={ACCEL}",
                                           f"train.precision={precision}", f"model.kind={kind}"), "--out", "run")
    assert trained.exit_code == 0, trained.output
    recipe = json.loads((workdir / "run" / "recipe.json").read_text())
    assert recipe["train"]["device"] == ACCEL and recipe["model"]["kind"] == kind
    scored = cli("eval", "run", "-K", "5", "--limit", "20", "--per-class", "5", "--device", ACCEL, "--no-pictures",
                 "--probe-train", "20", "--json")
    assert scored.exit_code == 0, scored.output
    scores = json.loads(scored.stdout)
    assert scores["skipped"] == {} and all(v["value"] < 0 for k, v in scores.items() if k.startswith("log p("))
    sampled = cli("sample", "run", "--given", "label=3", "--device", ACCEL, "-n", "4", "--out", "samples.png")
    assert sampled.exit_code == 0, sampled.output
    assert (workdir / "samples.png").stat().st_size > 0
    scored_completely(cli, "run")  # the weights trained there, loaded and scored on the CPU

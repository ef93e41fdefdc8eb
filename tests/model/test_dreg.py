"""DReG's encoder gradient is unbiased for every β: its expectation equals the IWAE gradient's.

On the linear-Gaussian model (tests/support/linear_gaussian.py) with a learnable, deliberately
wrong encoder, both estimators are computed from the same draws for many seeds; the mean of their
paired difference must be zero within 4 standard errors, at β = 0.3 and β = 1. The old rule (w̃²
whatever β) is shown to fail the same test at β = 0.3, so the test can tell them apart.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mmgen import FusionConfig, get_registry
from mmgen.model import bounds
from mmgen_plugins.families.mvae import MultimodalVAE, MVAEConfig
from tests.support.linear_gaussian import SPECS, D, LinearGaussian, sample_data

REPLICATES, K, B = 400, 5, 16


class LearnableEncoder(LinearGaussian):
    """The exact expert moved by a learnable shift and scale: a proposal with encoder parameters."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.shift = nn.Parameter(torch.tensor([0.3, -0.2], dtype=torch.float64))
        self.log_scale = nn.Parameter(torch.tensor([0.4, -0.3], dtype=torch.float64))

    def encode(self, x):
        mu, logvar = super().encode(x)
        return mu + self.shift, logvar + self.log_scale


def model(objective: str) -> MultimodalVAE:
    poe = get_registry().lookup("fusions", "poe")(FusionConfig(kind="poe"), D, 1)
    config = MVAEConfig(latent_dim=D, objective=objective, samples=K)
    return MultimodalVAE({"a": LearnableEncoder("a", *SPECS["a"], seed=0)}, poe, config).double()


def encoder_gradients(objective: str, beta: float) -> torch.Tensor:
    """``(REPLICATES, 2 D)``: the gradient of the loss in (shift, log_scale), one row per seed."""
    m = model(objective)
    data = sample_data(m, B)
    rows = []
    for seed in range(REPLICATES):
        torch.manual_seed(seed)
        m.zero_grad()
        m(data, beta=beta).loss.backward()
        enc = m.modalities["a"]
        rows.append(torch.cat([enc.shift.grad, enc.log_scale.grad]))
    return torch.stack(rows)


def paired_gap(beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    diff = encoder_gradients("dreg", beta) - encoder_gradients("iwae", beta)  # the same draws per seed
    return diff.mean(0), diff.std(0) / REPLICATES**0.5


@pytest.mark.parametrize("beta", [0.3, 1.0])
def test_dreg_expected_encoder_gradient_is_iwaes(beta):
    gap, stderr = paired_gap(beta)
    assert bool((stderr > 0).all())  # the estimators do differ draw by draw
    assert bool((gap.abs() <= 4 * stderr).all()), (gap, stderr)


def test_the_old_weight_is_biased_below_beta_one(monkeypatch):
    monkeypatch.setattr(bounds, "dreg_encoder_factor", lambda w, beta: w)  # w̃² whatever β
    gap, stderr = paired_gap(0.3)
    assert bool((gap.abs() > 4 * stderr).any()), (gap, stderr)

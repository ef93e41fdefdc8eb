"""The post-hoc Gaussian mixture sampler: on latents drawn from a known mixture, EM recovers its weights,
means and covariances; the sampler draws with the fitted moments, scores with the mixture density, and
survives a trip through a safetensors file bit for bit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from mmgen.errors import CheckpointError
from mmgen.model.posthoc import GaussianMixtureSampler, encode_means
from mmgen.storage.tensors import load_tensors, save_tensors
from tests.support.toy import make_batch, make_model

WEIGHTS = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
MEANS = torch.tensor([[-6.0, 0.0], [6.0, 0.0], [0.0, 8.0]], dtype=torch.float64)  # 6+ standard deviations apart
COVARIANCES = torch.tensor([[[1.0, 0.0], [0.0, 0.5]], [[1.0, 0.5], [0.5, 1.0]], [[0.3, 0.0], [0.0, 2.0]]],
                           dtype=torch.float64)
N = 6000


def mixture_draws(n: int, seed: int = 0) -> torch.Tensor:
    """``n`` latents ``(n, 2)`` from the known mixture, with torch's own sampler (not the code under test)."""
    g = torch.Generator().manual_seed(seed)
    component = torch.multinomial(WEIGHTS, n, replacement=True, generator=g)  # (n,)
    noise = torch.randn(n, 2, generator=g, dtype=torch.float64)
    return MEANS[component] + (torch.linalg.cholesky(COVARIANCES)[component] @ noise.unsqueeze(-1)).squeeze(-1)


@pytest.fixture(scope="module")
def fitted() -> GaussianMixtureSampler:
    return GaussianMixtureSampler.fit(mixture_draws(N), components=3, seed=0)


def matched(sampler: GaussianMixtureSampler) -> list[int]:
    """For each true component, the fitted component whose mean is nearest (EM's order is arbitrary)."""
    return [int(torch.cdist(MEANS[c : c + 1], sampler.means).argmin()) for c in range(3)]


def test_em_recovers_weights_means_and_covariances_within_their_standard_errors(fitted):
    order = matched(fitted)
    assert sorted(order) == [0, 1, 2]
    for c, f in enumerate(order):
        w, n_c = float(WEIGHTS[c]), float(WEIGHTS[c]) * N
        # Separated components: EM's responsibilities are ~hard assignments, so each estimate has the standard
        # error of a frequency, a mean of n_c draws, and a variance of n_c draws (sigma^2 sqrt(2 / n_c)).
        assert abs(float(fitted.weights[f]) - w) < 5 * math.sqrt(w * (1 - w) / N)
        se_mean = (COVARIANCES[c].diagonal() / n_c).sqrt()
        assert ((fitted.means[f] - MEANS[c]).abs() < 5 * se_mean).all()
        se_var = COVARIANCES[c].diagonal() * math.sqrt(2 / n_c)
        assert ((fitted.covariances[f].diagonal() - COVARIANCES[c].diagonal()).abs() < 5 * se_var).all()
    assert fitted.info["converged"] and fitted.info["latents"] == N and fitted.components == 3


def test_the_draws_have_the_fitted_moments(fitted):
    m = 40_000
    z = fitted.sample(m, seed=1)
    assert z.shape == (m, 2) and z.dtype == torch.float32
    z = z.double()
    w, mu, cov = fitted.weights, fitted.means, fitted.covariances
    mean = (w[:, None] * mu).sum(0)  # (2,): E z of the mixture
    second = (w[:, None, None] * (cov + mu[:, :, None] * mu[:, None, :])).sum(0)  # (2, 2): E z z^T
    covariance = second - mean[:, None] * mean[None, :]
    assert ((z.mean(0) - mean).abs() < 5 * (covariance.diagonal() / m).sqrt()).all()
    centred = z - mean
    products = centred[:, :, None] * centred[:, None, :]  # (m, 2, 2)
    se = products.std(0) / math.sqrt(m)  # the standard error of each entry's sample mean
    assert ((products.mean(0) - covariance).abs() < 5 * se).all()


def test_log_prob_is_the_mixture_density(fitted):
    z = mixture_draws(50, seed=2)
    expected = logsumexp(np.stack([math.log(float(fitted.weights[c])) + multivariate_normal(
        fitted.means[c].numpy(), fitted.covariances[c].numpy()).logpdf(z.numpy()) for c in range(3)]), axis=0)
    np.testing.assert_allclose(fitted.log_prob(z).numpy(), expected, rtol=1e-10)
    assert fitted.log_prob(z.float()).dtype == torch.float32


def test_a_trip_through_a_safetensors_file_is_exact(fitted, tmp_path):
    tensors, meta = fitted.state()
    save_tensors(tmp_path / "gmm.safetensors", tensors, meta)
    back = GaussianMixtureSampler.from_state(*load_tensors(tmp_path / "gmm.safetensors"))
    for name in ("weights", "means", "covariances"):
        assert torch.equal(getattr(back, name), getattr(fitted, name))
    assert back.info == fitted.info
    assert torch.equal(back.sample(100, seed=3), fitted.sample(100, seed=3))


def test_a_state_of_another_kind_or_broken_is_a_checkpoint_error(fitted):
    tensors, meta = fitted.state()
    with pytest.raises(CheckpointError, match="not a gmm sampler"):
        GaussianMixtureSampler.from_state(tensors, {**meta, "kind": "maf"})
    with pytest.raises(CheckpointError, match="lacks"):
        GaussianMixtureSampler.from_state({"weights": tensors["weights"]}, meta)
    not_positive = {**tensors, "covariances": -tensors["covariances"]}
    with pytest.raises(CheckpointError, match="broken"):
        GaussianMixtureSampler.from_state(not_positive, meta)
    with pytest.raises(CheckpointError, match="sum to 1"):
        GaussianMixtureSampler.from_state({**tensors, "weights": tensors["weights"] * 2}, meta)


def test_seeded_draws_repeat_and_leave_the_callers_stream_alone(fitted):
    assert torch.equal(fitted.sample(10, seed=5), fitted.sample(10, seed=5))
    assert not torch.equal(fitted.sample(10, seed=5), fitted.sample(10, seed=6))
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    fitted.sample(10, seed=5)
    assert torch.equal(torch.rand(3), expected)


def test_more_components_than_latents_fit_as_many_as_there_are_latents():
    with pytest.warns(UserWarning, match="fitting 4"):
        sampler = GaussianMixtureSampler.fit(mixture_draws(4), components=10)
    assert sampler.components == 4


def test_posterior_means_in_batches_are_the_means_of_one_call():
    model = make_model(("image", "label")).eval()
    batch = make_batch(["image", "label"], 7)
    whole = model.posterior(batch).mean  # (7, L)
    torch.testing.assert_close(encode_means(model, batch, batch_size=3), whole)

"""Post-hoc latent samplers: a density fitted after training to the latents of the training set, drawn
from instead of the prior p(z) for unconditional generation (MultiVae's ``GaussianMixtureSampler``, used
for joint generation by the MMVAE+ paper and MultiVae's benchmarks).

    means = encode_means(model, inputs)                     # (N, L): E q(z | all modalities) per example
    gmm = GaussianMixtureSampler.fit(means, components=10, seed=0)
    z = gmm.sample(64, seed=0, device=model.device)          # (64, L), float32
    tensors, meta = gmm.state()                              # safetensors-ready, no pickle

Departure from MultiVae, whose sampler fits one draw z ~ q(z | X) per example: mmgen fits the posterior
means, the representation the latent probes also read; for a mixture posterior (MMVAE, MoPoE) the mean is
the average of its components' means.

The mixture is fitted by scikit-learn's EM (imported when fitting, so importing mmgen stays fast) in
float64; it is kept as float64 tensors and drawn through torch.distributions in the dtype asked for.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal

from mmgen.errors import CheckpointError, MmgenError
from mmgen.plugin.model import Model

GMM_KIND = "gmm"
# MultiVae's GaussianMixtureSamplerConfig (n_components = 10) and the GaussianMixture its fit builds:
# full covariances, max_iter = 2000, tol = 1e-3; reg_covar is scikit-learn's default.
GMM_DEFAULTS = {"components": 10, "max_iter": 2000, "tol": 1e-3, "reg_covar": 1e-6}


@torch.no_grad()
def encode_means(model: Model, inputs: Mapping[str, Tensor], batch_size: int = 1000) -> Tensor:
    """Posterior means E q(z | inputs), ``(N, L)``, for prepared inputs ``{name: (N, *event)}``, in batches
    of ``batch_size`` examples so that a whole split never goes through the encoders at once."""
    n = next(iter(inputs.values())).shape[0]
    chunks = [model.posterior({k: v[i : i + batch_size] for k, v in inputs.items()}).mean
              for i in range(0, n, batch_size)]  # each (b, L)
    return torch.cat(chunks) if chunks else model.prior((0,)).mean


@contextmanager
def seeded_stream(device: torch.device, seed: int) -> Iterator[None]:
    """Inside: the random stream of ``device`` (the one torch.distributions draws from there) starts at ``seed``;
    on exit it, and the CPU's, are as they were. Unlike ``torch.manual_seed``, no other device's stream moves."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        with torch.random.fork_rng(devices=[index], device_type="cuda"):
            torch.cuda.default_generators[index].manual_seed(seed)
            yield
    elif device.type == "mps":
        with torch.random.fork_rng(devices=[0], device_type="mps"):
            torch.mps.manual_seed(seed)
            yield
    else:
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            yield


class GaussianMixtureSampler:
    """p̂(z) = Σ_c w_c N(z; μ_c, Σ_c): ``weights`` ``(C,)``, ``means`` ``(C, L)``, ``covariances`` ``(C, L, L)``,
    float64; ``info`` the JSON-able facts of the fit (its settings, the number of latents, convergence)."""

    kind = GMM_KIND

    def __init__(self, weights: Tensor, means: Tensor, covariances: Tensor, info: dict[str, Any] | None = None):
        problem = _shape_problem(weights, means, covariances)
        if problem:
            raise MmgenError(f"not a Gaussian mixture: {problem}")
        self.weights, self.means, self.covariances = (t.detach().to("cpu", torch.float64)
                                                      for t in (weights, means, covariances))
        self.info = dict(info or {})
        # Cholesky factors in float64 on the CPU, once: a float32 factorization of a nearly singular
        # covariance can fail where the float64 one does not.
        self.scale_tril = torch.linalg.cholesky(self.covariances)  # (C, L, L)
        self._cache: dict[tuple[torch.device, torch.dtype], MixtureSameFamily] = {}

    @property
    def components(self) -> int:
        return self.weights.shape[0]

    @property
    def latent_size(self) -> int:
        return self.means.shape[1]

    @classmethod
    def fit(cls, latents: Tensor, components: int = GMM_DEFAULTS["components"], seed: int = 0,
            max_iter: int = GMM_DEFAULTS["max_iter"], tol: float = GMM_DEFAULTS["tol"],
            reg_covar: float = GMM_DEFAULTS["reg_covar"]) -> GaussianMixtureSampler:
        """EM on ``latents`` ``(N, L)`` (k-means initialisation seeded by ``seed``). More components than
        latents are cut to N with a warning, as MultiVae does."""
        from sklearn.mixture import GaussianMixture  # lazily: scikit-learn takes a while to import

        if latents.dim() != 2 or latents.shape[0] < 2:
            raise MmgenError(f"a Gaussian mixture needs latents of shape (N >= 2, L), got {tuple(latents.shape)}")
        data = latents.detach().to("cpu", torch.float64).numpy()
        if components > data.shape[0]:
            warnings.warn(f"{components} mixture components for {data.shape[0]} latents: fitting {data.shape[0]}",
                          stacklevel=2)
            components = data.shape[0]
        gmm = GaussianMixture(n_components=components, covariance_type="full", max_iter=max_iter, tol=tol,
                              reg_covar=reg_covar, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scikit-learn's ConvergenceWarning: recorded in ``info`` instead
            gmm.fit(data)
        info = {"components": components, "seed": seed, "max_iter": max_iter, "tol": tol, "reg_covar": reg_covar,
                "latents": data.shape[0], "converged": bool(gmm.converged_), "iterations": int(gmm.n_iter_),
                "mean log-likelihood": float(gmm.score(data))}
        return cls(torch.from_numpy(gmm.weights_), torch.from_numpy(gmm.means_), torch.from_numpy(gmm.covariances_),
                   info)

    def distribution(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> MixtureSameFamily:
        """The mixture as a torch Distribution on ``device`` in ``dtype``: batch ``()``, event ``(L,)``."""
        key = (torch.device(device), dtype)
        if key not in self._cache:
            # Cast on the CPU, then move: float64 cannot go to MPS.
            mix = Categorical(probs=self.weights.to(dtype).to(device), validate_args=False)
            parts = MultivariateNormal(self.means.to(dtype).to(device), scale_tril=self.scale_tril.to(dtype).to(device),
                                       validate_args=False)  # batch (C,), event (L,)
            self._cache[key] = MixtureSameFamily(mix, parts, validate_args=False)
        return self._cache[key]

    def sample(self, n: int, seed: int | None = None, device: torch.device | str = "cpu",
               dtype: torch.dtype = torch.float32) -> Tensor:
        """``n`` latents ``(n, L)``. With a ``seed``, the same draws every time on a device, and the caller's
        random stream is left as it was; without one, they come from torch's global stream."""
        dist = self.distribution(device, dtype)
        if seed is None:
            return dist.sample((n,))
        with seeded_stream(torch.device(device), seed):
            return dist.sample((n,))

    def log_prob(self, latents: Tensor) -> Tensor:
        """log p̂(z): ``(*S, L)`` -> ``(*S)``, on the latents' device and in their dtype."""
        return self.distribution(latents.device, latents.dtype).log_prob(latents)

    def state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """(tensors, JSON-able metadata) that ``from_state`` turns back into this sampler, bit for bit."""
        tensors = {"weights": self.weights, "means": self.means, "covariances": self.covariances}
        return tensors, {"kind": self.kind, "components": self.components, "latent_size": self.latent_size,
                         "covariance": "full", "fit": self.info}

    @classmethod
    def from_state(cls, tensors: Mapping[str, Tensor], meta: Mapping[str, Any]) -> GaussianMixtureSampler:
        """The sampler ``state()`` described; a state of another kind or of the wrong shapes is a CheckpointError."""
        if meta.get("kind") != cls.kind:
            raise CheckpointError(f"not a {cls.kind} sampler: its metadata names kind {meta.get('kind')!r}")
        missing = [k for k in ("weights", "means", "covariances") if k not in tensors]
        if missing:
            raise CheckpointError(f"a {cls.kind} sampler lacks the tensor(s) {', '.join(missing)}")
        try:
            return cls(tensors["weights"], tensors["means"], tensors["covariances"], meta.get("fit"))
        except (MmgenError, RuntimeError) as exc:  # RuntimeError: a covariance that is not positive definite
            raise CheckpointError(f"a broken {cls.kind} sampler: {str(exc).splitlines()[0]}")


def _shape_problem(weights: Tensor, means: Tensor, covariances: Tensor) -> str | None:
    """What is wrong with the shapes or values of a mixture's parameters, in words; None when nothing is."""
    if weights.dim() != 1 or means.dim() != 2 or covariances.dim() != 3:
        return (f"weights, means and covariances must be (C,), (C, L) and (C, L, L), got {tuple(weights.shape)}, "
                f"{tuple(means.shape)} and {tuple(covariances.shape)}")
    c, size = means.shape
    if weights.shape[0] != c or covariances.shape != (c, size, size) or c == 0:
        return f"{weights.shape[0]} weights, {c} means of width {size}, covariances {tuple(covariances.shape)}"
    if not all(bool(torch.isfinite(t).all()) for t in (weights, means, covariances)):
        return "it holds NaN or Inf"
    if bool((weights < 0).any()) or abs(float(weights.double().sum()) - 1.0) > 1e-6:
        return f"its weights must be non-negative and sum to 1 (they sum to {float(weights.double().sum()):.8g})"
    return None

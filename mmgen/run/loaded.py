"""Use a trained run from Python: load it, then encode, sample and decode with ``given={...}``.

    import mmgen
    run = mmgen.load_run("runs/mnist_mvae-20261125-120000")
    out = run.sample(16, given={"label": 3})      # {"image": (16, 1, 28, 28) means in [0, 1]}
    q = run.encode({"image": "digit.png"})        # q(z | image), a posterior over z
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mmgen.config import Recipe
from mmgen.errors import CheckpointError, GivenError
from mmgen.model.gaussian import standard_normal
from mmgen.model.inputs import prepare_fixed
from mmgen.model.vae import MultimodalVAE
from mmgen.plugin.posterior import Posterior
from mmgen.recipe.build import build_model, resolve_device
from mmgen.run.directory import RunDir
from mmgen.storage.tensors import load_tensors


@dataclass
class Run:
    """A trained run: its directory, recipe, model (in eval mode on ``device``) and the epoch of its weights."""

    run_dir: RunDir
    recipe: Recipe
    model: MultimodalVAE
    device: torch.device
    epoch: int

    @property
    def run(self) -> RunDir:
        """Deprecated name of :attr:`run_dir`."""
        warnings.warn("Run.run is now Run.run_dir", DeprecationWarning, stacklevel=2)
        return self.run_dir

    @classmethod
    def load(cls, path: str | Path | None = None, device: str = "auto", which: str = "best") -> Run:
        run_dir = RunDir.newest() if path is None else RunDir.open(Path(path))
        recipe = run_dir.recipe()
        weights_path = run_dir.weights(which)
        weights, meta = load_tensors(weights_path)
        model = build_model(recipe)
        try:
            model.load_state_dict(weights)
        except RuntimeError as exc:
            raise CheckpointError(f"{weights_path} does not fit the run's recipe: {str(exc).splitlines()[0]}")
        dev = resolve_device(device)
        return cls(run_dir, recipe, model.to(dev).eval(), dev, int(meta.get("epoch", 0)))

    # ---- inputs ------------------------------------------------------------------------------
    def prepare_given(self, given: dict[str, Any]) -> dict[str, Tensor]:
        """``{"label": 3, "image": "x.png"}`` -> prepared model inputs, one example each, on the device."""
        out = {}
        for name, value in given.items():
            if name not in self.model.modalities:
                raise GivenError(
                    f"unknown modality {name!r} in given (this run has: {', '.join(self.model.names)})"
                )
            raw = self.model.modalities[name].parse_given(value)
            # Seed 0 per value: a given input is binarized the same way on every device and every call.
            out.update(prepare_fixed(self.model.modalities, {name: raw}, seed=0, device=self.device))
        return out

    # ---- the three operations -----------------------------------------------------------------
    @torch.no_grad()
    def encode(self, given: dict[str, Any]) -> Posterior:
        """q(z | given), batch_shape ``(1,)``; with nothing given, the prior p(z)."""
        if not given:
            return standard_normal(torch.zeros(1, self.model.latent_dim, device=self.device)).expand((1,))
        return self.model.posterior(self.prepare_given(given))

    @torch.no_grad()
    def decode(self, z: Tensor, names: list[str] | None = None) -> dict[str, Tensor]:
        """Latents ``(N, D)`` -> likelihood means per modality: images ``(N, C, H, W)``, probabilities ``(N, K)``."""
        params = self.model.decode(z.to(self.device), names)
        return {n: self.model.modalities[n].mean(p) for n, p in params.items()}

    @torch.no_grad()
    def sample(self, n: int = 64, given: dict[str, Any] | None = None, seed: int | None = None,
               names: list[str] | None = None) -> dict[str, Tensor]:
        """Draw ``n`` latents from q(z | given) (p(z) when nothing is given) and decode them.

        Decodes ``names``; by default the modalities not given, or all of them when all are given.
        """
        given = given or {}
        if seed is not None:
            torch.manual_seed(seed)
        q = self.encode(given)
        z = q.sample((n,)).reshape(n, self.model.latent_dim)  # (n, 1, D) -> (n, D)
        if names is None:
            names = [m for m in self.model.names if m not in given] or list(self.model.names)
        return self.decode(z, names)

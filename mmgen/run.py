"""Use a trained run from Python: load it, then encode, sample and decode with ``given={...}``.

    import mmgen
    run = mmgen.load_run("runs/mnist_mvae-20261125-120000")
    out = run.sample(16, given={"label": 3})      # {"image": (16, 1, 28, 28) means in [0, 1]}
    q = run.encode({"image": "digit.png"})        # q(z | image), a torch Distribution
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Distribution

from mmgen.build import build_model, resolve_device
from mmgen.checkpoint import load_tensors
from mmgen.errors import CheckpointError, GivenError
from mmgen.gaussian import standard_normal
from mmgen.model import MultimodalVAE
from mmgen.recipe import Recipe, validate_recipe
from mmgen.rundir import RunDir


@dataclass
class Run:
    run: RunDir
    recipe: Recipe
    model: MultimodalVAE
    device: torch.device
    epoch: int

    @classmethod
    def load(cls, path: str | Path | None = None, device: str = "auto", which: str = "best") -> Run:
        run = RunDir.newest() if path is None else RunDir.open(Path(path))
        recipe = validate_recipe(run.read_recipe_data(), source=str(run.recipe_file))
        weights_path = run.weights(which)
        weights, meta = load_tensors(weights_path)
        model = build_model(recipe)
        try:
            model.load_state_dict(weights)
        except RuntimeError as exc:
            raise CheckpointError(f"{weights_path} does not fit the run's recipe: {str(exc).splitlines()[0]}")
        dev = resolve_device(device)
        return cls(run, recipe, model.to(dev).eval(), dev, int(meta.get("epoch", 0)))

    # ---- inputs ------------------------------------------------------------------------------
    def prepare_given(self, given: dict[str, Any]) -> dict[str, Tensor]:
        """``{"label": 3, "image": "x.png"}`` -> prepared model inputs, one example each, on the device."""
        out = {}
        for name, value in given.items():
            if name not in self.model.modalities:
                raise GivenError(
                    f"unknown modality {name!r} in given (this run has: {', '.join(self.model.names)})"
                )
            modality = self.model.modalities[name]
            raw = modality.parse_given(value)
            # A fixed CPU generator keeps any binarization of a given input the same on every device.
            out[name] = modality.prepare(raw.cpu(), torch.Generator().manual_seed(0)).to(self.device)
        return out

    # ---- the three operations -----------------------------------------------------------------
    @torch.no_grad()
    def encode(self, given: dict[str, Any]) -> Distribution:
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

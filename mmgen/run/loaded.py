"""Use a trained run from Python: load it, then encode, sample and decode with ``given={...}``.

    import mmgen
    run = mmgen.load_run("runs/mnist_mvae-20261125-120000")   # or an export's folder, or hf://ORG/NAME
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
from mmgen.model.inputs import prepare_fixed
from mmgen.plugin.model import Model
from mmgen.plugin.posterior import Posterior
from mmgen.recipe.build import build_model, resolve_device
from mmgen.recipe.memory import decoded_bytes, refuse_if_too_big
from mmgen.run.directory import RunDir
from mmgen.run.exported import check_export, is_export
from mmgen.run.hub import HubModel, local_folder, parse_reference
from mmgen.storage.tensors import load_tensors

Shapes = dict[str, tuple[int, ...]]


def weights_mismatch(shapes: Shapes, model: torch.nn.Module) -> str | None:
    """What in saved weights (their names and shapes) does not fit ``model``, in words; None when they fit."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = [k for k in expected if k not in shapes]
    if missing:
        return f"it lacks {len(missing)} of the model's {len(expected)} tensors (the first: {missing[0]})"
    unknown = [k for k in shapes if k not in expected]
    if unknown:
        return f"it holds {len(unknown)} tensor(s) the model has not (the first: {unknown[0]})"
    wrong = [k for k in expected if shapes[k] != expected[k]]
    if wrong:
        return f"{wrong[0]} has shape {shapes[wrong[0]]}, the model's {expected[wrong[0]]}"
    return None


@dataclass
class Run:
    """A trained run: its directory, recipe, model (in eval mode on ``device``) and the epoch of its weights;
    ``hub``: the Hub model it was downloaded as (its directory is then in the Hub's cache)."""

    run_dir: RunDir
    recipe: Recipe
    model: Model
    device: torch.device
    epoch: int
    hub: HubModel | None = None

    @property
    def run(self) -> RunDir:
        """Deprecated name of :attr:`run_dir`."""
        warnings.warn("Run.run is now Run.run_dir", DeprecationWarning, stacklevel=2)
        return self.run_dir

    @property
    def outputs(self) -> Path:
        """Where commands write what they make of the run (samples, eval.json, pictures): a run directory
        itself; the working folder for an export (its card shows its own eval.json) and for a model from the
        Hub (whose cache must keep the files as downloaded)."""
        return Path() if self.hub is not None or is_export(self.run_dir) else self.run_dir.path

    @classmethod
    def load(cls, path: str | Path | None = None, device: str = "auto", which: str = "best") -> Run:
        """A run directory, an export's folder, or an export on the Hub (``hf://ORG/NAME[@REVISION]``, see
        mmgen.run.hub); None: the newest run under ``runs/``. Every command that takes a run loads it here."""
        run_dir = RunDir.newest() if path is None else RunDir.open(local_folder(path))
        check_export(run_dir, which)  # an export: its plugins, its weights' bytes, its model's recipe unchanged
        recipe = run_dir.recipe()
        weights_path = run_dir.weights(which)
        weights, meta = load_tensors(weights_path)
        broken = [k for k, v in weights.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
        if broken:
            raise CheckpointError(f"{weights_path} holds NaN or Inf in {len(broken)} tensor(s) (first: {broken[0]}); "
                                  "these weights cannot be used", hint="use the other weights (--weights last|best)")
        model = build_model(recipe)
        why = weights_mismatch({k: tuple(v.shape) for k, v in weights.items()}, model)
        if why:  # torch's own message starts with a line that names no tensor
            raise CheckpointError(f"{weights_path} does not fit the recipe's model: {why}",
                                  hint=f"{run_dir.recipe_file.name} and the weights come from different runs")
        try:
            model.load_state_dict(weights)
        except RuntimeError as exc:
            raise CheckpointError(f"{weights_path} does not fit the run's recipe: {str(exc).splitlines()[0]}")
        dev = resolve_device(device)
        hub = None if path is None else parse_reference(path)
        return cls(run_dir, recipe, model.to(dev).eval(), dev, int(meta.get("epoch", 0)), hub)

    # ---- inputs ------------------------------------------------------------------------------
    def prepare_given(self, given: dict[str, Any]) -> dict[str, Tensor]:
        """``{"label": 3, "image": "x.png"}`` -> prepared model inputs ``(N, *event)`` on the device.

        A value is one example (a string, a path, an int, a tensor of one example's shape) or a batch
        tensor ``(N, *event)``; every value given together must hold the same N examples.
        """
        out = {}
        for name, value in given.items():
            if name not in self.model.modalities:
                raise GivenError(
                    f"unknown modality {name!r} in given (this run has: {', '.join(self.model.names)})"
                )
            raw = self.model.modalities[name].parse_given(value)
            # Seed 0 per value: a given input is binarized the same way on every device and every call.
            out.update(prepare_fixed(self.model.modalities, {name: raw}, seed=0, device=self.device))
        sizes = {name: x.shape[0] for name, x in out.items()}
        if len(set(sizes.values())) > 1:
            raise GivenError(f"given values hold different numbers of examples: {sizes}")
        return out

    def bytes_per_sample(self, names: list[str] | None = None) -> int:
        """Memory one decoded sample takes: its latent, and each modality's parameters and means."""
        return decoded_bytes(self.model, names)

    # ---- the three operations -----------------------------------------------------------------
    @torch.no_grad()
    def encode(self, given: dict[str, Any]) -> Posterior:
        """q(z | given), batch_shape ``(N,)`` for N given examples; with nothing given, the prior p(z), ``(1,)``."""
        if not given:
            return self.model.prior((1,))
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
        Shapes: ``(n, *event)`` given one example (or nothing); ``(n, N, *event)`` given a batch of N.
        """
        given = given or {}
        if seed is not None:
            torch.manual_seed(seed)
        q = self.encode(given)
        count = n * q.batch_shape[0]
        refuse_if_too_big(f"{count:,} samples", count * self.bytes_per_sample(names), self.device,
                          hint="ask for fewer samples (-n)")
        z = q.sample((n,))  # (n, N, D)
        if z.shape[1] == 1:
            z = z.reshape(n, self.model.latent_size)  # one example given: (n, L)
        if names is None:
            names = [m for m in self.model.names if m not in given] or list(self.model.names)
        return self.decode(z, names)
